"""The local OIDC issuer over HTTP (:class:`genofed.access.identity.issuer.LocalIssuer`):
discovery, JWKS, authorize (the authorization code flow with PKCE, for registered web apps),
token (authorization code, password, and token exchange for a Passport) and userinfo with the
issuer's own visas plus those of its visa sources, and serving it on loopback in a thread.

The sign-in flow, for a client registered with `genofed issuer add-client`::

    GET  /authorize?response_type=code&client_id&redirect_uri&scope=openid...&state&nonce
                    &code_challenge&code_challenge_method=S256
         -> a sign-in form (or a 400 error page if the client or redirect_uri is unknown; other
            bad parameters go back to redirect_uri as ?error=...&state=..., RFC 6749 §4.1.2.1)
    POST /authorize (the form) -> 303 to redirect_uri?code&state&iss (RFC 9207),
         or ?error=access_denied if the user cancels; a wrong password shows the form again (401)
    POST /token  grant_type=authorization_code&code&redirect_uri&client_id&code_verifier
         -> {access_token, token_type, expires_in, id_token, scope}

The form's hidden fields carry the authorization request, bound by an HMAC (key: random per
app, so a restart voids open forms) to the request and to a cookie the GET set in the browser:
a form posted from another site, or with altered fields, is refused. Codes live in the app's
memory (:class:`~genofed.access.identity.code_flow.AuthorizationCodes`): one process.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Iterator, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from genofed.access.identity.code_flow import (
    CODE_LIFETIME,
    CODE_VERIFIER,
    S256_CHALLENGE,
    AuthorizationCodes,
    CodeGrant,
    RegisteredClient,
)
from genofed.access.identity.issuer import (
    ACCESS_TOKEN_TYPE,
    AUTHORIZATION_CODE_GRANT,
    CONFIG_FILE,
    DEFAULT_SCOPE,
    JWT_TOKEN_TYPE,
    PASSPORT_TOKEN_TYPE,
    SOURCE_TOKEN_LIFETIME,
    SUPPORTED_SCOPES,
    TOKEN_EXCHANGE_GRANT,
    IssuerUser,
    LocalIssuer,
    loopback_port,
)
from genofed.access.identity.passport import PASSPORT_CLAIM
from genofed.errors import TokenRejected
from genofed.server.loopback import LoopbackServer

log = logging.getLogger(__name__)


@contextlib.contextmanager
def running_issuer(directory: Path, *, demo_users: bool = True, visa_sources: Sequence[str] = (),
                   visa_source_transport: httpx.AsyncBaseTransport | None = None,
                   **create_options: Any) -> Iterator[LocalIssuer]:
    """Serve the issuer in `directory` on loopback in a background thread; a new directory is
    created first, on a free port (with the demo users unless told otherwise)."""
    existing = LocalIssuer(directory) if (directory / CONFIG_FILE).exists() else None
    port = loopback_port(existing.url) if existing else 0
    with LoopbackServer(port=port) as server:
        issuer = existing or LocalIssuer.create(directory, url=server.url, demo_users=demo_users,
                                                visa_sources=visa_sources, **create_options)
        server.start(create_issuer_app(issuer.directory,
                                       visa_source_transport=visa_source_transport))
        yield issuer


@contextlib.contextmanager
def serving(issuer: LocalIssuer, *, visa_source_transport: httpx.AsyncBaseTransport | None = None
            ) -> Iterator[LocalIssuer]:
    """Serve an existing issuer on the host and port of its URL (loopback only) in a thread."""
    with LoopbackServer(port=loopback_port(issuer.url)) as server:
        server.start(create_issuer_app(issuer.directory,
                                       visa_source_transport=visa_source_transport))
        yield issuer


async def collect_source_visas(sources: Sequence[str], access_token: str, *, timeout: float,
                               transport: httpx.AsyncBaseTransport | None = None) -> list[str]:
    """Ask every visa source for the user's visas, concurrently; failing sources are skipped."""
    if not sources:
        return []
    async with httpx.AsyncClient(timeout=timeout, transport=transport,
                                 follow_redirects=False) as client:
        answers = await asyncio.gather(*(_source_visas(client, url, access_token)
                                         for url in sources))
    return [visa for answer in answers for visa in answer]


async def _source_visas(client: httpx.AsyncClient, url: str, access_token: str) -> list[str]:
    try:
        response = await client.get(url, headers={"authorization": f"Bearer {access_token}"})
        response.raise_for_status()
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.warning("visa source %s skipped: %s", url, exc.__class__.__name__
                    if not isinstance(exc, httpx.HTTPStatusError) else
                    f"HTTP {exc.response.status_code}")
        return []
    visas = body.get(PASSPORT_CLAIM) if isinstance(body, dict) else None
    if not isinstance(visas, list) or not all(isinstance(v, str) for v in visas):
        log.warning("visa source %s skipped: answer has no '%s' list of strings", url,
                    PASSPORT_CLAIM)
        return []
    return visas


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status,
                        headers={"cache-control": "no-store"})


def _bearer_error(description: str) -> JSONResponse:
    return JSONResponse({"error": "invalid_token", "error_description": description}, 401,
                        headers={"www-authenticate": f'Bearer error="invalid_token", '
                                 f'error_description="{description}"'})


async def _form(request: Request) -> list[tuple[str, str]] | None:
    """The fields of an application/x-www-form-urlencoded body, else None."""
    if not request.headers.get("content-type", "").startswith(
            "application/x-www-form-urlencoded"):
        return None
    return parse_qsl((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)


# --- the sign-in pages ---------------------------------------------------------------------------

#: The authorization request's parameters, carried from GET /authorize to the form's POST.
AUTHORIZE_FIELDS = ("response_type", "client_id", "redirect_uri", "scope", "state", "nonce",
                    "code_challenge", "code_challenge_method")
#: The browser cookie a form is bound to (SameSite=Lax: not sent with a cross-site POST).
BROWSER_COOKIE = "genofed_signin"

_STYLE = """
body{font:1rem/1.5 system-ui,sans-serif;margin:0;padding:2rem 1rem;color:#1a1a1a;background:#f4f5f7}
main{max-width:26rem;margin:0 auto;padding:1.5rem;background:#fff;border:1px solid #c8ccd4;
border-radius:.5rem}
h1{font-size:1.5rem;margin-top:0}
label{display:block;font-weight:600}
input{box-sizing:border-box;width:100%;padding:.5rem;font:inherit;border:1px solid #5f6470;
border-radius:.25rem}
button{font:inherit;padding:.5rem 1rem;margin:0 .5rem .5rem 0}
:focus-visible{outline:3px solid #1a5fb4;outline-offset:2px}
[role=alert]{padding:.5rem .75rem;border-left:.25rem solid #b00020;background:#fdecee;
color:#6d0012}
"""
# The stylesheet is allowed by its hash: no 'unsafe-inline', and nothing else may style or run.
_STYLE_SOURCE = f"'sha256-{base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()}'"


def _page_headers(form_action: str) -> dict[str, str]:
    """Security headers of every /authorize response. CSP form-action also governs the redirect
    that answers the form's POST, so it names the client's redirect origin too."""
    return {"content-security-policy": f"default-src 'none'; style-src {_STYLE_SOURCE}; "
            f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'",
            "x-frame-options": "DENY", "referrer-policy": "no-referrer",
            "x-content-type-options": "nosniff", "cache-control": "no-store"}


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"


def _html(title: str, body: str, *, status: int, form_action: str = "'none'") -> HTMLResponse:
    page = (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{escape(title)} - genofed issuer</title>\n<style>{_STYLE}</style>\n"
            f"</head>\n<body>\n<main>\n<h1>{escape(title)}</h1>\n{body}</main>\n</body>\n"
            f"</html>\n")
    return HTMLResponse(page, status, headers=_page_headers(form_action))


def _error_page(title: str, reason: str) -> HTMLResponse:
    """A refusal shown to the user, not sent to the client: used when the redirect_uri cannot be
    trusted (redirecting there would make the issuer an open redirector)."""
    return _html(title, f"<p>{escape(reason)}</p>\n<p>Go back to the application you came from "
                 "and sign in again. If this keeps happening, tell its operator what this page "
                 "says.</p>\n", status=400)


def _redirect(redirect_uri: str, params: Mapping[str, str | None]) -> Response:
    """303 to the client's redirect URI with `params` added to its query (RFC 6749 §4.1.2)."""
    parts = urlsplit(redirect_uri)
    added = urlencode({k: v for k, v in params.items() if v})
    location = urlunsplit(parts._replace(query="&".join(q for q in (parts.query, added) if q)))
    return Response(status_code=303, headers={"location": location,
                                              **_page_headers("'none'")})


def _login_page(issuer: LocalIssuer, request: Mapping[str, str], binding: str, *,
                username: str = "", failed: bool = False) -> HTMLResponse:
    hidden = "".join(f'<input type="hidden" name="{name}" value="{escape(value)}">\n'
                     for name, value in (*request.items(), ("binding", binding)))
    alert = described = ""
    if failed:
        alert = ('<p role="alert" id="signin-error">Wrong username or password. Check them and '
                 "try again.</p>\n")
        described = ' aria-invalid="true" aria-describedby="signin-error"'
    body = (
        f"<p>The application <strong>{escape(request['client_id'])}</strong> at "
        f"{escape(_origin(request['redirect_uri']))} asks you to sign in with your account at "
        f"{escape(issuer.url)}.</p>\n{alert}"
        # Relative: the form posts back to this page's own endpoint whatever host name or
        # path prefix the browser reached it by.
        '<form method="post" action="authorize">\n'
        f"{hidden}"
        '<p><label for="username">Username</label>\n'
        f'<input id="username" name="username" type="text" autocomplete="username" '
        f'autocapitalize="none" spellcheck="false" required value="{escape(username)}"'
        f"{described}></p>\n"
        '<p><label for="password">Password</label>\n'
        f'<input id="password" name="password" type="password" '
        f'autocomplete="current-password" required{described}></p>\n'
        # Sign in comes first: the Enter key submits with the first button.
        '<p><button type="submit" name="action" value="sign-in">Sign in</button>\n'
        '<button type="submit" name="action" value="cancel" formnovalidate>Cancel</button>'
        "</p>\n</form>\n")
    return _html("Sign in", body, status=401 if failed else 200,
                 form_action=f"'self' {_origin(request['redirect_uri'])}")


def _authorization_request(issuer: LocalIssuer, fields: Sequence[tuple[str, str]]
                           ) -> tuple[dict[str, str], RegisteredClient] | Response:
    """The authorization request's parameters ("" when absent) and its client, or the response
    refusing it: an error page when the client or its redirect_uri is not registered, else a
    redirect to the client carrying the error (RFC 6749 §4.1.2.1, RFC 7636 §4.4.1)."""
    given: dict[str, list[str]] = {}
    for name, value in fields:
        if name in AUTHORIZE_FIELDS:
            given.setdefault(name, []).append(value)
    params = {name: given.get(name, [""])[0] for name in AUTHORIZE_FIELDS}
    client = issuer.client(params["client_id"])
    if client is None or len(given.get("client_id", [])) != 1:
        return _error_page("Unknown application", f"The application "
                           f"{params['client_id']!r} is not registered with this sign-in "
                           "service, so it cannot send you here to sign in.")
    if params["redirect_uri"] not in client.redirect_uris \
            or len(given.get("redirect_uri", [])) != 1:
        return _error_page("Unexpected return address", f"The application "
                           f"{client.client_id!r} asked to send you back to "
                           f"{params['redirect_uri']!r}, which is not one of its registered "
                           "addresses; for your safety you are not sent there.")

    def refuse(error: str, description: str) -> Response:
        return _redirect(params["redirect_uri"], {"error": error,
                                                  "error_description": description,
                                                  "state": params["state"], "iss": issuer.url})

    repeated = sorted(name for name, values in given.items() if len(values) > 1)
    if repeated:
        return refuse("invalid_request", f"parameters given more than once: {repeated}")
    if params["response_type"] != "code":
        return (refuse("unsupported_response_type", "response_type must be code")
                if params["response_type"] else
                refuse("invalid_request", "response_type is missing"))
    if "openid" not in params["scope"].split():
        return refuse("invalid_scope", "scope must include openid")
    if not params["code_challenge"]:
        return refuse("invalid_request", "code_challenge is required (PKCE, RFC 7636)")
    if params["code_challenge_method"] != "S256":
        return refuse("invalid_request", "code_challenge_method must be S256")
    if not S256_CHALLENGE.fullmatch(params["code_challenge"]):
        return refuse("invalid_request", "code_challenge must be BASE64URL(SHA256("
                      "code_verifier)): 43 characters")
    return params, client


def create_issuer_app(directory: Path, *,
                      visa_source_transport: httpx.AsyncBaseTransport | None = None,
                      code_lifetime: float = CODE_LIFETIME) -> FastAPI:
    """The issuer's ASGI app. `visa_source_transport` lets tests route visa-source calls to an
    in-process app; by default they go over the network. Authorization codes last
    `code_lifetime` seconds."""
    issuer = LocalIssuer(directory)
    issuer.jwks()  # fail now, not on the first request, if the keys are missing
    app = FastAPI(title="genofed local OIDC issuer", version="1",
                  description="OIDC discovery, JWKS, authorization code flow with PKCE, token "
                  "and userinfo with GA4GH Passport visas (ga4gh_passport_v1), for a genofed "
                  "node's embedded default and tests.")
    app.state.issuer = issuer
    codes = app.state.authorization_codes = AuthorizationCodes(lifetime=code_lifetime)
    form_key = secrets.token_bytes(32)
    cookie_path = urlsplit(issuer.url).path + "/authorize"

    def binding(params: Mapping[str, str], browser: str) -> str:
        """Ties a sign-in form to its authorization request and to the browser it was shown in."""
        message = json.dumps([browser, params], sort_keys=True).encode()
        return hmac.new(form_key, message, hashlib.sha256).hexdigest()

    async def visas_for(user: IssuerUser) -> list[str]:
        # Sources get a short-lived token for the user *without* the passport scope: it proves
        # who the user is, and a source that checks it at our userinfo gets no visas back and
        # so cannot call the sources again (no loop), nor cache a partial passport under the
        # user's real token.
        sourced = await collect_source_visas(
            issuer.settings.visa_sources,
            issuer.access_token(user.id, lifetime=SOURCE_TOKEN_LIFETIME, scope="openid"),
            timeout=issuer.settings.visa_source_timeout_seconds,
            transport=visa_source_transport)
        return issuer.own_visas(user) + sourced + issuer.link_visas(user, sourced)

    def bearer(request: Request) -> str | None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" and token.strip() else None

    @app.get("/.well-known/openid-configuration")
    def discovery() -> dict[str, Any]:
        return issuer.discovery_document()

    @app.get("/jwks")
    def jwks() -> dict[str, Any]:
        return issuer.jwks()

    @app.get("/authorize", response_model=None)
    def authorize(request: Request) -> Response:
        checked = _authorization_request(issuer, request.query_params.multi_items())
        if isinstance(checked, Response):
            return checked
        params, _ = checked
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if len(browser) < 22:  # a fresh browser (or a forged cookie): a new random value
            browser = secrets.token_urlsafe(16)
        page = _login_page(issuer, params, binding(params, browser))
        page.set_cookie(BROWSER_COOKIE, browser, path=cookie_path, httponly=True,
                        samesite="lax", secure=issuer.url.startswith("https:"))
        return page

    @app.post("/authorize", response_model=None)
    async def sign_in(request: Request) -> Response:
        fields = await _form(request) or []
        form = dict(reversed(fields))  # the first of repeated fields, as in the query
        params = {name: form.get(name, "") for name in AUTHORIZE_FIELDS}
        browser = request.cookies.get(BROWSER_COOKIE, "")
        if not browser or not hmac.compare_digest(form.get("binding", ""),
                                                  binding(params, browser)):
            return _error_page("Sign-in form no longer valid", "This sign-in form was "
                               "altered, opened in another browser, or is from before the "
                               "sign-in service restarted, so it cannot be used.")
        checked = _authorization_request(issuer, fields)  # the client may have been removed
        if isinstance(checked, Response):
            return checked
        params, client = checked
        if form.get("action") == "cancel":
            return _redirect(params["redirect_uri"], {
                "error": "access_denied", "error_description": "the user cancelled sign-in",
                "state": params["state"], "iss": issuer.url})
        # scrypt takes a while: off the event loop, so other requests go on meanwhile.
        user = await asyncio.to_thread(issuer.login, form.get("username", ""),
                                       form.get("password", ""))
        if user is None:
            return _login_page(issuer, params, form["binding"],
                               username=form.get("username", ""), failed=True)
        requested = dict.fromkeys(params["scope"].split())
        code = codes.issue(CodeGrant(
            client_id=client.client_id, redirect_uri=params["redirect_uri"], sub=user.sub,
            scope=" ".join(s for s in requested if s in SUPPORTED_SCOPES),
            code_challenge=params["code_challenge"], nonce=params["nonce"] or None))
        log.info("user %s signed in for client %s", user.id, client.client_id)
        return _redirect(params["redirect_uri"], {"code": code, "state": params["state"],
                                                  "iss": issuer.url})

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        fields = await _form(request)
        if fields is None:
            return _oauth_error("invalid_request", "send application/x-www-form-urlencoded")
        form = dict(reversed(fields))  # the first of repeated fields
        grant = form.get("grant_type", "")
        if grant == AUTHORIZATION_CODE_GRANT:
            return redeem(form)
        if grant == "password":
            user = issuer.login(form.get("username", ""), form.get("password", ""))
            if user is None:
                return _oauth_error("invalid_grant", "unknown user or wrong password")
            scope = form.get("scope") or DEFAULT_SCOPE
            access = issuer.access_token(user.id, scope=scope)
            return JSONResponse({"access_token": access, "token_type": "Bearer",
                                 "expires_in": issuer.settings.token_lifetime_seconds,
                                 "scope": scope}, headers={"cache-control": "no-store"})
        if grant == TOKEN_EXCHANGE_GRANT:
            if form.get("subject_token_type") != ACCESS_TOKEN_TYPE:
                return _oauth_error("invalid_request", f"subject_token_type must be "
                                    f"{ACCESS_TOKEN_TYPE}")
            if form.get("requested_token_type", JWT_TOKEN_TYPE) != JWT_TOKEN_TYPE:
                return _oauth_error("invalid_request", f"requested_token_type must be "
                                    f"{JWT_TOKEN_TYPE}")
            subject_token = form.get("subject_token", "")
            try:
                claims = issuer.verify_access_token(subject_token)
            except TokenRejected as exc:
                return _oauth_error("invalid_grant", exc.reason)
            exchanged = issuer.user_by_sub(claims["sub"])
            if exchanged is None or PASSPORT_CLAIM not in str(claims.get("scope", "")).split():
                return _oauth_error("invalid_grant", "token lacks the ga4gh_passport_v1 scope "
                                    "or its user no longer exists")
            visas = await visas_for(exchanged)
            passport = issuer.passport_for_user(exchanged, visas,
                                                audience=form.get("audience") or None,
                                                expires=int(claims["exp"]))
            return JSONResponse({"access_token": passport, "token_type": "Bearer",
                                 "issued_token_type": PASSPORT_TOKEN_TYPE,
                                 "expires_in": max(0, int(claims["exp"] - time.time()))},
                                headers={"cache-control": "no-store"})
        return _oauth_error("unsupported_grant_type", f"grant_type must be "
                            f"{AUTHORIZATION_CODE_GRANT}, password or {TOKEN_EXCHANGE_GRANT}")

    def redeem(form: Mapping[str, str]) -> JSONResponse:
        missing = [name for name in ("code", "redirect_uri", "client_id", "code_verifier")
                   if not form.get(name)]
        if missing:
            return _oauth_error("invalid_request", f"missing {', '.join(missing)}")
        if not CODE_VERIFIER.fullmatch(form["code_verifier"]):
            return _oauth_error("invalid_request", "code_verifier must be 43-128 characters of "
                                "A-Z a-z 0-9 - . _ ~ (RFC 7636)")
        if issuer.client(form["client_id"]) is None:
            return _oauth_error("invalid_client", "unknown client_id")
        try:
            grant = codes.redeem(form["code"], client_id=form["client_id"],
                                 redirect_uri=form["redirect_uri"],
                                 code_verifier=form["code_verifier"])
        except TokenRejected as exc:
            return _oauth_error("invalid_grant", exc.reason)
        user = issuer.user_by_sub(grant.sub)
        if user is None:
            return _oauth_error("invalid_grant", "the user who signed in no longer exists")
        return JSONResponse({
            "access_token": issuer.access_token(user.id, scope=grant.scope),
            "token_type": "Bearer", "expires_in": issuer.settings.token_lifetime_seconds,
            "id_token": issuer.id_token(user.id, audience=grant.client_id, nonce=grant.nonce),
            "scope": grant.scope}, headers={"cache-control": "no-store"})

    @app.api_route("/userinfo", methods=["GET", "POST"])
    async def userinfo(request: Request) -> JSONResponse:
        access = bearer(request)
        if access is None:
            return JSONResponse({"error": "invalid_request"}, 401,
                                headers={"www-authenticate": "Bearer"})
        try:
            claims = issuer.verify_access_token(access)
        except TokenRejected as exc:
            return _bearer_error(exc.reason)
        user = issuer.user_by_sub(claims["sub"])
        if user is None:
            return _bearer_error("the token's user no longer exists")
        body: dict[str, Any] = {"sub": user.sub, "name": user.name}
        if PASSPORT_CLAIM in str(claims.get("scope", "")).split():
            body[PASSPORT_CLAIM] = await visas_for(user)
        return JSONResponse(body, headers={"cache-control": "no-store"})

    return app


