"""The exposure ledger on SQLite and PostgreSQL: evidence as the binomial model gives it, budgets
spent once per fact, carriers who cannot pay left out, and no update lost between writers."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest
from scipy.stats import beta

from genofed.access.db import GovernanceDB
from genofed.access.exposure import CountFact, ExposureLedger, Outcome, evidence, evidence_at


def _binomial_in(low: int, high: int | None, trials: int, p: float, shift: int) -> float:
    top = trials + shift if high is None else high
    return sum(math.comb(trials, k - shift) * p ** (k - shift) * (1 - p) ** (trials - k + shift)
               for k in range(max(low, shift), min(top, trials + shift) + 1))


@pytest.mark.parametrize(("outcome", "own", "total", "trials", "per"), [
    (Outcome(5), 1, 6, 60, 2),  # a boolean "yes" at floor 5, allele counts
    (Outcome(5), 2, 7, 60, 2),
    (Outcome(1, 4), 1, 2, 30, 1),  # "between 1 and 4" carriers
    (Outcome(9, 9), 1, 9, 30, 1),  # an exact count
])
def test_evidence_is_the_binomial_likelihood_ratio(outcome: Outcome, own: int, total: int,
                                                   trials: int, per: int) -> None:
    """At a known frequency, the log-likelihood ratio an attacker computes; the node's evidence
    is the largest of it over the frequency's posterior given the other carriers' count (the
    attacker may know the frequency; the node does not)."""
    p = (total - own) / (trials - per)
    member = _binomial_in(outcome.low, outcome.high, trials - per, p, own)
    outsider = _binomial_in(outcome.low, outcome.high, trials, p, 0)
    assert evidence_at(outcome, own=own, trials=trials, per_individual=per,
                       frequency=p) == pytest.approx(math.log(member / outsider), rel=1e-9)
    seen = total - own
    quantiles = (np.arange(16) + 0.5) / 16
    frequencies = beta.ppf(quantiles, seen + 0.5, trials - per - seen + 0.5)
    want = max([evidence_at(outcome, own=own, trials=trials, per_individual=per,
                                frequency=float(f)) for f in frequencies])
    got = evidence(outcome, own=own, total=total, trials=trials, per_individual=per)
    assert got == pytest.approx(max(0.0, want), rel=1e-9) and got > 0


def test_a_sole_carriers_rare_allele_costs_more_than_a_shared_one() -> None:
    """The posterior puts weight on frequencies far below one in the cohort: "between 1 and
    4" about an allele nobody else carries is strong evidence, one that three others carry
    is weak."""
    alone = evidence(Outcome(1, 4), own=1, total=1, trials=300, per_individual=1)
    shared = evidence(Outcome(1, 4), own=1, total=4, trials=300, per_individual=1)
    assert alone > 1.5 and shared < alone / 3


def test_a_no_reveals_no_membership() -> None:
    assert evidence(Outcome(0, 4), own=1, total=3, trials=60, per_individual=2) == 0.0


def _fact(key: str, people: list[str], *, floor: int = 5, boolean: bool = False,
          trials: int = 40) -> CountFact:
    def disclose(count: int) -> Outcome:
        if boolean:
            return Outcome(floor) if count >= floor else Outcome(0, floor - 1)
        if count == 0:
            return Outcome(0, 0)
        return Outcome(1, floor - 1) if count < floor else Outcome(count, count)

    return CountFact(key=key, individuals=people, units=np.ones(len(people), dtype=np.int64),
                     trials=trials, per_individual=1, disclose=disclose)


def test_facts_are_paid_once_and_repeated_for_free(db: GovernanceDB) -> None:
    ledger = ExposureLedger(db, lambda: 10.0)
    people = [f"p{i}" for i in range(6)]
    (first,) = ledger.release([_fact("a", people)])
    assert first.count == 6 and first.spent > 0 and not first.repeated
    spent = ledger.spent(people)
    assert set(spent) == set(people)
    (again,) = ledger.release([_fact("a", people)])
    assert (again.count, again.repeated, again.spent) == (6, True, 0.0)
    assert ledger.spent(people) == spent


def test_carriers_who_cannot_pay_are_left_out(db: GovernanceDB) -> None:
    """Six carriers would make a boolean "yes" (floor 5); one has spent everything and one
    cannot pay for the yes, so without them the answer is "no", which costs nobody anything."""
    ledger = ExposureLedger(db, lambda: 10.0)
    people = [f"p{i}" for i in range(6)]
    ledger.spend({"p0": 10.0, "p1": 9.999})
    (answer,) = ledger.release([_fact("b", people, boolean=True)])
    assert (answer.count, answer.excluded, answer.spent) == (4, 2, 0.0)
    assert ledger.spent(people) == {"p0": 10.0, "p1": 9.999}
    # with only the exhausted one left out, the others pay for the yes
    (answer,) = ledger.release([_fact("b2", people[:1] + people[2:] + ["p6"], boolean=True)])
    assert answer.count == 5 and answer.excluded == 1 and answer.spent > 0
    spent = ledger.spent([*people, "p6"])
    assert all(0 < spent[p] <= 10.0 for p in [*people[2:], "p6"])


def test_an_exhausted_individual_takes_part_in_no_answer_not_even_a_free_one(
        db: GovernanceDB) -> None:
    """A boolean far above the floor is free: no one carrier could tip it. It still leaves out
    whoever has spent their allowance, or whether an answer is free would depend on them (the
    count at which answers become free is a threshold one person can cross)."""
    ledger = ExposureLedger(db, lambda: 1.0)
    many = [f"q{i}" for i in range(90)]
    (answer,) = ledger.release([_fact("far", many, boolean=True, trials=100)], limit=0.5)
    assert (answer.count, answer.accounted, answer.spent) == (90, True, 0.0)
    assert ledger.spent(many) == {}
    ledger.spend({"q0": 0.5, "q1": 0.2})
    (answer,) = ledger.release([_fact("far2", many, boolean=True, trials=100)], limit=0.5)
    assert (answer.count, answer.excluded, answer.spent) == (89, 1, 0.0)
    # counts, under the whole budget, still include q0
    (answer,) = ledger.release([_fact("far3", many, boolean=True, trials=100)])
    assert (answer.count, answer.excluded) == (90, 0)


def test_a_public_share_of_zero_includes_no_one_in_an_answer_they_could_tip(
        db: GovernanceDB) -> None:
    """With no share for open answers, a boolean that any one carrier could tip is "no", and a
    boolean no one carrier could tip (far above the floor) is answered from the full data."""
    ledger = ExposureLedger(db, lambda: 1.0)
    few = [f"p{i}" for i in range(6)]
    (answer,) = ledger.release([_fact("tip", few, boolean=True)], limit=0.0)
    assert (answer.count, answer.spent) == (0, 0.0)
    many = [f"q{i}" for i in range(90)]
    (answer,) = ledger.release([_fact("far", many, boolean=True, trials=100)], limit=0.0)
    assert answer.count == 90 and ledger.spent(few + many) == {}


def test_budget_zero_turns_accounting_off(db: GovernanceDB) -> None:
    ledger = ExposureLedger(db, lambda: 0.0)
    (answer,) = ledger.release([_fact("c", ["a", "b"])])
    assert answer.count == 2 and not answer.accounted
    assert ledger.spent(["a", "b"]) == {}


def test_concurrent_writers_lose_no_charge(db: GovernanceDB) -> None:
    """Eight threads (each its own connection) release different facts about the same people:
    every charge lands."""
    ledger = ExposureLedger(db, lambda: 1000.0)
    people = [f"p{i}" for i in range(10)]
    answers: list[float] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for j in range(5):
            (answer,) = ledger.release([_fact(f"t{n}-{j}", people)])
            with lock:
                answers.append(answer.spent)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(answers) == 40
    assert sum(ledger.spent(people).values()) == pytest.approx(sum(answers), rel=1e-9)
