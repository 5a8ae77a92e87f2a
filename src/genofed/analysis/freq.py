"""Genotype counts per variant and group (node side), and what plink2 derives from them
(coordinator side): allele frequencies (`--freq`), Hardy-Weinberg statistics (`--hardy`) and
missingness (`--missing`), for the pooled individuals of every node.

Node side, :func:`genotype_counts` returns an int64 array (variants, groups, 4) of
[hom-ref, het, hom-alt, missing] counts; its shape depends only on the job (its variants and
groups), so the arrays of all nodes, and of all datasets at a node, are summed elementwise.
A variant a dataset lacks is missing for all of its individuals (as in the pooled file
`bcftools merge` writes), so it adds to `missing` only.

Coordinator side, the functions take the summed counts with any leading shape (..., 4), e.g.
(variants, groups, 4) or one group's (variants, 4), and return arrays of that leading shape.
Calls are diploid (autosomes): plink2's haploid handling of chrX, chrY and MT is not mirrored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from dask.delayed import delayed

from genofed.analysis import data
from genofed.analysis.hwe import hwe_exact_p
from genofed.analysis.scheduling import compute

HOM_REF, HET, HOM_ALT, MISSING = range(4)


def genotype_counts(dosages: data.Dosages, groups: np.ndarray) -> np.ndarray:
    """[hom-ref, het, hom-alt, missing] counts per variant and group: int64 (variants, G, 4).

    `groups` is a (G, n) bool matrix over the cohort's individuals (row g: who is in group g;
    groups may overlap). Each Dask block is counted on its own (het, hom-alt and missing calls
    per variant and group; hom-ref the rest) and the blocks of a run of variants summed.
    """
    groups = np.asarray(groups)
    dosage = dosages.dosage
    variants, n = dosage.shape
    if groups.ndim != 2 or groups.shape[1] != n or groups.dtype != np.bool_:
        raise ValueError(f"groups must be a bool matrix (G, {n}); got {groups.dtype} "
                         f"{groups.shape}")
    g_count = groups.shape[0]
    if variants == 0 or n == 0:
        counts = np.zeros((variants, g_count, 4), dtype=np.int64)
        counts[..., MISSING] = groups.sum(axis=1)
        return counts
    source = dosages.codes if dosages.codes is not None else dosage
    starts = np.cumsum((0, *source.chunks[1]))
    parts = []
    for row in source.to_delayed():
        parts.append([delayed(_block_counts)(block, groups[:, starts[j]:starts[j + 1]])
                      for j, block in enumerate(row)])
    computed = compute(*[delayed(sum)(row) for row in parts])
    return np.concatenate(computed, axis=0).astype(np.int64)


def _block_counts(block: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """(variants, G, 4) counts of one block of calls (int8 ALT copies, -1 missing; or float
    dosages, NaN missing), columns the block's individuals: per call kind, one matrix product
    with the groups (float32 is exact for counts below 2**24)."""
    if block.dtype.kind == "f":
        block = np.where(np.isnan(block), -1, block).astype(np.int8)
    members = groups.T.astype(np.float32)
    out = np.empty((len(block), len(groups), 4), dtype=np.int64)
    for kind, code in ((HET, 1), (HOM_ALT, 2), (MISSING, -1)):
        out[:, :, kind] = np.rint((block == code).astype(np.float32) @ members)
    out[:, :, HOM_REF] = groups.sum(axis=1)[None, :] - out[:, :, 1:].sum(axis=2)
    return out


@dataclass(frozen=True)
class FrequencyTable:
    """Per variant (and group): plink2 `--freq` ALT_FREQS and OBS_CT, with the ALT allele
    count (`--freq counts`: ALT_CTS) and the genotype counts."""

    alt_freq: np.ndarray   # float64; NaN where nothing is observed (plink2 prints NaN)
    alt_count: np.ndarray  # int64
    obs_count: np.ndarray  # int64 allele observations: 2 x non-missing genotypes
    counts: np.ndarray     # int64 (..., 4): hom-ref, het, hom-alt, missing


def frequencies(counts: np.ndarray) -> FrequencyTable:
    """ALT allele frequencies from genotype counts (..., 4), as plink2 `--freq` computes them
    for diploid calls: ALT copies / (2 x non-missing genotypes)."""
    counts = _counts(counts)
    alt = counts[..., HET] + 2 * counts[..., HOM_ALT]
    observed = 2 * (counts[..., HOM_REF] + counts[..., HET] + counts[..., HOM_ALT])
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = alt / observed.astype(np.float64)
    return FrequencyTable(freq, alt, observed, counts)


@dataclass(frozen=True)
class HardyTable:
    """Per variant: plink2 `--hardy` O(HET_A1), E(HET_A1) and P (A1 = REF, as plink2 v2.00a3.5
    reports biallelic variants; the three values do not depend on which allele is A1)."""

    hom_ref: np.ndarray       # int64 (HOM_A1_CT)
    het: np.ndarray           # int64 (HET_A1_CT)
    hom_alt: np.ndarray       # int64 (TWO_AX_CT)
    observed_het: np.ndarray  # O(HET_A1): het / non-missing; NaN where nothing is observed
    expected_het: np.ndarray  # E(HET_A1): 2 p (1 - p)
    p: np.ndarray             # exact test (see :mod:`.hwe`)


def hardy(counts: np.ndarray) -> HardyTable:
    """Hardy-Weinberg statistics from one group's genotype counts (..., 4).

    E(HET_A1) is computed as plink2 `HardyReport` (plink2_misc.cc) does, from d = 2 x A1
    frequency: d (1 - d / 2), and exactly 0 when every genotype is hom-A1.
    """
    counts = _counts(counts)
    hom_ref, het, hom_alt = counts[..., HOM_REF], counts[..., HET], counts[..., HOM_ALT]
    n = (hom_ref + het + hom_alt).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recip = 1.0 / n
        observed = het * recip
        double_freq = (hom_ref * 2 + het) * recip
        expected = np.where(hom_ref == n, 0.0, double_freq * (1.0 - double_freq * 0.5))
    return HardyTable(hom_ref, het, hom_alt, observed, expected,
                      hwe_exact_p(het, hom_ref, hom_alt))


@dataclass(frozen=True)
class MissingTable:
    """Per variant: plink2 `--missing` variant report (.vmiss) MISSING_CT, OBS_CT, F_MISS."""

    missing_count: np.ndarray  # int64
    obs_count: np.ndarray      # int64: individuals considered (missing or not), as plink2's
    f_miss: np.ndarray         # float64 MISSING_CT / OBS_CT


def missingness(counts: np.ndarray) -> MissingTable:
    """Missing-call counts and rates from genotype counts (..., 4)."""
    counts = _counts(counts)
    total = counts.sum(axis=-1)
    missing = counts[..., MISSING]
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = missing / total.astype(np.float64)
    return MissingTable(missing, total, rate)


def _counts(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim < 1 or counts.shape[-1] != 4 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError(f"genotype counts must be integers (..., 4); got {counts.dtype} "
                         f"{counts.shape}")
    if np.any(counts < 0):
        raise ValueError("genotype counts must not be negative")
    return counts.astype(np.int64, copy=False)
