"""Principal components as GWAS covariates: a PCA job leaves each node's scores of its own
individuals at that node, and a later linear GWAS names them (`pc1`, `pc2` of `pcaJob`). The
result equals plink2 --glm given the same scores as covariates: read here from the nodes' own
directories, as only the nodes can (the scores themselves equal plink2 --pca's eigenvectors:
test_pca.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from genofed.analysis.state import NodeAnalysisState
from genofed.config.node import NodePaths, load_config
from tests.analysis.fixtures import LDL, AnalysisNetwork
from tests.external.analysis.plink import plink2
from tests.external.analysis.test_jobs import assert_equals_glm, run_job

pytestmark = pytest.mark.external

COMPONENTS = 2


def node_scores(network: AnalysisNetwork, job: str) -> dict[str, np.ndarray]:
    """Each individual's kept PCA scores, by sample id, from every node's directory."""
    found: dict[str, np.ndarray] = {}
    for share in network.cohort.shares:
        state = NodeAnalysisState(NodePaths(share.node, load_config(share.node)).analysis)
        hashes, scores = state.scores(job, share.dataset)
        row_of = {h: i for i, h in enumerate(hashes.tolist())}
        for sample, hashed in zip(share.samples, NodeAnalysisState.hash_each(share.samples)
                                  .tolist(), strict=True):
            if hashed in row_of:
                found[sample] = scores[row_of[hashed]]
    return found


def test_gwas_with_principal_components_equals_plink2_given_the_same_scores(
        analysis_network: AnalysisNetwork, tmp_path: Path) -> None:
    cohort = analysis_network.cohort
    pca = run_job(analysis_network, {"type": "pca", "pca": {"components": COMPONENTS}},
                  tmp_path / "pca")
    assert pca["state"] == "done", pca["message"]
    scores = node_scores(analysis_network, pca["id"])
    assert len(scores) == sum(len(share.samples) for share in cohort.shares)
    lines = cohort.covar.read_text().splitlines()
    names = [f"PC{c + 1}" for c in range(COMPONENTS)]
    covar = tmp_path / "covar-pcs.tsv"
    covar.write_text("\n".join([lines[0] + "".join(f"\t{n}" for n in names)] + [
        line + "".join(f"\t{value!r}" for value in scores[line.split()[1]][:COMPONENTS].tolist())
        for line in lines[1:]]) + "\n")

    job = run_job(analysis_network, {
        "type": "gwas-linear", "trait": {"measurement": LDL},
        "covariates": ["sex", "age", *(n.lower() for n in names)], "pcaJob": pca["id"]},
        tmp_path / "gwas")
    assert job["state"] == "done", job["message"]
    plink2("--pfile", cohort.plink_prefix, "--pheno", cohort.pheno, "--pheno-name", "LDL",
           "--covar", covar, "--covar-name", ",".join(["SEX", "AGE", *names]), "--glm",
           "hide-covar", out=tmp_path / "plink")
    assert_equals_glm(tmp_path / "gwas" / "gwas-LOINC_2089-1.tsv",
                      tmp_path / "plink.LDL.glm.linear")
