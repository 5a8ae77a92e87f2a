"""Ingest's work manager: tasks run in the calling process with one worker (a debugger can step
through them) and in forked workers otherwise, with the same results, byte for byte."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from genofed.config.node import init_node
from genofed.errors import IngestError
from genofed.ingest import ingest_dataset
from genofed.ingest.counting import sample_classes
from genofed.ingest.sources import VcfSource
from genofed.ingest.work import WorkerContext, WorkManager
from genofed.store.genotypes import ChunkWriter
from tests.support import Cohort


def _context(tmp_path: Path, cohort: Cohort) -> WorkerContext:
    import numpy as np

    source = VcfSource(cohort.vcf)
    n = len(source.header.samples)
    return WorkerContext(source, tmp_path, sample_classes(np.ones((n, 1), np.float32)),
                         ChunkWriter(tmp_path, n))


def _pid(_context: WorkerContext, _item: int) -> int:
    return os.getpid()


def _fail(_context: WorkerContext, item: int) -> int:
    raise ValueError(f"task {item} failed")


def _die(_context: WorkerContext, _item: int) -> int:
    os._exit(3)


def test_one_worker_runs_tasks_in_this_process(tmp_path: Path, cohort: Cohort) -> None:
    with WorkManager(_context(tmp_path, cohort), workers=1) as work:
        assert work.in_process
        assert work.submit(_pid, 0).result() == os.getpid()
        with pytest.raises(ValueError, match="task 7 failed"):
            work.submit(_fail, 7).result()


def test_workers_run_tasks_in_forked_processes(tmp_path: Path, cohort: Cohort) -> None:
    with WorkManager(_context(tmp_path, cohort), workers=2) as work:
        assert work.submit(_pid, 0).result() != os.getpid()
        with pytest.raises(ValueError, match="task 7 failed"):
            work.submit(_fail, 7).result()


def test_a_dead_worker_is_an_ingest_error(tmp_path: Path, cohort: Cohort) -> None:
    with pytest.raises(IngestError, match="worker process died"), \
            WorkManager(_context(tmp_path, cohort), workers=2) as work:
        work.submit(_die, 0).result()


def test_in_process_and_pooled_ingests_store_the_same_bytes(tmp_path: Path,
                                                            cohort: Cohort) -> None:
    stores = []
    for workers in (1, 2):
        node = tmp_path / f"node-{workers}"
        init_node(node, node_id=f"node-{workers}", country="FI")
        result = ingest_dataset(node, cohort.dataset_id, cohort.vcf,
                                phenopackets=cohort.phenopackets, metadata=cohort.metadata,
                                populations=cohort.populations, workers=workers)
        stores.append(result.version_dir)
    one, two = stores
    files = sorted(p.relative_to(one) for p in (one / "genotypes.zarr").rglob("*")
                   if p.is_file())
    assert files == sorted(p.relative_to(two) for p in (two / "genotypes.zarr").rglob("*")
                           if p.is_file())
    for relative in [*files, Path("sites.parquet")]:
        assert (one / relative).read_bytes() == (two / relative).read_bytes(), relative
