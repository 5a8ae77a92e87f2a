"""Variant sites (`sites.parquet` and its memory-mapped index `sites.idx/`): one row per
biallelic allele of every VCF record, with allele counts per group; the writer ingest calls.
Lookups read the index (:mod:`genofed.store.site_columns`).

Columns: contig (dictionary), pos, end (REF span), id, ref, alt ("." when the record has no
ALT), variant_index (the record in the genotype store), allele_index, ac, an, af, and
ac_<group> / an_<group> for every allele-count group after "all" (sexes, populations). Rows are
sorted by contig (header order), position and record; DuckDB reads the file for ad-hoc SQL.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genofed.store import layout
from genofed.store.contigs import normalize_contig as normalize_contig
from genofed.store.site_columns import write_site_columns


@dataclass(frozen=True)
class SiteRows:
    """Biallelic rows of consecutive records (one ingest piece), in record order."""

    contig: np.ndarray  # int32 code into the dataset's contig list
    pos: np.ndarray  # int32
    end: np.ndarray  # int32: pos + len(REF) - 1
    ids: list[str]
    refs: list[str]
    alts: list[str]
    variant_index: np.ndarray  # int64
    allele_index: np.ndarray  # int8
    ac: np.ndarray  # (rows, groups) int32
    an: np.ndarray  # (rows, groups) int32


def write_sites(version_dir: Path, contigs: Sequence[str], parts: Sequence[SiteRows],
                groups: Sequence[str]) -> int:
    """Write the sites table and its index into a version directory; returns the rows."""
    n_groups = len(groups)

    def joined(name: str, dtype: type) -> np.ndarray:
        arrays = [getattr(p, name) for p in parts]
        return np.concatenate(arrays) if arrays else np.empty(0, dtype)

    contig_idx, pos, end = joined("contig", np.int32), joined("pos", np.int32), \
        joined("end", np.int32)
    variant_index = joined("variant_index", np.int64)
    allele_index = joined("allele_index", np.int8)
    ac = np.concatenate([p.ac for p in parts]) if parts else np.zeros((0, n_groups), np.int32)
    an = np.concatenate([p.an for p in parts]) if parts else np.zeros((0, n_groups), np.int32)
    ids = [i for p in parts for i in p.ids]
    refs = [r for p in parts for r in p.refs]
    alts = [a for p in parts for a in p.alts]
    order = np.lexsort((variant_index, pos, contig_idx))
    sorted_already = bool(np.all(order == np.arange(len(order))))

    def take(a: np.ndarray) -> np.ndarray:
        return a if sorted_already else a[order]

    def take_list(values: list[str]) -> list[str]:
        return values if sorted_already else [values[i] for i in order]

    with np.errstate(divide="ignore", invalid="ignore"):
        af = np.where(an[:, 0] > 0, ac[:, 0] / np.maximum(an[:, 0], 1), np.nan)
    columns: dict[str, pa.Array] = {
        "contig": pa.DictionaryArray.from_arrays(pa.array(take(contig_idx), pa.int32()),
                                                 pa.array(list(contigs), pa.string())),
        "pos": pa.array(take(pos), pa.int32()),
        "end": pa.array(take(end), pa.int32()),
        "id": pa.array(take_list(ids), pa.string()),
        "ref": pa.array(take_list(refs), pa.string()),
        "alt": pa.array(take_list(alts), pa.string()),
        "variant_index": pa.array(take(variant_index), pa.int64()),
        "allele_index": pa.array(take(allele_index), pa.int8()),
        "ac": pa.array(take(ac[:, 0]), pa.int32()),
        "an": pa.array(take(an[:, 0]), pa.int32()),
        "af": pa.array(take(af), pa.float64()),
    }
    for g, name in enumerate(groups[1:], start=1):
        columns[f"ac_{name}"] = pa.array(take(ac[:, g]), pa.int32())
        columns[f"an_{name}"] = pa.array(take(an[:, g]), pa.int32())
    table = pa.table(columns)
    pq.write_table(table, version_dir / layout.SITES, compression="zstd", row_group_size=256 * 1024,
                   use_dictionary=["contig", "ref", "alt"], write_statistics=["contig", "pos"])
    write_site_columns(version_dir / layout.SITES_INDEX, table, contigs)
    return int(table.num_rows)
