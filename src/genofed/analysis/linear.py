"""Quantitative-trait GWAS: y ~ ALT dosage + covariates per variant, equal to `plink2 --glm`
(v2.00a3.5, linear regression, `hide-covar`) on the pooled individuals of every node.

plink2 drops, per variant, the individuals whose genotype is missing, so each variant has its
own regression sample. Everything a variant's regression needs is a sum over that sample, so a
node sends (:func:`linear_statistics`, for n individuals, V variants, k design columns with
the intercept first, z = [design, y] of length k + 1):

=============== ================= =========================================================
key             shape, dtype      sum over the individuals with a non-missing genotype
=============== ================= =========================================================
``count``       (V,) int64        1 (the regression sample size, plink2 OBS_CT)
``gram``        (V, k+1, k+1) f8  z z^T  ([0, 0] is the count again, as a float)
``g_cross``     (V, k+1) f8       g z  ([0]: sum of g; [1:k]: g x covariates; [k]: g y)
``g_sq``        (V,) f8           g^2
``design_gram`` (k+1, k+1) f8     z z^T over *all* individuals (the covariate-only checks)
=============== ================= =========================================================

:func:`solve_linear` turns the summed dict into beta, SE, t and p for the ALT allele. plink2
reports the non-major allele (A1) by default; when that is REF its beta and t are these
negated, and its A1_FREQ is 1 - alt_freq. Checks, as plink2_glm_linear.cc `GlmLinearThread`
and plink2_glm_shared.cc run them, each giving plink2's ERRCODE and NA:

* SAMPLE_CT<=PREDICTOR_CT: the variant's sample size is at most the predictor count;
* CONST_OMITTED_ALLELE: the genotype is constant over the variant's sample;
* CORR_TOO_HIGH: two non-intercept predictors correlate beyond 0.999 (`--max-corr` default),
  VIF_INFINITE: their correlation matrix is not positive definite or its reciprocal condition
  number is below 1e-14 (`InvertSymmdefMatrixChecked`; estimated here from eigenvalues, where
  LAPACK estimates the 1-norm condition number), VIF_TOO_HIGH: a variance inflation factor
  (diagonal of the inverse correlation matrix) above 50 (`--vif` default)
  (`CheckMaxCorrAndVif`);
* (RANK_DEFICIENT, X^T X not invertible, cannot follow a passed VIF check: not produced);
* INVALID_RESULT: a coefficient variance below 1e-20, or a covariance of two coefficients
  above 0.99999 x the product of their SEs (plink2's `validParameters()` port).

Before any variant, plink2 excludes covariates constant over the regression individuals, and
skips the phenotype if it is constant, if the covariates' scales differ by more than ~6 orders
of magnitude (UNSTABLE_SCALE, `GlmFillAndTestCovars`) or if the covariates alone fail the
correlation/VIF checks; :attr:`LinearResult.phenotype_error` says which (every variant is NA,
with that check's code).

p is two-sided from Student's t with n minus the predictor count (intercept and genotype
included) degrees of freedom (`TstatToLnP`), computed here from the regularised incomplete
beta function (:func:`t_two_sided_p`). The regression itself is solved on centred sums
(plink2 inverts the raw X^T X), which agrees to ~1e-10 relative.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import IntEnum

import dask.array as da
import numpy as np

from genofed.analysis import data
from genofed.analysis.scheduling import compute

MAX_CORR = 0.999
VIF_THRESHOLD = 50.0
SINGULAR_RCOND = 1e-14


class GlmError(IntEnum):
    """plink2's GlmErrcode values (plink2_glm_shared.h); :attr:`label` is its ERRCODE text."""

    NONE = 0
    SAMPLE_CT_LTE_PREDICTOR_CT = 1
    CONST_OMITTED_ALLELE = 2
    CONST_ALLELE = 3
    CORR_TOO_HIGH = 4
    VIF_INFINITE = 5
    VIF_TOO_HIGH = 6
    SEPARATION = 7
    RANK_DEFICIENT = 8
    LOGISTIC_CONVERGE_FAIL = 9
    FIRTH_CONVERGE_FAIL = 10
    INVALID_RESULT = 11
    UNSTABLE_SCALE = 12

    @property
    def label(self) -> str:
        if self is GlmError.NONE:
            return "."
        if self is GlmError.SAMPLE_CT_LTE_PREDICTOR_CT:
            return "SAMPLE_CT<=PREDICTOR_CT"
        return self.name


def linear_statistics(dosages: data.Dosages, design: np.ndarray,
                      y: np.ndarray) -> dict[str, np.ndarray]:
    """A node's (or one dataset's) sums for the job's variants (keys and shapes: module
    docstring). `design` is (n, k), column 0 the intercept (all 1), no missing values; `y` the
    trait (n,), no missing values: the caller drops individuals missing either, as plink2 does.

    Two matrix products streamed over the Dask chunks give everything: the observed-genotype
    mask (V, n) @ the per-individual products z z^T (n, (k+1)(k+2)/2: one triangle), and the
    dosages with missing as 0 (V, n) @ z (n, k+1); the whole dosage matrix is never held.
    """
    dosage = dosages.dosage
    variants, n = dosage.shape
    design = np.asarray(design, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if design.ndim != 2 or design.shape[0] != n or design.shape[1] < 1:
        raise ValueError(f"design must be (n={n}, k >= 1); got {design.shape}")
    if y.shape != (n,):
        raise ValueError(f"y must be ({n},); got {y.shape}")
    if not (np.isfinite(design).all() and np.isfinite(y).all()):
        raise ValueError("design and y must have no missing values (drop those individuals)")
    if n and not np.all(design[:, 0] == 1.0):
        raise ValueError("design column 0 must be the intercept (all 1)")
    width = design.shape[1] + 1
    z = np.column_stack([design, y])
    upper = np.triu_indices(width)
    products = z[:, upper[0]] * z[:, upper[1]]
    out: dict[str, np.ndarray] = {"design_gram": z.T @ z}
    if variants == 0 or n == 0:
        out.update(count=np.zeros(variants, np.int64),
                   gram=np.zeros((variants, width, width)),
                   g_cross=np.zeros((variants, width)), g_sq=np.zeros(variants))
        return out
    rows = dosage.chunks[1]
    observed = ~da.isnan(dosage)
    g = da.where(observed, dosage, 0.0)
    gram, g_cross, g_sq = compute(
        observed.astype(np.float64) @ da.from_array(products, chunks=(rows, len(upper[0]))),
        g @ da.from_array(z, chunks=(rows, width)),
        (g * g).sum(axis=1))
    full = np.empty((variants, width, width))
    full[:, upper[0], upper[1]] = gram
    full[:, upper[1], upper[0]] = gram
    out.update(count=np.rint(full[:, 0, 0]).astype(np.int64), gram=full, g_cross=g_cross,
               g_sq=g_sq)
    return out


@dataclass(frozen=True)
class LinearResult:
    """Per variant, for the ALT allele (NaN where `error` is not NONE)."""

    beta: np.ndarray
    se: np.ndarray
    t: np.ndarray
    p: np.ndarray
    obs_count: np.ndarray  # int64: plink2 OBS_CT
    alt_freq: np.ndarray   # ALT frequency in the variant's regression sample
    error: np.ndarray      # int8 GlmError codes
    #: Design columns left out as constant over the regression individuals (plink2: "Excluding
    #: constant covariate").
    excluded_covariates: tuple[int, ...] = ()
    #: Why plink2 would skip the whole phenotype (None: it would not).
    phenotype_error: str | None = None

    def error_labels(self) -> list[str]:
        """plink2's ERRCODE column."""
        return [GlmError(int(code)).label for code in self.error]


def solve_linear(summed: dict[str, np.ndarray], k: int) -> LinearResult:
    """Per-variant regressions from the summed statistics of every node; `k` is the design
    width (intercept included). Vectorised over variants: the (k x k) systems of all variants
    are formed, checked and inverted as one batch."""
    count = np.asarray(summed["count"], dtype=np.int64)
    gram = np.asarray(summed["gram"], dtype=np.float64)
    g_cross = np.asarray(summed["g_cross"], dtype=np.float64)
    g_sq = np.asarray(summed["g_sq"], dtype=np.float64)
    design_gram = np.asarray(summed["design_gram"], dtype=np.float64)
    variants = len(count)
    if gram.shape != (variants, k + 1, k + 1) or g_cross.shape != (variants, k + 1) \
            or g_sq.shape != (variants,) or design_gram.shape != (k + 1, k + 1):
        raise ValueError(f"summed statistics do not fit k={k} and {variants} variants")
    n = count.astype(np.float64)
    g_sum = g_cross[:, 0]
    with np.errstate(invalid="ignore", divide="ignore"):
        alt_freq = g_sum / (2.0 * n)
    kept, skip = _covariate_checks(design_gram, k)
    cov = np.array(kept, dtype=np.int64)
    q = 1 + len(cov)                      # non-intercept predictors: g, kept covariates
    predictors = q + 1
    # Sums over each variant's sample: x = [g, covariates], the intercept apart.
    sx = np.column_stack([g_sum, gram[:, 0, cov]])
    sxx = np.empty((variants, q, q))
    sxx[:, 0, 0] = g_sq
    sxx[:, 0, 1:] = sxx[:, 1:, 0] = g_cross[:, cov]
    sxx[:, 1:, 1:] = gram[:, cov[:, None], cov[None, :]]
    sxy = np.column_stack([g_cross[:, k], gram[:, cov, k]])
    sy, syy = gram[:, 0, k], gram[:, k, k]

    error = np.zeros(variants, dtype=np.int8)
    result = {name: np.full(variants, np.nan) for name in ("beta", "se", "t", "p")}

    def flag(mask: np.ndarray, code: GlmError) -> None:
        error[(error == 0) & mask] = code

    if skip is not None:
        flag(np.ones(variants, dtype=bool), skip[0])
    flag(count <= predictors, GlmError.SAMPLE_CT_LTE_PREDICTOR_CT)
    # Constant genotype: n sum(g^2) == sum(g)^2 (exact for hardcalls; a non-constant one is
    # at least n - 1 away).
    spread = n * g_sq - g_sum * g_sum
    flag(spread <= 1e-9 * n * g_sq, GlmError.CONST_OMITTED_ALLELE)
    live = np.flatnonzero(error == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        nl = n[live]
        mean_x = sx[live] / nl[:, None]
        cxx = sxx[live] - sx[live][:, :, None] * mean_x[:, None, :]
        cxy = sxy[live] - sx[live] * (sy[live] / nl)[:, None]
        cyy = syy[live] - sy[live] * sy[live] / nl
        scale = 1.0 / np.sqrt(np.einsum("vii->vi", cxx))
        corr = cxx * scale[:, :, None] * scale[:, None, :]
    corr[:, np.arange(q), np.arange(q)] = 1.0      # as plink2 sets it
    codes = _corr_vif_codes(corr)
    error[live] = codes
    ok = codes == 0
    live = live[ok]
    beta, se, df, invalid = _fit(corr[ok], scale[ok], mean_x[ok], cxy[ok], cyy[ok], nl[ok],
                                 predictors)
    error[live[invalid]] = GlmError.INVALID_RESULT
    good = ~invalid
    live = live[good]
    t = beta[good] / se[good]
    result["beta"][live] = beta[good]
    result["se"][live] = se[good]
    result["t"][live] = t
    result["p"][live] = t_two_sided_p(t, df[good])
    return LinearResult(result["beta"], result["se"], result["t"], result["p"], count,
                        alt_freq, error, tuple(int(c) for c in range(1, k) if c not in kept),
                        None if skip is None else skip[1])


def _fit(corr: np.ndarray, scale: np.ndarray, mean_x: np.ndarray, cxy: np.ndarray,
         cyy: np.ndarray, n: np.ndarray,
         predictors: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Least squares from the centred sums of variants that passed the correlation checks:
    the genotype's beta and SE, the degrees of freedom, and plink2's `validParameters()`
    verdict over the whole coefficient covariance matrix (the intercept's row included)."""
    a = _inverse(corr) * scale[:, :, None] * scale[:, None, :]    # (centred X^T X)^-1
    beta = np.einsum("vij,vj->vi", a, cxy)
    df = n - predictors
    sigma2 = (cyy - np.einsum("vi,vi->v", beta, cxy)) / df
    covariance = a * sigma2[:, None, None]
    diag = np.einsum("vii->vi", covariance)
    cov_intercept = -np.einsum("vij,vj->vi", covariance, mean_x)
    var_intercept = sigma2 / n - np.einsum("vi,vi->v", mean_x, cov_intercept)
    q = corr.shape[1]
    with np.errstate(invalid="ignore"):
        root = np.sqrt(np.maximum(diag, 0.0))
        pairs = covariance > 0.99999 * root[:, :, None] * root[:, None, :]
        pairs[:, np.arange(q), np.arange(q)] = False
        with_intercept = cov_intercept > \
            0.99999 * root * np.sqrt(np.maximum(var_intercept, 0.0))[:, None]
        invalid = (diag < 1e-20).any(axis=1) | pairs.any(axis=(1, 2)) | \
            with_intercept.any(axis=1)
    invalid |= ~np.isfinite(beta).all(axis=1) | ~np.isfinite(diag).all(axis=1)
    return beta[:, 0], root[:, 0], df, invalid


def _covariate_checks(design_gram: np.ndarray,
                      k: int) -> tuple[list[int], tuple[GlmError, str] | None]:
    """The covariates plink2 keeps (non-constant over the regression individuals), and why it
    would skip the phenotype (constant phenotype; `GlmFillAndTestCovars`: unstable scales,
    covariates too correlated), from the Gram matrix of [design, y] over all of them."""
    n = design_gram[0, 0]
    sums = design_gram[0]
    squares = np.diag(design_gram)
    centred = squares - sums * sums / n if n > 0 else np.zeros_like(squares)
    constant = centred <= 1e-12 * np.maximum(squares, 1e-300)
    kept = [c for c in range(1, k) if not constant[c]]
    if n > 0 and constant[k]:
        return kept, (GlmError.VIF_INFINITE, "the phenotype is constant")
    if not kept or n < 2:
        return kept, None
    # Column scales: sum of squares and (n-1)-scaled variance must lie within 2^20 (plink2
    # starts the range at values of genotype columns with MAF in [0.01, 0.5]).
    max_ssq = max(1.5 * n, float(squares[kept].max()))
    min_centred = min(0.0198 * (n - 1), float(centred[kept].min()))
    if min_centred * 1048576.0 < max_ssq:
        return kept, (GlmError.UNSTABLE_SCALE,
                      "covariate scales differ by more than ~6 orders of magnitude")
    if len(kept) > 1:
        index = np.array(kept)
        block = design_gram[np.ix_(index, index)] - np.outer(sums[index], sums[index]) / n
        root = 1.0 / np.sqrt(np.diag(block))
        corr = block * root[:, None] * root[None, :]
        np.fill_diagonal(corr, 1.0)
        code = _corr_vif_codes(corr[None])[0]
        if code:
            label = GlmError(int(code)).label
            return kept, (GlmError(int(code)), f"the covariates alone fail the {label} check")
    return kept, None


def _corr_vif_codes(corr: np.ndarray) -> np.ndarray:
    """CORR_TOO_HIGH / VIF_INFINITE / VIF_TOO_HIGH / 0 per correlation matrix (a batch, unit
    diagonal). As in `CheckMaxCorrAndVif`, any pair beyond the limit (an infinite one too:
    a predictor constant over the sample, its variance rounded to a tiny non-zero) is
    CORR_TOO_HIGH; an undefined pair (0/0) makes the matrix fail inversion: VIF_INFINITE."""
    codes = np.zeros(len(corr), dtype=np.int8)
    if corr.shape[1] < 2:           # one predictor: plink2 skips the check
        return codes
    off = ~np.eye(corr.shape[1], dtype=bool)
    with np.errstate(invalid="ignore"):
        too_high = ((np.abs(corr) > MAX_CORR) & off).any(axis=(1, 2))
    codes[too_high] = GlmError.CORR_TOO_HIGH
    codes[~too_high & ~np.isfinite(corr).all(axis=(1, 2))] = GlmError.VIF_INFINITE
    rest = np.flatnonzero(codes == 0)
    eigen = np.linalg.eigvalsh(corr[rest])
    singular = (eigen[:, 0] <= 0) | (eigen[:, 0] < SINGULAR_RCOND * eigen[:, -1])
    codes[rest[singular]] = GlmError.VIF_INFINITE
    rest = rest[~singular]
    vif = np.einsum("vii->vi", _inverse(corr[rest]))
    codes[rest[(vif > VIF_THRESHOLD).any(axis=1)]] = GlmError.VIF_TOO_HIGH
    return codes


def _inverse(matrices: np.ndarray) -> np.ndarray:
    """Inverses of symmetric positive definite matrices (batch), through their eigenvectors:
    batched, and never raising for one bad matrix among many."""
    values, vectors = np.linalg.eigh(matrices)
    return np.asarray(np.einsum("vik,vk,vjk->vij", vectors, 1.0 / values, vectors))


def t_two_sided_p(t: np.ndarray, df: np.ndarray) -> np.ndarray:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_x(df/2, 1/2) with
    x = df / (df + t^2), the regularised incomplete beta function (as plink2's TstatToLnP).
    Accurate to ~1e-12 relative, tiny p included (down to ~1e-300)."""
    t = np.asarray(t, dtype=np.float64)
    df = np.broadcast_to(np.asarray(df, dtype=np.float64), t.shape)
    r = t * t / df
    with np.errstate(divide="ignore"):
        log_y = np.log(r) - np.log1p(r)
    return regularized_beta(df / 2.0, np.full(t.shape, 0.5), 1.0 / (1.0 + r), r / (1.0 + r),
                            -np.log1p(r), log_y)


def regularized_beta(a: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray,
                     log_x: np.ndarray, log_y: np.ndarray) -> np.ndarray:
    """I_x(a, b), with y = 1 - x and the logarithms of both given separately (no
    cancellation near x = 1, none in a log x for large a); by the continued fraction where it
    converges fast (x < (a + 1) / (a + b + 2)), else as 1 - I_y(b, a)."""
    direct = x < (a + 1.0) / (a + b + 2.0)
    flip = ~direct
    out = np.empty(x.shape)
    out[direct] = _beta_fraction(a[direct], b[direct], x[direct], log_x[direct],
                                 log_y[direct])
    out[flip] = 1.0 - _beta_fraction(b[flip], a[flip], y[flip], log_y[flip], log_x[flip])
    return np.clip(out, 0.0, 1.0)


def _beta_fraction(a: np.ndarray, b: np.ndarray, x: np.ndarray, log_x: np.ndarray,
                   log_y: np.ndarray) -> np.ndarray:
    """x^a y^b / (a B(a, b)) times the continued fraction of I_x(a, b) (modified Lentz),
    vectorised: the elements still converging iterate together until each pair of terms
    changes the value by less than 1e-15."""
    if a.size == 0:
        return np.empty(0)
    log_front = a * log_x + b * log_y - np.log(a) - _log_beta(a, b)
    tiny = 1e-300
    fraction = np.empty(x.shape)
    c = np.ones_like(x)
    d = _guard(1.0 - (a + b) * x / (a + 1.0))
    h = d.copy()
    index = np.arange(x.size)
    for m in range(1, 20_000):
        even = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        odd = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        change = np.ones_like(x)
        for term in (even, odd):
            d = _guard(1.0 + term * d)
            c = 1.0 + term / c
            c = np.where(np.abs(c) < tiny, tiny, c)
            change = change * c * d
        h = h * change
        done = np.abs(change - 1.0) <= 1e-15
        fraction[index[done]] = h[done]
        if done.all():
            break
        keep = ~done
        index, a, b, x, c, d, h = (v[keep] for v in (index, a, b, x, c, d, h))
    else:
        fraction[index] = h
    return np.asarray(np.exp(log_front) * fraction)


def _guard(d: np.ndarray) -> np.ndarray:
    """Lentz's reciprocal, kept away from division by zero."""
    return 1.0 / np.where(np.abs(d) < 1e-300, 1e-300, d)


def _log_beta(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """log B(a, b) over the distinct (a, b) pairs (few: one per sample size). With one
    argument large, lgamma(a) - lgamma(a + b) cancels badly (lgamma(1e8) ~ 1.7e9), so it is
    taken from Stirling's series of the difference instead."""
    pairs, inverse = np.unique(np.column_stack([a, b]), axis=0, return_inverse=True)
    values = np.array([_log_beta_one(p, q) for p, q in pairs])
    return np.asarray(values[inverse.ravel()])


def _log_beta_one(a: float, b: float) -> float:
    small, large = min(a, b), max(a, b)
    if large < 50.0:
        return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)

    def series(v: float) -> float:        # log Gamma(v) less its leading Stirling terms
        return 1 / (12 * v) - 1 / (360 * v**3) + 1 / (1260 * v**5) - 1 / (1680 * v**7)

    # log Gamma(L + s) - log Gamma(L) = s log L + (L + s - 1/2) log1p(s / L) - s + series
    difference = (small * math.log(large) + (large + small - 0.5) * math.log1p(small / large)
                  - small + series(large + small) - series(large))
    return math.lgamma(small) - difference
