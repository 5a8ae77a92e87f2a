"""The Hardy-Weinberg exact test (Wigginton, Cutler & Abecasis 2005), vectorised over variants,
giving the p-value `plink2 --hardy` v2.00a3.5 reports by default (column P, not MIDP).

plink2 (`HweP` in include/plink2_stats.cc) walks the distribution of heterozygote counts given
the allele counts outward from the observed count. Walking towards the centre, every count at
least as likely as the observed one is "centre" mass until the first less likely one; from
there on, and on the other side of the observed count, everything is "tail" mass (the
distribution is unimodal, so these are the counts no more likely than the observed one). The
p-value is tail / (tail + centre); a count exactly as likely as the observed one (a tie) is
tail. The same sets are taken here, from log-probabilities relative to the observed count
rather than from plink2's scaled running products, so the two agree to ~1e-12 relative except:

* ties are recognised within 1e-9 on the log scale (plink2: within 2**-44, about 6e-14), the
  accuracy of these log-probabilities; a probability within 1e-9 of the observed one without
  being equal to it is counted as tail here and as centre by plink2;
* plink2 reports 0 once the centre mass overflows its scaled doubles (p below ~1e-280); here p
  is computed on the log scale and underflows to 0 only below ~1e-308.
"""

from __future__ import annotations

import numpy as np

#: Log-probabilities within this of the observed one are ties (see the module docstring).
TIE_TOLERANCE = 1e-9
#: Variants per batch: a batch holds (batch, largest minor allele count / 2 + 1) doubles.
_BATCH = 256


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
    homc = np.maximum(hom1, hom2)
    p = np.ones(het.shape, dtype=np.float64)
    rare = 2 * homr + het
    # Sorted by minor allele count, each batch's grid is about as wide as its variants need.
    order = np.argsort(rare, kind="stable")
    order = order[rare[order] > 0]
    for start in range(0, len(order), _BATCH):
        index = order[start:start + _BATCH]
        p[index] = _batch(het[index], homr[index], homc[index])
    return p.reshape(shape)


def _batch(het: np.ndarray, homr: np.ndarray, homc: np.ndarray) -> np.ndarray:
    """p-values of variants with at least one minor allele copy."""
    n = het + homr + homc                      # genotypes
    rare = 2 * homr + het                      # minor allele copies (<= n)
    low = rare % 2                             # smallest possible heterozygote count
    width = int(rare.max() // 2) + 1
    j = np.arange(width, dtype=np.int64)[None, :]
    hets = low[:, None] + 2 * j                # the grid of heterozygote counts
    valid = hets <= rare[:, None]
    # log P(h + 2) - log P(h) = log(4 homr(h) homc(h)) - log((h + 2)(h + 1)), with homr(h) and
    # homc(h) the homozygote counts that go with h heterozygotes (both >= 1 wherever h + 2 is
    # on the grid); every factor is an exact integer in float64.
    r_hom = (rare[:, None] - hets) // 2
    c_hom = n[:, None] - hets - r_hom
    step_valid = valid & (hets + 2 <= rare[:, None])
    numerator = np.where(step_valid, 4.0 * r_hom * c_hom, 1.0)
    denominator = np.where(step_valid, (hets + 2.0) * (hets + 1.0), 1.0)
    steps = np.log(numerator) - np.log(denominator)
    log_p = np.concatenate([np.zeros((len(het), 1)), np.cumsum(steps[:, :-1], axis=1)], axis=1)
    observed = (het - low) // 2
    rows = np.arange(len(het))
    relative = log_p - log_p[rows, observed][:, None]   # log P(h) / P(observed)
    relative = np.where(valid, relative, -np.inf)
    below = valid & (relative < TIE_TOLERANCE)          # no more likely than observed
    # Tail 1 is the side away from the expected heterozygote count: plink2's test
    # obs_hets * 2n > rare * (2n - rare), in exact integers.
    upper = het * 2 * n > rare * (2 * n - rare)
    centre = np.zeros_like(valid)
    # Upper: walk down from the observed count; centre is strictly between the first count
    # below it that is no more likely and the observed count.
    before = below & (j < observed[:, None])
    first_down = np.where(before.any(axis=1), width - 1 - np.argmax(before[:, ::-1], axis=1), -1)
    centre_up = (j > first_down[:, None]) & (j < observed[:, None])
    # Lower: walk up from the observed count.
    after = below & (j > observed[:, None])
    first_up = np.where(after.any(axis=1), np.argmax(after, axis=1), width)
    centre_down = (j > observed[:, None]) & (j < first_up[:, None])
    centre = np.where(upper[:, None], centre_up, centre_down) & valid
    tail = valid & ~centre
    log_tail = _logsumexp(np.where(tail, relative, -np.inf))
    log_all = _logsumexp(relative)
    return np.asarray(np.minimum(np.exp(log_tail - log_all), 1.0))


def _logsumexp(values: np.ndarray) -> np.ndarray:
    top = values.max(axis=1)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        return np.asarray(top + np.log(np.exp(values - top[:, None]).sum(axis=1)))
