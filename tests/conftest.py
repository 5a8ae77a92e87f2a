"""Fixtures shared by the whole suite: small simulated cohorts and nodes."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support import Cohort

if TYPE_CHECKING:
    from tests.s3 import S3Server

#: The 3-node analysis cohort and its served network, for tests/analysis and the plink2
#: comparisons under tests/external/analysis alike.
pytest_plugins = ["tests.analysis.fixtures", "tests.portal.network"]


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """A small simulated cohort (120 individuals x 0.5 Mb), built once per test session."""
    from genofed.sim import simulate_cohort

    out = tmp_path_factory.mktemp("cohort")
    summary = simulate_cohort(out, samples=120, seed=11, length_mb=0.5, dataset_id="test-cohort",
                              access_tier="registered", overwrite=True)
    return Cohort(out, summary.dataset_id)


@pytest.fixture(scope="session")
def ingested(tmp_path_factory: pytest.TempPathFactory, cohort: Cohort) -> Path:
    """A node holding the small cohort with phenopackets, metadata and populations. Read-only."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset

    node = tmp_path_factory.mktemp("node") / "node"
    init_node(node, node_id="test-node", country="FI")
    ingest_dataset(node, cohort.dataset_id, cohort.vcf, phenopackets=cohort.phenopackets,
                   metadata=cohort.metadata, populations=cohort.populations,
                   genes=cohort.genes)
    return node


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """An S3 server (moto) on loopback, with dummy AWS credentials in the environment."""
    from tests.s3 import ENVIRONMENT, S3Server

    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
            patch.delenv(name, raising=False)
        for name, value in ENVIRONMENT.items():
            patch.setenv(name, value)
        server = S3Server()
        try:
            yield server
        finally:
            server.stop()


@pytest.fixture(scope="session")
def ingested_s3(tmp_path_factory: pytest.TempPathFactory, cohort: Cohort, s3: S3Server) -> Path:
    """The node of `ingested`, its datasets kept in S3. Read-only."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset
    from tests.s3 import keep_datasets_in_s3

    node = tmp_path_factory.mktemp("node-s3") / "node"
    init_node(node, node_id="test-node", country="FI")
    keep_datasets_in_s3(node, s3)
    ingest_dataset(node, cohort.dataset_id, cohort.vcf, phenopackets=cohort.phenopackets,
                   metadata=cohort.metadata, populations=cohort.populations,
                   genes=cohort.genes)
    # Served as by a machine that did not ingest: everything comes from the bucket.
    shutil.rmtree(node / "cache")
    return node


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local OIDC issuer on real loopback HTTP with the demo users (alice: ResearcherStatus;
    bob: accepted terms only; dana: both)."""
    from genofed.server.issuer import running_issuer

    with running_issuer(tmp_path_factory.mktemp("issuer") / "issuer") as running:
        yield running


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A fresh, empty node."""
    from genofed.config.node import init_node

    path = tmp_path / "node"
    init_node(path, node_id="test-node", country="FI")
    return path
