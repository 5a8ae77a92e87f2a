"""Reading one published version of a dataset: sites, genes, genotypes, individuals and the
file catalogue, each through the module of this package that also writes it.

Sites are read through their memory-mapped index (:mod:`genofed.store.site_columns`): point and
range lookups are binary searches (microseconds) over columns the kernel pages in on demand, so a
server's memory does not grow with the number of sites; DuckDB is there for ad-hoc SQL over the
same rows in Parquet (:meth:`Dataset.sql`).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from genofed.store import individuals as individuals_table
from genofed.store import layout
from genofed.store.contigs import normalize_contig
from genofed.store.genotypes import GenotypeReader
from genofed.store.layout import Manifest
from genofed.store.metadata import DatasetMetadata, parse_metadata
from genofed.store.originals import Catalogue, read_catalogue
from genofed.store.site_columns import SiteColumns, StringColumn
from genofed.store.versions import VersionFiles, as_version

#: Up to this many records, genotype_block reads rows straight from the compressed chunks.
_FEW_VARIANTS = 64


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
        return np.asarray(counts)


class Dataset:
    """A published dataset version (immutable; safe to share between threads)."""

    def __init__(self, version: Path | VersionFiles, secret_key: bytes | None = None) -> None:
        """`version`: a version directory, or the files the store opened (on disk or in S3).
        `secret_key`: the node's Crypt4GH secret key, which opens the individuals table."""
        #: Where the version's files are (read through this, whatever the backend).
        self.stored = as_version(version)
        #: The version's directory on this machine (for a store in S3, its local cache, which
        #: holds only what :meth:`local_copy` fetched).
        self.path = self.stored.local_dir
        self._secret_key = secret_key
        self.manifest = Manifest.parse(self.stored.read_bytes(layout.MANIFEST))
        self.metadata: DatasetMetadata = parse_metadata(
            self.stored.read_bytes(layout.METADATA),
            f"{self.stored.location}/{layout.METADATA}")
        self.id = self.manifest.dataset_id
        self.version = self.manifest.version

    def local_copy(self, relative: str) -> Path:
        """A local path of one of this version's files or directories (versions are immutable,
        so a store kept elsewhere may fetch it once into a node-local cache)."""
        return self.stored.local_copy(relative)

    # -- sites -------------------------------------------------------------------------------
    @functools.cached_property
    def _sites(self) -> SiteColumns:
        index = self.local_copy(layout.SITES_INDEX)
        if index.is_dir():
            return SiteColumns.open(index)
        # A version written before the index existed: its sites are held in memory.
        return SiteColumns.from_table(pq.read_table(self.local_copy(layout.SITES)))

    @property
    def sites(self) -> pa.Table:
        """Every biallelic row (contig, pos, end, id, ref, alt, variant_index, allele_index, ac,
        an, af and ac_<group>/an_<group> per allele-count group), read whole each time: for
        exports; lookups use :meth:`site_rows` and :meth:`site_table`."""
        return self._sites.table(slice(None))

    @property
    def n_site_rows(self) -> int:
        return self._sites.n_rows

    def site_table(self, rows: slice | np.ndarray) -> pa.Table:
        """Rows of the sites table (a slice or row numbers), with the Parquet file's columns."""
        return self._sites.table(rows)

    def site_column(self, name: str) -> np.ndarray:
        """A numeric sites column (memory-mapped: indexing reads only the rows it picks)."""
        column = self._sites.column(name)
        if isinstance(column, StringColumn):
            raise TypeError(f"sites column {name!r} holds strings: use site_strings")
        return column

    def site_strings(self, name: str) -> StringColumn:
        """A string sites column ("id", "ref" or "alt"): indexing decodes only what it picks."""
        column = self._sites.column(name)
        if not isinstance(column, StringColumn):
            raise TypeError(f"sites column {name!r} is numeric: use site_column")
        return column

    @property
    def site_contigs(self) -> list[str]:
        """Contig names that :meth:`site_column`("contig") codes index."""
        return self._sites.contig_names

    # -- genes -------------------------------------------------------------------------------
    @functools.cached_property
    def _genes(self) -> dict[str, list[tuple[str, int, int]]] | None:
        content = self.stored.read_optional(layout.GENES)
        if content is None:
            return None
        table = pq.read_table(pa.BufferReader(content)).to_pydict()
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
        return name in self._sites or normalize_contig(name) in {
            normalize_contig(c) for c in self.manifest.contigs}

    def site_rows(self, contig: str, start: int, end: int | None = None) -> tuple[int, int,
                                                                                    np.ndarray]:
        """Row numbers of sites overlapping [start, end] (1-based, inclusive); a point if end is
        None (sites starting at `start`). Returns (lo, hi, mask over rows lo..hi)."""
        return self._sites.rows(contig, start, end)

    def sites_at(self, contig: str, position: int) -> pa.Table:
        """Biallelic rows whose POS equals `position` (1-based)."""
        lo, hi, _mask = self.site_rows(contig, position)
        return self.site_table(slice(lo, hi))

    def sites_in_range(self, contig: str, start: int, end: int) -> pa.Table:
        """Biallelic rows overlapping [start, end] (1-based, inclusive): REF span counts."""
        lo, hi, mask = self.site_rows(contig, start, end)
        return self.site_table(slice(lo, hi) if mask.all() else np.arange(lo, hi)[mask])

    def find_variant(self, contig: str, position: int, ref: str, alt: str) -> pa.Table:
        table = self.sites_at(contig, position)
        if table.num_rows == 0:
            return table
        keep = pc.and_(pc.equal(table.column("ref"), ref), pc.equal(table.column("alt"), alt))
        return table.filter(keep)

    # -- genotypes ---------------------------------------------------------------------------
    @functools.cached_property
    def _genotype_reader(self) -> GenotypeReader:
        return GenotypeReader(self.stored, self.manifest.n_records,
                              self.manifest.n_samples)

    @property
    def genotypes(self) -> Any:
        """The VCF Zarr group (zarr-python, read-only)."""
        return self._genotype_reader.group

    @functools.cached_property
    def samples(self) -> list[str]:
        return [str(s) for s in self.individuals.column("sample_id").to_pylist()]

    @functools.cached_property
    def _sample_position(self) -> dict[str, int]:
        return {s: i for i, s in enumerate(self.samples)}

    def genotype_block(self, variants: slice | Sequence[int] | np.ndarray,
                       samples: Sequence[str] | None = None) -> GenotypeBlock:
        """Calls for VCF records (a slice or indexes of `variant_index`) and a sample subset."""
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
            calls, phased = self._genotype_reader.read_rows(rows)
            return GenotypeBlock(rows, names, calls[:, columns], phased[:, columns])
        lo, hi = int(rows.min()), int(rows.max()) + 1
        calls, phased = self._genotype_reader.read_range(lo, hi)
        return GenotypeBlock(rows, names, calls[rows - lo][:, columns],
                             phased[rows - lo][:, columns])

    # -- individuals -------------------------------------------------------------------------
    @functools.cached_property
    def individuals(self) -> pa.Table:
        return individuals_table.read(self.stored, self._secret_key)

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
            path = str(self.local_copy(layout.SITES)).replace("'", "''")
            connection.execute(f"CREATE VIEW sites AS SELECT * FROM read_parquet('{path}')")
            connection.register("individuals", self.individuals)  # decrypted in memory only
            return connection.sql(query).to_arrow_table()
        finally:
            connection.close()

    # -- archived original files ---------------------------------------------------------------
    @functools.cached_property
    def files(self) -> Catalogue:
        """The version's archived files and their delivery policy (decrypted once; versions are
        immutable)."""
        if self._secret_key is None:
            raise PermissionError(f"{self.stored.location}: the file catalogue is encrypted: "
                                  "open the dataset through NodeStore, which holds the node's "
                                  "key")
        return read_catalogue(self.stored, self._secret_key)
