"""Portal sessions in the governance database: what the browser holds is useless without the
row, a login is single-use and bound to the browser that started it, and sessions end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from genofed.access.db import GovernanceDB
from genofed.access.models import PortalSession
from genofed.portal.login import code_challenge
from genofed.portal.sessions import LOGIN_SECONDS, SessionStore


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[GovernanceDB]:
    database = GovernanceDB(f"sqlite:///{tmp_path / 'governance.sqlite'}")
    yield database
    database.close()


def test_a_session_is_found_by_its_token_and_stores_only_a_hash(db: GovernanceDB) -> None:
    store = SessionStore(db)
    token = store.create("https://issuer|alice", "Alice", "ACCESS", expires_at=2_000_000_000)
    session = store.get(token)
    assert session is not None
    assert (session.identity, session.name, session.access_token) == \
        ("https://issuer|alice", "Alice", "ACCESS")
    assert session.csrf_matches(session.csrf_token)
    assert not session.csrf_matches(None) and not session.csrf_matches("forged")
    with db.read() as read:
        keys = list(read.execute(select(PortalSession.key)).scalars())
    assert token not in keys and len(keys) == 1
    assert store.get("not-a-token") is None and store.get(None) is None


def test_a_session_ends_at_logout_and_at_expiry(db: GovernanceDB) -> None:
    clock = Clock()
    store = SessionStore(db, clock=clock)
    clock.now += 0.25
    token = store.create("i|a", "A", "T", expires_at=int(clock.now) + 60)
    other = store.create("i|b", "B", "T", expires_at=int(clock.now) + 3600)
    found = store.get(token)
    assert found is not None and found.created_at == clock.now  # to the sub-second
    store.end(token)
    assert store.get(token) is None and store.get(other) is not None
    clock.now += 3601
    assert store.get(other) is None


def test_a_login_is_used_once_and_only_by_the_browser_that_started_it(db: GovernanceDB) -> None:
    clock = Clock()
    store = SessionStore(db, clock=clock)
    pending, binding = store.begin_login("/portal/search", "http://127.0.0.1:1/portal/callback")
    assert store.finish_login(pending.state, "another browser") is None
    assert store.finish_login(pending.state, binding) is None  # the failed try used it up
    pending, binding = store.begin_login("/portal/", "http://x/portal/callback")
    finished = store.finish_login(pending.state, binding)
    assert finished == pending
    assert store.finish_login(pending.state, binding) is None
    late, binding = store.begin_login("/portal/", "http://x/portal/callback")
    clock.now += LOGIN_SECONDS + 1
    assert store.finish_login(late.state, binding) is None


def test_a_session_token_is_no_login_state(db: GovernanceDB) -> None:
    store = SessionStore(db)
    token = store.create("i|a", "A", "T", expires_at=2_000_000_000)
    assert store.finish_login(token, "whatever") is None
    assert store.get(token) is not None


def test_the_basket_is_kept_with_the_session(db: GovernanceDB) -> None:
    store = SessionStore(db)
    token = store.create("i|a", "A", "T", expires_at=2_000_000_000)
    store.update_basket(token, lambda basket: [*basket, "fi/fi-biobank"])
    store.update_basket(token, lambda basket: [*basket, "se/se-cohort"])
    session = store.get(token)
    assert session is not None and session.basket == ("fi/fi-biobank", "se/se-cohort")


def test_the_pkce_challenge_is_rfc7636s() -> None:
    # RFC 7636 appendix B.
    assert code_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == \
        "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
