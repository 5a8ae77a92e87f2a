"""Reading the audit trail as an auditor asks, on SQLite and PostgreSQL: each filter (subject or a
unique prefix of it, dataset, action or family of actions, decision, time) is applied by the
database, and a filter given wrongly is refused with the option named."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from genofed.access.audit import AuditLog, format_at
from genofed.access.audit_query import parse_query, parse_time, select_entries
from genofed.access.dac import Identity
from genofed.access.db import GovernanceDB
from genofed.errors import AuditQueryError


@pytest.fixture
def varied(audit: AuditLog, db: GovernanceDB) -> Iterator[dict[str, str]]:
    """Records of three subjects (two sharing a first hex digit), two datasets, data and
    governance actions; yields the subjects and a time between the 3rd and 4th record."""
    subjects = {"a": "a1" + "0" * 30, "b": "a2" + "0" * 30, "c": "c3" + "0" * 30}
    Row = tuple[str, str | None, str, str]
    rows: list[Row] = [("a", "ds-1", "beacon.count", "allow"),
                       ("a", "ds-2", "beacon.record", "deny"),
                       ("b", "ds-1", "application.submit", "allow")]
    later = [("b", "ds-1", "application.approve", "allow"), ("c", None, "dac.add", "allow"),
             ("c", "ds-2", "visa.revoke", "deny")]
    for who, dataset, action, decision in rows:
        audit.append(subject=subjects[who], dataset_id=dataset, action=action,
                     decision=decision, reason="r")
    time.sleep(0.01)
    middle = format_at(datetime.now(UTC))
    time.sleep(0.01)
    for who, dataset, action, decision in later:
        audit.append(subject=subjects[who], dataset_id=dataset, action=action,
                     decision=decision, reason="r")
    yield {**subjects, "middle": middle}


def matching(db: GovernanceDB, **filters: Any) -> list[int]:
    return [e.seq for e in select_entries(db, parse_query(db, **filters))]


def test_filters_run_in_the_database(varied: dict[str, str], db: GovernanceDB) -> None:
    assert matching(db) == [1, 2, 3, 4, 5, 6]
    assert matching(db, subject=varied["a"]) == [1, 2]
    assert matching(db, subject="c3") == [5, 6]  # a prefix only one subject has
    assert matching(db, subject="C3") == [5, 6]
    assert matching(db, subject="ff") == []
    with pytest.raises(AuditQueryError, match="more than one"):
        parse_query(db, subject="a")
    with pytest.raises(AuditQueryError, match="pseudonym"):
        parse_query(db, subject="alice@example.org")
    identity = Identity("https://login.example.org", "someone")
    assert parse_query(db, subject=str(identity)).subject == identity.pseudonym
    assert matching(db, dataset_id="ds-1") == [1, 3, 4]
    assert matching(db, actions=["application"]) == [3, 4]
    assert matching(db, actions=["beacon.record", "dac"]) == [2, 5]
    assert matching(db, actions=["visa.revoke"], decision="deny") == [6]
    assert matching(db, decision="deny") == [2, 6]
    assert matching(db, since=varied["middle"]) == [4, 5, 6]
    assert matching(db, until=varied["middle"]) == [1, 2, 3]
    assert matching(db, dataset_id="ds-1", since=varied["middle"], decision="allow") == [4]
    with pytest.raises(AuditQueryError, match="--action 'applications'"):
        parse_query(db, actions=["applications"])
    with pytest.raises(AuditQueryError, match="--decision"):
        parse_query(db, decision="granted")
    with pytest.raises(AuditQueryError, match="--since"):
        parse_query(db, since="last tuesday")
    with pytest.raises(AuditQueryError, match="not before"):
        parse_query(db, since="2025-03-02", until="2025-03-01")


def test_times_are_compared_in_utc() -> None:
    assert parse_time("2025-03-01", "--since") == "2025-03-01T00:00:00.000000Z"
    assert parse_time("2025-03-01T14:30+02:00", "--since") == "2025-03-01T12:30:00.000000Z"
    assert parse_time("2025-03-01T14:30:00Z", "--until") == "2025-03-01T14:30:00.000000Z"
