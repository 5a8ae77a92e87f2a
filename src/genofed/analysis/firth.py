"""Firth's penalised logistic regression as plink2 v2.00a3.5 runs it (`FirthRegression` in
plink2_glm_logistic.cc, a port of logistf), driven one evaluation per network round, plus the
small batched linear algebra the logistic solver shares with it.

Everything is vectorised over variants (a leading axis of length m) and loops only over the
handful of predictors. Coefficients, scores and matrices are held in plink2's coordinates: the
predictors are (intercept, A1 dosage, covariates...) where A1 is the allele plink2 tests; nodes
always work with ALT dosages, and :func:`a1_transform` maps between the two (for a variant whose
A1 is REF the dosage is 2 - ALT, an affine change of coordinates).

Each Firth iteration needs, at the current coefficients, the score X'(y - p), the information
X'WX and the hat values h_i = w_i x_i'(X'WX)^-1 x_i of the modified score
U* = X'(y - p + h (1/2 - p)). The second term equals sum_ab (X'WX)^-1_ab T_jab with
T_jab = sum_i (1/2 - p_i) w_i x_ij x_ia x_ib, so a node returns the third moments T next to the
score, information and log-likelihood, and the coordinator forms U* itself: one round per
evaluation rather than a second round to send (X'WX)^-1 out for the hat values.
"""

from __future__ import annotations

from itertools import combinations_with_replacement

import numpy as np

#: plink2's limits (FirthRegression): iterations, convergence thresholds, step cap, halvings.
MAX_ITER = 25
GCONV = 1e-4
XCONV = 1e-4
LCONV = 1e-4
MAX_STEP = 5.0
MAX_HALFSTEPS = 5
#: kMatrixSingularRcond: an information matrix worse conditioned than this fails.
SINGULAR_RCOND = 1e-14
#: A trial must raise the penalised log-likelihood by more than this fraction of it to count
#: as a rise. plink2 compares single-precision values, where smaller changes are rounding noise;
#: in double precision, exact ties would be decided by how the sums were rounded, i.e. by how
#: individuals are split across nodes. The tie arises when the modified-score step overshoots
#: the estimate by exactly twice (a 2-cycle, seen for singletons): plink2 ends it by its
#: step-halving bail-out at a cycle point, and so do we, rather than cycle to UNFINISHED.
LOGLIK_TIE = 1e-12


def packed_index(p: int, order: int) -> np.ndarray:
    """Sorted index tuples (a <= b <= ...) of `order` predictors among `p`, in the order the
    statistics pack them (row-major upper triangle for pairs)."""
    return np.array(list(combinations_with_replacement(range(p), order)),
                    dtype=np.int64).reshape(-1, order)


def unpack(packed: np.ndarray, p: int, order: int) -> np.ndarray:
    """The full symmetric (m, p, ..., p) array of packed (m, n_tuples) moments."""
    tuples = packed_index(p, order)
    lookup = {tuple(t): i for i, t in enumerate(tuples.tolist())}
    grid = np.indices((p,) * order).reshape(order, -1).T
    where = np.array([lookup[tuple(sorted(t))] for t in grid.tolist()], dtype=np.int64)
    return packed[:, where].reshape((packed.shape[0],) + (p,) * order)


def a1_transform(flip: np.ndarray, p: int) -> np.ndarray:
    """M with x_A1 = M x_ALT per variant (m, p, p): the identity, or for a variant whose A1 is
    REF the genotype row (2, -1, 0, ...). M is its own inverse. Scores map as M s, information
    as M H M', coefficients back to ALT coordinates as M' c."""
    m = np.broadcast_to(np.eye(p), (len(flip), p, p)).copy()
    m[flip, 1, 0] = 2.0
    m[flip, 1, 1] = -1.0
    return m


def cholesky(a: np.ndarray, *, plink_nr: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Lower Cholesky factors of symmetric (m, p, p) matrices and a per-matrix failure flag.

    `plink_nr`: as plink2's own single-precision routine in Newton-Raphson
    (`CholeskyDecompositionF`): a negative pivot is replaced by 1e-6 and the fit carries on (a
    NaN then shows as a diverged step). Otherwise as LAPACK dpotrf: a pivot that is not positive
    fails (and the factor is finished with 1.0 so the batch stays finite)."""
    m, p, _ = a.shape
    low = np.zeros_like(a)
    failed = np.zeros(m, dtype=bool)
    for j in range(p):
        pivot = a[:, j, j] - np.einsum("mk,mk->m", low[:, j, :j], low[:, j, :j])
        if plink_nr:
            diag = np.where(pivot >= 0, np.sqrt(np.abs(pivot)), 1e-6)
        else:
            bad = ~(pivot > 0)
            failed |= bad
            diag = np.sqrt(np.where(bad, 1.0, pivot))
        low[:, j, j] = diag
        if j + 1 < p:
            below = a[:, j + 1:, j] - np.einsum("mik,mk->mi", low[:, j + 1:, :j], low[:, j, :j])
            with np.errstate(divide="ignore", invalid="ignore"):
                low[:, j + 1:, j] = below / diag[:, None]
    return low, failed


def cho_solve(low: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x with L L' x = b, for (m, p) or (m, p, r) right-hand sides (forward, then back
    substitution, as plink2's SolveLinearSystemF)."""
    vector = b.ndim == 2
    rhs = b[..., None] if vector else b
    p = low.shape[1]
    z = np.zeros_like(rhs)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for i in range(p):
            z[:, i] = (rhs[:, i] - np.einsum("mk,mkr->mr", low[:, i, :i], z[:, :i])) \
                / low[:, i, i][:, None]
        x = np.zeros_like(rhs)
        for i in reversed(range(p)):
            x[:, i] = (z[:, i] - np.einsum("mk,mkr->mr", low[:, i + 1:, i], x[:, i + 1:])) \
                / low[:, i, i][:, None]
    return x[..., 0] if vector else x


def cho_inverse(low: np.ndarray) -> np.ndarray:
    """(L L')^-1 for each factor."""
    m, p, _ = low.shape
    return cho_solve(low, np.broadcast_to(np.eye(p), (m, p, p)).copy())


def rcond(a: np.ndarray, inverse: np.ndarray) -> np.ndarray:
    """Reciprocal 1-norm condition number (dpocon estimates the same quantity)."""
    norm = np.abs(a).sum(axis=1).max(axis=1)
    inv_norm = np.abs(inverse).sum(axis=1).max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray(1.0 / (norm * inv_norm))


class FirthFits:
    """Firth fits of many variants at once, each advanced by one evaluation (log-likelihood,
    information, score, third moments at its trial coefficients) per round.

    Mirrors FirthRegression: start at zero; each iteration takes the modified-score step
    (H^-1 U*, scaled down to a largest component of 5), then halves it (up to five times) while
    the penalised log-likelihood l + log|H|/2 falls; converged when the step and the modified
    score are both within 1e-4 and the log-likelihood moved at most 1e-4 (or the halving bailed
    out near convergence, plink2's `hs_bail`); after 25 iterations the fit is reported
    UNFINISHED. A singular information matrix fails (FIRTH_CONVERGE_FAIL)."""

    def __init__(self, n_variants: int, p: int, flip: np.ndarray) -> None:
        self.p = p
        self.flip = flip
        v = n_variants
        self.coef = np.zeros((v, p))
        self.dcoef = np.zeros((v, p))
        self.loglik = np.zeros(v)
        self.loglik_old = np.zeros(v)
        self.loglik_thresh = np.zeros(v)
        self.dcoef_max = np.zeros(v)
        self.grad_max = np.zeros(v)
        self.converging = np.zeros(v, dtype=bool)  # delta_and_grad_converged
        self.hs_bail = np.zeros(v, dtype=bool)
        self.iteration = np.zeros(v, dtype=np.int64)
        self.halfstep = np.zeros(v, dtype=np.int64)
        self.max_halfsteps = np.zeros(v, dtype=np.int64)
        #: (X'WX)^-1 in A1 coordinates at the accepted coefficients of finished fits.
        self.covariance = np.full((v, p, p), np.nan)
        self.active = np.zeros(v, dtype=bool)
        self.finished = np.zeros(v, dtype=bool)
        self.failed = np.zeros(v, dtype=bool)
        self.unfinished = np.zeros(v, dtype=bool)

    def start(self, idx: np.ndarray, loglik: np.ndarray, info: np.ndarray, score_alt: np.ndarray,
              third_alt: np.ndarray) -> None:
        """Begin fits at coefficients zero from their evaluation there (`info` in A1
        coordinates, score and third moments as the nodes sent them, in ALT coordinates)."""
        self.coef[idx] = 0.0
        self.iteration[idx] = 0
        self.hs_bail[idx] = False
        self.active[idx] = True
        penalised, low, ok = self._penalised(idx, loglik, info)
        self.loglik[idx[ok]] = penalised[ok]
        self._step(idx[ok], low[ok], score_alt[ok], third_alt[ok])

    def trial(self, idx: np.ndarray) -> np.ndarray:
        """The coefficients (A1 coordinates) at which these fits need their next evaluation."""
        return np.asarray(self.coef[idx])

    def absorb(self, idx: np.ndarray, loglik: np.ndarray, info: np.ndarray,
               score_alt: np.ndarray, third_alt: np.ndarray) -> None:
        """Take the evaluation at the trial coefficients: halve, accept, finish or step on."""
        penalised, low, ok = self._penalised(idx, loglik, info)
        idx, penalised, low = idx[ok], penalised[ok], low[ok]
        score_alt, third_alt = score_alt[ok], third_alt[ok]
        self.loglik[idx] = penalised
        halfstep, max_hs = self.halfstep[idx], self.max_halfsteps[idx].copy()
        old, thresh = self.loglik_old[idx], self.loglik_thresh[idx]
        gain = penalised - LOGLIK_TIE * np.abs(old)  # a tie is no rise (see LOGLIK_TIE)
        accept = halfstep > max_hs
        rising = ~accept & (gain >= thresh)
        accept |= rising & (gain >= old)
        max_hs = np.where(rising & ~accept, halfstep, max_hs)
        last_try = ~accept & ~rising & (halfstep == max_hs)
        bail = last_try & (self.dcoef_max[idx] < 0.001) & (self.grad_max[idx] < 0.05) \
            & (penalised >= old - LCONV)
        halfstep = np.where(bail, halfstep - 1, halfstep)
        max_hs = np.where(bail, max_hs - 1, max_hs)
        self.hs_bail[idx[bail]] = True
        halve = ~accept
        back = idx[halve]
        self.coef[back] -= self.dcoef[back] * np.exp2(-halfstep[halve].astype(float))[:, None]
        self.halfstep[back] = halfstep[halve] + 1
        self.max_halfsteps[idx] = max_hs
        done = idx[accept]
        change = np.abs(penalised[accept] - old[accept])
        converged = (change <= LCONV) & (self.converging[done] | self.hs_bail[done])
        out_of_iterations = ~converged & (self.iteration[done] == MAX_ITER - 1)
        stop = converged | out_of_iterations
        self.unfinished[done[out_of_iterations]] = True
        self._finish(done[stop], low[accept][stop])
        step_on = ~stop
        self.iteration[done[step_on]] += 1
        self._step(done[step_on], low[accept][step_on], score_alt[accept][step_on],
                   third_alt[accept][step_on])

    def _penalised(self, idx: np.ndarray, loglik: np.ndarray, info: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """l + log|H|/2 and the factor of H; fits whose H is singular fail here."""
        low, bad = cholesky(info)
        inverse = cho_inverse(low)
        bad |= ~(rcond(info, inverse) >= SINGULAR_RCOND)
        with np.errstate(divide="ignore", invalid="ignore"):
            logdet = 2.0 * np.log(np.einsum("mii->mi", low)).sum(axis=1)
        self.failed[idx[bad]] = True
        self.active[idx[bad]] = False
        return loglik + 0.5 * logdet, low, ~bad

    def _step(self, idx: np.ndarray, low: np.ndarray, score_alt: np.ndarray,
              third_alt: np.ndarray) -> None:
        """One modified-score step from the accepted coefficients (whose information factor
        is `low`), leaving the full step as the next trial."""
        if not len(idx):
            return
        inverse = cho_inverse(low)
        m = a1_transform(self.flip[idx], self.p)
        inverse_alt = np.einsum("mba,mbc,mcd->mad", m, inverse, m)  # M' H_A1^-1 M
        hat_term = np.einsum("mjab,mab->mj", unpack(third_alt, self.p, 3), inverse_alt)
        modified = np.einsum("mij,mj->mi", m, score_alt + hat_term)
        grad_max = np.abs(modified).max(axis=1)
        dcoef = np.einsum("mij,mj->mi", inverse, modified)
        dcoef_max = np.abs(dcoef).max(axis=1)
        scale = np.where(dcoef_max > MAX_STEP, MAX_STEP / np.maximum(dcoef_max, MAX_STEP), 1.0)
        dcoef *= scale[:, None]
        dcoef_max = np.minimum(dcoef_max, MAX_STEP)
        self.coef[idx] += dcoef
        self.dcoef[idx] = dcoef
        self.dcoef_max[idx] = dcoef_max
        self.grad_max[idx] = grad_max
        converging = (dcoef_max <= XCONV) & (grad_max < GCONV)
        self.converging[idx] = converging
        self.loglik_old[idx] = self.loglik[idx]
        # plink2: near convergence the log-likelihood change is rounding noise; accept a
        # fall of just under lconv rather than halve five times.
        self.loglik_thresh[idx] = self.loglik[idx] - np.where(converging, 0.999999 * LCONV, 0.0)
        self.halfstep[idx] = 1
        self.max_halfsteps[idx] = MAX_HALFSTEPS

    def _finish(self, idx: np.ndarray, low: np.ndarray) -> None:
        self.covariance[idx] = cho_inverse(low)
        self.finished[idx] = True
        self.active[idx] = False
