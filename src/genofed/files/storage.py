"""Where archived files live in a dataset version, and reading them back (the storage layer).

    <version>/files/
        catalogue.c4gh         what is archived here: names, formats, sizes, delivery policy
        <token>.c4gh           a file, Crypt4GH-encrypted for the node's key
        <token>.index.c4gh     its index (.tbi/.csi/.bai/.crai): a BAM index alone reveals e.g.
                               sex (Crypt4GH spec, "Threat analysis")
        <token>.blocks.c4gh    its BGZF block table (offsets, sizes, first record in block)

Everything here is Crypt4GH-encrypted for the node's key, the catalogue included, and stored
under random names: file names often carry sample ids. Files live inside the version directory so
that adding one publishes a new version atomically, like ingest. Everything is decrypted in
memory only.
"""

from __future__ import annotations

import io
import json
import threading
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from genofed.files import formats
from genofed.files.crypt4gh_io import (
    SEGMENT_SIZE,
    Crypt4ghError,
    EncryptedFile,
    KeyPair,
    encrypt_bytes,
)
from genofed.files.formats import FileFormat, RecordCodec
from genofed.files.indexes import BgzfIndex, CramIndex, parse_bgzf_index, parse_crai

FILES_DIR = "files"
CATALOGUE = "catalogue.c4gh"
#: `role` of the file ingest archived from a dataset's VCF/BCF (htsget id = the dataset id).
ROLE_VARIANTS = "variants"
ROLE_ADDED = "added"


class StorageError(RuntimeError):
    """A stored file is missing or does not decrypt: the node's data or keys are damaged."""


@dataclass
class CatalogueEntry:
    """One archived file. `name` is its htsget name within the dataset."""

    name: str
    format: str
    role: str
    data: str
    index: str  # "" when the file could not be indexed
    index_kind: str
    blocks: str | None
    plaintext_size: int
    header_size: int
    source: str
    added: str
    reencoded: bool = False
    uploaded_encrypted: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def file_format(self) -> FileFormat:
        return FileFormat(self.format)


@dataclass
class Catalogue:
    """A dataset version's archived files, and how they may leave the node: Crypt4GH-encrypted
    for the requester only (the default), or also plain (`genofed files delivery --plain`)."""

    files: list[CatalogueEntry] = field(default_factory=list)
    plain_delivery: bool = False


def read_catalogue(version_dir: Path, keys: KeyPair) -> Catalogue:
    path = version_dir / FILES_DIR / CATALOGUE
    if not path.is_file():
        return Catalogue()
    try:
        document = json.loads(EncryptedFile(path, keys.secret).read_all())
    except Crypt4ghError as exc:
        raise StorageError(f"{path}: the file catalogue cannot be read: {exc}") from None
    return Catalogue([CatalogueEntry(**e) for e in document["files"]],
                     bool(document.get("plainDelivery", False)))


def write_catalogue(version_dir: Path, catalogue: Catalogue, keys: KeyPair) -> None:
    path = version_dir / FILES_DIR / CATALOGUE
    path.parent.mkdir(exist_ok=True)
    files = sorted(catalogue.files, key=lambda e: (e.name, e.format))
    document = {"plainDelivery": catalogue.plain_delivery, "files": [asdict(e) for e in files]}
    path.write_bytes(encrypt_bytes(json.dumps(document, indent=1).encode(), keys.public,
                                   keys.secret))


# -- BGZF block table -------------------------------------------------------------------------
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


# -- an archived file, opened ----------------------------------------------------------------------
@dataclass
class ArchivedFile:
    """A stored file ready for slicing: its encrypted body, index, header and references."""

    entry: CatalogueEntry
    version_dir: Path
    data: EncryptedFile
    index: BgzfIndex | CramIndex | None  # None: not indexed (served whole only)
    blocks: BlockTable | None
    header: bytes  # uncompressed header (BGZF formats); the CRAM header region otherwise
    references: list[str]

    @property
    def file_format(self) -> FileFormat:
        return self.entry.file_format

    @property
    def dataset_version(self) -> str:
        return self.version_dir.name

    def codec(self) -> RecordCodec:
        return formats.codec_for(self.file_format, self.references)

    def reference_id(self, name: str) -> int | None:
        try:
            return self.references.index(name)
        except ValueError:
            return None


def open_archived(version_dir: Path, entry: CatalogueEntry, keys: KeyPair) -> ArchivedFile:
    directory = version_dir / FILES_DIR
    try:
        data = EncryptedFile(directory / entry.data, keys.secret)
        index_bytes = (EncryptedFile(directory / entry.index, keys.secret).read_all()
                       if entry.index else b"")
        blocks = (BlockTable.from_bytes(EncryptedFile(directory / entry.blocks,
                                                      keys.secret).read_all())
                  if entry.blocks else None)
    except (FileNotFoundError, Crypt4ghError) as exc:
        raise StorageError(f"dataset version {version_dir}: archived file {entry.name!r} "
                           f"cannot be read: {exc}") from None
    name = f"{entry.name} index"
    file_format = entry.file_format
    index: BgzfIndex | CramIndex | None = None
    if file_format is FileFormat.CRAM:
        index = parse_crai(index_bytes, name=name)
        header = data.read(0, entry.header_size)
        references = cram_references(header)
    else:
        index = parse_bgzf_index(index_bytes, name=name) if index_bytes else None
        assert blocks is not None
        header = UncompressedReader(data, blocks).read(0, entry.header_size)
        if file_format is FileFormat.VCF:
            names = index.names if isinstance(index, BgzfIndex) else None
            references = list(names) if names else formats.vcf_header_references(header)
        elif file_format is FileFormat.BCF:
            references = formats.bcf_references(header)
        else:
            references = formats.bam_references(header)
    return ArchivedFile(entry, version_dir, data, index, blocks, header, references)


class ArchivedFileCache:
    """Opened files by (version directory, name, format); versions are immutable, so entries
    never go stale, they only age out."""

    def __init__(self, keys: KeyPair, capacity: int = 32) -> None:
        self._keys = keys
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], ArchivedFile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version_dir: Path, entry: CatalogueEntry) -> ArchivedFile:
        key = (str(version_dir), entry.name, entry.format)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        opened = open_archived(version_dir, entry, self._keys)
        with self._lock:
            self._items[key] = opened
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
        return opened


# -- reading uncompressed bytes ------------------------------------------------------------------
class UncompressedReader:
    """Uncompressed bytes of an encrypted BGZF file, inflating (and decrypting) only the blocks
    asked for. One per request: it caches a few blocks and is not shared between threads."""

    def __init__(self, data: EncryptedFile, blocks: BlockTable, *, cache: int = 16) -> None:
        self.data = data
        self.blocks = blocks
        self._cache: OrderedDict[int, bytes] = OrderedDict()
        self._segments: OrderedDict[int, bytes] = OrderedDict()
        self._capacity = cache

    def _segment(self, index: int) -> bytes:
        found = self._segments.get(index)
        if found is None:
            found = next(self.data.iter_segments(index, index + 1))
            self._segments[index] = found
            if len(self._segments) > 4:
                self._segments.popitem(last=False)
        return found

    def compressed_block(self, block: int) -> bytes:
        start = int(self.blocks.coffset[block])
        stop = start + int(self.blocks.csize[block])
        first, last = start // SEGMENT_SIZE, (stop - 1) // SEGMENT_SIZE
        data = b"".join(self._segment(i) for i in range(first, last + 1))
        base = first * SEGMENT_SIZE
        return data[start - base : stop - base]

    def payload(self, block: int) -> bytes:
        cached = self._cache.get(block)
        if cached is not None:
            self._cache.move_to_end(block)
            return cached
        raw = self.compressed_block(block)
        try:
            payload = zlib.decompress(raw[18:-8], -15) if len(raw) > 26 else b""
        except zlib.error as exc:
            raise StorageError(f"{self.data.path}: BGZF block {block} does not inflate: "
                               f"{exc}") from None
        self._cache[block] = payload
        if len(self._cache) > self._capacity:
            self._cache.popitem(last=False)
        return payload

    def read(self, start: int, stop: int) -> bytes:
        stop = min(stop, self.blocks.total_uncompressed)
        if start >= stop:
            return b""
        block = self.blocks.block_at(start)
        parts = []
        while block < len(self.blocks) and int(self.blocks.ustart[block]) < stop:
            base = int(self.blocks.ustart[block])
            payload = self.payload(block)
            parts.append(payload[max(0, start - base) : stop - base])
            block += 1
        return b"".join(parts)


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
