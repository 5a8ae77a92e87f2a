"""Reading one published version of a dataset: sites, genotypes, individuals.

Sites are held in memory as an Arrow table with per-contig sorted positions, so point and range
lookups are a binary search (microseconds) rather than a query-engine round trip; DuckDB is there
for ad-hoc SQL over the same Parquet (:meth:`Dataset.sql`).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genofed.store import zarr_v2
from genofed.store.layout import Manifest
from genofed.store.metadata import DatasetMetadata, load_metadata

#: Up to this many records, genotype_block reads rows straight from the compressed chunks.
_FEW_VARIANTS = 64


def normalize_contig(name: str) -> str:
    """'chr20' and '20' name the same contig; so do 'chrM', 'M' and 'MT'."""
    bare = name[3:] if name.lower().startswith("chr") else name
    return "MT" if bare.upper() in {"M", "MT"} else bare.upper() if bare.isalpha() else bare


@dataclass(frozen=True)
class GenotypeBlock:
    """Calls for a run of VCF records (variants) and a subset of samples (VCF Zarr conventions:
    -1 missing, -2 absent second allele of a haploid call)."""

    variant_index: np.ndarray  # (v,) record numbers in the genotype store
    sample_ids: list[str]
    calls: np.ndarray  # (v, s, 2) int8
    phased: np.ndarray  # (v, s) bool

    def alt_dosage(self, allele: int | np.ndarray = 1) -> np.ndarray:
        """Copies of an alternate allele per call, NaN where any allele is missing."""
        allele_arr = np.asarray(allele).reshape(-1, 1, 1) if np.ndim(allele) else allele
        present = self.calls >= 0
        counts = ((self.calls == allele_arr) & present).sum(axis=2).astype(np.float64)
        counts[(self.calls == -1).any(axis=2)] = np.nan
        return counts


class Dataset:
    """A published dataset version (immutable; safe to share between threads)."""

    def __init__(self, version_dir: Path, secret_key: bytes | None = None) -> None:
        """`secret_key`: the node's Crypt4GH secret key, which opens the individuals table."""
        self.path = version_dir
        self._secret_key = secret_key
        self.manifest = Manifest.read(version_dir)
        self.metadata: DatasetMetadata = load_metadata(version_dir / "dataset.json")
        self.id = self.manifest.dataset_id
        self.version = self.manifest.version

    # -- sites -------------------------------------------------------------------------------
    @functools.cached_property
    def sites(self) -> pa.Table:
        """All biallelic rows: contig, pos, end, id, ref, alt, variant_index, allele_index,
        ac, an, af and ac_<group>/an_<group> per allele-count group."""
        return pq.read_table(self.path / "sites.parquet", memory_map=True)

    @functools.cached_property
    def _site_index(self) -> dict[str, tuple[int, int, np.ndarray, np.ndarray, int]]:
        """normalized contig -> (first row, stop row, positions, ends, longest span)."""
        table = self.sites
        index: dict[str, tuple[int, int, np.ndarray, np.ndarray, int]] = {}
        if table.num_rows == 0:
            return index
        contig = table.column("contig").combine_chunks()
        codes = contig.indices.to_numpy()
        names = contig.dictionary.to_pylist()
        # int64: searching an int32 array for a Python int makes NumPy convert the whole array
        # on every call (~50 us instead of ~1 us per lookup).
        pos = table.column("pos").to_numpy().astype(np.int64)
        end = table.column("end").to_numpy().astype(np.int64)
        bounds = np.flatnonzero(np.diff(codes)) + 1
        for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(codes)], strict=True):
            span = int((end[lo:hi] - pos[lo:hi]).max()) + 1
            index[normalize_contig(names[codes[lo]])] = (int(lo), int(hi), pos[lo:hi],
                                                        end[lo:hi], span)
        return index

    def site_column(self, name: str) -> np.ndarray:
        """A sites column as a NumPy array (object dtype for strings), decoded once and kept:
        per-query work on a handful of rows is then plain indexing, not an Arrow kernel call."""
        cached = self._site_columns.get(name)
        if cached is None:
            column = self.sites.column(name)
            cached = (np.asarray(column.to_pylist(), dtype=object)
                      if pa.types.is_string(column.type) else column.to_numpy())
            self._site_columns[name] = cached
        return cached

    @functools.cached_property
    def _site_columns(self) -> dict[str, np.ndarray]:
        return {}

    # -- genes -------------------------------------------------------------------------------
    @functools.cached_property
    def _genes(self) -> dict[str, list[tuple[str, int, int]]] | None:
        path = self.path / "genes.parquet"
        if not path.is_file():
            return None
        table = pq.read_table(path).to_pydict()
        genes: dict[str, list[tuple[str, int, int]]] = {}
        for contig, start, end, aliases in zip(table["contig"], table["start"], table["end"],
                                               table["aliases"], strict=True):
            for alias in aliases:
                genes.setdefault(alias.upper(), []).append((contig, start, end))
        return genes

    @property
    def has_gene_table(self) -> bool:
        return self._genes is not None

    def gene_spans(self, gene: str) -> list[tuple[str, int, int]]:
        """(contig, 0-based start, end) of a gene by any of its names; [] if unknown."""
        return (self._genes or {}).get(gene.strip().upper(), [])

    @property
    def contigs(self) -> list[str]:
        return list(self.manifest.contigs)

    def has_contig(self, name: str) -> bool:
        return normalize_contig(name) in self._site_index or normalize_contig(name) in {
            normalize_contig(c) for c in self.manifest.contigs}

    def site_rows(self, contig: str, start: int, end: int | None = None) -> tuple[int, int,
                                                                                    np.ndarray]:
        """Row numbers of sites overlapping [start, end] (1-based, inclusive); a point if end is
        None (sites starting at `start`). Returns (lo, hi, mask over rows lo..hi)."""
        entry = self._site_index.get(normalize_contig(contig))
        if entry is None:
            return 0, 0, np.empty(0, dtype=bool)
        first, _stop, pos, ends, span = entry
        if end is None:
            lo = int(np.searchsorted(pos, start, "left"))
            hi = int(np.searchsorted(pos, start, "right"))
            return first + lo, first + hi, np.ones(hi - lo, dtype=bool)
        lo = int(np.searchsorted(pos, start - span + 1, "left"))
        hi = int(np.searchsorted(pos, end, "right"))
        return first + lo, first + hi, ends[lo:hi] >= start

    def sites_at(self, contig: str, position: int) -> pa.Table:
        """Biallelic rows whose POS equals `position` (1-based)."""
        lo, hi, _mask = self.site_rows(contig, position)
        return self.sites.slice(lo, hi - lo)

    def sites_in_range(self, contig: str, start: int, end: int) -> pa.Table:
        """Biallelic rows overlapping [start, end] (1-based, inclusive): REF span counts."""
        lo, hi, mask = self.site_rows(contig, start, end)
        table = self.sites.slice(lo, hi - lo)
        return table if mask.all() else table.filter(pa.array(mask))

    def find_variant(self, contig: str, position: int, ref: str, alt: str) -> pa.Table:
        table = self.sites_at(contig, position)
        if table.num_rows == 0:
            return table
        keep = pc.and_(pc.equal(table.column("ref"), ref), pc.equal(table.column("alt"), alt))
        return table.filter(keep)

    # -- genotypes ---------------------------------------------------------------------------
    @functools.cached_property
    def genotypes(self) -> object:
        """The VCF Zarr group (zarr-python, read-only)."""
        import zarr

        return zarr.open_group(str(self.path / "genotypes.zarr"), mode="r", zarr_format=2)

    @functools.cached_property
    def samples(self) -> list[str]:
        return self.individuals.column("sample_id").to_pylist()

    @functools.cached_property
    def _sample_position(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.samples)}

    def genotype_block(self, variants: slice | Sequence[int] | np.ndarray,
                       samples: Sequence[str] | None = None) -> GenotypeBlock:
        """Calls for VCF records (a slice or indexes of `variant_index`) and a sample subset."""
        group = self.genotypes
        n = self.manifest.n_records
        if isinstance(variants, slice):
            rows = np.arange(n)[variants]
        else:
            rows = np.asarray(variants, dtype=np.int64)
        if samples is None:
            columns = np.arange(self.manifest.n_samples)
            names = list(self.samples)
        else:
            unknown = [s for s in samples if s not in self._sample_position]
            if unknown:
                raise KeyError(f"not samples of dataset {self.id!r}: {', '.join(unknown[:5])}")
            columns = np.asarray([self._sample_position[s] for s in samples], dtype=np.int64)
            names = list(samples)
        if len(rows) == 0:
            return GenotypeBlock(rows, names, np.empty((0, len(columns), 2), np.int8),
                                 np.empty((0, len(columns)), bool))
        if len(rows) <= _FEW_VARIANTS:
            calls, phased = self._read_rows(rows)
            return GenotypeBlock(rows, names, calls[:, columns], phased[:, columns])
        calls_array = group["call_genotype"]  # type: ignore[index]
        phased_array = group["call_genotype_phased"]  # type: ignore[index]
        lo, hi = int(rows.min()), int(rows.max()) + 1
        calls = np.asarray(calls_array[lo:hi])[rows - lo][:, columns]
        phased = np.asarray(phased_array[lo:hi])[rows - lo][:, columns]
        return GenotypeBlock(rows, names, calls, phased)

    def _read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All samples' calls and phase flags for a few records, decompressing only the blosc
        blocks that hold them (a Beacon carrier query reads ~100 KB instead of whole chunks)."""
        calls_meta, phased_meta = self._array_meta("call_genotype"), \
            self._array_meta("call_genotype_phased")
        n_samples = self.manifest.n_samples
        v_chunk, s_chunk = calls_meta["chunks"][0], calls_meta["chunks"][1]
        calls = np.empty((len(rows), n_samples, 2), dtype=np.int8)
        phased = np.zeros((len(rows), n_samples), dtype=bool)
        for k, row in enumerate(rows.tolist()):
            chunk, offset = divmod(row, v_chunk)
            for j, s0 in enumerate(range(0, n_samples, s_chunk)):
                width = min(s_chunk, n_samples - s0)
                payload = self._chunk_bytes("call_genotype", f"{chunk}.{j}.0")
                if payload is None:
                    calls[k, s0:s0 + width] = calls_meta["fill_value"]
                else:
                    part = zarr_v2.read_items(payload, offset * s_chunk * 2, width * 2,
                                              np.dtype(np.int8))
                    calls[k, s0:s0 + width] = part.reshape(width, 2)
                payload = self._chunk_bytes("call_genotype_phased", f"{chunk}.{j}")
                if payload is not None:  # absent: all unphased (the fill value)
                    phased[k, s0:s0 + width] = zarr_v2.read_items(
                        payload, offset * phased_meta["chunks"][1], width, np.dtype(bool))
        return calls, phased

    @functools.cache  # noqa: B019 - one Dataset per published version, kept for its lifetime
    def _array_meta(self, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads(
            (self.path / "genotypes.zarr" / name / ".zarray").read_text())
        return meta

    @functools.lru_cache(maxsize=256)  # noqa: B019 - as above; ~100-300 KB per chunk
    def _chunk_bytes(self, array: str, key: str) -> bytes | None:
        try:
            return (self.path / "genotypes.zarr" / array / key).read_bytes()
        except FileNotFoundError:
            return None

    # -- individuals -------------------------------------------------------------------------
    @functools.cached_property
    def individuals(self) -> pa.Table:
        encrypted = self.path / "individuals.parquet.c4gh"
        if not encrypted.is_file():  # versions written before the table was encrypted
            return pq.read_table(self.path / "individuals.parquet")
        if self._secret_key is None:
            raise PermissionError(f"{encrypted} is encrypted: open the dataset through "
                                  "NodeStore, which holds the node's key")
        from genofed.files.crypt4gh_io import decrypt_stream

        plain = decrypt_stream(encrypted.read_bytes(), self._secret_key, name=str(encrypted))
        return pq.read_table(pa.BufferReader(plain))

    @property
    def individuals_loaded(self) -> bool:
        """Whether :attr:`individuals` is in memory already (reading it means decrypting)."""
        return "individuals" in self.__dict__

    def select_individuals(self, *, sex: str | None = None, min_age: float | None = None,
                           max_age: float | None = None, hpo: str | Iterable[str] | None = None,
                           include_descendants: bool = True) -> list[str]:
        """Sample ids matching every given criterion.

        `hpo` terms must all be present; with `include_descendants` (the default) an individual
        with a more specific term (e.g. HP:0002069 under HP:0001250) matches too.
        """
        table = self.individuals
        keep = np.ones(table.num_rows, dtype=bool)
        if sex is not None:
            keep &= np.asarray(table.column("sex").cast(pa.string()).to_pylist()) == sex
        ages = table.column("age_years").to_numpy(zero_copy_only=False)
        if min_age is not None:
            keep &= np.nan_to_num(ages, nan=-np.inf) >= min_age
        if max_age is not None:
            keep &= np.nan_to_num(ages, nan=np.inf) <= max_age
        if hpo is not None:
            terms = [hpo] if isinstance(hpo, str) else list(hpo)
            column = "phenotype_closure" if include_descendants else "phenotypes"
            values = table.column(column).to_pylist()
            for term in terms:
                keep &= np.fromiter((term in v for v in values), dtype=bool, count=len(values))
        ids = table.column("sample_id").to_pylist()
        return [s for s, k in zip(ids, keep, strict=True) if k]

    def sql(self, query: str) -> pa.Table:
        """Run SQL over this version with DuckDB; tables `sites` and `individuals` are views."""
        import duckdb

        connection = duckdb.connect()
        try:
            path = str(self.path / "sites.parquet").replace("'", "''")
            connection.execute(f"CREATE VIEW sites AS SELECT * FROM read_parquet('{path}')")
            connection.register("individuals", self.individuals)  # decrypted in memory only
            return connection.sql(query).to_arrow_table()
        finally:
            connection.close()
