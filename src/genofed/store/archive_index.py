"""The index of an archived file: the one given (checked against the stored file), or one built
by `bcftools index` / `samtools index` from the stored file's plaintext stream (never on disk)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import zlib
from pathlib import Path
from typing import BinaryIO

from genofed.errors import ArchiveError, Crypt4ghError, MalformedIndexError
from genofed.formats.bgzf_layout import BlockTable
from genofed.formats.crypt4gh import MAGIC, EncryptedFile, KeyPair
from genofed.formats.hts import FileFormat
from genofed.formats.indexes import parse_bgzf_index, parse_crai

_INDEX_KINDS = {FileFormat.VCF: ("tbi", "csi"), FileFormat.BCF: ("csi",),
                FileFormat.BAM: ("bai", "csi"), FileFormat.CRAM: ("crai",)}


def index_for(source: Path, index: Path | None, reencoded: bool, file_format: FileFormat,
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
            raise ArchiveError(f"{index}: rejected: {tail(exc)}") from None
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

    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as process:  # closes the pipes, waits
        assert process.stdin is not None and process.stdout is not None
        writer = threading.Thread(target=feed, args=(process.stdin,), daemon=True)
        writer.start()
        output = process.stdout.read()
        stderr = process.stderr.read() if process.stderr else b""
        writer.join()
        status = process.wait()
    if status != 0 or failure or not output:
        message = stderr.decode(errors="replace").strip().splitlines()
        raise ArchiveError(f"{' '.join(command[:2])} -{kind} failed: "
                           f"{message[-1] if message else failure or 'no output'}")
    return output


def tail(exc: Exception) -> str:
    """An error message without the path prefix the lower layers put on it."""
    text = str(exc)
    return text.split(": ", 1)[1] if text.startswith(("/", ".")) and ": " in text else text
