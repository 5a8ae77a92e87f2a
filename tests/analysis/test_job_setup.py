"""Where a node computes and what it agrees to match: a node whose node.toml names a
dask.distributed cluster (`[analysis] scheduler`) computes its statistics there, a real
LocalCluster of worker processes, and the job's result is the one local threads give; a job on
another assembly than the node's data is refused at setup, saying so (its variants would not
match by position)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from genofed.config.node import load_config, save_config
from tests.analysis.fixtures import AnalysisNetwork
from tests.external.analysis.test_jobs import run_job

pytestmark = pytest.mark.external

distributed = pytest.importorskip("distributed")


@contextmanager
def scheduler_in_node_toml(network: AnalysisNetwork, node_id: str,
                           scheduler: str) -> Iterator[None]:
    """node.toml of `node_id` naming `scheduler` while the block runs (read on each request)."""
    directory = network.share(node_id).node
    original = load_config(directory)
    changed = original.model_copy(deep=True)
    changed.analysis.scheduler = scheduler
    save_config(directory, changed)
    try:
        yield
    finally:
        save_config(directory, original)


def test_a_node_on_a_dask_cluster_gives_the_result_local_threads_give(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    spec = {"type": "freq"}
    local = run_job(analysis_network, spec, tmp_path / "local")
    assert local["state"] == "done", local["message"]
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster, set_as_default=False) as observer, \
            scheduler_in_node_toml(analysis_network, "se-node", cluster.scheduler_address), \
            distributed.get_task_stream(observer) as stream:
        job = run_job(analysis_network, spec, tmp_path / "cluster")
    assert job["state"] == "done", job["message"]
    assert job["participants"] == local["participants"]
    # The workers did the node's work: its tasks ran there, on both.
    assert len({task["worker"] for task in stream.data}) == 2
    assert (tmp_path / "cluster" / "freq.tsv").read_bytes() == \
        (tmp_path / "local" / "freq.tsv").read_bytes()


def test_a_job_on_another_assembly_is_refused_naming_both(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    job = run_job(analysis_network, {"type": "freq", "assembly": "GRCh37"}, tmp_path)
    assert job["state"] == "failed"
    assert job["files"] == []
    for share in analysis_network.cohort.shares:
        status = job["progress"]["nodes"][share.node_id]
        assert status["status"] == "not taking part"
        assert f"{share.dataset}: its assembly is GRCh38, the job's GRCh37 (variants would " \
               "not match)" in status["message"]
