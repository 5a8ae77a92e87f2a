"""The committee workflow on SQLite and PostgreSQL: apply, pre-assess, decide once, issue signed
visas, revoke; and two members deciding at the same moment."""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING

import jwt
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError

from genofed.access.dac import ApplicationView, Committee, Identity, Verdict
from genofed.access.db import GovernanceDB
from genofed.access.duo import Outcome, Purpose
from genofed.access.end_dates import access_end, latest_access_end
from genofed.access.models import ApplicationEvent, Visa
from genofed.access.visas import VisaSigner
from genofed.errors import (
    ApplicationNotFoundError,
    GovernanceConflictError,
    GovernanceError,
    GovernanceForbiddenError,
)

if TYPE_CHECKING:
    from conftest import People

HMB = Purpose.parse(["HMB"])


def apply(committee: Committee, people: People, *datasets: str, days: int = 30,
          purpose: Purpose = HMB) -> str:
    view = committee.apply(people.researcher, list(datasets) or ["gru-cohort"], purpose,
                           "Genetic risk of type 2 diabetes in a national cohort.", days)
    return view.id


def test_apply_preassesses_each_dataset_and_records_the_submission(
        committee: Committee, people: People) -> None:
    view = committee.apply(people.researcher, ["gru-cohort", "hmb-irb-cohort", "npu-cohort"],
                           Purpose.parse(["HMB"], commercial=True), "A commercial HMB study.", 90)
    assessments = {d.dataset_id: d.assessment for d in view.datasets}
    assert assessments == {"gru-cohort": Outcome.APPROVE,
                           "hmb-irb-cohort": Outcome.NEEDS_REVIEW, "npu-cohort": Outcome.DENY}
    assert all(d.reasons for d in view.datasets)
    assert view.state == "submitted" and view.applicant == people.researcher
    assert [(e.seq, e.kind, e.actor) for e in view.events] == [
        (1, "submitted", str(people.researcher))]
    assert committee.application(view.id) == view


@pytest.mark.parametrize(("requested", "error", "message"), [
    (["no-such-dataset"], ApplicationNotFoundError, "no-such-dataset"),
    (["public-summary"], GovernanceError, "public-tier"),
    (["registered-cohort"], GovernanceError, "ResearcherStatus"),
    ([], GovernanceError, "at least one dataset"),
])
def test_apply_refuses_what_needs_no_or_no_possible_grant(
        committee: Committee, people: People, requested: list[str], error: type[Exception],
        message: str) -> None:
    with pytest.raises(error, match=message):
        committee.apply(people.researcher, requested, HMB, "text", 30)


@pytest.mark.parametrize("days", [0, -1, 100_000])
def test_apply_refuses_unreasonable_durations(committee: Committee, people: People,
                                              days: int) -> None:
    with pytest.raises(GovernanceError, match="days"):
        apply(committee, people, days=days)


def test_approval_issues_one_signed_visa_per_dataset(committee: Committee, people: People,
                                                     signer: VisaSigner) -> None:
    application = apply(committee, people, "gru-cohort", "hmb-irb-cohort", days=30)
    before = int(time.time())
    view = committee.decide(application, people.member, Verdict.APPROVE, "IRB approval seen")
    assert view.state == "approved"
    assert [e.kind for e in view.events] == ["submitted", "approved"]
    assert view.events[1].actor == str(people.member) and view.events[1].note
    assert sorted(v.dataset_id for v in view.visas) == ["gru-cohort", "hmb-irb-cohort"]

    keys = {k["kid"]: k for k in signer.jwks()["keys"]}
    for visa in view.visas:
        header = jwt.get_unverified_header(visa.token)
        assert header == {"alg": "ES256", "kid": signer.kid, "typ": "JWT",
                          "jku": f"{signer.issuer}/access/jwks.json"}
        key = jwt.PyJWK(keys[header["kid"]]).key
        claims = jwt.decode(visa.token, key, algorithms=["ES256"])
        assert claims["iss"] == signer.issuer and claims["sub"] == people.researcher.subject
        assert claims["jti"] == visa.jti
        assert claims["exp"] - claims["iat"] == 30 * 86_400 and claims["iat"] >= before
        assert claims["ga4gh_visa_v1"] == {
            "type": "ControlledAccessGrants", "asserted": claims["iat"],
            "value": visa.dataset_id, "source": signer.issuer, "by": "dac"}
    assert sorted(committee.passport_visas(people.researcher)) == sorted(
        v.token for v in view.visas)
    assert committee.passport_visas(people.other_researcher) == []


def test_only_committee_members_decide(committee: Committee, people: People) -> None:
    application = apply(committee, people)
    with pytest.raises(GovernanceForbiddenError, match="not a member"):
        committee.decide(application, people.outsider, Verdict.APPROVE)
    assert committee.application(application).state == "submitted"


def test_a_member_cannot_decide_their_own_application(committee: Committee,
                                                      people: People) -> None:
    own = committee.apply(people.member, ["gru-cohort"], HMB, "my own study", 30)
    with pytest.raises(GovernanceForbiddenError, match="own application"):
        committee.decide(own.id, people.member, Verdict.APPROVE)


def test_an_application_is_decided_once(committee: Committee, people: People) -> None:
    application = apply(committee, people)
    committee.decide(application, people.member, Verdict.REJECT, "out of scope")
    with pytest.raises(GovernanceConflictError, match="rejected"):
        committee.decide(application, people.second_member, Verdict.APPROVE)
    view = committee.application(application)
    assert view.state == "rejected" and view.visas == ()
    assert [e.kind for e in view.events] == ["submitted", "rejected"]


def test_approving_against_a_duo_deny_needs_a_reason(committee: Committee,
                                                     people: People) -> None:
    application = committee.apply(people.researcher, ["npu-cohort"],
                                  Purpose.parse(["HMB"], commercial=True), "commercial", 30).id
    with pytest.raises(GovernanceError, match="overrides"):
        committee.decide(application, people.member, Verdict.APPROVE)
    assert committee.application(application).state == "submitted"
    view = committee.decide(application, people.member, Verdict.APPROVE,
                            "the company is a registered non-profit foundation")
    assert len(view.visas) == 1


def test_returned_application_can_be_resubmitted_by_its_applicant(committee: Committee,
                                                                   people: People) -> None:
    application = apply(committee, people)
    committee.decide(application, people.member, Verdict.RETURN, "attach the IRB approval")
    with pytest.raises(ApplicationNotFoundError):
        committee.resubmit(application, people.other_researcher, "not mine")
    committee.resubmit(application, people.researcher, "IRB approval attached")
    view = committee.decide(application, people.second_member, Verdict.APPROVE)
    assert [e.kind for e in view.events] == ["submitted", "returned", "resubmitted", "approved"]
    assert [e.note for e in view.events][1:3] == ["attach the IRB approval",
                                                  "IRB approval attached"]


def test_revocation_removes_the_visa_from_the_passport(committee: Committee,
                                                       people: People) -> None:
    view = committee.decide(apply(committee, people), people.member, Verdict.APPROVE)
    jti = view.visas[0].jti
    assert not committee.is_revoked(jti)
    with pytest.raises(GovernanceForbiddenError):
        committee.revoke(jti, people.outsider)
    revoked = committee.revoke(jti, people.second_member, "data misuse reported")
    assert revoked.revoked_at is not None and committee.is_revoked(jti)
    assert committee.passport_visas(people.researcher) == []
    with pytest.raises(GovernanceConflictError, match="already revoked"):
        committee.revoke(jti, people.member)
    with pytest.raises(ApplicationNotFoundError):
        committee.revoke("no-such-jti", people.member)
    events = committee.application(view.id).events
    assert events[-1].kind == "visa-revoked" and "data misuse" in events[-1].note


def test_expired_visas_leave_the_passport(db: GovernanceDB, signer: VisaSigner,
                                          committee: Committee, people: People) -> None:
    application = apply(committee, people, days=1)
    committee.decide(application, people.member, Verdict.APPROVE)
    later = Committee(db, signer, members=committee.members, datasets=committee.datasets,
                      clock=lambda: time.time() + 2 * 86_400)
    assert later.passport_visas(people.researcher) == []


def test_history_is_appended_not_overwritten(db: GovernanceDB, committee: Committee,
                                             people: People) -> None:
    application = apply(committee, people)
    first = committee.application(application).events
    committee.decide(application, people.member, Verdict.RETURN, "more detail please")
    committee.resubmit(application, people.researcher, "details added")
    events = committee.application(application).events
    assert events[:1] == first and [e.seq for e in events] == [1, 2, 3]
    # The event log itself refuses a second event with the same number.
    with pytest.raises(IntegrityError), db.write() as session:
        session.add(ApplicationEvent(application_id=application, seq=2, kind="approved",
                                     actor="x", note="", at=events[1].at))


def race(committee: Committee, application: str,
         deciders: list[tuple[Identity, Verdict]]) -> list[str]:
    """Every decider calls `decide` at the same moment (a barrier); what each of them got."""
    barrier = threading.Barrier(len(deciders))
    outcomes: list[str] = []
    lock = threading.Lock()

    def decide(member: Identity, verdict: Verdict) -> None:
        barrier.wait()
        try:
            committee.decide(application, member, verdict)
            result = f"decided:{verdict.value}"
        except GovernanceConflictError:
            result = "conflict"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=decide, args=d) for d in deciders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return outcomes


def test_two_members_deciding_at_the_same_moment(db: GovernanceDB, committee: Committee,
                                                 people: People) -> None:
    """Exactly one decision and at most one visa per dataset, however the race goes."""
    deciders = [(people.member, Verdict.APPROVE), (people.second_member, Verdict.APPROVE),
                (people.member, Verdict.REJECT), (people.second_member, Verdict.APPROVE)]
    for _round in range(5):
        application = apply(committee, people, "gru-cohort", "hmb-irb-cohort")
        outcomes = race(committee, application, deciders)
        assert len(outcomes) == len(deciders)
        assert len([o for o in outcomes if o.startswith("decided")]) == 1, outcomes
        view = committee.application(application)
        assert len([e for e in view.events if e.kind in ("approved", "rejected")]) == 1
        with db.read() as session:
            visas = session.scalar(select(func.count()).select_from(Visa).where(
                Visa.application_id == application))
        assert visas == (2 if view.state == "approved" else 0)


def test_the_state_is_only_changed_by_compare_and_set(db: GovernanceDB, committee: Committee,
                                                      people: People) -> None:
    """A stale decider (who read 'submitted' before another member decided) is refused."""
    application = apply(committee, people)
    with db.write() as session:
        session.execute(text("UPDATE applications SET state = 'rejected' WHERE id = :id"),
                        {"id": application})
    with pytest.raises(GovernanceConflictError):
        committee.decide(application, people.member, Verdict.APPROVE)


def visa_expiries(view: ApplicationView) -> set[int]:
    """The `exp` claim of each of the application's visas (their recorded expiry agrees)."""
    expiries = {jwt.decode(v.token, options={"verify_signature": False})["exp"]
                for v in view.visas}
    assert expiries == {v.expires_at for v in view.visas}
    return expiries


def test_approval_with_an_end_date_ends_the_visas_then(committee: Committee,
                                                      people: People) -> None:
    application = apply(committee, people, "gru-cohort", "hmb-irb-cohort", days=90)
    end = datetime.now(UTC).replace(microsecond=0) + timedelta(days=30, hours=5)
    view = committee.decide(application, people.member, Verdict.APPROVE, "IRB seen", end)
    assert view.state == "approved" and len(view.visas) == 2
    assert visa_expiries(view) == {int(end.timestamp())}
    assert [e.kind for e in view.events] == ["submitted", "approved", "end-date"]
    recorded = view.events[-1]
    assert recorded.actor == str(people.member)
    assert end.isoformat() in recorded.note and "90 days" in recorded.note


def test_an_end_date_means_through_that_day(committee: Committee, people: People) -> None:
    application = apply(committee, people, days=30)
    last_day = datetime.now(UTC).date() + timedelta(days=30)  # the longest the form offers
    view = committee.decide(application, people.member, Verdict.APPROVE, "",
                            last_day.isoformat())
    through = datetime.combine(last_day, datetime.max.time(), UTC).replace(microsecond=0)
    assert visa_expiries(view) == {int(through.timestamp())}
    assert latest_access_end(datetime.now(UTC), 30) == through


@pytest.mark.parametrize(("end", "message"), [
    (datetime.now(UTC) - timedelta(minutes=1), "has passed"),
    ((datetime.now(UTC) - timedelta(days=1)).date(), "has passed"),
    ((datetime.now(UTC) + timedelta(days=31)).date(), "the 30 days the applicant asked for"),
    ("31/12/2099", "not an ISO date"),
])
def test_an_end_date_in_the_past_or_beyond_the_request_is_refused(
        committee: Committee, people: People, end: date | datetime | str, message: str) -> None:
    application = apply(committee, people, days=30)
    with pytest.raises(GovernanceError, match=message):
        committee.decide(application, people.member, Verdict.APPROVE, "", end)
    view = committee.application(application)
    assert view.state == "submitted" and view.visas == ()
    assert [e.kind for e in view.events] == ["submitted"]


def test_an_end_date_goes_with_an_approval_only(committee: Committee, people: People) -> None:
    application = apply(committee, people)
    tomorrow = datetime.now(UTC).date() + timedelta(days=1)
    with pytest.raises(GovernanceError, match="approval"):
        committee.decide(application, people.member, Verdict.REJECT, "no", tomorrow)
    assert committee.application(application).state == "submitted"
    assert access_end(tomorrow) == datetime.combine(tomorrow, datetime.max.time(),
                                                    UTC).replace(microsecond=0)
