"""Ingest on a dask.distributed cluster (`[ingest] scheduler`, `--scheduler`): a real LocalCluster
of two worker processes on loopback parses and writes the pieces of a VCF, and the node stores
the bytes a single-process ingest stores. An unreachable scheduler, a bad line midway and a
killed worker each fail the ingest saying so, and leave the node as it was."""

from __future__ import annotations

import gzip
import os
from collections.abc import Iterator
from pathlib import Path

import dask
import distributed
import pytest

from genofed.config.node import init_node, load_config, save_config
from genofed.errors import IngestClusterError, IngestError, InputError
from genofed.formats.bgzf import BgzfWriter
from genofed.ingest import ingest_dataset, sources
from genofed.ingest.counting import sample_classes
from genofed.ingest.work import Cluster, WorkerContext, WorkManager
from genofed.store import NodeStore
from genofed.store.genotypes import VARIANT_CHUNK, ChunkWriter
from tests.ingest.test_bad_input import snapshot
from tests.support import Cohort, genofed, refused_port

#: Small pieces, so that the input spans many of them (the default is 48 MB of text).
PIECE_PAYLOAD = 256 << 10


@pytest.fixture(scope="module")
def cluster() -> Iterator[distributed.LocalCluster]:
    # A worker that dies fails its task at once (Dask's default retries it on up to three
    # fresh workers, seconds each): the killed-worker test needs no more.
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        started = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address=None)
    with started:
        yield started


@pytest.fixture(scope="module")
def observer(cluster: distributed.LocalCluster) -> Iterator[distributed.Client]:
    """A client of the test's own, to see where tasks ran."""
    with distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def long_cohort(tmp_path_factory: pytest.TempPathFactory) -> Cohort:
    """Few samples, many records (several genotype chunks), some calls missing (mask chunks,
    unphased calls)."""
    from genofed.sim import simulate_cohort

    out = tmp_path_factory.mktemp("long")
    summary = simulate_cohort(out, samples=20, seed=7, length_mb=8.0, missing_rate=0.02,
                              population={"CEU": 10, "YRI": 10}, dataset_id="long",
                              overwrite=True)
    return Cohort(out, summary.dataset_id)


@pytest.fixture
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "PIECE_PAYLOAD", PIECE_PAYLOAD)


def _ingest(node: Path, cohort: Cohort, *, workers: int | None = None,
            scheduler: str | None = None) -> Path:
    init_node(node, node_id=node.name, country="FI")
    result = ingest_dataset(node, cohort.dataset_id, cohort.vcf,
                            phenopackets=cohort.phenopackets, metadata=cohort.metadata,
                            populations=cohort.populations, genes=cohort.genes,
                            workers=workers, scheduler=scheduler)
    return result.version_dir


def _files(version: Path) -> dict[Path, bytes]:
    """A version's files that do not change from one ingest of the same input to the next:
    not the encrypted ones (fresh keys and nonces each time), nor the manifest (its time)."""
    return {p.relative_to(version): p.read_bytes() for p in sorted(version.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and not p.name.endswith(".c4gh")
            and "files" not in p.relative_to(version).parts}


@pytest.mark.usefixtures("small_pieces")
def test_a_cluster_ingest_stores_the_bytes_a_single_process_ingest_stores(
        tmp_path: Path, long_cohort: Cohort, cluster: distributed.LocalCluster,
        observer: distributed.Client) -> None:
    source = sources.VcfSource(long_cohort.vcf)
    assert len(source.pieces()) >= 8
    local = _ingest(tmp_path / "local", long_cohort, workers=1)
    with distributed.get_task_stream(observer) as stream:
        remote = _ingest(tmp_path / "remote", long_cohort, scheduler=cluster.scheduler_address)

    n_records = NodeStore.open(tmp_path / "local").dataset("long").manifest.n_records
    assert n_records > 2 * VARIANT_CHUNK  # several chunks, some gathered from several pieces
    ran = [task for task in stream.data if str(task["key"]).startswith("genofed-ingest-")]
    assert len({task["worker"] for task in ran}) == 2  # both workers took part
    assert any("parse_piece" in str(task["key"]) for task in ran)
    assert any("write_chunk" in str(task["key"]) for task in ran)

    expected = _files(local)
    got = _files(remote)
    assert sorted(got) == sorted(expected)
    zarr_files = [p for p in expected if p.parts[0] == "genotypes.zarr"]
    assert any(p.parts[1] == "call_genotype_mask" for p in zarr_files)
    for relative in expected:
        assert got[relative] == expected[relative], relative
    local_ds = NodeStore.open(tmp_path / "local").dataset("long")
    remote_ds = NodeStore.open(tmp_path / "remote").dataset("long")
    assert remote_ds.sites.equals(local_ds.sites)
    assert remote_ds.individuals.equals(local_ds.individuals)
    assert not any((tmp_path / "remote" / "datasets" / "long").glob(".staging-*"))


def test_an_unreachable_scheduler_in_node_toml_changes_nothing(node: Path,
                                                               cohort: Cohort) -> None:
    ingest_dataset(node, cohort.dataset_id, cohort.vcf, workers=1)
    config = load_config(node)
    with refused_port() as port:
        config.ingest.scheduler = f"tcp://127.0.0.1:{port}"
        save_config(node, config)
        before = snapshot(node)
        with dask.config.set({"distributed.comm.timeouts.connect": "1s"}), \
                pytest.raises(IngestClusterError) as error:  # a new input: work to do
            ingest_dataset(node, cohort.dataset_id, cohort.vcf, populations=cohort.populations)
    assert f"the Dask cluster at tcp://127.0.0.1:{port} (ingest.scheduler in node.toml) " \
           "cannot be reached" in str(error.value)
    assert snapshot(node) == before
    assert [p.name for p in (node / "datasets" / cohort.dataset_id / "versions").iterdir()] \
        == ["v1"]


def test_an_unreachable_scheduler_on_the_command_line_is_a_clear_error(
        node: Path, cohort: Cohort, monkeypatch: pytest.MonkeyPatch) -> None:
    before = snapshot(node)
    monkeypatch.setenv("DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT", "1s")  # Dask's setting
    with refused_port() as port:
        address = f"tcp://127.0.0.1:{port}"
        result = genofed("ingest", node, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                         "--scheduler", address)
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert f"the Dask cluster at {address} (--scheduler) cannot be reached" in message
    assert "nothing was changed on the node" in message
    assert "Traceback" not in result.stderr
    assert snapshot(node) == before


@pytest.mark.usefixtures("small_pieces")
def test_a_bad_line_midway_on_the_cluster_changes_nothing(
        node: Path, cohort: Cohort, tmp_path: Path, cluster: distributed.LocalCluster) -> None:
    ingest_dataset(node, cohort.dataset_id, cohort.vcf, workers=1)
    with gzip.open(cohort.vcf, "rt") as handle:
        lines = handle.read().splitlines(keepends=True)
    target = len(lines) - 3
    fields = lines[target].split("\t")
    fields[1] = "abc"
    lines[target] = "\t".join(fields)
    bad = tmp_path / "late.vcf.gz"
    with BgzfWriter(bad) as writer:
        for line in lines:
            writer.write_record(line.encode())
    assert len(sources.VcfSource(bad).pieces()) > 2
    before = snapshot(node)
    with pytest.raises(InputError) as error:
        ingest_dataset(node, cohort.dataset_id, bad, scheduler=cluster.scheduler_address)
    assert error.value.line == target + 1 and error.value.field == "POS"
    assert snapshot(node) == before


def _die(_context: WorkerContext, _item: int) -> int:
    os._exit(3)


def test_a_killed_worker_is_an_ingest_error_naming_it(
        tmp_path: Path, cohort: Cohort, cluster: distributed.LocalCluster,
        observer: distributed.Client) -> None:
    import numpy as np

    source = sources.VcfSource(cohort.vcf)
    n = len(source.header.samples)
    context = WorkerContext(source, tmp_path, sample_classes(np.ones((n, 1), np.float32)),
                            ChunkWriter(tmp_path, n))
    try:
        with pytest.raises(IngestError, match="a worker died running ingest task") as error, \
                WorkManager(context, 1, Cluster(cluster.scheduler_address)) as work:
            assert work.workers == 2 and not work.in_process
            work.submit(_die, 0).result()
        assert isinstance(error.value, IngestClusterError)
        assert cluster.scheduler_address in str(error.value)
    finally:
        observer.wait_for_workers(2, timeout=60)  # the nanny restarts it, for later tests
