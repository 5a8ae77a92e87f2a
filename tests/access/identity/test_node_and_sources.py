"""The node's own visas (ES256, verified with the node's key, never fetched), visa sources behind
the issuer's userinfo (like REMS behind LS-AAI), token exchange for a Passport, and JWKS key
rotation, all over real HTTP on loopback."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from genofed.access.identity.authenticator import PassportAuthenticator, node_visa_trust
from genofed.access.identity.issuer import (
    ACCESS_TOKEN_TYPE,
    PASSPORT_TOKEN_TYPE,
    TOKEN_EXCHANGE_GRANT,
    LocalIssuer,
)
from genofed.access.identity.passport import Identity, format_linked_identities, sign_visa
from genofed.config.node import VisaTrust, load_config, save_config
from genofed.errors import AuthenticationError
from genofed.server.issuer import create_issuer_app, running_issuer
from genofed.server.loopback import LoopbackServer

if TYPE_CHECKING:
    from conftest import Clock, Forge, MakeAuth, Node, Recorder

CAG = "ControlledAccessGrants"


def bearer(token: str) -> str:
    return f"Bearer {token}"


def node_authenticator(node: Node, recorder: Recorder, *issuers: LocalIssuer,
                       trust_visas_of: LocalIssuer | None = None) -> PassportAuthenticator:
    """What `PassportAuthenticator.for_node` builds from the node's settings."""
    config = load_config(node.root)
    config.access.oidc_issuers = [i.url for i in issuers]
    config.access.trusted_visas = [] if trust_visas_of is None else [
        VisaTrust(iss=trust_visas_of.url, jku=trust_visas_of.jwks_url)]
    save_config(node.root, config)
    return PassportAuthenticator.for_node(node.root, http=recorder.client)


def node_visa(node: Node, sub: str, visa_type: str, value: str, **options: Any) -> str:
    iss, jku = node_visa_trust(load_config(node.root))
    return sign_visa(node.signing_key, iss=iss, jku=jku, sub=sub, visa_type=visa_type,
                     value=value, source=iss, **options)


def test_node_visas_are_verified_with_the_local_key_without_http(
        visa_node: Node, issuer: LocalIssuer, recorder: Recorder) -> None:
    auth = node_authenticator(visa_node, recorder, issuer)
    alice = issuer.user("alice")
    grant = node_visa(visa_node, alice.sub, CAG, "ds-node", by="dac", jti="node-visa-7")
    # The node names alice by her broker `sub`; its link ties (sub, node) to (sub, broker).
    link = node_visa(visa_node, alice.sub, "LinkedIdentities",
                     format_linked_identities([Identity(alice.sub, issuer.url)]), by="system")
    principal = auth.authenticate(bearer(issuer.passport("alice", extra_visas=[grant, link])))
    assert principal is not None
    node_grant = principal.grant_for("ds-node")
    assert node_grant is not None and node_grant.visa_id == "node-visa-7"
    assert node_grant.issuer == node_visa_trust(load_config(visa_node.root))[0]
    assert recorder.count("/access/jwks.json") == 0  # the node's key is local

    unlinked = auth.authenticate(bearer(issuer.passport("alice", extra_visas=[grant])))
    assert unlinked is not None and unlinked.grant_for("ds-node") is None
    assert "another identity" in "\n".join(unlinked.ignored_visas)

    # Same iss and jku, but signed by some other P-256 key: refused by the signature check.
    iss, jku = node_visa_trust(load_config(visa_node.root))
    forged = sign_visa(ec.generate_private_key(ec.SECP256R1()), iss=iss, jku=jku,
                       sub=alice.sub, visa_type=CAG, value="ds-forged", source=iss, by="dac",
                       kid=jwt.get_unverified_header(grant)["kid"])
    principal = auth.authenticate(bearer(issuer.passport("alice", extra_visas=[forged, link])))
    assert principal is not None and principal.grant_for("ds-forged") is None
    assert "signature does not verify" in "\n".join(principal.ignored_visas)


def test_node_settings_trust_other_visa_issuers(
        visa_node: Node, issuer: LocalIssuer, other_issuer: LocalIssuer,
        recorder: Recorder) -> None:
    alice = issuer.user("alice")
    visa = other_issuer.visa("alice", CAG, "ds-partner", by="dac", sub=alice.sub)
    link = other_issuer.visa("alice", "LinkedIdentities", format_linked_identities(
        [Identity(alice.sub, issuer.url)]), by="system", sub=alice.sub)
    passport = bearer(issuer.passport("alice", extra_visas=[visa, link]))

    untrusting = node_authenticator(visa_node, recorder, issuer)
    principal = untrusting.authenticate(passport)
    assert principal is not None and principal.grant_for("ds-partner") is None
    trusting = node_authenticator(visa_node, recorder, issuer, trust_visas_of=other_issuer)
    principal = trusting.authenticate(passport)
    assert principal is not None and principal.grant_for("ds-partner") is not None


def visa_source_app(broker_url: str, node: Node) -> FastAPI:
    """A DAC's visa endpoint, as LS-AAI calls REMS: a token for the user in, their
    ControlledAccessGrants visas (signed by the node) out. It authenticates the caller with a
    full PassportAuthenticator (userinfo included), as a node's /access/visas does; the broker
    must not end up calling it again from that userinfo."""
    callers = PassportAuthenticator(oidc_issuers=[broker_url])
    app = FastAPI()
    app.state.calls = 0

    @app.get("/visas")
    def visas(request: Request) -> JSONResponse:
        app.state.calls += 1
        try:
            caller = callers.authenticate(request.headers.get("authorization"))
        except AuthenticationError as exc:
            return JSONResponse({"error": exc.reason}, 401)
        if caller is None:
            return JSONResponse({"error": "no token"}, 401)
        return JSONResponse({"ga4gh_passport_v1": [
            node_visa(node, caller.subject, CAG, "ds-approved", by="dac", jti="dac-grant-1")]})

    @app.get("/broken")
    def broken() -> JSONResponse:
        return JSONResponse({"error": "database down"}, 500)

    return app


def test_userinfo_passes_on_visas_from_sources_and_skips_failing_ones(
        tmp_path: Path, visa_node: Node, recorder: Recorder, dead_url: str,
        caplog: pytest.LogCaptureFixture) -> None:
    source = LoopbackServer()
    sources = [f"{source.url}/visas", f"{source.url}/broken", f"{dead_url}/visas"]
    with source, running_issuer(tmp_path / "broker", visa_sources=sources) as broker:
        source_app = visa_source_app(broker.url, visa_node)
        source.start(source_app)
        auth = node_authenticator(visa_node, recorder, broker, trust_visas_of=broker)
        with caplog.at_level(logging.WARNING, logger="genofed.access.identity.issuer"):
            principal = auth.authenticate(bearer(broker.access_token("alice")))
        assert principal is not None and principal.researcher
        grant = principal.grant_for("ds-approved")
        assert grant is not None and grant.visa_id == "dac-grant-1" and grant.by == "dac"
        assert principal.ignored_visas == ()  # the broker linked the node's identity of alice
        assert source_app.state.calls == 1  # no loop through the broker's userinfo
        skipped = [r.getMessage() for r in caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) == 2
        assert any("/broken" in m and "HTTP 500" in m for m in skipped)
        assert any(dead_url in m for m in skipped)

        # Token exchange (AAI 1.2): the same visas, packed into a Passport JWT.
        answer = httpx.post(f"{broker.url}/token", data={
            "grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": broker.access_token("alice"),
            "subject_token_type": ACCESS_TOKEN_TYPE})
        assert answer.status_code == 200, answer.text
        assert answer.json()["issued_token_type"] == PASSPORT_TOKEN_TYPE
        before = recorder.count("/userinfo")
        from_passport = auth.authenticate(bearer(answer.json()["access_token"]))
        assert from_passport is not None and from_passport.grant_for("ds-approved") is not None
        assert recorder.count("/userinfo") == before


def test_password_grant_over_http(issuer: LocalIssuer, make_auth: MakeAuth) -> None:
    token_url = f"{issuer.url}/token"
    wrong = httpx.post(token_url, data={"grant_type": "password", "username": "alice",
                                        "password": "guess"})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    right = httpx.post(token_url, data={"grant_type": "password", "username": "alice",
                                        "password": issuer.demo_passwords()["alice"]})
    assert right.status_code == 200 and right.json()["token_type"] == "Bearer"
    principal = make_auth().authenticate(bearer(right.json()["access_token"]))
    assert principal is not None and principal.subject == issuer.user("alice").sub
    unsupported = httpx.post(token_url, data={"grant_type": "client_credentials"})
    assert unsupported.json()["error"] == "unsupported_grant_type"


def test_key_rotation_is_followed_and_unknown_kids_are_rate_limited(
        tmp_path: Path, recorder: Recorder, clock: Clock, forge: Forge) -> None:
    with running_issuer(tmp_path / "rotating") as rotating:
        auth = PassportAuthenticator(oidc_issuers=[rotating.url], http=recorder.client,
                                     clock=clock, jwks_refetch_interval=30)
        old_token = rotating.access_token("alice")
        assert auth.authenticate(bearer(old_token)) is not None
        assert recorder.count("/jwks") == 1

        new_kid = rotating.rotate_key()
        new_token = rotating.access_token("bob")
        assert jwt.get_unverified_header(new_token)["kid"] == new_kid
        assert auth.authenticate(bearer(new_token)) is not None  # unknown kid: one refetch
        assert recorder.count("/jwks") == 2
        assert auth.authenticate(bearer(rotating.access_token("dana"))) is not None
        assert recorder.count("/jwks") == 2

        bogus = forge(rotating.access_token("alice"), header={"kid": "no-such-key"})
        for _ in range(3):  # made-up kids cannot make us hammer the issuer
            with pytest.raises(AuthenticationError, match="not in the issuer's JWKS"):
                auth.authenticate(bearer(bogus))
        assert recorder.count("/jwks") == 2
        clock.advance(31)
        with pytest.raises(AuthenticationError, match="not in the issuer's JWKS"):
            auth.authenticate(bearer(bogus))
        assert recorder.count("/jwks") == 3

        # Tokens signed by the old key still verify: it stays published until retired.
        fresh = PassportAuthenticator(oidc_issuers=[rotating.url], http=recorder.client)
        assert fresh.authenticate(bearer(old_token)) is not None


def test_discovery_document_naming_another_issuer_is_not_trusted(
        tmp_path: Path, issuer: LocalIssuer, recorder: Recorder) -> None:
    # Configured with a trailing slash, the issuer's real `iss` has none: no match, no trust.
    auth = PassportAuthenticator(oidc_issuers=[issuer.url + "/"], http=recorder.client)
    with pytest.raises(AuthenticationError, match="not a configured OIDC issuer"):
        auth.authenticate(bearer(issuer.access_token("alice")))
    # Served at a URL other than its `iss`, discovery is refused (OIDC Discovery 4.3).
    with LoopbackServer() as elsewhere:
        elsewhere.start(create_issuer_app(issuer.directory))
        renamed = LocalIssuer.create(tmp_path / "renamed", url=elsewhere.url)
        renamed.add_user("alice")
        auth = PassportAuthenticator(oidc_issuers=[elsewhere.url], http=recorder.client)
        with pytest.raises(AuthenticationError, match="names issuer") as caught:
            auth.authenticate(bearer(renamed.access_token("alice")))
        assert caught.value.status == 503
