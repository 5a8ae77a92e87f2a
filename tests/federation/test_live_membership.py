"""A running node follows `genofed network join` and `leave` at once: from the moment it is in a
network it verifies peer signatures (a forged one is refused, a peer-only endpoint needs one),
and after it leaves no signature gives standing. No restart in between; both are audited."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.asymmetric import ec

from genofed.config.node import init_node
from genofed.federation.network import add_member, create_network, member_for_node
from genofed.federation.signatures import PeerSigner
from genofed.server.app import create_app
from genofed.server.loopback import LoopbackServer
from tests.federation.test_peer_auth import _member
from tests.support import genofed


def _send(url: str, signer: PeerSigner | None, path: str) -> httpx.Response:
    with httpx.Client() as client:
        request = client.build_request("GET", url + path)
        if signer is not None:
            signer.sign(request)
        return client.send(request)


def test_joining_and_leaving_apply_without_a_restart(tmp_path: Path) -> None:
    node = tmp_path / "node"
    init_node(node, node_id="live-node", country="BE")
    peer_key = ec.generate_private_key(ec.SECP256R1())
    member = PeerSigner("peer-b", peer_key)
    forger = PeerSigner("peer-b", ec.generate_private_key(ec.SECP256R1()))
    network = tmp_path / "network.toml"
    create_network(network, "live-net")
    with LoopbackServer() as server:
        add_member(network, member_for_node(node, server.url))
        add_member(network, _member("peer-b", peer_key, "http://127.0.0.1:9"))
        server.start(create_app(node))
        url = server.url

        # In no network: a signature, even a forged one, gives no standing and is not checked.
        assert _send(url, forger, "/beacon/info").status_code == 200
        refused = _send(url, member, "/federation/peer")
        assert refused.status_code == 401 and "in no network" in refused.text

        genofed("network", "join", node, network, check=True)
        forged = _send(url, forger, "/beacon/info")
        assert forged.status_code == 401
        assert forged.json()["error"]["errorMessage"].startswith("invalid peer signature")
        missing = _send(url, None, "/federation/peer")
        assert missing.status_code == 401 and "signed peer requests only" in missing.text
        answer = _send(url, member, "/federation/peer")
        assert answer.status_code == 200, answer.text
        assert answer.json() | {"networkVersion": 0} == {
            "node": "live-node", "country": "BE", "network": "live-net", "networkVersion": 0,
            "peer": "peer-b"}

        genofed("network", "leave", node, check=True)
        assert _send(url, member, "/federation/peer").status_code == 401
        assert _send(url, forger, "/beacon/info").status_code == 200

    trail = genofed("audit", "list", node, "--event", "network", "--json", check=True)
    events = [json.loads(line) for line in trail.stdout.splitlines()]
    assert [(e["action"], e["decision"]) for e in events] == [
        ("network.join", "allow"), ("network.leave", "allow")]
    assert all("network=live-net" in e["detail"] for e in events)
