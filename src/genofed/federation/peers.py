"""Incoming peer requests on a node: the ASGI middleware that verifies their signatures
(:mod:`genofed.federation.signatures`) against the network node.toml names now."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genofed.beacon.responses import beacon_id, error_response
from genofed.config.live import LiveConfig
from genofed.errors import NetworkFileError, NodeConfigError, PeerRefused
from genofed.federation.network import LiveNetwork, network_path_of
from genofed.federation.signatures import MAX_BODY, PEER_STATE, PeerVerifier

log = logging.getLogger(__name__)


def _url_of(scope: Scope, headers: Sequence[tuple[str, str]]) -> str:
    host = next((v for n, v in headers if n == "host"), None)
    if host is None:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    raw_path = scope.get("raw_path") or scope["path"].encode("utf-8")
    query = scope.get("query_string", b"").decode("latin-1")
    return (f"{scope.get('scheme', 'http')}://{host}{raw_path.decode('latin-1')}"
            + (f"?{query}" if query else ""))


async def _read_body(receive: Receive, limit: int = MAX_BODY) -> bytes | None:
    """The whole request body; None when it exceeds `limit` or the client went away."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


class PeerSignatureMiddleware:
    """ASGI middleware verifying signed (peer) requests; see the module docstring.

    It follows node.toml (`live`): from the moment `genofed network join` names a network file,
    the next request is checked against it, and after `genofed network leave` no request has a
    peer's standing; a network file that changes (members added, removed, keys rotated) is
    re-read as it changes. Paths under `required_prefixes` answer signed peer requests only."""

    def __init__(self, app: ASGIApp, *, live: LiveConfig, node_dir: Path,
                 required_prefixes: tuple[str, ...] = (),
                 large_bodies: dict[str, int] | None = None) -> None:
        self.app = app
        self.live = live
        self.node_dir = node_dir
        self.node_id = live.started.node_id
        self.required_prefixes = required_prefixes
        #: Paths whose signed requests may be larger than a Beacon query (e.g. an analysis
        #: round carrying coefficients for every variant), and how large.
        self.large_bodies = large_bodies or {}
        self._verifiers: dict[str, PeerVerifier] = {}

    def _verifier(self) -> PeerVerifier | None:
        """The verifier of the network node.toml names now (None: the node is in none)."""
        network_file = self.live.current().federation.network_file
        if not network_file:
            return None
        verifier = self._verifiers.get(network_file)
        if verifier is None:
            path = network_path_of(self.node_dir, network_file)
            verifier = self._verifiers[network_file] = PeerVerifier(LiveNetwork(path))
        return verifier

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, status: int,
                      message: str) -> None:
        log.warning("refused peer request %s %s: %s", scope.get("method"), scope.get("path"),
                    message)
        await JSONResponse(error_response(beacon_id(self.node_id), status, message), status)(
            scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = [(n.decode("latin-1"), v.decode("latin-1")) for n, v in scope["headers"]]
        try:
            verifier = self._verifier()
        except NodeConfigError:
            await self.app(scope, receive, send)  # the app refuses it, saying why
            return
        signed = any(n in ("signature", "signature-input") for n, _ in headers)
        if verifier is None or not signed:
            if self.required_prefixes and scope["path"].startswith(self.required_prefixes):
                await self._refuse(scope, receive, send, 401,
                                   "this endpoint answers signed peer requests only" if verifier
                                   else "this node is in no network: it answers no peer "
                                   "requests")
                return
            await self.app(scope, receive, send)
            return
        limit = self.large_bodies.get(scope["path"], MAX_BODY)
        body = await _read_body(receive, limit)
        if body is None:
            await self._refuse(scope, receive, send, 413,
                               f"peer request body missing or above {limit} bytes")
            return
        try:
            peer = verifier.verify(scope["method"], _url_of(scope, headers), headers, body)
        except PeerRefused as exc:
            await self._refuse(scope, receive, send, exc.status, exc.message)
            return
        scope = {**scope, "state": {**scope.get("state", {}), PEER_STATE: peer.node_id}}
        if peer.forwarded_for:
            scope["client"] = (peer.forwarded_for, 0)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def install_peer_verification(app: FastAPI, node_dir: Path, live: LiveConfig, *,
                              required_prefixes: tuple[str, ...] = (),
                              large_bodies: dict[str, int] | None = None) -> None:
    """Verify signed peer requests whenever the node is in a network (`federation.network_file`
    as node.toml says now); paths under `required_prefixes` answer those only."""
    network_file = live.started.federation.network_file
    if network_file:
        try:
            LiveNetwork(network_path_of(node_dir, network_file)).current()
        except NetworkFileError as exc:
            log.error("node %s: signed peer requests will be refused until this is fixed: %s",
                      live.started.node_id, exc)
    app.add_middleware(PeerSignatureMiddleware, live=live, node_dir=node_dir,
                       required_prefixes=required_prefixes, large_bodies=large_bodies)
