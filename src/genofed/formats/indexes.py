"""Genomic indexes (SAM/BAM spec section 5, tabix, CSI; CRAM's .crai): which parts of a file may
hold records overlapping a region.

BGZF indexes answer with chunks of virtual offsets (compressed block offset << 16 | offset in
the uncompressed block); the records inside still have to be checked against the region, which
:mod:`genofed.files.search` does. The .crai answers with CRAM containers.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from dataclasses import dataclass, field

from genofed.errors import MalformedIndexError

#: Tabix/BAI binning: 16 kb windows, 6 levels.
_TBI_MIN_SHIFT = 14
_TBI_DEPTH = 5


@dataclass(frozen=True, slots=True)
class Chunk:
    """Virtual offsets [begin, end) of a run of records."""

    begin: int
    end: int


@dataclass
class _Reference:
    bins: dict[int, list[Chunk]] = field(default_factory=dict)
    bin_loffset: dict[int, int] = field(default_factory=dict)  # CSI
    linear: list[int] = field(default_factory=list)  # TBI / BAI


class BgzfIndex:
    """A parsed .tbi, .csi or .bai: chunk queries by reference number and 0-based range."""

    def __init__(self, kind: str, min_shift: int, depth: int, references: list[_Reference],
                 names: list[str] | None) -> None:
        self.kind = kind
        self.min_shift = min_shift
        self.depth = depth
        self._references = references
        #: Sequence names stored in the index (tabix-style .tbi/.csi), else None.
        self.names = names

    @property
    def n_references(self) -> int:
        return len(self._references)

    @property
    def max_position(self) -> int:
        return 1 << (self.min_shift + 3 * self.depth)

    def chunks(self, reference: int, begin: int = 0, end: int | None = None) -> list[Chunk]:
        """Merged, sorted chunks that may hold records of `reference` overlapping [begin, end);
        the whole reference when `end` is None."""
        if not 0 <= reference < len(self._references):
            return []
        ref = self._references[reference]
        pseudo = _pseudo_bin(self.depth)
        if end is None:
            found = [c for b, cs in ref.bins.items() if b != pseudo for c in cs]
            return _merge(found)
        end = max(min(end, self.max_position), begin + 1)
        found = []
        for bin_number in _region_bins(begin, end, self.min_shift, self.depth):
            found.extend(ref.bins.get(bin_number, ()))
        lowest = self._min_offset(ref, begin)
        return _merge([c for c in found if c.end > lowest])

    def _min_offset(self, ref: _Reference, begin: int) -> int:
        if self.kind == "csi":
            first = (1 << (3 * self.depth)) // 7  # first bin of the finest level
            bin_number = first + (begin >> self.min_shift)
            while bin_number > 0 and bin_number not in ref.bin_loffset:
                bin_number = (bin_number - 1) >> 3
            return ref.bin_loffset.get(bin_number, 0)
        if not ref.linear:
            return 0
        window = min(begin >> self.min_shift, len(ref.linear) - 1)
        return ref.linear[window]

    def end_of_placed_records(self) -> int:
        """The largest chunk end over all references: unplaced records (BAM reads with no
        reference) follow it."""
        pseudo = _pseudo_bin(self.depth)
        return max((c.end for ref in self._references for b, cs in ref.bins.items()
                    if b != pseudo for c in cs), default=0)


def _pseudo_bin(depth: int) -> int:
    """The bin holding per-reference metadata (offsets and read counts), not records."""
    return ((1 << (3 * (depth + 1))) - 1) // 7 + 1


def _region_bins(begin: int, end: int, min_shift: int, depth: int) -> list[int]:
    """Bins overlapping [begin, end) at every level (reg2bins)."""
    bins: list[int] = []
    end -= 1
    shift = min_shift + 3 * depth
    offset = 0
    for level in range(depth + 1):
        bins.extend(range(offset + (begin >> shift), offset + (end >> shift) + 1))
        shift -= 3
        offset += 1 << (3 * level)
    return bins


def _merge(chunks: list[Chunk]) -> list[Chunk]:
    merged: list[Chunk] = []
    for chunk in sorted(chunks, key=lambda c: c.begin):
        if merged and chunk.begin <= merged[-1].end:
            if chunk.end > merged[-1].end:
                merged[-1] = Chunk(merged[-1].begin, chunk.end)
        else:
            merged.append(chunk)
    return merged


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.offset = 0
        self.name = name

    def take(self, fmt: str) -> tuple[int, ...]:
        try:
            values = struct.unpack_from(fmt, self.data, self.offset)
        except struct.error:
            raise MalformedIndexError(f"{self.name}: truncated index") from None
        self.offset += struct.calcsize(fmt)
        return values

    def bytes(self, n: int) -> bytes:
        if self.offset + n > len(self.data):
            raise MalformedIndexError(f"{self.name}: truncated index")
        value = self.data[self.offset : self.offset + n]
        self.offset += n
        return value


def _tabix_names(reader: _Reader) -> list[str]:
    """The tabix header (format, columns, meta, skip, names) that .tbi and tabix-style .csi
    share."""
    _format, _seq, _beg, _end, _meta, _skip, names_length = reader.take("<7i")
    blob = reader.bytes(names_length)
    return [n.decode() for n in blob.split(b"\0")[:-1]] if names_length else []


def _read_chunks(reader: _Reader) -> list[Chunk]:
    (n_chunks,) = reader.take("<i")
    values = reader.take(f"<{2 * n_chunks}Q")
    return [Chunk(values[i], values[i + 1]) for i in range(0, len(values), 2)]


def parse_bgzf_index(data: bytes, *, name: str = "<index>") -> BgzfIndex:
    """Parse a .tbi or .csi (BGZF-compressed) or a .bai (plain)."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedIndexError(f"{name}: corrupt compressed index: {exc}") from None
    reader = _Reader(data, name)
    magic = reader.bytes(4)
    references: list[_Reference] = []
    names: list[str] | None = None
    if magic == b"TBI\x01":
        (n_ref,) = reader.take("<i")
        names = _tabix_names(reader)
        for _ in range(n_ref):
            references.append(_read_linear_style(reader))
        return BgzfIndex("tbi", _TBI_MIN_SHIFT, _TBI_DEPTH, references, names)
    if magic == b"BAI\x01":
        (n_ref,) = reader.take("<i")
        for _ in range(n_ref):
            references.append(_read_linear_style(reader))
        return BgzfIndex("bai", _TBI_MIN_SHIFT, _TBI_DEPTH, references, None)
    if magic == b"CSI\x01":
        min_shift, depth, aux_length = reader.take("<3i")
        aux = reader.bytes(aux_length)
        if aux_length >= 28:
            names = _tabix_names(_Reader(aux, name))
        (n_ref,) = reader.take("<i")
        for _ in range(n_ref):
            ref = _Reference()
            (n_bins,) = reader.take("<i")
            for _ in range(n_bins):
                bin_number, loffset = reader.take("<IQ")
                ref.bins[bin_number] = _read_chunks(reader)
                ref.bin_loffset[bin_number] = loffset
            references.append(ref)
        return BgzfIndex("csi", min_shift, depth, references, names)
    raise MalformedIndexError(f"{name}: not a .tbi, .csi or .bai index")


def _read_linear_style(reader: _Reader) -> _Reference:
    ref = _Reference()
    (n_bins,) = reader.take("<i")
    for _ in range(n_bins):
        (bin_number,) = reader.take("<I")
        ref.bins[bin_number] = _read_chunks(reader)
    (n_intervals,) = reader.take("<i")
    ref.linear = list(reader.take(f"<{n_intervals}Q"))
    return ref


# -- CRAM ----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class CraiEntry:
    """One slice of a CRAM file (.crai line): reference (-1 unmapped), 1-based start and span,
    the container's byte offset, the slice's offset in it and its size."""

    reference: int
    start: int
    span: int
    container: int
    slice_offset: int
    slice_size: int


class CramIndex:
    def __init__(self, entries: list[CraiEntry]) -> None:
        self.entries = entries
        self.container_offsets = sorted({e.container for e in entries})

    def containers(self, reference: int, begin: int = 0, end: int | None = None) -> list[int]:
        """Byte offsets of containers with slices of `reference` overlapping [begin, end)
        (`end` None: to the reference's end)."""
        hits = set()
        for e in self.entries:
            if e.reference != reference:
                continue
            if reference < 0 or ((end is None or e.start - 1 < end)
                                 and e.start - 1 + e.span > begin):
                hits.add(e.container)
        return sorted(hits)


def parse_crai(data: bytes, *, name: str = "<index>") -> CramIndex:
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedIndexError(f"{name}: corrupt .crai: {exc}") from None
    entries = []
    for number, line in enumerate(data.decode("ascii", "replace").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            entries.append(CraiEntry(*(int(p) for p in parts[:6])))
        except (TypeError, ValueError):
            raise MalformedIndexError(f"{name}, line {number}: not a .crai line "
                                      "(6 integers)") from None
    return CramIndex(entries)
