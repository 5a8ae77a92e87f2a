"""Federated logistic GWAS against pooled `plink2 --glm hide-covar` (v2.00a3.5) on SEIZURES with
covariates SEX and AGE, plink2's default Firth fallback included.

The job runs over the pooled variants with minor allele count >= 10 and every 8th rarer one
(constant variants, singletons); the three shares' statistics are summed in-process.

plink2 fits in single precision. Newton-Raphson results agree to 1e-4 relative (a coefficient
smaller than its standard error to 1e-4 of the standard error: plink2 knows it only to ~1e-7
absolute; a p-value below 1e-10 to 1e-5 of its logarithm, since float z errors grow by z^2 in
p). Firth fits are another matter: plink2 evaluates the modified score in floats, where the AGE
component carries rounding noise far above its convergence threshold (1e-4), so it stops where
its step halving gives up on noise (`hs_bail`), up to ~5e-4 relative away from the Firth
estimate. Ours reach the estimate; the Firth results are checked to 1e-3 (most to 1e-4), and at
plink2's own coefficients our summed statistics give plink2's standard errors to print
precision, so the difference is only where plink2 stopped.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from genofed.analysis import data
from genofed.analysis.firth import a1_transform, unpack
from genofed.analysis.logistic import LogisticResult, LogisticSolver, logistic_statistics
from tests.analysis.fixtures import AnalysisCohort
from tests.external.analysis.plink_tables import (
    NodeInputs,
    alt_counts,
    node_inputs,
    number,
    plink2,
    pooled_variants,
    read_table,
    relative,
    run_rounds,
)

GLM_TABLE = "glm.SEIZURES.glm.logistic.hybrid"


@dataclass(frozen=True)
class Glm:
    ids: list[str]
    mac: np.ndarray
    rows: list[dict[str, str]]
    result: LogisticResult
    nodes: list[NodeInputs]
    out: Path
    cohort: AnalysisCohort

    def column(self, name: str) -> np.ndarray:
        return np.array([number(row[name]) for row in self.rows])

    @property
    def plink_firth(self) -> np.ndarray:
        return np.array([row["FIRTH?"] == "Y" for row in self.rows])

    @property
    def errcode(self) -> np.ndarray:
        return np.array([row["ERRCODE"] for row in self.rows])


@pytest.fixture(scope="module")
def glm(analysis_cohort: AnalysisCohort, tmp_path_factory: pytest.TempPathFactory) -> Glm:
    out = tmp_path_factory.mktemp("glm")
    ids, keys = pooled_variants(analysis_cohort)
    counts = alt_counts(analysis_cohort, out / "freq")
    mac = np.array([min(alt, total - alt) for alt, total in (counts[v] for v in ids)])
    chosen = [i for i in range(len(ids)) if mac[i] >= 10 or i % 8 == 0]
    (out / "chosen.txt").write_text("".join(f"{ids[i]}\n" for i in chosen))
    plink2("--pfile", analysis_cohort.plink_prefix, "--extract", out / "chosen.txt",
           "--pheno", analysis_cohort.pheno, "--pheno-name", "SEIZURES",
           "--covar", analysis_cohort.covar, "--covar-name", "SEX,AGE",
           "--glm", "hide-covar", "cols=+beta", "--out", out / "glm")
    rows = read_table(out / GLM_TABLE)
    assert [row["ID"] for row in rows] == [ids[i] for i in chosen]
    nodes = node_inputs(analysis_cohort, [keys[i] for i in chosen])
    solver = LogisticSolver(len(chosen), 3)
    run_rounds(solver, [functools.partial(logistic_statistics, node.dosages, node.design,
                                          node.y) for node in nodes])
    return Glm([ids[i] for i in chosen], mac[chosen], rows, solver.result(), nodes, out,
               analysis_cohort)


@pytest.mark.external
def test_alleles_counts_and_flags_match_plink2(glm: Glm) -> None:
    result = glm.result
    assert [row["A1"] == row["REF"] for row in glm.rows] == result.a1_is_ref.tolist()
    assert result.a1_is_ref.any()  # some variants are tested for REF, the minor allele
    assert [int(row["OBS_CT"]) for row in glm.rows] == result.obs_ct.tolist()
    assert glm.plink_firth.tolist() == result.firth.tolist()
    # Errors agree; where plink2 gave up after 25 float Firth iterations we may converge.
    theirs = np.where(glm.errcode == "UNFINISHED", ".", glm.errcode)
    ours = np.where(result.error == "UNFINISHED", ".", result.error)
    assert theirs.tolist() == ours.tolist()
    assert (result.error == "CONST_OMITTED_ALLELE").any()
    assert np.isnan(result.beta[result.error == "CONST_OMITTED_ALLELE"]).all()
    assert result.rounds <= 40


@pytest.mark.external
def test_newton_raphson_matches_plink2(glm: Glm) -> None:
    result = glm.result
    keep = (glm.mac >= 10) & ~result.firth & ~np.isnan(glm.column("BETA"))
    assert keep.sum() > 4000
    beta, se, p = glm.column("BETA")[keep], glm.column("SE")[keep], glm.column("P")[keep]
    assert (np.abs(result.beta[keep] - beta) <= 1e-4 * np.maximum(np.abs(beta), se)).all()
    assert relative(result.se[keep], se).max() <= 1e-4
    small = p < 1e-10
    assert relative(result.p[keep][~small], p[~small]).max() <= 1e-4
    assert relative(result.neg_log10_p[keep][small], -np.log10(p[small])).max() <= 1e-5
    assert small.sum() > 10  # strong associations: the planted causal variants and LD partners


@pytest.mark.external
def test_firth_fallback_matches_plink2(glm: Glm) -> None:
    result = glm.result
    keep = (glm.mac >= 10) & result.firth & ~np.isnan(glm.column("BETA"))
    assert keep.sum() >= 50  # rare variants without case carriers: separation, then Firth
    worst = np.zeros(keep.sum())
    for name, ours in (("BETA", result.beta), ("SE", result.se), ("P", result.p)):
        gap = relative(ours[keep], glm.column(name)[keep])
        assert gap.max() <= 1e-3, name
        worst = np.maximum(worst, gap)
    assert (worst <= 1e-4).mean() >= 0.75


@pytest.mark.external
def test_firth_standard_errors_at_plink2s_own_coefficients(glm: Glm) -> None:
    """Summed node statistics at the coefficients plink2 stopped at give plink2's standard
    errors: the Firth information, A1 orientation and covariance are plink2's exactly."""
    result = glm.result
    firth = np.flatnonzero((glm.mac >= 10) & result.firth & (result.error == "."))
    (glm.out / "firth.txt").write_text("".join(f"{glm.ids[i]}\n" for i in firth))
    plink2("--pfile", glm.cohort.plink_prefix, "--extract", glm.out / "firth.txt",
           "--pheno", glm.cohort.pheno, "--pheno-name", "SEIZURES",
           "--covar", glm.cohort.covar, "--covar-name", "SEX,AGE",
           "--glm", "intercept", "cols=+beta", "--out", glm.out / "full")
    coef: dict[str, dict[str, float]] = {}
    for row in read_table(glm.out / GLM_TABLE.replace("glm.", "full.", 1)):
        coef.setdefault(row["ID"], {})[row["TEST"]] = number(row["BETA"])
    coef_a1 = np.array([[coef[glm.ids[i]][test] for test in ("INTERCEPT", "ADD", "SEX", "AGE")]
                        for i in firth])
    m = a1_transform(result.a1_is_ref[firth], 4)
    request = {"variants": firth, "coef": np.einsum("mji,mj->mi", m, coef_a1),
               "firth": np.ones(len(firth))}
    info = sum(logistic_statistics(node.dosages, node.design, node.y, request)["info"]
               for node in glm.nodes)
    covariance = np.linalg.inv(m @ unpack(np.asarray(info), 4, 2) @ m.transpose(0, 2, 1))
    plink_se = glm.column("SE")[firth]
    assert relative(np.sqrt(covariance[:, 1, 1]), plink_se).max() <= 2e-5


@pytest.mark.external
def test_quasi_separation_as_plink2(tmp_path: Path) -> None:
    """A small cohort built to separate: plink2's Newton-Raphson runs out of iterations on
    quasi-complete separation (UNFINISHED, no Firth), carriers only among cases go to Firth,
    and a variant whose ALT is the major allele is tested for REF; split over two nodes."""
    rng = np.random.default_rng(5)
    n = 400
    sex = rng.integers(1, 3, n).astype(float)
    age = rng.integers(20, 80, n).astype(float)
    y = (rng.random(n) < 0.35).astype(float)
    case = y == 1
    quasi = np.where(case, rng.choice([1, 2], n, p=[0.7, 0.3]), rng.choice([0, 1], n))
    only_cases = np.zeros(n)
    only_cases[np.flatnonzero(case)[:6]] = 1
    missing = rng.binomial(2, 0.45, n).astype(float)
    missing[rng.choice(n, 20, replace=False)] = np.nan
    genotypes = np.array([quasi, 2.0 - quasi, rng.binomial(2, 0.3, n), only_cases, missing,
                          2.0 - rng.binomial(2, 0.2, n)], dtype=float)
    samples = [f"S{i}" for i in range(n)]
    lines = ["##fileformat=VCFv4.2", "##contig=<ID=20>",
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                        *samples])]
    for v, g in enumerate(genotypes):
        calls = ["./." if np.isnan(x) else ("0/0", "0/1", "1/1")[int(x)] for x in g]
        lines.append("\t".join(["20", str(100 * (v + 1)), f"v{v}", "A", "C", ".", ".", ".", "GT",
                                *calls]))
    (tmp_path / "qs.vcf").write_text("\n".join(lines) + "\n")
    (tmp_path / "pheno.tsv").write_text("#FID\tIID\tY\n" + "".join(
        f"{s}\t{s}\t{int(y[i]) + 1}\n" for i, s in enumerate(samples)))
    (tmp_path / "covar.tsv").write_text("#FID\tIID\tSEX\tAGE\n" + "".join(
        f"{s}\t{s}\t{int(sex[i])}\t{age[i]}\n" for i, s in enumerate(samples)))
    plink2("--vcf", tmp_path / "qs.vcf", "--double-id", "--pheno", tmp_path / "pheno.tsv",
           "--pheno-name", "Y", "--covar", tmp_path / "covar.tsv", "--covar-name", "SEX,AGE",
           "--glm", "hide-covar", "cols=+beta", "--out", tmp_path / "qs")
    rows = read_table(tmp_path / "qs.Y.glm.logistic.hybrid")
    design = np.column_stack([np.ones(n), sex, age])
    nodes = []
    for part in (slice(0, 150), slice(150, n)):
        dosages = data.Dosages(da.from_array(genotypes[:, part], chunks=(4, 100)),
                               np.ones(len(genotypes), dtype=bool))
        nodes.append(functools.partial(logistic_statistics, dosages, design[part], y[part]))
    solver = LogisticSolver(len(genotypes), 3)
    run_rounds(solver, nodes)
    result = solver.result()
    assert [row["ERRCODE"] for row in rows] == result.error.tolist()
    assert result.error[:2].tolist() == ["UNFINISHED"] * 2
    assert [row["FIRTH?"] == "Y" for row in rows] == result.firth.tolist() \
        == [False, False, False, True, False, False]
    assert [row["A1"] == "A" for row in rows] == result.a1_is_ref.tolist()
    assert result.a1_is_ref[[1, 5]].all()
    assert [int(row["OBS_CT"]) for row in rows] == result.obs_ct.tolist()
    for i, row in enumerate(rows):
        if row["ERRCODE"] == ".":
            tolerance = 1e-3 if result.firth[i] else 1e-4
            assert abs(result.beta[i] / number(row["BETA"]) - 1) <= tolerance
            assert abs(result.se[i] / number(row["SE"]) - 1) <= tolerance
            assert abs(result.p[i] / number(row["P"]) - 1) <= tolerance


def test_results_do_not_depend_on_how_individuals_are_split() -> None:
    """The same individuals over one, three or four nodes give the same fits, rounds and
    errors. Firth fits (here of every variant, plink2's `firth` modifier) meet penalised
    log-likelihood ties near convergence, which must not be decided by how the sums happened
    to round (firth.LOGLIK_TIE; without it these fits differ by ~1e-7)."""
    rng = np.random.default_rng(3)
    n = 300
    design = np.column_stack([np.ones(n), rng.integers(1, 3, n), rng.integers(20, 80, n)])
    y = (rng.random(n) < 0.3).astype(float)
    rare = np.zeros((150, n))
    for row in rare:
        row[rng.choice(n, rng.integers(1, 4), replace=False)] = 1.0
    genotypes = np.vstack([rare, rng.binomial(2, 0.3, (20, n)).astype(float)])
    results = []
    for cuts in ((0, n), (0, 37, 150, n), (0, 7, 200, 211, n)):
        nodes = []
        for lo, hi in itertools.pairwise(cuts):
            dosages = data.Dosages(da.from_array(genotypes[:, lo:hi], chunks=(64, 64)),
                                   np.ones(len(genotypes), dtype=bool))
            nodes.append(functools.partial(logistic_statistics, dosages, design[lo:hi],
                                           y[lo:hi]))
        solver = LogisticSolver(len(genotypes), 3, firth="always")
        run_rounds(solver, nodes)
        results.append(solver.result())
    first = results[0]
    assert first.firth.all() and (first.error == ".").mean() > 0.9
    for other in results[1:]:
        assert other.rounds == first.rounds
        assert other.error.tolist() == first.error.tolist()
        assert np.allclose(other.beta, first.beta, rtol=1e-10, equal_nan=True)
        assert np.allclose(other.se, first.se, rtol=1e-10, equal_nan=True)
