"""`/federation`: endpoints that answer signed peer requests only (the node's peer-signature
middleware refuses anything else with 401, see :mod:`genofed.federation.peers`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from genofed.config.live import LiveConfig
from genofed.federation.network import LiveNetwork, network_path_of
from genofed.federation.signatures import PEER_STATE

PREFIX = "/federation"
router = APIRouter()


@router.get("/peer", tags=["federation"],
            summary="This node as a signed peer sees it: its id, its network and the caller")
def peer(request: Request) -> dict[str, Any]:
    """A member's check that the network agrees about it: the answer names this node, the
    network (name and version of the file it follows) and the peer whose signature was
    verified. Only a member's signed request gets here."""
    live: LiveConfig = request.app.state.config
    config = live.current()
    network = LiveNetwork(network_path_of(live.root, config.federation.network_file)).current()
    return {"node": config.node_id, "country": config.country, "network": network.name,
            "networkVersion": network.version, "peer": request.scope["state"][PEER_STATE]}
