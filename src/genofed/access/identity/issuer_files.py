"""What the local issuer keeps on disk, and how: password hashes (scrypt), files readable by
the owner only and written atomically, TOML tables re-read when the CLI changes them while a
server runs, and the RS256 signing keys (rotated by adding a newer file)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import threading
import time
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ValidationError

from genofed.access.identity.oidc import jwk_thumbprint, public_jwk
from genofed.errors import IssuerConfigError


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return "scrypt$" + "$".join(base64.b64encode(x).decode() for x in (salt, digest))


def check_password(password: str, stored: str) -> bool:
    scheme, _, rest = stored.partition("$")
    salt_b64, _, digest_b64 = rest.partition("$")
    if scheme != "scrypt" or not digest_b64:
        return False
    digest = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt_b64), n=2**14, r=8,
                            p=1)
    return hmac.compare_digest(digest, base64.b64decode(digest_b64))


def write_private(path: Path, data: bytes) -> None:
    """Write atomically, readable by the owner only."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


Row = TypeVar("Row", bound=BaseModel)


class TomlTable(Generic[Row]):
    """The `[[name]]` rows of a TOML file in the issuer directory, keyed by `key`, re-read when the
    file changes (the CLI edits it while a server runs). A missing file is an empty table."""

    def __init__(self, path: Path, name: str, model: type[Row],
                 key: Callable[[Row], str]) -> None:
        self.path, self._name, self._model, self._key = path, name, model, key
        self._cached: tuple[int, dict[str, Row]] = (-1, {})
        self._lock = threading.Lock()

    def rows(self) -> dict[str, Row]:
        with self._lock:
            mtime = self.path.stat().st_mtime_ns if self.path.is_file() else 0
            if mtime != self._cached[0]:
                try:
                    text = self.path.read_text() if mtime else ""
                    rows = [self._model.model_validate(row)
                            for row in tomllib.loads(text).get(self._name, [])]
                except (tomllib.TOMLDecodeError, ValidationError) as exc:
                    raise IssuerConfigError(f"{self.path}: {exc}") from None
                self._cached = (mtime, {self._key(row): row for row in rows})
            return self._cached[1]

    def write(self, rows: Iterable[Row]) -> None:
        document = {self._name: [row.model_dump() for row in rows]}
        write_private(self.path, tomli_w.dumps(document).encode())


class Keyring:
    """The RS256 keys in `keys/`, reloaded when the directory changes (rotation while serving)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._listing: tuple[tuple[str, int], ...] = ()
        self._keys: list[tuple[str, rsa.RSAPrivateKey]] = []
        self._lock = threading.Lock()

    def _current(self) -> list[tuple[str, rsa.RSAPrivateKey]]:
        files = sorted(self._directory.glob("*.rs256.pem"))
        listing = tuple((f.name, f.stat().st_mtime_ns) for f in files)
        with self._lock:
            if listing != self._listing:
                keys = []
                for file in files:
                    key = serialization.load_pem_private_key(file.read_bytes(), password=None)
                    if isinstance(key, rsa.RSAPrivateKey):
                        keys.append((jwk_thumbprint(public_jwk(key.public_key())), key))
                self._keys, self._listing = keys, listing
            if not self._keys:
                raise IssuerConfigError(f"{self._directory}: no RS256 signing key")
            return self._keys

    def signing(self) -> tuple[str, rsa.RSAPrivateKey]:
        return self._current()[-1]  # file names sort by creation

    def public_key(self, kid: str | None) -> rsa.RSAPublicKey | None:
        return next((k.public_key() for i, k in self._current() if i == kid), None)

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(k.public_key(), kid=i) for i, k in self._current()]}

    def generate(self) -> str:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        write_private(self._directory / f"{time.time_ns():020d}.rs256.pem", pem)
        return jwk_thumbprint(public_jwk(key.public_key()))
