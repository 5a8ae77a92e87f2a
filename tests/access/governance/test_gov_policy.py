"""The one policy: tiers, researcher status, grants, expiry and revocation on the next request,
with every allow and deny in the audit trail and nothing personal in it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest
from sqlalchemy import text

from genofed.access.audit import AuditLog, entries, verify
from genofed.access.dac import Committee, Verdict
from genofed.access.db import GovernanceDB
from genofed.access.duo import Purpose
from genofed.access.enforcement import GovernancePolicy
from genofed.access.policy import Action
from genofed.access.principal import Grant, Principal
from genofed.errors import AuditWriteError
from genofed.store.metadata import DatasetMetadata

if TYPE_CHECKING:
    from conftest import People

NOW = time.time()
BOOLEAN, COUNT, RECORD = Action.BEACON_BOOLEAN, Action.BEACON_COUNT, Action.BEACON_RECORD
RELEASING = [Action.BEACON_RECORD, Action.HTSGET_TICKET, Action.HTSGET_DATA, Action.ANALYSIS]


def caller(*grants: Grant, researcher: bool = False, expires: float = NOW + 3600) -> Principal:
    return Principal(issuer="https://login.example.org", subject="researcher-1",
                     expires=int(expires), grants=grants, researcher=researcher)


def grant(dataset: str, *, expires: float = NOW + 3600, jti: str | None = "jti-1") -> Grant:
    return Grant(dataset_id=dataset, issuer="https://node.example.org", by="dac",
                 expires=int(expires), visa_id=jti)


@pytest.mark.parametrize(("tier_dataset", "who", "action", "allowed"), [
    ("public-summary", None, BOOLEAN, True),
    ("public-summary", None, COUNT, False),
    ("public-summary", "researcher", COUNT, False),
    ("registered-cohort", None, BOOLEAN, True),
    ("registered-cohort", None, COUNT, False),
    ("registered-cohort", "plain", COUNT, False),
    ("registered-cohort", "researcher", COUNT, True),
    ("registered-cohort", "researcher", RECORD, False),
    ("gru-cohort", None, BOOLEAN, True),
    ("gru-cohort", "researcher", COUNT, True),
    ("gru-cohort", "plain", COUNT, False),
    ("gru-cohort", "grant", COUNT, True),
    ("gru-cohort", "researcher", RECORD, False),
    ("gru-cohort", "grant", RECORD, True),
    ("gru-cohort", "other-grant", RECORD, False),
    ("gru-cohort", "expired-grant", RECORD, False),
    ("gru-cohort", "expired-caller", COUNT, False),
])
def test_tiers(policy: GovernancePolicy, datasets: dict[str, DatasetMetadata], tier_dataset: str,
               who: str | None, action: Action, allowed: bool) -> None:
    principals = {
        None: None,
        "plain": caller(),
        "researcher": caller(researcher=True),
        "grant": caller(grant("gru-cohort")),
        "other-grant": caller(grant("t2d-cohort"), researcher=True),
        "expired-grant": caller(grant("gru-cohort", expires=NOW - 1), researcher=True),
        "expired-caller": caller(grant("gru-cohort"), researcher=True, expires=NOW - 1),
    }
    decision = policy.decide(principals[who], datasets[tier_dataset], action)
    assert decision.allowed is allowed, decision.reason
    assert decision.reason


@pytest.mark.parametrize("action", RELEASING)
def test_every_releasing_action_needs_the_grant(policy: GovernancePolicy,
                                                datasets: dict[str, DatasetMetadata],
                                                action: Action) -> None:
    dataset = datasets["t2d-cohort"]
    assert not policy.decide(caller(researcher=True), dataset, action).allowed
    assert policy.decide(caller(grant("t2d-cohort")), dataset, action).allowed


def test_revocation_takes_effect_on_the_next_request(
        policy: GovernancePolicy, committee: Committee, people: People,
        datasets: dict[str, DatasetMetadata]) -> None:
    application = committee.apply(people.researcher, ["gru-cohort"], Purpose.parse(["HMB"]),
                                  "study", 30).id
    visa = committee.decide(application, people.member, Verdict.APPROVE).visas[0]
    holder = caller(grant("gru-cohort", expires=visa.expires_at, jti=visa.jti))
    dataset = datasets["gru-cohort"]
    assert policy.decide(holder, dataset, Action.HTSGET_TICKET).allowed
    committee.revoke(visa.jti, people.second_member, "misuse")
    decision = policy.decide(holder, dataset, Action.HTSGET_TICKET)
    assert not decision.allowed and "revoked" in decision.reason


def test_revocation_by_another_process_counts_too(
        db: GovernanceDB, database_url: str, policy: GovernancePolicy, committee: Committee,
        people: People, datasets: dict[str, DatasetMetadata]) -> None:
    application = committee.apply(people.researcher, ["gru-cohort"], Purpose.parse(["HMB"]),
                                  "study", 30).id
    visa = committee.decide(application, people.member, Verdict.APPROVE).visas[0]
    holder = caller(grant("gru-cohort", expires=visa.expires_at, jti=visa.jti))
    assert policy.decide(holder, datasets["gru-cohort"], RECORD).allowed
    elsewhere = GovernanceDB(database_url)  # an operator's CLI, with its own connections
    Committee(elsewhere, committee.signer, members=committee.members,
              datasets=committee.datasets).revoke(visa.jti, people.member)
    elsewhere.close()
    assert not policy.decide(holder, datasets["gru-cohort"], RECORD).allowed


def test_every_decision_is_audited_pseudonymously(
        db: GovernanceDB, audit: AuditLog, policy: GovernancePolicy,
        datasets: dict[str, DatasetMetadata]) -> None:
    principal = caller(grant("gru-cohort"))
    policy.decide(principal, datasets["gru-cohort"], Action.HTSGET_DATA, detail="chr1:1-1000")
    policy.decide(None, datasets["gru-cohort"], RECORD)
    policy.deny_unauthenticated("gru-cohort", Action.HTSGET_TICKET, "token signed with alg none")
    records = list(entries(db))
    assert [(r.decision, r.action, r.dataset_id) for r in records] == [
        ("allow", "htsget.data", "gru-cohort"), ("deny", "beacon.record", "gru-cohort"),
        ("deny", "htsget.ticket", "gru-cohort")]
    assert records[0].subject == principal.pseudonym and records[0].detail == "chr1:1-1000"
    assert records[1].subject == records[2].subject == "anonymous"
    assert "alg none" in records[2].reason
    exported = " ".join(r.to_json() for r in records)
    for personal in ("researcher-1", "login.example.org"):
        assert personal not in exported
    assert verify(db, audit.seal_key).ok


def test_nothing_is_released_without_an_audit_record(
        db: GovernanceDB, policy: GovernancePolicy, datasets: dict[str, DatasetMetadata]) -> None:
    with db.write() as session:
        session.execute(text("DELETE FROM audit_head"))  # the chain can no longer be appended
    with pytest.raises(AuditWriteError):
        policy.decide(caller(grant("gru-cohort")), datasets["gru-cohort"], RECORD)
    assert list(entries(db)) == []
