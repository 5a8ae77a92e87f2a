"""Principal components across nodes, equal to pooled `plink2 --pca <k> meanimpute
biallelic-var-wts` (v2.00a3.5, CalcGrm and CalcPca in plink2_matrix_calc.cc) on the same
variants; each node keeps its own individuals' scores.

plink2 standardises ALT dosages per variant, x = (g - 2f) / sqrt(2f(1-f)) with f the ALT
frequency over all individuals' calls (ExpandCenteredVarmaj: missing calls become 0, the mean;
a variant with variance below kSmallEpsilon becomes all 0), forms the relationship matrix
X'X / M over the M variants and takes its top eigenpairs. Its default without `meanimpute`
divides each pair's entry by the number of variants both individuals have called instead, a
matrix that is not X'X / M and cannot be formed from per-node sums without sharing which calls
each individual misses; a job therefore runs plink2's `meanimpute` variant.

The same eigenvalues are those of the variant-space matrix A = X X' / M = sum over nodes of
X_node X_node' / M, so the coordinator runs a block Krylov (Lanczos) iteration on A: each round
it sends an orthonormal block of variant vectors V and every node returns X_node (X_node' V);
Rayleigh-Ritz on all blocks so far gives the eigenpairs, and it stops when the top k residuals
are below `tol` times the largest eigenvalue (the basis restarts from the Ritz vectors when it
grows large). Rounds: one for the allele counts, then typically a few tens.

Results as plink2 writes them: `.eigenval` is lambda = mu / M; `.eigenvec.var` (var-wts) is
X u / sqrt(lambda) = sqrt(M) v for the unit eigenvector v of A, reported for the non-major
allele (negated where ALT is the major allele, FlushBiallelicVarWts); `.eigenvec` is the unit
eigenvector u = X' v / sqrt(mu) of X'X, which :func:`pca_scores` computes for a node's own
individuals.
"""

from __future__ import annotations

from dataclasses import dataclass

import dask.array as da
import numpy as np

from genofed.analysis import data
from genofed.analysis.scheduling import compute

#: plink2's kSmallEpsilon (2^-44): a variant with 2f(1-f) at most this is all zero.
SMALL_EPSILON = 2.0 ** -44


def allele_count_statistics(dosages: data.Dosages) -> dict[str, np.ndarray]:
    """Per variant, the ALT allele count and the number of called alleles (2 per individual
    with a call) of the node's individuals: summed, the frequencies plink2 standardises with."""
    called = ~da.isnan(dosages.dosage)
    alt, total = compute(da.where(called, dosages.dosage, 0.0).sum(axis=1),
                         2.0 * called.sum(axis=1))
    return {"alt_count": np.asarray(alt, dtype=np.float64),
            "allele_count": np.asarray(total, dtype=np.float64)}


def standardised(dosages: data.Dosages, alt_freq: np.ndarray) -> da.Array:
    """plink2's variance-standardised genotype matrix X (variants x individuals)."""
    f = np.asarray(alt_freq, dtype=np.float64)
    variance = 2.0 * (1.0 - f) * f
    scale = np.zeros_like(f)
    np.divide(1.0, np.sqrt(variance), out=scale, where=variance > SMALL_EPSILON)
    chunks = dosages.dosage.chunks[0]
    center = da.from_array(2.0 * f, chunks=chunks)[:, None]
    factor = da.from_array(scale, chunks=chunks)[:, None]
    x = dosages.dosage
    standard: da.Array = da.where(da.isnan(x), 0.0, (x - center) * factor)
    return standard


def pca_statistics(dosages: data.Dosages, request: dict[str, np.ndarray]
                   ) -> dict[str, np.ndarray]:
    """One node's (or dataset's) sums for a round of :class:`PcaSolver`.

    Request `counts` (first round): returns :func:`allele_count_statistics`. Request `freq`
    (V,) ALT frequencies and `basis` (V, q): returns `product` (V, q) = X (X' basis) over the
    node's individuals, in two passes over the genotypes (memory stays one block)."""
    if "counts" in request:
        return allele_count_statistics(dosages)
    basis = np.asarray(request["basis"], dtype=np.float64)
    x = standardised(dosages, request["freq"])
    if basis.ndim != 2 or basis.shape[0] != x.shape[0]:
        raise ValueError(f"pca basis {basis.shape} does not fit {x.shape[0]} variants")
    b = da.from_array(basis, chunks=(x.chunks[0], basis.shape[1]))
    z = np.asarray(compute(x.T @ b)[0])
    zd = da.from_array(z, chunks=(x.chunks[1], z.shape[1]))
    return {"product": np.asarray(compute(x @ zd)[0], dtype=np.float64)}


@dataclass(frozen=True)
class PcaResult:
    """plink2's `.eigenval` and `.eigenvec.var`, and what a node needs for its scores."""

    #: (k,) eigenvalues of the relationship matrix X'X / M, largest first.
    eigenvalues: np.ndarray
    #: (V, k) variant weights as var-wts reports them (for the non-major allele).
    loadings: np.ndarray
    #: (V,) pooled ALT frequency each variant was standardised with.
    alt_freq: np.ndarray
    #: (V,) whether ALT is the major allele (its weights are negated, as plink2 does).
    alt_major: np.ndarray
    rounds: int
    #: Whether the top k residuals reached the tolerance (else max_rounds stopped it).
    converged: bool

    @property
    def variant_count(self) -> int:
        return int(self.loadings.shape[0])


def pca_scores(dosages: data.Dosages, result: PcaResult) -> np.ndarray:
    """(n, k) scores of the node's own individuals: their rows of plink2's `.eigenvec` (up to
    the sign of each component, which no eigensolver fixes). They stay at the node."""
    m = result.variant_count
    sign = np.where(result.alt_major, -1.0, 1.0)[:, None]
    weights = result.loadings * sign / (m * np.sqrt(result.eigenvalues))[None, :]
    x = standardised(dosages, result.alt_freq)
    w = da.from_array(weights, chunks=(x.chunks[0], weights.shape[1]))
    return np.asarray(compute(x.T @ w)[0], dtype=np.float64)


class PcaSolver:
    """The coordinator's side: request() what to compute, absorb() the summed statistics,
    until request() returns None; then result().

    `k` components, block size k + `oversample`; `tol`: stop when every top-k Ritz residual
    ||A v - mu v|| is below tol * mu_1 (an eigenvalue is then within that of the true one, far
    below 1e-6 relative); `max_blocks`: blocks kept before a thick restart."""

    def __init__(self, n_variants: int, k: int, *, oversample: int = 10, tol: float = 1e-10,
                 max_rounds: int = 300, max_blocks: int = 12, seed: int = 0) -> None:
        if not 1 <= k <= n_variants:
            raise ValueError(f"{k} components need at least as many variants, not {n_variants}")
        self.n_variants, self.k = n_variants, k
        self.block = min(n_variants, k + oversample)
        self.tol, self.max_rounds, self.max_blocks = tol, max_rounds, max_blocks
        self.rounds = 0
        self._rng = np.random.default_rng(seed)
        self._freq: np.ndarray | None = None
        self._basis = np.zeros((n_variants, 0))  # orthonormal Krylov basis K
        self._image = np.zeros((n_variants, 0))  # A K
        self._next: np.ndarray | None = None
        self._done = False
        self._converged = False
        self._values = np.zeros(0)
        self._vectors = np.zeros((n_variants, 0))

    def request(self) -> dict[str, np.ndarray] | None:
        if self._done:
            return None
        if self._freq is None:
            return {"counts": np.ones(1)}
        if self._next is None:
            self._next = _orthonormal(self._rng.standard_normal((self.n_variants, self.block)),
                                      self._basis)
        return {"freq": self._freq, "basis": self._next}

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        self.rounds += 1
        if self._freq is None:
            alt = np.asarray(summed["alt_count"], dtype=np.float64)
            total = np.asarray(summed["allele_count"], dtype=np.float64)
            with np.errstate(invalid="ignore", divide="ignore"):
                self._freq = np.where(total > 0, alt / total, 0.5)
            return
        if self._next is None:
            raise ValueError("absorb() without a pending request()")
        product = np.asarray(summed["product"], dtype=np.float64) / self.n_variants
        self._basis = np.hstack([self._basis, self._next])
        self._image = np.hstack([self._image, product.reshape(self._next.shape)])
        values, ritz = np.linalg.eigh(_symmetric(self._basis.T @ self._image))
        order = np.argsort(values)[::-1]
        values, ritz = values[order], ritz[:, order]
        vectors, images = self._basis @ ritz, self._image @ ritz
        residual = np.linalg.norm(images - vectors * values, axis=0)
        top = slice(0, self.k)
        scale = max(values[0], np.finfo(float).tiny)
        self._values, self._vectors = values[top], vectors[:, top]
        if (residual[top] <= self.tol * scale).all():
            self._done = self._converged = True
            return
        if self.rounds >= self.max_rounds:
            self._done = True
            return
        if self._basis.shape[1] + self.block > self.max_blocks * self.block:
            keep = slice(0, self.block)
            self._basis, self._image = vectors[:, keep], images[:, keep]
            candidate = images[:, keep] - vectors[:, keep] * values[keep]
        else:
            candidate = product.reshape(self._next.shape)
        self._next = _orthonormal(candidate, self._basis, cutoff=1e-12 * scale)
        if not self._next.shape[1]:  # the basis spans an invariant subspace: exact
            self._done = self._converged = True

    def result(self) -> PcaResult:
        if self._freq is None or not self._values.size:
            raise ValueError("result() before the PCA has run")
        m = self.n_variants
        alt_major = self._freq > 0.5
        sign = np.where(alt_major, -1.0, 1.0)[:, None]
        return PcaResult(eigenvalues=self._values.copy(),
                         loadings=np.sqrt(m) * self._vectors * sign,
                         alt_freq=self._freq.copy(), alt_major=alt_major, rounds=self.rounds,
                         converged=self._converged)


def _symmetric(a: np.ndarray) -> np.ndarray:
    return np.asarray(0.5 * (a + a.T))


def _orthonormal(block: np.ndarray, basis: np.ndarray, cutoff: float = 0.0) -> np.ndarray:
    """An orthonormal basis of `block` with the span of `basis` projected out (twice, for
    stability), without directions whose size is at most `cutoff`."""
    for _ in range(2):
        block = block - basis @ (basis.T @ block)
    u, s, _vt = np.linalg.svd(block, full_matrices=False)
    keep = s > max(cutoff, s[0] * 1e-13 if s.size else 0.0)
    return np.asarray(u[:, keep])
