"""The demo's cohorts: one simulated population history cut into the four datasets, simulated
again only when the seed, length or scale changes."""

from __future__ import annotations

import gzip
from pathlib import Path

from genofed.demo.network import NODES, build_cohorts
from genofed.sim import read_populations
from genofed.store.metadata import load_metadata

DATASETS = [dataset for node in NODES for dataset in node.datasets]
SCALE, LENGTH_MB = 0.1, 0.05


def _sites(vcf: Path) -> list[tuple[str, ...]]:
    with gzip.open(vcf, "rt", encoding="ascii") as handle:
        return [tuple(line.split("\t", 5)[:5]) for line in handle if not line.startswith("#")]


def _build(cohorts: Path, seed: int) -> list[str]:
    lines: list[str] = []
    build_cohorts(cohorts, seed=seed, length_mb=LENGTH_MB, scale=SCALE, report=lines.append)
    return lines


def test_datasets_are_cut_from_one_history_and_rebuilt_for_a_new_seed(tmp_path: Path) -> None:
    cohorts = tmp_path / "cohorts"
    lines = _build(cohorts, seed=5)
    report = " ".join(lines)
    # At scale 0.1 every dataset has its floor of 20 individuals, but fi-biobank's 24.
    assert "simulated one population history (seed 5): 104 individuals (YRI 20, CEU 84)" \
        in report
    assert ("split into fi-biobank (24 CEU), fi-reference (20 CEU), se-cohort (20 CEU), "
            "se-register (20 CEU), nl-diverse (20 YRI)") in report

    pooled_sites = _sites(cohorts / "pooled" / "cohort.vcf.gz")
    seen: set[str] = set()
    for dataset in DATASETS:
        directory = cohorts / dataset.id
        assert _sites(directory / "cohort.vcf.gz") == pooled_sites
        labels = read_populations(directory / "populations.tsv")
        assert set(labels.values()) == {dataset.population}
        assert len(labels) == dataset.scaled_samples(SCALE)
        assert not seen & set(labels)  # no individual is in two datasets
        seen |= set(labels)
        metadata = load_metadata(directory / "dataset.json")
        assert metadata.id == dataset.id and metadata.access_tier.value == dataset.tier

    first = {d.id: (cohorts / d.id / "cohort.vcf.gz").stat().st_mtime_ns for d in DATASETS}
    again = _build(cohorts, seed=5)
    assert again == [f"cohorts of seed 5 reused from {cohorts}"]
    assert first == {d.id: (cohorts / d.id / "cohort.vcf.gz").stat().st_mtime_ns
                     for d in DATASETS}

    other = " ".join(_build(cohorts, seed=6))
    assert "simulated one population history (seed 6)" in other
    assert _sites(cohorts / "fi-biobank" / "cohort.vcf.gz") != pooled_sites
    assert _sites(cohorts / "nl-diverse" / "cohort.vcf.gz") == \
        _sites(cohorts / "pooled" / "cohort.vcf.gz")
