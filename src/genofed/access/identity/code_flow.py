"""The authorization code flow's parts (OAuth 2.0 with PKCE, RFC 6749 and 7636, S256 only):
the registered public clients that may send users to the issuer's /authorize, and the codes that
stand between /authorize and /token. :mod:`genofed.access.identity.issuer` keeps the clients in
its directory; :mod:`genofed.server.issuer` serves the endpoints."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from genofed.errors import IssuerConfigError, TokenRejected

CLIENT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
#: RFC 7636 §4.1: a code_verifier is 43-128 unreserved characters.
CODE_VERIFIER = re.compile(r"[A-Za-z0-9._~-]{43,128}")
#: RFC 7636 §4.2: an S256 code_challenge is BASE64URL(SHA-256), 43 characters unpadded.
S256_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{43}")
#: Seconds an authorization code may be redeemed in (RFC 6749 §4.1.2: short, 10 min at most).
CODE_LIFETIME = 60

def check_redirect_uri(uri: str) -> str:
    """`uri` if it can be a registered redirect URI: absolute http(s) with a host, no fragment
    (RFC 6749 §3.1.2); else IssuerConfigError (a ValueError, so also a pydantic field error)."""
    try:
        parts = urlsplit(uri)
        absolute = parts.scheme in ("http", "https") and bool(parts.hostname) \
            and not parts.fragment and parts.port != 0
    except ValueError:  # a malformed IPv6 host or port
        absolute = False
    if not absolute or any(c.isspace() or not c.isprintable() for c in uri):
        raise IssuerConfigError(f"redirect URI {uri!r} must be an absolute http(s) URL such as "
                                "https://portal.example.org/callback (no fragment, no spaces)")
    return uri


class RegisteredClient(BaseModel):
    """A public client (a web app without a secret; PKCE protects its codes) that may send users
    to /authorize and receive their codes at one of its `redirect_uris`."""

    model_config = ConfigDict(extra="forbid")
    client_id: str = Field(pattern=CLIENT_ID_PATTERN)
    #: Compared character for character with a request's redirect_uri (no prefix matching).
    redirect_uris: list[str] = Field(min_length=1)

    @field_validator("redirect_uris")
    @classmethod
    def _absolute_http(cls, uris: list[str]) -> list[str]:
        return [check_redirect_uri(uri) for uri in uris]


def s256(code_verifier: str) -> str:
    """RFC 7636 S256: BASE64URL(SHA256(ASCII(code_verifier))), unpadded."""
    digest = hashlib.sha256(code_verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class CodeGrant:
    """What an authorization code stands for: who signed in, for which client and request."""

    client_id: str
    redirect_uri: str
    sub: str
    scope: str
    code_challenge: str
    nonce: str | None = None


class AuthorizationCodes:
    """The authorization codes between /authorize and /token: random, single use, valid for
    `lifetime` seconds of `clock`.

    Kept in this process's memory behind a lock: the local issuer is one process, so the /token
    that redeems a code runs where the /authorize that issued it ran; a restart forgets the
    outstanding codes (their users sign in again). The first redemption attempt spends a code,
    right or wrong, so a stolen code cannot be tried again with other verifiers. A replayed code
    is refused, but the tokens it bought stay valid: they are self-contained JWTs."""

    def __init__(self, lifetime: float = CODE_LIFETIME,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.lifetime = lifetime
        self._clock = clock
        self._codes: dict[str, tuple[float, CodeGrant]] = {}
        self._spent: dict[str, float] = {}  # code -> its expiry, to call a replay a replay
        self._lock = threading.Lock()

    def _forget_expired(self, now: float) -> None:
        self._codes = {c: entry for c, entry in self._codes.items() if entry[0] > now}
        self._spent = {c: expiry for c, expiry in self._spent.items() if expiry > now}

    def issue(self, grant: CodeGrant) -> str:
        code = secrets.token_urlsafe(32)
        now = self._clock()
        with self._lock:
            self._forget_expired(now)
            self._codes[code] = (now + self.lifetime, grant)
        return code

    def redeem(self, code: str, *, client_id: str, redirect_uri: str,
               code_verifier: str) -> CodeGrant:
        """The grant of `code` if the token request matches it; else TokenRejected (the
        token endpoint's invalid_grant), with a reason safe to show the client."""
        with self._lock:
            self._forget_expired(self._clock())
            if code in self._spent:
                raise TokenRejected("authorization code was used already")
            entry = self._codes.pop(code, None)
            if entry is None:
                raise TokenRejected("unknown or expired authorization code")
            self._spent[code] = entry[0]
        grant = entry[1]
        if client_id != grant.client_id:
            raise TokenRejected("authorization code was issued to another client")
        if redirect_uri != grant.redirect_uri:
            raise TokenRejected("redirect_uri differs from the authorization request's")
        if not hmac.compare_digest(s256(code_verifier), grant.code_challenge):
            raise TokenRejected("code_verifier does not match the code_challenge")
        return grant
