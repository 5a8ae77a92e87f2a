"""Fixtures for the identity tests: two local OIDC issuers served by real uvicorn on loopback
(the caller's home broker and another one), an HTTP client that records every request the
authenticator makes, a clock the tests can move, and a node whose own ES256 key signs visas."""

from __future__ import annotations

import base64
import json
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from genofed.access.identity.authenticator import PassportAuthenticator
from genofed.access.identity.issuer import LocalIssuer
from genofed.access.identity.oidc import jwk_thumbprint, public_jwk
from genofed.config.node import NodePaths, init_node, load_config
from genofed.server.issuer import running_issuer


class Recorder:
    """A real httpx client that remembers the URL of every request it sends."""

    def __init__(self) -> None:
        self.urls: list[str] = []
        self.client = httpx.Client(
            timeout=5.0, event_hooks={"request": [lambda r: self.urls.append(str(r.url))]})

    def count(self, fragment: str) -> int:
        return sum(fragment in url for url in self.urls)


class Clock:
    """Wall-clock time plus an offset the test moves forward."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds


def _b64(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _unb64(part: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return result


Forge = Callable[..., str]


@pytest.fixture(scope="session")
def forge() -> Forge:
    """`forge(token, header={...}, claims={...}, signature=None)`: the token with header/claims
    fields replaced but the original signature kept (or `signature` instead)."""

    def rewrite(token: str, *, header: dict[str, Any] | None = None,
                claims: dict[str, Any] | None = None, signature: str | None = None) -> str:
        head, body, sig = token.split(".")
        new_head = _b64({**_unb64(head), **(header or {})}) if header else head
        new_body = _b64({**_unb64(body), **(claims or {})}) if claims else body
        return f"{new_head}.{new_body}.{sig if signature is None else signature}"

    return rewrite


@pytest.fixture(scope="session")
def dead_url() -> str:
    """A loopback URL where nothing listens (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    """The caller's home broker: a local issuer with the demo users, on real HTTP."""
    with running_issuer(tmp_path_factory.mktemp("home") / "issuer") as running:
        yield running


@pytest.fixture(scope="session")
def other_issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIssuer]:
    """A second trusted broker, where the same people have other accounts."""
    with running_issuer(tmp_path_factory.mktemp("other") / "issuer") as running:
        yield running


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    recording = Recorder()
    yield recording
    recording.client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeAuth = Callable[..., PassportAuthenticator]


@pytest.fixture
def make_auth(issuer: LocalIssuer, other_issuer: LocalIssuer, recorder: Recorder,
              clock: Clock) -> MakeAuth:
    """A PassportAuthenticator trusting both issuers (as OIDC issuers and as visa issuers),
    talking HTTP through the recorder; keyword arguments override the defaults."""

    def build(**overrides: Any) -> PassportAuthenticator:
        options: dict[str, Any] = {
            "oidc_issuers": [issuer.url, other_issuer.url],
            "trusted_visas": [issuer.visa_trust, other_issuer.visa_trust],
            "http": recorder.client, "clock": clock}
        options.update(overrides)
        return PassportAuthenticator(**options)

    return build


class Node:
    """A node directory whose signing key mints visas as the node's DAC would."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.paths = NodePaths(root, load_config(root))
        key = serialization.load_pem_private_key(self.paths.signing_key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.signing_key = key


@pytest.fixture(scope="session")
def visa_node(tmp_path_factory: pytest.TempPathFactory) -> Node:
    """Tests set its `[access]` settings before building an authenticator from them."""
    root = tmp_path_factory.mktemp("node") / "node"
    init_node(root, node_id="fi-test", country="FI")
    return Node(root)


@pytest.fixture(scope="session")
def issuer_key(issuer: LocalIssuer) -> tuple[str, rsa.RSAPrivateKey]:
    """(kid, private key) the home issuer signs with, read from its directory, for tokens the
    issuer itself would never mint (other algorithms, odd claims)."""
    newest = sorted((issuer.directory / "keys").glob("*.rs256.pem"))[-1]
    key = serialization.load_pem_private_key(newest.read_bytes(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return jwk_thumbprint(public_jwk(key.public_key())), key


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"
