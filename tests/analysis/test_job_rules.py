"""Issue 13's disclosure and access rules, one test each, end to end: a researcher submits jobs to
the coordinator, the three served nodes each apply their own rules at setup (from their
node.toml, changed here while they run: it is re-read on the next request), and each node's
audit trail is read back through the audit API.

* a node whose cohort is below its `analysis.min_individuals` does not take part, says so, and
  the job finishes over the others;
* cases and controls each at least the node's `disclosure.count_floor`;
* at most n/3 model parameters;
* only variants whose pooled minor allele count reaches the largest `min_mac` are released;
* two jobs whose selections differ by one person: the node holding that person refuses the
  second, so no two results differ by one person (the same cohort again is allowed); nor can
  three jobs whose sums and differences would isolate one person all run;
* a node contributes only for datasets the researcher holds a ControlledAccessGrants visa for,
  and says why not otherwise;
* every job's setup and rounds are in each participant's trail, the refusal in the refuser's.

Each node's selections stay recorded for the differencing rule for the whole session, so the
tests pick cohorts far (by more than `min_individuals`) from every selection other tests make
(the one test on a cohort of about ten has the node forget its selections afterwards).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from genofed.access.audit import AuditEntry
from genofed.access.audit_query import parse_query, select_entries
from genofed.access.db import GovernanceDB
from genofed.access.exposure import ExposureLedger
from genofed.access.pseudonyms import pseudonym
from genofed.analysis import plan_types
from genofed.config.node import NodePaths, load_config, save_config
from tests.analysis.fixtures import LDL, SEIZURES, AnalysisCohort, AnalysisNetwork
from tests.external.analysis.test_jobs import read_results, run_job

pytestmark = pytest.mark.external

#: `analysis.min_individuals` as the fixture's nodes have it (node.toml's default).
MIN_INDIVIDUALS = 50
GWAS_FILE = "gwas-LOINC_2089-1.tsv"


# -- the cohort as the tests' own reading of the Phenopackets (conftest's pheno/covar) -------------
@dataclass(frozen=True)
class Person:
    sample: str
    node: str
    #: "female", "male" (as the cohort filter names them)
    sex: str
    age: float
    ldl: float | None
    seizures: bool


def people(cohort: AnalysisCohort) -> list[Person]:
    node_of = {s: share.node_id for share in cohort.shares for s in share.samples}
    covar = {row[1]: row for row in _rows(cohort.covar)}
    found = []
    for row in _rows(cohort.pheno):
        sample, ldl, seizures = row[1], row[2], row[3]
        sex, age = covar[sample][2], covar[sample][3]
        found.append(Person(sample, node_of[sample], {"1": "male", "2": "female"}.get(sex, ""),
                            float(age), None if ldl == "NA" else float(ldl), seizures == "2"))
    return found


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text().splitlines()[1:]]


# -- running jobs with a node's settings changed -------------------------------------------------
@contextmanager
def node_settings(network: AnalysisNetwork, node_id: str, **changes: int) -> Iterator[None]:
    """node.toml of `node_id` with `section__field=value` changes while the block runs (the
    running node reads them on its next request), restored afterwards."""
    directory = network.share(node_id).node
    original = load_config(directory)
    changed = original.model_copy(deep=True)
    for name, value in changes.items():
        section, field = name.split("__")
        setattr(getattr(changed, section), field, value)
    save_config(directory, changed)
    try:
        yield
    finally:
        save_config(directory, original)


@contextmanager
def selections_forgotten(network: AnalysisNetwork, node_id: str) -> Iterator[None]:
    """The selections `node_id` records while the block runs are removed afterwards: a test of
    another rule on a small cohort would otherwise cut later tests' cohorts into cells the
    differencing check refuses (the node keeps every selection for good)."""
    directory = network.share(node_id).node
    selections = NodePaths(directory, load_config(directory)).analysis / "selections"
    before = set(selections.rglob("*.npy"))
    try:
        yield
    finally:
        for path in set(selections.rglob("*.npy")) - before:
            path.unlink()


def node_status(job: dict[str, Any], node_id: str) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = job["progress"]["nodes"]
    return nodes[node_id]


def refused(job: dict[str, Any], node_id: str) -> str:
    """The refusing node's message, after checking that it shows nothing but that."""
    status = node_status(job, node_id)
    assert status["status"] == "not taking part", status
    assert set(status) == {"country", "status", "message"}, status  # no size, no populations
    assert node_id not in job["participants"]
    message: str = status["message"]
    return message


def meta(directory: Path, name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((directory / name).read_text())
    return document


def rows_of(path: Path) -> list[str]:
    """A result table's lines, sorted (rows at one position come in the job's variant order,
    which follows its random job key)."""
    return sorted(path.read_text().splitlines())


def minor_allele_counts(freq_tsv: Path) -> dict[tuple[str, int, str, str], int]:
    """Pooled minor allele count of every released variant (freq.tsv's group `all`)."""
    table = read_results(freq_tsv)
    everyone = table["group"] == "all"
    alt = table["alt_count"][everyone].astype(int)
    observed = table["obs_count"][everyone].astype(int)
    keys = zip(table["chromosome"][everyone], table["base_pair_location"][everyone].astype(int),
               table["ref"][everyone], table["alt"][everyone], strict=True)
    return {(str(c), int(p), str(r), str(a)): int(m) for (c, p, r, a), m in
            zip(keys, np.minimum(alt, observed - alt), strict=True)}


# -- jobs shared by several tests ---------------------------------------------------------------
@dataclass(frozen=True)
class Finished:
    job: dict[str, Any]
    results: Path


@pytest.fixture(scope="module")
def freq_job(analysis_network: AnalysisNetwork,
             tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """Allele frequencies over everyone, every node at its default settings."""
    out = tmp_path_factory.mktemp("rules-freq")
    job = run_job(analysis_network, {"type": "freq"}, out)
    assert job["state"] == "done", job["message"]
    assert sorted(job["participants"]) == sorted(analysis_network.node_ids)
    return Finished(job, out)


@dataclass(frozen=True)
class OnePersonApart:
    """Two cohort filters whose selections differ by one person of the whole cohort."""

    first: dict[str, Any]
    second: dict[str, Any]
    person: Person
    #: Each node's individuals in `first`'s selection.
    sizes: dict[str, int]


def one_person_apart(cohort: AnalysisCohort) -> OnePersonApart:
    """Filters {sex, hpo, maxAge} (or minAge) whose selections differ by one person: an age
    that only one person of the filtered group has, in the whole cohort. Of the candidates, the
    one whose smaller selection is largest at its smallest node (every node must take part)."""
    everyone = people(cohort)
    nodes = [share.node_id for share in cohort.shares]
    best: OnePersonApart | None = None
    for sex in ("female", "male"):
        for hpo in ([], [SEIZURES]):
            group = [p for p in everyone if p.sex == sex and (p.seizures or not hpo)]
            ages = Counter(p.age for p in group)
            for age, count in sorted(ages.items()):
                if count != 1:
                    continue
                person = next(p for p in group if p.age == age)
                younger = [a for a in ages if a < age]
                older = [a for a in ages if a > age]
                for bound, first, kept in (
                        ("maxAge", max(younger, default=None), [p for p in group if p.age < age]),
                        ("minAge", min(older, default=None), [p for p in group if p.age > age])):
                    if first is None:
                        continue
                    sizes = Counter(p.node for p in kept)
                    smallest = min(sizes[n] for n in nodes)
                    if best is not None and smallest <= min(best.sizes.values()):
                        continue
                    base: dict[str, Any] = {"sex": sex, "hpo": hpo}
                    best = OnePersonApart({**base, bound: first}, {**base, bound: age}, person,
                                          {n: sizes[n] for n in nodes})
    assert best is not None, "no age is held by exactly one person of any group"
    return best


@pytest.fixture(scope="module")
def apart(analysis_network: AnalysisNetwork) -> OnePersonApart:
    found = one_person_apart(analysis_network.cohort)
    # Every node takes part in the first job (and its selection is far from everyone's).
    assert min(found.sizes.values()) >= MIN_INDIVIDUALS + 10, found
    return found


def ldl_job(cohort: dict[str, Any]) -> dict[str, Any]:
    return {"type": "gwas-linear", "cohort": cohort, "trait": {"measurement": LDL},
            "covariates": ["age"]}  # sex may be one value only in the cohort


@pytest.fixture(scope="module")
def linear_job(analysis_network: AnalysisNetwork, apart: OnePersonApart,
               tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """A linear GWAS of LDL over the first of the two cohorts one person apart."""
    out = tmp_path_factory.mktemp("rules-linear")
    job = run_job(analysis_network, ldl_job(apart.first), out)
    assert job["state"] == "done", job["message"]
    assert sorted(job["participants"]) == sorted(analysis_network.node_ids)
    return Finished(job, out)


@pytest.fixture(scope="module")
def partial_grant_job(analysis_network: AnalysisNetwork,
                      tmp_path_factory: pytest.TempPathFactory) -> Finished:
    """Allele frequencies for a researcher granted fi-cohort and se-cohort, not nl-cohort."""
    out = tmp_path_factory.mktemp("rules-partial")
    token = analysis_network.token(granted=["fi-cohort", "se-cohort"])
    return Finished(run_job(analysis_network, {"type": "freq"}, out, token), out)


# -- the rules ------------------------------------------------------------------------------------
def test_a_node_below_its_minimum_group_size_says_so_and_the_job_goes_on_without_it(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    # Before the other tests: a node checks differencing first, and any earlier selection of
    # the dataset other than the whole of it is closer than a minimum above the dataset's size.
    share = analysis_network.share("se-node")
    minimum = len(share.samples) + 1
    with node_settings(analysis_network, "se-node", analysis__min_individuals=minimum):
        job = run_job(analysis_network, {"type": "freq"}, tmp_path)
    assert refused(job, "se-node") == (f"the cohort here has fewer than {minimum} individuals "
                                       "(the node's minimum for an analysis)")
    assert job["state"] == "done", job["message"]
    assert job["participants"] == ["fi-node", "nl-node"]
    document = meta(tmp_path, "freq-meta.yaml")
    assert document["nodes"] == ["fi-node", "nl-node"]
    assert document["datasets"] == ["fi-cohort", "nl-cohort"]
    others = sum(len(analysis_network.share(n).samples) for n in ("fi-node", "nl-node"))
    assert document["individuals"] == others
    everyone = read_results(tmp_path / "freq.tsv")
    counts = everyone["obs_count"].astype(int) // 2 + everyone["missing"].astype(int)
    assert counts[everyone["group"] == "all"].max() == others


def test_cases_and_controls_below_the_count_floor_keep_a_node_out(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    cases = sum(p.seizures for p in people(analysis_network.cohort) if p.node == "nl-node")
    floor = cases + 1   # controls are the larger group
    with node_settings(analysis_network, "nl-node", disclosure__count_floor=floor):
        job = run_job(analysis_network, {"type": "gwas-logistic", "trait": {"hpo": SEIZURES}},
                      tmp_path)
    # Setup decides before any plan exists: the refusal stands whatever becomes of the job.
    message = refused(job, "nl-node")
    assert message == f"cases and controls must each number at least {floor} here"
    assert str(cases) not in message
    for node_id in ("fi-node", "se-node"):
        assert node_status(job, node_id)["status"] == "ok"
    if hasattr(plan_types, "LogisticPlan"):
        assert job["state"] == "done", job["message"]
        assert job["participants"] == ["fi-node", "se-node"]
        document = meta(tmp_path, "gwas-HP_0002069.tsv-meta.yaml")
        assert document["datasets"] == ["fi-cohort", "se-cohort"]


def test_more_parameters_than_a_third_of_the_individuals_keep_a_node_out(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    # About ten women of an age range at nl-node, let in by a minimum lowered to 5. One sex
    # keeps the selection inside every earlier one (all, women, those with an LDL), so no
    # earlier job cuts it into cells small enough for the differencing check to refuse it;
    # the node forgets it afterwards, for the same reason, for the later tests.
    ages = sorted(p.age for p in people(analysis_network.cohort)
                  if p.node == "nl-node" and p.ldl is not None and p.sex == "female")
    low, high, n = next((low, high, n) for low, high, n in
                        ((low, high, sum(low <= a <= high for a in ages))
                         for low in ages for high in ages if high >= low) if 9 <= n <= 11)
    cohort = {"sex": "female", "minAge": low, "maxAge": high}
    spec: dict[str, Any] = {"type": "gwas-linear", "cohort": cohort,
                            "trait": {"measurement": LDL}, "covariates": ["sex", "age"]}
    with node_settings(analysis_network, "nl-node", analysis__min_individuals=5), \
            selections_forgotten(analysis_network, "nl-node"):
        job = run_job(analysis_network, spec, tmp_path / "four")
        # Intercept, sex, age and the genotype: 4 > n / 3.
        assert refused(job, "nl-node") == (f"4 model parameters for {n} individuals: at most "
                                           "one per three individuals")
        # The same individuals with 2 parameters are let in (the job as a whole needs two
        # nodes and fails: the others hold fewer than their minimum).
        fewer = run_job(analysis_network, {**spec, "covariates": []}, tmp_path / "two")
        assert node_status(fewer, "nl-node")["status"] == "ok"
        assert node_status(fewer, "nl-node")["individuals"] == n
    for attempt in (job, fewer):
        assert attempt["state"] == "failed"
        for node_id in ("fi-node", "se-node"):
            assert refused(attempt, node_id) == (
                f"the cohort here has fewer than {MIN_INDIVIDUALS} individuals (the node's "
                "minimum for an analysis)")


def test_only_variants_reaching_the_largest_minor_allele_count_are_released(
        analysis_network: AnalysisNetwork, freq_job: Finished, tmp_path: Path) -> None:
    default = minor_allele_counts(freq_job.results / "freq.tsv")
    assert len(default) > 3000
    assert min(default.values()) >= 10
    assert meta(freq_job.results, "freq-meta.yaml")["min_mac"] == 10
    # One node asking for 60 raises it for the whole job.
    with node_settings(analysis_network, "nl-node", analysis__min_mac=60):
        job = run_job(analysis_network, {"type": "freq"}, tmp_path)
    assert job["state"] == "done", job["message"]
    assert sorted(job["participants"]) == sorted(analysis_network.node_ids)
    assert node_status(job, "nl-node")["minMac"] == 60
    raised = minor_allele_counts(tmp_path / "freq.tsv")
    assert min(raised.values()) >= 60
    assert set(raised) == {key for key, mac in default.items() if mac >= 60}
    assert any(10 <= mac < 60 for mac in default.values())
    document = meta(tmp_path, "freq-meta.yaml")
    assert document["min_mac"] == 60
    assert document["variants_released"] == len(raised)


def test_released_results_spend_each_individuals_exposure_budget(
        analysis_network: AnalysisNetwork, freq_job: Finished) -> None:
    """A published result exposes the people in it: each node charges its individuals for the
    released variants they carry, from the budgets its Beacon answers spend too, once per job
    (a repeated reveal charges nothing)."""
    for share in analysis_network.cohort.shares:
        db = GovernanceDB.for_node(share.node)
        try:
            budget = load_config(share.node).disclosure.exposure_budget
            ledger = ExposureLedger(db, lambda: budget)  # noqa: B023 (used in this iteration)
            spent = ledger.spent(share.samples)
            assert set(spent) == set(share.samples), share.node_id
            assert all(value > 0 for value in spent.values())
            assert not ledger.spend_once(f"analysis|{freq_job.job['id']}", {"x": 1.0})
            assert ledger.spent(share.samples) == spent
        finally:
            db.close()


def test_two_jobs_one_person_apart_cannot_reveal_that_person(
        analysis_network: AnalysisNetwork, apart: OnePersonApart, linear_job: Finished,
        tmp_path: Path) -> None:
    holder = apart.person.node
    dataset = analysis_network.share(holder).dataset
    first = meta(linear_job.results, GWAS_FILE + "-meta.yaml")
    assert first["sample_size"] == sum(apart.sizes.values())
    # The second cohort has that one person more: the node holding them refuses, contributing
    # nothing; the others' selections are the same as before, so they take part.
    second = run_job(analysis_network, ldl_job(apart.second), tmp_path / "second")
    assert refused(second, holder) == differencing_refusal(dataset)
    assert second["state"] == "done", second["message"]
    others = sorted(n for n in analysis_network.node_ids if n != holder)
    assert second["participants"] == others
    second_meta = meta(tmp_path / "second", GWAS_FILE + "-meta.yaml")
    assert second_meta["nodes"] == others
    assert dataset not in second_meta["datasets"]
    # Re-running the first cohort reveals nothing new, and is allowed: the same result.
    again = run_job(analysis_network, ldl_job(apart.first), tmp_path / "again")
    assert again["state"] == "done", again["message"]
    assert sorted(again["participants"]) == sorted(analysis_network.node_ids)
    assert rows_of(tmp_path / "again" / GWAS_FILE) == rows_of(linear_job.results / GWAS_FILE)
    # So no two results differ by that one person: they differ by a whole node, or not at all.
    sizes = [first["sample_size"], second_meta["sample_size"],
             meta(tmp_path / "again", GWAS_FILE + "-meta.yaml")["sample_size"]]
    differences = {abs(a - b) for a in sizes for b in sizes}
    assert differences == {0, apart.sizes[holder]}
    assert apart.sizes[holder] >= MIN_INDIVIDUALS


def differencing_refusal(dataset: str) -> str:
    return (f"{dataset}: together with the cohorts of earlier jobs here, this one would set "
            f"apart a group of fewer than {MIN_INDIVIDUALS} individuals (sums over the jobs "
            "could reveal them); choose a broader or the same cohort")


def test_three_jobs_whose_sums_isolate_one_person_cannot_all_run(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    """Men with seizures aged up to A, from A + 2, and of any age: each pair of selections
    differs by many, yet the third minus the first two is the one man aged A + 1. The node
    holding him refuses the third job: with the first two, it would set him apart."""
    cohort = analysis_network.cohort
    datasets = ["fi-cohort", "se-cohort"]
    nodes = ["fi-node", "se-node"]
    group = [p for p in people(cohort) if p.sex == "male" and p.seizures and p.node in nodes]
    ages = Counter(p.age for p in group)
    found = None
    for age, count in sorted(ages.items()):
        below = Counter(p.node for p in group if p.age < age)
        above = Counter(p.node for p in group if p.age > age)
        if count == 1 and min(below[n] for n in nodes) >= MIN_INDIVIDUALS + 5 \
                and min(above[n] for n in nodes) >= MIN_INDIVIDUALS + 5:
            found = age
            break
    assert found is not None, "no age splits men with seizures into two large halves"
    lone = next(p for p in group if p.age == found)
    younger = max(a for a in ages if a < found)
    older = min(a for a in ages if a > found)
    base: dict[str, Any] = {"sex": "male", "hpo": [SEIZURES]}
    jobs = [run_job(analysis_network, {"type": "freq", "datasets": datasets,
                                       "cohort": {**base, **bounds}}, tmp_path / str(i))
            for i, bounds in enumerate([{"maxAge": younger}, {"minAge": older}, {}])]
    assert [j["state"] for j in jobs[:2]] == ["done", "done"], [j["message"] for j in jobs]
    third = jobs[2]
    holder_dataset = analysis_network.share(lone.node).dataset
    assert refused(third, lone.node) == differencing_refusal(holder_dataset)
    # The other node's third selection is the union of its first two: it splits nothing.
    assert third["state"] == "failed" and third["participants"] == [
        n for n in nodes if n != lone.node]


def test_a_node_contributes_only_for_datasets_the_researcher_is_granted(
        analysis_network: AnalysisNetwork, partial_grant_job: Finished, tmp_path: Path) -> None:
    job = partial_grant_job.job
    assert refused(job, "nl-node").startswith(
        "no dataset here may be analysed by this researcher: nl-cohort: no "
        "ControlledAccessGrants visa for this dataset")
    assert job["state"] == "done", job["message"]
    assert job["participants"] == ["fi-node", "se-node"]
    document = meta(partial_grant_job.results, "freq-meta.yaml")
    assert document["nodes"] == ["fi-node", "se-node"]
    assert document["datasets"] == ["fi-cohort", "se-cohort"]
    # Granted nothing: every node says why, and the job says it in one message.
    with_nothing = run_job(analysis_network, {"type": "freq"}, tmp_path,
                           analysis_network.token(granted=[]))
    assert with_nothing["state"] == "failed"
    assert with_nothing["participants"] == []
    message = with_nothing["message"]
    assert message.startswith("0 node(s) can take part, and a job needs at least two")
    for share in analysis_network.cohort.shares:
        reason = (f"{share.node_id}: no dataset here may be analysed by this researcher: "
                  f"{share.dataset}: no ControlledAccessGrants visa for this dataset")
        assert reason in message
        assert refused(with_nothing, share.node_id).startswith(reason.split(": ", 1)[1])


# -- the audit trails -----------------------------------------------------------------------------
def analysis_trail(network: AnalysisNetwork, node_id: str, job_id: str) -> list[AuditEntry]:
    """The node's `analysis` records of one job, read back through the audit API."""
    db = GovernanceDB.for_node(network.share(node_id).node)
    try:
        query = parse_query(db, actions=["analysis"])
        return [e for e in select_entries(db, query) if e.detail.startswith(f"job={job_id} ")]
    finally:
        db.close()


def rounds(trail: list[AuditEntry]) -> list[tuple[str, str]]:
    """(round, step) of each record, from its detail "job=... round=... step=... ..."."""
    found = []
    for entry in trail:
        fields = dict(part.split("=", 1) for part in entry.detail.split())
        found.append((fields["round"], fields.get("step", "")))
    return found


def test_every_job_and_round_is_in_each_nodes_audit_trail(
        analysis_network: AnalysisNetwork, freq_job: Finished, linear_job: Finished,
        partial_grant_job: Finished) -> None:
    researcher = pseudonym(analysis_network.issuer.url,
                           analysis_network.issuer.user("alice").sub)
    for finished, steps in ((freq_job, ["counts"]), (linear_job, ["linear"])):
        job = finished.job
        for node_id in job["participants"]:
            trail = analysis_trail(analysis_network, node_id, job["id"])
            assert rounds(trail) == [("setup", ""), ("variants", ""),
                                     *(("statistics", step) for step in steps),
                                     ("reveal", "release")], (job["type"], node_id)
            dataset = analysis_network.share(node_id).dataset
            for entry in trail:
                assert (entry.action, entry.decision, entry.dataset_id, entry.subject) == \
                    ("analysis", "allow", dataset, researcher), entry
            assert trail[0].detail == f"job={job['id']} round=setup type={job['type']}"
    # The researcher without a grant for nl-cohort: a deny there, and nothing after it; the
    # two granted nodes record the job as the others do.
    job = partial_grant_job.job
    denied = analysis_trail(analysis_network, "nl-node", job["id"])
    assert [(e.action, e.decision, e.dataset_id, e.subject) for e in denied] == \
        [("analysis", "deny", "nl-cohort", researcher)]
    assert denied[0].reason.startswith("no ControlledAccessGrants visa for this dataset")
    assert rounds(denied) == [("setup", "")]
    for node_id in job["participants"]:
        trail = analysis_trail(analysis_network, node_id, job["id"])
        assert rounds(trail) == [("setup", ""), ("variants", ""), ("statistics", "counts"),
                                 ("reveal", "release")]
        assert {e.decision for e in trail} == {"allow"}
