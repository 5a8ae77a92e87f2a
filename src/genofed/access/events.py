"""Governance events in the audit trail: what applicants, the committee and the operator did.

The trail (:mod:`genofed.access.audit`) records every release or refusal of data under an
:class:`genofed.access.policy.Action` name (`beacon.count`, `htsget.data`, ...). It records every
governance event too, in the same hash chain, under the :class:`GovernanceEvent` names below, so
an auditor reads one story: who applied for what, who approved it, which visa that signed, what
the holder then retrieved with it, and when it was revoked. The columns of a governance record:

`action`
    A :class:`GovernanceEvent` value, e.g. `application.approve`.
`decision`
    `allow` when the node carried the action out, `deny` when it refused it, as for data: a
    `beacon.record` allow means records were released, an `application.reject` allow means the
    rejection took effect, and an `application.approve` deny means someone tried to approve and
    was refused (not on the committee, or deciding their own application).
`subject`
    The pseudonym (:mod:`genofed.access.pseudonyms`) of the person who acted: the applicant for
    `application.submit` / `application.resubmit`, the committee member for a decision, for
    `visa.sign` (the approving member) and `visa.revoke`; :data:`OPERATOR` for changes the node's
    operator makes to its settings. One exception: `dac.add` / `dac.remove` are made by the
    operator, who has no identity in the trail, and name the member added or removed, so that
    filtering by a member's pseudonym shows when they gained and lost committee powers (the
    detail says `by=operator`).
`dataset_id`
    The dataset concerned. An application event is recorded once per dataset the application
    names (each with that dataset's DUO pre-assessment), so filtering by dataset tells each
    dataset's whole story; node-wide events (committee membership, trust, networks) have none.
`reason`
    Fixed text written by the node, never a user's words.
`detail`
    `key=value` pairs separated by single spaces (:func:`format_detail`): identifiers
    (`application`, `jti`), pseudonyms (`holder`), DUO and MONDO codes, times (`expires`, ISO
    8601 UTC), counts. Never names, e-mails or free text: an application's purpose text is
    recorded as its length and SHA-256 (`text_chars`, `text_sha256`, which proves later which
    text was judged), a committee note as its length only.

Durability and atomicity. Every governance record is durable before the API call or command that
made the change reports success:

* Changes of the governance database (applications, decisions, visas, revocations) append their
  records inside their own transaction (:meth:`genofed.access.audit.AuditLog.append_in`), under
  the chain lock: the change and its records commit together or not at all. Writing them through
  the log's queue instead would commit them separately (a crash in between loses the record of a
  change that happened), and on SQLite would wait for the very write lock the change holds.
* Refusals are appended (and waited for) after the refused transaction rolled back, before the
  refusal is returned.
* Changes kept outside the database (committee membership in node.toml; delivery, trust and
  network settings) are written ahead: :func:`recorded` writes the record, waits for it, then runs
  the change, and appends a `deny` record if the change fails. A crash between the two leaves a
  record of a change that did not happen, never a change without a record.

Other packages record their events with :func:`record_event` (or :func:`recorded` around the
change).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum

from genofed.access.audit import AuditLog, NewRecord
from genofed.access.pseudonyms import is_pseudonym
from genofed.errors import AuditWriteError

#: `decision` of an action the node carried out, and of one it refused.
ALLOW = "allow"
DENY = "deny"
#: `subject` of a change made by the node's operator (the command line, node.toml).
OPERATOR = "operator"
#: Longest `detail` accepted: room for identifiers and codes, not for pasted text.
MAX_DETAIL = 2000

log = logging.getLogger(__name__)


class GovernanceEvent(StrEnum):
    """The `action` names of governance records (the data actions are
    :class:`genofed.access.policy.Action`)."""

    APPLICATION_SUBMIT = "application.submit"
    APPLICATION_RESUBMIT = "application.resubmit"
    APPLICATION_RETURN = "application.return"
    APPLICATION_APPROVE = "application.approve"
    APPLICATION_REJECT = "application.reject"
    VISA_SIGN = "visa.sign"
    VISA_REVOKE = "visa.revoke"
    DAC_ADD = "dac.add"
    DAC_REMOVE = "dac.remove"
    #: How the node delivers files (recorded by the packages that own those settings).
    DELIVERY_CHANGE = "delivery.change"
    #: Which login issuers, visa signers or peer nodes the node trusts.
    TRUST_CHANGE = "trust.change"
    NETWORK_JOIN = "network.join"
    NETWORK_LEAVE = "network.leave"


#: The `reason` of each event when the node carried it out.
REASONS: dict[GovernanceEvent, str] = {
    GovernanceEvent.APPLICATION_SUBMIT: "the applicant applied for access to this dataset",
    GovernanceEvent.APPLICATION_RESUBMIT: "the applicant resubmitted the returned application",
    GovernanceEvent.APPLICATION_RETURN: "a committee member returned the application to its "
                                        "applicant",
    GovernanceEvent.APPLICATION_APPROVE: "a committee member approved the application",
    GovernanceEvent.APPLICATION_REJECT: "a committee member rejected the application",
    GovernanceEvent.VISA_SIGN: "the node signed a ControlledAccessGrants visa on the "
                               "application's approval",
    GovernanceEvent.VISA_REVOKE: "a committee member revoked the visa",
    GovernanceEvent.DAC_ADD: "the operator added a member to the data access committee",
    GovernanceEvent.DAC_REMOVE: "the operator removed a member from the data access committee",
    GovernanceEvent.DELIVERY_CHANGE: "the node's file delivery settings changed",
    GovernanceEvent.TRUST_CHANGE: "the login issuers, visa signers or peers the node trusts "
                                  "changed",
    GovernanceEvent.NETWORK_JOIN: "the node joined a network",
    GovernanceEvent.NETWORK_LEAVE: "the node left a network",
}


def format_detail(**values: object) -> str:
    """`detail` text: `key=value` pairs in the order given, separated by single spaces.

    None and empty lists are left out; booleans become yes/no, lists comma-joined, datetimes
    ISO 8601 UTC to the second. Values must be identifiers, codes, times or counts: a value with
    white space (or an empty string) raises ValueError, which is what keeps free text out."""
    parts = []
    for key, value in values.items():
        if value is None or (isinstance(value, list | tuple) and not value):
            continue
        if isinstance(value, bool):
            text = "yes" if value else "no"
        elif isinstance(value, datetime):
            text = value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        elif isinstance(value, list | tuple):
            text = ",".join(str(v) for v in value)
        else:
            text = str(value)
        if not text or any(c.isspace() for c in text):
            raise ValueError(f"audit detail {key}={text!r}: values are identifiers, codes, times "
                             "or counts without white space; record free text as its length or "
                             "hash, never itself")
        parts.append(f"{key}={text}")
    return " ".join(parts)


def governance_record(event: GovernanceEvent | str, *, actor: str, dataset_id: str | None,
                      detail: str, decision: str = ALLOW, reason: str = "") -> NewRecord:
    """The record of one governance event, checked: a known event, an actor that is a pseudonym
    or :data:`OPERATOR`, allow/deny, a one-line detail. `reason` defaults to the event's fixed
    text in :data:`REASONS` (allowed) or "refused" (denied)."""
    try:
        name = GovernanceEvent(event)
    except ValueError:
        raise ValueError(f"governance event {event!r} is not one of: "
                         f"{', '.join(e.value for e in GovernanceEvent)}") from None
    if not (is_pseudonym(actor) or actor == OPERATOR):
        raise ValueError(f"actor {actor!r} of {name.value}: give the pseudonym of the person who "
                         "acted (genofed.access.pseudonyms.pseudonym(issuer, subject)) or "
                         f"{OPERATOR!r} for the node's operator; the audit trail never holds "
                         "identities, names or e-mails")
    if decision not in (ALLOW, DENY):
        raise ValueError(f"decision {decision!r} of {name.value}: use {ALLOW!r} (carried out) or "
                         f"{DENY!r} (refused)")
    if "\n" in detail or "\r" in detail or len(detail) > MAX_DETAIL:
        raise ValueError(f"detail of {name.value}: one line of at most {MAX_DETAIL} characters "
                         "(build it with format_detail)")
    if not reason:
        reason = REASONS[name] if decision == ALLOW else "refused"
    return NewRecord(subject=actor, dataset_id=dataset_id, action=name.value, decision=decision,
                     reason=reason, detail=detail)


def record_event(audit: AuditLog, event: GovernanceEvent | str, *, actor: str,
                 dataset_id: str | None, detail: str, decision: str = ALLOW,
                 reason: str = "") -> None:
    """Append one governance event to the node's trail and return once it is committed
    (AuditWriteError if it could not be: then do not report the change as done).

    `actor` is the pseudonym of the person who acted, or :data:`OPERATOR`; `detail` is built
    with :func:`format_detail`. For a change kept outside the governance database, prefer
    :func:`recorded` around the code that makes it."""
    record = governance_record(event, actor=actor, dataset_id=dataset_id, detail=detail,
                               decision=decision, reason=reason)
    audit.append(subject=record.subject, dataset_id=record.dataset_id, action=record.action,
                 decision=record.decision, reason=record.reason, detail=record.detail, wait=True)


@contextmanager
def recorded(audit: AuditLog, event: GovernanceEvent | str, *, actor: str,
             dataset_id: str | None, detail: str, reason: str = "") -> Iterator[None]:
    """Write-ahead recording of a change kept outside the governance database::

        with recorded(audit, GovernanceEvent.TRUST_CHANGE, actor=OPERATOR, dataset_id=None,
                      detail=format_detail(issuer_added=url)):
            save_config(node_dir, config)

    The `allow` record is committed before the block runs (nothing is changed if it cannot be);
    if the block raises, a `deny` record says the change was not applied, and the exception
    propagates."""
    record_event(audit, event, actor=actor, dataset_id=dataset_id, detail=detail, reason=reason)
    try:
        yield
    except BaseException as exc:
        try:
            record_event(audit, event, actor=actor, dataset_id=dataset_id, detail=detail,
                         decision=DENY, reason=f"not applied: the change failed "
                         f"({type(exc).__name__}) after it was recorded")
        except AuditWriteError as failure:  # the original error is the one to report
            log.error("could not record that %s was not applied: %s", event, failure)
        raise
