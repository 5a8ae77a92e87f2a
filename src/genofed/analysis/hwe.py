"""The Hardy-Weinberg exact test (Wigginton, Cutler & Abecasis 2005), vectorised over variants,
giving the p-value `plink2 --hardy` v2.00a3.5 reports by default (column P, not MIDP).

plink2 (`HweP` in include/plink2_stats.cc) walks the distribution of heterozygote counts given
the allele counts outward from the observed count. Walking towards the centre, every count at
least as likely as the observed one is "centre" mass until the first less likely one; from
there on, and on the other side of the observed count, everything is "tail" mass (the
distribution is unimodal, so these are the counts no more likely than the observed one). The
p-value is tail / (tail + centre); a count exactly as likely as the observed one (a tie) is
tail. plink2 stops summing a tail once its terms no longer change the sum; here the sums run
over the heterozygote counts whose probability is within e^-50 of the observed one (an
interval, the distribution being log-concave), a few standard deviations wide however many
genotypes there are. The same sets are taken, from log-probabilities relative to the observed
count rather than plink2's scaled running products, so the two agree to ~1e-12 except:

* ties are recognised within 1e-9 on the log scale (plink2: within 2**-44, about 6e-14), the
  accuracy of these log-probabilities; a probability within 1e-9 of the observed one without
  being equal to it is counted as tail here and as centre by plink2;
* plink2 reports 0 once the centre mass overflows its scaled doubles (p below ~1e-280); here p
  is computed on the log scale and underflows to 0 only below ~1e-308.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

#: Log-probabilities within this of the observed one are ties (see the module docstring).
TIE_TOLERANCE = 1e-9
#: Heterozygote counts less likely than e^-MARGIN x the observed one are left out.
MARGIN = 50.0
#: Grid cells (variants x heterozygote counts) per batch.
_CELLS = 1 << 20
_MAX_ROWS = 1 << 14


def hwe_exact_p(het: np.ndarray, hom1: np.ndarray, hom2: np.ndarray) -> np.ndarray:
    """Exact HWE p-value per variant from its heterozygote and two homozygote counts (any
    integer arrays of one shape); 1.0 where no genotype is observed, as plink2 reports."""
    het = np.asarray(het, dtype=np.int64)
    shape = het.shape
    het = het.ravel()
    hom1 = np.asarray(hom1, dtype=np.int64).ravel()
    hom2 = np.asarray(hom2, dtype=np.int64).ravel()
    if np.any(het < 0) or np.any(hom1 < 0) or np.any(hom2 < 0):
        raise ValueError("genotype counts must not be negative")
    homr = np.minimum(hom1, hom2)
    n = het + hom1 + hom2
    rare = 2 * homr + het
    p = np.ones(het.shape, dtype=np.float64)
    some = np.flatnonzero(rare > 0)
    if not len(some):
        return p.reshape(shape)
    start, stop = _window(het[some], rare[some], n[some])
    # Batches of variants with windows of similar width, each batch one dense grid of at
    # most _CELLS cells (or one variant).
    width = stop - start + 1
    order = np.argsort(width, kind="stable")
    ordered = width[order]
    first = 0
    while first < len(order):
        cost = np.arange(1, min(len(order) - first, _MAX_ROWS) + 1) * \
            ordered[first:first + _MAX_ROWS]
        index = order[first:first + max(1, int(np.searchsorted(cost, _CELLS, "right")))]
        p[some[index]] = _batch(het[some[index]], rare[some[index]], n[some[index]],
                                start[index], stop[index])
        first += len(index)
    return p.reshape(shape)


def _window(het: np.ndarray, rare: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per variant, the grid positions j (heterozygote count low + 2j) whose probability is
    within e^-MARGIN of the observed one: an interval around the observed count and the mode.
    Found by vectorised binary searches on log-probabilities from log-factorials (precise
    enough to place a boundary)."""
    log_fact = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, int(n.max()) + 1)))])
    low = rare % 2
    top = (rare - low) // 2

    def log_p(j: np.ndarray) -> np.ndarray:
        h = low + 2 * j
        r_hom = (rare - h) // 2
        return np.asarray(h * np.log(2.0) - log_fact[h] - log_fact[r_hom]
                          - log_fact[n - h - r_hom])

    def rises(j: np.ndarray) -> np.ndarray:
        # P(h + 2) >= P(h), exactly: 4 homr(h) homc(h) >= (h + 2)(h + 1).
        h = low + 2 * j
        r_hom = (rare - h) // 2
        return np.asarray((j < top) & (4 * r_hom * (n - h - r_hom) >= (h + 2) * (h + 1)))

    observed = (het - low) // 2
    mode = _first(lambda j: ~rises(j), np.zeros_like(top), top, top)
    floor = log_p(observed) - MARGIN
    left = _first(lambda j: log_p(j) >= floor, np.zeros_like(top), np.minimum(observed, mode),
                  top)
    right = _first(lambda j: log_p(j) < floor, np.maximum(observed, mode), top + 1, top) - 1
    return left, right


def _first(test: Callable[[np.ndarray], np.ndarray], lo: np.ndarray, hi: np.ndarray,
           top: np.ndarray) -> np.ndarray:
    """Smallest j in [lo, hi] with test(j) true, for a test that is false then true on that
    range (hi where it never turns true before hi), per element; test is only asked about
    j <= top."""
    lo, hi = lo.copy(), hi.copy()
    while np.any(lo < hi):
        mid = (lo + hi) // 2
        ok = test(np.minimum(mid, top)) & (lo < hi)
        hi = np.where(ok, mid, hi)
        lo = np.where(~ok & (lo < hi), mid + 1, lo)
    return lo


def _batch(het: np.ndarray, rare: np.ndarray, n: np.ndarray, start: np.ndarray,
           stop: np.ndarray) -> np.ndarray:
    """p-values of variants with at least one minor allele copy, over their windows."""
    low = rare % 2
    width = int((stop - start).max()) + 1
    j = start[:, None] + np.arange(width, dtype=np.int64)[None, :]
    valid = j <= stop[:, None]
    hets = low[:, None] + 2 * j
    # log P(h + 2) - log P(h) = log(4 homr(h) homc(h)) - log((h + 2)(h + 1)), with homr(h) and
    # homc(h) the homozygote counts that go with h heterozygotes; every factor is an exact
    # integer in float64.
    r_hom = (rare[:, None] - hets) // 2
    c_hom = n[:, None] - hets - r_hom
    step_valid = valid & (j < stop[:, None])
    numerator = np.where(step_valid, 4.0 * r_hom * c_hom, 1.0)
    denominator = np.where(step_valid, (hets + 2.0) * (hets + 1.0), 1.0)
    steps = np.log(numerator) - np.log(denominator)
    log_p = np.concatenate([np.zeros((len(het), 1)), np.cumsum(steps[:, :-1], axis=1)], axis=1)
    observed = (het - low) // 2 - start            # the observed count's column
    rows = np.arange(len(het))
    relative = np.where(valid, log_p - log_p[rows, observed][:, None], -np.inf)
    below = valid & (relative < TIE_TOLERANCE)     # no more likely than the observed count
    column = np.arange(width)[None, :]
    # Tail 1 is the side away from the expected heterozygote count: plink2's test
    # obs_hets * 2n > rare * (2n - rare), in exact integers.
    upper = het * 2 * n > rare * (2 * n - rare)
    # Upper: walk down from the observed count; centre is strictly between the first count
    # below it that is no more likely and the observed count. Lower: walk up.
    before = below & (column < observed[:, None])
    first_down = np.where(before.any(axis=1), width - 1 - np.argmax(before[:, ::-1], axis=1), -1)
    after = below & (column > observed[:, None])
    first_up = np.where(after.any(axis=1), np.argmax(after, axis=1), width)
    centre_up = (column > first_down[:, None]) & (column < observed[:, None])
    centre_down = (column > observed[:, None]) & (column < first_up[:, None])
    centre = np.where(upper[:, None], centre_up, centre_down) & valid
    log_tail = _logsumexp(np.where(valid & ~centre, relative, -np.inf))
    return np.asarray(np.minimum(np.exp(log_tail - _logsumexp(relative)), 1.0))


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(top + np.log(np.exp(values - top[:, None]).sum(axis=1)))
