"""Federated PCA against pooled `plink2 --pca 10 meanimpute biallelic-var-wts` (v2.00a3.5) on
the same variants: pooled MAF >= 0.05, thinned to one per 2 kb.

plink2 prints six significant digits; eigenvalues are also checked against the eigenvalues of
plink2's own relationship matrix (`--make-rel meanimpute bin`, doubles) to 1e-9. (plink2's
default, without meanimpute, divides each pair of individuals by the variants both have called;
that matrix is not a sum over nodes: see genofed.analysis.pca.)
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import scipy.linalg

from genofed.analysis.pca import PcaResult, PcaSolver, pca_scores, pca_statistics
from tests.analysis.fixtures import AnalysisCohort
from tests.external.analysis.plink_tables import (
    NodeInputs,
    alt_counts,
    node_inputs,
    plink2,
    pooled_variants,
    read_table,
    relative,
    run_rounds,
)

pytestmark = pytest.mark.external

COMPONENTS = 10


@dataclass(frozen=True)
class Pca:
    result: PcaResult
    nodes: list[NodeInputs]
    ids: list[str]
    out: Path


@pytest.fixture(scope="module")
def pca(analysis_cohort: AnalysisCohort, tmp_path_factory: pytest.TempPathFactory) -> Pca:
    out = tmp_path_factory.mktemp("pca")
    ids, keys = pooled_variants(analysis_cohort)
    counts = alt_counts(analysis_cohort, out / "freq")
    chosen, last = [], -(10**9)
    for i, (vid, key) in enumerate(zip(ids, keys, strict=True)):
        alt, total = counts[vid]
        if min(alt, total - alt) >= 0.05 * total and key[1] - last >= 2_000:
            chosen.append(i)
            last = key[1]
    (out / "chosen.txt").write_text("".join(f"{ids[i]}\n" for i in chosen))
    plink2("--pfile", analysis_cohort.plink_prefix, "--extract", out / "chosen.txt",
           "--pca", str(COMPONENTS), "meanimpute", "biallelic-var-wts",
           "--make-rel", "meanimpute", "square", "bin", "--out", out / "pca")
    nodes = node_inputs(analysis_cohort, [keys[i] for i in chosen])
    solver = PcaSolver(len(chosen), COMPONENTS)
    run_rounds(solver, [functools.partial(pca_statistics, node.dosages) for node in nodes])
    return Pca(solver.result(), nodes, [ids[i] for i in chosen], out)


def _printed(value: float) -> float:
    """Half a unit in the sixth significant digit (plink2's dtoa_g)."""
    return 0.5 * 10.0 ** (np.floor(np.log10(abs(value))) - 5)


def test_eigenvalues_match_plink2(pca: Pca) -> None:
    result = pca.result
    assert result.converged and result.rounds <= 30
    assert 200 <= result.variant_count == len(pca.ids)
    printed = np.loadtxt(pca.out / "pca.eigenval")
    assert all(abs(ours - theirs) <= _printed(theirs) * (1 + 1e-9)
               for ours, theirs in zip(result.eigenvalues, printed, strict=True))
    grm = np.fromfile(pca.out / "pca.rel.bin", dtype=np.float64)
    n = round(float(np.sqrt(grm.size)))
    exact = scipy.linalg.eigh(grm.reshape(n, n), eigvals_only=True,
                              subset_by_index=[n - COMPONENTS, n - 1])[::-1]
    assert relative(result.eigenvalues, exact).max() <= 1e-9


def test_variant_weights_match_plink2(pca: Pca) -> None:
    rows = read_table(pca.out / "pca.eigenvec.var")
    assert [row["ID"] for row in rows] == pca.ids
    assert [row["MAJ"] != row["ID"].split(":")[2] for row in rows] \
        == pca.result.alt_major.tolist()
    theirs = np.array([[float(row[f"PC{c + 1}"]) for c in range(COMPONENTS)] for row in rows])
    ours = pca.result.loadings
    for c in range(COMPONENTS):
        assert abs(np.corrcoef(ours[:, c], theirs[:, c])[0, 1]) >= 0.9999
        sign = np.sign(ours[:, c] @ theirs[:, c])
        assert np.abs(sign * ours[:, c] - theirs[:, c]).max() <= 1e-5 * np.abs(theirs).max()


def test_node_scores_match_plink2_eigenvectors(pca: Pca) -> None:
    rows = {row["IID"]: row for row in read_table(pca.out / "pca.eigenvec")}
    for node in pca.nodes:
        ours = pca_scores(node.dosages, pca.result)
        assert ours.shape == (len(node.sample_ids), COMPONENTS)
        theirs = np.array([[float(rows[s][f"PC{c + 1}"]) for c in range(COMPONENTS)]
                           for s in node.sample_ids])
        for c in range(COMPONENTS):
            assert abs(np.corrcoef(ours[:, c], theirs[:, c])[0, 1]) >= 0.9999
            sign = np.sign(ours[:, c] @ theirs[:, c])
            assert np.abs(sign * ours[:, c] - theirs[:, c]).max() <= 1e-6
