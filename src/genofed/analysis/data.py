"""A node's side of an analysis, as data: the individuals of one dataset a job selects (with
their trait and covariates), and their genotypes as Dask arrays over the VCF Zarr chunks.

Genotypes are biallelic: a job's variants are the sites table's rows (multi-allelic records
split as `bcftools norm -m-` splits them), and a row's dosage is the number of copies of its
ALT allele in a call (0, 1, 2; a haploid call's absent second allele counts nothing). A call with
a missing allele is missing. A variant the dataset does not hold is missing for all of its
individuals (as `bcftools merge` leaves it), never reference.

Arrays are chunked as the store is (10,000 variants x 1,000 samples), so statistics stream over
blocks; they run on Dask's local threads, or on the cluster named in node.toml.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dask.array as da
import numpy as np
import pyarrow as pa

from genofed.analysis.spec import CohortFilter, Trait
from genofed.store.dataset import Dataset


@dataclass(frozen=True)
class Cohort:
    """The individuals of one dataset that a job selects, in genotype-store column order.
    Nothing here leaves the node."""

    dataset: Dataset
    #: Columns of the genotype store (ascending).
    columns: np.ndarray
    sample_ids: list[str]
    #: 1.0 male, 2.0 female (plink's coding), NaN unknown.
    sex: np.ndarray
    #: Years, NaN unknown.
    age: np.ndarray
    population: list[str | None]
    _table: pa.Table = field(repr=False)

    def __len__(self) -> int:
        return len(self.columns)

    def measurement(self, assay: str) -> np.ndarray:
        """Each individual's value of a Phenopacket measurement (the first, if several); NaN
        where there is none."""
        values = np.full(len(self), np.nan)
        for i, measured in enumerate(self._table.column("measurements").to_pylist()):
            for item in measured or ():
                if item["assay"] == assay and item["value"] is not None:
                    values[i] = float(item["value"])
                    break
        return values

    def carries(self, term: str) -> np.ndarray:
        """Whether each individual has an HPO term (or one of its descendants) or a disease."""
        column = "diseases" if not term.startswith("HP:") else "phenotype_closure"
        return np.fromiter((term in (terms or ()) for terms in
                            self._table.column(column).to_pylist()), dtype=bool,
                           count=len(self))

    def trait(self, trait: Trait) -> np.ndarray:
        """The trait as a float per individual: the measurement (NaN: not measured), or 1.0 for
        a case and 0.0 for a control."""
        if trait.measurement is not None:
            return self.measurement(trait.measurement)
        return self.carries(trait.hpo or trait.disease or "").astype(np.float64)

    def covariate(self, name: str) -> np.ndarray:
        """sex (1 male, 2 female), age, or a measurement; NaN where unknown."""
        if name == "sex":
            return self.sex.copy()
        if name == "age":
            return self.age.copy()
        return self.measurement(name)

    def subset(self, keep: np.ndarray) -> Cohort:
        """The individuals where `keep` is true."""
        index = np.flatnonzero(keep)
        return Cohort(self.dataset, self.columns[index], [self.sample_ids[i] for i in index],
                      self.sex[index], self.age[index], [self.population[i] for i in index],
                      self._table.take(pa.array(index)))


def select(dataset: Dataset, criteria: CohortFilter) -> Cohort:
    """The dataset's individuals matching every criterion (HPO terms with descendants)."""
    table = dataset.individuals
    n = table.num_rows
    keep = np.ones(n, dtype=bool)
    sex_text = table.column("sex").cast(pa.string()).to_pylist()
    if criteria.sex is not None:
        keep &= np.fromiter((s == criteria.sex for s in sex_text), dtype=bool, count=n)
    ages = np.asarray(table.column("age_years").to_numpy(zero_copy_only=False), dtype=float)
    if criteria.min_age is not None:
        keep &= np.nan_to_num(ages, nan=-np.inf) >= criteria.min_age
    if criteria.max_age is not None:
        keep &= np.nan_to_num(ages, nan=np.inf) <= criteria.max_age
    for term in criteria.hpo:
        keep &= np.fromiter((term in (t or ()) for t in
                             table.column("phenotype_closure").to_pylist()), dtype=bool, count=n)
    for disease in criteria.diseases:
        keep &= np.fromiter((disease in (d or ()) for d in table.column("diseases").to_pylist()),
                            dtype=bool, count=n)
    index = np.flatnonzero(keep)
    columns = np.asarray(table.column("sample_index").to_numpy(), dtype=np.int64)[index]
    order = np.argsort(columns, kind="stable")
    index, columns = index[order], columns[order]
    sex_code = {"male": 1.0, "female": 2.0}
    return Cohort(
        dataset=dataset, columns=columns,
        sample_ids=[str(table.column("sample_id")[int(i)]) for i in index],
        sex=np.array([sex_code.get(sex_text[i], math.nan) for i in index], dtype=float),
        age=ages[index],
        population=[table.column("population")[int(i)].as_py() for i in index],
        _table=table.take(pa.array(index)))


@dataclass(frozen=True)
class Dosages:
    """ALT dosages of a run of variants for a cohort: `dosage` (float64, NaN where missing) as a
    Dask array, (variants, individuals), chunked like the store."""

    dosage: da.Array
    #: Per variant: whether the dataset holds it (False: all missing, by construction).
    held: np.ndarray
    #: The same calls as int8 ALT copies, -1 where missing (8x smaller: what counting needs);
    #: None where a caller built `dosage` itself.
    codes: da.Array | None = None


def site_rows(dataset: Dataset, keys: Sequence[tuple[str, int, str, str]]) -> np.ndarray:
    """The sites-table row of each (contig, pos, ref, alt) key, -1 where the dataset has none.
    Contigs match with or without `chr`."""
    rows = np.full(len(keys), -1, dtype=np.int64)
    ref = dataset.site_strings("ref")
    alt = dataset.site_strings("alt")
    for k, (contig, pos, key_ref, key_alt) in enumerate(keys):
        lo, hi, _mask = dataset.site_rows(contig, pos)
        for row in range(lo, hi):
            if ref[row] == key_ref and alt[row] == key_alt:
                rows[k] = row
                break
    return rows


def dosages(cohort: Cohort, rows: np.ndarray, *, chunk: int = 10_000) -> Dosages:
    """Dosages of the sites-table `rows` (-1: a variant the dataset lacks) for `cohort`.

    Each block is decoded in one numpy pass (calls to ALT copies, NaN where a call is missing
    or the dataset lacks the variant); rows in store order read each store chunk once."""
    dataset = cohort.dataset
    held = rows >= 0
    group: Any = dataset.genotypes
    calls = da.from_zarr(group["call_genotype"])
    variant_index = dataset.site_column("variant_index")
    allele_index = dataset.site_column("allele_index")
    safe = np.where(held, rows, 0)
    records = variant_index[safe]
    alleles = np.where(held, allele_index[safe], -99).astype(np.int8)
    if not len(records):
        return Dosages(da.zeros((0, len(cohort)), dtype=np.float64, chunks=(chunk, 1000)), held)
    picked = calls[records]
    if not np.array_equal(cohort.columns, np.arange(calls.shape[1])):
        picked = picked[:, cohort.columns]

    def decode(block: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        start, stop = block_info[0]["array-location"][0]
        allele = alleles[start:stop, None]
        first, second = block[..., 0], block[..., 1]
        copies = (first == allele).view(np.int8) + (second == allele).view(np.int8)
        copies[(first < 0) | (second < 0) | (allele < 0)] = -1
        return np.asarray(copies)

    def to_float(block: np.ndarray) -> np.ndarray:
        return np.where(block < 0, np.nan, block.astype(np.float64))

    codes = picked.map_blocks(decode, drop_axis=2, dtype=np.int8).rechunk((chunk, 1000))
    dosage = codes.map_blocks(to_float, dtype=np.float64)
    return Dosages(dosage, held, codes)
