"""Exposure accounting on a served node: budgets are spent by answers below record level, shared
by every app over the node's database and kept across restarts; an individual whose budget is
spent changes no such answer; record-level answers for visa holders stay exact; every answer
states the policy."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from genofed.access.identity.issuer import LocalIssuer
from genofed.config.node import DisclosureSettings, init_node
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.sim import simulate_cohort
from genofed.store.node import NodeStore
from tests.support import bearer, set_exposure_budget, trust_issuer

FLOOR = 5
DATASET = "ds-exp"
FEMALE, MALE = "NCIT:C16576", "NCIT:C20197"


@dataclass(frozen=True)
class Cohort:
    node: Path  # the node as ingested: nobody has spent anything
    without: Path  # the same dataset without `absent`, exposure accounting off
    absent: str
    absent_sex: str
    #: alleles `absent` carries, (pos, ref, alt, allele count), rare ones first
    carried: list[tuple[int, str, str, int]]

    @property
    def affordable(self) -> list[tuple[int, str, str, int]]:
        """Alleles whose answers cost a carrier less than the default budget: those carried
        well above the floor (about a rare one, every answer costs more)."""
        return [allele for allele in self.carried if allele[3] >= 4 * FLOOR]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Cohort:
    root = tmp_path_factory.mktemp("exposure")
    summary = simulate_cohort(root / "sim", samples=80, seed=21, length_mb=0.25,
                              dataset_id=DATASET, access_tier="controlled")
    node = _node(root / "node", issuer)
    ingest_dataset(node, DATASET, summary.vcf, phenopackets=summary.phenopackets_dir,
                   metadata=summary.dataset_metadata, populations=summary.populations)
    dataset = NodeStore.open(node).dataset(DATASET)
    sites = dataset.sites
    ac = sites.column("ac").to_numpy()
    block = dataset.genotype_block(sites.column("variant_index").to_numpy())
    alleles = sites.column("allele_index").to_numpy()
    dosage = (block.calls == alleles[:, None, None]).sum(axis=2)  # (sites, samples)
    # The individual carrying the most alleles seen 2..15 times: the ones the policy weighs.
    informative = (ac >= 2) & (ac <= 15)
    person = int(np.argmax((dosage[informative] > 0).sum(axis=0)))
    absent = dataset.samples[person]
    rows = np.flatnonzero(dosage[:, person] > 0)
    rows = rows[np.argsort(ac[rows], kind="stable")]
    pos, ref = sites.column("pos").to_pylist(), sites.column("ref").to_pylist()
    alt = sites.column("alt").to_pylist()
    carried = [(pos[r], ref[r], alt[r], int(ac[r])) for r in rows]
    sex = dataset.individuals.column("sex").to_pylist()[person]

    vcf = root / "without.vcf.gz"
    subprocess.run(["bcftools", "view", "-s", f"^{absent}", "-Oz", "-o", str(vcf),
                    str(summary.vcf)], check=True)
    subprocess.run(["bcftools", "index", "-t", str(vcf)], check=True)
    packets = root / "without-packets"
    shutil.copytree(summary.phenopackets_dir, packets)
    (packets / f"{absent}.json").unlink()
    populations = root / "without-populations.tsv"
    populations.write_text("".join(line for line in summary.populations.read_text()
                                   .splitlines(keepends=True)
                                   if not line.startswith(f"{absent}\t")))
    # Accounted like the node, with budgets no one exhausts: the answers the dataset without
    # `absent` gives.
    without = _node(root / "without", issuer, budget=1000.0)
    ingest_dataset(without, DATASET, vcf, phenopackets=packets,
                   metadata=summary.dataset_metadata, populations=populations)
    return Cohort(node, without, absent, FEMALE if sex == "female" else MALE, carried)


def _node(path: Path, issuer: LocalIssuer, *, budget: float | None = None) -> Path:
    init_node(path, node_id="exp-node", country="FI")
    trust_issuer(path, issuer)
    if budget is not None:
        _set_budget(path, budget)
    return path


def _set_budget(node: Path, budget: float) -> None:
    """The whole budget, and as much of it for open answers."""
    set_exposure_budget(node, budget, public=budget)


@pytest.fixture
def node(cohort: Cohort, tmp_path: Path) -> Path:
    """A copy of the ingested node, with its own (empty) ledger."""
    copy = tmp_path / "node"
    shutil.copytree(cohort.node, copy, symlinks=True)
    return copy


@pytest.fixture(scope="module")
def tokens(issuer: LocalIssuer) -> dict[str, str]:
    grant = issuer.visa("alice", "ControlledAccessGrants", DATASET, by="dac", lifetime=3600)
    return {"registered": issuer.passport("alice", lifetime=3600),
            "visa": issuer.passport("alice", extra_visas=[grant], lifetime=3600)}


@contextmanager
def clients(node: Path, tokens: dict[str, str]) -> Iterator[dict[str, TestClient]]:
    """One app on `node` (one server worker), as an anonymous, a registered and a visa-holding
    caller."""
    app = create_app(node)
    with TestClient(app, raise_server_exceptions=False) as anonymous:
        yield {"anonymous": anonymous,
               "registered": TestClient(app, headers=bearer(tokens["registered"])),
               "visa": TestClient(app, headers=bearer(tokens["visa"]))}


def _ledger(http: TestClient) -> Any:
    return http.app.state.beacon.service.exposure  # type: ignore[attr-defined]


def _answer(http: TestClient, path: str, allele: tuple[int, str, str, int],
            granularity: str, filters: str | None = None) -> tuple[bool, int, str | None]:
    pos, ref, alt, _ = allele
    params = {"referenceName": "20", "start": pos - 1, "referenceBases": ref,
              "alternateBases": alt, "requestedGranularity": granularity,
              "includeResultsetResponses": "ALL", "datasets": DATASET}
    if filters:
        params["filters"] = filters
    response = http.get(path, params=params)
    assert response.status_code == 200, response.text
    (result,) = response.json()["response"]["resultSets"]
    return result["exists"], result["resultsCount"], result.get("countPrecision")


def _ask_all(http: dict[str, TestClient], alleles: list[tuple[int, str, str, int]],
             sex: str) -> list[tuple[bool, int, str | None]]:
    """Every kind of answer below record level about `alleles`."""
    out = []
    for allele in alleles:
        out.append(_answer(http["anonymous"], "/beacon/g_variants", allele, "boolean"))
        out.append(_answer(http["registered"], "/beacon/g_variants", allele, "count"))
        out.append(_answer(http["registered"], "/beacon/individuals", allele, "count"))
        out.append(_answer(http["registered"], "/beacon/individuals", allele, "count", sex))
        out.append(_answer(http["anonymous"], "/beacon/individuals", allele, "boolean"))
    return out


def test_answers_spend_budgets_which_survive_a_restart(node: Path, cohort: Cohort,
                                                       tokens: dict[str, str]) -> None:
    alleles = cohort.affordable[:12]
    budget = DisclosureSettings().exposure_budget
    with clients(node, tokens) as http:
        first = _ask_all(http, alleles, cohort.absent_sex)
        samples = NodeStore.open(node).dataset(DATASET).samples
        spent = _ledger(http["anonymous"]).spent(samples)
    assert spent and 0 < spent[cohort.absent] <= budget + 1e-9
    assert max(spent.values()) <= budget + 1e-9
    with clients(node, tokens) as http:  # a restart: a new app over the same node
        assert _ledger(http["anonymous"]).spent(samples) == spent
        # asked again, the same answers, and nothing more is spent
        assert _ask_all(http, alleles, cohort.absent_sex) == first
        assert _ledger(http["anonymous"]).spent(samples) == spent


def test_two_workers_share_one_ledger(node: Path, cohort: Cohort,
                                      tokens: dict[str, str]) -> None:
    """Two apps on one node (two server workers, or machines behind one address): what one
    spends, the other sees at once, and a budget spent through one is spent for both."""
    with clients(node, tokens) as one, clients(node, tokens) as two:
        samples = NodeStore.open(node).dataset(DATASET).samples
        before = _ledger(two["anonymous"]).spent(samples)
        _ask_all(one, cohort.affordable[:6], cohort.absent_sex)
        after = _ledger(two["anonymous"]).spent(samples)
        assert after != before and after[cohort.absent] > 0
        # the answer `one` gave is the answer `two` gives, at no further cost
        assert _ask_all(two, cohort.affordable[:6], cohort.absent_sex) == \
            _ask_all(one, cohort.affordable[:6], cohort.absent_sex)
        assert _ledger(one["anonymous"]).spent(samples) == after
        _ledger(one["anonymous"]).spend({cohort.absent: 10.0})
        assert _ledger(two["anonymous"]).spent([cohort.absent])[cohort.absent] > 10


def test_an_exhausted_individual_changes_no_answer_below_record_level(
        node: Path, cohort: Cohort, tokens: dict[str, str]) -> None:
    """With everyone else's budget ample, every answer below record level about the alleles the
    exhausted individual carries equals the answer of the same dataset without them."""
    _set_budget(node, 1000.0)
    alleles = cohort.carried[:25] + cohort.carried[-5:]
    assert any(ac < FLOOR for *_, ac in alleles) and any(ac >= 20 for *_, ac in alleles)
    with clients(node, tokens) as http, clients(cohort.without, tokens) as reference:
        _ledger(http["anonymous"]).spend({cohort.absent: 1000.0})
        got = _ask_all(http, alleles, cohort.absent_sex)
        want = _ask_all(reference, alleles, cohort.absent_sex)
    assert got == want
    # and not trivially: with the individual's budget unspent, some answers differ
    unspent = node.parent / "unspent"
    shutil.copytree(cohort.node, unspent, symlinks=True)
    _set_budget(unspent, 1000.0)
    with clients(unspent, tokens) as fresh:
        assert _ask_all(fresh, alleles, cohort.absent_sex) != want


def test_record_level_answers_for_visa_holders_are_unchanged(node: Path, cohort: Cohort,
                                                             tokens: dict[str, str]) -> None:
    with clients(node, tokens) as http:
        ledger = _ledger(http["visa"])
        ledger.spend({cohort.absent: 1000.0})
        samples = NodeStore.open(node).dataset(DATASET).samples
        before = ledger.spent(samples)
        for allele in cohort.carried[:10]:
            pos, ref, alt, _ = allele
            response = http["visa"].get(f"/beacon/g_variants/GRCh38:20:{pos}:{ref}:{alt}"
                                        "/individuals",
                                        params={"requestedGranularity": "record",
                                                "datasets": DATASET})
            (result,) = response.json()["response"]["resultSets"]
            assert result["returnedGranularity"] == "record"
            assert cohort.absent in [r["id"] for r in result["results"]] or \
                result["resultsCount"] > len(result["results"])
            assert result["resultsCount"] >= 1 and result["countPrecision"] == "exact"
        assert ledger.spent(samples) == before  # records are not accounted


@pytest.mark.parametrize("entry", ["g_variants", "individuals", "biosamples"])
def test_every_answer_states_the_policy(node: Path, cohort: Cohort, tokens: dict[str, str],
                                        entry: str) -> None:
    allele = cohort.carried[0]
    with clients(node, tokens) as http:
        for caller, granularity in (("anonymous", "boolean"), ("registered", "count"),
                                    ("visa", "record")):
            pos, ref, alt, _ = allele
            document = http[caller].get(f"/beacon/{entry}", params={
                "referenceName": "20", "start": pos - 1, "referenceBases": ref,
                "alternateBases": alt, "requestedGranularity": granularity}).json()
            policy = document["info"]["disclosure"]
            assert policy["countFloor"] == FLOOR
            defaults = DisclosureSettings()
            assert policy["exposureBudget"]["nats"] == defaults.exposure_budget
            assert policy["exposureBudget"]["publicNats"] == defaults.public_exposure_budget
            assert "all callers and all time" in policy["exposureBudget"]["policy"]
