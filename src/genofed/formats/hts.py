"""The file formats htsget serves, and just enough of each to slice it.

VCF (bgzipped), BCF and BAM are BGZF streams of records after a header; a codec finds the header's
end, the reference names, and each record's length and span on its reference (0-based, half-open,
as htslib computes it for region queries: `bcftools view -r`, `samtools view REGION`). CRAM is
sliced by container through its `.crai` index and needs no record codec here.
"""

from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class FileFormat(StrEnum):
    VCF = "VCF"
    BCF = "BCF"
    BAM = "BAM"
    CRAM = "CRAM"

    @property
    def datatype(self) -> str:
        """The htsget endpoint serving it: 'variants' or 'reads'."""
        return "variants" if self in (FileFormat.VCF, FileFormat.BCF) else "reads"

    @property
    def suffix(self) -> str:
        return {"VCF": ".vcf.gz", "BCF": ".bcf", "BAM": ".bam", "CRAM": ".cram"}[self.value]

    @property
    def is_bgzf(self) -> bool:
        return self is not FileFormat.CRAM

    @property
    def media_type(self) -> str:
        return f"application/vnd.ga4gh.{self.value.lower()}"


#: The CRAM 3.x end-of-file container.
CRAM3_EOF = bytes.fromhex("0f000000ffffffff0fe0454f4600000000010005bdd94f0001000606010001000100"
                          "ee63014b")


def detect_format(first_payload: bytes) -> FileFormat | None:
    """The format of a file from its first bytes (decompressed, for BGZF formats)."""
    if first_payload.startswith(b"CRAM"):
        return FileFormat.CRAM
    if first_payload.startswith(b"BCF\x02"):
        return FileFormat.BCF
    if first_payload.startswith(b"BAM\x01"):
        return FileFormat.BAM
    if first_payload.startswith(b"##fileformat=VCF"):
        return FileFormat.VCF
    return None


@dataclass(frozen=True, slots=True)
class RecordSpan:
    """One record: its bytes in the uncompressed stream and its span on a reference."""

    length: int
    reference: int  # -1: unplaced
    begin: int  # 0-based
    end: int  # 0-based, exclusive


class RecordCodec(Protocol):
    file_format: FileFormat

    def header_length(self, data: bytes, *, final: bool = False) -> int | None:
        """Bytes of the header at the start of `data`, None when more data is needed."""
        ...

    def record_length(self, data: bytes, offset: int) -> int | None:
        """Length of the record at `offset`; None when it runs past the end of `data`."""
        ...

    def parse(self, data: bytes, offset: int, *, final: bool = False) -> RecordSpan | None:
        """The record at `offset`; None when it runs past the end of `data` (unless `final`)."""
        ...


# -- VCF ----------------------------------------------------------------------------------------
class VcfCodec:
    """VCF text lines. References are numbered by `names` (the tabix index's sequence names)."""

    file_format = FileFormat.VCF

    def __init__(self, names: list[str]) -> None:
        self.names = names
        self._ids = {name.encode(): i for i, name in enumerate(names)}

    def header_length(self, data: bytes, *, final: bool = False) -> int | None:
        offset = 0
        while offset < len(data) and data[offset : offset + 1] == b"#":
            newline = data.find(b"\n", offset)
            if newline < 0:
                return len(data) if final else None
            offset = newline + 1
        if offset == len(data) and not final:
            return None
        return offset

    def record_length(self, data: bytes, offset: int) -> int | None:
        newline = data.find(b"\n", offset)
        return None if newline < 0 else newline + 1 - offset

    def parse(self, data: bytes, offset: int, *, final: bool = False) -> RecordSpan | None:
        newline = data.find(b"\n", offset)
        if newline < 0:
            if not final or offset >= len(data):
                return None
            newline = len(data) - 1
        fields = data[offset : newline + 1].split(b"\t", 8)
        if len(fields) < 8:
            raise ValueError(f"malformed VCF record at byte {offset}: fewer than 8 columns")
        begin = int(fields[1]) - 1
        end = begin + len(fields[3])
        # htslib sets the record's length from a single integer INFO/END beyond POS
        match = _INFO_END.search(fields[7])
        if match and match.group(1).isdigit() and int(match.group(1)) > begin:
            end = int(match.group(1))
        return RecordSpan(newline + 1 - offset, self._ids.get(fields[0], -2), begin, end)


_INFO_END = re.compile(rb"(?:^|;)END=([^;\t\n]*)")


def vcf_header_references(header: bytes) -> list[str]:
    """Contig names in the order of the header's ##contig lines."""
    return [m.group(1).decode() for m in re.finditer(rb"^##contig=<.*?ID=([^,>]+)", header,
                                                      re.MULTILINE)]


# -- BCF ----------------------------------------------------------------------------------------
class BcfCodec:
    file_format = FileFormat.BCF
    _FIXED = struct.Struct("<IIiii")

    def header_length(self, data: bytes, *, final: bool = False) -> int | None:
        if len(data) < 9:
            return None
        (text_length,) = struct.unpack_from("<I", data, 5)
        return 9 + text_length if len(data) >= 9 + text_length or final else None

    def record_length(self, data: bytes, offset: int) -> int | None:
        if offset + 8 > len(data):
            return None
        shared, individual = struct.unpack_from("<II", data, offset)
        length = 8 + shared + individual
        return length if offset + length <= len(data) else None

    def parse(self, data: bytes, offset: int, *, final: bool = False) -> RecordSpan | None:
        if offset + 20 > len(data):
            return None
        shared, individual, chrom, pos, rlen = self._FIXED.unpack_from(data, offset)
        return RecordSpan(8 + shared + individual, chrom, pos, pos + max(rlen, 1))


def bcf_references(header: bytes) -> list[str]:
    """The contig dictionary of a BCF header: ##contig lines in order, or at their IDX=."""
    text = header[9:].split(b"\0", 1)[0].decode("utf-8", "replace")
    names: dict[int, str] = {}
    next_id = 0
    for line in text.splitlines():
        if not line.startswith("##contig=<"):
            continue
        fields = dict(re.findall(r'([A-Za-z_]+)=("[^"]*"|[^,>]*)', line[10:]))
        if "ID" not in fields:
            continue
        index = int(fields["IDX"]) if fields.get("IDX", "").isdigit() else next_id
        names[index] = fields["ID"]
        next_id = max(next_id, index + 1)
    return [names.get(i, "") for i in range(next_id)]


# -- BAM ----------------------------------------------------------------------------------------
_REFERENCE_OPS = (0, 2, 3, 7, 8)  # M D N = X consume the reference


class BamCodec:
    file_format = FileFormat.BAM
    _CORE = struct.Struct("<iiiBBHHHi")

    def header_length(self, data: bytes, *, final: bool = False) -> int | None:
        try:
            (text_length,) = struct.unpack_from("<i", data, 4)
            offset = 8 + text_length
            (n_references,) = struct.unpack_from("<i", data, offset)
            offset += 4
            for _ in range(n_references):
                (name_length,) = struct.unpack_from("<i", data, offset)
                offset += 4 + name_length + 4
        except struct.error:
            return None
        return offset if offset <= len(data) else None

    def record_length(self, data: bytes, offset: int) -> int | None:
        if offset + 4 > len(data):
            return None
        (block_size,) = struct.unpack_from("<i", data, offset)
        return 4 + block_size if offset + 4 + block_size <= len(data) else None

    def parse(self, data: bytes, offset: int, *, final: bool = False) -> RecordSpan | None:
        if offset + 36 > len(data):
            return None
        block_size, ref, pos, name_length, _mapq, _bin, n_cigar, flag, _l_seq = \
            self._CORE.unpack_from(data, offset)
        cigar_at = offset + 36 + name_length
        if cigar_at + 4 * n_cigar > len(data):
            return None
        end = pos + 1
        if not flag & 4 and n_cigar:
            span = sum(op >> 4 for (op,) in struct.iter_unpack(
                "<I", data[cigar_at : cigar_at + 4 * n_cigar]) if op & 0xF in _REFERENCE_OPS)
            end = pos + max(span, 1)
        return RecordSpan(4 + block_size, ref, pos, end)


def bam_references(header: bytes) -> list[str]:
    (text_length,) = struct.unpack_from("<i", header, 4)
    offset = 8 + text_length
    (n_references,) = struct.unpack_from("<i", header, offset)
    offset += 4
    names = []
    for _ in range(n_references):
        (name_length,) = struct.unpack_from("<i", header, offset)
        names.append(bytes(header[offset + 4 : offset + 4 + name_length - 1]).decode())
        offset += 4 + name_length + 4
    return names


def codec_for(file_format: FileFormat, names: list[str] | None = None) -> RecordCodec:
    if file_format is FileFormat.VCF:
        return VcfCodec(names or [])
    if file_format is FileFormat.BCF:
        return BcfCodec()
    if file_format is FileFormat.BAM:
        return BamCodec()
    raise ValueError(f"{file_format} has no record codec (CRAM is sliced by container)")


# -- CRAM header -----------------------------------------------------------------------------------
def _itf8(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    if first < 0x80:
        return first, offset + 1
    if first < 0xC0:
        return ((first & 0x3F) << 8) | data[offset + 1], offset + 2
    if first < 0xE0:
        return ((first & 0x1F) << 16) | (data[offset + 1] << 8) | data[offset + 2], offset + 3
    if first < 0xF0:
        value = ((first & 0x0F) << 24) | (data[offset + 1] << 16) | (data[offset + 2] << 8) \
            | data[offset + 3]
        return value, offset + 4
    value = ((first & 0x0F) << 28) | (data[offset + 1] << 20) | (data[offset + 2] << 12) \
        | (data[offset + 3] << 4) | (data[offset + 4] & 0x0F)
    return value - (1 << 32) if value >= 1 << 31 else value, offset + 5


def _ltf8(data: bytes, offset: int) -> tuple[int, int]:
    first = data[offset]
    extra = 0
    while extra < 8 and first & (0x80 >> extra):
        extra += 1
    value = first & (0xFF >> (extra + 1)) if extra < 8 else 0
    for i in range(1, extra + 1):
        value = (value << 8) | data[offset + i]
    return value, offset + 1 + extra


def cram_header_text(data: bytes) -> str:
    """The SAM header text inside a CRAM 3 file's header container."""
    if not data.startswith(b"CRAM") or data[4] != 3:
        raise ValueError("not a CRAM 3.x file")
    offset = 26  # file definition: magic, major, minor, 20-byte file id
    offset += 4  # container length
    for _ in range(4):  # reference id, start, span, record count
        _value, offset = _itf8(data, offset)
    _value, offset = _ltf8(data, offset)  # record counter
    _value, offset = _ltf8(data, offset)  # bases
    _value, offset = _itf8(data, offset)  # block count
    landmarks, offset = _itf8(data, offset)
    for _ in range(landmarks):
        _value, offset = _itf8(data, offset)
    offset += 4  # CRC32
    method = data[offset]
    offset += 2  # method, content type
    _content_id, offset = _itf8(data, offset)
    size, offset = _itf8(data, offset)
    _raw_size, offset = _itf8(data, offset)
    block = data[offset : offset + size]
    if method == 1:
        block = zlib.decompress(block, 31)
    elif method != 0:
        raise ValueError(f"CRAM header block compressed with method {method}")
    length = int.from_bytes(block[:4], "little")
    return block[4 : 4 + length].decode("utf-8", "replace")


def cram_references(header_region: bytes) -> list[str]:
    names = []
    for line in cram_header_text(header_region).splitlines():
        if line.startswith("@SQ"):
            for part in line.split("\t")[1:]:
                if part.startswith("SN:"):
                    names.append(part[3:])
    return names
