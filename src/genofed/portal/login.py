"""Logging in to the portal: the OIDC authorization code flow with PKCE (S256) against the
configured issuer (the local issuer by default; LS-AAI in production). The portal is a public
client: no secret, so the code is useless without the verifier this process keeps.

The ID token is verified (signature from the issuer's JWKS, `iss`, `aud` = our client id,
times, and the `nonce` sent) before a session is made; the access token is kept in the session
and sent to the APIs, which check it (and the visas behind it) on every call themselves.
"""

from __future__ import annotations

import base64
import hashlib
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.concurrency import run_in_threadpool

from genofed.access.identity.oidc import AccessTokenVerifier, discovery_url
from genofed.errors import IssuerUnavailable, TokenRejected
from genofed.portal.sessions import PendingLogin

#: The passport scope lets the nodes read the user's visas (the issuer's /userinfo gives them
#: only to a token with it): without it a logged-in user is answered as an anonymous one.
SCOPE = "openid profile ga4gh_passport_v1"
_METADATA_SECONDS = 300.0


class LoginFailed(Exception):
    """The issuer refused, or answered with something we cannot accept; the message says what."""


@dataclass(frozen=True)
class LoggedIn:
    identity: str  # "ISSUER|SUBJECT"
    name: str
    access_token: str
    expires_at: int


def code_challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcLogin:
    """One issuer, one client id."""

    def __init__(self, issuer: str, client_id: str, *, timeout: float = 10.0) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._timeout = timeout
        self._metadata: tuple[dict[str, Any], float] | None = None
        self._verifier: AccessTokenVerifier | None = None

    async def _discovery(self) -> dict[str, Any]:
        if self._metadata is not None and time.monotonic() - self._metadata[1] < \
                _METADATA_SECONDS:
            return self._metadata[0]
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.get(discovery_url(self.issuer))
                response.raise_for_status()
                document: dict[str, Any] = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise LoginFailed(f"the login service {self.issuer} cannot be reached "
                              f"({type(exc).__name__}); try again later") from None
        if document.get("issuer") != self.issuer or \
                not isinstance(document.get("authorization_endpoint"), str) or \
                not isinstance(document.get("token_endpoint"), str):
            raise LoginFailed(f"the login service {self.issuer} does not offer the "
                              "authorization code flow this portal uses")
        self._metadata = (document, time.monotonic())
        return document

    async def authorize_url(self, pending: PendingLogin) -> str:
        document = await self._discovery()
        query = {"response_type": "code", "client_id": self.client_id,
                 "redirect_uri": pending.redirect_uri, "scope": SCOPE, "state": pending.state,
                 "nonce": pending.nonce, "code_challenge": code_challenge(pending.verifier),
                 "code_challenge_method": "S256"}
        return f"{document['authorization_endpoint']}?{urlencode(query)}"

    async def finish(self, code: str, pending: PendingLogin) -> LoggedIn:
        document = await self._discovery()
        form = {"grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "client_id": self.client_id,
                "code_verifier": pending.verifier}
        try:
            async with httpx.AsyncClient(timeout=self._timeout) as client:
                response = await client.post(document["token_endpoint"], data=form)
        except httpx.HTTPError as exc:
            raise LoginFailed(f"the login service {self.issuer} cannot be reached "
                              f"({type(exc).__name__}); try again later") from None
        try:
            tokens = response.json()
        except ValueError:
            tokens = {}
        if response.status_code != 200 or not isinstance(tokens, dict):
            reason = tokens.get("error_description") or tokens.get("error") \
                if isinstance(tokens, dict) else None
            raise LoginFailed("the login service refused the login "
                              f"({reason or response.status_code})")
        access_token, id_token = tokens.get("access_token"), tokens.get("id_token")
        if not isinstance(access_token, str) or not isinstance(id_token, str):
            raise LoginFailed("the login service sent no access token or no ID token")
        claims = await run_in_threadpool(self._verify_id_token, id_token)
        if claims.get("nonce") != pending.nonce:
            raise LoginFailed("the ID token is not the one this login asked for (nonce)")
        lifetime = tokens.get("expires_in")
        expires = int(time.time()) + (int(lifetime) if isinstance(lifetime, int) else 3600)
        name = claims.get("name")
        return LoggedIn(identity=f"{claims['iss']}|{claims['sub']}",
                        name=name if isinstance(name, str) and name else str(claims["sub"]),
                        access_token=access_token, expires_at=expires)

    def _verify_id_token(self, id_token: str) -> dict[str, Any]:
        if self._verifier is None:
            self._verifier = AccessTokenVerifier([self.issuer], audience=self.client_id)
        try:
            return self._verifier.verify(id_token, "ID token")
        except (TokenRejected, IssuerUnavailable) as exc:
            raise LoginFailed(f"the ID token was refused: {exc}") from None

    def close(self) -> None:
        if self._verifier is not None:
            self._verifier.http.close()
