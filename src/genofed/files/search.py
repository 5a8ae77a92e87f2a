"""Regions -> the bytes of a slice (the search layer).

For BGZF formats (VCF, BCF, BAM) the index gives chunks of virtual offsets; the records in them
are checked against the regions exactly as htslib checks them, so that a slice holds exactly the
records `bcftools view -r` / `samtools view REGION` return. Most of a slice is whole BGZF blocks
copied as stored; only blocks that mix kept and other records (at a slice's edges) are
re-compressed with the kept records alone. Long runs of records inside a region are not read at
all: a binary search over the blocks' first records finds where the region ends.

CRAM is sliced by container (the .crai's granularity): a slice may hold extra reads around the
region's edges, which the htsget spec allows.

Offsets here are plaintext byte offsets of the stored file (before Crypt4GH), or offsets in its
uncompressed stream ("u" offsets) where noted.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field

from genofed.errors import HtsgetInvalidInput, HtsgetNotFound
from genofed.formats import hts
from genofed.formats.bgzf import EOF_BLOCK, MAX_BLOCK_PAYLOAD, deflate_block
from genofed.formats.bgzf_layout import BlockTable
from genofed.formats.hts import FileFormat, RecordCodec, RecordSpan
from genofed.formats.indexes import BgzfIndex, CramIndex
from genofed.store.originals import ArchivedFile, UncompressedReader

_UNBOUNDED = sys.maxsize
_WINDOW = 1 << 16


@dataclass(frozen=True)
class Region:
    """A reference and an optional 0-based, half-open range on it ('*': unplaced reads)."""

    reference_name: str
    start: int | None = None
    end: int | None = None


@dataclass(frozen=True)
class RawPiece:
    """Plaintext bytes [start, stop) of the stored file, delivered as they are."""

    start: int
    stop: int


@dataclass(frozen=True)
class InlinePiece:
    """Bytes made for this slice (re-compressed edge blocks, end-of-file marker)."""

    data: bytes


Piece = RawPiece | InlinePiece


@dataclass
class SlicePlan:
    file: ArchivedFile
    header: list[Piece] = field(default_factory=list)
    body: list[Piece] = field(default_factory=list)

    @property
    def pieces(self) -> list[Piece]:
        return [*self.header, *self.body]

    @property
    def size(self) -> int:
        return sum(p.stop - p.start if isinstance(p, RawPiece) else len(p.data)
                   for p in self.pieces)


def plan_slice(file: ArchivedFile, regions: list[Region] | None, *,
               header_only: bool = False) -> SlicePlan:
    """What to deliver for `regions` (None: everything) or for the header alone."""
    if regions is not None and file.index is None:
        raise HtsgetInvalidInput(f"{file.entry.name!r} has no index "
                                 f"({'; '.join(file.entry.notes)}), so only the whole file can "
                                 "be served: omit referenceName")
    references = _resolve(file, regions or [])
    if file.file_format is FileFormat.CRAM:
        return _plan_cram(file, regions, references, header_only)
    return _plan_bgzf(file, regions, references, header_only)


def _resolve(file: ArchivedFile, regions: list[Region]) -> list[int]:
    ids = []
    for region in regions:
        if region.reference_name == "*":
            if file.file_format.datatype != "reads":
                raise HtsgetNotFound("referenceName '*' (unplaced reads) applies to reads only")
            ids.append(-1)
            continue
        found = file.reference_id(region.reference_name)
        if found is None:
            shown = ", ".join(file.references[:25]) + (" ..." if len(file.references) > 25
                                                       else "")
            raise HtsgetNotFound(f"reference {region.reference_name!r} is not in "
                                 f"{file.entry.name!r}; its references are: {shown}")
        ids.append(found)
    return ids


# -- BGZF formats --------------------------------------------------------------------------------
def _plan_bgzf(file: ArchivedFile, regions: list[Region] | None, references: list[int],
               header_only: bool) -> SlicePlan:
    assert file.blocks is not None
    table = file.blocks
    reader = UncompressedReader(file.data, table)
    header_size = file.entry.header_size
    plan = SlicePlan(file, header=_pieces(reader, [(0, header_size)]))
    if header_only:
        plan.body = [InlinePiece(EOF_BLOCK)]
        return plan
    if regions is None:
        body = [(header_size, table.total_uncompressed)]
    else:
        assert isinstance(file.index, BgzfIndex)
        codec = file.codec()
        body = []
        for region, reference in zip(regions, references, strict=True):
            if reference < 0:
                body.extend(_unplaced(reader, codec, file.index, header_size))
                continue
            begin = region.start or 0
            end = _UNBOUNDED if region.end is None else region.end
            index_end = None if region.start is None and region.end is None else min(
                end, file.index.max_position)
            for chunk in file.index.chunks(reference, begin, index_end):
                body.extend(_scan(reader, codec, table.uncompressed_of(chunk.begin),
                                  table.uncompressed_of(chunk.end), reference, begin, end))
    plan.body = [*_pieces(reader, _union(body)), InlinePiece(EOF_BLOCK)]
    return plan


class _Cursor:
    """Parses records at uncompressed offsets, reading ahead in windows."""

    def __init__(self, reader: UncompressedReader, codec: RecordCodec) -> None:
        self.reader = reader
        self.codec = codec
        self.total = reader.blocks.total_uncompressed
        self._buffer = b""
        self._start = 0

    def record_at(self, offset: int) -> RecordSpan | None:
        at = offset - self._start
        if not 0 <= at < len(self._buffer):
            self._buffer, self._start, at = self.reader.read(offset, offset + _WINDOW), offset, 0
        while True:
            end = self._start + len(self._buffer)
            record = self.codec.parse(self._buffer, at, final=end >= self.total)
            if record is not None or end >= self.total:
                return record
            more = self.reader.read(end, end + max(_WINDOW, len(self._buffer)))
            self._buffer, self._start, at = self._buffer[at:] + more, offset, 0


def _scan(reader: UncompressedReader, codec: RecordCodec, start: int, stop: int,
          reference: int, begin: int, end: int) -> list[tuple[int, int]]:
    """Uncompressed ranges of the records in [start, stop) overlapping [begin, end) of
    `reference`. Once a record starting inside the region is found, the rest of the region is
    found by binary search over block first records instead of reading every record."""
    table = reader.blocks
    cursor = _Cursor(reader, codec)
    kept: list[tuple[int, int]] = []
    offset = start
    jumped = False
    while offset < stop:
        record = cursor.record_at(offset)
        if record is None:
            break
        if record.reference == reference:
            if record.begin >= end:
                break
            if record.begin >= begin and not jumped:
                jumped = True
                target = _last_block_starting_before(reader, codec, table.block_at(offset) + 1,
                                                     table.block_at(max(stop - 1, offset)),
                                                     reference, end)
                if target is not None:
                    landing = int(table.ustart[target] + table.first_record[target])
                    kept.append((offset, landing))
                    offset = landing
                    continue
            if record.end > begin:
                kept.append((offset, offset + record.length))
        elif kept:
            break
        offset += record.length
    return kept


def _last_block_starting_before(reader: UncompressedReader, codec: RecordCodec, first: int,
                                last: int, reference: int, end: int) -> int | None:
    """The last block in [first, last] whose first record lies on `reference` before `end`."""
    table = reader.blocks
    candidates = table.record_blocks(first, last)
    low, high = 0, len(candidates) - 1
    best = None
    while low <= high:
        middle = (low + high) // 2
        block = int(candidates[middle])
        record = _Cursor(reader, codec).record_at(int(table.ustart[block]
                                                      + table.first_record[block]))
        if record is not None and record.reference == reference and record.begin < end:
            best = block
            low = middle + 1
        else:
            high = middle - 1
    return best


def _unplaced(reader: UncompressedReader, codec: RecordCodec, index: BgzfIndex,
              header_size: int) -> list[tuple[int, int]]:
    """Reads with no reference: they follow all placed reads, up to the end."""
    table = reader.blocks
    placed_end = index.end_of_placed_records()
    offset = table.uncompressed_of(placed_end) if placed_end else header_size
    cursor = _Cursor(reader, codec)
    while offset < table.total_uncompressed:
        record = cursor.record_at(offset)
        if record is None:
            break
        if record.reference < 0:
            return [(offset, table.total_uncompressed)]
        offset += record.length
    return []


def _union(ranges: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for start, stop in sorted(r for r in ranges if r[1] > r[0]):
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], stop))
        else:
            merged.append((start, stop))
    return merged


def _pieces(reader: UncompressedReader, ranges: list[tuple[int, int]]) -> list[Piece]:
    """Uncompressed ranges -> whole stored blocks where a block is covered entirely, and
    re-compressed blocks of the covered bytes where it is covered in part."""
    table = reader.blocks
    partial: dict[int, list[tuple[int, int]]] = defaultdict(list)
    full: list[tuple[int, int]] = []  # block ranges, inclusive
    for start, stop in _union(ranges):
        first, last = table.block_at(start), table.block_at(stop - 1)
        first_full, last_full = first, last
        if start > table.ustart[first]:  # the first block from `start` on
            partial[first].append((start, min(stop, _block_end(table, first))))
            first_full = first + 1
        if stop < _block_end(table, last):
            if last != first or start == table.ustart[first]:  # the last block up to `stop`
                partial[last].append((max(start, int(table.ustart[last])), stop))
            last_full = last - 1
        if first_full <= last_full:
            full.append((first_full, last_full))
    events = sorted([(a, 0, b) for a, b in full] + [(b, 1, b) for b in partial])
    pieces: list[Piece] = []
    for block, kind, last in events:
        if kind == 0:
            start = int(table.coffset[block])
            stop = int(table.coffset[last] + table.csize[last])
            if pieces and isinstance(pieces[-1], RawPiece) and pieces[-1].stop == start:
                pieces[-1] = RawPiece(pieces[-1].start, stop)
            else:
                pieces.append(RawPiece(start, stop))
            continue
        payload = reader.payload(block)
        base = int(table.ustart[block])
        kept = b"".join(payload[a - base : b - base] for a, b in partial[block])
        data = b"".join(deflate_block(kept[i : i + MAX_BLOCK_PAYLOAD])
                        for i in range(0, len(kept), MAX_BLOCK_PAYLOAD))
        if pieces and isinstance(pieces[-1], InlinePiece):
            pieces[-1] = InlinePiece(pieces[-1].data + data)
        else:
            pieces.append(InlinePiece(data))
    return pieces


def _block_end(table: BlockTable, block: int) -> int:
    return int(table.ustart[block] + table.usize[block])


# -- CRAM ------------------------------------------------------------------------------------------
def _plan_cram(file: ArchivedFile, regions: list[Region] | None, references: list[int],
               header_only: bool) -> SlicePlan:
    assert isinstance(file.index, CramIndex)
    header_size = file.entry.header_size
    data_end = file.entry.plaintext_size - len(hts.CRAM3_EOF)
    plan = SlicePlan(file, header=[RawPiece(0, header_size)])
    eof = InlinePiece(hts.CRAM3_EOF)
    if header_only:
        plan.body = [eof]
        return plan
    if regions is None:
        plan.body = [RawPiece(header_size, data_end), eof] if data_end > header_size else [eof]
        return plan
    offsets = file.index.container_offsets
    following = {offset: (offsets[i + 1] if i + 1 < len(offsets) else data_end)
                 for i, offset in enumerate(offsets)}
    wanted: set[int] = set()
    for region, reference in zip(regions, references, strict=True):
        wanted.update(file.index.containers(reference, region.start or 0, region.end))
    body: list[Piece] = []
    for offset in sorted(wanted):
        stop = following[offset]
        last = body[-1] if body else None
        if isinstance(last, RawPiece) and last.stop == offset:
            body[-1] = RawPiece(last.start, stop)
        else:
            body.append(RawPiece(offset, stop))
    plan.body = [*body, eof]
    return plan
