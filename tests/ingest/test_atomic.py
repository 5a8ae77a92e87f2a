"""Atomic publish and idempotence: a killed ingest leaves the previous version serving intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pytest

from genofed.store import NodeStore
from tests.support import Cohort, genofed


def read_everything(node: Path, dataset: str) -> tuple[str, pa.Table, pa.Table, bytes]:
    ds = NodeStore.open(node).dataset(dataset)
    calls = ds.genotype_block(slice(0, ds.manifest.n_records)).calls
    return ds.version, ds.sites, ds.individuals, calls.tobytes()


@pytest.fixture(scope="module")
def bigger_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Large enough that ingest takes a while (so it can be killed midway), same samples' count
    as nothing else: a different input for the same dataset id."""
    from genofed.sim import simulate_cohort

    out = tmp_path_factory.mktemp("bigger")
    summary = simulate_cohort(out, samples=600, seed=5, length_mb=2.0, overwrite=True)
    return summary.vcf


def test_sigkill_midway_keeps_previous_version(node: Path, cohort: Cohort,
                                               bigger_cohort: Path) -> None:
    genofed("ingest", node, "--dataset", "d", "--vcf", cohort.vcf, check=True)
    before = read_everything(node, "d")
    root = node / "datasets" / "d"

    process = subprocess.Popen([sys.executable, "-m", "genofed", "ingest", node, "--dataset",
                                "d", "--vcf", bigger_cohort, "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    deadline = time.monotonic() + 120
    try:
        # Wait until the new version is being written: genotypes spilled by a worker.
        while not any(root.glob(".staging-*/spill/*.npy")):
            assert process.poll() is None, "ingest finished before it could be interrupted"
            assert time.monotonic() < deadline
            time.sleep(0.005)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the parent and its workers, no cleanup
        process.wait()
    assert any(root.glob(".staging-*")), "the killed ingest had started writing"
    assert read_everything(node, "d") == before

    rerun = genofed("ingest", node, "--dataset", "d", "--vcf", bigger_cohort, check=True)
    assert "Ingested d v2" in " ".join(rerun.stdout.split())
    assert not any(root.glob(".staging-*")), "the stale staging directory was cleaned up"
    after = NodeStore.open(node).dataset("d")
    assert after.version == "v2" and after.manifest.n_samples == 600


def test_reingesting_the_same_input_is_idempotent(node: Path, cohort: Cohort) -> None:
    args = ("ingest", node, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
            "--phenopackets", cohort.phenopackets, "--metadata", cohort.metadata)
    genofed(*args, check=True)
    first = read_everything(node, cohort.dataset_id)
    again = genofed(*args, check=True)
    assert "unchanged" in again.stdout
    assert read_everything(node, cohort.dataset_id) == first
    assert sorted(p.name for p in (node / "datasets" / cohort.dataset_id / "versions").iterdir()) \
        == ["v1"]


def test_a_new_input_publishes_a_new_version_and_prunes_old_ones(node: Path, cohort: Cohort,
                                                                 tmp_path: Path) -> None:
    from genofed.ingest import ingest_dataset

    for populations in (None, cohort.populations):
        ingest_dataset(node, "d", cohort.vcf, populations=populations)
    ingest_dataset(node, "d", cohort.vcf, phenopackets=cohort.phenopackets)
    ds = NodeStore.open(node).dataset("d")
    assert ds.version == "v3" and "female" in ds.manifest.groups
    versions = sorted(p.name for p in (node / "datasets" / "d" / "versions").iterdir())
    assert versions == ["v2", "v3"]  # the current one and its predecessor
