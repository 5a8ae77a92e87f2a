"""Federated jobs end to end: a researcher submits to the coordinator over HTTP, three served nodes
compute, mask and sign, the coordinator sums and solves, and the result files equal plink2 on
the pooled file (only variants whose pooled minor allele count reaches 10 are released)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genofed.analysis import data, prs
from genofed.analysis.client import HubClient
from genofed.analysis.spec import Trait
from tests.analysis.fixtures import LDL, SEIZURES, AnalysisNetwork
from tests.external.analysis.plink import (
    plink2,
    printed_mismatches,
    pvar_keys,
    read_table,
    share_cohort,
)
from tests.external.analysis.test_prs import _entries, _pgs_text

pytestmark = pytest.mark.external


def run_job(network: AnalysisNetwork, spec: dict[str, Any], out: Path,
            token: str | None = None) -> dict[str, Any]:
    with HubClient(network.hub, token or network.token()) as hub:
        job = hub.wait(hub.submit(spec)["id"], timeout=900)
        if job["state"] == "done":
            hub.download(job["id"], out)
    return job


def read_results(path: Path) -> dict[str, np.ndarray]:
    lines = path.read_text().splitlines()
    header = lines[0].split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    return {name: np.array([row[i] for row in rows]) for i, name in enumerate(header)}


def keyed(table: dict[str, np.ndarray], chrom: str, pos: str, ref: str,
          alt: str) -> dict[tuple[str, int, str, str], int]:
    return {(str(c).removeprefix("chr"), int(p), str(r), str(a)): i for i, (c, p, r, a) in
            enumerate(zip(table[chrom], table[pos], table[ref], table[alt], strict=True))}


def assert_equals_glm(gwas_ssf: Path, glm_linear: Path) -> None:
    """Every released variant's beta, SE, p and n in our GWAS-SSF file equal plink2 --glm's
    (within its printed rounding + 1e-6 relative), ALT as the effect allele."""
    glm = read_table(glm_linear)
    ours = read_results(gwas_ssf)
    theirs = keyed(glm, "#CHROM" if "#CHROM" in glm else "CHROM", "POS", "REF", "ALT")
    rows = np.array([theirs[key] for key in keyed(ours, "chromosome", "base_pair_location",
                                                  "other_allele", "effect_allele")])
    sign = np.where(glm["A1"][rows] == glm["ALT"][rows], 1.0, -1.0)
    beta = np.array([np.nan if v == "NA" else float(v) for v in ours["beta"]])
    ok = glm["ERRCODE"][rows] == "."
    assert ok.sum() > 3000
    assert printed_mismatches(beta[ok] * sign[ok], glm["BETA"][rows][ok]).size == 0
    for ours_column, theirs_column in (("standard_error", "SE"), ("p_value", "P")):
        values = np.array([np.nan if v == "NA" else float(v) for v in ours[ours_column]])
        printed = glm[theirs_column][rows][ok]
        bad = printed_mismatches(values[ok], printed)
        assert bad.size == 0, (ours_column, values[ok][bad[:5]], printed[bad[:5]])
    assert np.array_equal(ours["n"].astype(int), glm["OBS_CT"][rows].astype(int))


def test_allele_frequencies_equal_plink2(analysis_network: AnalysisNetwork,
                                         tmp_path: Path) -> None:
    job = run_job(analysis_network, {"type": "freq"}, tmp_path / "freq")
    assert job["state"] == "done", job["message"]
    assert sorted(job["participants"]) == sorted(analysis_network.node_ids)
    plink2("--pfile", analysis_network.cohort.plink_prefix, "--freq", "--hardy",
           out=tmp_path / "plink")
    afreq = read_table(tmp_path / "plink.afreq")
    ours = read_results(tmp_path / "freq" / "freq.tsv")
    everyone = ours["group"] == "all"
    ours = {k: v[everyone] for k, v in ours.items()}
    positions = np.array([identifier.split(":")[1] for identifier in afreq["ID"]])
    theirs = keyed({**afreq, "POS": positions}, "CHROM", "POS", "REF", "ALT")
    rows = [theirs[key] for key in keyed(ours, "chromosome", "base_pair_location", "ref",
                                         "alt")]
    assert len(rows) > 3000
    assert printed_mismatches(ours["alt_freq"].astype(float), afreq["ALT_FREQS"][rows]).size == 0
    assert np.array_equal(ours["obs_count"].astype(int), afreq["OBS_CT"][rows].astype(int))


def test_linear_gwas_equals_plink2_glm(analysis_network: AnalysisNetwork,
                                       tmp_path: Path) -> None:
    cohort = analysis_network.cohort
    job = run_job(analysis_network, {"type": "gwas-linear", "trait": {"measurement": LDL},
                                     "covariates": ["sex", "age"]}, tmp_path / "ldl")
    assert job["state"] == "done", job["message"]
    plink2("--pfile", cohort.plink_prefix, "--pheno", cohort.pheno, "--pheno-name", "LDL",
           "--covar", cohort.covar, "--covar-name", "SEX,AGE", "--glm", "hide-covar",
           "cols=+a1freq", out=tmp_path / "plink")
    assert_equals_glm(tmp_path / "ldl" / "gwas-LOINC_2089-1.tsv",
                      tmp_path / "plink.LDL.glm.linear")
    files = set(job["files"])
    assert {"gwas-LOINC_2089-1.tsv", "gwas-LOINC_2089-1.tsv-meta.yaml",
            "gwas-LOINC_2089-1-manhattan.png", "gwas-LOINC_2089-1-qq.png"} <= files


def test_polygenic_score_distribution_equals_the_pooled_scores(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    cohort = analysis_network.cohort
    keys = pvar_keys(cohort.plink_prefix)
    people = [share_cohort(share) for share in cohort.shares]
    lacking = {k for k, r in zip(keys, data.site_rows(people[2].dataset, keys), strict=True)
               if r < 0}
    text = _pgs_text(_entries(cohort, keys, lacking))
    job = run_job(analysis_network, {"type": "prs", "trait": {"hpo": SEIZURES},
                                     "prs": {"scoringFile": text, "bins": 20, "quantiles": 5}},
                  tmp_path / "prs")
    assert job["state"] == "done", job["message"]
    # The same scores computed where the data is (each equal to plink2 --score: test_prs).
    scoring = prs.parse_scoring_file(text)
    scores, status = [], []
    for person in people:
        matched = prs.match_variants(person.dataset, scoring)
        scores.append(prs.individual_scores(data.dosages(person, matched.rows),
                                            matched.effect_is_alt, scoring.weight).score_sum)
        status.append(person.trait(Trait(hpo=SEIZURES)))
    everyone = np.concatenate(scores)
    summary = read_results(tmp_path / "prs" / "prs-summary.tsv")
    assert summary["group"].tolist() == ["all", "female", "male"]
    assert int(summary["individuals"][0]) == len(everyone)
    assert float(summary["mean"][0]) == pytest.approx(everyone.mean(), rel=1e-9)
    assert float(summary["sd"][0]) == pytest.approx(everyone.std(ddof=1), rel=1e-9)
    quantiles = read_results(tmp_path / "prs" / "prs-quantiles.tsv")
    cases = np.concatenate(status) == 1
    lower = quantiles["score_from"].astype(float)
    upper = quantiles["score_to"].astype(float)
    inside = (everyone[:, None] >= lower) & (everyone[:, None] < upper)
    assert quantiles["cases"].astype(int).tolist() == inside[cases].sum(axis=0).tolist()
    assert quantiles["controls"].astype(int).tolist() == inside[~cases].sum(axis=0).tolist()
    assert float(quantiles["odds_ratio"][-1]) > 1.5
    assert {"prs-distribution.tsv", "prs-meta.yaml", "prs-histogram.png"} <= set(job["files"])


def _floats(column: np.ndarray) -> np.ndarray:
    return np.array([np.nan if v in ("NA", ".") else float(v) for v in column])


def test_logistic_gwas_equals_plink2_glm_with_firth_fallback(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    """Tolerances as test_logistic explains (plink2 fits in single precision): Newton-Raphson
    fits within 1e-4, Firth fits within 1e-3 (most within 1e-4)."""
    cohort = analysis_network.cohort
    job = run_job(analysis_network, {"type": "gwas-logistic", "trait": {"hpo": SEIZURES},
                                     "covariates": ["sex", "age"]}, tmp_path / "seizures")
    assert job["state"] == "done", job["message"]
    plink2("--pfile", cohort.plink_prefix, "--pheno", cohort.pheno, "--pheno-name",
           "SEIZURES", "--covar", cohort.covar, "--covar-name", "SEX,AGE", "--glm",
           "hide-covar", "cols=+beta,+a1freq,+firth", out=tmp_path / "plink")
    glm = read_table(tmp_path / "plink.SEIZURES.glm.logistic.hybrid")
    ours = read_results(tmp_path / "seizures" / "gwas-HP_0002069.tsv")
    theirs = keyed(glm, "#CHROM" if "#CHROM" in glm else "CHROM", "POS", "REF", "ALT")
    rows = np.array([theirs[key] for key in keyed(ours, "chromosome", "base_pair_location",
                                                  "other_allele", "effect_allele")])
    assert np.array_equal(ours["n"].astype(int), glm["OBS_CT"][rows].astype(int))
    sign = np.where(glm["A1"][rows] == glm["ALT"][rows], 1.0, -1.0)
    beta, se, p = (_floats(glm[c][rows]) for c in ("BETA", "SE", "P"))
    our_beta, our_se, our_p = (_floats(ours[c]) for c in ("beta", "standard_error", "p_value"))
    assert np.array_equal(np.isnan(beta), np.isnan(our_beta))
    fitted = ~np.isnan(beta)
    firth = glm["FIRTH?"][rows] == "Y"
    newton = fitted & ~firth
    assert newton.sum() > 3000 and (fitted & firth).sum() > 20
    gap = np.abs(our_beta * sign - beta)
    assert (gap[newton] <= 1e-4 * np.maximum(np.abs(beta), se)[newton]).all()
    assert (np.abs(our_se - se)[newton] <= 1e-4 * se[newton]).all()
    large = newton & (p >= 1e-10)
    assert (np.abs(our_p - p)[large] <= 1e-4 * p[large]).all()
    small = newton & (p < 1e-10)
    assert (np.abs(np.log10(our_p[small]) - np.log10(p[small]))
            <= 1e-5 * -np.log10(p[small])).all()
    both = fitted & firth
    assert (np.abs(our_beta * sign - beta)[both] <= 1e-3 * np.abs(beta[both])).all()
    assert (np.abs(our_se - se)[both] <= 1e-3 * se[both]).all()
    assert "odds_ratio" in ours
    meta = (tmp_path / "seizures" / "gwas-HP_0002069.tsv-meta.yaml").read_text()
    assert "case_count" in meta and "firth_fallback" in meta


def test_pca_equals_plink2_on_the_same_variants(analysis_network: AnalysisNetwork,
                                                tmp_path: Path) -> None:
    cohort = analysis_network.cohort
    job = run_job(analysis_network, {"type": "pca", "pca": {"components": 5}},
                  tmp_path / "pca")
    assert job["state"] == "done", job["message"]
    loadings = read_results(tmp_path / "pca" / "pca-loadings.tsv")
    ids = [f"{c}:{p}:{r}:{a}" for c, p, r, a in zip(
        loadings["chromosome"], loadings["base_pair_location"], loadings["ref"],
        loadings["alt"], strict=True)]
    assert len(ids) > 200
    (tmp_path / "chosen.txt").write_text("".join(f"{i}\n" for i in ids))
    plink2("--pfile", cohort.plink_prefix, "--extract", tmp_path / "chosen.txt", "--pca", "5",
           "meanimpute", "biallelic-var-wts", out=tmp_path / "plink")
    theirs = np.loadtxt(tmp_path / "plink.eigenval")
    ours = read_results(tmp_path / "pca" / "pca-eigenvalues.tsv")["eigenvalue"].astype(float)
    assert printed_mismatches(ours, theirs.astype(str)).size == 0
    weights = read_table(tmp_path / "plink.eigenvec.var")
    order = {identifier: i for i, identifier in enumerate(weights["ID"])}
    rows = np.array([order[i] for i in ids])
    for c in range(5):
        mine = loadings[f"pc{c + 1}"].astype(float)
        plinks = weights[f"PC{c + 1}"][rows].astype(float)
        assert abs(np.corrcoef(mine, plinks)[0, 1]) >= 0.9999
    # Each node kept its individuals' scores for later jobs (they never left it).
    for share in cohort.shares:
        scores = share.node / "analysis" / "scores" / job["id"] / f"{share.dataset}.npz"
        assert scores.is_file()
