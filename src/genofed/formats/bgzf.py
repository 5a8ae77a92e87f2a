"""BGZF (blocked gzip, SAM/BAM spec section 4.1): reading blocks and writing record-aligned files.

htslib's readers accept any BGZF file, but our files are also sliced for htsget and encrypted in
Crypt4GH segments, so :class:`BgzfWriter` never lets a record straddle two blocks (Debian's `bgzip`
does not promise that). Reading is split into a cheap scan of block offsets and independent block
decompression, so that ingest workers can each inflate their own byte range.
"""

from __future__ import annotations

import mmap
import struct
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from zlib_ng import zlib_ng

from genofed.errors import BgzfError

#: Largest uncompressed payload per block; htslib uses the same bound so blocks stay < 64 KiB.
MAX_BLOCK_PAYLOAD = 0xFF00
#: The fixed empty block that terminates every BGZF file.
EOF_BLOCK = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
_HEADER = struct.Struct("<4BI2BH2BHH")  # magic..xlen, then the BC subfield (SI1 SI2 SLEN BSIZE)
_HEADER_SIZE = 18
#: Anything holding a whole file's bytes: read into memory or memory-mapped.
Buffer = bytes | bytearray | memoryview | mmap.mmap


@dataclass(frozen=True, slots=True)
class Block:
    """One BGZF block: where it starts in the file, its compressed and its uncompressed size."""

    offset: int
    size: int
    payload_size: int


def scan_blocks(data: Buffer, *, name: str = "<bytes>") -> list[Block]:
    """List every block of a BGZF file held in memory (or memory-mapped), checking each header."""
    blocks: list[Block] = []
    offset = 0
    end = len(data)
    while offset < end:
        if end - offset < _HEADER_SIZE:
            raise BgzfError(f"{name}: truncated BGZF block header at byte {offset}")
        fields = _HEADER.unpack_from(data, offset)
        id1, id2, cm, flg, _mtime, _xfl, _os, xlen, si1, si2, _slen, bsize = fields
        if (id1, id2, cm) != (0x1F, 0x8B, 8) or not flg & 4 or (si1, si2) != (66, 67):
            what = "a gzip file that is not BGZF" if (id1, id2) == (0x1F, 0x8B) else "not gzip"
            raise BgzfError(f"{name}: byte {offset} is {what}; compress with `bgzip` or "
                            "`bcftools view -Oz`")
        size = bsize + 1
        if offset + size > end:
            raise BgzfError(f"{name}: truncated gzip: block at byte {offset} needs {size} bytes, "
                            f"only {end - offset} remain")
        if xlen != 6:
            raise BgzfError(f"{name}: unsupported BGZF extra field length {xlen} at byte {offset}")
        (payload_size,) = struct.unpack_from("<I", data, offset + size - 4)
        blocks.append(Block(offset, size, payload_size))
        offset += size
    if not blocks or data[blocks[-1].offset : blocks[-1].offset + blocks[-1].size] != EOF_BLOCK:
        raise BgzfError(f"{name}: truncated gzip: the BGZF end-of-file block is missing")
    return blocks


def inflate_block(data: Buffer, block: Block, *, name: str = "<bytes>") -> bytes:
    """Decompress one block and check its CRC32 and length."""
    start = block.offset + _HEADER_SIZE
    stop = block.offset + block.size - 8
    try:
        payload = zlib_ng.decompress(data[start:stop], -15)
    except zlib_ng.error as exc:  # type: ignore[misc]
        raise BgzfError(f"{name}: corrupt BGZF block at byte {block.offset}: {exc}") from None
    crc, isize = struct.unpack_from("<II", data, stop)
    if isize != len(payload) or crc != zlib_ng.crc32(payload):
        raise BgzfError(f"{name}: corrupt BGZF block at byte {block.offset}: checksum mismatch")
    return payload


def deflate_block(payload: bytes, level: int = 6) -> bytes:
    """Compress one payload (at most MAX_BLOCK_PAYLOAD bytes) into a complete BGZF block."""
    if len(payload) > MAX_BLOCK_PAYLOAD:
        raise ValueError("BGZF payload larger than one block")
    compressor = zlib_ng.compressobj(level, zlib_ng.DEFLATED, -15)
    cdata = compressor.compress(payload) + compressor.flush()
    header = _HEADER.pack(0x1F, 0x8B, 8, 4, 0, 0, 0xFF, 6, 66, 67, 2,
                          len(cdata) + _HEADER_SIZE + 8 - 1)
    return header + cdata + struct.pack("<II", zlib_ng.crc32(payload), len(payload))


class BgzfWriter:
    """Write records to a BGZF file so that each record lies whole within one block.

    A record longer than one block payload is necessarily split; every other record boundary is a
    block boundary candidate. Blocks are compressed on a small thread pool (zlib-ng releases the
    GIL), keeping their order.
    """

    def __init__(self, path: str | Path, *, level: int = 6, threads: int = 1) -> None:
        self._file: BinaryIO = open(path, "wb")  # noqa: SIM115 - closed in close()
        self._level = level
        self._buffer = bytearray()
        self._pool = ThreadPoolExecutor(max_workers=threads) if threads > 1 else None
        self._pending: list[object] = []

    def write_record(self, record: bytes) -> None:
        """Append one record (for VCF: a line including its newline)."""
        if self._buffer and len(self._buffer) + len(record) > MAX_BLOCK_PAYLOAD:
            self._flush_block()
        self._buffer += record
        while len(self._buffer) > MAX_BLOCK_PAYLOAD:  # an oversized record spans blocks
            head = bytes(self._buffer[:MAX_BLOCK_PAYLOAD])
            del self._buffer[:MAX_BLOCK_PAYLOAD]
            self._emit(head)

    def _flush_block(self) -> None:
        if self._buffer:
            self._emit(bytes(self._buffer))
            self._buffer.clear()

    def _emit(self, payload: bytes) -> None:
        if self._pool is None:
            self._file.write(deflate_block(payload, self._level))
            return
        self._pending.append(self._pool.submit(deflate_block, payload, self._level))
        if len(self._pending) >= 64:
            self._drain()

    def _drain(self) -> None:
        for future in self._pending:
            self._file.write(future.result())  # type: ignore[attr-defined]
        self._pending.clear()

    def close(self) -> None:
        self._flush_block()
        self._drain()
        if self._pool is not None:
            self._pool.shutdown()
        self._file.write(EOF_BLOCK)
        self._file.close()

    def __enter__(self) -> BgzfWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

