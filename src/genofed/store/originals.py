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

import json
import threading
import zlib
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path

from genofed.errors import Crypt4ghError, StorageError
from genofed.formats import hts
from genofed.formats.bgzf_layout import BlockTable
from genofed.formats.crypt4gh import SEGMENT_SIZE, EncryptedFile, KeyPair, encrypt_bytes
from genofed.formats.hts import FileFormat, RecordCodec, cram_references
from genofed.formats.indexes import BgzfIndex, CramIndex, parse_bgzf_index, parse_crai
from genofed.store import layout
from genofed.store.versions import VersionFiles, as_version

FILES_DIR = layout.FILES
CATALOGUE = "catalogue.c4gh"
#: The catalogue's path relative to a version directory.
CATALOGUE_PATH = f"{FILES_DIR}/{CATALOGUE}"
#: `role` of the file ingest archived from a dataset's VCF/BCF (htsget id = the dataset id).
ROLE_VARIANTS = "variants"
ROLE_ADDED = "added"


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


def read_catalogue(version: Path | VersionFiles, key: KeyPair | bytes) -> Catalogue:
    """A version's file catalogue, decrypted with the node's key pair or secret key."""
    stored = as_version(version)
    try:
        source = stored.byte_source(CATALOGUE_PATH)
        source.size()
    except FileNotFoundError:
        return Catalogue()
    secret = key.secret if isinstance(key, KeyPair) else key
    try:
        document = json.loads(EncryptedFile(source, secret).read_all())
    except Crypt4ghError as exc:
        raise StorageError(f"{source.name}: the file catalogue cannot be read: {exc}") from None
    return Catalogue([CatalogueEntry(**e) for e in document["files"]],
                     bool(document.get("plainDelivery", False)))


def write_catalogue(version_dir: Path, catalogue: Catalogue, keys: KeyPair) -> None:
    path = version_dir / FILES_DIR / CATALOGUE
    path.parent.mkdir(exist_ok=True)
    files = sorted(catalogue.files, key=lambda e: (e.name, e.format))
    document = {"plainDelivery": catalogue.plain_delivery, "files": [asdict(e) for e in files]}
    path.write_bytes(encrypt_bytes(json.dumps(document, indent=1).encode(), keys.public,
                                   keys.secret))


# -- an archived file, opened ----------------------------------------------------------------------
@dataclass
class ArchivedFile:
    """A stored file ready for slicing: its encrypted body, index, header and references."""

    entry: CatalogueEntry
    version: VersionFiles
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
        return self.version.name

    def codec(self) -> RecordCodec:
        return hts.codec_for(self.file_format, self.references)

    def reference_id(self, name: str) -> int | None:
        try:
            return self.references.index(name)
        except ValueError:
            return None


def open_archived(version: Path | VersionFiles, entry: CatalogueEntry,
                  keys: KeyPair) -> ArchivedFile:
    stored = as_version(version)

    def encrypted(name: str) -> EncryptedFile:
        return EncryptedFile(stored.byte_source(f"{FILES_DIR}/{name}"), keys.secret)

    try:
        data = encrypted(entry.data)
        index_bytes = encrypted(entry.index).read_all() if entry.index else b""
        blocks = (BlockTable.from_bytes(encrypted(entry.blocks).read_all())
                  if entry.blocks else None)
    except (FileNotFoundError, Crypt4ghError) as exc:
        raise StorageError(f"dataset version {stored.location}: archived file {entry.name!r} "
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
            references = list(names) if names else hts.vcf_header_references(header)
        elif file_format is FileFormat.BCF:
            references = hts.bcf_references(header)
        else:
            references = hts.bam_references(header)
    return ArchivedFile(entry, stored, data, index, blocks, header, references)


class ArchivedFileCache:
    """Opened files by (version, name, format); versions are immutable, so entries never go
    stale, they only age out."""

    def __init__(self, keys: KeyPair, capacity: int = 32) -> None:
        self._keys = keys
        self._capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], ArchivedFile] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, version: VersionFiles, entry: CatalogueEntry) -> ArchivedFile:
        key = (version.location, entry.name, entry.format)
        with self._lock:
            found = self._items.get(key)
            if found is not None:
                self._items.move_to_end(key)
                return found
        opened = open_archived(version, entry, self._keys)
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
