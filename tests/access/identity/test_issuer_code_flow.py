"""The local issuer's sign-in for web apps, in process (httpx over ASGI): the authorization code
flow with PKCE as a portal drives it (form, credentials, redirect with a code, token exchange,
ID token), and every way it refuses: bad verifier, replayed or expired codes, unknown clients
and return addresses, bad parameters, wrong passwords, cancelling and altered forms."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest

from genofed.access.identity.code_flow import (
    AuthorizationCodes,
    CodeGrant,
    s256,
)
from genofed.access.identity.issuer import (
    LocalIssuer,
)
from genofed.errors import IssuerConfigError, TokenRejected
from genofed.server.issuer import create_issuer_app

pytestmark = pytest.mark.anyio
URL = "http://issuer.test"
PORTAL = "http://portal.test:8080/callback"
OTHER = "https://other.test/cb"


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> LocalIssuer:
    """An issuer with the demo users, the portal as a client and a second client."""
    issuer = LocalIssuer.create(tmp_path_factory.mktemp("code") / "issuer", url=URL,
                                demo_users=True)
    issuer.add_client("portal", [PORTAL])
    issuer.add_client("other", [OTHER])
    return issuer


async def http_client(local: LocalIssuer, code_lifetime: float = 60) -> httpx.AsyncClient:
    app = create_issuer_app(local.directory, code_lifetime=code_lifetime)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=URL)


@pytest.fixture
async def client(local: LocalIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with await http_client(local) as http:
        yield http


class Pkce:
    def __init__(self) -> None:
        self.verifier = secrets.token_urlsafe(48)
        self.challenge = s256(self.verifier)


def request(pkce: Pkce, **overrides: str | None) -> dict[str, str]:
    """An authorization request the portal would send; None drops a parameter."""
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": "portal", "redirect_uri": PORTAL,
        "scope": "openid profile ga4gh_passport_v1", "state": "st-123", "nonce": "n-456",
        "code_challenge": pkce.challenge, "code_challenge_method": "S256", **overrides}
    return {k: v for k, v in params.items() if v is not None}


class Inputs(HTMLParser):
    """The form's inputs by name (hidden fields included)."""

    def __init__(self, page: str) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.feed(page)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "input" and attributes.get("name"):
            self.values[str(attributes["name"])] = attributes.get("value") or ""


def query(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    assert location.startswith(PORTAL + "?") or location.startswith(OTHER + "?"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def sign_in(http: httpx.AsyncClient, params: dict[str, str], *, username: str = "alice",
                  password: str, **extra: str) -> httpx.Response:
    """GET the form, then post it as the browser would."""
    form = await http.get("/authorize", params=params)
    assert form.status_code == 200, form.text
    fields = {**Inputs(form.text).values, "username": username, "password": password,
              "action": "sign-in", **extra}
    return await http.post("/authorize", data=fields)


async def code_for(http: httpx.AsyncClient, local: LocalIssuer, pkce: Pkce,
                   **overrides: str | None) -> str:
    answer = await sign_in(http, request(pkce, **overrides),
                           password=local.demo_passwords()["alice"])
    assert answer.status_code == 303
    return query(answer)["code"]


def exchange(pkce: Pkce, code: str, **overrides: str) -> dict[str, str]:
    return {"grant_type": "authorization_code", "code": code, "redirect_uri": PORTAL,
            "client_id": "portal", "code_verifier": pkce.verifier, **overrides}


async def test_discovery_advertises_the_code_flow(client: httpx.AsyncClient) -> None:
    document = (await client.get("/.well-known/openid-configuration")).json()
    assert document["authorization_endpoint"] == f"{URL}/authorize"
    assert document["response_types_supported"] == ["code"]
    assert document["code_challenge_methods_supported"] == ["S256"]
    assert "authorization_code" in document["grant_types_supported"]
    assert {"password", "urn:ietf:params:oauth:grant-type:token-exchange"} <= set(
        document["grant_types_supported"])


async def test_sign_in_page_is_complete_accessible_and_locked_down(
        client: httpx.AsyncClient) -> None:
    page = await client.get("/authorize", params=request(Pkce()))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert html.startswith("<!doctype html>") and '<html lang="en">' in html
    for element in ("<title>", "<main>", "<h1>"):
        assert element in html
    for field, autocomplete in (("username", "username"), ("password", "current-password")):
        assert f'<label for="{field}">' in html
        assert re.search(f'<input id="{field}"[^>]*autocomplete="{autocomplete}"', html)
    assert "<script" not in html and "src=" not in html and "<link" not in html
    assert 'action="authorize"' in html and "portal.test:8080" in html
    headers = page.headers
    csp = headers["content-security-policy"]
    assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert "form-action 'self' http://portal.test:8080;" in csp
    assert "unsafe-inline" not in csp and "style-src 'sha256-" in csp
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    cookie = headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=lax" in cookie and "path=/authorize" in cookie


async def test_whole_flow_gives_tokens_that_work(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    pkce = Pkce()
    answer = await sign_in(client, request(pkce), password=local.demo_passwords()["alice"])
    assert answer.status_code == 303
    assert answer.headers["cache-control"] == "no-store"
    returned = query(answer)
    assert returned["state"] == "st-123" and returned["iss"] == URL
    assert set(returned) == {"code", "state", "iss"} and len(returned["code"]) >= 43

    tokens = await client.post("/token", data=exchange(pkce, returned["code"]))
    assert tokens.status_code == 200, tokens.text
    assert tokens.headers["cache-control"] == "no-store"
    body = tokens.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3600
    assert body["scope"] == "openid profile ga4gh_passport_v1"

    alice = local.user("alice")
    info = await client.get("/userinfo",
                            headers={"authorization": f"Bearer {body['access_token']}"})
    assert info.status_code == 200
    assert info.json()["sub"] == alice.sub and len(info.json()["ga4gh_passport_v1"]) == 2

    jwks = (await client.get("/jwks")).json()
    kid = jwt.get_unverified_header(body["id_token"])["kid"]
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == kid)).key
    claims = jwt.decode(body["id_token"], key, algorithms=["RS256"], audience="portal",
                        issuer=URL)
    assert claims["sub"] == alice.sub and claims["name"] == alice.name
    assert claims["nonce"] == "n-456" and claims["iat"] <= time.time() < claims["exp"]
    # The ID token is for the portal to read; it does not open APIs.
    as_access = await client.get("/userinfo",
                                 headers={"authorization": f"Bearer {body['id_token']}"})
    assert as_access.status_code == 401


async def test_unknown_scopes_are_dropped_and_nonce_is_optional(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    pkce = Pkce()
    code = await code_for(client, local, pkce, scope="openid admin", nonce=None)
    body = (await client.post("/token", data=exchange(pkce, code))).json()
    assert body["scope"] == "openid"
    assert "nonce" not in jwt.decode(body["id_token"], options={"verify_signature": False})
    info = await client.get("/userinfo",
                            headers={"authorization": f"Bearer {body['access_token']}"})
    assert "ga4gh_passport_v1" not in info.json()


async def test_wrong_verifier_is_refused_and_spends_the_code(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    pkce = Pkce()
    code = await code_for(client, local, pkce)
    wrong = await client.post("/token", data=exchange(pkce, code,
                                                      code_verifier=Pkce().verifier))
    assert wrong.status_code == 400
    assert wrong.json() == {"error": "invalid_grant", "error_description":
                            "code_verifier does not match the code_challenge"}
    right_too_late = await client.post("/token", data=exchange(pkce, code))
    assert right_too_late.json()["error"] == "invalid_grant"


async def test_code_is_single_use(client: httpx.AsyncClient, local: LocalIssuer) -> None:
    pkce = Pkce()
    code = await code_for(client, local, pkce)
    assert (await client.post("/token", data=exchange(pkce, code))).status_code == 200
    again = await client.post("/token", data=exchange(pkce, code))
    assert again.status_code == 400
    assert again.json()["error"] == "invalid_grant" and "used" in again.json()[
        "error_description"]


async def test_expired_code_is_refused(local: LocalIssuer) -> None:
    pkce = Pkce()
    async with await http_client(local, code_lifetime=0) as http:
        code = await code_for(http, local, pkce)
        late = await http.post("/token", data=exchange(pkce, code))
    assert late.status_code == 400 and late.json()["error"] == "invalid_grant"
    assert "expired" in late.json()["error_description"]


def test_codes_last_their_lifetime() -> None:
    now = [1000.0]
    codes = AuthorizationCodes(lifetime=60, clock=lambda: now[0])
    pkce = Pkce()
    grant = CodeGrant(client_id="portal", redirect_uri=PORTAL, sub="s", scope="openid",
                      code_challenge=pkce.challenge)
    fresh, stale = codes.issue(grant), codes.issue(grant)
    now[0] += 59
    assert codes.redeem(fresh, client_id="portal", redirect_uri=PORTAL,
                        code_verifier=pkce.verifier) == grant
    now[0] += 2
    with pytest.raises(TokenRejected, match="expired"):
        codes.redeem(stale, client_id="portal", redirect_uri=PORTAL,
                     code_verifier=pkce.verifier)


async def test_token_request_must_match_the_authorization_request(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    pkce = Pkce()
    for overrides, error in (({"code_verifier": "short"}, "invalid_request"),
                             ({"code_verifier": "é" * 43}, "invalid_request"),
                             ({"client_id": ""}, "invalid_request"),
                             ({"client_id": "nobody"}, "invalid_client"),
                             ({"client_id": "other"}, "invalid_grant"),
                             ({"redirect_uri": OTHER}, "invalid_grant"),
                             ({"code": "made-up"}, "invalid_grant")):
        code = await code_for(client, local, pkce)
        answer = await client.post("/token", data={**exchange(pkce, code), **overrides})
        assert answer.status_code == 400, overrides
        assert answer.json()["error"] == error, (overrides, answer.json())


@pytest.mark.parametrize("overrides", [
    {"client_id": "nobody"}, {"client_id": None},
    {"redirect_uri": "http://evil.test/callback"}, {"redirect_uri": PORTAL + "/"},
    {"redirect_uri": OTHER},  # registered, but for another client
    {"redirect_uri": None}], ids=str)
async def test_unknown_client_or_return_address_is_an_error_page(
        client: httpx.AsyncClient, overrides: dict[str, str | None]) -> None:
    answer = await client.get("/authorize", params=request(Pkce(), **overrides))
    assert answer.status_code == 400 and "location" not in answer.headers
    assert answer.text.startswith("<!doctype html>") and "<h1>" in answer.text
    assert "<form" not in answer.text
    assert "form-action 'none'" in answer.headers["content-security-policy"]
    assert answer.headers["x-frame-options"] == "DENY"


@pytest.mark.parametrize(("overrides", "error"), [
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": "not-a-sha256"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"response_type": None}, "invalid_request"),
    ({"scope": "profile"}, "invalid_scope")], ids=str)
async def test_bad_parameters_go_back_to_the_client(
        client: httpx.AsyncClient, overrides: dict[str, str | None], error: str) -> None:
    answer = await client.get("/authorize", params=request(Pkce(), **overrides))
    assert answer.status_code == 303
    returned = query(answer)
    assert returned["error"] == error and returned["state"] == "st-123"
    assert returned["error_description"] and "code" not in returned


async def test_repeated_parameters_are_refused(client: httpx.AsyncClient) -> None:
    params: list[tuple[str, str | int | float | bool | None]] = [
        *request(Pkce()).items(), ("scope", "openid")]
    answer = await client.get("/authorize", params=params)
    assert answer.status_code == 303 and query(answer)["error"] == "invalid_request"


async def test_wrong_password_shows_the_form_again_with_an_alert(
        client: httpx.AsyncClient) -> None:
    answer = await sign_in(client, request(Pkce()), password="not-it")
    assert answer.status_code == 401 and "location" not in answer.headers
    assert re.search(r'<p role="alert" id="signin-error">[^<]*[Ww]rong', answer.text)
    assert 'aria-describedby="signin-error"' in answer.text
    assert 'value="alice"' in answer.text and "not-it" not in answer.text
    assert answer.headers["cache-control"] == "no-store"


async def test_wrong_password_then_right_one(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    failed = await sign_in(client, request(Pkce()), password="not-it")
    retry = {**Inputs(failed.text).values, "password": local.demo_passwords()["alice"],
             "action": "sign-in"}
    answer = await client.post("/authorize", data=retry)
    assert answer.status_code == 303 and "code" in query(answer)


async def test_cancel_goes_back_with_access_denied(client: httpx.AsyncClient) -> None:
    answer = await sign_in(client, request(Pkce()), username="", password="", action="cancel")
    assert answer.status_code == 303
    returned = query(answer)
    assert returned["error"] == "access_denied" and returned["state"] == "st-123"
    assert "code" not in returned


@pytest.mark.parametrize("tamper", [
    {"redirect_uri": PORTAL + "x"}, {"code_challenge": s256("x" * 43)},
    {"state": "other"}, {"nonce": ""}, {"binding": "0" * 64}, {"client_id": "other"}],
    ids=lambda tamper: next(iter(tamper)))
async def test_altered_form_is_refused(
        client: httpx.AsyncClient, local: LocalIssuer, tamper: dict[str, str]) -> None:
    answer = await sign_in(client, request(Pkce()), password=local.demo_passwords()["alice"],
                           **tamper)
    assert answer.status_code == 400 and "location" not in answer.headers
    assert "<h1>Sign-in form no longer valid</h1>" in answer.text


async def test_form_posted_from_another_browser_is_refused(
        client: httpx.AsyncClient, local: LocalIssuer) -> None:
    form = await client.get("/authorize", params=request(Pkce()))
    fields = {**Inputs(form.text).values, "username": "alice",
              "password": local.demo_passwords()["alice"], "action": "sign-in"}
    async with await http_client(local) as elsewhere:  # same app key, no cookie
        answer = await elsewhere.post("/authorize", data=fields)
    assert answer.status_code == 400 and "location" not in answer.headers


def test_clients_are_validated_and_merged(tmp_path: Path) -> None:
    issuer = LocalIssuer.create(tmp_path / "issuer", url=URL)
    assert issuer.clients() == [] and issuer.client("portal") is None
    issuer.add_client("portal", [PORTAL])
    issuer.add_client("portal", [PORTAL, "http://127.0.0.1:9000/cb?x=1"])
    client = issuer.client("portal")
    assert client is not None
    assert client.redirect_uris == [PORTAL, "http://127.0.0.1:9000/cb?x=1"]
    assert '[[clients]]\nclient_id = "portal"' in (tmp_path / "issuer" / "clients.toml"
                                                    ).read_text()
    for bad in ("/callback", "ftp://portal.test/cb", "https://portal.test/cb#frag",
                "http:///cb", "https://portal.test/c b", "http://portal.test:99999/cb"):
        with pytest.raises(IssuerConfigError, match="must be an absolute http"):
            issuer.add_client("portal", [bad])
    with pytest.raises(IssuerConfigError, match="should match pattern"):
        issuer.add_client("bad id", [PORTAL])
    with pytest.raises(IssuerConfigError, match="at least 1"):
        issuer.add_client("lonely", [])
    assert [c.client_id for c in LocalIssuer(issuer.directory).clients()] == ["portal"]
