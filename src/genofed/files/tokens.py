"""Self-authorising, short-lived URLs for the data blocks of an htsget ticket.

htslib (bcftools, samtools) and most htsget clients follow ticket URLs without sending the
caller's bearer token, so each data URL carries a token: the claims (which bytes of which file,
for whom, until when) sealed with ChaCha20-Poly1305 under a node secret. Sealing both
authenticates the claims and keeps them (the caller's identity included) out of URL logs. The
secret lives in the node's keys directory, apart from the data, created on first use.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import time
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

from genofed.errors import InvalidDataToken

KEY_FILE = "htsget-urls.key"
_CONTEXT = b"genofed htsget data URL v1"


class TokenSealer:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("the URL sealing key has 32 bytes")
        self._aead = ChaCha20Poly1305(key)

    @classmethod
    def for_keys_dir(cls, keys_dir: Path) -> TokenSealer:
        """The node's sealing key, created (mode 0600) if the node has none yet."""
        path = keys_dir / KEY_FILE
        if not path.exists():
            # written aside, then linked into place: concurrent server processes all end up
            # with the one key that won, never with a half-written one
            temporary = keys_dir / f".{KEY_FILE}.{os.getpid()}.{os.urandom(4).hex()}"
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(os.urandom(32))
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(temporary, path)
            except FileExistsError:
                pass
            finally:
                temporary.unlink()
        return cls(path.read_bytes())

    def seal(self, claims: dict[str, Any], *, expires: int) -> str:
        body = json.dumps({**claims, "exp": expires}, separators=(",", ":")).encode()
        nonce = os.urandom(12)
        sealed = nonce + self._aead.encrypt(nonce, body, _CONTEXT)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode()

    def open(self, token: str, *, now: float | None = None) -> dict[str, Any]:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            body = self._aead.decrypt(raw[:12], raw[12:], _CONTEXT)
        except (binascii.Error, ValueError, InvalidTag):
            raise InvalidDataToken("this data URL is not valid on this node") from None
        claims: dict[str, Any] = json.loads(body)
        if claims["exp"] < (time.time() if now is None else now):
            raise InvalidDataToken("this data URL has expired; request a new ticket")
        return claims
