"""Exposure accounting: how much answers below record level have revealed about each individual.

A membership-inference attacker (Shringarpure & Bustamante 2015) holds a person's genome and
asks about the alleles that person carries; each answer shifts the odds that the person is in the
dataset. Following Raisaro et al. (2017), the node keeps that shift per individual, over all
callers and all time, as membership evidence in nats: for an answer that discloses that a count
lies in some interval, the evidence about a carrier is

    log P(count in interval | carrier is a member) - log P(count in interval | not a member)

under a binomial model of the count, at the population frequency that makes it largest among
the plausible ones given the other carriers (an attacker knows that frequency from a reference
panel; the node does not, so it charges the worst case: averaging over the frequency let a
registered attacker learn several times what was charged, whatever the budget). Every carrier
who contributes to an answer pays its evidence from their budget
(`disclosure.exposure_budget`); a carrier whose remaining budget cannot pay is left out of the
count, and one who has spent it all takes part in no answer at all (not even a free one), so
the answer is what the dataset without them would give.
An answer is remembered (by a key naming dataset version, alleles and selection): asked again,
by anyone, it is repeated and costs nothing, so repeating queries neither drains budgets nor
shows a person dropping out.

Answers whose evidence about any carrier is below :data:`FREE_EVIDENCE` and that no one
carrier's absence would change (booleans for alleles far above the count floor) are given from
the full data without accounting: ten thousand of them reveal less than 0.01 nats about anyone.
Ledger and remembered answers live in the governance database, so every server process shares
them and they survive restarts.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta, binom
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from genofed.access.db import GovernanceDB, insert_new
from genofed.access.models import ExposureSpent, ReleasedAnswer

#: Below this (nats, about any carrier) an answer is given without accounting.
FREE_EVIDENCE = 1e-6
#: One answer never charges more than this (a count a model calls impossible).
_MAX_EVIDENCE = 50.0
_BATCH = 500  # bound parameters per IN (...) clause
#: Where the frequency's posterior is sampled for the largest evidence over it.
_QUANTILES = (np.arange(16) + 0.5) / 16


@dataclass(frozen=True)
class Outcome:
    """What an answer discloses about a count: that it lies in [low, high] (high None: no upper
    bound)."""

    low: int
    high: int | None = None


@dataclass(frozen=True)
class CountFact:
    """One count that an answer below record level depends on.

    `units` says what each carrier adds to the count: allele dosages (1 or 2) for an allele
    count over `trials` = 2n alleles (`per_individual` = 2), or 1 each for a count of carriers
    over `trials` = n individuals (`per_individual` = 1). `disclose(count)` is what the answer
    would reveal about that count."""

    key: str
    individuals: Sequence[str]
    units: np.ndarray
    trials: int
    per_individual: int
    disclose: Callable[[int], Outcome]

    @property
    def total(self) -> int:
        return int(self.units.sum())


def evidence(outcome: Outcome, *, own: int, total: int, trials: int,
             per_individual: int) -> float:
    """Membership evidence (nats, never negative) that `outcome` gives about a carrier adding
    `own` to a count whose full value is `total` over `trials`."""
    return float(evidences([outcome], own=own, totals=np.array([total]), trials=trials,
                           per_individual=per_individual)[0])


def evidences(outcomes: Sequence[Outcome], *, own: int, totals: np.ndarray, trials: int,
              per_individual: int) -> np.ndarray:
    """:func:`evidence` for many counts at once (one outcome per total)."""
    low = np.array([o.low for o in outcomes], dtype=np.int64)
    high = np.array([-1 if o.high is None else o.high for o in outcomes], dtype=np.int64)
    bounded = np.array([o.high is not None for o in outcomes], dtype=bool)
    others = max(trials - per_individual, 1)
    seen = np.clip(np.asarray(totals, dtype=np.int64) - own, 0, others)
    # The attacker knows the population's frequency; the node only the other carriers' count.
    # A plug-in estimate undercharges exactly the answers that matter (a "yes" that one
    # member's alleles tipped over the floor comes with a count above the population's), and
    # so does the average over the frequency's posterior (benchmarks/privacy.py: a registered
    # attacker's power did not fall with the budget). The charge is the largest ratio over
    # the posterior's quantiles (Jeffreys prior): about what an attacker who knows the
    # frequency learns, if the frequency is any plausible one.
    frequency = np.stack([_posterior(int(x), others) for x in seen], axis=1) if len(seen) \
        else np.empty((len(_QUANTILES), 0))
    member = _probability(low - own, high - own, bounded, others, frequency)
    outsider = _probability(low, high, bounded, trials, frequency)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(member) - np.log(outsider)
    ratio = np.where(member <= 0, 0.0, np.where(outsider <= 0, _MAX_EVIDENCE, ratio))
    ratio = np.clip(np.nan_to_num(ratio, nan=0.0), -_MAX_EVIDENCE, _MAX_EVIDENCE)
    return np.asarray(np.clip(ratio.max(axis=0), 0.0, _MAX_EVIDENCE))


@functools.lru_cache(maxsize=65_536)
def _posterior(seen: int, others: int) -> np.ndarray:
    """The frequency at each of :data:`_QUANTILES` of its posterior given `seen` of `others`
    (the same few counts recur in every answer: computed once each)."""
    quantiles = beta.ppf(_QUANTILES, seen + 0.5, others - seen + 0.5)
    frozen = np.asarray(np.clip(quantiles, 1e-12, 1 - 1e-9), dtype=np.float64)
    frozen.setflags(write=False)
    return frozen


def evidence_at(outcome: Outcome, *, own: int, trials: int, per_individual: int,
                frequency: float) -> float:
    """The log-likelihood ratio of `outcome` for a carrier adding `own`, at a known population
    `frequency` (what an attacker holding a reference panel computes)."""
    bounds = (np.array([outcome.low]), np.array([-1 if outcome.high is None else outcome.high]),
              np.array([outcome.high is not None]))
    others = max(trials - per_individual, 1)
    member = _probability(bounds[0] - own, bounds[1] - own, bounds[2], others,
                          np.array([frequency]))
    outsider = _probability(*bounds, trials, np.array([frequency]))
    return float(np.log(member[0]) - np.log(outsider[0]))


def _probability(low: np.ndarray, high: np.ndarray, bounded: np.ndarray, trials: int,
                 frequency: np.ndarray) -> np.ndarray:
    """P(Bin(trials, frequency) in [low, high]) (high unbounded where not `bounded`)."""
    above = np.where(low > 0, binom.sf(low - 1, trials, frequency), 1.0)
    beyond = np.where(bounded & (high >= 0), binom.sf(high, trials, frequency), 0.0)
    return np.asarray(np.where(bounded & (high < 0), 0.0, above - beyond))


def free(disclose: Callable[[int], Outcome], totals: np.ndarray, trials: int,
         per_individual: int) -> np.ndarray:
    """Per total: whether the answer it gives is below :data:`FREE_EVIDENCE` for any carrier
    (an individual adds 1 to `per_individual` to the count) and would be the same without any
    one of them (so an exact count is never free)."""
    totals = np.asarray(totals, dtype=np.int64)
    outcomes = [disclose(int(t)) for t in totals]
    result = np.array([t > 0 and o == disclose(max(int(t) - per_individual, 0))
                       for t, o in zip(totals, outcomes, strict=True)], dtype=bool)
    if not result.any():
        return np.asarray(result | (totals == 0))
    for own in range(1, per_individual + 1):
        result &= evidences(outcomes, own=own, totals=totals, trials=trials,
                            per_individual=per_individual) < FREE_EVIDENCE
    return np.asarray(result | (totals == 0))


@dataclass(frozen=True)
class Released:
    """A fact's count as it may be shown, and what it cost."""

    count: int
    excluded: int = 0  # carriers left out: their budget could not pay, or was spent already
    spent: float = 0.0  # nats, summed over the carriers who paid
    repeated: bool = False  # a remembered answer, given again
    accounted: bool = True  # False: below FREE_EVIDENCE, given from the full data


class ExposureLedger:
    """Budgets of membership evidence per individual, kept in the governance database."""

    def __init__(self, db: GovernanceDB, budget: Callable[[], float]) -> None:
        """`budget()`: nats per individual as configured now (0: accounting off)."""
        self.db = db
        self._budget = budget

    @property
    def budget(self) -> float:
        return self._budget()

    def allowance(self, limit: float | None = None) -> float:
        """What an individual may have spent to take part in an answer under `limit` (the
        budget, or the share of it that `limit` allows)."""
        budget = self.budget
        return budget if limit is None else max(0.0, min(budget, limit))

    def exhausted(self, allowance: float) -> set[str]:
        """The individuals who have spent `allowance` (> 0) already. They take part in no
        answer under it, not even in answers no single carrier could change: otherwise whether
        such an answer is given from the full data would still depend on them."""
        with self.db.read() as session:
            rows = session.execute(select(ExposureSpent.individual)
                                   .where(ExposureSpent.spent >= allowance - 1e-12))
            return {person for (person,) in rows}

    def release(self, facts: Sequence[CountFact], limit: float | None = None, *,
                checked: bool = False) -> list[Released]:
        """The counts to show for `facts`, each over the carriers whose budget pays for it,
        spending their budgets in one transaction (so concurrent answers queue up). `limit`
        (at most the budget): the most an individual may have spent, this answer included, to
        take part in it (the share of the budget open answers may use). `checked`: the caller
        has already set aside free and remembered answers (before reading genotypes)."""
        accounting = self.budget > 0
        budget = self.allowance(limit)
        gone = [0] * len(facts)
        if accounting and not checked:
            given = facts
            facts = self._without_exhausted(facts, budget)
            gone = [len(a.individuals) - len(b.individuals)
                    for a, b in zip(given, facts, strict=True)]
        out: list[Released | None] = [None] * len(facts)
        pending: list[int] = []
        for i, fact in enumerate(facts):
            if not accounting or fact.total == 0 or (not checked and _free(fact)):
                out[i] = Released(fact.total, accounted=accounting and fact.total > 0)
            else:
                pending.append(i)
        if pending and not checked:  # remembered answers need no write lock
            known = self.remembered([facts[i].key for i in pending])
            for i in pending:
                if facts[i].key in known:
                    out[i] = Released(known[facts[i].key], repeated=True)
            pending = [i for i in pending if facts[i].key not in known]
        if pending:
            with self.db.write() as session:
                answers = self._settle(session, [facts[i] for i in pending], budget)
            for i, answer in zip(pending, answers, strict=True):
                out[i] = answer
        return [dataclasses.replace(o, excluded=o.excluded + g) if g else o
                for o, g in zip(out, gone, strict=True) if o is not None]

    def _without_exhausted(self, facts: Sequence[CountFact],
                           allowance: float) -> list[CountFact]:
        if allowance <= 0:  # no one is in an informative answer; free ones include everyone
            return list(facts)
        gone = self.exhausted(allowance)
        if not gone:
            return list(facts)
        out = []
        for fact in facts:
            keep = np.array([p not in gone for p in fact.individuals], dtype=bool)
            out.append(dataclasses.replace(
                fact, individuals=[p for p, k in zip(fact.individuals, keep, strict=True) if k],
                units=fact.units[keep]))
        return out

    def remembered(self, keys: Sequence[str]) -> dict[str, int]:
        """The counts given before for those of `keys` that were answered."""
        with self.db.read() as session:
            return _remembered(session, keys)

    def spent(self, individuals: Sequence[str]) -> dict[str, float]:
        """Evidence spent so far per individual (those never charged are absent)."""
        with self.db.read() as session:
            return _spent(session, individuals)

    def spend(self, charges: dict[str, float]) -> None:
        """Add `charges` (nats per individual) to the ledger: for releases decided elsewhere
        (federated analyses), which are not withheld but still count."""
        charges = {k: v for k, v in charges.items() if v > 0}
        if charges:
            with self.db.write() as session:
                _add(session, charges)

    def spend_once(self, key: str, charges: dict[str, float]) -> bool:
        """:meth:`spend`, unless a release under `key` was charged already (a retried round);
        True when this call charged."""
        with self.db.write() as session:
            if _remembered(session, [key]):
                return False
            _add(session, {k: v for k, v in charges.items() if v > 0})
            _remember(session, {key: len(charges)})
        return True

    def _settle(self, session: Session, facts: Sequence[CountFact],
                budget: float) -> list[Released]:
        known = _remembered(session, [f.key for f in facts])
        people = sorted({p for f in facts if f.key not in known for p in f.individuals})
        spent = _spent(session, people)
        charges: dict[str, float] = {}
        remembered: dict[str, int] = {}
        answers = []
        for fact in facts:
            if fact.key in known:
                answers.append(Released(known[fact.key], repeated=True))
                continue
            if fact.key in remembered:  # the same fact twice in one answer
                answers.append(Released(remembered[fact.key], repeated=True))
                continue
            remaining = np.array([budget - spent.get(p, 0.0) - charges.get(p, 0.0)
                                  for p in fact.individuals])
            count, paid = _contributors(fact, remaining)
            cost = 0.0
            for person, charge in zip(fact.individuals, paid, strict=True):
                if charge > 0:
                    charges[person] = charges.get(person, 0.0) + float(charge)
                    cost += float(charge)
            excluded = int(np.count_nonzero(np.isnan(paid)))
            remembered[fact.key] = count
            answers.append(Released(count, excluded=excluded, spent=cost))
        _add(session, charges)
        _remember(session, remembered)
        return answers


def _free(fact: CountFact) -> bool:
    return bool(free(fact.disclose, np.array([fact.total]), fact.trials,
                     fact.per_individual)[0])


def _contributors(fact: CountFact, remaining: np.ndarray) -> tuple[int, np.ndarray]:
    """The count over the carriers whose remaining budget pays its evidence, and per carrier
    the charge (NaN: left out). Leaving someone out can only lower the count and change what it
    discloses, so this repeats until everyone left can pay. (Leaving out one at a time, least
    budget first, kept more answers but let a registered attacker reach power 0.19 through
    the band edges of rounded counts: benchmarks/privacy.py.)"""
    active = remaining > 0
    units = fact.units
    while True:
        count = int(units[active].sum())
        outcome = fact.disclose(count)
        cost = {int(own): evidence(outcome, own=int(own), total=fact.total, trials=fact.trials,
                                   per_individual=fact.per_individual)
                for own in np.unique(units[active])}
        charges = np.array([cost.get(int(u), 0.0) for u in units])
        short = active & (charges > remaining + 1e-12)
        if not short.any():
            return count, np.where(active, charges, np.nan)
        active &= ~short


def _chunks(items: Sequence[str]) -> list[Sequence[str]]:
    return [items[i:i + _BATCH] for i in range(0, len(items), _BATCH)]


def _remembered(session: Session, keys: Sequence[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for chunk in _chunks(sorted(set(keys))):
        rows = session.execute(select(ReleasedAnswer.key, ReleasedAnswer.count)
                               .where(ReleasedAnswer.key.in_(chunk)))
        out.update({key: count for key, count in rows})
    return out


def _spent(session: Session, individuals: Sequence[str]) -> dict[str, float]:
    out: dict[str, float] = {}
    for chunk in _chunks(list(individuals)):
        rows = session.execute(select(ExposureSpent.individual, ExposureSpent.spent)
                               .where(ExposureSpent.individual.in_(chunk)))
        out.update({person: spent for person, spent in rows})
    return out


def _postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _add(session: Session, charges: dict[str, float]) -> None:
    if not charges:
        return
    rows = [{"individual": p, "spent": c} for p, c in sorted(charges.items())]
    if _postgresql(session):
        pg = pg_insert(ExposureSpent)
        session.execute(pg.on_conflict_do_update(
            index_elements=[ExposureSpent.individual],
            set_={"spent": ExposureSpent.spent + pg.excluded.spent}), rows)
    else:
        lite = sqlite_insert(ExposureSpent)
        session.execute(lite.on_conflict_do_update(
            index_elements=[ExposureSpent.individual],
            set_={"spent": ExposureSpent.spent + lite.excluded.spent}), rows)


def _remember(session: Session, answers: dict[str, int]) -> None:
    if not answers:
        return
    insert_new(session, ReleasedAnswer,
               [{"key": k, "count": c} for k, c in sorted(answers.items())],
               [ReleasedAnswer.key])
