"""The Python API later issues build on: lookups, genotype blocks, individual selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from genofed.ontology.hpo import hpo
from genofed.store import Dataset, NodeStore, UnknownDatasetError
from tests.support import Cohort, bcftools


@pytest.fixture(scope="module", params=["local", "s3"])
def node_dir(request: pytest.FixtureRequest) -> Path:
    """The node holding the cohort: its datasets on local disk, or in S3."""
    path: Path = request.getfixturevalue("ingested" if request.param == "local"
                                         else "ingested_s3")
    return path


@pytest.fixture(scope="module")
def ds(node_dir: Path, cohort: Cohort) -> Dataset:
    return NodeStore.open(node_dir).dataset(cohort.dataset_id)


def test_point_and_range_lookups_match_bcftools(ds: Dataset, cohort: Cohort) -> None:
    positions = ds.sites.column("pos").to_pylist()
    for pos in positions[::97]:
        expected = bcftools("view", "-H", "-r", f"20:{pos}-{pos}", cohort.vcf)
        starting_here = [line for line in expected.splitlines() if line.split("\t")[1] == str(pos)]
        alts = [alt for line in starting_here for alt in line.split("\t")[4].split(",")]
        for name in ("20", "chr20"):
            found = ds.sites_at(name, pos)
            assert found.column("alt").to_pylist() == alts
    lo, hi = positions[10], positions[60]
    in_range = ds.sites_in_range("chr20", lo, hi)
    records = bcftools("view", "-H", "-r", f"20:{lo}-{hi}", cohort.vcf).splitlines()
    assert in_range.num_rows == sum(len(r.split("\t")[4].split(",")) for r in records)
    assert ds.sites_in_range("21", 1, 10**9).num_rows == 0


def test_range_lookup_uses_overlap_semantics(node: Path, tmp_path: Path) -> None:
    from genofed.ingest import ingest_dataset
    from tests.edge_cases import WITH_CHR, write_variants

    files = write_variants(tmp_path, "edge", WITH_CHR)
    ingest_dataset(node, "edge", files["vcf.gz"])
    edge = NodeStore.open(node).dataset("edge")
    # chr1:400 AT spans 400-401: a range starting at 401 overlaps it, one at 402 does not.
    assert set(edge.sites_in_range("1", 401, 401).column("pos").to_pylist()) == {400}
    assert edge.sites_in_range("1", 402, 450).num_rows == 0
    assert edge.sites_at("M", 73).num_rows == 1 and edge.sites_at("chrMT", 73).num_rows == 1


def test_point_lookups_match_a_scan(ds: Dataset) -> None:
    """Point lookups (binary searches in the site index; their latency is measured by
    benchmarks/ingest.py) return exactly the rows a scan finds."""
    positions = ds.sites.column("pos").to_pylist()
    for pos in [*positions[:50], *positions[-50:], 1, 10**9]:
        found = ds.sites_at("20", pos)
        assert found.column("pos").to_pylist() == [p for p in positions if p == pos]


def test_genotype_block_matches_bcftools(ds: Dataset, cohort: Cohort) -> None:
    samples = ds.samples[5:12]
    block = ds.genotype_block(slice(20, 30), samples=samples)
    assert block.calls.shape == (10, 7, 2) and block.sample_ids == samples
    positions = ds.genotypes["variant_position"][20:30]
    for i, pos in enumerate(positions):
        text = bcftools("query", "-r", f"20:{pos}", "-s", ",".join(samples), "-f", "[%GT\t]\n",
                        cohort.vcf).splitlines()[0]
        expected = [[int(a) for a in gt.split("|")] for gt in text.strip().split("\t")]
        assert block.calls[i].tolist() == expected
    picked = ds.genotype_block([3, 1, 40], samples=samples[:2])
    assert picked.calls.tolist() == [ds.genotype_block(slice(v, v + 1), samples=samples[:2])
                                     .calls[0].tolist() for v in (3, 1, 40)]
    with pytest.raises(KeyError):
        ds.genotype_block(slice(0, 1), samples=["nobody"])


def test_few_row_reads_equal_zarr_python(ds: Dataset) -> None:
    """Small blocks are read straight from the compressed chunks (blosc_getitem); they must equal
    what zarr-python decodes, at chunk edges and for the last records too."""
    n = ds.manifest.n_records
    picked = np.random.default_rng(3).integers(0, n, 40).tolist()
    rows = sorted({0, 1, n // 3, n // 2, n - 2, n - 1, *picked})
    block = ds.genotype_block(rows)
    calls = np.asarray(ds.genotypes["call_genotype"][:])[rows]
    phased = np.asarray(ds.genotypes["call_genotype_phased"][:])[rows]
    assert len(rows) <= 64 and np.array_equal(block.calls, calls)
    assert np.array_equal(block.phased, phased) and phased.any()


def test_genotypes_are_vcf_zarr(ds: Dataset) -> None:
    import zarr

    group: Any = zarr.open_group(ds.stored.zarr_store("genotypes.zarr"), mode="r")
    assert group.attrs["vcf_zarr_version"] == "0.4"
    n, m = ds.manifest.n_records, ds.manifest.n_samples
    assert group["call_genotype"].shape == (n, m, 2)
    assert group["call_genotype_phased"][:].all()
    assert not group["call_genotype_mask"][:].any()
    # sample names live only in the encrypted individuals table; the array holds pseudonyms
    assert list(group["sample_id"][:]) == [f"sample-{i:06d}" for i in range(1, m + 1)]
    assert ds.samples[0] not in group.attrs["vcf_header"]
    assert str(group["variant_allele"][0, 0]) in {"A", "C", "G", "T"}
    assert group["call_genotype"].attrs["_ARRAY_DIMENSIONS"] == ["variants", "samples", "ploidy"]


def test_select_individuals(ds: Dataset, cohort: Cohort) -> None:
    packets = [json.loads(p.read_text()) for p in sorted(cohort.phenopackets.glob("*.json"))]

    def truth(predicate) -> list[str]:
        return sorted(p["subject"]["id"] for p in packets if predicate(p))

    def terms(p: dict[str, Any]) -> set[str]:
        return {f["type"]["id"] for f in p.get("phenotypicFeatures", []) if not f.get("excluded")}

    seizure_family = hpo().descendants("HP:0001250")
    assert "HP:0002069" in seizure_family
    assert sorted(ds.select_individuals(hpo="HP:0001250")) == truth(
        lambda p: terms(p) & seizure_family)
    assert sorted(ds.select_individuals(hpo="HP:0001250", include_descendants=False)) == truth(
        lambda p: "HP:0001250" in terms(p))
    assert ds.select_individuals(hpo="HP:0001250")  # the planted binary trait has cases
    assert sorted(ds.select_individuals(sex="female")) == truth(
        lambda p: p["subject"]["sex"] == "FEMALE")
    def age(p: dict[str, Any]) -> int:
        return int(p["subject"]["timeAtLastEncounter"]["age"]["iso8601duration"][1:-1])

    assert sorted(ds.select_individuals(sex="male", min_age=40, max_age=60)) == truth(
        lambda p: p["subject"]["sex"] == "MALE" and 40 <= age(p) <= 60)


def test_allele_frequencies_by_population(ds: Dataset) -> None:
    sites = ds.sites
    assert "pop_CEU" in ds.manifest.groups
    assert sites.column("ac_pop_CEU").to_pylist() == sites.column("ac").to_pylist()
    ac = np.asarray(sites.column("ac"))
    assert (np.asarray(sites.column("ac_female")) + np.asarray(sites.column("ac_male"))
            == ac).all()


def test_unknown_dataset_names_known_ones(node_dir: Path, cohort: Cohort) -> None:
    with pytest.raises(UnknownDatasetError, match=cohort.dataset_id):
        NodeStore.open(node_dir).dataset("nope")


def test_sql(ds: Dataset) -> None:
    result = ds.sql("SELECT count(*) AS n FROM sites WHERE af > 0.5")
    assert result.column("n")[0].as_py() == sum(1 for af in ds.sites.column("af").to_pylist()
                                                if af > 0.5)
