"""Schemathesis against /openapi.json, as a client generator would try it: every check of the
installed version, every phase, on every operation of the node (Beacon, access, catalogue,
htsget) and of the hub (the Beacon network over a member node served on loopback). The
document and the servers agree: no server error, every status declared with its error
envelope, every request the document calls valid accepted and every invalid one refused, 405
with `Allow` (:mod:`tests.beacon.contract` says what the generator is told beside the document)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from schemathesis.checks import CHECKS as REGISTERED
from schemathesis.checks import load_all_checks

from genofed.beacon.access import QueryBudget
from genofed.config.node import init_node
from genofed.federation.network import add_member, create_network, join_network, member_for_node
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.server.loopback import LoopbackServer
from genofed.sim import simulate_cohort
from tests.beacon.contract import CHECKS, Report, run

#: Examples per operation and phase: enough to find what the contract failures of issue 11
#: were, bounded so that node and hub take a few minutes on two cores.
EXAMPLES = 10


@pytest.fixture(scope="module")
def fuzz_app(beacon_node: Any) -> Any:
    return create_app(beacon_node.node_dir, budget=QueryBudget(10**9, 3600))


@pytest.fixture(scope="module")
def hub_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The coordinator over one member node (a public and a registered dataset, both with a
    gene table), served on loopback with a budget fuzzing cannot spend."""
    root = tmp_path_factory.mktemp("fuzz-network")
    node_dir = root / "node"
    init_node(node_dir, node_id="fuzz-member", country="FI")
    for dataset_id, tier, seed in (("net-public", "public", 41), ("net-registered",
                                                                   "registered", 42)):
        cohort = simulate_cohort(root / dataset_id, samples=30, seed=seed, length_mb=0.1,
                                 dataset_id=dataset_id, access_tier=tier)
        ingest_dataset(node_dir, dataset_id, cohort.vcf, phenopackets=cohort.phenopackets_dir,
                       metadata=cohort.dataset_metadata, populations=cohort.populations,
                       genes=cohort.out_dir / "genes.bed")
    network_file = root / "network.toml"
    create_network(network_file, "fuzz-net")
    with LoopbackServer() as server:
        add_member(network_file, member_for_node(node_dir, server.url))
        join_network(node_dir, network_file)
        server.start(create_app(node_dir, budget=QueryBudget(10**9, 3600)))
        yield create_hub_app(network_file, node_dir, timeout=10.0)


def test_openapi_lists_every_endpoint(fuzz_app: Any) -> None:
    paths = TestClient(fuzz_app).get("/openapi.json").json()["paths"]
    for path in ("/beacon/g_variants", "/beacon/g_variants/{id}/individuals",
                 "/beacon/individuals/{id}/g_variants", "/beacon/datasets/{id}/g_variants",
                 "/beacon/cohorts/{id}", "/beacon/filtering_terms", "/beacon/map"):
        assert path in paths
    assert sum(len(v) for v in paths.values()) >= 40


def test_the_fuzz_runs_every_check() -> None:
    """Every check the installed schemathesis has (a new version's new checks join here)."""
    load_all_checks()
    assert set(REGISTERED.get_all_names()) - {"api_error_envelope"} == set(CHECKS)


def _assert_conforms(report: Report, at_least: int) -> None:
    assert len(report.operations) >= at_least, sorted(report.operations)
    assert not report.failures and not report.errors, report.summary()


def test_no_server_error(fuzz_app: Any) -> None:
    """Every operation of the node, GET and POST, with generated parameters and bodies: no
    server error, and every check of the contract holds."""
    report = run(fuzz_app, max_examples=EXAMPLES,
                 without_gene_table=frozenset({"ds-public", "ds-controlled"}))
    _assert_conforms(report, at_least=60)


#: The hub's analysis job submission, fuzzed on its own: every valid body starts a job.
JOB_SUBMISSION = ("POST", "/analysis/jobs")


def test_hub_meets_its_document(hub_app: Any) -> None:
    """Every other operation of the hub: the same, through the fan-out to a real member."""
    report = run(hub_app, max_examples=EXAMPLES, but=JOB_SUBMISSION)
    _assert_conforms(report, at_least=48)


def test_hub_job_submission_meets_its_document(hub_app: Any) -> None:
    """One model per job type (genofed.analysis.requests): the document states every rule of
    a job spec, so whatever it allows is accepted and whatever it does not is refused."""
    report = run(hub_app, max_examples=EXAMPLES, only=JOB_SUBMISSION)
    _assert_conforms(report, at_least=1)


def test_hub_documents_what_it_mirrors(hub_app: Any) -> None:
    """The hub's mirrored queries say what the node's say: the same parameters, bodies and
    statuses (with the network's own failures)."""
    document = TestClient(hub_app).get("/openapi.json").json()
    get = document["paths"]["/network/beacon/g_variants/{id}/individuals"]["get"]
    assert [p["name"] for p in get["parameters"]][:2] == ["id", "requestedGranularity"]
    assert "pattern" in get["parameters"][0]["schema"]
    post = document["paths"]["/network/beacon/cohorts/{id}"]["post"]
    assert "CollectionRequestBody" in str(post["requestBody"])
    assert {"400", "429", "502", "504"} <= set(post["responses"])
    assert "CollectionRequestBody" in document["components"]["schemas"]
    operation_ids = [op["operationId"] for ops in document["paths"].values()
                     for op in ops.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_documents_promise_no_422(fuzz_app: Any, hub_app: Any) -> None:
    """Validation errors answer 400 in the API's envelope; no operation promises FastAPI's
    422 any more."""
    for app in (fuzz_app, hub_app):
        document = TestClient(app).get("/openapi.json").json()
        assert "422" not in str([op.get("responses") for ops in document["paths"].values()
                                 for op in ops.values()])
        assert "HTTPValidationError" not in document.get("components", {}).get("schemas", {})
