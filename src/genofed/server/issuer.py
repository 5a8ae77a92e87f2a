"""The local OIDC issuer over HTTP (:class:`genofed.access.identity.issuer.LocalIssuer`):
discovery, JWKS, token (password grant; token exchange for a Passport) and userinfo with the
issuer's own visas plus those of its visa sources, and serving it on loopback in a thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from genofed.access.identity.issuer import (
    ACCESS_TOKEN_TYPE,
    CONFIG_FILE,
    DEFAULT_SCOPE,
    JWT_TOKEN_TYPE,
    PASSPORT_TOKEN_TYPE,
    SOURCE_TOKEN_LIFETIME,
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


def create_issuer_app(directory: Path, *,
                      visa_source_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The issuer's ASGI app. `visa_source_transport` lets tests route visa-source calls to an
    in-process app; by default they go over the network."""
    issuer = LocalIssuer(directory)
    issuer.jwks()  # fail now, not on the first request, if the keys are missing
    app = FastAPI(title="genofed local OIDC issuer", version="1",
                  description="OIDC discovery, JWKS, token and userinfo with GA4GH Passport "
                  "visas (ga4gh_passport_v1), for a genofed node's embedded default and tests.")
    app.state.issuer = issuer

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

    @app.post("/token")
    async def token(request: Request) -> JSONResponse:
        if not request.headers.get("content-type", "").startswith(
                "application/x-www-form-urlencoded"):
            return _oauth_error("invalid_request", "send application/x-www-form-urlencoded")
        form = {k: v[0] for k, v in parse_qs((await request.body()).decode("utf-8", "replace"),
                                             keep_blank_values=True).items()}
        grant = form.get("grant_type", "")
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
        return _oauth_error("unsupported_grant_type",
                            f"grant_type must be password or {TOKEN_EXCHANGE_GRANT}")

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


