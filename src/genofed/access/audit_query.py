"""Reading the audit trail as an auditor asks: whose records, which dataset, which actions,
allowed or denied, between when and when.

Every filter becomes a condition the database evaluates, and the matching records are streamed
in sequence order, so a trail of millions of rows is never loaded into memory. (There are no
indexes on the filtered columns: each appended record would pay for them on the Beacon's hot
path, and a scan of a few million rows takes seconds.)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import ColumnElement, or_, select

from genofed.access.audit import AuditEntry, entries, format_at
from genofed.access.db import GovernanceDB
from genofed.access.enforcement import ANONYMOUS
from genofed.access.events import ALLOW, DENY, OPERATOR, GovernanceEvent
from genofed.access.models import AuditRecord
from genofed.access.policy import Action
from genofed.access.pseudonyms import LENGTH, pseudonym
from genofed.errors import AuditQueryError

#: Every `action` the trail holds: what data was asked for, and governance events.
ACTION_NAMES: tuple[str, ...] = (*(a.value for a in Action), *(e.value for e in GovernanceEvent))
#: Subjects that are not pseudonyms.
ROLE_SUBJECTS = (ANONYMOUS, OPERATOR)

_HEX_PREFIX = re.compile(f"[0-9a-f]{{1,{LENGTH}}}")


@dataclass(frozen=True)
class AuditQuery:
    """Filters, all optional, all of which a record must pass (build with :meth:`parse`)."""

    #: An exact subject: a pseudonym, "anonymous" or "operator".
    subject: str | None = None
    dataset_id: str | None = None
    #: Action names or families ("application" = application.*); any of them matches.
    actions: tuple[str, ...] = field(default=())
    decision: str | None = None
    #: Bounds on `at`, in the trail's own text form: since inclusive, until exclusive.
    since: str | None = None
    until: str | None = None

    def conditions(self) -> list[ColumnElement[bool]]:
        where: list[ColumnElement[bool]] = []
        if self.subject is not None:
            where.append(AuditRecord.subject == self.subject)
        if self.dataset_id is not None:
            where.append(AuditRecord.dataset_id == self.dataset_id)
        if self.actions:
            where.append(or_(*(
                AuditRecord.action == name if name in ACTION_NAMES
                else AuditRecord.action.startswith(f"{name}.", autoescape=True)
                for name in self.actions)))
        if self.decision is not None:
            where.append(AuditRecord.decision == self.decision)
        if self.since is not None:
            where.append(AuditRecord.at >= self.since)
        if self.until is not None:
            where.append(AuditRecord.at < self.until)
        return where


def parse_query(db: GovernanceDB, *, subject: str | None = None, dataset_id: str | None = None,
                actions: Sequence[str] = (), decision: str | None = None,
                since: str | None = None, until: str | None = None) -> AuditQuery:
    """The query for filters as a person types them; AuditQueryError names a bad one.
    `subject` may be a pseudonym, a prefix of one that only one subject in the trail has,
    "anonymous" / "operator", or an identity "ISSUER|SUBJECT" (its pseudonym is used)."""
    if decision is not None and decision not in (ALLOW, DENY):
        raise AuditQueryError(f"--decision {decision!r}: use {ALLOW} or {DENY}")
    start, end = (parse_time(since, "--since") if since else None,
                  parse_time(until, "--until") if until else None)
    if start is not None and end is not None and start >= end:
        raise AuditQueryError(f"--since {since} is not before --until {until}: nothing can match")
    return AuditQuery(subject=resolve_subject(db, subject) if subject is not None else None,
                      dataset_id=dataset_id, actions=tuple(_action(a) for a in actions),
                      decision=decision, since=start, until=end)


def select_entries(db: GovernanceDB, query: AuditQuery) -> Iterator[AuditEntry]:
    """The matching records in sequence order, streamed from the database."""
    return entries(db, *query.conditions())


def parse_time(value: str, option: str) -> str:
    """An ISO 8601 date or time as the trail's `at` text. Without a zone it is UTC; a date
    alone is its midnight (UTC)."""
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise AuditQueryError(f"{option} {value!r} is not an ISO 8601 date or time; use e.g. "
                              "2025-03-01, 2025-03-01T14:30 or 2025-03-01T14:30:00+02:00 "
                              "(no zone: UTC)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return format_at(moment)


def _action(name: str) -> str:
    name = name.strip()
    families = {a.split(".")[0] for a in ACTION_NAMES if "." in a}
    if name in ACTION_NAMES or name in families:
        return name
    raise AuditQueryError(f"--action {name!r} is neither an action nor a family of actions; "
                          f"use one of {', '.join(ACTION_NAMES)}, or a family: "
                          f"{', '.join(sorted(families))}")


def resolve_subject(db: GovernanceDB, value: str) -> str:
    """The exact subject a person means by `value` (see :func:`parse_query`)."""
    value = value.strip()
    if value in ROLE_SUBJECTS:
        return value
    if "|" in value:
        issuer, _, subject = value.partition("|")
        if not issuer or not subject:
            raise AuditQueryError(f"--subject {value!r}: an identity is ISSUER|SUBJECT, both "
                                  "non-empty")
        return pseudonym(issuer.strip(), subject.strip())
    prefix = value.lower()
    if not _HEX_PREFIX.fullmatch(prefix):
        raise AuditQueryError(
            f"--subject {value!r} is not a pseudonym: give 1 to {LENGTH} hex digits of one (a "
            f"prefix only one subject in the trail has), {ANONYMOUS!r}, {OPERATOR!r}, or an "
            "identity 'ISSUER|SUBJECT'; `genofed audit pseudonym 'ISSUER|SUBJECT'` shows a "
            "person's pseudonym")
    if len(prefix) == LENGTH:
        return prefix
    with db.read() as session:
        found = list(session.scalars(select(AuditRecord.subject).distinct().where(
            AuditRecord.subject.startswith(prefix, autoescape=True)).limit(3)))
    if len(found) > 1:
        raise AuditQueryError(f"--subject {value!r} is the start of more than one pseudonym "
                              f"({', '.join(sorted(found)[:2])}, ...): give more digits")
    # No match: no subject in the trail starts so; the prefix itself then matches nothing.
    return found[0] if found else prefix
