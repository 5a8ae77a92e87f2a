"""Genotype counts from three nodes, summed, give what plink2 reports on the pooled file:
`--geno-counts`, `--freq` (and `--freq counts`), `--hardy`, `--missing`; the HWE exact test also
on constructed genotype counts (every small table, ties included, and extremes)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from genofed.analysis import data, freq
from genofed.analysis.hwe import hwe_exact_p
from tests.analysis.fixtures import AnalysisCohort
from tests.external.analysis.plink import (
    plink2,
    printed_mismatches,
    pvar_keys,
    read_table,
    share_cohort,
)

pytestmark = pytest.mark.external


@dataclass(frozen=True)
class Pooled:
    counts: np.ndarray        # (variants, 3 groups: all, female, male, 4)
    lacking: np.ndarray       # variants one share lacks
    reports: dict[str, dict[str, np.ndarray]]


@pytest.fixture(scope="module")
def pooled(analysis_cohort: AnalysisCohort, tmp_path_factory: pytest.TempPathFactory) -> Pooled:
    keys = pvar_keys(analysis_cohort.plink_prefix)
    total = np.zeros((len(keys), 3, 4), dtype=np.int64)
    lacking = np.zeros(len(keys), dtype=bool)
    for share in analysis_cohort.shares:           # each node's side, summed in-process
        cohort = share_cohort(share)
        rows = data.site_rows(cohort.dataset, keys)
        lacking |= rows < 0
        groups = np.stack([np.ones(len(cohort), dtype=bool), cohort.sex == 2, cohort.sex == 1])
        total += freq.genotype_counts(data.dosages(cohort, rows), groups)
    out = tmp_path_factory.mktemp("freq")
    pfile = ("--pfile", analysis_cohort.plink_prefix)
    plink2(*pfile, "--freq", "--hardy", "--missing", "variant-only", "--geno-counts",
           out=out / "all")
    plink2(*pfile, "--freq", "counts", out=out / "counts")
    plink2(*pfile, "--keep-females", "--freq", out=out / "female")
    reports = {name: read_table(out / file) for name, file in [
        ("freq", "all.afreq"), ("gcount", "all.gcount"), ("hardy", "all.hardy"),
        ("vmiss", "all.vmiss"), ("acount", "counts.acount"), ("female", "female.afreq")]}
    return Pooled(total, lacking, reports)


def test_summed_counts_equal_plink_geno_counts(pooled: Pooled) -> None:
    gcount = pooled.reports["gcount"]
    expected = np.column_stack([gcount[c].astype(np.int64) for c in (
        "HOM_REF_CT", "HET_REF_ALT_CTS", "TWO_ALT_GENO_CTS", "MISSING_CT")])
    assert np.array_equal(pooled.counts[:, 0], expected)
    assert np.array_equal(pooled.counts[:, 1] + pooled.counts[:, 2], pooled.counts[:, 0])
    # The variants a share lacks are in the comparison, missing for its individuals.
    assert 0 < pooled.lacking.sum() < len(pooled.lacking)
    assert (pooled.counts[pooled.lacking, 0, freq.MISSING] >= 800).all()


def test_frequencies_equal_plink_freq(pooled: Pooled) -> None:
    table = freq.frequencies(pooled.counts)
    afreq, acount, female = (pooled.reports[n] for n in ("freq", "acount", "female"))
    assert np.array_equal(table.obs_count[:, 0], afreq["OBS_CT"].astype(np.int64))
    assert np.array_equal(table.alt_count[:, 0], acount["ALT_CTS"].astype(np.int64))
    assert printed_mismatches(table.alt_freq[:, 0], afreq["ALT_FREQS"]).size == 0
    assert printed_mismatches(table.alt_freq[pooled.lacking, 0],
                              afreq["ALT_FREQS"][pooled.lacking]).size == 0
    # A group: the females alone (plink2 --keep-females).
    assert np.array_equal(table.obs_count[:, 1], female["OBS_CT"].astype(np.int64))
    assert printed_mismatches(table.alt_freq[:, 1], female["ALT_FREQS"]).size == 0


def test_hardy_equals_plink_hardy(pooled: Pooled) -> None:
    table = freq.hardy(pooled.counts[:, 0])
    hardy = pooled.reports["hardy"]
    assert (hardy["A1"] == pooled.reports["gcount"]["REF"]).all()   # plink2: A1 = REF
    assert np.array_equal(table.hom_ref, hardy["HOM_A1_CT"].astype(np.int64))
    assert np.array_equal(table.het, hardy["HET_A1_CT"].astype(np.int64))
    assert np.array_equal(table.hom_alt, hardy["TWO_AX_CT"].astype(np.int64))
    assert printed_mismatches(table.observed_het, hardy["O(HET_A1)"]).size == 0
    assert printed_mismatches(table.expected_het, hardy["E(HET_A1)"]).size == 0
    assert printed_mismatches(table.p, hardy["P"]).size == 0
    assert (table.p < 1).sum() > 100                    # not a vacuous comparison


def test_missingness_equals_plink_missing(pooled: Pooled) -> None:
    table = freq.missingness(pooled.counts[:, 0])
    vmiss = pooled.reports["vmiss"]
    assert np.array_equal(table.missing_count, vmiss["MISSING_CT"].astype(np.int64))
    assert np.array_equal(table.obs_count, vmiss["OBS_CT"].astype(np.int64))
    assert printed_mismatches(table.f_miss, vmiss["F_MISS"]).size == 0


def _hwe_vcf(path: Path, tables: list[tuple[int, int, int]], samples: int) -> None:
    """One biallelic variant per (hom-ref, het, hom-alt) table, the rest of `samples` missing."""
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=1,length=100000000>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                        "FORMAT", *(f"s{i}" for i in range(samples))])]
    for pos, (hom_ref, het, hom_alt) in enumerate(tables, start=1):
        calls = ["0/0"] * hom_ref + ["0/1"] * het + ["1/1"] * hom_alt
        calls += ["./."] * (samples - len(calls))
        lines.append("\t".join(["1", str(pos * 10), f"v{pos}", "A", "G", ".", ".", ".", "GT",
                                *calls]))
    path.write_text("\n".join(lines) + "\n")


def test_hwe_exact_test_equals_plink_on_constructed_tables(tmp_path: Path) -> None:
    tables = [(a, b, c) for a in range(13) for b in range(13) for c in range(13)
              if a + b + c <= 12]                      # every small table: ties happen here
    rng = random.Random(5)
    for _ in range(150):
        n = rng.randint(13, 400)
        het = rng.randint(0, n)
        hom = rng.randint(0, n - het)
        tables.append((hom, het, n - het - hom))
    tables += [(200, 0, 200), (0, 400, 0), (399, 1, 0), (0, 0, 400), (100, 200, 100),
               (300, 0, 100), (1, 398, 1)]
    _hwe_vcf(tmp_path / "hwe.vcf", tables, samples=400)
    plink2("--vcf", tmp_path / "hwe.vcf", "--hardy", out=tmp_path / "hwe")
    hardy = read_table(tmp_path / "hwe.hardy")
    counts = np.array(tables)
    ours = hwe_exact_p(counts[:, 1], counts[:, 0], counts[:, 2])
    assert np.array_equal(hardy["HET_A1_CT"].astype(np.int64), counts[:, 1])
    assert printed_mismatches(ours, hardy["P"]).size == 0
    extreme = {table: p for table, p in zip(tables, ours, strict=True)}
    assert extreme[(200, 0, 200)] < 1e-80 and extreme[(0, 400, 0)] < 1e-80   # log scale
    assert extreme[(0, 0, 400)] == 1.0
    assert ours[counts.sum(axis=1) == 0].tolist() == [1.0]
