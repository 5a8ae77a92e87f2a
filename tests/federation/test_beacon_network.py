"""The Beacon network over three real nodes: federated counts equal the sum of the nodes' own
answers and the truth from the pooled VCFs (bcftools), suppressed counts stay suppressed, merged
answers validate against the Beacon v2 schemas with one resultSet per dataset tagged by node, and
the researcher's token reaches every node untouched so each node decides access for itself."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from genofed.access.audit import entries
from genofed.access.governance import Governance
from genofed.store import NodeStore
from tests.federation.conftest import FLOOR, NODES, PUBLIC_DATASET, Federation

COHORTS = [dataset for _c, _n, dataset, _t in NODES.values()]
FEMALE = "NCIT:C16576"
Variant = tuple[int, str, str]


@dataclass
class Truth:
    """From the pooled cohort (`bcftools merge` of the nodes' VCFs, split to biallelic records)
    and the Phenopackets: per variant and node, (allele count in the node's samples, women
    carrying the allele)."""

    shares: dict[Variant, dict[str, tuple[int, int]]]

    def women_carriers(self, key: Variant) -> int:
        return sum(w for _ac, w in self.shares[key].values())


def _bcftools(command: str) -> str:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], check=True,
                          capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def truth(federation: Federation) -> Truth:
    vcfs = " ".join(str(n.vcf) for n in federation.nodes.values())
    pooled = _bcftools(f"bcftools merge -Ou {vcfs} | bcftools norm -m- -Ou | "
                       "bcftools query -H -f '%POS\\t%REF\\t%ALT[\\t%GT]\\n' -").splitlines()
    samples = [re.sub(r"^\[\d+\]|:GT$", "", column) for column in pooled[0].split("\t")[3:]]
    genotypes = {}
    for line in pooled[1:]:
        pos, ref, alt, *calls = line.split("\t")
        genotypes[(int(pos), ref, alt)] = calls
    sex = {}
    for path in Path(federation.phenopackets).glob("*.json"):
        packet = json.loads(path.read_text())
        sex[packet["subject"]["id"]] = packet["subject"].get("sex", "UNKNOWN_SEX").lower()
    node_of = {s: node.id for node in federation.nodes.values() for s in node.samples}
    assert set(samples) == set(node_of)
    shares = {}
    for key, calls in genotypes.items():
        share = dict.fromkeys(NODES, (0, 0))
        for sample, gt in zip(samples, calls, strict=True):
            alleles = re.split(r"[/|]", gt).count("1")
            if alleles:
                ac, women = share[node_of[sample]]
                share[node_of[sample]] = (ac + alleles, women + (sex[sample] == "female"))
        shares[key] = share
    return Truth(shares)


def _body(key: Variant, datasets: list[str], granularity: str = "count") -> dict[str, Any]:
    pos, ref, alt = key
    return {"meta": {"apiVersion": "v2.0"}, "query": {
        "requestParameters": {"referenceName": "20", "start": [pos - 1], "referenceBases": ref,
                              "alternateBases": alt, "datasets": datasets},
        "filters": [{"id": FEMALE}], "requestedGranularity": granularity,
        "includeResultsetResponses": "ALL"}}


def _network(federation: Federation, body: dict[str, Any], path: str = "/individuals",
             headers: dict[str, str] | None = None) -> dict[str, Any]:
    """The hub's answer, for alice with ResearcherStatus unless `headers` say otherwise."""
    response = httpx.post(f"{federation.hub}/network/beacon{path}", json=body, timeout=30,
                          headers=federation.researcher if headers is None else headers)
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def _direct(federation: Federation, node_id: str, key: Variant) -> dict[str, Any]:
    node = federation.nodes[node_id]
    response = httpx.post(f"{node.url}/beacon/individuals", json=_body(key, [node.dataset]),
                          headers=federation.researcher)
    assert response.status_code == 200, response.text
    summary: dict[str, Any] = response.json()["responseSummary"]
    return summary


def _pick(keys: list[Variant], n: int) -> list[Variant]:
    assert keys, "the simulated cohort has no variant of the kind this test needs"
    step = max(1, len(keys) // n)
    return keys[::step][:n]


def test_federated_count_equals_node_sum_and_pooled_truth(federation: Federation, truth: Truth,
                                                          schemas: Any) -> None:
    def unsuppressed(key: Variant) -> bool:
        shares = truth.shares[key].values()
        return (all(w == 0 or (ac >= FLOOR and w >= FLOOR) for ac, w in shares)
                and sum(w > 0 for _ac, w in shares) >= 2)

    for key in _pick([k for k in truth.shares if unsuppressed(k)], 6):
        document = _network(federation, _body(key, COHORTS))
        schemas.check_response(document)
        direct = [_direct(federation, node_id, key) for node_id in NODES]
        summary = document["responseSummary"]
        assert summary["numTotalResults"] == sum(d["numTotalResults"] for d in direct)
        assert summary["numTotalResults"] == truth.women_carriers(key), key
        assert summary["countPrecision"] == "exact"
        assert document["info"]["network"]["complete"] is True
        sets = {s["id"]: s for s in document["response"]["resultSets"]}
        assert sorted(sets) == sorted(COHORTS)  # one per dataset, the public one not asked
        for node_id, (country, _n, dataset, _tier) in NODES.items():
            tag = sets[dataset]["info"]["node"]
            assert {k: tag[k] for k in ("id", "country", "beaconId")} == {
                "id": node_id, "country": country, "beaconId": f"org.genofed.{node_id}"}
            assert tag["disclosure"]["countFloor"] == 5  # the node's own policy
            assert sets[dataset]["resultsCount"] == truth.shares[key][node_id][1]


def test_suppressed_counts_stay_suppressed_in_the_sum(federation: Federation,
                                                      truth: Truth) -> None:
    def one_node_hides(key: Variant) -> bool:
        return any(ac >= FLOOR and 0 < w < FLOOR for ac, w in truth.shares[key].values())

    for key in _pick([k for k in truth.shares if one_node_hides(k)], 4):
        document = _network(federation, _body(key, COHORTS))
        direct = [_direct(federation, node_id, key) for node_id in NODES]
        summary = document["responseSummary"]
        assert summary["numTotalResults"] == sum(d["numTotalResults"] for d in direct)
        assert summary["countPrecision"] == "imprecise"
        hidden = 0
        for node_id, (_c, _n, dataset, _t) in NODES.items():
            ac, women = truth.shares[key][node_id]
            result_set = next(s for s in document["response"]["resultSets"]
                              if s["id"] == dataset)
            if 0 < women < FLOOR and ac >= FLOOR:
                # the network passes on what the node disclosed: the floor, not the count
                assert result_set["resultsCount"] == FLOOR
                assert result_set["countPrecision"] == "imprecise"
                assert result_set["countAdjustedTo"] == [FLOOR]
                hidden += women
        assert summary["numTotalResults"] != truth.women_carriers(key) or hidden == FLOOR
        shown = [n["numTotalResults"] for n in document["info"]["network"]["nodes"]]
        assert summary["numTotalResults"] == sum(shown)


@pytest.mark.parametrize("granularity", ["boolean", "count", "record"])
def test_merged_answers_validate_and_tag_every_result_set(federation: Federation, schemas: Any,
                                                          granularity: str) -> None:
    params = {"requestedGranularity": granularity, "includeResultsetResponses": "ALL",
              "referenceName": "20", "start": "0", "end": "300000"}
    hub = f"{federation.hub}/network/beacon"
    for path in ("/individuals", "/g_variants", "/biosamples"):
        for document in (
            httpx.get(hub + path, params=params, headers=federation.de_visa).json(),
            httpx.get(hub + path, params={**params, "datasets": ",".join(COHORTS)},
                      headers=federation.de_visa).json(),
            _network(federation, {"query": {"requestedGranularity": granularity,
                                            "includeResultsetResponses": "ALL",
                                            "filters": [FEMALE]}}, path, federation.de_visa),
        ):
            schemas.check_response(document)
            report = document["info"]["network"]
            assert report["complete"] is True
            assert [n["status"] for n in report["nodes"]] == ["ok"] * 3
            keys = [(s["info"]["node"]["id"], s["id"]) for s in
                    document["response"]["resultSets"]]
            assert len(keys) == len(set(keys))  # one resultSet per dataset
            for node_id, dataset in keys:
                assert dataset == NODES[node_id][2] or dataset == PUBLIC_DATASET
            exists = [n["exists"] for n in report["nodes"] if n["status"] == "ok"]
            assert document["responseSummary"]["exists"] is any(exists)
            if document["meta"]["returnedGranularity"] == "boolean":
                assert "numTotalResults" not in document["responseSummary"]
            else:
                assert document["responseSummary"]["numTotalResults"] == sum(
                    n["numTotalResults"] for n in report["nodes"])


def test_each_node_decides_access_from_the_forwarded_passport(federation: Federation,
                                                              schemas: Any) -> None:
    """The researcher's token reaches every node untouched and each judges it alone: records
    only where a visa grants them (de-c), counts where ResearcherStatus suffices, and a node
    refusing a request answers only for itself."""
    body: dict[str, Any] = {"meta": {"apiVersion": "v2.0"}, "query": {
        "filters": [{"id": FEMALE}], "requestedGranularity": "record",
        "pagination": {"skip": 0, "limit": 2}, "requestParameters": {"datasets": COHORTS}}}
    with_visa = _network(federation, body, headers=federation.de_visa)
    schemas.check_response(with_visa)
    granted = {s["id"]: s["returnedGranularity"] for s in with_visa["response"]["resultSets"]}
    assert granted == {"fi-cohort": "count", "se-cohort": "count", "de-cohort": "record"}
    records = next(s for s in with_visa["response"]["resultSets"] if s["id"] == "de-cohort")
    assert len(records["results"]) == 2
    assert all(r["id"] in federation.nodes["de-c"].samples for r in records["results"])
    assert with_visa["meta"]["returnedGranularity"] == "count"  # the coarsest any node gave
    assert with_visa["info"]["network"]["complete"] is True

    without_visa = _network(federation, body)  # ResearcherStatus only
    schemas.check_response(without_visa)
    lines = {n["node"]: n for n in without_visa["info"]["network"]["nodes"]}
    assert lines["de-c"]["status"] == "unauthorised" and lines["de-c"]["httpStatus"] == 403
    assert {s["id"]: s["returnedGranularity"] for s in without_visa["response"][
        "resultSets"]} == {"fi-cohort": "count", "se-cohort": "count"}

    anonymous = _network(federation, {**body, "query": {**body["query"],
                                                        "requestedGranularity": "count"}},
                         headers={})
    schemas.check_response(anonymous)
    assert {s["returnedGranularity"] for s in anonymous["response"]["resultSets"]} == {
        "boolean"}
    assert "numTotalResults" not in anonymous["responseSummary"]

    # each node's own audit trail holds its own decisions, about its own datasets only: the
    # record-level allow is de-c's alone, and its refusal of the visa-less passport is there too
    trails = {node_id: _audit(node.dir) for node_id, node in federation.nodes.items()}
    for node_id, trail in trails.items():
        held = set(load_node_datasets(federation.nodes[node_id].dir))
        assert trail and {e.dataset_id for e in trail if e.dataset_id} <= held, node_id
    record_allows = {node_id for node_id, trail in trails.items()
                     if any(e.action == "beacon.record" and e.decision == "allow" for e in trail)}
    assert record_allows == {"de-c"}
    assert any(e.action == "beacon.record" and e.decision == "deny" for e in trails["de-c"])


def _audit(node_dir: Path) -> list[Any]:
    governance = Governance.open(node_dir)
    try:
        governance.audit.flush()
        return list(entries(governance.db))
    finally:
        governance.close()


def load_node_datasets(node_dir: Path) -> list[str]:
    return NodeStore.open(node_dir).dataset_ids()


def test_dataset_scoped_requests_reach_only_the_holders(federation: Federation,
                                                        schemas: Any) -> None:
    hub = f"{federation.hub}/network/beacon"
    document = httpx.get(f"{hub}/datasets/se-cohort/individuals",
                         params={"requestedGranularity": "count"},
                         headers=federation.researcher).json()
    schemas.check_response(document)
    statuses = {n["node"]: n["status"] for n in document["info"]["network"]["nodes"]}
    assert statuses == {"fi-a": "skipped", "se-b": "ok", "de-c": "skipped"}
    assert [s["id"] for s in document["response"]["resultSets"]] == ["se-cohort"]
    assert document["responseSummary"]["numTotalResults"] == len(
        federation.nodes["se-b"].samples)

    public = httpx.get(f"{hub}/individuals", params={"datasets": PUBLIC_DATASET,
                                                     "requestedGranularity": "count"},
                       headers=federation.researcher).json()
    assert [s["id"] for s in public["response"]["resultSets"]] == [PUBLIC_DATASET]
    assert public["meta"]["returnedGranularity"] == "boolean"  # a public dataset's ceiling

    missing = httpx.get(f"{hub}/individuals", params={"datasets": "no-such-dataset"})
    assert missing.status_code == 404
    schemas.check("framework/json/responses/beaconErrorResponse.json", missing.json())


def test_collections_are_merged(federation: Federation, schemas: Any) -> None:
    document = httpx.get(f"{federation.hub}/network/beacon/datasets",
                         params={"limit": "100"}).json()
    schemas.check_response(document)
    found = {(c["info"]["node"]["id"], c["id"]) for c in document["response"]["collections"]}
    assert found == {("fi-a", "fi-cohort"), ("fi-a", PUBLIC_DATASET), ("se-b", "se-cohort"),
                     ("de-c", "de-cohort")}
    assert document["responseSummary"]["numTotalResults"] == 4


R = "framework/json/responses/"


def test_framework_endpoints_are_merged_and_valid(federation: Federation, schemas: Any) -> None:
    hub = f"{federation.hub}/network/beacon"
    for path, schema in (("/info", "beaconInfoResponse.json"), ("/", "beaconInfoResponse.json"),
                         ("/map", "beaconMapResponse.json"),
                         ("/configuration", "beaconConfigurationResponse.json"),
                         ("/entry_types", "beaconEntryTypesResponse.json"),
                         ("/filtering_terms", "beaconFilteringTermsResponse.json"),
                         ("/service-info", "ga4gh-service-info-1-0-0-schema.json")):
        response = httpx.get(hub + path)
        assert response.status_code == 200, (path, response.text)
        schemas.check(R + schema, response.json())

    info = httpx.get(f"{hub}/info").json()
    members = {m["id"]: m for m in info["response"]["info"]["members"]}
    assert {k: (m["country"], m["status"]) for k, m in members.items()} == {
        "fi-a": ("FI", "ok"), "se-b": ("SE", "ok"), "de-c": ("DE", "ok")}
    assert sorted(members["fi-a"]["datasets"]) == ["fi-cohort", PUBLIC_DATASET]

    endpoint_sets = httpx.get(f"{hub}/map").json()["response"]["endpointSets"]
    urls = [s["rootUrl"] for s in endpoint_sets.values()]
    assert len(urls) == 5 and all(u.startswith(hub + "/") for u in urls)
    for url in urls:  # every root the map lists answers through the network
        assert httpx.get(url).status_code == 200, url

    merged = {t["id"] for t in httpx.get(f"{hub}/filtering_terms").json()["response"][
        "filteringTerms"]}
    own: set[str] = set()
    for node in federation.nodes.values():
        own |= {t["id"] for t in httpx.get(f"{node.url}/beacon/filtering_terms").json()[
            "response"]["filteringTerms"]}
    assert merged == own and FEMALE in merged


def test_the_hub_rejects_malformed_requests_itself(federation: Federation,
                                                   schemas: Any) -> None:
    hub = f"{federation.hub}/network/beacon"
    for response in (
        httpx.post(f"{hub}/individuals", content=b"{oops",
                   headers={"content-type": "application/json"}),
        httpx.post(f"{hub}/individuals", json={"query": {"requestedGranularity": "all"}}),
        httpx.get(f"{hub}/individuals", params={"skip": "many"}),
    ):
        assert response.status_code == 400, response.text
        schemas.check(R + "beaconErrorResponse.json", response.json())
        assert "info" not in response.json()  # refused before any member was asked
    # variant semantics are each node's to judge: when all refuse alike, so does the network
    bad_range = httpx.get(f"{hub}/g_variants", params={"referenceName": "20", "start": "9",
                                                       "end": "5"})
    assert bad_range.status_code == 400
    schemas.check(R + "beaconErrorResponse.json", bad_range.json())
    assert bad_range.json()["error"]["errorMessage"].startswith("every member refused")
    assert "greater than end" in bad_range.json()["error"]["errorMessage"]
    unknown = httpx.get(f"{hub}/no_such_entry")
    assert unknown.status_code == 404
    schemas.check(R + "beaconErrorResponse.json", unknown.json())
