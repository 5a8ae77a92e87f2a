"""Governance events in the audit trail, on SQLite and PostgreSQL: every committee step is a
record in the same hash chain as the data decisions, written in the step's own transaction,
naming people by pseudonym only; refused steps are recorded as denies."""

from __future__ import annotations

import hashlib
import threading
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from genofed.access.audit import AuditEntry, AuditLog, entries, verify
from genofed.access.dac import Committee, Verdict
from genofed.access.db import GovernanceDB
from genofed.access.duo import Purpose
from genofed.access.events import (
    OPERATOR,
    GovernanceEvent,
    format_detail,
    record_event,
    recorded,
)
from genofed.access.models import Application, AuditRecord, Visa
from genofed.access.principal import Principal
from genofed.access.pseudonyms import pseudonym
from genofed.access.visas import VisaSigner
from genofed.errors import GovernanceForbiddenError
from genofed.store.metadata import DatasetMetadata

if TYPE_CHECKING:
    from conftest import People

SEAL_KEY = b"governance-tests-seal-key-32byte"
TEXT = "Genetic risk of type 2 diabetes; contact alice@example.org for the protocol."
HMB = Purpose.parse(["HMB"], diseases=["MONDO:0005148"])


@pytest.fixture
def audited(db: GovernanceDB, signer: VisaSigner, datasets: dict[str, DatasetMetadata],
            people: People, audit: AuditLog) -> Committee:
    """The committee as `Governance.open` builds it: its steps go to `audit`."""
    members = [str(people.member), str(people.second_member), str(people.researcher)]
    return Committee(db, signer, members=lambda: members, datasets=datasets.__getitem__,
                     audit=audit)


def trail(db: GovernanceDB) -> list[AuditEntry]:
    return list(entries(db))


def detail(entry: AuditEntry) -> dict[str, str]:
    return dict(part.split("=", 1) for part in entry.detail.split(" ") if part)


def summary(records: list[AuditEntry]) -> list[tuple[str, str, str, str | None]]:
    return [(e.action, e.decision, e.subject, e.dataset_id) for e in records]


def test_pseudonyms_are_derived_in_one_place(people: People) -> None:
    identity = people.second_member  # a subject with a '|' in it
    expected = hashlib.sha256(f"{identity.issuer}\n{identity.subject}".encode()).hexdigest()[:32]
    principal = Principal(issuer=identity.issuer, subject=identity.subject, expires=0)
    assert pseudonym(identity.issuer, identity.subject) == expected
    assert principal.pseudonym == expected and identity.pseudonym == expected


def test_every_committee_step_is_recorded_in_the_chain(audited: Committee, db: GovernanceDB,
                                                       people: People) -> None:
    researcher, member, second = (people.researcher.pseudonym, people.member.pseudonym,
                                  people.second_member.pseudonym)
    first = audited.apply(people.researcher, ["gru-cohort", "hmb-irb-cohort"], HMB, TEXT, 30)
    audited.decide(first.id, people.member, Verdict.RETURN, "attach the IRB approval")
    audited.resubmit(first.id, people.researcher, "attached")
    approved = audited.decide(first.id, people.second_member, Verdict.APPROVE)
    second_application = audited.apply(people.researcher, ["t2d-cohort"], HMB, TEXT, 10)
    audited.decide(second_application.id, people.member, Verdict.REJECT, "too broad")
    visa = next(v for v in approved.visas if v.dataset_id == "gru-cohort")
    audited.revoke(visa.jti, people.member, "project ended")

    records = trail(db)
    both = ["gru-cohort", "hmb-irb-cohort"]
    assert summary(records) == [
        *(("application.submit", "allow", researcher, d) for d in both),
        *(("application.return", "allow", member, d) for d in both),
        *(("application.resubmit", "allow", researcher, d) for d in both),
        *(("application.approve", "allow", second, d) for d in both),
        *(("visa.sign", "allow", second, d) for d in both),
        ("application.submit", "allow", researcher, "t2d-cohort"),
        ("application.reject", "allow", member, "t2d-cohort"),
        ("visa.revoke", "allow", member, "gru-cohort"),
    ]
    assert verify(db, SEAL_KEY).ok

    submitted = detail(records[0])
    assert submitted == {
        "application": first.id, "assessment": "approve", "purpose": "DUO:0000006",
        "diseases": "MONDO:0005148", "commercial": "no", "days": "30",
        "text_chars": str(len(TEXT)), "text_sha256": hashlib.sha256(TEXT.encode()).hexdigest()}
    assert detail(records[3]) == {"application": first.id, "assessment": "needs-review",
                                  "note_chars": str(len("attach the IRB approval"))}
    signed = {detail(r)["jti"]: detail(r) for r in records if r.action == "visa.sign"}
    assert set(signed) == {v.jti for v in approved.visas}
    for issued in approved.visas:
        assert signed[issued.jti]["application"] == first.id
        assert signed[issued.jti]["holder"] == researcher
        assert signed[issued.jti]["expires"].endswith("Z")
    revoked = detail(records[-1])
    assert (revoked["jti"], revoked["holder"]) == (visa.jti, researcher)
    assert all(r.reason for r in records)


def test_an_approval_against_the_duo_preassessment_says_so(audited: Committee, db: GovernanceDB,
                                                           people: People) -> None:
    application = audited.apply(people.researcher, ["npu-cohort"],
                                Purpose.parse(["HMB"], commercial=True), TEXT, 30)
    audited.decide(application.id, people.member, Verdict.APPROVE, "sponsor is a non-profit")
    (approval,) = [r for r in trail(db) if r.action == "application.approve"]
    assert detail(approval)["assessment"] == "deny"
    assert "against the DUO pre-assessment" in approval.reason


def test_the_trail_holds_no_identities_and_no_free_text(audited: Committee, db: GovernanceDB,
                                                        people: People) -> None:
    application = audited.apply(people.researcher, ["gru-cohort"], HMB, TEXT, 30)
    view = audited.decide(application.id, people.member, Verdict.APPROVE, "Looks fine to me")
    audited.revoke(view.visas[0].jti, people.member, "misuse reported by a colleague")
    exported = "\n".join(e.to_json() for e in trail(db))
    for secret in (people.researcher.subject, people.member.subject, people.member.issuer,
                   "alice@example.org", "diabetes", "Looks fine", "misuse", "colleague"):
        assert secret not in exported


def test_refused_committee_actions_are_recorded_as_denies(audited: Committee, db: GovernanceDB,
                                                          people: People) -> None:
    outsider = people.outsider.pseudonym
    application = audited.apply(people.other_researcher, ["gru-cohort", "hmb-irb-cohort"], HMB,
                                TEXT, 30)
    own = audited.apply(people.researcher, ["gru-cohort"], HMB, TEXT, 30)
    before = len(trail(db))
    with pytest.raises(GovernanceForbiddenError):
        audited.decide(application.id, people.outsider, Verdict.APPROVE)
    # the researcher is a member here, but the application is their own
    with pytest.raises(GovernanceForbiddenError):
        audited.decide(own.id, people.researcher, Verdict.APPROVE)
    with pytest.raises(GovernanceForbiddenError):
        audited.decide("<script>free text</script>", people.outsider, Verdict.REJECT)
    view = audited.decide(application.id, people.member, Verdict.APPROVE)
    with pytest.raises(GovernanceForbiddenError):
        audited.revoke(view.visas[0].jti, people.outsider)
    records = trail(db)[before:]
    denies = [r for r in records if r.decision == "deny"]
    assert summary(denies) == [
        ("application.approve", "deny", outsider, "gru-cohort"),
        ("application.approve", "deny", outsider, "hmb-irb-cohort"),
        ("application.approve", "deny", people.researcher.pseudonym, "gru-cohort"),
        ("application.reject", "deny", outsider, None),
        ("visa.revoke", "deny", outsider, view.visas[0].dataset_id),
    ]
    assert detail(denies[0]) == {"application": application.id}
    assert "own application" in denies[2].reason
    assert detail(denies[3]) == {"application": "unknown"}  # never the text the caller sent
    assert detail(denies[4]) == {"application": application.id, "jti": view.visas[0].jti}
    assert all("not a member" in d.reason for d in (denies[0], denies[3], denies[4]))
    assert "script" not in "\n".join(r.to_json() for r in records)
    assert verify(db, SEAL_KEY).ok


def test_a_step_and_its_record_commit_together(audited: Committee, db: GovernanceDB,
                                               people: People, audit: AuditLog,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    application = audited.apply(people.researcher, ["gru-cohort"], HMB, TEXT, 30)
    records_before = len(trail(db))

    def broken(*_args: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(audit, "_chain", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        audited.decide(application.id, people.member, Verdict.APPROVE)
    monkeypatch.undo()
    # the record could not be written, so the approval did not happen either
    assert audited.application(application.id).state == "submitted"
    with db.read() as session:
        assert session.scalar(select(func.count()).select_from(Visa)) == 0
    assert len(trail(db)) == records_before
    # and a step that fails by itself leaves no record
    audited.decide(application.id, people.member, Verdict.REJECT)
    with pytest.raises(Exception, match="rejected, not submitted"):
        audited.decide(application.id, people.second_member, Verdict.APPROVE)
    assert [r.action for r in trail(db)][records_before:] == ["application.reject"]
    assert verify(db, SEAL_KEY).ok


def test_committee_steps_and_queued_decisions_form_one_chain(
        audited: Committee, db: GovernanceDB, database_url: str, people: People) -> None:
    """Committee transactions and the log's group commits (another process's log too) append
    to one chain at the same time, without deadlock."""
    other_db = GovernanceDB(database_url)
    other_log = AuditLog(other_db, SEAL_KEY)
    errors: list[BaseException] = []
    rounds = 6

    def committee_work() -> None:
        try:
            for _ in range(rounds):
                view = audited.apply(people.researcher, ["gru-cohort"], HMB, TEXT, 30)
                view = audited.decide(view.id, people.member, Verdict.APPROVE)
                audited.revoke(view.visas[0].jti, people.second_member)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def data_work(log: AuditLog, worker: int) -> None:
        try:
            for i in range(30):
                log.append(subject=f"{worker:032x}", dataset_id="gru-cohort",
                           action="beacon.count", decision="allow", reason=f"{worker}/{i}",
                           wait=i % 2 == 0)
            log.flush()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=committee_work),
               *(threading.Thread(target=data_work, args=(log, w))
                 for w, log in enumerate((audited.audit, other_log, audited.audit)))]
    assert audited.audit is not None
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    other_db.close()
    assert not errors, errors
    report = verify(db, SEAL_KEY)
    assert report.ok and report.records == rounds * 4 + 90


def test_record_event_refuses_identities_and_free_text(audit: AuditLog, db: GovernanceDB,
                                                       people: People) -> None:
    record_event(audit, GovernanceEvent.TRUST_CHANGE, actor=OPERATOR, dataset_id=None,
                 detail=format_detail(issuer_added="https://login.example.org"))
    record_event(audit, "network.join", actor=people.member.pseudonym, dataset_id=None,
                 detail=format_detail(network="gdi-eu", peers=3))
    (trust, join) = trail(db)
    assert (trust.action, trust.decision, trust.subject) == ("trust.change", "allow", "operator")
    assert trust.reason and trust.detail == "issuer_added=https://login.example.org"
    assert (join.action, join.subject, join.detail) == (
        "network.join", people.member.pseudonym, "network=gdi-eu peers=3")
    with pytest.raises(ValueError, match="pseudonym"):
        record_event(audit, GovernanceEvent.TRUST_CHANGE, actor=str(people.member),
                     dataset_id=None, detail="")
    with pytest.raises(ValueError, match=r"delivery\.change"):
        record_event(audit, "network.explode", actor=OPERATOR, dataset_id=None, detail="")
    with pytest.raises(ValueError, match="'allow'"):
        record_event(audit, GovernanceEvent.NETWORK_LEAVE, actor=OPERATOR, dataset_id=None,
                     detail="", decision="maybe")
    with pytest.raises(ValueError, match="one line"):
        record_event(audit, GovernanceEvent.NETWORK_LEAVE, actor=OPERATOR, dataset_id=None,
                     detail="a\nb")
    with pytest.raises(ValueError, match="free text"):
        format_detail(note="please approve quickly")
    assert len(trail(db)) == 2


def test_recorded_writes_ahead_and_records_a_failed_change(audit: AuditLog,
                                                           db: GovernanceDB) -> None:
    applied = []
    with recorded(audit, GovernanceEvent.DELIVERY_CHANGE, actor=OPERATOR, dataset_id="ds-1",
                  detail=format_detail(archive="s3")):
        assert [r.decision for r in trail(db)] == ["allow"]  # durable before the change
        applied.append(True)
    with pytest.raises(OSError), recorded(audit, GovernanceEvent.DELIVERY_CHANGE,
                                          actor=OPERATOR, dataset_id="ds-1", detail=""):
        raise OSError("read-only file system")
    assert applied == [True]
    records = trail(db)
    assert [(r.action, r.decision) for r in records] == [
        ("delivery.change", "allow"), ("delivery.change", "allow"), ("delivery.change", "deny")]
    assert "not applied" in records[-1].reason and "OSError" in records[-1].reason
    assert "read-only" not in records[-1].reason


def test_application_and_audit_rows_match(audited: Committee, db: GovernanceDB,
                                          people: People) -> None:
    """Each application's submission is on the trail once per dataset it names."""
    for datasets in (["gru-cohort"], ["gru-cohort", "t2d-cohort"]):
        audited.apply(people.researcher, datasets, HMB, TEXT, 30)
    with db.read() as session:
        applications = set(session.scalars(select(Application.id)))
        submitted = session.execute(select(AuditRecord.detail, AuditRecord.dataset_id).where(
            AuditRecord.action == "application.submit")).all()
    assert len(submitted) == 3
    assert {d.split(" ")[0].removeprefix("application=") for d, _ in submitted} == applications
