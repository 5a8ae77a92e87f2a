"""Record-aligned BGZF: checking a stream's layout block by block, and re-encoding it so that
every record lies whole within one BGZF block (records longer than a block start a fresh one).

The uncompressed bytes never change; only where block boundaries fall. The check also yields the
block table slicing needs (:class:`genofed.store.originals.BlockTable`).
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from zlib_ng import zlib_ng

from genofed.errors import BgzfError, StorageError
from genofed.formats import hts
from genofed.formats.bgzf import EOF_BLOCK, MAX_BLOCK_PAYLOAD, deflate_block
from genofed.formats.crypt4gh import Crypt4ghWriter, KeyPair
from genofed.formats.hts import FileFormat, RecordCodec

_INFLATE_BATCH = 64


# -- the block table of a stored file ---------------------------------------------------------
class BlockTable:
    """Per BGZF block: compressed offset and size, uncompressed size, and where the first record
    starting in the block begins (-1: none, the block lies in the header or in a record that
    began earlier)."""

    def __init__(self, rows: np.ndarray) -> None:
        self.coffset = rows[:, 0].astype(np.int64)
        self.csize = rows[:, 1].astype(np.int64)
        self.usize = rows[:, 2].astype(np.int64)
        self.first_record = rows[:, 3].astype(np.int64)
        self.ustart = np.concatenate(([0], np.cumsum(self.usize)[:-1])).astype(np.int64)
        self.total_uncompressed = int(self.usize.sum())
        self._record_blocks = np.flatnonzero(self.first_record >= 0)

    def __len__(self) -> int:
        return len(self.coffset)

    def to_bytes(self) -> bytes:
        out = io.BytesIO()
        np.save(out, np.stack([self.coffset, self.csize, self.usize, self.first_record], axis=1))
        return out.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> BlockTable:
        return cls(np.load(io.BytesIO(data), allow_pickle=False))

    def block_at(self, uncompressed: int) -> int:
        """The block holding uncompressed offset `uncompressed`."""
        return int(np.searchsorted(self.ustart, uncompressed, "right")) - 1

    def uncompressed_of(self, virtual_offset: int) -> int:
        """Virtual offset -> offset in the uncompressed stream."""
        coffset, within = virtual_offset >> 16, virtual_offset & 0xFFFF
        block = int(np.searchsorted(self.coffset, coffset, "left"))
        if block == len(self.coffset):
            return self.total_uncompressed
        if self.coffset[block] != coffset:
            raise StorageError(f"index offset {coffset} is not a block start of the stored file "
                               "(index and file do not belong together)")
        return int(self.ustart[block]) + within

    def record_blocks(self, first: int, last: int) -> np.ndarray:
        """Blocks in [first, last] in which a record starts."""
        lo = int(np.searchsorted(self._record_blocks, first, "left"))
        hi = int(np.searchsorted(self._record_blocks, last, "right"))
        return self._record_blocks[lo:hi]


@dataclass
class BlockRow:
    coffset: int
    csize: int
    usize: int
    first_record: int = -1


@dataclass
class KnownLayout:
    """A VCF's layout established by a caller that has already read every block (ingest's
    parse), so archiving it needs no second pass."""

    rows: list[BlockRow]
    header_size: int
    aligned: bool


class LayoutCheck:
    """Walks the uncompressed stream block by block: the header's size, where records start, and
    whether any record straddles a block boundary."""

    def __init__(self, codec: RecordCodec) -> None:
        self.codec = codec
        self.rows: list[BlockRow] = []
        self.header_size: int | None = None
        self.aligned = True
        self._row_starts: list[int] = []
        self._buffer = b""  # the bytes of the record not yet complete (or of the header)
        self._buffer_start = 0
        self._total = 0
        self._cursor = 0  # first row that may still receive its first record

    def add_block(self, coffset: int, csize: int, payload: bytes) -> None:
        self.rows.append(BlockRow(coffset, csize, len(payload)))
        self._row_starts.append(self._total)
        self._total += len(payload)
        if payload:
            self._buffer += payload
            self._advance(final=False)

    def finish(self) -> None:
        self._advance(final=True)

    def _advance(self, *, final: bool) -> None:
        codec = self.codec
        if self.header_size is None:
            size = codec.header_length(self._buffer, final=final)
            if size is None:
                return
            self.header_size = size
        buffer, base = self._buffer, self._buffer_start
        position = max(self.header_size - base, 0)
        while position < len(buffer):
            length = codec.record_length(buffer, position)
            if length is None:
                if not final:
                    break
                if codec.file_format is not FileFormat.VCF:
                    raise ValueError(f"truncated: the record at uncompressed byte "
                                     f"{base + position} is incomplete")
                length = len(buffer) - position
            self._record(base + position, base + position + length)
            position += length
        self._buffer = buffer[position:]
        self._buffer_start = base + position

    def _record(self, start: int, end: int) -> None:
        rows, starts = self.rows, self._row_starts
        while self._cursor < len(rows) and starts[self._cursor] + rows[self._cursor].usize <= start:
            self._cursor += 1
        row = rows[self._cursor]
        if row.first_record < 0:
            row.first_record = start - starts[self._cursor]
        # a block boundary strictly inside a record breaks the layout, unless the record is
        # longer than one block can hold
        j = self._cursor + 1
        while j < len(rows) and starts[j] < end:
            if rows[j].usize and end - start <= MAX_BLOCK_PAYLOAD:
                self.aligned = False
            j += 1


class VcfLayoutCheck:
    """:class:`LayoutCheck` for VCF text, a block at a time instead of a line at a time: a
    record straddles a block boundary exactly when a block does not end with a newline."""

    def __init__(self) -> None:
        self.rows: list[BlockRow] = []
        self.header_size: int | None = None
        self.aligned = True
        self._codec = hts.VcfCodec([])
        self._head = b""
        self._total = 0
        self._line_start: int | None = None  # start of a line that runs past the last block
        self._line_row = 0

    def add_block(self, coffset: int, csize: int, payload: bytes) -> None:
        start = self._total
        self.rows.append(BlockRow(coffset, csize, len(payload)))
        self._total += len(payload)
        if not payload:
            return
        if self.header_size is not None:
            self._scan(start, payload, 0)
            return
        self._head += payload
        size = self._codec.header_length(self._head)
        if size is None:
            return
        self.header_size = size
        self._head = b""
        self._scan(start, payload, size - start)

    def _scan(self, start: int, payload: bytes, offset: int) -> None:
        row = self.rows[-1]
        if self._line_start is not None:  # finishing a line begun in an earlier block
            newline = payload.find(b"\n", offset)
            if newline < 0:
                return
            if start + newline + 1 - self._line_start <= MAX_BLOCK_PAYLOAD:
                self.aligned = False
            self._line_start = None
            offset = newline + 1
        if offset >= len(payload):
            return
        if row.first_record < 0:
            row.first_record = offset
        if not payload.endswith(b"\n"):
            last = payload.rfind(b"\n", offset)
            self._line_start = start + (last + 1 if last >= 0 else offset)
            self._line_row = len(self.rows) - 1

    def finish(self) -> None:
        if self.header_size is None:
            self.header_size = self._codec.header_length(self._head, final=True) or 0
        last_line = self._line_start
        if (last_line is not None and self._total - last_line <= MAX_BLOCK_PAYLOAD
                and any(r.usize for r in self.rows[self._line_row + 1 :])):
            self.aligned = False


def _split_bgzf(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes]]:
    """(compressed offset, block bytes) for each BGZF block of a byte stream."""
    buffer = bytearray()
    offset = 0
    for chunk in chunks:
        buffer += chunk
        position = 0
        while len(buffer) - position >= 18:
            header = buffer[position : position + 18]
            if header[:4] != b"\x1f\x8b\x08\x04" or header[12:14] != b"BC":
                raise BgzfError(f"byte {offset} is not the start of a BGZF block")
            size = int.from_bytes(header[16:18], "little") + 1
            if len(buffer) - position < size:
                break
            yield offset, bytes(buffer[position : position + size])
            offset += size
            position += size
        del buffer[:position]
    if buffer:
        raise BgzfError(f"truncated gzip: {len(buffer)} bytes of an incomplete block at byte "
                        f"{offset}")


def _inflate(block: bytes) -> bytes:
    try:
        payload = zlib_ng.decompress(block[18:-8], -15)
    except zlib_ng.error as exc:  # type: ignore[misc]
        raise BgzfError(f"corrupt BGZF block: {exc}") from None
    crc = int.from_bytes(block[-8:-4], "little")
    if len(payload) != int.from_bytes(block[-4:], "little") or zlib_ng.crc32(payload) != crc:
        raise BgzfError("corrupt BGZF block: checksum mismatch")
    return payload


def inflated_blocks(chunks: Iterable[bytes]) -> Iterator[tuple[int, bytes, bytes]]:
    """(offset, compressed block, payload), inflating batches on a few threads."""
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        batch: list[tuple[int, bytes]] = []
        for item in _split_bgzf(chunks):
            batch.append(item)
            if len(batch) >= _INFLATE_BATCH:
                payloads = pool.map(_inflate, [b for _o, b in batch])
                yield from ((o, b, p) for (o, b), p in zip(batch, payloads, strict=True))
                batch = []
        payloads = pool.map(_inflate, [b for _o, b in batch])
        yield from ((o, b, p) for (o, b), p in zip(batch, payloads, strict=True))


def check_layout(blocks: Iterable[tuple[int, bytes, bytes]], file_format: FileFormat,
                  sink: Callable[[bytes], object] | None = None) -> LayoutCheck | VcfLayoutCheck:
    check = (VcfLayoutCheck() if file_format is FileFormat.VCF
             else LayoutCheck(hts.codec_for(file_format)))
    last = b""
    for offset, block, payload in blocks:
        if sink is not None:
            sink(block)
        check.add_block(offset, len(block), payload)
        last = block
    if last != EOF_BLOCK:
        raise BgzfError("truncated gzip: the BGZF end-of-file block is missing")
    check.finish()
    return check


def block_table(rows: list[BlockRow]) -> BlockTable:
    array = np.array([(r.coffset, r.csize, r.usize, r.first_record) for r in rows],
                     dtype=np.int64).reshape(-1, 4)
    return BlockTable(array)


def records(uncompressed: Iterable[bytes], codec: RecordCodec, *,
             complete_lines: bool = False) -> Iterator[tuple[bool, bytes]]:
    """(is_header, bytes): the header, then each record of an uncompressed stream. A final VCF
    line without its newline is accepted unless `complete_lines` (an encrypted upload cut at a
    segment boundary would otherwise pass for complete)."""
    buffer = b""
    header_done = False
    for chunk in uncompressed:
        buffer += chunk
        position = 0
        if not header_done:
            size = codec.header_length(buffer)
            if size is None:
                continue
            yield True, buffer[:size]
            header_done = True
            position = size
        while True:
            length = codec.record_length(buffer, position)
            if length is None:
                break
            yield False, buffer[position : position + length]
            position += length
        buffer = buffer[position:]
    if not header_done:
        yield True, buffer[: codec.header_length(buffer, final=True)]
        return
    if buffer:
        if codec.file_format is not FileFormat.VCF or complete_lines:
            raise ValueError("truncated: the last record is incomplete")
        yield False, buffer + b"\n"


def reencode(uncompressed: Iterable[bytes], target: Path, file_format: FileFormat,
              keys: KeyPair, *, complete_lines: bool = False) -> tuple[int, int, BlockTable]:
    """Write the stream as record-aligned BGZF, encrypted. Returns (plaintext size, header
    size, block table)."""
    codec = hts.codec_for(file_format)
    rows: list[BlockRow] = []
    header_size = 0
    with open(target, "wb") as out, Crypt4ghWriter(out, keys.public, keys.secret) as writer:
        offset = 0

        def emit(data: bytes | bytearray, first_record: int) -> None:
            nonlocal offset
            block = deflate_block(bytes(data))
            writer.write(block)
            rows.append(BlockRow(offset, len(block), len(data), first_record))
            offset += len(block)

        payload = bytearray()
        first = -1  # where the first record starting in `payload` begins
        for is_header, record in records(uncompressed, codec, complete_lines=complete_lines):
            if is_header:
                header_size = len(record)
                for start in range(0, len(record), MAX_BLOCK_PAYLOAD):
                    emit(record[start : start + MAX_BLOCK_PAYLOAD], -1)
                continue
            if payload and len(payload) + len(record) > MAX_BLOCK_PAYLOAD:
                emit(payload, first)
                payload.clear()
                first = -1
            if first < 0:
                first = len(payload)
            payload += record
            while len(payload) > MAX_BLOCK_PAYLOAD:  # a record longer than a block
                emit(payload[:MAX_BLOCK_PAYLOAD], first if first < MAX_BLOCK_PAYLOAD else -1)
                del payload[:MAX_BLOCK_PAYLOAD]
                first = first - MAX_BLOCK_PAYLOAD if first >= MAX_BLOCK_PAYLOAD else -1
        if payload:
            emit(payload, first)
        writer.write(EOF_BLOCK)
        rows.append(BlockRow(offset, len(EOF_BLOCK), 0, -1))
        size = writer.plaintext_size
    return size, header_size, block_table(rows)


