"""Crypt4GH v1 at the segment level: keys, headers (read, re-encrypt for a recipient, edit lists)
and the 64 KiB ChaCha20-Poly1305 segments of the body.

The `crypt4gh` package supplies the key files and the header packet primitives (X25519 key
exchange, packet (de)serialisation). Segments are sealed with `cryptography`'s ChaCha20-Poly1305,
the same AEAD construction, about twice as fast as the package's own binding. The package's
`decrypt(offset >= 65536)` returns wrong bytes, so everything here addresses whole segments.

A stored file is `header || segment_0 || segment_1 || ...`; segment i holds plaintext bytes
[i * 65536, (i + 1) * 65536) and sits at `header_length + i * 65564` in the file.
"""

from __future__ import annotations

import base64
import binascii
import io
import logging
import os
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from genofed.errors import Crypt4ghError

#: Plaintext bytes per segment, and what a sealed segment adds (12-byte nonce, 16-byte MAC).
SEGMENT_SIZE = 65536
SEGMENT_OVERHEAD = 28
CIPHER_SEGMENT_SIZE = SEGMENT_SIZE + SEGMENT_OVERHEAD
MAGIC = b"crypt4gh"
_NONCE = 12

# The package logs every failed trial decryption as an error, which is routine when a header
# carries packets for other readers.
logging.getLogger("crypt4gh").setLevel(logging.CRITICAL)


# -- keys ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class KeyPair:
    """An X25519 key pair as Crypt4GH uses it (32 raw bytes each)."""

    secret: bytes
    public: bytes

    @classmethod
    def load(cls, secret_key: Path, public_key: Path) -> KeyPair:
        return cls(load_secret_key(secret_key), load_public_key(public_key))

    @classmethod
    def generate(cls) -> KeyPair:
        """A fresh pair (tests and clients; nodes get theirs at `genofed node init`)."""
        from crypt4gh import sodium

        secret = secrets.token_bytes(32)
        return cls(secret, bytes(sodium.derive_pk(secret)))


def load_secret_key(path: Path) -> bytes:
    """A Crypt4GH (or OpenSSH ed25519) secret key file without passphrase."""
    from crypt4gh.keys import get_private_key

    def no_passphrase() -> str:
        raise Crypt4ghError(f"{path}: the secret key is passphrase-protected; a serving node "
                            "needs an unprotected key readable only by its owner")

    try:
        return bytes(get_private_key(str(path), no_passphrase))
    except FileNotFoundError:
        raise Crypt4ghError(f"{path}: no such key file") from None
    except (ValueError, NotImplementedError) as exc:
        raise Crypt4ghError(f"{path}: not a Crypt4GH secret key ({exc})") from None


def load_public_key(path: Path) -> bytes:
    return parse_public_key(path.read_bytes(), what=str(path))


def parse_public_key(value: str | bytes, *, what: str = "public key") -> bytes:
    """A public key given as a Crypt4GH public key file's text, that text base64-encoded (as
    htsget clients send it in `Htsget-Context-Public-Key`), or the 32 raw bytes in base64."""
    raw = value.encode() if isinstance(value, str) else value
    text = raw.strip()
    if not text.startswith(b"-----BEGIN"):
        try:
            text = base64.b64decode(text, validate=True).strip()
        except (binascii.Error, ValueError):
            raise Crypt4ghError(f"{what}: neither a Crypt4GH public key nor base64") from None
        if len(text) == 32:
            return text
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if (len(lines) < 3 or not lines[0].startswith(b"-----BEGIN CRYPT4GH PUBLIC KEY")
            or not lines[-1].startswith(b"-----END")):
        raise Crypt4ghError(f"{what}: not a Crypt4GH public key (expected '-----BEGIN CRYPT4GH "
                            "PUBLIC KEY-----', 32 bytes in base64, '-----END ...')")
    try:
        key = base64.b64decode(b"".join(lines[1:-1]), validate=True)
    except (binascii.Error, ValueError):
        raise Crypt4ghError(f"{what}: the key body is not base64") from None
    if len(key) != 32:
        raise Crypt4ghError(f"{what}: an X25519 public key has 32 bytes, not {len(key)}")
    return key


def encode_public_key(public: bytes) -> str:
    """The Crypt4GH public key file text for a raw key."""
    body = base64.b64encode(public).decode()
    return f"-----BEGIN CRYPT4GH PUBLIC KEY-----\n{body}\n-----END CRYPT4GH PUBLIC KEY-----\n"


# -- header ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Header:
    """What a reader learns from a header it can decrypt."""

    session_keys: tuple[bytes, ...]
    edit_list: tuple[int, ...] | None
    #: Bytes the header occupies at the start of the file.
    length: int


def read_header(stream: BinaryIO, secret_key: bytes, *, name: str = "<stream>") -> Header:
    """Parse and decrypt a header; leaves `stream` at the first segment."""
    from crypt4gh import header as c4gh_header

    start = stream.tell()
    magic = stream.read(8)
    stream.seek(start)
    if magic != MAGIC:
        raise Crypt4ghError(f"{name}: not a Crypt4GH file (no 'crypt4gh' magic)")
    public = _public_of(secret_key)
    try:
        packets = list(c4gh_header.parse(stream))
        decrypted, _others = c4gh_header.decrypt(packets, [(0, secret_key, public)])
        data_packets, edit_packet = c4gh_header.partition_packets(decrypted)
        keys = tuple(bytes(c4gh_header.parse_enc_packet(p)) for p in data_packets)
        edits = (tuple(c4gh_header.parse_edit_list_packet(edit_packet))
                 if edit_packet is not None else None)
    except ValueError as exc:
        raise Crypt4ghError(f"{name}: invalid Crypt4GH header: {exc}") from None
    if not keys:
        raise Crypt4ghError(f"{name}: the Crypt4GH header has no data key for this node's key "
                            "(was it encrypted for this node's public key?)")
    return Header(keys, edits, stream.tell() - start)


def build_header(session_keys: Sequence[bytes], recipient_public: bytes, writer_secret: bytes,
                 edit_list: Sequence[int] | None = None) -> bytes:
    """A header readable by `recipient_public` carrying the data keys and an optional edit list
    (alternating skip/keep byte counts over the concatenated plaintext, skip first)."""
    from crypt4gh import header as c4gh_header

    keys = [(0, writer_secret, recipient_public)]
    packets = [packet for key in session_keys
               for packet in c4gh_header.encrypt(c4gh_header.make_packet_data_enc(0, key), keys)]
    if edit_list is not None:
        packets.extend(c4gh_header.encrypt(
            c4gh_header.make_packet_data_edit_list(list(edit_list)), keys))
    return bytes(c4gh_header.serialize(packets))


def _public_of(secret_key: bytes) -> bytes:
    from crypt4gh import sodium

    return bytes(sodium.derive_pk(secret_key))


# -- segments -------------------------------------------------------------------------------------
class SegmentCipher:
    """Seals and opens segments with a file's data keys (the first one seals)."""

    def __init__(self, session_keys: Sequence[bytes]) -> None:
        if not session_keys:
            raise ValueError("at least one data key is needed")
        self._ciphers = [ChaCha20Poly1305(key) for key in session_keys]

    def seal(self, plaintext: bytes | bytearray | memoryview) -> bytes:
        if len(plaintext) > SEGMENT_SIZE:
            raise ValueError("a segment holds at most 65536 bytes")
        nonce = os.urandom(_NONCE)
        return nonce + self._ciphers[0].encrypt(nonce, bytes(plaintext), None)

    def open(self, segment: bytes | memoryview) -> bytes:
        """The plaintext of one sealed segment; Crypt4ghError if no key authenticates it."""
        if len(segment) <= SEGMENT_OVERHEAD:
            raise Crypt4ghError("truncated segment")
        nonce, body = bytes(segment[:_NONCE]), bytes(segment[_NONCE:])
        for i, cipher in enumerate(self._ciphers):
            try:
                plain = cipher.decrypt(nonce, body, None)
            except InvalidTag:
                continue
            if i:  # the key that worked is tried first next time
                self._ciphers.insert(0, self._ciphers.pop(i))
            return plain
        raise Crypt4ghError("segment failed authentication (tampered with, or not this file's)")


def plaintext_size(ciphertext_size: int, *, name: str = "<file>") -> int:
    """Plaintext bytes of a body of `ciphertext_size` bytes (header excluded)."""
    full, rest = divmod(ciphertext_size, CIPHER_SEGMENT_SIZE)
    if rest and rest <= SEGMENT_OVERHEAD:
        raise Crypt4ghError(f"{name}: truncated: the last segment has {rest} bytes, fewer than "
                            "a sealed segment's nonce and MAC")
    return full * SEGMENT_SIZE + (rest - SEGMENT_OVERHEAD if rest else 0)


class Crypt4ghWriter:
    """A binary sink that encrypts what is written to it into `out` (header first)."""

    def __init__(self, out: BinaryIO, recipient_public: bytes, writer_secret: bytes) -> None:
        self._out = out
        key = secrets.token_bytes(32)
        self._cipher = SegmentCipher([key])
        self.header = build_header([key], recipient_public, writer_secret)
        out.write(self.header)
        self._buffer = bytearray()
        self.plaintext_size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._buffer += data
        self.plaintext_size += len(data)
        if len(self._buffer) >= SEGMENT_SIZE:
            view = memoryview(self._buffer)
            full = len(self._buffer) - len(self._buffer) % SEGMENT_SIZE
            for start in range(0, full, SEGMENT_SIZE):
                self._out.write(self._cipher.seal(view[start : start + SEGMENT_SIZE]))
            view.release()
            del self._buffer[:full]
        return len(data)

    def close(self) -> None:
        """Seal the final partial segment (the sink `out` stays open)."""
        if self._buffer:
            self._out.write(self._cipher.seal(self._buffer))
            self._buffer.clear()

    def __enter__(self) -> Crypt4ghWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()


def encrypt_bytes(data: bytes, recipient_public: bytes, writer_secret: bytes) -> bytes:
    out = io.BytesIO()
    with Crypt4ghWriter(out, recipient_public, writer_secret) as writer:
        writer.write(data)
    return out.getvalue()


class ByteSource(Protocol):
    """Random access to stored bytes: a local file, or an object in S3 read by byte ranges."""

    name: str

    def size(self) -> int: ...

    def read_at(self, offset: int, length: int) -> bytes:
        """Up to `length` bytes from `offset` (fewer only at the end)."""
        ...


class LocalFile:
    """A :class:`ByteSource` over a local file: `os.pread` on a descriptor opened per call, so
    threads may share it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.name = str(path)

    def size(self) -> int:
        return os.stat(self.path).st_size

    def read_at(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as handle:
            return os.pread(handle.fileno(), length, offset)


class EncryptedFile:
    """Random access to a stored Crypt4GH file by plaintext offset, one segment at a time.

    `source` is a local path or any :class:`ByteSource` (an object in S3: only the byte ranges
    asked for are fetched). Thread-safe: every read is a positioned read of its own.
    """

    def __init__(self, source: Path | ByteSource, secret_key: bytes) -> None:
        self.source: ByteSource = LocalFile(source) if isinstance(source, Path) else source
        #: What messages call the file: its path, or its s3:// URL.
        self.path: Path | str = source if isinstance(source, Path) else source.name
        size = self.source.size()
        head = self.source.read_at(0, min(size, 1 << 16))
        self.header = read_header(io.BytesIO(head), secret_key, name=self.source.name)
        if self.header.edit_list is not None:
            raise Crypt4ghError(f"{self.source.name}: stored files never carry an edit list")
        self.plaintext_size = plaintext_size(size - self.header.length, name=self.source.name)
        self.segments = -(-self.plaintext_size // SEGMENT_SIZE)
        self._keys = self.header.session_keys

    @property
    def session_keys(self) -> tuple[bytes, ...]:
        return self._keys

    def ciphertext_span(self, first: int, stop: int) -> tuple[int, int]:
        """File offset and length of sealed segments [first, stop)."""
        start = self.header.length + first * CIPHER_SEGMENT_SIZE
        end = self.header.length + min(stop * CIPHER_SEGMENT_SIZE,
                                       self._ciphertext_body_size())
        return start, end - start

    def _ciphertext_body_size(self) -> int:
        full, rest = divmod(self.plaintext_size, SEGMENT_SIZE)
        return full * CIPHER_SEGMENT_SIZE + (rest + SEGMENT_OVERHEAD if rest else 0)

    def iter_ciphertext(self, first: int, stop: int, *, chunk: int = 4 << 20) -> Iterator[bytes]:
        offset, length = self.ciphertext_span(first, stop)
        while length > 0:
            data = self.source.read_at(offset, min(chunk, length))
            if not data:
                raise Crypt4ghError(f"{self.path}: shorter than its header says")
            offset += len(data)
            length -= len(data)
            yield data

    def iter_segments(self, first: int, stop: int, *, batch: int = 32) -> Iterator[bytes]:
        """Plaintext of segments [first, stop), authenticated one by one."""
        cipher = SegmentCipher(self._keys)
        stop = min(stop, self.segments)
        for lo in range(first, stop, batch):
            hi = min(stop, lo + batch)
            offset, length = self.ciphertext_span(lo, hi)
            data = memoryview(self.source.read_at(offset, length))
            if len(data) != length:
                raise Crypt4ghError(f"{self.path}: truncated at segment {lo}")
            for start in range(0, length, CIPHER_SEGMENT_SIZE):
                try:
                    yield cipher.open(data[start : start + CIPHER_SEGMENT_SIZE])
                except Crypt4ghError as exc:
                    segment = lo + start // CIPHER_SEGMENT_SIZE
                    raise Crypt4ghError(f"{self.path}: segment {segment}: {exc}") from None

    def iter_plaintext(self, start: int, stop: int) -> Iterator[bytes]:
        """Plaintext bytes [start, stop) in pieces of up to a few segments."""
        stop = min(stop, self.plaintext_size)
        if start >= stop:
            return
        first, skip = divmod(start, SEGMENT_SIZE)
        last = -(-stop // SEGMENT_SIZE)
        position = first * SEGMENT_SIZE
        for plain in self.iter_segments(first, last):
            lo = skip if position < start else 0
            hi = min(len(plain), stop - position)
            yield plain if (lo == 0 and hi == len(plain)) else plain[lo:hi]
            position += len(plain)
            skip = 0

    def read(self, start: int, stop: int) -> bytes:
        return b"".join(self.iter_plaintext(start, stop))

    def read_all(self) -> bytes:
        return self.read(0, self.plaintext_size)


def decrypt_stream(data: bytes, secret_key: bytes, *, name: str = "<stream>") -> bytes:
    """Decrypt a complete Crypt4GH stream held in memory, applying its edit list (what a
    client does with an encrypted htsget slice)."""
    stream = io.BytesIO(data)
    header = read_header(stream, secret_key, name=name)
    body = memoryview(data)[header.length :]
    cipher = SegmentCipher(header.session_keys)
    plain = bytearray()
    for start in range(0, len(body), CIPHER_SEGMENT_SIZE):
        try:
            plain += cipher.open(body[start : start + CIPHER_SEGMENT_SIZE])
        except Crypt4ghError as exc:
            raise Crypt4ghError(f"{name}: segment {start // CIPHER_SEGMENT_SIZE}: {exc}") from None
    return apply_edit_list(bytes(plain), header.edit_list)


def apply_edit_list(plain: bytes, edit_list: Iterable[int] | None) -> bytes:
    """Keep what an edit list keeps (Crypt4GH section 'Edit List'): skip, keep, skip, ...;
    a list ending on a skip keeps the rest."""
    if edit_list is None:
        return plain
    edits = list(edit_list)
    if not edits:
        return plain
    out = bytearray()
    position = 0
    for i in range(0, len(edits), 2):
        position += edits[i]
        if i + 1 == len(edits):
            out += plain[position:]
            break
        out += plain[position : position + edits[i + 1]]
        position += edits[i + 1]
    return bytes(out)


def verify_file(path: Path, secret_key: bytes) -> EncryptedFile:
    """Open a Crypt4GH file and authenticate every segment (uploads are checked whole before
    anything is stored)."""
    encrypted = EncryptedFile(path, secret_key)
    for _plain in encrypted.iter_segments(0, encrypted.segments):
        pass
    return encrypted
