"""Genotypes in the VCF Zarr (v0.4) layout: the writer ingest drives, and the reader analyses and
the Beacon use.

    genotypes.zarr/
        call_genotype          (variants, samples, ploidy) int8: -1 missing, -2 absent (haploid)
        call_genotype_mask     (variants, samples, ploidy) bool: the call is negative
        call_genotype_phased   (variants, samples) bool
        variant_contig, variant_position, variant_allele, variant_id(_mask), variant_quality,
        variant_filter, contig_id, contig_length, filter_id, sample_id

chunked :data:`VARIANT_CHUNK` x :data:`SAMPLE_CHUNK`. Sample ids are positional pseudonyms: the
node's sample names live only in the encrypted individuals table. Chunks of the call arrays are
written whole by any process (:class:`ChunkWriter`, through :mod:`genofed.store.zarr_v2`), the
array metadata once by the coordinating process; everything reads back with zarr-python.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from genofed import __version__
from genofed.store import zarr_v2
from genofed.store.versions import LocalVersion, VersionFiles

VARIANT_CHUNK = 10_000
SAMPLE_CHUNK = 1_000
PLOIDY = 2
CALL_ARRAYS = ("call_genotype", "call_genotype_mask", "call_genotype_phased")


def sample_pseudonyms(n: int) -> list[str]:
    return [f"sample-{i:06d}" for i in range(1, n + 1)]


def prepare_call_arrays(group: Path) -> None:
    """Directories for the call arrays, so that chunks can be written before their metadata."""
    for name in CALL_ARRAYS:
        (group / name).mkdir(parents=True)


@dataclass(frozen=True)
class VariantColumns:
    """The per-variant columns of a callset, one entry per VCF record."""

    contigs: list[str]  # names, in the order of `contig`'s codes
    contig_lengths: list[int | None]
    contig: np.ndarray  # int16 code per record
    position: np.ndarray  # int32
    alleles: list[list[str]]  # [REF, ALT1, ...] per record
    ids: list[str]  # "." for none
    quality: np.ndarray  # float32, NaN for missing
    filter_ids: list[str]
    filters: list[list[str]]  # filter ids per record


def write_metadata(group: Path, columns: VariantColumns, n_samples: int, *, header: str,
                   assembly_id: str) -> None:
    """The group, its per-variant, per-sample and per-contig arrays, and the call arrays'
    metadata (their chunks are written by :class:`ChunkWriter`). `header`: the VCF header
    without sample columns."""
    alleles = pad_string_lists(columns.alleles, "")
    ids = np.array(columns.ids, dtype=object)
    ids[ids == "."] = ""
    filter_index = {f: i for i, f in enumerate(columns.filter_ids)}
    variant_filter = np.zeros((len(columns.filters), len(columns.filter_ids)), dtype=bool)
    rows, _places = _flat_places(columns.filters)
    variant_filter[rows, [filter_index[f] for f in itertools.chain.from_iterable(
        columns.filters)]] = True
    n = len(columns.position)
    zarr_v2.write_group(group, {
        "vcf_zarr_version": "0.4",
        "source": f"genofed {__version__}",
        "vcf_header": header,
        "sample_id_note": "positional pseudonyms; the node's sample ids are in the encrypted "
                          "individuals table",
        "assembly_id": assembly_id,
    })
    vc = (VARIANT_CHUNK,)
    contigs = columns.contigs
    write = zarr_v2.write_array
    write(group, "sample_id", np.array(sample_pseudonyms(n_samples), dtype=object),
          chunks=(SAMPLE_CHUNK,), dimensions=["samples"])
    write(group, "contig_id", np.array(contigs, dtype=object),
          chunks=(max(1, len(contigs)),), dimensions=["contigs"])
    write(group, "contig_length",
          np.array([length or -1 for length in columns.contig_lengths], dtype=np.int64),
          chunks=(max(1, len(contigs)),), dimensions=["contigs"], fill_value=-1)
    write(group, "filter_id", np.array(columns.filter_ids, dtype=object),
          chunks=(max(1, len(columns.filter_ids)),), dimensions=["filters"])
    write(group, "variant_contig", columns.contig, chunks=vc, dimensions=["variants"],
          fill_value=-1)
    write(group, "variant_position", columns.position, chunks=vc, dimensions=["variants"],
          fill_value=-1)
    write(group, "variant_allele", alleles, chunks=(VARIANT_CHUNK, alleles.shape[1]),
          dimensions=["variants", "alleles"])
    write(group, "variant_id", ids, chunks=vc, dimensions=["variants"])
    write(group, "variant_id_mask", ids == "", chunks=vc, dimensions=["variants"],
          fill_value=True)
    write(group, "variant_quality", columns.quality, chunks=vc, dimensions=["variants"],
          fill_value=float("nan"))
    write(group, "variant_filter", variant_filter,
          chunks=(VARIANT_CHUNK, max(1, len(columns.filter_ids))),
          dimensions=["variants", "filters"], fill_value=False)
    shape, chunks = (n, n_samples, PLOIDY), (VARIANT_CHUNK, SAMPLE_CHUNK, PLOIDY)
    zarr_v2.create_array(group, "call_genotype", shape=shape, chunks=chunks,
                         dtype=np.dtype(np.int8), dimensions=["variants", "samples", "ploidy"],
                         fill_value=-1, codec=zarr_v2.GENOTYPE_CODEC)
    zarr_v2.create_array(group, "call_genotype_mask", shape=shape, chunks=chunks,
                         dtype=np.dtype(bool), dimensions=["variants", "samples", "ploidy"],
                         fill_value=False, codec=zarr_v2.GENOTYPE_CODEC)
    zarr_v2.create_array(group, "call_genotype_phased", shape=shape[:2], chunks=chunks[:2],
                         dtype=np.dtype(bool), dimensions=["variants", "samples"],
                         fill_value=False, codec=zarr_v2.GENOTYPE_CODEC)


def _flat_places(lists: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """For the items of `lists` flattened: the list each came from, and its place in it."""
    lengths = np.fromiter(map(len, lists), dtype=np.int64, count=len(lists))
    rows = np.repeat(np.arange(len(lists)), lengths)
    starts = np.repeat(np.cumsum(lengths) - lengths, lengths)
    return rows, np.arange(int(lengths.sum())) - starts


def pad_string_lists(lists: list[list[str]], fill: str) -> np.ndarray:
    """Lists of strings as a (lists, longest) object array padded with `fill`, without a Python
    loop over the lists (a whole-genome VCF has 10^8 records)."""
    longest = max(map(len, lists), default=1)
    out = np.full((len(lists), longest), fill, dtype=object)
    rows, places = _flat_places(lists)
    flat = np.empty(len(rows), dtype=object)
    flat[:] = list(itertools.chain.from_iterable(lists))
    out[rows, places] = flat
    return out


@dataclass(frozen=True)
class Fragment:
    """Rows of a variant chunk that come from one source array: `calls[start:stop]` (and the
    same rows of `phased`, or all phased when it is None) land at row `at` of the chunk."""

    calls: np.ndarray  # (records, samples, ploidy) int8, e.g. a memory-mapped spill
    phased: np.ndarray | None  # (records, samples) bool
    start: int
    stop: int
    at: int


class ChunkWriter:
    """Writes whole variant chunks (every sample chunk of them) of the call arrays. One per
    process: it keeps its gather buffers from chunk to chunk (fresh pages are costly) and the
    encoded all-phased chunk of each shape."""

    def __init__(self, group: Path, n_samples: int) -> None:
        self.group = group
        self.n_samples = n_samples
        self._scratch: dict[tuple[tuple[int, ...], str], np.ndarray] = {}
        self._all_phased: dict[tuple[int, int], bytes] = {}

    def _buffer(self, shape: tuple[int, ...], dtype: type, name: str) -> np.ndarray:
        key = (shape, name)
        array = self._scratch.get(key)
        if array is None:
            array = self._scratch[key] = np.empty(shape, dtype=dtype)
        return array

    def write(self, chunk: int, rows: int, fragments: Sequence[Fragment], *, negative: bool,
              unphased: bool) -> None:
        """Variant chunk `chunk` (`rows` records): `negative` says some allele is missing or
        absent (the mask chunk is needed), `unphased` that some call is unphased."""
        g_chunks = (VARIANT_CHUNK, SAMPLE_CHUNK, PLOIDY)
        n_samples = self.n_samples
        for j, s0 in enumerate(range(0, max(n_samples, 1), SAMPLE_CHUNK)):
            s1 = min(s0 + SAMPLE_CHUNK, n_samples)
            # Chunks are stored whole, edges padded with the fill value: gathered in place.
            whole = self._buffer(g_chunks, np.int8, "calls")
            part = whole[:rows, : s1 - s0]
            if part.shape != whole.shape:
                whole.fill(-1)
            for fragment in fragments:
                part[fragment.at : fragment.at + fragment.stop - fragment.start] = \
                    fragment.calls[fragment.start : fragment.stop, s0:s1]
            zarr_v2.write_chunk(self.group / "call_genotype", (chunk, j, 0), whole, g_chunks, -1,
                                zarr_v2.GENOTYPE_CODEC)
            # An absent chunk reads as the fill value (False), so all-False chunks are not
            # written: most masks are, and so are the phase flags of unphased callsets.
            if negative:
                mask = part < 0
                if mask.any():
                    zarr_v2.write_chunk(self.group / "call_genotype_mask", (chunk, j, 0), mask,
                                        g_chunks, False, zarr_v2.GENOTYPE_CODEC)
            phase_path = self.group / "call_genotype_phased"
            if not unphased and s1 > s0:  # all True: the same bytes for every such chunk
                shape = (rows, s1 - s0)
                payload = self._all_phased.get(shape)
                if payload is None:
                    payload = self._all_phased[shape] = zarr_v2.encode_chunk(
                        np.ones(shape, dtype=bool), g_chunks[:2], False, zarr_v2.GENOTYPE_CODEC)
                zarr_v2.write_payload(phase_path, (chunk, j), payload)
                continue
            phase_part = self._buffer((rows, s1 - s0), bool, "phased")
            for fragment in fragments:
                target = slice(fragment.at, fragment.at + fragment.stop - fragment.start)
                if fragment.phased is None:
                    phase_part[target] = True
                else:
                    phase_part[target] = fragment.phased[fragment.start : fragment.stop, s0:s1]
            if phase_part.any():
                zarr_v2.write_chunk(phase_path, (chunk, j), phase_part, g_chunks[:2], False,
                                    zarr_v2.GENOTYPE_CODEC)


class GenotypeReader:
    """Calls of a published version's genotype store (read where the store keeps it: from S3,
    only the chunks asked for are fetched)."""

    def __init__(self, group: Path | VersionFiles, n_records: int, n_samples: int, *,
                 relative: str = "genotypes.zarr") -> None:
        """`group`: the group's directory, or the version holding it at `relative`."""
        self.version = LocalVersion(group) if isinstance(group, Path) else group
        self.relative = "" if isinstance(group, Path) else relative.strip("/") + "/"
        self.n_records = n_records
        self.n_samples = n_samples

    @functools.cached_property
    def group(self) -> Any:
        """The VCF Zarr group (zarr-python, read-only)."""
        import zarr

        return zarr.open_group(self.version.zarr_store(self.relative.rstrip("/")), mode="r",
                               zarr_format=2)

    def read_range(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
        """All samples' calls and phase flags of records lo..hi (whole chunks decompressed)."""
        return (np.asarray(self.group["call_genotype"][lo:hi]),
                np.asarray(self.group["call_genotype_phased"][lo:hi]))

    def read_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All samples' calls and phase flags for a few records, decompressing only the blosc
        blocks that hold them (a Beacon carrier query reads ~100 KB instead of whole chunks)."""
        calls_meta, phased_meta = self._array_meta("call_genotype"), \
            self._array_meta("call_genotype_phased")
        n_samples = self.n_samples
        v_chunk, s_chunk = calls_meta["chunks"][0], calls_meta["chunks"][1]
        calls = np.empty((len(rows), n_samples, PLOIDY), dtype=np.int8)
        phased = np.zeros((len(rows), n_samples), dtype=bool)
        for k, row in enumerate(rows.tolist()):
            chunk, offset = divmod(row, v_chunk)
            for j, s0 in enumerate(range(0, n_samples, s_chunk)):
                width = min(s_chunk, n_samples - s0)
                payload = self._chunk_bytes("call_genotype", f"{chunk}.{j}.0")
                if payload is None:
                    calls[k, s0:s0 + width] = calls_meta["fill_value"]
                else:
                    part = zarr_v2.read_items(payload, offset * s_chunk * PLOIDY,
                                              width * PLOIDY, np.dtype(np.int8))
                    calls[k, s0:s0 + width] = part.reshape(width, PLOIDY)
                payload = self._chunk_bytes("call_genotype_phased", f"{chunk}.{j}")
                if payload is not None:  # absent: all unphased (the fill value)
                    phased[k, s0:s0 + width] = zarr_v2.read_items(
                        payload, offset * phased_meta["chunks"][1], width, np.dtype(bool))
        return calls, phased

    @functools.cache  # noqa: B019 - one reader per published version, kept for its lifetime
    def _array_meta(self, name: str) -> dict[str, Any]:
        meta: dict[str, Any] = json.loads(
            self.version.read_bytes(f"{self.relative}{name}/.zarray"))
        return meta

    @functools.lru_cache(maxsize=256)  # noqa: B019 - as above; ~100-300 KB per chunk
    def _chunk_bytes(self, array: str, key: str) -> bytes | None:
        return self.version.read_optional(f"{self.relative}{array}/{key}")
