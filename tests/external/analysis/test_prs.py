"""Polygenic scores: each individual's score at a node equals `plink2 --score` on that node's
own data (mean imputation of missing calls, a variant the node lacks skipped, a mismatching
allele skipped); the distribution pooled over nodes in two rounds equals the one computed from
all individuals' scores at once; malformed scoring files are refused naming line and column."""

from __future__ import annotations

import random
import subprocess
from collections import Counter
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import pytest

from genofed.analysis import data, prs
from genofed.analysis.spec import Trait
from genofed.errors import InputError
from tests.analysis.fixtures import SEIZURES, AnalysisCohort
from tests.external.analysis.plink import (
    Key,
    plink2,
    printed_mismatches,
    pvar_keys,
    read_table,
    share_cohort,
)

HEADER = ["###PGS CATALOG SCORING FILE - see https://www.pgscatalog.org/downloads/",
          "#format_version=2.0", "##POLYGENIC SCORE (PGS) INFORMATION", "#pgs_id=PGS999999",
          "#pgs_name=genofed_test", "#genome_build=GRCh38"]
COLUMNS = ["chr_name", "chr_position", "effect_allele", "other_allele", "effect_weight"]


@dataclass(frozen=True)
class Entry:
    key: Key
    effect: str
    other: str
    weight: float


def _entries(cohort: AnalysisCohort, keys: list[Key], lacking: set[Key]) -> list[Entry]:
    """The binary trait's causal variants, common variants with small weights, one variant
    the NL node lacks, one split multi-allelic site, and one entry whose alleles match no
    site; effect alleles REF or ALT at random."""
    rng = random.Random(11)
    traits = cohort.truth["traits"]
    assert isinstance(traits, dict)
    causal = {(c["chrom"], c["pos"], c["ref"], c["alt"]): c["effect"]
              for c in traits["binary"]["causal_variants"]}
    sites = Counter(k[:2] for k in keys)
    single = [k for k in keys if sites[k[:2]] == 1 and k not in lacking]
    split = [k for k in keys if sites[k[:2]] > 1]
    chosen = {k: w for k, w in causal.items() if k in keys}
    for key in [*rng.sample(single, 44), sorted(lacking)[3], split[1]]:
        chosen.setdefault(key, rng.gauss(0, 0.1))
    entries = []
    for key, weight in chosen.items():
        flip = rng.random() < 0.4
        entries.append(Entry(key, key[2] if flip else key[3], key[3] if flip else key[2],
                             -weight if flip else weight))
    off = single[7]
    wrong = next(a for a in "ACGT" if a not in (off[2], off[3]))
    entries.append(Entry(off, wrong, off[2], 0.3))     # matches no site: skipped
    return entries


def _pgs_text(entries: list[Entry]) -> str:
    rows = ["\t".join([e.key[0], str(e.key[1]), e.effect, e.other, repr(e.weight)])
            for e in entries]
    return "\n".join([*HEADER, f"#variants_number={len(entries)}", "\t".join(COLUMNS),
                      *rows]) + "\n"


@dataclass(frozen=True)
class Node:
    scores: prs.IndividualScores
    cohort: data.Cohort
    sscore: dict[str, np.ndarray]
    entries: int                      # in the scoring file


@pytest.fixture(scope="module")
def nodes(analysis_cohort: AnalysisCohort,
          tmp_path_factory: pytest.TempPathFactory) -> list[Node]:
    out = tmp_path_factory.mktemp("prs")
    keys = pvar_keys(analysis_cohort.plink_prefix)
    cohorts = [share_cohort(share) for share in analysis_cohort.shares]
    rows = [data.site_rows(c.dataset, keys) for c in cohorts]
    lacking = {k for k, r in zip(keys, rows[2], strict=True) if r < 0}
    entries = _entries(analysis_cohort, keys, lacking)
    scoring = prs.parse_scoring_file(_pgs_text(entries))
    assert len(scoring) == len(entries) and scoring.genome_build == "GRCh38"
    # plink2's own scoring file: variant id (as the pooled .pvar names them), allele, weight.
    (out / "score.txt").write_text("".join(
        f"{e.key[0]}:{e.key[1]}:{e.key[2]}:{e.key[3]}\t{e.effect}\t{e.weight!r}\n"
        for e in entries))
    result = []
    for share, cohort in zip(analysis_cohort.shares, cohorts, strict=True):
        matched = prs.match_variants(cohort.dataset, scoring)
        scores = prs.individual_scores(data.dosages(cohort, matched.rows),
                                       matched.effect_is_alt, scoring.weight)
        split = out / f"{share.node_id}.vcf.gz"         # the node's own data, as plink2 reads it
        subprocess.run(["bcftools", "norm", "-m-", "-Oz", "-o", split, share.vcf], check=True,
                       capture_output=True)
        plink2("--vcf", split, "--double-id", "--set-all-var-ids", "@:#:$r:$a",
               "--new-id-max-allele-len", "1000", "--score", out / "score.txt", "1", "2", "3",
               "cols=nallele,denom,dosagesum,scoreavgs,scoresums",
               out=out / share.node_id)
        result.append(Node(scores, cohort, read_table(out / f"{share.node_id}.sscore"),
                           len(entries)))
    return result


@pytest.mark.external
def test_individual_scores_equal_plink2_score_at_each_node(nodes: list[Node]) -> None:
    denominators = set()
    for node in nodes:
        sscore, scores = node.sscore, node.scores
        assert sscore["IID"].tolist() == node.cohort.sample_ids
        assert np.array_equal(scores.allele_count, sscore["ALLELE_CT"].astype(np.int64))
        assert (sscore["DENOM"].astype(np.int64) == scores.denominator).all()
        assert (scores.allele_count < scores.denominator).any()        # missing calls imputed
        scale = 1e-12 * np.abs(node.scores.score_sum).max()
        for ours, column in ((scores.dosage_sum, "NAMED_ALLELE_DOSAGE_SUM"),
                             (scores.score_avg, "SCORE1_AVG"), (scores.score_sum, "SCORE1_SUM")):
            bad = printed_mismatches(ours, sscore[column], absolute=scale)
            assert bad.size == 0, (column, ours[bad[:5]], sscore[column][bad[:5]])
        denominators.add(scores.denominator)
    # The entry matching no site is skipped everywhere; the NL node lacks one more variant.
    fi, _se, nl = (node.scores for node in nodes)
    assert fi.variants_used == nodes[0].entries - 1
    assert nl.variants_used == fi.variants_used - 1 and len(denominators) == 2


def _status(cohort: data.Cohort) -> np.ndarray:
    return cohort.trait(Trait(hpo=SEIZURES))


@pytest.mark.external
def test_pooled_distribution_equals_direct_computation(nodes: list[Node]) -> None:
    bins, quantiles = 20, 5

    def groups(cohort: data.Cohort) -> np.ndarray:
        return np.stack([np.ones(len(cohort), dtype=bool), cohort.sex == 2])

    round1 = [prs.distribution_statistics(n.scores.score_sum, groups(n.cohort)) for n in nodes]
    edges = prs.histogram_edges(_sum(round1), bins)
    round2 = _sum([prs.distribution_statistics(n.scores.score_sum, groups(n.cohort),
                                               edges=edges, trait=_status(n.cohort))
                   for n in nodes])
    scores = np.concatenate([n.scores.score_sum for n in nodes])
    status = np.concatenate([_status(n.cohort) for n in nodes])
    everyone = np.concatenate([groups(n.cohort) for n in nodes], axis=1)
    direct = prs.distribution_statistics(scores, everyone, edges=edges, trait=status)
    assert round2.keys() == direct.keys()
    for key, value in direct.items():
        np.testing.assert_allclose(round2[key], value, rtol=1e-12, err_msg=key)
        assert round2[key].dtype == value.dtype

    pooled = prs.combine_distribution(round2, edges, bins=bins, quantiles=quantiles)
    np.testing.assert_allclose(pooled.mean, [scores.mean(), scores[everyone[1]].mean()],
                               rtol=1e-12)
    np.testing.assert_allclose(pooled.sd, [scores.std(ddof=1), scores[everyone[1]].std(ddof=1)],
                               rtol=1e-10)
    bounds = np.concatenate([[-np.inf], pooled.display_edges, [np.inf]])
    for g in range(2):
        chosen = scores[everyone[g]]
        expected = [((chosen >= lo) & (chosen < hi)).sum() for lo, hi in pairwise(bounds)]
        assert pooled.histogram[g].tolist() == expected

    assert pooled.quantile_edges is not None and pooled.auc is not None
    assert pooled.auc_bound is not None and pooled.odds_ratio is not None
    lo, hi = pooled.quantile_edges[:-1], pooled.quantile_edges[1:]
    inside = (scores[:, None] >= lo) & (scores[:, None] < hi)
    assert (inside.sum(axis=1) == 1).all()
    assert pooled.quantile_cases is not None and pooled.quantile_controls is not None
    assert pooled.quantile_cases.tolist() == inside[status == 1].sum(axis=0).tolist()
    assert pooled.quantile_controls.tolist() == inside[status == 0].sum(axis=0).tolist()
    finest = round2["histogram"][0].max() / len(scores)     # share of the fullest fine bin
    assert np.all(np.abs(inside.mean(axis=0) - 1 / quantiles) <= finest + 1e-12)
    a, b = pooled.quantile_cases, pooled.quantile_controls
    np.testing.assert_allclose(pooled.odds_ratio, a * b[0] / (b * a[0]), rtol=1e-12)
    assert pooled.odds_ratio[0] == 1.0 and pooled.odds_ratio[-1] > 1.5   # the score works
    assert pooled.or_lower is not None and pooled.or_upper is not None
    assert (pooled.or_lower[1:] < pooled.odds_ratio[1:]).all()
    assert (pooled.odds_ratio[1:] < pooled.or_upper[1:]).all()
    # AUC from the fine histogram: within its stated bound of the exact Mann-Whitney AUC.
    assert abs(pooled.auc - _exact_auc(scores[status == 1], scores[status == 0])) \
        <= pooled.auc_bound < 0.01


def _sum(dicts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: sum((d[key] for d in dicts[1:]), start=dicts[0][key]) for key in dicts[0]}


def _exact_auc(cases: np.ndarray, controls: np.ndarray) -> float:
    below = np.searchsorted(np.sort(controls), cases, side="left")
    ties = np.searchsorted(np.sort(controls), cases, side="right") - below
    return float((below + 0.5 * ties).sum() / (len(cases) * len(controls)))


GOOD = "\n".join([*HEADER, "\t".join(COLUMNS), "20\t63608\tA\tC\t0.71", "20\t64000\tG\t\t-0.2"])


@pytest.mark.parametrize(("text", "line", "field"), [
    (GOOD.replace("\t63608\t", "\t63x08\t"), 8, "chr_position"),
    (GOOD.replace("\tA\tC\t0.71", "\tA\tC\tbig"), 8, "effect_weight"),
    (GOOD.replace("\tA\tC\t0.71", "\tZ\tC\t0.71"), 8, "effect_allele"),
    (GOOD.replace("\tA\tC\t0.71", "\tA\tN-\t0.71"), 8, "other_allele"),
    (GOOD.replace("\tG\t\t-0.2", "\tG"), 9, "other_allele"),
    (GOOD.replace("effect_weight", "weight"), 7, "effect_weight"),
    (GOOD.replace("chr_position", "position"), 7, "chr_position"),
    (GOOD + "\n20\t63608\tA\tC\t0.1", 10, "effect_allele"),
    (GOOD.replace("20\t64000", "2 0\t64000"), 9, "chr_name"),
])
def test_malformed_scoring_files_are_refused_naming_line_and_column(
        text: str, line: int, field: str) -> None:
    with pytest.raises(InputError) as raised:
        prs.parse_scoring_file(text, name="PGS999999.txt")
    assert (raised.value.line, raised.value.field) == (line, field)
    assert str(raised.value).startswith(f"PGS999999.txt, line {line}, field {field}: ")


def test_scoring_file_formats() -> None:
    good = prs.parse_scoring_file(GOOD)
    assert good.pgs_id == "PGS999999" and not good.harmonized
    assert good.other_allele == ["C", None] and good.weight.tolist() == [0.71, -0.2]
    assert good.line.tolist() == [8, 9]
    harmonized = "\n".join([
        "#pgs_id=PGS000001", "#genome_build=GRCh37", "#HmPOS_build=GRCh38",
        "rsID\tchr_name\tchr_position\teffect_allele\teffect_weight\thm_chr\thm_pos",
        "rs1\t20\t100\tA\t0.5\t20\t150", "rs2\t20\t200\tC\t0.1\t\t"])
    parsed = prs.parse_scoring_file(harmonized)
    assert parsed.harmonized and parsed.genome_build == "GRCh38"
    assert parsed.position.tolist() == [150, -1]          # unmapped: never matches
    with pytest.raises(InputError, match="variants_number=3 but 2"):
        prs.parse_scoring_file(GOOD.replace("#genome_build", "#variants_number=3\n#g"))
    with pytest.raises(InputError, match="no column header"):
        prs.parse_scoring_file("#pgs_id=PGS1\n")
