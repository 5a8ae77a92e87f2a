"""Visas inside a passport (GA4GH Passport v1.2): trust by (iss, jku) before any fetch, signature
and times, `conditions`, LinkedIdentities, and the earliest expiry winning. A bad visa is ignored
with a reason; it never sinks the passport or the caller's other visas."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from genofed.access.identity.issuer import LocalIssuer
from genofed.access.identity.passport import (
    Identity,
    format_linked_identities,
    parse_conditions,
    parse_linked_identities,
)
from genofed.access.principal import Principal

if TYPE_CHECKING:
    from conftest import Forge, MakeAuth, Recorder

CAG = "ControlledAccessGrants"
LINK = "LinkedIdentities"
PassportOf = Callable[..., Principal]


@pytest.fixture
def passport_of(issuer: LocalIssuer, make_auth: MakeAuth) -> PassportOf:
    """`passport_of(*visas, user="alice")`: the Principal for a passport carrying the issuer's
    own visas for `user` plus `visas`."""
    auth = make_auth()

    def evaluate(*visas: str, user: str = "alice", lifetime: int | None = None) -> Principal:
        principal = auth.authenticate(
            f"Bearer {issuer.passport(user, extra_visas=visas, lifetime=lifetime)}")
        assert principal is not None
        return principal

    return evaluate


def granted(principal: Principal) -> set[str]:
    return {g.dataset_id for g in principal.grants}


def reasons(principal: Principal) -> str:
    return "\n".join(principal.ignored_visas)


def test_grant_carries_dataset_id_visa_jti_issuer_and_by(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    visa = issuer.visa("alice", CAG, "EGAD00000000001", by="dac", jti="visa-0001")
    principal = passport_of(visa)
    grant = principal.grant_for("EGAD00000000001")
    assert grant is not None and principal.grant_for("EGAD00000000002") is None
    assert (grant.visa_id, grant.issuer, grant.by) == ("visa-0001", issuer.url, "dac")
    assert principal.ignored_visas == ()


def test_untrusted_jku_is_ignored_and_never_fetched(
        issuer: LocalIssuer, other_issuer: LocalIssuer, passport_of: PassportOf,
        recorder: Recorder, dead_url: str) -> None:
    evil = issuer.visa("alice", CAG, "ds-evil", by="dac", jku=f"{dead_url}/evil-jwks")
    # A jku that *is* trusted, but for another issuer, is just as untrusted for this one.
    swapped = issuer.visa("alice", CAG, "ds-swapped", by="dac", jku=other_issuer.jwks_url)
    fine = issuer.visa("alice", CAG, "ds-fine", by="dac")
    principal = passport_of(evil, swapped, fine)
    assert granted(principal) == {"ds-fine"}
    assert reasons(principal).count("is not trusted") == 2
    assert recorder.count("evil-jwks") == 0 and recorder.count(other_issuer.url) == 0


def test_visa_issuer_missing_from_the_trust_list_is_ignored(
        issuer: LocalIssuer, other_issuer: LocalIssuer, make_auth: MakeAuth,
        recorder: Recorder) -> None:
    auth = make_auth(trusted_visas=[issuer.visa_trust])
    visa = other_issuer.visa("alice", CAG, "ds-1", by="dac", sub=issuer.user("alice").sub)
    principal = auth.authenticate(f"Bearer {issuer.passport('alice', extra_visas=[visa])}")
    assert principal is not None and granted(principal) == set()
    assert "not trusted" in reasons(principal)
    assert recorder.count(other_issuer.url) == 0


def test_expired_and_future_visas_are_ignored_but_the_rest_stand(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    now = int(time.time())
    expired = issuer.visa("alice", CAG, "ds-old", by="dac", issued=now - 7200, lifetime=3600)
    future = issuer.visa("alice", CAG, "ds-future", by="dac", issued=now + 3600)
    current = issuer.visa("alice", CAG, "ds-now", by="dac")
    principal = passport_of(expired, future, current)
    assert granted(principal) == {"ds-now"} and principal.researcher
    assert "expired" in reasons(principal) and "not yet valid" in reasons(principal)


def test_tampered_visa_is_ignored(
        issuer: LocalIssuer, passport_of: PassportOf, forge: Forge) -> None:
    visa = issuer.visa("alice", CAG, "ds-a", by="dac")
    payload = {"ga4gh_visa_v1": {"type": CAG, "asserted": int(time.time()), "value": "ds-b",
                                 "source": issuer.url, "by": "dac"}}
    principal = passport_of(forge(visa, claims=payload))
    assert granted(principal) == set()
    assert "signature does not verify" in reasons(principal)


def test_visas_with_forbidden_algorithms_are_ignored(
        issuer: LocalIssuer, passport_of: PassportOf, forge: Forge) -> None:
    visa = issuer.visa("alice", CAG, "ds-a", by="dac")
    principal = passport_of(forge(visa, header={"alg": "none"}, signature=""),
                            forge(visa, header={"alg": "HS256"}))
    assert granted(principal) == set()
    assert "'none' is not accepted" in reasons(principal)
    assert "'HS256' is not accepted" in reasons(principal)


def test_malformed_visas_are_ignored_with_reasons(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    no_by = issuer.visa("alice", CAG, "ds-a")  # ControlledAccessGrants must say `by`
    access_token_as_visa = issuer.access_token("alice")  # no jku: not a visa document token
    principal = passport_of(no_by, access_token_as_visa, 42)
    assert granted(principal) == set()
    assert "ControlledAccessGrants visa has no 'by'" in reasons(principal)
    assert "no 'jku'" in reasons(principal) and "not a JWT string" in reasons(principal)


def test_visa_for_another_subject_is_ignored(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    bobs = issuer.visa("bob", CAG, "ds-bob", by="dac")
    principal = passport_of(bobs)
    assert granted(principal) == set()
    assert "issued to another identity" in reasons(principal)


def test_visa_of_another_account_counts_only_with_a_trusted_link(
        issuer: LocalIssuer, other_issuer: LocalIssuer, passport_of: PassportOf,
        tmp_path: Path) -> None:
    home = Identity(issuer.user("alice").sub, issuer.url)
    away = Identity(other_issuer.user("alice").sub, other_issuer.url)
    grant_away = other_issuer.visa("alice", CAG, "ds-away", by="dac")
    assert granted(passport_of(grant_away)) == set()

    # The home broker asserts both accounts are the same person.
    link = issuer.visa("alice", LINK, format_linked_identities([away]), by="system",
                       lifetime=600)
    linked = passport_of(grant_away, link)
    assert granted(linked) == {"ds-away"}
    grant = linked.grant_for("ds-away")
    assert grant is not None and grant.issuer == other_issuer.url
    link_expires = int(time.time()) + 600
    assert abs(grant.expires - link_expires) <= 2  # the link is the shortest-lived part

    # The other broker may assert it too, from its side (the link names the home account).
    reverse = other_issuer.visa("alice", LINK, format_linked_identities([home]), by="system")
    assert granted(passport_of(grant_away, reverse)) == {"ds-away"}

    # A link from an untrusted issuer links nothing.
    rogue = LocalIssuer.create(tmp_path / "rogue", url="http://127.0.0.1:9")
    rogue_link = rogue.visa("alice", LINK, format_linked_identities([home, away]), by="system",
                            sub="x")
    assert granted(passport_of(grant_away, rogue_link)) == set()


def test_links_chain_and_may_come_from_a_third_identity(
        issuer: LocalIssuer, other_issuer: LocalIssuer,
        passport_of: PassportOf) -> None:
    home = Identity(issuer.user("alice").sub, issuer.url)
    away = Identity(other_issuer.user("alice").sub, other_issuer.url)
    third = Identity("alice-at-a-third-place", other_issuer.url)
    grant_third = other_issuer.visa("alice", CAG, "ds-third", by="dac", sub=third.sub)
    # home -> away (by home), away -> third (by other): a chain.
    chain = [issuer.visa("alice", LINK, format_linked_identities([away]), by="system"),
             other_issuer.visa("alice", LINK, format_linked_identities([third]), by="system")]
    assert granted(passport_of(grant_third, *chain)) == {"ds-third"}
    # One visa of a third account listing both: a superset link.
    superset = other_issuer.visa("alice", LINK, format_linked_identities([home, third]),
                                 by="system", sub="broker-account-0001")
    assert granted(passport_of(grant_third, superset)) == {"ds-third"}


def test_unknown_condition_prefix_ignores_that_visa_only(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    odd = issuer.visa("alice", CAG, "ds-odd", by="dac",
                      conditions=[[{"type": "ResearcherStatus", "value": "regex:.*"}]])
    plain = issuer.visa("alice", CAG, "ds-plain", by="dac")
    principal = passport_of(odd, plain)
    assert granted(principal) == {"ds-plain"} and principal.researcher
    assert "unknown condition prefix 'regex'" in reasons(principal)


def test_conditions_must_be_met_by_other_valid_visas(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    needs_faculty = [[{"type": "AffiliationAndRole", "value": "const:faculty@uni.example",
                       "by": "const:so"}]]
    conditioned = issuer.visa("alice", CAG, "ds-c", by="dac", conditions=needs_faculty)
    assert granted(passport_of(conditioned)) == set()
    assert "conditions are not met" in reasons(passport_of(conditioned))

    faculty = issuer.visa("alice", "AffiliationAndRole", "faculty@uni.example", by="so")
    assert granted(passport_of(conditioned, faculty)) == {"ds-c"}
    by_self = issuer.visa("alice", "AffiliationAndRole", "faculty@uni.example", by="self")
    assert granted(passport_of(conditioned, by_self)) == set()
    someone_elses = issuer.visa("bob", "AffiliationAndRole", "faculty@uni.example", by="so")
    assert granted(passport_of(conditioned, someone_elses)) == set()


def test_conditions_are_an_or_of_ands_with_patterns(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    conditions = [
        [{"type": "AffiliationAndRole", "value": "pattern:faculty@*.example"},
         {"type": "ResearcherStatus", "source": f"const:{issuer.url}"}],
        [{"type": "AffiliationAndRole", "value": "pattern:staff@hospital.???"}],
    ]
    visa = issuer.visa("alice", CAG, "ds-p", by="dac", conditions=conditions)
    faculty = issuer.visa("alice", "AffiliationAndRole", "faculty@uni.example", by="so")
    staff = issuer.visa("alice", "AffiliationAndRole", "staff@hospital.org", by="so")
    student = issuer.visa("alice", "AffiliationAndRole", "student@uni.example", by="so")
    assert granted(passport_of(visa, faculty)) == {"ds-p"}  # alice holds ResearcherStatus
    assert granted(passport_of(visa, faculty, user="bob")) == set()  # wrong sub anyway
    assert granted(passport_of(visa, staff)) == {"ds-p"}
    assert granted(passport_of(visa, student)) == set()


def test_split_pattern_matches_one_linked_identity(
        issuer: LocalIssuer, other_issuer: LocalIssuer,
        passport_of: PassportOf) -> None:
    away = Identity(other_issuer.user("alice").sub, other_issuer.url)
    link = issuer.visa("alice", LINK, format_linked_identities(
        [Identity("000", "https://a.example"), away]), by="system")
    encoded_other = format_linked_identities([away]).split(",")[1]
    needs_link = [[{"type": LINK, "value": f"split_pattern:*,{encoded_other}"}]]
    visa = issuer.visa("alice", CAG, "ds-s", by="dac", conditions=needs_link)
    assert granted(passport_of(visa, link)) == {"ds-s"}
    assert granted(passport_of(visa)) == set()


def test_a_conditional_visa_cannot_satisfy_another_condition(
        issuer: LocalIssuer, passport_of: PassportOf) -> None:
    needs_x = [[{"type": CAG, "value": "const:ds-x"}]]
    needs_y = [[{"type": CAG, "value": "const:ds-y"}]]
    x = issuer.visa("alice", CAG, "ds-x", by="dac", conditions=needs_y)
    y = issuer.visa("alice", CAG, "ds-y", by="dac", conditions=needs_x)
    assert granted(passport_of(x, y)) == set()  # no loops, no bootstrapping


def test_the_earliest_expiry_wins(issuer: LocalIssuer, passport_of: PassportOf) -> None:
    now = int(time.time())
    short = issuer.visa("alice", CAG, "ds-short", by="dac", issued=now, lifetime=300)
    long = issuer.visa("alice", CAG, "ds-long", by="dac", issued=now, lifetime=86_400)
    principal = passport_of(short, long, lifetime=1800)
    by_id = {g.dataset_id: g for g in principal.grants}
    assert by_id["ds-short"].expires == now + 300  # the visa ends first
    assert abs(by_id["ds-long"].expires - (now + 1800)) <= 2  # the passport ends first
    assert principal.expires == now + 300  # the principal lasts as long as its weakest part

    # A grant that rests on a condition lasts no longer than the visa meeting it.
    conditioned = issuer.visa("alice", CAG, "ds-cond", by="dac", issued=now, lifetime=86_400,
                              conditions=[[{"type": "AffiliationAndRole",
                                            "value": "const:faculty@uni.example"}]])
    affiliation = issuer.visa("alice", "AffiliationAndRole", "faculty@uni.example", by="so",
                              issued=now, lifetime=600)
    grant = passport_of(conditioned, affiliation).grant_for("ds-cond")
    assert grant is not None and grant.expires == now + 600


@pytest.mark.parametrize("conditions, problem", [
    ("oops", "not a list of lists"),
    ([[]], "empty"),
    ([[{"value": "const:x"}]], "no 'type'"),
    ([[{"type": "ResearcherStatus"}]], "tests nothing"),
    ([[{"type": "ResearcherStatus", "asserted": "const:1"}]], "tests field 'asserted'"),
    ([[{"type": "ResearcherStatus", "value": "no-prefix"}]], "'<prefix>:<value>'"),
    ([[{"type": "ResearcherStatus", "value": "Const:x"}]], "unknown condition prefix"),
])
def test_malformed_conditions_are_refused(conditions: object, problem: str) -> None:
    from genofed.errors import TokenRejected

    with pytest.raises(TokenRejected, match=problem):
        parse_conditions(conditions)
    assert parse_conditions([]) == () and parse_conditions(None) == ()


@given(st.text(alphabet="ab?*", max_size=6), st.text(alphabet="ab?*.", max_size=8))
def test_pattern_prefix_agrees_with_shell_style_matching(pattern: str, value: str) -> None:
    # The spec's `?` / `*` are exactly fnmatch's, minus character classes (absent here).
    import fnmatch

    (clause,), = parse_conditions([[{"type": "T", "value": f"pattern:{pattern}"}]])
    assert clause.fields[0].matches(value) == fnmatch.fnmatchcase(value, pattern)


@given(st.lists(st.tuples(st.text(min_size=1), st.text(min_size=1)), min_size=1, max_size=4))
def test_linked_identities_value_round_trips(pairs: list[tuple[str, str]]) -> None:
    identities = [Identity(sub, iss) for sub, iss in pairs]
    assert parse_linked_identities(format_linked_identities(identities)) == set(identities)
