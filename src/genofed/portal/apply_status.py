"""An access application in words, as the portal shows it to its applicant (the network
portal's My applications, :mod:`genofed.portal.apply`) and to a node's committee
(:mod:`genofed.portal.committee`): DUO terms with their labels, the pre-assessment's outcomes,
and each application's and dataset's status (submitted, returned with the committee's comment,
approved with its expiry, rejected with the reason, revoked, expired), from the document the
`/access` API answers with."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from genofed.access.duo import DS, GRU, HMB, POA, duo_table

#: The DUO pre-assessment's outcomes, in words.
OUTCOME_WORDS = {"approve": "fits the consent",
                 "needs-review": "needs the committee's review",
                 "deny": "outside the consent"}
#: History events, in words (others are shown as the API names them).
EVENT_WORDS = {"end-date": "end date set", "visa-revoked": "visa revoked"}


# -- DUO terms for people ---------------------------------------------------------------------

@dataclass(frozen=True)
class PurposeOption:
    """A DUO term a research purpose can be stated in, as the form offers it."""

    id: str
    code: str  # the shorthand (HMB) or the CURIE
    label: str
    hint: str = ""


def purpose_options() -> list[PurposeOption]:
    """DUO's permission terms that describe research (GRU, HMB, DS, POA) first, then its
    research-purpose classes (DUO:0000031-40), with DUO's own labels."""
    table = duo_table()
    hints = {GRU: "any research purpose, including ancestry research",
             HMB: "excludes population origins or ancestry research",
             DS: "name the disease below", POA: ""}
    options = []
    for term_id in (GRU, HMB, DS, POA):
        term = table.terms[term_id]
        options.append(PurposeOption(term.id, term.shorthand, term.label, hints[term_id]))
    for term in sorted(table.terms.values(), key=lambda t: t.id):
        if term.kind == "purpose":
            options.append(PurposeOption(term.id, term.id, term.label))
    return options


def term_words(term_id: str) -> str:
    """'health or medical or biomedical research (HMB, DUO:0000006)'."""
    term = duo_table().get(term_id)
    if term is None:
        return term_id
    codes = f"{term.shorthand}, {term.id}" if term.shorthand else term.id
    return f"{term.label} ({codes})"


# -- an application in words -------------------------------------------------------------------

@dataclass(frozen=True)
class DatasetStatus:
    dataset: str
    assessment: str
    reasons: tuple[str, ...]
    #: submitted, returned, approved, rejected, revoked or expired.
    state: str
    words: str
    expires_at: int | None = None
    visa: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ApplicationSummary:
    """One node's application as people read it: its status in words, each dataset's status."""

    node: str
    country: str
    id: str
    #: submitted, returned, approved, rejected, revoked or expired.
    state: str
    words: str
    created: str
    duration_days: int
    applicant: str
    purpose: Mapping[str, Any]
    datasets: tuple[DatasetStatus, ...]
    events: tuple[Mapping[str, Any], ...]
    #: The committee's comment (returned) or reason (rejected), if any.
    comment: str = ""
    expires_at: int | None = None

    @property
    def terms(self) -> list[str]:
        return [term_words(t) for t in self.purpose.get("terms", [])]


def _last_note(events: Sequence[Mapping[str, Any]], kind: str) -> str:
    notes = [str(e.get("note", "")) for e in events if e.get("kind") == kind]
    return notes[-1] if notes else ""


def _day(epoch: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(epoch))


def describe(document: Mapping[str, Any], node: str, country: str,
             now: float | None = None) -> ApplicationSummary:
    """An application as the /access API shows it, in words."""
    now = time.time() if now is None else now
    state = str(document.get("state", ""))
    events = tuple(document.get("events", []))
    visas = {str(v.get("datasetId")): v for v in document.get("visas", [])}
    comment = ""
    if state == "returned":
        comment = _last_note(events, "returned")
    elif state == "rejected":
        comment = _last_note(events, "rejected")
    datasets = []
    for entry in document.get("datasets", []):
        dataset = str(entry.get("datasetId"))
        visa = visas.get(dataset)
        expires = int(visa["expiresAt"]) if visa and visa.get("expiresAt") is not None else None
        if state == "approved" and visa is not None and visa.get("revokedAt"):
            words, each = f"revoked on {str(visa['revokedAt'])[:10]}", "revoked"
        elif state == "approved" and expires is not None and expires <= now:
            words, each = f"expired on {_day(expires)}", "expired"
        elif state == "approved" and expires is not None:
            words, each = f"approved, access until {_day(expires)}", "approved"
        else:
            words, each = state, state
        datasets.append(DatasetStatus(dataset, str(entry.get("assessment", "")),
                                      tuple(entry.get("reasons", [])), each, words, expires,
                                      visa))
    overall, words = state, {"submitted": "submitted, waiting for the committee",
                             "returned": "returned by the committee",
                             "rejected": "rejected"}.get(state, state)
    valid = [d.expires_at for d in datasets if d.state == "approved" and d.expires_at]
    if state == "approved":
        if valid:
            words = f"approved, access until {_day(max(valid))}"
        elif datasets and all(d.state == "revoked" for d in datasets):
            overall, words = "revoked", "revoked"
        elif datasets and all(d.state in ("revoked", "expired") for d in datasets):
            overall, words = "expired", "expired"
    if comment:
        words += f": {comment}"
    elif state == "rejected":
        words += " (the committee gave no reason)"
    return ApplicationSummary(
        node=node, country=country, id=str(document.get("id")), state=overall, words=words,
        created=str(document.get("createdAt", "")),
        duration_days=int(document.get("durationDays", 0)),
        applicant=str(document.get("applicant", "")), purpose=document.get("purpose", {}),
        datasets=tuple(datasets), events=events, comment=comment,
        expires_at=max(valid) if valid else None)
