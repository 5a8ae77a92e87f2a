"""A dataset whose operator publishes its allele frequencies: anyone gets, for each variant, AC,
AN, AF and genotype counts by population and sex (checked against bcftools), the GDI portal's
allele-frequency request included; the catalogue and every answer say so; nothing is accounted;
individuals stay governed by the tier; a dataset that does not publish keeps its frequencies."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.config.node import init_node
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.sim import simulate_cohort
from genofed.sim.cohort import CohortSummary
from genofed.store.node import NodeStore

R = "framework/json/responses/"


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, CohortSummary]:
    root = tmp_path_factory.mktemp("frequencies")
    node = root / "node"
    init_node(node, node_id="goe-node", country="NL")
    summaries = {}
    for dataset_id, release in (("goe-nl", "public"), ("cohort-nl", None)):
        summary = simulate_cohort(root / dataset_id, samples=60, seed=31, length_mb=0.2,
                                  dataset_id=dataset_id, access_tier="registered")
        if release:
            metadata = json.loads(summary.dataset_metadata.read_text())
            metadata["alleleFrequencies"] = release
            summary.dataset_metadata.write_text(json.dumps(metadata))
        ingest_dataset(node, dataset_id, summary.vcf, phenopackets=summary.phenopackets_dir,
                       metadata=summary.dataset_metadata, populations=summary.populations)
        summaries[dataset_id] = summary
    return node, summaries["goe-nl"]


def _genotypes(vcf: Path, pos: int) -> list[str]:
    out = subprocess.run(["bcftools", "query", "-r", f"20:{pos}", "-f", "[%GT\\t]\\n",
                          str(vcf)], check=True, capture_output=True, text=True).stdout
    return out.splitlines()[0].rstrip("\t").split("\t")


def test_anyone_gets_frequencies_and_genotype_counts(published: tuple[Path, CohortSummary],
                                                     schemas: Any) -> None:
    node, summary = published
    sites = NodeStore.open(node).dataset("goe-nl").sites.to_pylist()
    picks = [s for s in sites if 0 < s["ac"] < 3][:2] + [s for s in sites if s["ac"] > 20][:2]
    app = create_app(node)
    with TestClient(app) as anyone:
        for site in picks:
            # the GDI portal's allele-frequency search: POST g_variants, record granularity
            body = {"meta": {"apiVersion": "2.0"}, "query": {
                "requestParameters": {"assemblyId": "GRCh38", "referenceName": "20",
                                      "start": [site["pos"] - 1],
                                      "referenceBases": site["ref"],
                                      "alternateBases": site["alt"]},
                "requestedGranularity": "record", "includeResultsetResponses": "HIT"}}
            document = anyone.post("/beacon/g_variants", json=body).json()
            schemas.check(R + "beaconResultsetsResponse.json", document)
            (result,) = [r for r in document["response"]["resultSets"] if r["id"] == "goe-nl"]
            assert result["returnedGranularity"] == "record"
            assert "published by the node operator" in " ".join(result["info"]["notes"])
            (record,) = result["results"]
            (source,) = record["frequencyInPopulations"]
            groups = {f["population"]: f for f in source["frequencies"]}
            calls = _genotypes(summary.vcf, site["pos"])
            everyone = groups["all"]
            assert everyone["alleleCount"] == site["ac"] == sum(c.count("1") for c in calls)
            assert everyone["alleleNumber"] == 2 * len(calls)
            assert everyone["alleleCountHomozygous"] == sum(c in ("1/1", "1|1") for c in calls)
            assert everyone["alleleCountHeterozygous"] == sum(
                c in ("0/1", "1/0", "0|1", "1|0") for c in calls)
            for name in ("alleleCountHomozygous", "alleleCountHeterozygous"):
                assert groups["female"][name] + groups["male"][name] == everyone[name]
            assert groups["CEU"]["alleleCount"] == everyone["alleleCount"]
        # published, not accounted: nobody has spent anything
        ledger = app.state.beacon.service.exposure
        samples = NodeStore.open(node).dataset("goe-nl").samples
        assert ledger.spent(samples) == {}
        # individuals are still the tier's: a registered dataset tells the anonymous a boolean
        pos, ref, alt = picks[-1]["pos"], picks[-1]["ref"], picks[-1]["alt"]
        people = anyone.get(f"/beacon/g_variants/GRCh38:20:{pos}:{ref}:{alt}/individuals",
                            params={"requestedGranularity": "count",
                                    "datasets": "goe-nl"}).json()
        (result,) = people["response"]["resultSets"]
        assert result["returnedGranularity"] == "boolean"
        # a dataset that does not publish answers the same request by its tier
        withheld = anyone.get("/beacon/g_variants", params={
            "referenceName": "20", "start": 0, "end": 200_000, "requestedGranularity": "record",
            "datasets": "cohort-nl"}).json()
        (result,) = withheld["response"]["resultSets"]
        assert result["returnedGranularity"] == "boolean" and result["results"] == []


def test_catalogue_and_dataset_record_say_so(published: tuple[Path, CohortSummary]) -> None:
    node, _ = published
    with TestClient(create_app(node)) as anyone:
        record = anyone.get("/beacon/datasets/goe-nl").json()["response"]["collections"][0]
        assert record["info"]["alleleFrequencies"] == "public"
        other = anyone.get("/beacon/datasets/cohort-nl").json()["response"]["collections"][0]
        assert other["info"]["alleleFrequencies"] == "withheld"
        graph = anyone.get("/catalogue/datasets/goe-nl",
                           headers={"Accept": "text/turtle"}).text
        assert "#allele-frequencies" in graph and "Allele frequencies, open to anyone" in graph
        assert "allele-frequencies" not in anyone.get(
            "/catalogue/datasets/cohort-nl", headers={"Accept": "text/turtle"}).text
