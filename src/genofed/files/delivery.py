"""A slice plan -> the URLs of an htsget ticket, plain or Crypt4GH-encrypted for the client, and
the bytes behind those URLs.

Plain: stored bytes are decrypted as they are served; bytes made for the slice (re-compressed
edge blocks, end-of-file markers) travel inline as `data:` URIs.

Encrypted (`encryptionScheme=C4GH`): the ticket starts with a Crypt4GH header for the client's
public key carrying the file's data key and an edit list. Segments lying wholly inside the slice
are delivered exactly as stored. The slice's other bytes (its edges and the inline pieces) go into
fresh segments sealed with the same data key, each padded to 64 KiB so that segment boundaries
stay where every Crypt4GH reader expects them; the edit list skips the padding. The client thus
never receives a stored segment that holds bytes outside its slice, and decrypting the
concatenated URLs yields exactly the plain slice.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from genofed.files.search import InlinePiece, Piece, SlicePlan
from genofed.formats.crypt4gh import SEGMENT_SIZE, KeyPair, SegmentCipher, build_header
from genofed.store.originals import ArchivedFile

#: Largest span one data URL covers (smaller blocks retry cheaply; htsget suggests < 1 GB).
MAX_URL_SPAN = 64 << 20

#: Makes a data URL for (mode, start, stop) of the plan's file: "plain" plaintext byte range, or
#: "c4gh" range of stored segments.
UrlMaker = Callable[[str, int, int], str]


def _data_uri(file: ArchivedFile, data: bytes, *, encrypted: bool = False) -> str:
    media = "application/octet-stream" if encrypted else file.file_format.media_type
    return f"data:{media};base64,{base64.b64encode(data).decode()}"


def plain_urls(plan: SlicePlan, make_url: UrlMaker) -> list[dict[str, str]]:
    urls: list[dict[str, str]] = []
    for klass, pieces in (("header", plan.header), ("body", plan.body)):
        for piece in pieces:
            if isinstance(piece, InlinePiece):
                urls.append({"url": _data_uri(plan.file, piece.data), "class": klass})
                continue
            for start in range(piece.start, piece.stop, MAX_URL_SPAN):
                stop = min(piece.stop, start + MAX_URL_SPAN)
                urls.append({"url": make_url("plain", start, stop), "class": klass})
    return urls


@dataclass(frozen=True)
class _Fresh:
    """A segment made for this slice: its ciphertext and how many plaintext bytes are kept of
    how many it holds."""

    ciphertext: bytes
    kept: int
    size: int


@dataclass(frozen=True)
class _Stored:
    """Stored segments [first, stop), all full and all kept."""

    first: int
    stop: int


def _encrypted_layout(pieces: list[Piece], file: ArchivedFile,
                      cipher: SegmentCipher) -> list[_Fresh | _Stored]:
    items: list[_Fresh | _Stored] = []
    pending = bytearray()

    def flush(*, pad: bool) -> None:
        while len(pending) >= SEGMENT_SIZE:
            items.append(_Fresh(cipher.seal(pending[:SEGMENT_SIZE]), SEGMENT_SIZE, SEGMENT_SIZE))
            del pending[:SEGMENT_SIZE]
        if pending:
            kept = len(pending)
            if pad:
                pending.extend(bytes(SEGMENT_SIZE - kept))
            items.append(_Fresh(cipher.seal(pending), kept, len(pending)))
            pending.clear()

    for piece in pieces:
        if isinstance(piece, InlinePiece):
            pending += piece.data
            continue
        first = -(-piece.start // SEGMENT_SIZE)  # segments wholly inside [start, stop)
        stop = piece.stop // SEGMENT_SIZE
        if first >= stop:
            pending += file.data.read(piece.start, piece.stop)
            continue
        pending += file.data.read(piece.start, first * SEGMENT_SIZE)
        flush(pad=True)
        items.append(_Stored(first, stop))
        pending += file.data.read(stop * SEGMENT_SIZE, piece.stop)
    flush(pad=False)
    return items


def _edit_list(items: list[_Fresh | _Stored]) -> list[int] | None:
    """Skip/keep lengths over the delivered segments' plaintext (None: keep everything)."""
    lengths: list[int] = []
    skip = keep = 0
    for item in items:
        if isinstance(item, _Stored):
            keep += (item.stop - item.first) * SEGMENT_SIZE
            continue
        keep += item.kept
        if item.size > item.kept:
            lengths += [skip, keep]
            skip, keep = item.size - item.kept, 0
    if not lengths:
        return None
    if keep:
        lengths += [skip, keep]
    return lengths


def encrypted_urls(plan: SlicePlan, make_url: UrlMaker, recipient_public: bytes,
                   node_keys: KeyPair) -> list[dict[str, str]]:
    file = plan.file
    cipher = SegmentCipher(file.data.session_keys)
    items = _encrypted_layout(plan.pieces, file, cipher)
    header = build_header(file.data.session_keys, recipient_public, node_keys.secret,
                          _edit_list(items))
    urls = [{"url": _data_uri(file, header, encrypted=True)}]
    fresh = bytearray()
    for item in items:
        if isinstance(item, _Fresh):
            fresh += item.ciphertext
            continue
        if fresh:
            urls.append({"url": _data_uri(file, bytes(fresh), encrypted=True)})
            fresh.clear()
        step = MAX_URL_SPAN // SEGMENT_SIZE
        for first in range(item.first, item.stop, step):
            urls.append({"url": make_url("c4gh", first, min(item.stop, first + step))})
    if fresh:
        urls.append({"url": _data_uri(file, bytes(fresh), encrypted=True)})
    return urls


def data_block(file: ArchivedFile, mode: str, start: int, stop: int) -> tuple[int, Iterator[bytes]]:
    """(length, chunks) of what a data URL serves."""
    if mode == "plain":
        stop = min(stop, file.data.plaintext_size)
        return max(0, stop - start), file.data.iter_plaintext(start, stop)
    _offset, length = file.data.ciphertext_span(start, stop)
    return length, file.data.iter_ciphertext(start, stop)
