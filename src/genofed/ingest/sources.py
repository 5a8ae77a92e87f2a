"""Where VCF records come from: a bgzipped VCF split into pieces of BGZF blocks, a plain or
ordinary-gzip VCF held in memory, or a BCF read through htslib (cyvcf2).

Pieces of a BGZF file are inflated by the worker that parses them; only the block table crosses
process boundaries.
"""

from __future__ import annotations

import gzip
import itertools
import mmap
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genofed.errors import BgzfError, InputError
from genofed.formats.bgzf import Block, inflate_block, scan_blocks
from genofed.ingest.vcf_header import VcfHeader, parse_header
from genofed.ingest.vcf_records import PLOIDY, ParsedRecords, call_flags

#: Uncompressed text per piece: enough to amortise per-piece costs, small enough to bound memory.
PIECE_PAYLOAD = 48 << 20


@dataclass(frozen=True)
class Piece:
    index: int
    first_block: int  # BGZF: block range [first_block, last_block); text: byte range
    last_block: int


class VcfSource:
    """A VCF/BCF input: its header and the pieces its records can be parsed in."""

    kind: str  # "bgzf-vcf" | "text-vcf" | "bcf"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)
        self.blocks: list[Block] = []
        self.text: bytes | None = None  # text-vcf only
        self.header = self._open()

    # -- opening ---------------------------------------------------------------------------
    def _open(self) -> VcfHeader:
        if not self.path.is_file():
            raise InputError(self.name, "no such file")
        with open(self.path, "rb") as handle:
            magic = handle.read(4)
        if magic[:2] == b"\x1f\x8b":
            with open(self.path, "rb") as handle:
                data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
            try:
                self.blocks = scan_blocks(data, name=self.name)
            except BgzfError as exc:
                if "not BGZF" not in str(exc):
                    raise InputError(self.name, str(exc).split(": ", 1)[1]) from None
                self.blocks = []
            if self.blocks:
                first = inflate_block(data, self.blocks[0], name=self.name)
                if first[:3] == b"BCF":
                    self.kind = "bcf"
                    return self._bcf_header()
                self.kind = "bgzf-vcf"
                return self._text_header_from_blocks(data)
            # An ordinary gzip file: read it whole (no random access, no parallel parse).
            try:
                self.text = gzip.decompress(self.path.read_bytes())
            except (OSError, EOFError, zlib.error) as exc:
                raise InputError(self.name, f"truncated or corrupt gzip: {exc}") from None
        elif magic[:3] == b"BCF":
            raise InputError(self.name, "uncompressed BCF is not supported; "
                             "convert with `bcftools view -Ob`")
        else:
            self.text = self.path.read_bytes()
        self.kind = "text-vcf"
        return self._text_header(self.text)

    def _text_header_from_blocks(self, data: mmap.mmap) -> VcfHeader:
        chunks: list[bytes] = []
        for block in self.blocks:
            chunks.append(inflate_block(data, block, name=self.name))
            joined = b"".join(chunks)
            chrom = joined.find(b"#CHROM")
            if chrom >= 0 and joined.find(b"\n", chrom) >= 0:
                return self._text_header(joined)
            if len(joined) > 256 << 20:
                break
        return self._text_header(b"".join(chunks))

    def _text_header(self, text: bytes) -> VcfHeader:
        end = 0
        while text.startswith(b"#", end):
            nl = text.find(b"\n", end)
            if nl < 0:
                end = len(text)
                break
            end = nl + 1
        try:
            header_text = text[:end].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(self.name, f"malformed header: not UTF-8 text ({exc.reason})",
                             line=text[: exc.start].count(b"\n") + 1) from None
        return parse_header(header_text, name=self.name)

    def _bcf_header(self) -> VcfHeader:
        import cyvcf2

        try:
            reader = cyvcf2.VCF(str(self.path))
        except (OSError, Exception) as exc:  # cyvcf2 raises bare Exception for bad headers
            raise InputError(self.name, f"malformed BCF header: {exc}") from None
        text = reader.raw_header
        reader.close()
        return parse_header(text, name=self.name)

    # -- pieces ------------------------------------------------------------------------------
    def pieces(self, target: int | None = None) -> list[Piece]:
        target = target or PIECE_PAYLOAD
        if self.kind == "bcf":
            return [Piece(0, 0, 0)]
        if self.kind == "text-vcf":
            assert self.text is not None
            bounds = [0]
            while bounds[-1] + target < len(self.text):
                nl = self.text.find(b"\n", bounds[-1] + target)
                if nl < 0:
                    break
                bounds.append(nl + 1)
            bounds.append(len(self.text))
            return [Piece(i, a, b) for i, (a, b) in enumerate(itertools.pairwise(bounds))
                    if b > a]
        pieces: list[Piece] = []
        start = 0
        size = 0
        for i, block in enumerate(self.blocks):
            size += block.payload_size
            if size >= target:
                pieces.append(Piece(len(pieces), start, i + 1))
                start, size = i + 1, 0
        if start < len(self.blocks):
            pieces.append(Piece(len(pieces), start, len(self.blocks)))
        return pieces

    def piece_text(self, piece: Piece) -> bytes:
        """The complete lines that belong to a piece (the header lines too, for piece 0)."""
        return b"".join(self.piece_parts(piece)[0])

    def piece_parts(self, piece: Piece) -> tuple[Sequence[bytes | memoryview], bool]:
        """:meth:`piece_text` as the inflated blocks that hold it, in order (the parser reads
        them as one text, so they are never copied into one), and whether every BGZF block of
        the piece ends at a line end (what the encrypted archive of the file needs to know,
        learnt here for free)."""
        if self.kind == "text-vcf":
            assert self.text is not None
            return [memoryview(self.text)[piece.first_block : piece.last_block]], False
        with open(self.path, "rb") as handle:
            data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
        try:
            parts = [inflate_block(data, b, name=self.name)
                     for b in self.blocks[piece.first_block : piece.last_block]]
            aligned = all(not p or p.endswith(b"\n") for p in parts)
            if piece.first_block > 0:
                previous = inflate_block(data, self.blocks[piece.first_block - 1], name=self.name)
                if previous and not previous.endswith(b"\n"):
                    # The first line began in the previous piece, which parses it.
                    parts = _after_first_newline(parts)
            if parts and not parts[-1].endswith(b"\n"):
                # Finish the last line from the following blocks.
                following = piece.last_block
                while following < len(self.blocks):
                    payload = inflate_block(data, self.blocks[following], name=self.name)
                    nl = payload.find(b"\n")
                    if nl >= 0:
                        parts.append(payload[: nl + 1])
                        break
                    parts.append(payload)
                    following += 1
            return parts, aligned
        finally:
            data.close()

    def lines_before(self, piece: Piece) -> int:
        """How many lines precede a piece (error path: to turn a piece line into a file line)."""
        count = 0
        for earlier in range(piece.index):
            count += self.piece_text(Piece(earlier, *self._bounds(earlier))).count(b"\n")
        return count

    def _bounds(self, index: int) -> tuple[int, int]:
        piece = self.pieces()[index]
        return piece.first_block, piece.last_block


def _after_first_newline(parts: list[bytes]) -> list[bytes]:
    """`parts` without everything up to and including the first newline they hold."""
    for i, part in enumerate(parts):
        nl = part.find(b"\n")
        if nl >= 0:
            rest = part[nl + 1 :]
            return ([rest] if rest else []) + parts[i + 1 :]
    return []


def read_bcf(source: VcfSource) -> ParsedRecords:
    """BCF through htslib: slower per record than the text path, but BCF inputs are small here."""
    import cyvcf2

    n_samples = len(source.header.samples)
    out = ParsedRecords()
    contig_ids: dict[str, int] = {}
    contig_of: list[int] = []
    positions: list[int] = []
    quality: list[float] = []
    calls: list[np.ndarray] = []
    phases: list[np.ndarray] = []
    reader = cyvcf2.VCF(str(source.path), gts012=False)
    for number, record in enumerate(reader, start=1):
        contig_of.append(contig_ids.setdefault(record.CHROM, len(contig_ids)))
        positions.append(record.POS)
        out.ids.append(record.ID or ".")
        out.alleles.append([record.REF, *record.ALT])
        quality.append(np.nan if record.QUAL is None else record.QUAL)
        out.filters.append([] if record.FILTER is None and record.FILTERS == [] else
                           [f for f in (record.FILTERS or ["PASS"])])
        row = np.full((n_samples, PLOIDY), -1, dtype=np.int8)
        phased = np.zeros(n_samples, dtype=bool)
        genotype = record.genotype
        if genotype is not None and n_samples:
            array = genotype.array()
            if array.shape[1] - 1 > PLOIDY:
                raise InputError(source.name, f"ploidy {array.shape[1] - 1} is not supported",
                                 field=f"record {number} GT")
            width = array.shape[1] - 1
            row[:, :width] = np.where(array[:, :width] < -1, -2, array[:, :width])
            if width == 1:
                row[:, 1] = -2
            phased = array[:, -1].astype(bool)
        calls.append(row)
        phases.append(phased)
    reader.close()
    out.contigs = list(contig_ids)
    out.contig = np.asarray(contig_of, dtype=np.int32)
    out.position = np.asarray(positions, dtype=np.int32)
    out.quality = np.asarray(quality, dtype=np.float32)
    out.genotypes = (np.stack(calls) if calls
                     else np.empty((0, n_samples, PLOIDY), dtype=np.int8))
    out.phased = np.stack(phases) if phases else np.empty((0, n_samples), dtype=bool)
    out.flags = call_flags(out.genotypes, out.phased)
    return out
