"""What a coordinator receives in a real job, recorded on the wire between it and three served
nodes: no one node's contribution shows anything of its statistics (each is indistinguishable
from uniform, where the plain encoding is mostly small integers), their sum is exactly the
nodes' summed statistics, and a coordinator colluding with one of the three nodes (holding its
private key and its plain statistics) learns nothing beyond the sum of the other two."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import x25519

from genofed.analysis import data, freq
from genofed.analysis.fixed_point import Layout, decode, encode
from genofed.analysis.protocol import SIGNATURE_BYTES, RoundKind, RoundReply
from genofed.analysis.secure import aggregate, pair_mask
from genofed.analysis.spec import CohortFilter
from genofed.config.node import NodePaths, load_config
from genofed.federation.network import add_member, create_network, member_for_node
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.store import NodeStore
from tests.analysis.faults import RecordingNode
from tests.analysis.fixtures import AnalysisNetwork
from tests.analysis.test_secure import _departures
from tests.external.analysis.test_jobs import run_job
from tests.support import served

pytestmark = pytest.mark.external

COLLUDER = "fi-node"  # the lowest id: it adds the masks it shares, the others subtract them


def _contribution(answer: bytes) -> tuple[np.ndarray, Layout]:
    reply = RoundReply.from_bytes(answer[SIGNATURE_BYTES:])
    return reply.arrays["masked"], Layout.from_json(reply.layout)


def test_the_coordinator_learns_the_sum_and_nothing_of_any_one_node(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    network_file = tmp_path / "network.toml"
    create_network(network_file, "watched")
    recorders: dict[str, RecordingNode] = {}
    with ExitStack() as stack:
        for share in analysis_network.cohort.shares:
            recorder = RecordingNode(create_app(share.node),
                                     NodePaths(share.node, load_config(share.node)).analysis,
                                     tmp_path / "kept" / share.node_id)
            recorders[share.node_id] = recorder
            add_member(network_file, member_for_node(share.node, stack.enter_context(
                served(recorder))))
        hub = stack.enter_context(served(create_hub_app(
            network_file, analysis_network.share(COLLUDER).node)))
        network = AnalysisNetwork(analysis_network.cohort, network_file,
                                  analysis_network.node_urls, hub, analysis_network.issuer)
        job = run_job(network, {"type": "freq"}, tmp_path / "out")
    assert job["state"] == "done", job["message"]

    # What each node sent for the one statistics step (genotype counts per variant and group).
    received, plain, requests = {}, {}, {}
    for node_id, recorder in recorders.items():
        (exchange,) = [e for e in recorder.exchanges if e.request.kind is RoundKind.STATISTICS]
        requests[node_id] = exchange.request
        received[node_id], layout = _contribution(exchange.answer)
        plain[node_id] = _plain_counts(analysis_network, node_id, job["id"],
                                       exchange.request.extra["groups"],
                                       recorder.keep / job["id"])
    request = requests[COLLUDER]
    assert all(r.context == request.context for r in requests.values())
    encoded = {node: encode({"counts": counts}, layout) for node, counts in plain.items()}

    # 1. No single message shows its node's statistics: the plain encodings are far from
    #    uniform (counts are small integers); what the coordinator got is not.
    for node in received:
        assert _departures(encoded[node]), node
        assert _departures(received[node]) == [], node
    # 2. The sum is exact.
    total = decode(aggregate(list(received.values())), layout)["counts"]
    assert np.array_equal(total, sum(plain.values()))
    # 3. With FI's private key and statistics, the coordinator strips every mask FI shares:
    #    what is left of NL's and SE's messages is still uniform (the NL-SE mask), and they
    #    add up to NL's and SE's summed statistics: exactly what the total minus FI's gives.
    keys = _agreement_keys(analysis_network)
    private = _private_key(analysis_network, COLLUDER)
    rest = {}
    for peer in ("nl-node", "se-node"):
        shared = pair_mask(layout.size, node_id=COLLUDER, peer_id=peer,
                           participants=request.participants, private_key=private,
                           peer_public_key=keys[peer], context=request.context)
        rest[peer] = received[peer] + shared
        assert _departures(rest[peer]) == [], peer
    two = decode(aggregate(list(rest.values())), layout)["counts"]
    assert np.array_equal(two, plain["nl-node"] + plain["se-node"])
    assert np.array_equal(total - plain[COLLUDER], two)


def _plain_counts(network: AnalysisNetwork, node_id: str, job: str, groups: list[str],
                  kept: Path) -> np.ndarray:
    """The node's genotype counts in the job's variant order, computed here from its store and
    the job's variant order it kept (as the node computed them before masking)."""
    share = network.share(node_id)
    dataset = NodeStore.open(share.node).dataset(share.dataset)
    cohort = data.select(dataset, CohortFilter())
    with np.load(kept / f"{share.dataset}.npz") as saved:
        rows, columns = saved["rows"], saved["columns"]
    cohort = cohort.subset(np.isin(cohort.columns, columns))
    members = np.array([np.ones(len(cohort), dtype=bool) if g == "all" else
                        cohort.sex == (2.0 if g == "female" else 1.0) if g in ("female", "male")
                        else np.array([p == g[4:] for p in cohort.population])
                        for g in groups])
    return freq.genotype_counts(data.dosages(cohort, rows), members)


def _agreement_keys(network: AnalysisNetwork) -> dict[str, x25519.X25519PublicKey]:
    return {node: network.member(node).agreement_key for node in network.node_ids}


def _private_key(network: AnalysisNetwork, node_id: str) -> x25519.X25519PrivateKey:
    node = network.share(node_id).node
    key = serialization.load_pem_private_key(
        NodePaths(node, load_config(node)).agreement_key.read_bytes(), None)
    assert isinstance(key, x25519.X25519PrivateKey)
    return key
