"""Peer authentication (RFC 9421) at a real node in a network: members' signed requests are
accepted, signed requests from an unknown or removed peer are refused (removal takes effect
without a restart), altered or stale signatures are refused, unsigned researcher requests still
answer, and a signature made by another RFC 9421 implementation is accepted."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from http_message_signatures import HTTPMessageSigner, MappingKeyResolver
from http_message_signatures.algorithms import ECDSA_P256_SHA256

from genofed.access.identity.issuer import LocalIssuer
from genofed.beacon.access import QueryBudget
from genofed.config.node import init_node
from genofed.errors import PeerRefused
from genofed.federation.network import (
    LiveNetwork,
    Member,
    add_member,
    create_network,
    join_network,
    member_for_node,
    member_from,
    remove_member,
)
from genofed.federation.signatures import PeerSigner, PeerVerifier
from genofed.server.app import create_app
from genofed.server.loopback import LoopbackServer
from tests.federation.conftest import Federation
from tests.support import bearer, trust_issuer

R = "framework/json/responses/"
BUDGET = 40
COUNT_QUERY = {"meta": {"apiVersion": "v2.0"}, "query": {"requestedGranularity": "count"}}


def _member(node_id: str, key: ec.EllipticCurvePrivateKey, url: str) -> Member:
    def pem(public: Any) -> str:
        return public.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo).decode()

    return member_from({"id": node_id, "country": "BE", "base_url": url,
                        "signing_public_key": pem(key.public_key()),
                        "agreement_public_key": pem(
                            x25519.X25519PrivateKey.generate().public_key())})


@dataclass
class Guarded:
    """An (empty) node `auth-node` in a network whose other member is `peer-b`."""

    dir: Path
    url: str
    network_file: Path
    peer: PeerSigner
    peer_key: ec.EllipticCurvePrivateKey

    def send(self, signer: PeerSigner | None, method: str = "GET", path: str = "/beacon/info",
             tamper: Callable[[httpx.Request], httpx.Request] | None = None,
             **kwargs: Any) -> httpx.Response:
        with httpx.Client() as client:
            request = client.build_request(method, self.url + path, **kwargs)
            if signer is not None:
                signer.sign(request)
            if tamper is not None:
                request = tamper(request)
            return client.send(request)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory, issuer: LocalIssuer) -> Iterator[Guarded]:
    root = tmp_path_factory.mktemp("auth")
    node_dir = root / "auth-node"
    init_node(node_dir, node_id="auth-node", country="NL")
    trust_issuer(node_dir, issuer)
    server = LoopbackServer()  # bound now: its URL goes in the network file
    url = server.url
    network_file = root / "network.toml"
    create_network(network_file, "auth-net")
    add_member(network_file, member_for_node(node_dir, url))
    peer_key = ec.generate_private_key(ec.SECP256R1())
    add_member(network_file, _member("peer-b", peer_key, "http://127.0.0.1:9"))
    join_network(node_dir, network_file)
    # a small budget per anonymous caller, so tests can see whose budget a query is charged to
    with server:
        server.start(create_app(node_dir, budget=QueryBudget(BUDGET, 3600)))
        yield Guarded(node_dir, url, network_file, PeerSigner("peer-b", peer_key), peer_key)


def test_unsigned_researcher_requests_still_answer(guarded: Guarded) -> None:
    assert guarded.send(None).status_code == 200
    assert guarded.send(None, "POST", "/beacon/individuals", json=COUNT_QUERY).status_code == 200


def test_member_signed_requests_are_accepted(guarded: Guarded) -> None:
    assert guarded.send(guarded.peer).status_code == 200
    response = guarded.send(guarded.peer, "POST", "/beacon/individuals", json=COUNT_QUERY,
                            headers={"genofed-forwarded-for": "192.0.2.7"})
    assert response.status_code == 200, response.text
    assert "content-digest" in response.request.headers


def test_budgets_charge_the_researcher_a_peer_forwards(guarded: Guarded) -> None:
    """Through a peer, each researcher's queries are charged to the address the (signed)
    forwarded-for header names, not to the peer; unsigned, that header is not believed."""
    def query(signer: PeerSigner | None, address: str) -> int:
        return guarded.send(signer, "POST", "/beacon/individuals", json=COUNT_QUERY,
                            headers={"genofed-forwarded-for": address}).status_code

    assert [query(guarded.peer, "198.51.100.1") for _ in range(BUDGET)] == [200] * BUDGET
    assert query(guarded.peer, "198.51.100.1") == 429
    assert query(guarded.peer, "198.51.100.2") == 200  # another researcher, behind the same hub
    assert query(None, "198.51.100.3") == 200  # charged to this client's own address

def test_an_unknown_peer_is_refused(guarded: Guarded, schemas: Any) -> None:
    stranger = PeerSigner("xx-stranger", ec.generate_private_key(ec.SECP256R1()))
    response = guarded.send(stranger, "POST", "/beacon/individuals", json=COUNT_QUERY)
    assert response.status_code == 403
    schemas.check(R + "beaconErrorResponse.json", response.json())
    assert response.json()["error"]["errorMessage"] == (
        "peer 'xx-stranger' is not a member of network 'auth-net'; its requests are refused")


def test_a_member_id_with_another_key_is_refused(guarded: Guarded) -> None:
    impostor = PeerSigner("peer-b", ec.generate_private_key(ec.SECP256R1()))
    response = guarded.send(impostor)
    assert response.status_code == 401
    assert response.json()["error"]["errorMessage"].startswith("invalid peer signature")


def test_a_removed_peer_is_refused_without_restart(guarded: Guarded) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    signer = PeerSigner("peer-c", key)
    add_member(guarded.network_file, _member("peer-c", key, "http://127.0.0.1:9"))
    assert guarded.send(signer).status_code == 200
    remove_member(guarded.network_file, "peer-c")
    refused = guarded.send(signer)
    assert refused.status_code == 403
    message = refused.json()["error"]["errorMessage"]
    assert message.startswith("peer 'peer-c' was removed from network 'auth-net' on 20")
    add_member(guarded.network_file, _member("peer-c", key, "http://127.0.0.1:9"))
    assert guarded.send(signer).status_code == 200  # re-admitted, again without a restart
    remove_member(guarded.network_file, "peer-c")


def test_altered_or_stale_signed_requests_are_refused(guarded: Guarded) -> None:
    def other_query(request: httpx.Request) -> httpx.Request:
        return httpx.Request(request.method, request.url.copy_with(query=b"limit=1000"),
                             headers=request.headers)

    def other_body(request: httpx.Request) -> httpx.Request:
        body = b'{"query": {"requestedGranularity": "record"}}'
        headers = {**request.headers, "content-length": str(len(body))}
        return httpx.Request(request.method, request.url, headers=headers, content=body)

    def token_added(request: httpx.Request) -> httpx.Request:
        request.headers["authorization"] = "Bearer smuggled"
        return request

    cases: list[tuple[Any, str]] = [
        (guarded.send(guarded.peer, "GET", "/beacon/individuals", tamper=other_query,
                      params={"requestedGranularity": "count"}), "does not match"),
        (guarded.send(guarded.peer, "POST", "/beacon/individuals", json=COUNT_QUERY,
                      tamper=other_body), "Content-Digest does not match"),
        (guarded.send(guarded.peer, tamper=token_added), "does not cover the authorization"),
    ]
    with httpx.Client() as client:
        request = client.build_request("GET", guarded.url + "/beacon/info")
        guarded.peer.sign(request, created=datetime.now(UTC) - timedelta(minutes=10))
        stale = client.send(request)
    cases.append((stale, "in the past"))
    for response, words in cases:
        assert response.status_code == 401, response.text
        assert words in response.json()["error"]["errorMessage"], response.json()


def test_another_rfc9421_implementation_is_understood(guarded: Guarded,
                                                      issuer: LocalIssuer) -> None:
    """A request signed by the http-message-signatures library (not genofed's signer), in the
    profile genofed documents, is verified and accepted."""
    key = ec.generate_private_key(ec.SECP256R1())
    add_member(guarded.network_file, _member("peer-d", key, "http://127.0.0.1:9"))
    try:
        signer = HTTPMessageSigner(signature_algorithm=ECDSA_P256_SHA256,
                                   key_resolver=MappingKeyResolver(public_keys={},
                                                                   private_keys={"peer-d": key}))
        body = b'{"query": {"requestedGranularity": "count"}}'
        with httpx.Client() as client:
            request = client.build_request("POST", guarded.url + "/beacon/individuals",
                                           content=body,
                                           headers={**bearer(issuer.passport("alice")),
                                                    "content-type": "application/json"})
            now = datetime.now(UTC)
            signer.sign(request, key_id="peer-d", created=now,
                        expires=now + timedelta(seconds=30), label="sig1", tag="genofed-peer",
                        covered_component_ids=("@method", "@authority", "@path", "@query",
                                               "authorization"), body=body)
            response = client.send(request)
        assert response.status_code == 200, response.text
        # the signature let the request through, and alice's passport gave her counts
        assert response.json()["meta"]["returnedGranularity"] == "count"
    finally:
        remove_member(guarded.network_file, "peer-d")


def test_an_unreadable_network_file_fails_closed(guarded: Guarded) -> None:
    backup = guarded.network_file.with_suffix(".bak")
    shutil.copy(guarded.network_file, backup)
    try:
        guarded.network_file.write_text("this is not = [ toml")
        refused = guarded.send(guarded.peer)
        assert refused.status_code == 503
        assert "network file is unreadable" in refused.json()["error"]["errorMessage"]
        assert guarded.send(None).status_code == 200  # researchers are not affected
    finally:
        shutil.copy(backup, guarded.network_file)
    assert guarded.send(guarded.peer).status_code == 200


def test_the_hub_reports_a_node_that_refuses_it(federation: Federation, guarded: Guarded,
                                                hub_for: Callable[..., Any]) -> None:
    """auth-node's own network file does not list fi-a, so it refuses the hub beside fi-a: the
    network answer marks it `unauthorised` and carries on with the others."""
    with hub_for([member_for_node(guarded.dir, guarded.url)], 3.0) as hub:
        document = httpx.post(f"{hub}/network/beacon/individuals", json=COUNT_QUERY).json()
    line = next(n for n in document["info"]["network"]["nodes"] if n["node"] == "auth-node")
    assert line["status"] == "unauthorised" and line["httpStatus"] == 403
    assert "'fi-a' is not a member of network 'auth-net'" in line["message"]
    assert document["info"]["network"]["complete"] is False
    assert {n["status"] for n in document["info"]["network"]["nodes"]
            if n["node"] != "auth-node"} == {"ok"}


def test_the_fast_path_agrees_with_the_library_verifier(guarded: Guarded) -> None:
    """Every request the node checks by the quick route for genofed's own signature profile is
    judged exactly as the library's RFC 9421 verifier judges it, valid or altered."""
    verifier = PeerVerifier(LiveNetwork(guarded.network_file))
    url = "http://127.0.0.1:8000/beacon/individuals?limit=3"
    body = b'{"query": {"requestedGranularity": "count"}}'

    def signed(**headers: str) -> httpx.Request:
        request = httpx.Request("POST", url, content=body, headers=headers)
        guarded.peer.sign(request)
        return request

    library_signed = httpx.Request("POST", url, content=body,
                                   headers={"authorization": "Bearer t"})
    key = guarded.peer_key  # the same member key, through the other implementation
    HTTPMessageSigner(signature_algorithm=ECDSA_P256_SHA256, key_resolver=MappingKeyResolver(
        public_keys={}, private_keys={"peer-b": key})).sign(
        library_signed, key_id="peer-b", label="other", tag="genofed-peer",
        covered_component_ids=("@method", "@authority", "@path", "@query", "authorization"),
        body=body)
    stale = httpx.Request("POST", url, content=body)
    guarded.peer.sign(stale, created=datetime.now(UTC) - timedelta(minutes=5))
    cases: list[tuple[str, httpx.Request, str, bytes]] = [
        ("genofed-signed", signed(authorization="Bearer t"), url, body),
        ("library-signed", library_signed, url, body),
        ("other url", signed(), url.replace("limit=3", "limit=4"), body),
        ("other host", signed(), url.replace("8000", "8001"), body),
        ("other body", signed(), url, body + b" "),
        ("stale", stale, url, body),
    ]
    for name, request, received_url, received_body in cases:
        headers = [(k.decode("latin-1"), v.decode("latin-1"))
                   for k, v in request.headers.raw]
        outcomes: list[str | int] = []
        for fast in (True, False):
            try:
                outcomes.append(verifier.verify("POST", received_url, headers, received_body,
                                                fast=fast).node_id)
            except PeerRefused as exc:
                outcomes.append(exc.status)
        assert outcomes[0] == outcomes[1], (name, outcomes)
        assert outcomes[0] == ("peer-b" if name.endswith("signed") else 401), (name, outcomes)
