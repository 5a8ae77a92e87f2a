"""Fixtures shared by the whole suite: the shared test data, small simulated cohorts, nodes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("GENOFED_SHARED", REPO.parent / "shared"))
HTSGET_DATA = SHARED / "testdata" / "htsget"


def genofed(*args: str | Path, check: bool = False, timeout: float = 300,
            **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the real command line in a subprocess (exit codes, stderr and signals are real)."""
    result = subprocess.run([sys.executable, "-m", "genofed", *map(str, args)],
                            capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "COLUMNS": "200", "NO_COLOR": "1"},
                            **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"genofed {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result


def bcftools(*args: str | Path) -> str:
    return subprocess.run(["bcftools", *map(str, args)], capture_output=True, text=True,
                          check=True).stdout


@dataclass(frozen=True)
class Cohort:
    dir: Path
    dataset_id: str

    @property
    def vcf(self) -> Path:
        return self.dir / "cohort.vcf.gz"

    @property
    def phenopackets(self) -> Path:
        return self.dir / "phenopackets"

    @property
    def metadata(self) -> Path:
        return self.dir / "dataset.json"

    @property
    def populations(self) -> Path:
        return self.dir / "populations.tsv"


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
                   metadata=cohort.metadata, populations=cohort.populations)
    return node


@pytest.fixture
def node(tmp_path: Path) -> Path:
    """A fresh, empty node."""
    from genofed.config.node import init_node

    path = tmp_path / "node"
    init_node(path, node_id="test-node", country="FI")
    return path


def require_tool(name: str) -> None:
    if shutil.which(name) is None:
        pytest.fail(f"{name} is not installed: run scripts/bootstrap.sh (it installs the Debian "
                    "tools the tests compare against)")
