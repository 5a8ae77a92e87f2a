"""The memory-mapped sites index answers exactly what the Parquet sites table holds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from genofed.store import Dataset, NodeStore, layout
from genofed.store.site_columns import SiteColumns, StringColumn
from tests.support import Cohort


@pytest.fixture(scope="module")
def ds(ingested: Path, cohort: Cohort) -> Dataset:
    return NodeStore.open(ingested).dataset(cohort.dataset_id)


@pytest.fixture(scope="module")
def parquet(ds: Dataset) -> pa.Table:
    return pq.read_table(ds.path / layout.SITES)


def test_the_index_is_mapped_not_loaded(ds: Dataset) -> None:
    assert (ds.path / layout.SITES_INDEX / "index.json").is_file()
    pos = ds.site_column("pos")
    assert pos.dtype == np.int32 and pos.base is not None  # a view of the mapped file
    assert isinstance(ds.site_strings("ref"), StringColumn)


def test_every_column_equals_the_parquet_table(ds: Dataset, parquet: pa.Table) -> None:
    whole = ds.site_table(slice(None))
    assert whole.schema.names == parquet.schema.names
    for name in parquet.schema.names:
        ours, theirs = whole.column(name), parquet.column(name)
        if name == "contig":
            ours, theirs = ours.cast(pa.string()), theirs.cast(pa.string())
        assert ours.type == theirs.type, name
        assert ours.to_pylist() == theirs.to_pylist(), name


def test_rows_picked_in_any_order_match(ds: Dataset, parquet: pa.Table) -> None:
    rng = np.random.default_rng(7)
    rows = rng.choice(parquet.num_rows, size=200, replace=True)
    picked = ds.site_table(rows)
    expected = parquet.take(pa.array(rows))
    for name in ("pos", "id", "ref", "alt", "variant_index", "ac", "an", "af"):
        assert picked.column(name).to_pylist() == expected.column(name).to_pylist(), name
    refs = ds.site_strings("ref")
    assert refs[int(rows[0])] == expected.column("ref")[0].as_py()
    assert refs[rows].tolist() == expected.column("ref").to_pylist()
    assert refs[-1] == parquet.column("ref")[-1].as_py()


def test_point_and_range_lookups_equal_a_scan(ds: Dataset, parquet: pa.Table) -> None:
    positions = np.asarray(parquet.column("pos").to_numpy())
    ends = np.asarray(parquet.column("end").to_numpy())
    rng = np.random.default_rng(11)
    for pos in [*rng.choice(positions, 50), 0, 1, 2**31 - 2]:
        lo, hi, mask = ds.site_rows("chr20", int(pos))
        assert np.arange(lo, hi)[mask].tolist() == np.flatnonzero(positions == pos).tolist()
    for start in rng.choice(positions, 30):
        end = int(start) + int(rng.integers(0, 5_000))
        found = ds.sites_in_range("20", int(start), end)
        expected = np.flatnonzero((positions <= end) & (ends >= start))
        assert found.column("pos").to_pylist() == positions[expected].tolist()
        assert pc.all(pc.greater_equal(found.column("end"), int(start))).as_py() in (True, None)


def test_a_version_without_an_index_reads_the_same(ds: Dataset, tmp_path: Path) -> None:
    """Versions written before the index existed hold their sites in memory instead."""
    copy = tmp_path / "v1"
    shutil.copytree(ds.path, copy, ignore=shutil.ignore_patterns(layout.SITES_INDEX, "files",
                                                                   "genotypes.zarr"))
    old = Dataset(copy)
    assert not (copy / layout.SITES_INDEX).exists()
    assert old.site_table(slice(None)).equals(ds.site_table(slice(None)))
    position = int(ds.site_column("pos")[len(ds.site_column("pos")) // 2])
    assert old.sites_at("20", position).equals(ds.sites_at("20", position))
    assert old.sites_in_range("20", position, position + 10_000).equals(
        ds.sites_in_range("20", position, position + 10_000))


def test_an_empty_sites_table_has_an_empty_index(tmp_path: Path) -> None:
    from genofed.store.sites import write_sites

    tmp_path.joinpath("v").mkdir()
    assert write_sites(tmp_path / "v", ["1"], [], ["all"]) == 0
    columns = SiteColumns.open(tmp_path / "v" / layout.SITES_INDEX)
    assert columns.n_rows == 0 and "1" not in columns
    lo, hi, mask = columns.rows("1", 5)
    assert (lo, hi, len(mask)) == (0, 0, 0)
    assert columns.table(slice(None)).num_rows == 0


def test_contigs_without_rows_keep_the_codes_of_those_with_rows(tmp_path: Path) -> None:
    """Header contigs that no record names (chromosomes 1-22 declared, data on 3 only) still
    take their place in the contig codes: rows on 3 come back named 3."""
    from genofed.store.sites import SiteRows, write_sites

    pos = np.array([100, 200, 200], dtype=np.int32)
    rows = SiteRows(contig=np.full(3, 2, np.int32), pos=pos, end=pos.copy(),
                    ids=[".", "rs1", "."], refs=["A", "C", "C"], alts=["G", "T", "."],
                    variant_index=np.arange(3), allele_index=np.array([1, 1, 0], np.int8),
                    ac=np.array([[1], [2], [0]], np.int32), an=np.full((3, 1), 8, np.int32))
    tmp_path.joinpath("v").mkdir()
    write_sites(tmp_path / "v", ["1", "2", "3"], [rows], ["all"])
    for columns in (SiteColumns.open(tmp_path / "v" / layout.SITES_INDEX),
                    SiteColumns.from_table(pq.read_table(tmp_path / "v" / layout.SITES))):
        assert columns.contig_names == ["1", "2", "3"] and "1" not in columns
        lo, hi, _mask = columns.rows("chr3", 200)
        found = columns.table(slice(lo, hi))
        assert found.column("contig").cast(pa.string()).to_pylist() == ["3", "3"]
        assert found.column("id").to_pylist() == ["rs1", "."]
        assert found.column("alt").to_pylist() == ["T", "."]


def test_lookups_after_a_trim_read_the_same(ds: Dataset, parquet: pa.Table) -> None:
    """Trimming unmaps what lookups touched (kept in the page cache, not in the process);
    what the next lookups read is unchanged."""
    columns = SiteColumns.open(ds.path / layout.SITES_INDEX)
    positions = parquet.column("pos").to_pylist()
    before = [columns.table(slice(*columns.rows("20", p)[:2])) for p in positions[:40]]
    columns.trim()
    after = [columns.table(slice(*columns.rows("20", p)[:2])) for p in positions[:40]]
    assert all(a.equals(b) for a, b in zip(after, before, strict=True))
