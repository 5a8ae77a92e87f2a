"""The statistics of benchmarks/privacy.py: how its membership-inference attackers model a Beacon's
answers under a count floor, their likelihood-ratio statistics, the order in which they ask about
a target's alleles, and power at a fixed false-positive rate.

Every model assumes what Shringarpure & Bustamante (2015) assume: alleles independent, the
members' genotypes drawn in Hardy-Weinberg proportions from the reference allele frequency `f`.
A statistic is a sum over the asked alleles of log P(answer | member) - log P(answer | not).
Simulated genomes are in linkage disequilibrium, so the answers are not independent: adding
weakly informative alleles can lower the power of such a sum (with independent genotypes it
only rises).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import rel_entr
from scipy.stats import binom, mannwhitneyu

#: The k (alleles asked per target) at which power is reported.
K_LEVELS = (5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000)
#: The code of an imprecise count: "between 1 and floor - 1", sent as `countAdjustedTo`.
IMPRECISE = -1
#: No one answer moves a statistic by more than this many nats, so an answer the model calls
#: impossible (say the node left a member out of a count) weighs a lot, not infinitely much.
MAX_LLR = math.log(1e6)


def reference_frequencies(dosage: np.ndarray) -> np.ndarray:
    """Alt allele frequency of each allele in the attacker's reference panel ((alleles, people)
    dosages), with a pseudo-count of one allele either way so no frequency is 0 or 1."""
    return np.asarray((dosage.sum(axis=1, dtype=np.int64) + 1) / (2 * dosage.shape[1] + 2))


def _llr(member: np.ndarray, other: np.ndarray) -> np.ndarray:
    """log(member) - log(other), bounded by MAX_LLR; 0 where both call the answer impossible."""
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.log(member) - np.log(other)
    both_zero = (member == 0) & (other == 0)
    return np.where(both_zero, 0.0, np.clip(np.nan_to_num(ratio), -MAX_LLR, MAX_LLR))


@dataclass(frozen=True)
class BooleanModel:
    """A public Beacon's yes/no for one allele: yes iff the allele count among the `n` members'
    2n alleles reaches the floor (rarer alleles take part in no match)."""

    n: int
    floor: int

    def p_yes(self, f: np.ndarray, dosage: np.ndarray | None) -> np.ndarray:
        """P(yes) for a non-member (`dosage` None) or a member carrying `dosage` copies."""
        if dosage is None:
            return np.asarray(binom.sf(self.floor - 1, 2 * self.n, f))
        return np.asarray(binom.sf(self.floor - 1 - dosage, 2 * self.n - 2, f))

    def llr(self, f: np.ndarray, dosage: np.ndarray, yes: np.ndarray) -> np.ndarray:
        member, other = self.p_yes(f, dosage), self.p_yes(f, None)
        return np.asarray(np.where(yes, _llr(member, other), _llr(1 - member, 1 - other)))

    def expected_llr(self, f: np.ndarray, dosage: np.ndarray) -> np.ndarray:
        """KL(member || non-member) of one answer: what asking the allele is worth on average."""
        member, other = self.p_yes(f, dosage), self.p_yes(f, None)
        return np.asarray(_kl(member, other) + _kl(1 - member, 1 - other))


@dataclass(frozen=True)
class CountModel:
    """A registered caller's individuals counts for one allele: F with the target's sex filter
    (carriers c_s among the `n_sex` members of that sex) and U without (c_s + c_o, `n_other`
    members of the other sex). A count 1..floor-1 comes back imprecise. With `rare_hidden` (as
    genofed did before registered callers saw rare alleles) the node drops the allele, both
    counts 0, unless its allele count over all members reaches the floor, which makes the small
    counts depend on each other through that gate.

    Carrier counts are binomial with q = 1 - (1 - f)^2; a carrier is homozygous with probability
    r = f^2 / q. A member adds 1 to c_s and their own dosage to the allele count."""

    floor: int
    n_sex: int
    n_other: int
    rare_hidden: bool = True

    def _parts(self, f: np.ndarray, dosage: np.ndarray, member: bool
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """q, P(c_s = a) and P(c_o = b) for a, b below the floor, and gate[c] = P(the allele count
        reaches the floor | c = c_s + c_o carriers) for c = 0 .. 2 floor - 2."""
        q = 1 - (1 - f) ** 2
        r = (f * f / q)[:, None]
        small = np.arange(self.floor)
        if member:
            p_sex = binom.pmf(small - 1, self.n_sex - 1, q[:, None])
        else:
            p_sex = binom.pmf(small, self.n_sex, q[:, None])
        p_other = binom.pmf(small, self.n_other, q[:, None])
        carriers = np.arange(2 * self.floor - 1)
        short = self.floor - carriers  # allele copies still missing with one copy per carrier
        if member:  # the member's own second copy is known; the other carriers' are not
            gate = binom.sf(short - dosage[:, None], np.maximum(carriers - 1, 0), r)
        else:
            gate = binom.sf(short - 1, carriers, r)
        if not self.rare_hidden:
            gate[:] = 1.0  # any carrier shows
        gate[:, 0] = 0.0  # no carrier, no allele
        return q, p_sex, p_other, gate

    def likelihood(self, f: np.ndarray, dosage: np.ndarray, filtered: np.ndarray,
                   unfiltered: np.ndarray, member: bool) -> np.ndarray:
        """P(F = filtered, U = unfiltered); counts coded as their value, 0, or IMPRECISE."""
        q, p_sex, p_other, gate = self._parts(f, dosage, member)
        floor, shift = self.floor, int(member)
        a = np.arange(floor)[:, None]
        b = np.arange(floor)[None, :]
        joint = p_sex[:, :, None] * p_other[:, None, :]  # (alleles, c_s, c_o), both < floor
        gate_ab = gate[:, a + b]
        below = (a + b < floor)[None]
        u = np.maximum(unfiltered, 0)[:, None]
        out = np.zeros(len(f))
        # F exact: c_s is known, and so is c_o = U - F (the c_o factor cancels in the ratio).
        case = filtered >= floor
        out = np.where(case, binom.pmf(filtered - shift, self.n_sex - shift, q)
                       * binom.pmf(unfiltered - filtered, self.n_other, q), out)
        # F imprecise, U exact: c_s in 1..floor-1 and c_o = U - c_s; the allele passed the gate.
        case = (filtered == IMPRECISE) & (unfiltered >= floor)
        terms = p_sex[:, 1:] * binom.pmf(u - np.arange(1, floor), self.n_other, q[:, None])
        out = np.where(case, terms.sum(axis=1), out)
        # F imprecise, U imprecise: both small and the allele passed the gate.
        case = (filtered == IMPRECISE) & (unfiltered == IMPRECISE)
        passed = (joint * gate_ab * (below & (a >= 1))).sum(axis=(1, 2))
        out = np.where(case, passed, out)
        # F = 0 with U > 0: no carrier of that sex.
        case = (filtered == 0) & (unfiltered >= floor)
        out = np.where(case, p_sex[:, 0] * binom.pmf(u[:, 0], self.n_other, q), out)
        case = (filtered == 0) & (unfiltered == IMPRECISE)
        out = np.where(case, p_sex[:, 0] * (p_other[:, 1:] * gate[:, 1:floor]).sum(axis=1), out)
        # Both 0: the allele failed the gate (which no carrier at all always does).
        case = (filtered == 0) & (unfiltered == 0)
        failed = (joint * (1 - gate_ab) * below).sum(axis=(1, 2))
        return np.asarray(np.where(case, failed, out))  # any other pair is impossible: 0

    def llr(self, f: np.ndarray, dosage: np.ndarray, filtered: np.ndarray,
            unfiltered: np.ndarray) -> np.ndarray:
        return _llr(self.likelihood(f, dosage, filtered, unfiltered, True),
                    self.likelihood(f, dosage, filtered, unfiltered, False))

    def expected_llr(self, f: np.ndarray, dosage: np.ndarray) -> np.ndarray:
        """KL(member || non-member) of the filtered count alone (0, imprecise or its exact value):
        the order in which the attacker asks; the statistic itself uses both counts."""
        q = 1 - (1 - f) ** 2
        values = np.arange(self.floor, self.n_sex + 1)
        exact_m = binom.pmf(values - 1, self.n_sex - 1, q[:, None])
        exact_n = binom.pmf(values, self.n_sex, q[:, None])
        small_m, zero_m = self._small_outcomes(f, dosage, True)
        small_n, zero_n = self._small_outcomes(f, dosage, False)
        return np.asarray(_kl(exact_m, exact_n).sum(axis=1) + _kl(small_m, small_n)
                          + _kl(zero_m, zero_n))

    def _small_outcomes(self, f: np.ndarray, dosage: np.ndarray, member: bool
                        ) -> tuple[np.ndarray, np.ndarray]:
        """P(F imprecise) and P(F = 0), each summed directly (1 - the rest would lose them to
        rounding): c_s = 1..floor-1 shows iff the allele passes the gate, which c_o helps."""
        q, p_sex, p_other, gate = self._parts(f, dosage, member)
        passed = np.zeros_like(p_sex)
        for a in range(1, self.floor):
            enough = binom.sf(self.floor - a - 1, self.n_other, q)  # c_o >= floor - a: gate open
            passed[:, a] = (p_other[:, :self.floor - a] * gate[:, a:self.floor]).sum(axis=1) \
                + enough
        passed = np.minimum(passed, 1.0)  # a sum of probabilities may round above 1
        shown = (p_sex[:, 1:] * passed[:, 1:]).sum(axis=1)
        return shown, p_sex[:, 0] + (p_sex[:, 1:] * (1 - passed[:, 1:])).sum(axis=1)


@dataclass(frozen=True)
class ExactCountModel:
    """A dataset that publishes its allele frequencies: the allele count among the `n` members'
    2n alleles, exactly (Homer et al. 2008 and Sankararaman et al. 2009 use the frequencies
    alike). A member adds their own dosage."""

    n: int

    def llr(self, f: np.ndarray, dosage: np.ndarray, count: np.ndarray) -> np.ndarray:
        member = binom.pmf(count - dosage, 2 * self.n - 2, f)
        other = binom.pmf(count, 2 * self.n, f)
        return _llr(np.asarray(member), np.asarray(other))


def _kl(member: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Terms member * log(member / other); an `other` lost to underflow counts as 1e-300."""
    return np.asarray(rel_entr(member, np.maximum(other, 1e-300)))


@dataclass
class Target:
    """One person the attacker tests: their carried alleles, most informative first."""

    sample: str
    member: bool
    sex: str
    alleles: np.ndarray
    dosage: np.ndarray


def by_dosage(one: np.ndarray, two: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The `worth` of `ordered_target` from per-allele values for one and for two copies."""
    def worth(alleles: np.ndarray, dosage: np.ndarray) -> np.ndarray:
        return np.asarray(np.where(dosage == 2, two[alleles], one[alleles]))
    return worth


def ordered_target(sample: str, member: bool, sex: str, dosage: np.ndarray,
                   worth: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> Target:
    """The target carrying `dosage` (per allele), alleles sorted by `worth(alleles, dosages)`
    (expected LLR for a member), highest first; ties in allele order."""
    carried = np.flatnonzero(dosage > 0)
    copies = dosage[carried].astype(np.int64)
    order = np.lexsort((carried, -worth(carried, copies)))
    return Target(sample, member, sex, carried[order], copies[order])


@dataclass(frozen=True)
class PowerPoint:
    k: int
    power: float
    low: float
    high: float
    #: Distinct queries the attacker had sent by then.
    queries: int
    #: Over all thresholds: P(a member's statistic > a non-member's), and the one-sided
    #: Mann-Whitney p-value of "members score higher" (chance: AUC 0.5, p uniform).
    auc: float = 0.5
    p_value: float = 1.0


def levels_for(targets: Sequence[Target], max_k: int | None = None) -> list[int]:
    """The K_LEVELS up to the first that covers every allele of every target, or to `max_k`."""
    most = max(len(t.alleles) for t in targets)
    top = next((k for k in K_LEVELS if k >= most), most)
    if max_k is not None:
        top = min(top, max_k)
    return [*(k for k in K_LEVELS if k < top), top]


def run_levels(targets: Sequence[Target], levels: Sequence[int],
               ask: Callable[[list[tuple[int, Target]]], int],
               score: Callable[[Target, slice], float],
               report: Callable[[PowerPoint], None]) -> list[PowerPoint]:
    """Ask everyone's alleles up to each level in turn (rank by rank, so no target's alleles all
    go first), then add each target's LLRs for the new ones. `ask` gets (allele, target) pairs
    and returns the queries sent so far; `score` the LLR sum over a slice of a target's alleles."""
    statistic = np.zeros(len(targets))
    member = np.array([t.member for t in targets])
    points: list[PowerPoint] = []
    done = 0
    for k in levels:
        batch = [(int(t.alleles[rank]), t) for rank in range(done, k) for t in targets
                 if rank < len(t.alleles)]
        sent = ask(batch)
        for i, target in enumerate(targets):
            statistic[i] += score(target, slice(done, k))
        done = k
        power = power_at_fpr(statistic[~member], statistic[member])
        low, high = wilson(power, int(member.sum()))
        test = mannwhitneyu(statistic[member], statistic[~member], alternative="greater")
        auc = float(test.statistic) / (int(member.sum()) * int((~member).sum()))
        points.append(PowerPoint(k, power, low, high, sent, auc, float(test.pvalue)))
        report(points[-1])
    return points


def power_at_fpr(null: np.ndarray, alternative: np.ndarray, alpha: float = 0.05) -> float:
    """Power of the randomised test at false-positive rate `alpha`: reject above the threshold t
    taken from the null (non-member) statistics, and with probability gamma at exactly t, so
    that exactly `alpha` of the null is rejected even when statistics tie (the expected power
    of that coin-tossing test; no coin is tossed)."""
    null, alternative = np.round(null, 9), np.round(alternative, 9)
    for t in np.unique(null):  # ascending: the smallest t with P0(S > t) <= alpha
        above = float(np.mean(null > t))
        if above <= alpha:
            gamma = (alpha - above) / float(np.mean(null == t))
            return float(np.mean(alternative > t) + gamma * np.mean(alternative == t))
    raise AssertionError("unreachable: nothing exceeds the largest null statistic")


def wilson(p: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score 95 % interval of a proportion `p` observed in `n` trials."""
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
