"""Logistic regression GWAS across nodes, equal to pooled `plink2 --glm hide-covar` (v2.00a3.5)
on a binary trait: Newton-Raphson per variant, with plink2's default fallback to Firth's
penalised regression (:mod:`.firth`).

Node side, :func:`logistic_statistics`: for the coefficients the coordinator asks about, sums
over the node's individuals that have a genotype (plink2 drops the others variant by variant):
the score X'(y - p), the information X'WX (packed upper triangle), and for variants in their
Firth phase also the log-likelihood and the third moments plink2's Firth step needs; in the first
round also genotype counts. Predictors are ordered as plink2 orders them: intercept, the ALT
dosage, then the covariates (`design` columns after its intercept). Shapes depend only on the
request.

Coordinator side, :class:`LogisticSolver`: a state machine over the summed statistics, one round
per Newton step or Firth evaluation, all variants at once. It mirrors GlmLogisticThread and
LogisticRegressionF in plink2_glm_logistic.cc:

* A1 is the minor allele (plink2 omits the major allele: REF unless the ALT frequency is above
  1/2), so for some variants the coordinator works in REF coordinates (:func:`.firth.a1_transform`).
* Checks before fitting, in plink2's order: more individuals than predictors; a non-constant
  genotype (else CONST_OMITTED_ALLELE); predictor correlations within 0.999 and VIFs within 50
  (CheckMaxCorrAndVifF); an allele seen only in cases or only in controls goes straight to Firth.
* Newton-Raphson from zero; the step solves with plink2's Cholesky; stop when the summed absolute
  step is below 1e-4; fail (and go to Firth, from zero) on a NaN, a step above 20 and twice the
  smallest yet after iteration 3, a step stuck near 1 after iteration 6, coefficients above 6e4
  at convergence or 8e3 after 14 iterations (otherwise UNFINISHED there). The standard error
  comes from the information at the last coefficients before the final step, as in plink2.
* After the fit, INVALID_RESULT where a variance is below 1e-20 or a correlation of estimates
  is above 0.99999 (validParameters); Wald z, two-sided normal p.

The first round evaluates every variant at zero, where a Firth fit starts too (there the hat
term vanishes, since p = 1/2), so a fallback costs no extra round.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import dask.array as da
import numpy as np
from scipy import special

from genofed.analysis import data
from genofed.analysis.firth import (
    SINGULAR_RCOND,
    FirthFits,
    a1_transform,
    cho_inverse,
    cho_solve,
    cholesky,
    packed_index,
    rcond,
    unpack,
)
from genofed.analysis.scheduling import compute

#: Elements per block a node holds at once (variants x individuals), for memory.
_BLOCK_ELEMENTS = 2_000_000
#: Columns of the first round's "counts": individuals with a genotype, cases among them, ALT
#: dosage sum, ALT dosage sum in cases, sum of squared ALT dosages.
COUNT_COLUMNS = ("obs", "cases", "alt", "case_alt", "alt_sq")


def logistic_statistics(dosages: data.Dosages, design: np.ndarray, y: np.ndarray,
                        request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """One node's (or dataset's) sums for a round of :class:`LogisticSolver`.

    `design` (n, k): the intercept column, then covariates, no missing values; `y` (n,) 0/1.
    Request: `variants` (m,) rows of `dosages`, `coef` (m, k+1) in ALT coordinates, `firth` (m,)
    1 where the variant is in its Firth phase, and `counts` (any value) in the first round.
    Returns `score` (m, k+1), `info` (m, (k+1)(k+2)/2), `loglik` (f,), `third`
    (f, (k+1)(k+2)(k+3)/6) for the f Firth variants in request order, and `counts` (m, 5)
    (:data:`COUNT_COLUMNS`) when asked; all float64."""
    design = np.asarray(design, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    variants = np.asarray(request["variants"], dtype=np.int64)
    coef = np.asarray(request["coef"], dtype=np.float64)
    firth = np.asarray(request["firth"]).astype(bool)
    n, k = design.shape
    p = k + 1
    if y.shape != (n,) or coef.shape != (len(variants), p) or firth.shape != variants.shape:
        raise ValueError(f"logistic request shapes do not fit {n} individuals and {k} design "
                         f"columns: coef {coef.shape}, firth {firth.shape}, y {y.shape}")
    m, f = len(variants), int(firth.sum())
    widths = {"score": p, "info": len(packed_index(p, 2)), "loglik": 1,
              "third": len(packed_index(p, 3)), "counts": len(COUNT_COLUMNS)}
    if "counts" not in request:
        del widths["counts"]
    if not m:
        return {name: np.zeros((0, width)) for name, width in widths.items()} | \
            {"loglik": np.zeros(0)}
    order = np.argsort(variants, kind="stable")
    picked = dosages.dosage[variants[order]]
    picked = picked.rechunk((_BLOCK_ELEMENTS // max(1, max(picked.chunks[1], default=1)),
                             picked.chunks[1]))
    n_stats = sum(widths.values())

    def block_sums(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (r0, r1), (s0, s1) = block_info[0]["array-location"]
        rows = order[r0:r1]
        sums = _block_sums(block, design[s0:s1], y[s0:s1], coef[rows], firth[rows], widths)
        return sums[:, None, :]

    n_blocks = len(picked.chunks[1])
    sums = np.asarray(compute(da.map_blocks(
        block_sums, picked, new_axis=2, dtype=np.float64,
        chunks=(picked.chunks[0], (1,) * n_blocks, (n_stats,))).sum(axis=1))[0])
    out, start = {}, 0
    for name, width in widths.items():
        values = np.empty((m, width))
        values[order] = sums[:, start:start + width]
        start += width
        out[name] = values[firth] if name in ("loglik", "third") else values
    out["loglik"] = out["loglik"].reshape(f)
    return out


def _block_sums(dose: np.ndarray, design: np.ndarray, y: np.ndarray, coef: np.ndarray,
                firth: np.ndarray, widths: dict[str, int]) -> np.ndarray:
    """The statistics of one block of dosages (some variants x some individuals), as columns
    in the order of `widths` (Firth-only columns zero for the other variants)."""
    p = coef.shape[1]
    obs = ~np.isnan(dose)
    g = np.where(obs, dose, 0.0)
    # predictors 0 and 2.. are design columns 0 and 1..; predictor 1 is the ALT dosage
    eta = coef[:, [0, *range(2, p)]] @ design.T + coef[:, 1:2] * g
    prob = special.expit(eta)
    weight = prob * (1.0 - prob) * obs
    parts = {"score": _Moments(design, p, 1).sums((y - prob) * obs, g),
             "info": _Moments(design, p, 2).sums(weight, g),
             "loglik": np.zeros((len(dose), 1)),
             "third": np.zeros((len(dose), widths["third"]))}
    if firth.any():
        log_p = special.log_expit(np.where(y > 0, eta[firth], -eta[firth]))
        parts["loglik"][firth, 0] = (log_p * obs[firth]).sum(axis=1)
        parts["third"][firth] = _Moments(design, p, 3).sums(
            weight[firth] * (0.5 - prob[firth]), g[firth])
    if "counts" in widths:
        parts["counts"] = np.column_stack(
            [obs.sum(axis=1), obs @ y, g.sum(axis=1), g @ y, (g * g).sum(axis=1)])
    return np.concatenate([parts[name] for name in widths], axis=1)


class _Moments:
    """sum_i w_i x_ia x_ib ... over the packed index tuples of one order, as a few matrix
    products: a tuple is (ALT dosage)^e times a product of design columns."""

    def __init__(self, design: np.ndarray, p: int, order: int) -> None:
        tuples = packed_index(p, order)
        self.power = (tuples == 1).sum(axis=1)
        column = [0, -1, *range(1, p - 1)]  # design column of each predictor (-1: dosage)
        self.products = np.ones((design.shape[0], len(tuples)))
        for t, indices in enumerate(tuples.tolist()):
            for a in indices:
                if a != 1:
                    self.products[:, t] *= design[:, column[a]]

    def sums(self, weight: np.ndarray, g: np.ndarray) -> np.ndarray:
        out = np.empty((weight.shape[0], len(self.power)))
        for e in range(int(self.power.max()) + 1):
            cols = self.power == e
            out[:, cols] = weight @ self.products[:, cols]
            if e < self.power.max():
                weight = weight * g
        return out


@dataclass(frozen=True)
class LogisticResult:
    """Per variant, as plink2's .glm.logistic.hybrid row for the A1 allele (NaN where plink2
    prints NA; `error` is plink2's ERRCODE: "." or UNFINISHED for a result, else why none)."""

    a1_is_ref: np.ndarray
    beta: np.ndarray
    se: np.ndarray
    z: np.ndarray
    p: np.ndarray
    #: -log10 p, exact where p underflows.
    neg_log10_p: np.ndarray
    odds_ratio: np.ndarray
    obs_ct: np.ndarray
    #: A1 dosage sum over the individuals with a genotype (plink2's A1_CT).
    a1_count: np.ndarray
    #: plink2's FIRTH? column: the fit fell back to (or always used) Firth regression.
    firth: np.ndarray
    error: np.ndarray
    rounds: int


class LogisticSolver:
    """The coordinator's side: request() what to compute, absorb() the summed statistics,
    until request() returns None; then result().

    `k`: design columns (intercept included). `a1_is_ref`: the allele plink2 tests, if known
    from the job's pooled frequencies (plink2 takes them over every individual in the fileset);
    by default from the regression's own individuals (the same set when all have the trait and
    covariates). `firth`: plink2's default `fallback`, `always` (its `firth` modifier, and what it
    does when a covariate alone separates the trait) or `never` (`no-firth`)."""

    def __init__(self, n_variants: int, k: int, *, a1_is_ref: np.ndarray | None = None,
                 firth: Literal["fallback", "always", "never"] = "fallback",
                 max_corr: float = 0.999, vif: float = 50.0) -> None:
        self.n_variants, self.p = n_variants, k + 1
        self._a1_is_ref = None if a1_is_ref is None else np.asarray(a1_is_ref, dtype=bool)
        self._mode, self._max_corr, self._vif = firth, max_corr, vif
        v, p = n_variants, self.p
        self.rounds = 0
        self._sent: tuple[np.ndarray, np.ndarray] | None = None
        self._flip = np.zeros(v, dtype=bool)
        self._counts = np.zeros((v, len(COUNT_COLUMNS)))
        self._info0 = np.zeros((v, p, p))  # A1 coordinates, at zero
        self._score0 = np.zeros((v, p))  # ALT coordinates, at zero
        self._coef = np.zeros((v, p))  # Newton-Raphson, A1 coordinates
        self._newton = np.zeros(v, dtype=bool)
        self._iteration = np.zeros(v, dtype=np.int64)
        self._min_delta = np.full(v, 1e9)
        self._fits = FirthFits(v, p, self._flip)
        self._used_firth = np.zeros(v, dtype=bool)
        self._beta = np.full(v, np.nan)
        self._se = np.full(v, np.nan)
        self._error = np.full(v, "", dtype=object)

    def request(self) -> dict[str, np.ndarray] | None:
        """The next round's request (broadcast to every node), None when every variant is
        done."""
        p = self.p
        if self.rounds == 0:
            variants = np.arange(self.n_variants, dtype=np.int64)
            self._sent = (variants, np.zeros(self.n_variants, dtype=bool))
            return {"variants": variants, "coef": np.zeros((self.n_variants, p)),
                    "firth": np.zeros(self.n_variants), "counts": np.ones(1)}
        firth = self._fits.active
        variants = np.flatnonzero(self._newton | firth)
        if not len(variants):
            self._sent = None
            return None
        in_firth = firth[variants]
        coef = self._coef[variants]
        coef[in_firth] = self._fits.trial(variants[in_firth])
        m = a1_transform(self._flip[variants], p)
        self._sent = (variants, in_firth)
        return {"variants": variants, "coef": np.einsum("mji,mj->mi", m, coef),
                "firth": in_firth.astype(np.float64)}

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        """Take the round's statistics summed over all nodes."""
        if self._sent is None:
            raise ValueError("absorb() without a pending request()")
        variants, in_firth = self._sent
        m, f = len(variants), int(in_firth.sum())
        score = np.asarray(summed["score"], dtype=np.float64).reshape(m, self.p)
        info = unpack(np.asarray(summed["info"], dtype=np.float64).reshape(m, -1), self.p, 2)
        first = self.rounds == 0
        self._sent = None
        self.rounds += 1
        if first:
            self._first_round(score, info, np.asarray(summed["counts"]).reshape(m, -1))
            return
        info = self._to_a1(info, variants)
        nr = ~in_firth
        self._newton_step(variants[nr], score[nr], info[nr])
        if f:
            self._fits.absorb(variants[in_firth], np.asarray(summed["loglik"]).reshape(f),
                              info[in_firth], score[in_firth],
                              np.asarray(summed["third"]).reshape(f, -1))
            self._collect_firth()

    def _to_a1(self, info: np.ndarray, variants: np.ndarray) -> np.ndarray:
        m = a1_transform(self._flip[variants], self.p)
        return np.asarray(m @ info @ m.transpose(0, 2, 1))

    def _first_round(self, score: np.ndarray, info: np.ndarray, counts: np.ndarray) -> None:
        counts = np.rint(counts)
        obs, cases, alt, case_alt, alt_sq = counts.T
        self._counts = counts
        self._flip[:] = alt > obs if self._a1_is_ref is None else self._a1_is_ref
        every = np.arange(self.n_variants)
        self._info0 = self._to_a1(info, every)
        self._score0 = score
        error = self._error
        error[obs <= self.p] = "SAMPLE_CT<=PREDICTOR_CT"
        error[(error == "") & (obs * alt_sq == alt * alt)] = "CONST_OMITTED_ALLELE"
        todo = np.flatnonzero(error == "")
        # at zero every weight p(1-p) is 1/4, so this round's information is X'X / 4
        error[todo] = _collinearity(4.0 * self._info0[todo], obs[todo], self._max_corr,
                                    self._vif)
        todo = todo[error[todo] == ""]
        if self._mode == "always":
            self._start_firth(todo)
            return
        # an allele only in cases or only in controls (plink2 checks REF, then ALT)
        ref_cases, ref = 2 * cases[todo] - case_alt[todo], 2 * obs[todo] - alt[todo]
        ref_sep = (ref_cases == 0) | (ref_cases == ref)
        sep = ref_sep | (case_alt[todo] == 0) | (case_alt[todo] == alt[todo])
        if self._mode == "never":
            error[todo[sep]] = np.where(ref_sep[sep], "SEPARATION,REF", "SEPARATION,ALT1")
        else:
            self._start_firth(todo[sep])
        newton = todo[~sep]
        self._newton[newton] = True
        self._newton_step(newton, score[newton], self._info0[newton])

    def _newton_step(self, idx: np.ndarray, score_alt: np.ndarray, info: np.ndarray) -> None:
        """LogisticRegressionF, one iteration per round (`info` in A1 coordinates)."""
        if not len(idx):
            return
        grad = -np.einsum("mij,mj->mi", a1_transform(self._flip[idx], self.p), score_alt)
        low, _ = cholesky(info, plink_nr=True)
        dcoef = cho_solve(low, grad)
        delta = np.abs(dcoef).sum(axis=1)
        coef = self._coef[idx] - dcoef
        it = self._iteration[idx]
        min_delta = np.fmin(self._min_delta[idx], delta)
        self._min_delta[idx] = min_delta
        late = it > 3
        with np.errstate(invalid="ignore"):
            fail = np.isnan(delta) | (late & (((delta > 20.0) & (delta > 2 * min_delta))
                                              | ((it > 6) & (np.abs(1.0 - delta) < 1e-3))))
            biggest = np.abs(coef).max(axis=1)
            limit = ~fail & late & (it > 13)
            fail |= limit & (biggest > 8e3)
            converged = ~fail & ~limit & (delta < 1e-4)
            fail |= converged & (biggest > 6e4)
        converged &= ~fail
        limit &= ~fail
        self._coef[idx] = coef
        self._iteration[idx] += 1
        done = converged | limit
        self._newton[idx[done | fail]] = False
        self._error[idx[limit]] = "UNFINISHED"
        self._finish(idx[done], coef[done], cho_inverse(low[done]))
        if self._mode == "never":
            self._error[idx[fail]] = "LOGISTIC_CONVERGE_FAIL"
        else:
            self._start_firth(idx[fail])

    def _start_firth(self, idx: np.ndarray) -> None:
        """Firth from zero, from the first round's evaluation there (no extra round)."""
        self._used_firth[idx] = True
        obs = self._counts[idx, 0]
        third = np.zeros((len(idx), len(packed_index(self.p, 3))))
        self._fits.start(idx, obs * np.log(0.5), self._info0[idx], self._score0[idx], third)
        self._collect_firth()

    def _collect_firth(self) -> None:
        fits = self._fits
        failed = np.flatnonzero(fits.failed & (self._error == ""))
        self._error[failed] = "FIRTH_CONVERGE_FAIL"
        done = np.flatnonzero(fits.finished & (self._error == "") & np.isnan(self._se))
        self._error[done[fits.unfinished[done]]] = "UNFINISHED"
        self._finish(done, fits.coef[done], fits.covariance[done])

    def _finish(self, idx: np.ndarray, coef: np.ndarray, covariance: np.ndarray) -> None:
        """validParameters, then beta and its standard error."""
        diag = np.einsum("mii->mi", covariance)
        with np.errstate(invalid="ignore"):
            bad = ((diag[:, 1:] < 1e-20) | ~np.isfinite(diag[:, 1:])).any(axis=1)
            sd = np.sqrt(diag)
            bound = 0.99999 * sd[:, :, None] * sd[:, None, :]
            lower = np.tril(np.ones((self.p, self.p), dtype=bool), -1)
            bad |= ((covariance > bound) & lower).any(axis=(1, 2))
        self._error[idx[bad]] = "INVALID_RESULT"
        good = idx[~bad]
        self._error[good[self._error[good] == ""]] = "."
        self._beta[good] = coef[~bad, 1]
        self._se[good] = sd[~bad, 1]

    def result(self) -> LogisticResult:
        """Per-variant results (call when request() has returned None)."""
        obs, alt = self._counts[:, 0], self._counts[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            z = self._beta / self._se
        return LogisticResult(
            a1_is_ref=self._flip.copy(), beta=self._beta.copy(), se=self._se.copy(), z=z,
            p=2.0 * special.ndtr(-np.abs(z)),
            neg_log10_p=-(special.log_ndtr(-np.abs(z)) + np.log(2.0)) / np.log(10.0),
            odds_ratio=np.exp(self._beta), obs_ct=obs.astype(np.int64),
            a1_count=np.where(self._flip, 2 * obs - alt, alt), firth=self._used_firth.copy(),
            error=self._error.astype(str), rounds=self.rounds)


def _collinearity(xtx: np.ndarray, n: np.ndarray, max_corr: float, vif: float) -> np.ndarray:
    """plink2's CheckMaxCorrAndVifF over the non-intercept predictors, from X'X: "" where fine,
    else CORR_TOO_HIGH, VIF_INFINITE or VIF_TOO_HIGH."""
    codes = np.full(len(n), "", dtype=object)
    if not len(n):
        return codes
    sums = xtx[:, 0, 1:]
    nn = n[:, None, None]
    cov = (xtx[:, 1:, 1:] - sums[:, :, None] * sums[:, None, :] / nn) / (nn - 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_sd = 1.0 / np.sqrt(np.einsum("mii->mi", cov))
        corr = cov * inv_sd[:, :, None] * inv_sd[:, None, :]
    q = corr.shape[1]
    off = ~np.eye(q, dtype=bool)
    too_high = (np.abs(corr) > max_corr)[:, off].any(axis=1)
    corr[:, np.eye(q, dtype=bool)] = 1.0
    low, singular = cholesky(np.nan_to_num(corr))
    inverse = cho_inverse(low)
    singular |= ~(rcond(corr, inverse) >= SINGULAR_RCOND)
    vif_high = (np.einsum("mii->mi", inverse) > vif).any(axis=1)
    codes[vif_high] = "VIF_TOO_HIGH"
    codes[singular] = "VIF_INFINITE"
    codes[too_high] = "CORR_TOO_HIGH"
    return codes
