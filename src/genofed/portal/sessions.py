"""Portal sessions, kept server-side in the governance database (so every server process, and a
restart, sees them): the browser holds only a random token in an HttpOnly, SameSite cookie, and
the database only that token's SHA-256.

A session is created by a completed OIDC login and holds the user's identity, name and access
token (the portal calls the APIs with it, so the APIs' own checks apply), a CSRF token every form
must send back, and the researcher's basket. A login under way is kept the same way for a few
minutes: its PKCE verifier, nonce, where to go afterwards, and a binding to the browser that
started it (so a login cannot be completed in someone else's browser).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from genofed.access.db import GovernanceDB
from genofed.access.models import PortalSession

SESSION, LOGIN = "session", "login"
#: How long a login may take at the issuer.
LOGIN_SECONDS = 600


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Session:
    """A logged-in browser."""

    key: str
    identity: str  # "ISSUER|SUBJECT"
    name: str
    access_token: str
    csrf_token: str
    basket: tuple[str, ...]  # "NODE/DATASET" references
    expires_at: int
    #: When the user logged in (epoch seconds): visas granted later come with the next login.
    created_at: float = 0.0

    def csrf_matches(self, sent: str | None) -> bool:
        return sent is not None and hmac.compare_digest(sent.encode(), self.csrf_token.encode())


@dataclass(frozen=True)
class PendingLogin:
    state: str
    verifier: str
    nonce: str
    next_path: str
    redirect_uri: str


class SessionStore:
    """Sessions and logins under way in `db`'s `portal_sessions` table."""

    def __init__(self, db: GovernanceDB, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self._clock = clock

    def _now(self) -> int:
        return int(self._clock())

    # -- logins under way ------------------------------------------------------------------
    def begin_login(self, next_path: str, redirect_uri: str) -> tuple[PendingLogin, str]:
        """A new login: its parameters, and the browser binding to set as a cookie."""
        pending = PendingLogin(state=new_token(), verifier=secrets.token_urlsafe(64),
                               nonce=new_token(), next_path=next_path,
                               redirect_uri=redirect_uri)
        binding = new_token()
        now = self._now()
        with self.db.write() as session:
            session.execute(delete(PortalSession).where(PortalSession.expires_at < now))
            session.add(PortalSession(
                key=_key(pending.state), kind=LOGIN, identity="",
                data={"verifier": pending.verifier, "nonce": pending.nonce,
                      "next": next_path, "redirect_uri": redirect_uri,
                      "binding": _key(binding)},
                created_at=now, expires_at=now + LOGIN_SECONDS))
        return pending, binding

    def finish_login(self, state: str, binding: str | None) -> PendingLogin | None:
        """The login `state` names, used up; None if unknown, expired, already used, or started
        in another browser."""
        with self.db.write() as session:
            row = session.get(PortalSession, _key(state))
            if row is None or row.kind != LOGIN:
                return None
            session.delete(row)
            if row.expires_at < self._now() or binding is None or \
                    not hmac.compare_digest(row.data["binding"], _key(binding)):
                return None
            return PendingLogin(state=state, verifier=row.data["verifier"],
                                nonce=row.data["nonce"], next_path=row.data["next"],
                                redirect_uri=row.data["redirect_uri"])

    # -- sessions --------------------------------------------------------------------------
    def create(self, identity: str, name: str, access_token: str, expires_at: int) -> str:
        """A new session; returns the token for the cookie."""
        token = new_token()
        now = self._now()
        with self.db.write() as session:
            session.add(PortalSession(
                key=_key(token), kind=SESSION, identity=identity,
                data={"name": name, "access_token": access_token, "csrf": new_token(),
                      "basket": [], "logged_in_at": self._clock()},
                created_at=now, expires_at=expires_at))
        return token

    def get(self, token: str | None) -> Session | None:
        if not token:
            return None
        with self.db.read() as session:
            row = session.get(PortalSession, _key(token))
            if row is None or row.kind != SESSION or row.expires_at < self._now():
                return None
            return _session(row)

    def update_basket(self, token: str, change: Callable[[list[str]], list[str]]) -> Session:
        with self.db.write() as session:
            row = session.execute(select(PortalSession).where(
                PortalSession.key == _key(token)).with_for_update()).scalar_one()
            data: dict[str, Any] = dict(row.data)
            data["basket"] = change(list(data.get("basket", [])))
            row.data = data
            return _session(row)

    def end(self, token: str | None) -> None:
        if token:
            with self.db.write() as session:
                session.execute(delete(PortalSession).where(PortalSession.key == _key(token)))


def _session(row: PortalSession) -> Session:
    return Session(key=row.key, identity=row.identity, name=row.data["name"],
                   access_token=row.data["access_token"], csrf_token=row.data["csrf"],
                   basket=tuple(row.data.get("basket", [])), expires_at=row.expires_at,
                   created_at=float(row.data.get("logged_in_at", row.created_at)))
