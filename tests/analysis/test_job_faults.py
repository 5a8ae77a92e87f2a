"""Faults during a job: a node down at submit, failing mid-round, too slow, or sending a tampered
contribution. The job finishes correctly over the rest, the status naming who was left out and
why, or fails with a message that says why; never a wrong number. And a coordinator restarted in
the middle of a job carries it on from its last completed round."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from genofed.analysis.client import HubClient
from genofed.config.node import init_node
from genofed.federation.network import add_member, create_network, member_for_node
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.server.loopback import LoopbackServer
from tests.analysis.faults import Fault, FaultyNode
from tests.analysis.fixtures import LDL, SEIZURES, AnalysisNetwork
from tests.external.analysis.test_jobs import run_job
from tests.support import refused_port, served

pytestmark = pytest.mark.external

FAULTY = "nl-node"
FREQ = {"type": "freq"}
LINEAR = {"type": "gwas-linear", "trait": {"measurement": LDL}, "covariates": ["sex", "age"]}
#: A job of several statistics steps (counts, then a Newton step per round).
LOGISTIC = {"type": "gwas-logistic", "trait": {"hpo": SEIZURES}, "covariates": ["sex"]}


@contextmanager
def faulty_network(network: AnalysisNetwork, root: Path, fault: Fault | None, *,
                   down_member: bool = False, round_timeout: float = 300.0) -> Iterator[str]:
    """A hub over the three nodes, NL served a second time behind `fault` (same node, same
    keys: the hub's network file lists this server as NL), optionally with a fourth member that
    is down; yields the hub's URL."""
    path = root / "network.toml"
    create_network(path, "fault-net")
    with ExitStack() as stack:
        for node_id in network.node_ids:
            if node_id != FAULTY or fault is None:
                add_member(path, network.member(node_id))
        if fault is not None:
            share = network.share(FAULTY)
            url = stack.enter_context(served(FaultyNode(create_app(share.node), fault)))
            add_member(path, member_for_node(share.node, url))
        if down_member:
            ghost = root / "ghost"
            init_node(ghost, node_id="de-node", country="DE")
            port = stack.enter_context(refused_port())
            add_member(path, member_for_node(ghost, f"http://127.0.0.1:{port}"))
        yield stack.enter_context(served(create_hub_app(
            path, network.share("fi-node").node, timeout=5.0, round_timeout=round_timeout)))


def submit(hub: str, network: AnalysisNetwork, spec: dict[str, Any], out: Path,
           token: str | None = None) -> dict[str, Any]:
    with HubClient(hub, token or network.token()) as client:
        job = client.wait(client.submit(spec)["id"], timeout=900)
        if job["state"] == "done":
            client.download(job["id"], out)
    return job


@pytest.fixture(scope="module")
def over_two(analysis_network: AnalysisNetwork,
             tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """The freq and linear results over FI and SE alone (what a job that lost NL must equal)."""
    done: dict[str, Path] = {}

    def result(kind: str) -> Path:
        if kind not in done:
            out = tmp_path_factory.mktemp(f"two-{kind}")
            spec = {**(FREQ if kind == "freq" else LINEAR),
                    "datasets": ["fi-cohort", "se-cohort"]}
            job = run_job(analysis_network, spec, out)
            assert job["state"] == "done" and job["participants"] == ["fi-node", "se-node"]
            done[kind] = out
        return done[kind]

    return result


def assert_same_results(ours: Path, expected: Path, name: str) -> None:
    assert (ours / name).read_text() == (expected / name).read_text()


def test_a_node_down_at_submit_is_named_and_the_job_runs_over_the_rest(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    with faulty_network(analysis_network, tmp_path, None, down_member=True) as hub:
        job = submit(hub, analysis_network, FREQ, tmp_path / "out")
    assert job["state"] == "done", job["message"]
    assert job["participants"] == ["fi-node", "nl-node", "se-node"]
    ghost = job["progress"]["nodes"]["de-node"]
    assert ghost["status"] == "not taking part" and "refused" in ghost["message"]
    normal = run_job(analysis_network, FREQ, tmp_path / "normal")
    assert_same_results(tmp_path / "out", tmp_path / "normal", "freq.tsv")
    assert normal["participants"] == job["participants"]


@pytest.mark.parametrize("kind", ["fail", "stall", "tamper"])
def test_a_node_that_fails_stalls_or_tampers_in_the_first_step_is_left_out(
        analysis_network: AnalysisNetwork, tmp_path: Path, kind: str,
        over_two: Callable[[str], Path]) -> None:
    """Dropped in the first statistics step (no sum including it exists yet), NL is left out
    and the job starts again over FI and SE: the result equals a job over those two."""
    fault = Fault(kind, from_round=1, delay=20.0)
    with faulty_network(analysis_network, tmp_path, fault, round_timeout=8.0) as hub:
        job = submit(hub, analysis_network, FREQ, tmp_path / "out")
    assert job["state"] == "done", job["message"]
    assert job["participants"] == ["fi-node", "se-node"]
    assert fault.hits, "the fault never fired"
    left_out = job["progress"]["nodes"][FAULTY]
    assert left_out["status"] == "excluded"
    assert {"fail": "HTTP 500", "stall": "no answer within 8 s",
            "tamper": "does not match its signature"}[kind] in left_out["message"]
    assert job["progress"]["attempt"] == 1
    assert_same_results(tmp_path / "out", over_two("freq"), "freq.tsv")


def test_a_node_failing_after_its_statistics_were_pooled_stops_the_job_clearly(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    """NL fails in the first logistic step, after the counts step summed its statistics:
    redoing the counts without it would hand the coordinator NL's counts by difference, so FI
    and SE refuse the restart and the job fails saying why (no result, rather than a revealing
    one)."""
    fault = Fault("fail", from_round=2)
    with faulty_network(analysis_network, tmp_path, fault) as hub:
        job = submit(hub, analysis_network, LOGISTIC, tmp_path / "out")
    assert job["state"] == "failed"
    assert len(fault.hits) == 1 and fault.hits[0].startswith("logistic#"), fault.hits
    assert "reveal their statistics by difference" in job["message"]
    assert job["files"] == []


def test_a_restarted_coordinator_carries_the_job_on(analysis_network: AnalysisNetwork,
                                                    tmp_path: Path) -> None:
    """The coordinator stops while NL takes its time over the first logistic step; a new one on
    the same directory resumes from the saved plan (the researcher's token is not needed again)
    and the result is the one an uninterrupted job gives."""
    fault = Fault("stall", from_round=2, delay=4.0)
    path = tmp_path / "network.toml"
    create_network(path, "restart-net")
    token = analysis_network.token()
    with ExitStack() as stack:
        for node_id in ("fi-node", "se-node"):
            add_member(path, analysis_network.member(node_id))
        share = analysis_network.share(FAULTY)
        url = stack.enter_context(served(FaultyNode(create_app(share.node), fault)))
        add_member(path, member_for_node(share.node, url))
        hub_dir = analysis_network.share("fi-node").node
        first = LoopbackServer()
        first.start(create_hub_app(path, hub_dir, timeout=5.0))
        port = first.port
        with HubClient(first.url, token) as client:
            job_id = client.submit(LOGISTIC)["id"]
            with pytest.raises(_Reached):
                client.wait(job_id, timeout=300, interval=0.2, on_update=_past_first_step)
        first.stop()
        second = stack.enter_context(LoopbackServer(port))
        second.start(create_hub_app(path, hub_dir, timeout=5.0))
        with HubClient(second.url, token) as client:
            job = client.wait(job_id, timeout=600)
            assert job["state"] == "done", job["message"]
            client.download(job_id, tmp_path / "out")
    normal = run_job(analysis_network, LOGISTIC, tmp_path / "normal")
    assert normal["state"] == "done"
    assert_same_results(tmp_path / "out", tmp_path / "normal", "gwas-HP_0002069.tsv")
    assert len(fault.hits) >= 2        # the logistic step was asked again after the restart


class _Reached(Exception):
    pass


def _past_first_step(job: dict[str, Any]) -> None:
    """Stop waiting once the counts step is summed and saved (NL now stalls in the next)."""
    if job["state"] in ("done", "failed"):
        raise AssertionError(f"the job ended before the restart: {job['message']}")
    if job.get("progress", {}).get("step", 0) >= 1:
        raise _Reached
