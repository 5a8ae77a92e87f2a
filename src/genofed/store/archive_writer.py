"""Archiving one original file Crypt4GH-encrypted at rest.

Each file is checked block by block as it streams through: BGZF formats must have every record
whole within one BGZF block (records longer than a block start a fresh one), so that slices are
whole blocks; a file that is not laid out like that is re-encoded from its uncompressed bytes
(which are unchanged). Plaintext never touches the node directory: the encrypted copy is written
as the bytes go by, and an index that has to be built is built from the stream
(:mod:`genofed.store.archive_index`). Uploads already encrypted for the node's key are kept as
they are after every segment's MAC and the file's completeness (BGZF/CRAM end-of-file marker)
are verified; a truncated or tampered upload is rejected and nothing is stored.

Indexes are encrypted too (the Crypt4GH spec: supplementary files such as a BAM index reveal
e.g. sex), and so is the block table used to slice; files are stored under random names (see
:mod:`genofed.store.originals`).
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import zlib
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from genofed.errors import ArchiveError, BgzfError, Crypt4ghError
from genofed.formats import hts
from genofed.formats.bgzf_layout import (
    BlockTable,
    KnownLayout,
    block_table,
    check_layout,
    inflated_blocks,
    reencode,
)
from genofed.formats.crypt4gh import (
    MAGIC,
    Crypt4ghWriter,
    EncryptedFile,
    KeyPair,
    encrypt_bytes,
)
from genofed.formats.hts import FileFormat
from genofed.formats.indexes import parse_crai
from genofed.store.archive_index import index_for, tail
from genofed.store.originals import ROLE_ADDED, ROLE_VARIANTS, CatalogueEntry

_READ_CHUNK = 4 << 20


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
            raise ArchiveError(f"{source}: rejected: {tail(exc)}") from None
    try:
        first = _first_bytes(source, upload)
        file_format, layout_kind = _sniff(first, source)
    except (Crypt4ghError, BgzfError, zlib.error) as exc:
        raise ArchiveError(f"{source}: rejected: {tail(exc)}") from None
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
        raise ArchiveError(f"{source}: rejected: {tail(exc)}") from None
    if reencoded and role == ROLE_ADDED and upload is not None:
        notes.append("re-encoded so that every record lies within one BGZF block")
    try:
        index_kind, index_bytes = index_for(source, index, reencoded, file_format, data_path,
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
        header_size = offsets[0] if offsets else plaintext_size - len(hts.CRAM3_EOF)
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
            found = hts.detect_format(payload)
            if found is not None:
                return found, "bgzf"
        try:
            head = zlib.decompressobj(31).decompress(first, 64)
        except zlib.error:
            head = b""
        if hts.detect_format(head) is FileFormat.VCF:
            return FileFormat.VCF, "text"
        raise ArchiveError(f"{source}: not a VCF, BCF, BAM or CRAM file")
    found = hts.detect_format(first)
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
    if not tail.endswith(hts.CRAM3_EOF):
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
