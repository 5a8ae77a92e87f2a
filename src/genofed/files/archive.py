"""Keeping original files Crypt4GH-encrypted at rest (ingest's VCF/BCF, and BAM/CRAM/VCF/BCF
added with `genofed files add`).

Each file is checked block by block as it streams through: BGZF formats must have every record
whole within one BGZF block (records longer than a block start a fresh one), so that slices are
whole blocks; a file that is not laid out like that is re-encoded from its uncompressed bytes
(which are unchanged). Plaintext never touches the node directory: the encrypted copy is written
as the bytes go by, and an index that has to be built is built by `bcftools index` / `samtools
index` reading the stream on stdin. Uploads already encrypted for the node's key are kept as they
are after every segment's MAC and the file's completeness (BGZF/CRAM end-of-file marker) are
verified; a truncated or tampered upload is rejected and nothing is stored.

Indexes are encrypted too (the Crypt4GH spec: supplementary files such as a BAM index reveal
e.g. sex), and so are the block table used to slice and the catalogue; files are stored under
random names (see :mod:`genofed.files.storage`).
"""

from __future__ import annotations

import itertools
import os
import re
import secrets
import shutil
import subprocess
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from genofed.config.node import NodePaths, load_config
from genofed.files import formats
from genofed.files.bgzf_layout import (
    KnownLayout,
    block_table,
    check_layout,
    inflated_blocks,
    reencode,
)
from genofed.files.crypt4gh_io import (
    MAGIC,
    Crypt4ghError,
    Crypt4ghWriter,
    EncryptedFile,
    KeyPair,
    encrypt_bytes,
)
from genofed.files.formats import FileFormat
from genofed.files.indexes import MalformedIndexError, parse_bgzf_index, parse_crai
from genofed.files.storage import (
    CATALOGUE,
    FILES_DIR,
    ROLE_ADDED,
    ROLE_VARIANTS,
    BlockTable,
    Catalogue,
    CatalogueEntry,
    read_catalogue,
    write_catalogue,
)
from genofed.formats.bgzf import BgzfError
from genofed.ingest.errors import IngestError
from genofed.store import layout

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_READ_CHUNK = 4 << 20
_INFLATE_BATCH = 64


class ArchiveError(IngestError):
    """A file cannot be archived; nothing was stored."""


@dataclass
class AddResult:
    dataset_id: str
    version: str
    entry: CatalogueEntry


# -- public entry points ---------------------------------------------------------------------------
def node_keys(paths: NodePaths) -> KeyPair:
    """The node's Crypt4GH key pair (from its keys directory, apart from the data)."""
    try:
        return KeyPair.load(paths.c4gh_secret_key, paths.c4gh_public_key)
    except (Crypt4ghError, FileNotFoundError) as exc:
        raise ArchiveError(f"the node's Crypt4GH keys cannot be read: {exc}") from None


def archive_ingested_variants(paths: NodePaths, staging: Path, source: Path,
                              previous: Path | None, *,
                              layout: KnownLayout | None = None) -> CatalogueEntry:
    """Called by ingest with the version being staged: encrypt the dataset's VCF/BCF (with its
    index if one lies beside it) into `staging/files/`, and carry over from the previous version
    the files added with `genofed files add` and the dataset's delivery setting."""
    keys = node_keys(paths)
    target = staging / FILES_DIR
    target.mkdir(exist_ok=True)
    name = file_stem(source.name)
    index = next((source.with_name(source.name + s) for s in (".tbi", ".csi")
                  if source.with_name(source.name + s).is_file()), None)
    entry = archive_file(source, target, name=name, role=ROLE_VARIANTS, keys=keys, index=index,
                         layout=layout)
    catalogue = Catalogue([entry])
    if previous is not None:
        before = read_catalogue(previous, keys)
        catalogue.plain_delivery = before.plain_delivery
        for kept in before.files:
            if kept.role != ROLE_ADDED or (kept.name, kept.format) == (entry.name, entry.format):
                continue
            for part in (kept.data, kept.index, kept.blocks):
                if part:
                    _link_or_copy(previous / FILES_DIR / part, target / part)
            catalogue.files.append(kept)
    write_catalogue(staging, catalogue, keys)
    return entry


def add_file(node_dir: Path, dataset_id: str, source: Path, *, index: Path | None = None,
             name: str | None = None) -> AddResult:
    """Archive one more file into a dataset: a new version holding everything the current one
    holds plus the file, published atomically."""
    paths = NodePaths(node_dir, load_config(node_dir))
    keys = node_keys(paths)
    if not source.is_file():
        raise ArchiveError(f"{source}: no such file")
    if index is not None and not index.is_file():
        raise ArchiveError(f"{index}: no such index file")
    name = name or file_stem(source.name)
    if not _NAME.match(name):
        raise ArchiveError(f"file name {name!r} is not usable as an htsget id part: use "
                           "letters, digits, '.', '_' and '-' (give one with --name)")
    added: list[CatalogueEntry] = []

    def add(staging: Path, catalogue: Catalogue) -> None:
        target = staging / FILES_DIR
        target.mkdir(exist_ok=True)
        entry = archive_file(source, target, name=name, role=ROLE_ADDED, keys=keys, index=index)
        if any((e.name, e.format) == (entry.name, entry.format) for e in catalogue.files):
            raise ArchiveError(f"dataset {dataset_id!r} already holds a {entry.format} file "
                               f"named {entry.name!r}; choose another with --name")
        catalogue.files.append(entry)
        added.append(entry)

    version = _new_version(paths, dataset_id, add)
    return AddResult(dataset_id, version, added[0])


def set_plain_delivery(node_dir: Path, dataset_id: str, allowed: bool) -> str:
    """Allow (or stop) plain htsget delivery of a dataset's files; without it, slices leave the
    node only Crypt4GH-encrypted for the requester. Returns the new version's name."""
    paths = NodePaths(node_dir, load_config(node_dir))

    def change(_staging: Path, catalogue: Catalogue) -> None:
        catalogue.plain_delivery = allowed

    return _new_version(paths, dataset_id, change)


def _new_version(paths: NodePaths, dataset_id: str,
                 change: Callable[[Path, Catalogue], None]) -> str:
    """Publish a new version of a dataset: the current one's files (hard links), with `change`
    applied to its file catalogue. Atomic; on any error nothing changes."""
    keys = node_keys(paths)
    root = layout.dataset_root(paths.datasets, dataset_id)
    if not root.is_dir() or layout.current_version(root) is None:
        raise ArchiveError(f"dataset {dataset_id!r} has no published version on this node; "
                           "ingest its VCF/BCF first (`genofed ingest`)")
    with layout.dataset_lock(root):
        current = layout.current_version(root)
        assert current is not None
        catalogue = read_catalogue(current, keys)
        staging = layout.new_staging(root)
        try:
            _link_version(current, staging)
            change(staging, catalogue)
            write_catalogue(staging, catalogue, keys)
            manifest = layout.Manifest.read(current)
            manifest.version = layout.next_version_name(root)
            manifest.created = datetime.now(UTC).isoformat(timespec="seconds")
            manifest.write(staging)
            final = layout.publish(root, staging, manifest.version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final.name


def list_files(node_dir: Path) -> list[tuple[str, str, bool, CatalogueEntry]]:
    """(dataset id, version, plain delivery allowed, entry) for every archived file of every
    published dataset."""
    paths = NodePaths(node_dir, load_config(node_dir))
    keys = node_keys(paths)
    rows: list[tuple[str, str, bool, CatalogueEntry]] = []
    if paths.datasets.is_dir():
        for root in sorted(p for p in paths.datasets.iterdir() if p.is_dir()):
            version = layout.current_version(root)
            if version is not None:
                catalogue = read_catalogue(version, keys)
                rows.extend((root.name, version.name, catalogue.plain_delivery, e)
                            for e in catalogue.files)
    return rows


def file_stem(filename: str) -> str:
    """'sample1.vcf.gz.c4gh' -> 'sample1'."""
    stem = filename
    for suffix in (".c4gh", ".gz", ".bgz", ".vcf", ".bcf", ".bam", ".cram"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or filename


# -- archiving one file ---------------------------------------------------------------------------
def archive_file(source: Path, target_dir: Path, *, name: str, role: str, keys: KeyPair,
                 index: Path | None = None, layout: KnownLayout | None = None) -> CatalogueEntry:
    """Encrypt (or verify and keep) `source` into `target_dir`; see the module docstring.
    `layout`: a bgzipped VCF's block layout when the caller already knows it (ingest)."""
    encrypted = _is_crypt4gh(source)
    upload: EncryptedFile | None = None
    if encrypted:
        try:
            upload = EncryptedFile(source, keys.secret)
        except Crypt4ghError as exc:
            raise ArchiveError(f"{source}: rejected: {_tail(exc)}") from None
    try:
        first = _first_bytes(source, upload)
        file_format, layout_kind = _sniff(first, source)
    except (Crypt4ghError, BgzfError, zlib.error) as exc:
        raise ArchiveError(f"{source}: rejected: {_tail(exc)}") from None
    token = secrets.token_hex(8)  # file names often carry sample ids: not on disk
    data_name = f"{token}.c4gh"
    data_path = target_dir / data_name
    notes: list[str] = []
    try:
        if file_format is FileFormat.CRAM:
            table = None
            header_size, plaintext_size = _store_cram(source, upload, data_path, keys)
            reencoded = False
        elif layout_kind == "bgzf":
            plaintext_size, header_size, table, reencoded = _store_bgzf(
                source, upload, data_path, file_format, keys,
                layout if file_format is FileFormat.VCF else None)
        else:  # plain or ordinary-gzip VCF text
            plaintext_size, header_size, table = reencode(
                _text_chunks(source, upload), data_path, file_format, keys,
                complete_lines=upload is not None)
            reencoded = True
            notes.append("compressed to record-aligned BGZF")
    except (Crypt4ghError, BgzfError, zlib.error, ValueError) as exc:
        data_path.unlink(missing_ok=True)
        raise ArchiveError(f"{source}: rejected: {_tail(exc)}") from None
    if reencoded and role == ROLE_ADDED and upload is not None:
        notes.append("re-encoded so that every record lies within one BGZF block")
    try:
        index_kind, index_bytes = _index_for(source, index, reencoded, file_format, data_path,
                                             keys, table, given_is_hint=role == ROLE_VARIANTS)
    except ArchiveError as exc:
        if role != ROLE_VARIANTS or file_format is FileFormat.CRAM:
            data_path.unlink(missing_ok=True)
            raise
        # ingest accepts files no index can be built for (e.g. unsorted): keep the file,
        # servable whole only
        index_kind, index_bytes = "", b""
        notes.append(f"not indexed, so htsget serves it whole only: {exc}")
    if file_format is FileFormat.CRAM:  # the header runs up to the first data container
        offsets = parse_crai(index_bytes, name=str(index or source)).container_offsets
        header_size = offsets[0] if offsets else plaintext_size - len(formats.CRAM3_EOF)
    index_name = f"{token}.index.c4gh" if index_kind else ""
    if index_name:
        (target_dir / index_name).write_bytes(encrypt_bytes(index_bytes, keys.public,
                                                            keys.secret))
    blocks_name = None
    if table is not None:
        blocks_name = f"{token}.blocks.c4gh"
        (target_dir / blocks_name).write_bytes(
            encrypt_bytes(table.to_bytes(), keys.public, keys.secret))
    return CatalogueEntry(
        name=name, format=file_format.value, role=role, data=data_name, index=index_name,
        index_kind=index_kind, blocks=blocks_name, plaintext_size=plaintext_size,
        header_size=header_size, source=source.name,
        added=datetime.now(UTC).isoformat(timespec="seconds"), reencoded=reencoded,
        uploaded_encrypted=encrypted, notes=notes)


def _tail(exc: Exception) -> str:
    """An error message without the path prefix the lower layers put on it."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith(("/", ".")) and ": " in text else text


def _is_crypt4gh(path: Path) -> bool:
    with open(path, "rb") as handle:
        return handle.read(8) == MAGIC


def _plaintext_chunks(source: Path, upload: EncryptedFile | None) -> Iterator[bytes]:
    if upload is not None:
        yield from upload.iter_plaintext(0, upload.plaintext_size)
        return
    with open(source, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            yield chunk


def _first_bytes(source: Path, upload: EncryptedFile | None) -> bytes:
    if upload is not None:
        return upload.read(0, 1 << 16)
    with open(source, "rb") as handle:
        return handle.read(1 << 16)


def _sniff(first: bytes, source: Path) -> tuple[FileFormat, str]:
    """(format, 'bgzf' | 'text' | 'raw')."""
    if first[:2] == b"\x1f\x8b":
        if len(first) >= 18 and first[3] & 4 and first[12:14] == b"BC":
            bsize = int.from_bytes(first[16:18], "little") + 1
            payload = zlib.decompress(first[18 : bsize - 8], -15) if bsize <= len(first) else b""
            found = formats.detect_format(payload)
            if found is not None:
                return found, "bgzf"
        try:
            head = zlib.decompressobj(31).decompress(first, 64)
        except zlib.error:
            head = b""
        if formats.detect_format(head) is FileFormat.VCF:
            return FileFormat.VCF, "text"
        raise ArchiveError(f"{source}: not a VCF, BCF, BAM or CRAM file")
    found = formats.detect_format(first)
    if found is FileFormat.CRAM:
        if first[4] != 3:
            raise ArchiveError(f"{source}: CRAM {first[4]}.{first[5]} is not supported; "
                               "convert with `samtools view -C` (CRAM 3)")
        return found, "raw"
    if found is FileFormat.VCF:
        return found, "text"
    if found in (FileFormat.BCF, FileFormat.BAM):
        tool = "bcftools view -Ob" if found is FileFormat.BCF else "samtools view -b"
        raise ArchiveError(f"{source}: uncompressed {found} is not supported; compress it "
                           f"(`{tool}`)")
    raise ArchiveError(f"{source}: not a VCF, BCF, BAM or CRAM file")


# -- CRAM -----------------------------------------------------------------------------------------
def _store_cram(source: Path, upload: EncryptedFile | None, target: Path,
                keys: KeyPair) -> tuple[int, int]:
    """Store a CRAM as is (containers are its unit of slicing). Returns (header size,
    plaintext size); the header size is fixed later from the index."""
    tail = b""
    size = 0
    if upload is not None:
        shutil.copyfile(source, target)
        stored = EncryptedFile(target, keys.secret)
        for chunk in stored.iter_plaintext(0, stored.plaintext_size):  # authenticates
            tail = (tail + chunk)[-64:]
            size += len(chunk)
    else:
        with open(target, "wb") as out, Crypt4ghWriter(out, keys.public, keys.secret) as writer:
            for chunk in _plaintext_chunks(source, None):
                writer.write(chunk)
                tail = (tail + chunk)[-64:]
                size += len(chunk)
    if not tail.endswith(formats.CRAM3_EOF):
        target.unlink(missing_ok=True)
        raise ValueError("truncated CRAM: the end-of-file container is missing")
    return 0, size


# -- BGZF -----------------------------------------------------------------------------------------
def _store_bgzf(source: Path, upload: EncryptedFile | None, target: Path,
                file_format: FileFormat, keys: KeyPair,
                layout: KnownLayout | None = None) -> tuple[int, int, BlockTable, bool]:
    """Returns (plaintext size, header size, block table, re-encoded?)."""
    if upload is None and layout is not None and layout.aligned:
        with open(target, "wb") as out, Crypt4ghWriter(out, keys.public, keys.secret) as writer:
            for chunk in _plaintext_chunks(source, None):
                writer.write(chunk)
            size = writer.plaintext_size
        return size, layout.header_size, block_table(layout.rows), False
    if upload is not None:
        shutil.copyfile(source, target)  # check the copy we keep, not the original
        stored = EncryptedFile(target, keys.secret)
        check = check_layout(inflated_blocks(stored.iter_plaintext(0, stored.plaintext_size)),
                              file_format)
        size = stored.plaintext_size

        def chunks() -> Iterable[bytes]:
            return stored.iter_plaintext(0, size)
    else:
        with open(target, "wb") as out, Crypt4ghWriter(out, keys.public, keys.secret) as writer:
            check = check_layout(inflated_blocks(_plaintext_chunks(source, None)),
                                  file_format, writer.write)
            size = writer.plaintext_size

        def chunks() -> Iterable[bytes]:
            return _plaintext_chunks(source, None)
    assert check.header_size is not None
    if check.aligned:
        return size, check.header_size, block_table(check.rows), False
    uncompressed = (p for _o, _b, p in inflated_blocks(chunks()))
    temporary = target.with_suffix(".reencoding")
    try:
        size, header_size, table = reencode(uncompressed, temporary, file_format, keys)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return size, header_size, table, True


def _text_chunks(source: Path, upload: EncryptedFile | None) -> Iterator[bytes]:
    """The text of a plain or ordinary-gzip VCF (gzip members decompressed one after another)."""
    chunks = _plaintext_chunks(source, upload)
    first = next(chunks, b"")
    if first[:2] != b"\x1f\x8b":
        yield first
        yield from chunks
        return
    decompressor = zlib.decompressobj(31)
    for chunk in itertools.chain([first], chunks):
        data = chunk
        while data:
            yield decompressor.decompress(data)
            data = decompressor.unused_data
            if data:  # another gzip member follows
                decompressor = zlib.decompressobj(31)
    if not decompressor.eof:
        raise ValueError("truncated gzip: the last member ends early")


# -- indexes --------------------------------------------------------------------------------------
_INDEX_KINDS = {FileFormat.VCF: ("tbi", "csi"), FileFormat.BCF: ("csi",),
                FileFormat.BAM: ("bai", "csi"), FileFormat.CRAM: ("crai",)}


def _index_for(source: Path, index: Path | None, reencoded: bool, file_format: FileFormat,
               stored: Path, keys: KeyPair, table: BlockTable | None, *,
               given_is_hint: bool = False) -> tuple[str, bytes]:
    """(kind, index bytes): the index given (checked against the stored file), else one
    built from the stored file's plaintext stream. An index found beside an ingested file
    (`given_is_hint`) that does not fit is replaced by a built one instead of failing."""
    if index is not None and not reencoded:
        try:
            return _given_index(index, file_format, keys, table)
        except ArchiveError:
            if not given_is_hint:
                raise
    errors = []
    for kind in _INDEX_KINDS[file_format]:
        try:
            return kind, _build_index(stored, keys, file_format, kind)
        except ArchiveError as exc:
            errors.append(str(exc))
    raise ArchiveError(f"{source}: no index could be built: {'; '.join(errors)}")


def _given_index(index: Path, file_format: FileFormat, keys: KeyPair,
                 table: BlockTable | None) -> tuple[str, bytes]:
    data = index.read_bytes()
    if data[:8] == MAGIC:
        try:
            data = EncryptedFile(index, keys.secret).read_all()
        except Crypt4ghError as exc:
            raise ArchiveError(f"{index}: rejected: {_tail(exc)}") from None
    kind = _index_kind(data, index)
    if kind not in _INDEX_KINDS[file_format]:
        raise ArchiveError(f"{index}: a .{kind} index does not fit a {file_format} file")
    _check_index(data, kind, table, index)
    return kind, data


def _index_kind(data: bytes, path: Path) -> str:
    head = data
    if data[:2] == b"\x1f\x8b":
        try:
            head = zlib.decompressobj(31).decompress(data, 4)
        except zlib.error:
            raise ArchiveError(f"{path}: not an index (corrupt gzip)") from None
    kinds = {b"TBI\x01": "tbi", b"CSI\x01": "csi", b"BAI\x01": "bai"}
    if head[:4] in kinds:
        return kinds[head[:4]]
    if data[:2] == b"\x1f\x8b" or head[:1].isdigit() or head[:2] == b"-1":
        return "crai"
    raise ArchiveError(f"{path}: not a .tbi, .csi, .bai or .crai index")


def _check_index(data: bytes, kind: str, table: BlockTable | None, path: Path) -> None:
    """Every offset the index points at must be a block start of the stored file."""
    try:
        if kind == "crai":
            parse_crai(data, name=str(path))
            return
        index = parse_bgzf_index(data, name=str(path))
    except MalformedIndexError as exc:
        raise ArchiveError(str(exc)) from None
    assert table is not None
    starts = set(table.coffset.tolist())
    for reference in range(index.n_references):
        for chunk in index.chunks(reference):
            if chunk.begin >> 16 not in starts:
                raise ArchiveError(f"{path}: points at byte {chunk.begin >> 16}, which is not "
                                   "a block of the file: the index belongs to another file")


def _build_index(stored: Path, keys: KeyPair, file_format: FileFormat, kind: str) -> bytes:
    tool = "samtools" if file_format in (FileFormat.BAM, FileFormat.CRAM) else "bcftools"
    if shutil.which(tool) is None:
        raise ArchiveError(f"{tool} is needed to index {file_format} files; install it or give "
                           "the index with --index")
    if tool == "bcftools":
        command = ["bcftools", "index", "-f", f"--{kind}", "-o", "/dev/stdout", "-"]
    else:
        command = ["samtools", "index", *(["-c"] if kind == "csi" else []), "-o", "/dev/stdout",
                   "-"]
    encrypted = EncryptedFile(stored, keys.secret)
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert process.stdin is not None and process.stdout is not None
    failure: list[BaseException] = []

    def feed(stdin: BinaryIO) -> None:
        try:
            for chunk in encrypted.iter_plaintext(0, encrypted.plaintext_size):
                stdin.write(chunk)
        except BrokenPipeError:
            pass
        except BaseException as exc:  # reported below
            failure.append(exc)
        finally:
            stdin.close()

    writer = threading.Thread(target=feed, args=(process.stdin,), daemon=True)
    writer.start()
    output = process.stdout.read()
    stderr = process.stderr.read() if process.stderr else b""
    writer.join()
    if process.wait() != 0 or failure or not output:
        message = stderr.decode(errors="replace").strip().splitlines()
        raise ArchiveError(f"{' '.join(command[:2])} -{kind} failed: "
                           f"{message[-1] if message else failure or 'no output'}")
    return output


# -- versions ----------------------------------------------------------------------------------
_REWRITTEN = {"manifest.json", f"{FILES_DIR}/{CATALOGUE}"}


def _link_version(current: Path, staging: Path) -> None:
    """Hard-link every file of the current version into staging (versions are immutable), except
    the ones the new version rewrites."""
    for directory, _dirs, files in os.walk(current):
        relative = Path(directory).relative_to(current)
        (staging / relative).mkdir(parents=True, exist_ok=True)
        for filename in files:
            if (relative / filename).as_posix() in _REWRITTEN:
                continue
            _link_or_copy(Path(directory) / filename, staging / relative / filename)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)
