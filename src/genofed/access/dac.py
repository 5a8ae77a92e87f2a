"""The data access committee (DAC) workflow: researchers apply, members decide, visas are issued
and revoked.

An application names datasets of this node, a purpose in DUO terms plus free text, and a
duration. The DUO matcher pre-assesses each dataset at submission; a DAC member then approves,
rejects or returns it. Approval signs one ControlledAccessGrants visa per dataset, valid for the
requested duration or until an end date the member sets within it (recorded in the history;
see :mod:`genofed.access.end_dates`). Every step appends an event; an application's `state` only
changes through a compare-and-set (`UPDATE ... WHERE state = 'submitted'`), so two members
deciding at the same moment yield exactly one decision, and a unique (application, dataset) key
on visas makes a second visa impossible even so.

Each step is also a record in the node's audit trail (see :mod:`genofed.access.events` for the
names and columns): written in the same transaction as the state change, so both commit or
neither does; a committee action refused for want of authority (not a member, or deciding one's
own application) is recorded as a deny before the refusal is returned.

Identities are "ISSUER|SUBJECT" strings, the form of `access.dac_members`.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import CursorResult, Result, func, select, update
from sqlalchemy.orm import Session

from genofed.access.applications import (
    ApplicationView,
    DatasetRequest,
    EventView,
    Identity,
    VisaView,
    visa_view,
)
from genofed.access.audit import AuditLog, NewRecord
from genofed.access.db import GovernanceDB
from genofed.access.duo import DuoMatcher, Outcome, Purpose
from genofed.access.end_dates import END_DATE_EVENT, access_end, checked_end, parse_end_date
from genofed.access.events import (
    DENY,
    GovernanceEvent,
    format_detail,
    governance_record,
    record_event,
)
from genofed.access.models import (
    Application,
    ApplicationDataset,
    ApplicationEvent,
    ApplicationState,
    Visa,
)
from genofed.access.pseudonyms import pseudonym
from genofed.access.visas import VisaClaims, VisaSigner
from genofed.errors import (
    ApplicationNotFoundError,
    GovernanceConflictError,
    GovernanceError,
    GovernanceForbiddenError,
)
from genofed.store.metadata import AccessTier, DatasetMetadata

__all__ = ["ApplicationView", "Committee", "DatasetLookup", "Identity", "MemberList", "Verdict",
           "VisaView"]

MAX_DURATION_DAYS = 3650
MAX_TEXT = 20_000


class Verdict(StrEnum):
    APPROVE = "approve"
    REJECT = "reject"
    RETURN = "return"


_STATE_AFTER = {Verdict.APPROVE: ApplicationState.APPROVED,
                Verdict.REJECT: ApplicationState.REJECTED,
                Verdict.RETURN: ApplicationState.RETURNED}
_EVENT = {Verdict.APPROVE: GovernanceEvent.APPLICATION_APPROVE,
          Verdict.REJECT: GovernanceEvent.APPLICATION_REJECT,
          Verdict.RETURN: GovernanceEvent.APPLICATION_RETURN}


DatasetLookup = Callable[[str], DatasetMetadata]
MemberList = Callable[[], Collection[str]]


class Committee:
    """The DAC of one node. `datasets` looks metadata up by id (KeyError if unknown); `members`
    returns the configured "ISSUER|SUBJECT" identities (called on each check, so a changed
    configuration counts). `audit` is the node's trail on the same database (every step is
    recorded there); only tests and tools that keep no trail leave it out."""

    def __init__(self, db: GovernanceDB, signer: VisaSigner, *, members: MemberList,
                 datasets: DatasetLookup, matcher: DuoMatcher | None = None,
                 audit: AuditLog | None = None, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.signer = signer
        self.members = members
        self.datasets = datasets
        self.matcher = matcher or DuoMatcher()
        self.audit = audit
        self.clock = clock

    def is_member(self, identity: Identity | str) -> bool:
        return str(identity) in {m.strip() for m in self.members()}

    # -- researchers ---------------------------------------------------------------------------
    def apply(self, applicant: Identity, dataset_ids: Sequence[str], purpose: Purpose, text: str,
              duration_days: int) -> ApplicationView:
        """Submit an application; each dataset is pre-assessed against its DUO conditions."""
        requests = self._assess(dataset_ids, purpose)
        if not 1 <= duration_days <= MAX_DURATION_DAYS:
            raise GovernanceError(f"duration of {duration_days} days: ask for 1 to "
                                  f"{MAX_DURATION_DAYS} days")
        text = text.strip()
        if not text or len(text) > MAX_TEXT:
            raise GovernanceError("describe the research in the purpose text (1 to "
                                  f"{MAX_TEXT} characters)")
        now = self._now()
        application_id = uuid.uuid4().hex
        with self.db.write() as session:
            session.add(Application(
                id=application_id, applicant_issuer=applicant.issuer,
                applicant_subject=applicant.subject, purpose_terms=list(purpose.terms),
                purpose_diseases=list(purpose.diseases), commercial=purpose.commercial,
                purpose_text=text, duration_days=duration_days, state=ApplicationState.SUBMITTED,
                created_at=now, updated_at=now))
            session.flush()  # the parent row first: PostgreSQL checks foreign keys per statement
            session.add_all(ApplicationDataset(application_id=application_id,
                                               dataset_id=r.dataset_id,
                                               assessment=r.assessment.value,
                                               reasons=list(r.reasons)) for r in requests)
            self._append_event(session, application_id, "submitted", str(applicant), "", now)
            self._record(session, (governance_record(
                GovernanceEvent.APPLICATION_SUBMIT, actor=applicant.pseudonym,
                dataset_id=r.dataset_id, detail=format_detail(
                    application=application_id, assessment=r.assessment.value,
                    purpose=purpose.terms, diseases=purpose.diseases,
                    commercial=purpose.commercial, days=duration_days, text_chars=len(text),
                    text_sha256=hashlib.sha256(text.encode()).hexdigest()))
                for r in requests))
        return self.application(application_id)

    def _assess(self, dataset_ids: Sequence[str], purpose: Purpose) -> list[DatasetRequest]:
        unique = list(dict.fromkeys(d.strip() for d in dataset_ids if d.strip()))
        if not unique:
            raise GovernanceError("name at least one dataset to apply for")
        requests = []
        for dataset_id in unique:
            try:
                metadata = self.datasets(dataset_id)
            except KeyError:
                raise ApplicationNotFoundError(f"no dataset {dataset_id!r} on this node") from None
            if metadata.access_tier is not AccessTier.CONTROLLED:
                raise GovernanceError(
                    f"dataset {dataset_id!r} is {metadata.access_tier.value}-tier: it needs no "
                    "application (registered-tier counts need only a ResearcherStatus visa)")
            assessment = self.matcher.assess(purpose, metadata.data_use_conditions)
            requests.append(DatasetRequest(dataset_id, assessment.outcome, assessment.reasons))
        return requests

    def resubmit(self, application_id: str, applicant: Identity, note: str = "") -> ApplicationView:
        """Put a returned application back in front of the committee (the applicant's answer
        goes in `note`)."""
        now = self._now()
        with self.db.write() as session:
            application = self._load(session, application_id)
            if (application.applicant_issuer, application.applicant_subject) != (
                    applicant.issuer, applicant.subject):
                raise ApplicationNotFoundError(f"no application {application_id!r} of yours")
            self._transition(session, application_id, ApplicationState.RETURNED,
                             ApplicationState.SUBMITTED, now)
            self._append_event(session, application_id, "resubmitted", str(applicant), note, now)
            self._record(session, (governance_record(
                GovernanceEvent.APPLICATION_RESUBMIT, actor=applicant.pseudonym,
                dataset_id=r.dataset_id, detail=format_detail(
                    application=application_id, assessment=r.assessment, note_chars=len(note)))
                for r in self._requests(session, application_id)))
        return self.application(application_id)

    def passport_visas(self, researcher: Identity) -> list[str]:
        """The researcher's visas from this node that are neither revoked nor expired (JWTs)."""
        now = int(self.clock())
        with self.db.read() as session:
            return list(session.scalars(select(Visa.token).where(
                Visa.subject_issuer == researcher.issuer, Visa.subject == researcher.subject,
                Visa.revoked_at.is_(None), Visa.expires_at > now).order_by(Visa.issued_at)))

    # -- the committee -------------------------------------------------------------------------
    def decide(self, application_id: str, member: Identity | str, verdict: Verdict,
               note: str = "", expires: date | datetime | str | None = None) -> ApplicationView:
        """Approve, reject or return a submitted application. Approval issues the visas, valid
        for the requested duration or until `expires` (see :mod:`genofed.access.end_dates`;
        text is read after the member's authority is checked), which must be in the future and
        no later than the requested duration allows.
        GovernanceConflictError if it was already decided (by anyone, at any moment before)."""
        event = _EVENT[verdict]
        member = self._require_member(member, event, application_id=application_id)
        self._refuse_own_application(event, member, application_id)
        if isinstance(expires, str):
            expires = parse_end_date(expires)
        if expires is not None and verdict is not Verdict.APPROVE:
            raise GovernanceError(f"an end date goes with an approval, not with {verdict.value}: "
                                  "leave it out")
        now = self._now()
        with self.db.write() as session:
            application = self._load(session, application_id)
            end = None if expires is None else checked_end(
                access_end(expires), now, application.duration_days)
            requests = self._requests(session, application_id)
            denied = [r.dataset_id for r in requests if r.assessment == Outcome.DENY.value]
            if verdict is Verdict.APPROVE and denied and not note.strip():
                raise GovernanceError(
                    f"the DUO pre-assessment denies {', '.join(denied)}: approving overrides it; "
                    "say why in the note")
            self._transition(session, application_id, ApplicationState.SUBMITTED,
                             _STATE_AFTER[verdict], now)
            kind = {Verdict.APPROVE: "approved", Verdict.REJECT: "rejected",
                    Verdict.RETURN: "returned"}[verdict]
            self._append_event(session, application_id, kind, str(member), note, now)
            if end is not None:
                self._append_event(session, application_id, END_DATE_EVENT, str(member),
                                   f"access ends {end.isoformat()} (the committee's end date; "
                                   f"{application.duration_days} days were requested)", now)
            records = [governance_record(
                event, actor=member.pseudonym, dataset_id=r.dataset_id,
                reason=_decision_reason(event, r.assessment), detail=format_detail(
                    application=application_id, assessment=r.assessment, note_chars=len(note),
                    expires=end))
                for r in requests]
            if verdict is Verdict.APPROVE:
                visas = self._issue_visas(session, application, [r.dataset_id for r in requests],
                                          now, end)
                records += [_visa_record(GovernanceEvent.VISA_SIGN, member, visa)
                            for visa in visas]
            self._record(session, records)
        return self.application(application_id)

    def _issue_visas(self, session: Session, application: Application, dataset_ids: list[str],
                     now: datetime, end: datetime | None = None) -> list[Visa]:
        issued = int(now.timestamp())
        expires = (issued + application.duration_days * 86_400 if end is None
                   else int(end.timestamp()))
        visas = []
        for dataset_id in dataset_ids:
            jti = str(uuid.uuid4())
            token = self.signer.sign(VisaClaims(
                subject=application.applicant_subject, dataset_id=dataset_id, asserted=issued,
                issued_at=issued, expires=expires, jti=jti))
            visas.append(Visa(jti=jti, application_id=application.id, dataset_id=dataset_id,
                              subject_issuer=application.applicant_issuer,
                              subject=application.applicant_subject, issued_at=issued,
                              expires_at=expires, token=token))
        session.add_all(visas)
        return visas

    def revoke(self, jti: str, member: Identity | str, note: str = "") -> VisaView:
        """Revoke a visa; the policy refuses it from the next request on."""
        member = self._require_member(member, GovernanceEvent.VISA_REVOKE, jti=jti)
        now = self._now()
        with self.db.write() as session:
            visa = session.get(Visa, jti)
            if visa is None:
                raise ApplicationNotFoundError(f"no visa {jti!r} issued by this node")
            # Lock the application (PostgreSQL; SQLite's write lock is already held): two
            # revocations of its visas at once must not both append event N.
            session.execute(select(Application.id).where(Application.id == visa.application_id)
                            .with_for_update())
            changed = _rowcount(session.execute(update(Visa).where(
                Visa.jti == jti, Visa.revoked_at.is_(None)).values(
                revoked_at=now, revoked_by=str(member))))
            if changed != 1:
                raise GovernanceConflictError(f"visa {jti!r} is already revoked")
            self._append_event(session, visa.application_id, "visa-revoked", str(member),
                               f"visa {jti} for {visa.dataset_id}" + (f": {note}" if note else ""),
                               now)
            self._record(session, [_visa_record(GovernanceEvent.VISA_REVOKE, member, visa,
                                                note_chars=len(note))])
        return self.visa(jti)

    def is_revoked(self, jti: str) -> bool:
        with self.db.read() as session:
            revoked = session.scalar(select(Visa.revoked_at).where(Visa.jti == jti))
        return revoked is not None

    # -- reading -------------------------------------------------------------------------------
    def application(self, application_id: str) -> ApplicationView:
        with self.db.read() as session:
            return self._view(session, self._load(session, application_id))

    def applications(self, applicant: Identity | None = None,
                     state: str | None = None) -> list[ApplicationView]:
        """All applications (or one applicant's), newest first."""
        query = select(Application).order_by(Application.created_at.desc(), Application.id)
        if applicant is not None:
            query = query.where(Application.applicant_issuer == applicant.issuer,
                                Application.applicant_subject == applicant.subject)
        if state is not None:
            query = query.where(Application.state == state)
        with self.db.read() as session:
            return [self._view(session, a) for a in session.scalars(query)]

    def visible_to(self, viewer: Identity) -> list[ApplicationView]:
        """What a caller may list: everything for a committee member, else their own."""
        return self.applications(None if self.is_member(viewer) else viewer)

    def may_view(self, viewer: Identity, application: ApplicationView) -> bool:
        return application.applicant == viewer or self.is_member(viewer)

    def visa(self, jti: str) -> VisaView:
        with self.db.read() as session:
            visa = session.get(Visa, jti)
            if visa is None:
                raise ApplicationNotFoundError(f"no visa {jti!r} issued by this node")
            return visa_view(visa)

    # -- helpers -------------------------------------------------------------------------------
    def _now(self) -> datetime:
        return datetime.fromtimestamp(self.clock(), UTC)

    def _require_member(self, member: Identity | str, event: GovernanceEvent, *,
                        application_id: str | None = None, jti: str | None = None) -> Identity:
        """The member as an Identity; a non-member's attempt is recorded (deny) and refused."""
        identity = member if isinstance(member, Identity) else Identity.parse(member)
        if not self.is_member(identity):
            self._refused(event, identity, "not a member of the node's data access committee",
                          application_id=application_id, jti=jti)
            raise GovernanceForbiddenError(f"{identity} is not a member of this node's data access "
                                 "committee (access.dac_members)")
        return identity

    def _refuse_own_application(self, event: GovernanceEvent, member: Identity,
                                application_id: str) -> None:
        """A member may not decide their own application (checked before the decision's
        transaction, as an application's applicant never changes; recorded, then refused)."""
        with self.db.read() as session:
            application = session.get(Application, application_id)
            own = application is not None and (
                application.applicant_issuer, application.applicant_subject) == (
                member.issuer, member.subject)
        if own:
            reason = "a committee member cannot decide their own application"
            self._refused(event, member, reason, application_id=application_id)
            raise GovernanceForbiddenError(reason)

    # -- the audit trail -----------------------------------------------------------------------
    def _record(self, session: Session, records: Iterable[NewRecord]) -> None:
        """Append to the trail in the caller's transaction (last: it takes the chain lock)."""
        if self.audit is not None:
            self.audit.append_in(session, records)

    def _refused(self, event: GovernanceEvent, actor: Identity, reason: str, *,
                 application_id: str | None = None, jti: str | None = None) -> None:
        """Record a refused committee action (deny), durably, before the refusal is returned:
        on its own, as the refused transaction rolls back. Once per dataset the application
        (or visa) concerns. Ids the caller sent are recorded only if they name an application
        or visa of this node, never as arbitrary text."""
        if self.audit is None:
            return
        dataset_ids: list[str] = []
        with self.db.read() as session:
            if jti is not None:
                visa = session.get(Visa, jti)
                jti, application_id = ((visa.jti, visa.application_id) if visa is not None
                                       else ("unknown", None))
                dataset_ids = [visa.dataset_id] if visa is not None else []
            elif application_id is not None:
                if session.get(Application, application_id) is None:
                    application_id = "unknown"
                else:
                    dataset_ids = [r.dataset_id
                                   for r in self._requests(session, application_id)]
        detail = format_detail(application=application_id, jti=jti)
        targets: list[str | None] = [*dataset_ids] or [None]
        for dataset_id in targets:
            record_event(self.audit, event, actor=actor.pseudonym, dataset_id=dataset_id,
                         detail=detail, decision=DENY, reason=f"refused: {reason}")

    @staticmethod
    def _requests(session: Session, application_id: str) -> list[ApplicationDataset]:
        return list(session.scalars(select(ApplicationDataset).where(
            ApplicationDataset.application_id == application_id)
            .order_by(ApplicationDataset.dataset_id)))

    @staticmethod
    def _load(session: Session, application_id: str) -> Application:
        application = session.get(Application, application_id)
        if application is None:
            raise ApplicationNotFoundError(f"no application {application_id!r}")
        return application

    @staticmethod
    def _transition(session: Session, application_id: str, expected: str, new: str,
                    now: datetime) -> None:
        """Compare-and-set of the state: exactly one concurrent caller gets through."""
        changed = _rowcount(session.execute(update(Application).where(
            Application.id == application_id, Application.state == expected).values(
            state=new, updated_at=now)))
        if changed != 1:
            current = session.scalar(select(Application.state).where(
                Application.id == application_id).execution_options(populate_existing=True))
            raise GovernanceConflictError(f"application {application_id} is {current}, not "
                                          f"{expected}")

    @staticmethod
    def _append_event(session: Session, application_id: str, kind: str, actor: str, note: str,
                      now: datetime) -> None:
        seq = session.scalar(select(func.coalesce(func.max(ApplicationEvent.seq), 0)).where(
            ApplicationEvent.application_id == application_id)) or 0
        session.add(ApplicationEvent(application_id=application_id, seq=int(seq) + 1, kind=kind,
                                     actor=actor, note=note, at=now))

    @staticmethod
    def _view(session: Session, application: Application) -> ApplicationView:
        datasets = session.scalars(select(ApplicationDataset).where(
            ApplicationDataset.application_id == application.id)
            .order_by(ApplicationDataset.dataset_id)).all()
        events = session.scalars(select(ApplicationEvent).where(
            ApplicationEvent.application_id == application.id)
            .order_by(ApplicationEvent.seq)).all()
        visas = session.scalars(select(Visa).where(Visa.application_id == application.id)
                                .order_by(Visa.dataset_id)).all()
        return ApplicationView(
            id=application.id,
            applicant=Identity(application.applicant_issuer, application.applicant_subject),
            purpose=Purpose(tuple(application.purpose_terms),
                            tuple(application.purpose_diseases), application.commercial),
            text=application.purpose_text, duration_days=application.duration_days,
            state=application.state, created_at=application.created_at,
            updated_at=application.updated_at,
            datasets=tuple(DatasetRequest(d.dataset_id, Outcome(d.assessment), tuple(d.reasons))
                           for d in datasets),
            events=tuple(EventView(e.seq, e.kind, e.actor, e.note, e.at) for e in events),
            visas=tuple(visa_view(v) for v in visas))


def _decision_reason(event: GovernanceEvent, assessment: str) -> str:
    """The fixed reason of a decision record; an approval that overrides the DUO pre-assessment
    says so (the member's justification is in the application's own history)."""
    if event is GovernanceEvent.APPLICATION_APPROVE and assessment == Outcome.DENY.value:
        return ("a committee member approved the application against the DUO pre-assessment "
                "(deny) for this dataset")
    return ""


def _visa_record(event: GovernanceEvent, member: Identity, visa: Visa,
                 note_chars: int | None = None) -> NewRecord:
    return governance_record(event, actor=member.pseudonym, dataset_id=visa.dataset_id,
                             detail=format_detail(
                                 application=visa.application_id, jti=visa.jti,
                                 holder=pseudonym(visa.subject_issuer, visa.subject),
                                 issued=datetime.fromtimestamp(visa.issued_at, UTC),
                                 expires=datetime.fromtimestamp(visa.expires_at, UTC),
                                 note_chars=note_chars))


def _rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE changed (its result is a CursorResult on every backend)."""
    return int(cast(CursorResult[Any], result).rowcount)
