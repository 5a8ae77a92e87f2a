"""Linear-regression statistics from three nodes, summed and solved, equal pooled `plink2 --glm
hide-covar` (LDL ~ ADD + SEX + AGE): beta, SE, p, OBS_CT and the ERRCODE of every variant; a
covariate constant in the cohort is left out as plink2 leaves it out; the checks and the t
distribution on constructed cases."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

from genofed.analysis import data, linear
from genofed.analysis.linear import MAX_CORR
from genofed.analysis.spec import Trait
from tests.analysis.fixtures import LDL, AnalysisCohort
from tests.external.analysis.plink import (
    plink2,
    printed_mismatches,
    pvar_keys,
    read_table,
    share_cohort,
)


@dataclass(frozen=True)
class Run:
    result: linear.LinearResult
    summed: dict[str, np.ndarray]
    glm: dict[str, np.ndarray]


def _federated(cohort: AnalysisCohort, keys: list[tuple[str, int, str, str]],
               females_only: bool = False) -> dict[str, np.ndarray]:
    summed: dict[str, np.ndarray] = {}
    for share in cohort.shares:                 # each node's side, summed in-process
        people = share_cohort(share)
        if females_only:
            people = people.subset(people.sex == 2)
        y = people.trait(Trait(measurement=LDL))
        design = np.column_stack([np.ones(len(people)), people.covariate("sex"),
                                  people.covariate("age")])
        keep = np.isfinite(y) & np.isfinite(design).all(axis=1)   # as plink2 drops them
        people = people.subset(keep)
        rows = data.site_rows(people.dataset, keys)
        stats = linear.linear_statistics(data.dosages(people, rows), design[keep], y[keep])
        summed = {k: summed[k] + v for k, v in stats.items()} if summed else stats
    return summed


def _glm(cohort: AnalysisCohort, out: Path, *extra: str) -> dict[str, np.ndarray]:
    plink2("--pfile", cohort.plink_prefix, *extra, "--pheno", cohort.pheno, "--pheno-name",
           "LDL", "--covar", cohort.covar, "--covar-name", "SEX,AGE", "--glm", "hide-covar",
           "cols=+a1freq", out=out)
    return read_table(Path(f"{out}.LDL.glm.linear"))


@pytest.fixture(scope="module")
def pooled(analysis_cohort: AnalysisCohort, tmp_path_factory: pytest.TempPathFactory) -> Run:
    summed = _federated(analysis_cohort, pvar_keys(analysis_cohort.plink_prefix))
    glm = _glm(analysis_cohort, tmp_path_factory.mktemp("glm") / "pooled")
    return Run(linear.solve_linear(summed, 3), summed, glm)


@pytest.mark.external
def test_linear_equals_plink_glm(pooled: Run) -> None:
    result, glm = pooled.result, pooled.glm
    assert np.array_equal(result.obs_count, glm["OBS_CT"].astype(np.int64))
    assert result.error_labels() == glm["ERRCODE"].tolist()
    alt = pooled.summed["g_cross"][:, 0]
    mac = np.minimum(alt, 2 * result.obs_count - alt)
    compared = (glm["ERRCODE"] == ".") & (mac >= 10)
    assert compared.sum() > 4000
    # plink2 reports the non-major allele: REF where ALT is the commoner one.
    sign = np.where(glm["A1"] == glm["ALT"], 1.0, -1.0)
    assert (sign < 0).any()
    a1_freq = np.where(sign > 0, result.alt_freq, 1 - result.alt_freq)
    for ours, column in ((result.beta * sign, "BETA"), (result.se, "SE"),
                         (result.t * sign, "T_STAT"), (result.p, "P"), (a1_freq, "A1_FREQ")):
        bad = printed_mismatches(ours[compared], glm[column][compared])
        assert bad.size == 0, (column, ours[compared][bad[:5]], glm[column][compared][bad[:5]])
    assert np.nanmin(result.p[compared]) < 1e-50        # the planted effects are found


@pytest.mark.external
def test_constant_covariate_is_left_out_as_plink2_does(
        analysis_cohort: AnalysisCohort, tmp_path: Path) -> None:
    keys = pvar_keys(analysis_cohort.plink_prefix)[:1500]
    result = linear.solve_linear(_federated(analysis_cohort, keys, females_only=True), 3)
    glm = _glm(analysis_cohort, tmp_path / "females", "--keep-females")
    assert result.excluded_covariates == (1,)           # sex, constant among females
    assert result.phenotype_error is None
    assert "Excluding constant covariate 'SEX'" in (tmp_path / "females.log").read_text()
    glm = {name: column[:len(keys)] for name, column in glm.items()}
    assert np.array_equal(result.obs_count, glm["OBS_CT"].astype(np.int64))
    assert result.error_labels() == glm["ERRCODE"].tolist()
    ok = glm["ERRCODE"] == "."
    sign = np.where(glm["A1"] == glm["ALT"], 1.0, -1.0)[ok]
    assert printed_mismatches(result.beta[ok] * sign, glm["BETA"][ok]).size == 0
    assert printed_mismatches(result.p[ok], glm["P"][ok]).size == 0


def _summed(design: np.ndarray, y: np.ndarray, genotypes: np.ndarray) -> dict[str, np.ndarray]:
    """The node statistics of a small in-memory cohort (genotypes: variants x individuals)."""
    dosages = data.Dosages(da.from_array(genotypes.astype(np.float64), chunks=(2, 7)),
                           np.ones(len(genotypes), dtype=bool))
    return linear.linear_statistics(dosages, design, y)


def test_plink2_checks_on_constructed_cases() -> None:
    rng = np.random.default_rng(3)
    n = 60
    age = rng.normal(50, 10, n)
    sex = rng.integers(1, 3, n).astype(float)
    y = rng.normal(size=n)
    collinear = np.column_stack([np.ones(n), age, 2 * age + 1])
    result = linear.solve_linear(_summed(collinear, y, rng.integers(0, 3, (3, n))), 3)
    assert result.phenotype_error is not None and "CORR_TOO_HIGH" in result.phenotype_error
    assert result.error_labels() == ["CORR_TOO_HIGH"] * 3

    fine = rng.integers(0, 3, n).astype(float)
    near = fine + rng.normal(0, 0.04, n)         # a covariate almost the genotype
    assert 0.99 < np.corrcoef(fine, near)[0, 1] < MAX_CORR
    genotypes = np.stack([np.ones(n),                                  # constant
                          2.0 * (sex == 2),                            # = a covariate
                          fine,
                          np.r_[np.full(n - 4, np.nan), [0.0, 1.0, 2.0, 1.0]]])  # 4 <= 4
    design = np.column_stack([np.ones(n), age, sex])
    result = linear.solve_linear(_summed(design, y, genotypes), 3)
    assert result.error_labels() == ["CONST_OMITTED_ALLELE", "CORR_TOO_HIGH", ".",
                                     "SAMPLE_CT<=PREDICTOR_CT"]
    assert result.obs_count.tolist() == [n, n, n, 4]
    assert np.isnan(result.beta[[0, 1, 3]]).all() and np.isfinite(result.p[2])
    # The regression that runs is ordinary least squares.
    x = np.column_stack([np.ones(n), fine, age, sex])
    beta, rss = np.linalg.lstsq(x, y, rcond=None)[:2]
    se = math.sqrt(rss[0] / (n - 4) * np.linalg.inv(x.T @ x)[1, 1])
    assert result.beta[2] == pytest.approx(beta[1], rel=1e-10)
    assert result.se[2] == pytest.approx(se, rel=1e-10)
    # A genotype explained by the covariates without any pair reaching 0.999: VIF > 50.
    design = np.column_stack([np.ones(n), age, near])
    result = linear.solve_linear(_summed(design, y, fine[None, :]), 3)
    assert result.error_labels() == ["VIF_TOO_HIGH"]


def test_t_distribution_p_values() -> None:
    t = np.array([0.0, 0.3, 1.0, 2.5, 10.0, 40.0])
    # df = 1 (Cauchy) and df = 2 have closed forms.
    cauchy = 1 - 2 / math.pi * np.arctan(np.abs(t))
    np.testing.assert_allclose(linear.t_two_sided_p(t, np.full(6, 1.0)), cauchy, rtol=1e-12)
    two = 1 - np.abs(t) / np.sqrt(2 + t * t)
    np.testing.assert_allclose(linear.t_two_sided_p(t[:-1], np.full(5, 2.0)), two[:-1],
                               rtol=1e-11)
    # Large df: the normal distribution (erfc), to the t distribution's O(1/df) difference.
    normal = np.array([math.erfc(abs(v) / math.sqrt(2)) for v in t[:4]])
    np.testing.assert_allclose(linear.t_two_sided_p(t[:4], np.full(4, 1e9)), normal,
                               rtol=1e-7)
    assert 0 < linear.t_two_sided_p(np.array([40.0]), np.array([3000.0]))[0] < 1e-200
