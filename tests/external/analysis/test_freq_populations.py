"""Frequencies per population: a cohort of CEU and YRI individuals from one simulated history,
its populations recorded at ingest, split over two nodes; each population's summed counts give
what `plink2 --freq` reports for that population's individuals of the pooled file (`--keep`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from genofed.analysis import data, freq
from genofed.analysis.spec import CohortFilter
from genofed.analysis.steps import group_matrix
from genofed.config.node import init_node
from genofed.ingest import ingest_dataset
from genofed.sim import simulate_cohort
from genofed.store.node import NodeStore
from tests.external.analysis.plink import plink2, printed_mismatches, pvar_keys, read_table
from tests.support import require_tool

pytestmark = pytest.mark.external

POPULATIONS = {"CEU": 160, "YRI": 100}
GROUPS = ["all", "pop:CEU", "pop:YRI"]


def _run(*args: str | Path) -> None:
    subprocess.run([str(a) for a in args], check=True, capture_output=True)


def test_each_populations_frequencies_equal_plink2_on_its_individuals(tmp_path: Path) -> None:
    for tool in ("bcftools", "plink2"):
        require_tool(tool)
    cohort = simulate_cohort(tmp_path / "mix", samples=sum(POPULATIONS.values()), seed=11,
                             length_mb=0.3, population=POPULATIONS, missing_rate=0.01)
    labels = dict(line.split("\t") for line in cohort.populations.read_text().splitlines()[1:])
    names = list(labels)
    prefix = tmp_path / "pooled"
    _run("bcftools", "norm", "-m-", "-Oz", "-o", tmp_path / "norm.vcf.gz", cohort.vcf)
    _run("plink2", "--vcf", tmp_path / "norm.vcf.gz", "--double-id", "--set-all-var-ids",
         "@:#:$r:$a", "--new-id-max-allele-len", "1000", "--make-pgen", "--out", prefix)
    keys = pvar_keys(prefix)
    # Two nodes, each with individuals of both populations; their counts summed.
    counts = np.zeros((len(keys), len(GROUPS), 4), dtype=np.int64)
    for part, own in enumerate((names[::2], names[1::2])):
        vcf = tmp_path / f"share-{part}.vcf.gz"
        _run("bcftools", "view", "-s", ",".join(own), "-Oz", "-o", vcf, cohort.vcf)
        populations = tmp_path / f"share-{part}.populations.tsv"
        populations.write_text("sample\tpopulation\n"
                               + "".join(f"{s}\t{labels[s]}\n" for s in own))
        node = tmp_path / f"node-{part}"
        init_node(node, node_id=f"node-{part}", country="FI")
        ingest_dataset(node, "mix", vcf, populations=populations, workers=1)
        selected = data.select(NodeStore.open(node).dataset("mix"), CohortFilter())
        rows = data.site_rows(selected.dataset, keys)
        counts += freq.genotype_counts(data.dosages(selected, rows),
                                       group_matrix(selected, GROUPS))
    table = freq.frequencies(counts)
    for column, (population, size) in enumerate(POPULATIONS.items(), start=1):
        keep = tmp_path / f"{population}.keep"
        keep.write_text("".join(f"{s}\t{s}\n" for s in names if labels[s] == population))
        theirs = read_table(plink2("--pfile", prefix, "--keep", keep, "--freq",
                                   out=tmp_path / population).with_suffix(".afreq"))
        assert counts[:, column].sum(axis=1).max() == size
        assert np.array_equal(table.obs_count[:, column], theirs["OBS_CT"].astype(np.int64))
        assert printed_mismatches(table.alt_freq[:, column], theirs["ALT_FREQS"]).size == 0
    # Not a vacuous split: the two populations' frequencies differ.
    assert np.nanmax(np.abs(table.alt_freq[:, 1] - table.alt_freq[:, 2])) > 0.3
