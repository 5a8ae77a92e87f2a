"""The node portal's audit view (`/portal/audit`), and the rule of every operator page: only
the node's operators (`access.operators` in node.toml) see them.

The page: the chain's verification at the top, then the trail newest first, filtered by GET
parameters (bookmarkable) and paged by sequence number (`before` / `after`: a page costs the
same at the start and the end of a long trail).

The filters are those of `genofed audit list` (:func:`genofed.access.audit_query.parse_query`,
evaluated by the database) and the verdict that of `genofed audit verify`
(:func:`genofed.access.audit.verify`). The trail holds no personal data: subjects are
pseudonyms.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from sqlalchemy import func, select
from starlette.concurrency import run_in_threadpool

from genofed.access.audit import AuditEntry, VerifyReport, verify
from genofed.access.audit_query import ACTION_NAMES, AuditQuery, parse_query
from genofed.access.db import GovernanceDB
from genofed.access.events import ALLOW, DENY
from genofed.access.governance import Governance
from genofed.access.models import AuditRecord
from genofed.errors import AuditQueryError, GenofedError
from genofed.portal.sessions import Session
from genofed.portal.web import PageRefused, require_session, site_of

router = APIRouter()

#: Who may see the operator and audit pages.
SETTING = "access.operators"


def require_operator(request: Request) -> Session:
    """The session of one of the node's operators; others get 403 naming the setting."""
    session = require_session(request)
    try:
        operators = request.app.state.config.current().access.operators
    except GenofedError as exc:  # node.toml cannot be read just now
        raise PageRefused(503, "Configuration unreadable",
                          f"This node's configuration cannot be read ({exc}), so its operators "
                          "are not known; fix node.toml and reload.") from None
    if session.identity not in operators:
        raise PageRefused(403, "For this node's operators only",
                          f"These pages are for the operators of this node, and your identity "
                          f"({session.identity}) is not among them. An operator can add it to "
                          f"{SETTING} in the node's node.toml (a list of \"ISSUER|SUBJECT\" "
                          "identities); the change applies without a restart.")
    return session

PAGE_SIZE = 50
#: The CLI's option names in parse_query's messages, as the form labels them.
_OPTION_LABELS = {"--subject": "Subject", "--since": "From", "--until": "To",
                  "--action": "Action", "--decision": "Decision"}


@dataclass(frozen=True)
class Page:
    records: list[AuditEntry]
    total: int
    #: The sequence numbers the older / newer pages start beyond (None: no such page).
    older: int | None
    newer: int | None


def read_page(db: GovernanceDB, query: AuditQuery, *, before: int | None = None,
              after: int | None = None, size: int = PAGE_SIZE) -> Page:
    """Matching records, newest first: the `size` before sequence number `before` (or the
    newest), or with `after` the `size` just after it."""
    columns = select(*AuditRecord.__table__.columns)
    where = query.conditions()
    with db.read() as session:
        total = session.scalar(select(func.count()).select_from(AuditRecord).where(*where)) or 0
        if after is not None:
            rows = session.execute(columns.where(*where, AuditRecord.seq > after)
                                   .order_by(AuditRecord.seq).limit(size + 1)).all()
            more_newer = len(rows) > size
            records = [AuditEntry(**row._mapping) for row in rows[:size]][::-1]
            more_older = bool(records) and session.scalar(
                select(AuditRecord.seq).where(*where, AuditRecord.seq < records[-1].seq)
                .limit(1)) is not None
        else:
            bound = [AuditRecord.seq < before] if before is not None else []
            rows = session.execute(columns.where(*where, *bound)
                                   .order_by(AuditRecord.seq.desc()).limit(size + 1)).all()
            more_older = len(rows) > size
            records = [AuditEntry(**row._mapping) for row in rows[:size]]
            more_newer = before is not None and bool(records) and session.scalar(
                select(AuditRecord.seq).where(*where, AuditRecord.seq > records[0].seq)
                .limit(1)) is not None
    return Page(records, int(total), records[-1].seq if records and more_older else None,
                records[0].seq if records and more_newer else None)


def _verify(governance: Governance) -> VerifyReport:
    governance.audit.flush()  # decisions still queued belong in the trail being checked
    return verify(governance.db, governance.audit.seal_key)


def _readable(message: str) -> str:
    for option, label in _OPTION_LABELS.items():
        message = message.replace(option, label)
    return message


@router.get("/audit")
async def audit_trail(
    request: Request,
    subject: Annotated[str, Query(max_length=300)] = "",
    dataset: Annotated[str, Query(max_length=128)] = "",
    decision: Annotated[str, Query(max_length=8)] = "",
    action: Annotated[str, Query(max_length=64)] = "",
    since: Annotated[str, Query(alias="from", max_length=40)] = "",
    until: Annotated[str, Query(alias="to", max_length=40)] = "",
    before: Annotated[int | None, Query(ge=1)] = None,
    after: Annotated[int | None, Query(ge=0)] = None,
) -> Response:
    require_operator(request)
    governance: Governance = request.app.state.governance
    report = await run_in_threadpool(_verify, governance)
    filters = {"subject": subject.strip(), "dataset": dataset.strip(), "decision": decision,
               "action": action, "from": since.strip(), "to": until.strip()}
    problem = ""
    page = Page([], 0, None, None)
    try:
        query = await run_in_threadpool(
            parse_query, governance.db, subject=filters["subject"] or None,
            dataset_id=filters["dataset"] or None,
            actions=[action] if action else [], decision=decision or None,
            since=filters["from"] or None, until=filters["to"] or None)
    except AuditQueryError as exc:
        problem = _readable(str(exc))
    else:
        page = await run_in_threadpool(read_page, governance.db, query, before=before,
                                       after=after)
    families = sorted({name.split(".")[0] for name in ACTION_NAMES if "." in name})
    kept = {k: v for k, v in filters.items() if v}
    older = f"?{urlencode({**kept, 'before': page.older})}" if page.older is not None else ""
    newer = f"?{urlencode({**kept, 'after': page.newer})}" if page.newer is not None else ""
    return site_of(request).render(
        request, "operate/audit.html", 400 if problem else 200, title="Audit trail",
        report=report, filters=filters, kept=kept, problem=problem, page=page,
        actions=sorted(ACTION_NAMES), families=families, decisions=(ALLOW, DENY),
        datasets=request.app.state.store.dataset_ids(), filtered=bool(kept), older_url=older,
        newer_url=newer)
