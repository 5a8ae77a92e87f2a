"""The local issuer's HTTP endpoints, in process (httpx over ASGI): discovery, JWKS, token and
userinfo with GA4GH visas, visa sources, and the files it keeps (owner-only keys, no default
passwords)."""

from __future__ import annotations

import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import jwt
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from genofed.access.identity.issuer import ACCESS_TOKEN_TYPE, TOKEN_EXCHANGE_GRANT, LocalIssuer
from genofed.access.identity.passport import REGISTERED_ACCESS
from genofed.errors import IssuerConfigError, TokenRejected
from genofed.server.issuer import create_issuer_app

pytestmark = pytest.mark.anyio
URL = "http://issuer.test"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    """An issuer (never served on a socket) with the demo users and two visa sources: one that
    answers, one that answers nonsense."""
    return LocalIssuer.create(tmp_path_factory.mktemp("asgi") / "issuer", url=URL,
                              demo_users=True,
                              visa_sources=["http://dac.test/visas", "http://dac.test/junk"])


SOURCE_CALLS: list[dict[str, object]] = []


def dac_app(local: LocalIssuer) -> FastAPI:
    """A visa source that answers only for a valid access token of `local`."""
    app = FastAPI()

    @app.get("/visas")
    def visas(request: Request) -> JSONResponse:
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        try:
            SOURCE_CALLS.append(local.verify_access_token(token))
        except TokenRejected:
            return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"ga4gh_passport_v1": ["header.payload.signature"]})

    @app.get("/junk")
    def junk() -> dict[str, str]:
        return {"ga4gh_passport_v1": "not a list"}

    return app


@pytest.fixture
async def client(local: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    app = create_issuer_app(local.directory,
                            visa_source_transport=httpx.ASGITransport(dac_app(local)))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=URL) as http:
        yield http


async def test_discovery_and_jwks(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["issuer"] == URL
    assert document["jwks_uri"] == f"{URL}/jwks"
    assert document["userinfo_endpoint"] == f"{URL}/userinfo"
    assert document["token_endpoint"] == f"{URL}/token"
    assert "ga4gh_passport_v1" in document["scopes_supported"]
    keys = (await client.get("/jwks")).json()["keys"]
    assert len(keys) == 1
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["use"] == "sig"
    assert keys[0]["kid"] and not {"d", "p", "q"} & set(keys[0])  # public parts only


async def test_userinfo_returns_spec_shaped_visas(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    token = local.access_token("alice")
    SOURCE_CALLS.clear()
    info = (await client.get("/userinfo", headers={"authorization": f"Bearer {token}"})).json()
    alice = local.user("alice")
    # The source was asked with a short-lived token for alice that cannot fetch a passport.
    (asked,) = SOURCE_CALLS
    assert asked["sub"] == alice.sub and asked["scope"] == "openid"
    assert int(str(asked["exp"])) - int(str(asked["iat"])) <= 60
    assert info["sub"] == alice.sub and info["name"] == alice.name
    visas = info["ga4gh_passport_v1"]
    # Own ResearcherStatus and AcceptedTermsAndPolicies, then the answering source's visa.
    assert visas[-1] == "header.payload.signature" and len(visas) == 3
    for visa in visas[:2]:
        header = jwt.get_unverified_header(visa)
        assert header["alg"] == "RS256" and header["jku"] == f"{URL}/jwks"
        assert header["kid"] == local.jwks()["keys"][0]["kid"]
        claims = jwt.decode(visa, options={"verify_signature": False})
        assert claims["iss"] == URL and claims["sub"] == alice.sub and claims["jti"]
        assert claims["iat"] <= time.time() < claims["exp"]
        body = claims["ga4gh_visa_v1"]
        assert body["value"] == REGISTERED_ACCESS and body["source"] == URL
        assert isinstance(body["asserted"], int) and body["by"] in ("so", "self")
    assert {jwt.decode(v, options={"verify_signature": False})["ga4gh_visa_v1"]["type"]
            for v in visas[:2]} == {"ResearcherStatus", "AcceptedTermsAndPolicies"}

    bob = (await client.get("/userinfo", headers={
        "authorization": f"Bearer {local.access_token('bob')}"})).json()
    assert len(bob["ga4gh_passport_v1"]) == 2  # no ResearcherStatus for bob
    no_scope = (await client.get("/userinfo", headers={
        "authorization": f"Bearer {local.access_token('alice', scope='openid')}"})).json()
    assert "ga4gh_passport_v1" not in no_scope


@pytest.mark.parametrize("authorization", [
    None, "Bearer not-a-jwt", "Basic YWxpY2U6eA=="])
async def test_userinfo_refuses_missing_or_bad_tokens(
        client: httpx.AsyncClient, authorization: str | None) -> None:
    headers = {"authorization": authorization} if authorization else {}
    answer = await client.get("/userinfo", headers=headers)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")


async def test_userinfo_refuses_expired_and_foreign_tokens(
        client: httpx.AsyncClient, local: LocalIssuer, tmp_path: Path) -> None:
    expired = local.access_token("alice", issued=int(time.time()) - 7200, lifetime=3600)
    answer = await client.get("/userinfo", headers={"authorization": f"Bearer {expired}"})
    assert answer.status_code == 401 and "expired" in answer.json()["error_description"]
    other = LocalIssuer.create(tmp_path / "other", url="http://other.test")
    other.add_user("alice")
    answer = await client.get("/userinfo", headers={
        "authorization": f"Bearer {other.access_token('alice')}"})
    assert answer.status_code == 401
    for not_access in (local.passport("alice"),
                       local.visa("alice", "ResearcherStatus", REGISTERED_ACCESS, by="so")):
        answer = await client.get("/userinfo", headers={"authorization": f"Bearer {not_access}"})
        assert answer.status_code == 401


async def test_token_endpoint_errors_follow_oauth(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    as_json = await client.post("/token", json={"grant_type": "password"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
    unknown = await client.post("/token", data={"grant_type": "password", "username": "eve",
                                                 "password": "x"})
    assert unknown.json()["error"] == "invalid_grant"
    exchange = {"grant_type": TOKEN_EXCHANGE_GRANT, "subject_token_type": ACCESS_TOKEN_TYPE}
    bad_subject = await client.post("/token", data={**exchange, "subject_token": "x.y.z"})
    assert bad_subject.json()["error"] == "invalid_grant"
    wrong_type = await client.post("/token", data={
        **exchange, "subject_token": local.access_token("alice"),
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token"})
    assert wrong_type.json()["error"] == "invalid_request"
    no_scope = await client.post("/token", data={
        **exchange, "subject_token": local.access_token("alice", scope="openid")})
    assert no_scope.json()["error"] == "invalid_grant"


async def test_token_exchange_passport_is_bounded_by_the_access_token(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    access = local.access_token("alice", lifetime=300)
    answer = await client.post("/token", data={
        "grant_type": TOKEN_EXCHANGE_GRANT, "subject_token": access,
        "subject_token_type": ACCESS_TOKEN_TYPE})
    passport = answer.json()["access_token"]
    assert jwt.get_unverified_header(passport)["typ"] == "vnd.ga4gh.passport+jwt"
    claims = jwt.decode(passport, options={"verify_signature": False})
    access_claims = jwt.decode(access, options={"verify_signature": False})
    assert claims["exp"] <= access_claims["exp"] and claims["sub"] == access_claims["sub"]
    assert len(claims["ga4gh_passport_v1"]) == 3


def test_issuer_files_are_owner_only_and_never_overwritten(local: LocalIssuer) -> None:
    directory = local.directory
    assert stat.S_IMODE((directory / "keys").stat().st_mode) == 0o700
    for path in [*(directory / "keys").iterdir(), directory / "users.toml",
                 directory / "demo-passwords.toml"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    passwords = local.demo_passwords()
    assert set(passwords) == {"alice", "bob", "dana"} and len(set(passwords.values())) == 3
    assert all(p not in (directory / "users.toml").read_text() for p in passwords.values())
    with pytest.raises(IssuerConfigError, match="refusing to overwrite"):
        LocalIssuer.create(directory, url=URL)


def test_issuer_settings_are_validated(tmp_path: Path, local: LocalIssuer) -> None:
    with pytest.raises(IssuerConfigError, match="http"):
        LocalIssuer.create(tmp_path / "a", url="ftp://x")
    with pytest.raises(IssuerConfigError, match="not a genofed issuer"):
        LocalIssuer(tmp_path / "nothing")
    with pytest.raises(IssuerConfigError, match="exists already"):
        local.add_user("alice")
    with pytest.raises(IssuerConfigError, match="should match pattern"):
        local.add_user("bad id")
    with pytest.raises(IssuerConfigError, match="users: alice, bob, dana"):
        local.access_token("zoe")
