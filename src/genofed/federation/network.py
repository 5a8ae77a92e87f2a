"""A network of nodes: the network file, its members, and a view of it that follows edits.

The network file is TOML, written by `genofed network ...` and handed by the network operator to
every member (each node points `federation.network_file` in its `node.toml` at its copy)::

    format = "genofed-network/1"
    name = "gdi-demo"
    version = 4                          # +1 on every change
    updated = "2025-03-01T12:00:00+00:00"

    [[members]]
    id = "fi-helsinki"                   # node id; also the keyid of its request signatures
    country = "FI"                       # ISO 3166-1 alpha-2
    base_url = "https://genofed.fi.example"   # the node's Beacon is base_url + "/beacon"
    signing_public_key = '''-----BEGIN PUBLIC KEY----- ...'''    # ES256 (P-256)
    agreement_public_key = '''-----BEGIN PUBLIC KEY----- ...'''  # X25519 (secure aggregation)

    [[removed]]                          # former members: their signed requests are refused
    id = "xx-old"
    removed = "2025-02-01T09:00:00+00:00"

Public keys are PEM (SubjectPublicKeyInfo) or a JWK table (`kty = "EC", crv = "P-256", x, y` /
`kty = "OKP", crv = "X25519", x`); they are always written back as PEM.
"""

from __future__ import annotations

import base64
import functools
import json
import os
import threading
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import tomli_w
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, x25519
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from genofed.config.node import NODE_ID_PATTERN, NodePaths, load_config, save_config
from genofed.errors import NetworkFileError

FORMAT: Literal["genofed-network/1"] = "genofed-network/1"
NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _jwk(value: Any) -> dict[str, Any] | None:
    """A JWK given as a table or as JSON text; None when `value` is not one."""
    if isinstance(value, dict):
        return value
    if isinstance(value, str) and value.lstrip().startswith("{"):
        try:
            parsed = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"not valid JWK JSON ({exc.msg})") from None
        return parsed if isinstance(parsed, dict) else None
    return None


def _pem(key: ec.EllipticCurvePublicKey | x25519.X25519PublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


@functools.lru_cache(maxsize=1024)
def signing_key_from_pem(pem: str) -> ec.EllipticCurvePublicKey:
    """The P-256 public key in `pem` (cached: verification looks keys up on every request)."""
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("not an ES256 (P-256) public key")
    return key


@functools.lru_cache(maxsize=1024)
def agreement_key_from_pem(pem: str) -> x25519.X25519PublicKey:
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, x25519.X25519PublicKey):
        raise ValueError("not an X25519 public key")
    return key


def normalize_signing_key(value: Any) -> str:
    """PEM text for a P-256 public key given as PEM or JWK."""
    jwk = _jwk(value)
    if jwk is not None:
        if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
            raise ValueError("JWK must have kty 'EC' and crv 'P-256'")
        try:
            numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(_b64url(jwk["x"]), "big"),
                                                    int.from_bytes(_b64url(jwk["y"]), "big"),
                                                    ec.SECP256R1())
            return _pem(numbers.public_key())
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid P-256 JWK ({exc})") from None
    if not isinstance(value, str) or "BEGIN PUBLIC KEY" not in value:
        raise ValueError("expected a PEM public key ('-----BEGIN PUBLIC KEY-----') or a JWK")
    try:
        return _pem(signing_key_from_pem(value.strip() + "\n"))
    except ValueError as exc:
        raise ValueError(f"invalid signing key: {exc}") from None


def normalize_agreement_key(value: Any) -> str:
    """PEM text for an X25519 public key given as PEM or JWK."""
    jwk = _jwk(value)
    if jwk is not None:
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "X25519":
            raise ValueError("JWK must have kty 'OKP' and crv 'X25519'")
        try:
            return _pem(x25519.X25519PublicKey.from_public_bytes(_b64url(jwk["x"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"invalid X25519 JWK ({exc})") from None
    if not isinstance(value, str) or "BEGIN PUBLIC KEY" not in value:
        raise ValueError("expected a PEM public key ('-----BEGIN PUBLIC KEY-----') or a JWK")
    try:
        return _pem(agreement_key_from_pem(value.strip() + "\n"))
    except ValueError as exc:
        raise ValueError(f"invalid agreement key: {exc}") from None


def normalize_base_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL like 'https://node.example.org'")
    if parts.query or parts.fragment:
        raise ValueError(f"{value!r}: a base URL has no query or fragment")
    return value.strip().rstrip("/")


class Member(BaseModel):
    """One member node, as listed in the network file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(pattern=NODE_ID_PATTERN)
    country: str = Field(pattern=r"^[A-Z]{2}$")
    base_url: str
    signing_public_key: str
    agreement_public_key: str

    _url = field_validator("base_url")(normalize_base_url)
    _signing = field_validator("signing_public_key", mode="before")(normalize_signing_key)
    _agreement = field_validator("agreement_public_key", mode="before")(normalize_agreement_key)

    @property
    def signing_key(self) -> ec.EllipticCurvePublicKey:
        return signing_key_from_pem(self.signing_public_key)

    @property
    def agreement_key(self) -> x25519.X25519PublicKey:
        return agreement_key_from_pem(self.agreement_public_key)

    @property
    def beacon_url(self) -> str:
        return f"{self.base_url}/beacon"


class RemovedMember(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str
    removed: str


class Network(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["genofed-network/1"] = FORMAT
    name: str = Field(pattern=NAME_PATTERN)
    version: int = Field(ge=1)
    updated: str
    members: tuple[Member, ...] = ()
    removed: tuple[RemovedMember, ...] = ()

    @model_validator(mode="after")
    def _unique(self) -> Network:
        seen: set[str] = set()
        for member in self.members:
            if member.id in seen:
                raise ValueError(f"member {member.id!r} is listed twice")
            seen.add(member.id)
        back = seen & {r.id for r in self.removed}
        if back:
            raise ValueError(f"{', '.join(sorted(back))} listed both as member and as removed")
        return self

    def member(self, node_id: str) -> Member | None:
        return next((m for m in self.members if m.id == node_id), None)

    def removal(self, node_id: str) -> RemovedMember | None:
        return next((r for r in self.removed if r.id == node_id), None)

    @property
    def beacon_id(self) -> str:
        return f"org.genofed.network.{self.name}"


def _problems(exc: ValidationError) -> str:
    out = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"]) or "file"
        out.append(f"'{where}': {err['msg'].removeprefix('Value error, ')}")
    return "; ".join(out)


def load_network(path: Path) -> Network:
    if not path.is_file():
        raise NetworkFileError(f"{path}: no such network file; create one with "
                               f"`genofed network init {path} --name NAME`")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NetworkFileError(f"{path}: invalid TOML: {exc}") from None
    try:
        return Network.model_validate(data)
    except ValidationError as exc:
        raise NetworkFileError(f"{path}: {_problems(exc)}") from None


def save_network(path: Path, network: Network) -> Network:
    """Write `network` atomically (readers never see half a file) as the next version."""
    stamped = network.model_copy(update={"version": network.version + 1, "updated": _now()})
    data = stamped.model_dump(exclude_none=True)
    data["members"] = [dict(m) for m in data["members"]]
    data["removed"] = [dict(r) for r in data["removed"]]
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(tomli_w.dumps(data, multiline_strings=True), encoding="utf-8")
    os.replace(tmp, path)
    return stamped


def create_network(path: Path, name: str) -> Network:
    if path.exists():
        raise NetworkFileError(f"{path}: already exists; refusing to overwrite a network file")
    try:
        Network(name=name, version=1, updated=_now())
    except ValidationError as exc:
        raise NetworkFileError(f"network name: {_problems(exc)} (use lower-case letters, digits "
                               "and '-')") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    # save_network stamps the next version: the first one written is 1
    return save_network(path, Network.model_construct(name=name, version=0, updated=_now()))


def member_from(data: dict[str, Any]) -> Member:
    try:
        return Member.model_validate(data)
    except ValidationError as exc:
        raise NetworkFileError(f"member entry: {_problems(exc)}") from None


def add_member(path: Path, member: Member, *, replace: bool = False) -> Network:
    network = load_network(path)
    existing = network.member(member.id)
    if existing is not None and not replace:
        raise NetworkFileError(f"{path}: {member.id!r} is already a member (at "
                               f"{existing.base_url}); use --replace to update its entry")
    members = [m for m in network.members if m.id != member.id] + [member]
    removed = [r for r in network.removed if r.id != member.id]
    return save_network(path, network.model_copy(update={"members": tuple(members),
                                                         "removed": tuple(removed)}))


def remove_member(path: Path, node_id: str) -> Network:
    network = load_network(path)
    if network.member(node_id) is None:
        known = ", ".join(m.id for m in network.members) or "none"
        raise NetworkFileError(f"{path}: {node_id!r} is not a member (members: {known})")
    members = tuple(m for m in network.members if m.id != node_id)
    removed = (*network.removed, RemovedMember(id=node_id, removed=_now()))
    return save_network(path, network.model_copy(update={"members": members,
                                                         "removed": removed}))


def member_for_node(node_dir: Path, base_url: str) -> Member:
    """The member entry of a local node: its id, country and the public halves of its keys."""
    config = load_config(node_dir)
    paths = NodePaths(node_dir, config)
    signing = serialization.load_pem_private_key(paths.signing_key.read_bytes(), None)
    agreement = serialization.load_pem_private_key(paths.agreement_key.read_bytes(), None)
    if not isinstance(signing, ec.EllipticCurvePrivateKey) or \
            not isinstance(agreement, x25519.X25519PrivateKey):
        raise NetworkFileError(f"{paths.keys}: unexpected key types (need ES256 and X25519)")
    return member_from({"id": config.node_id, "country": config.country, "base_url": base_url,
                        "signing_public_key": _pem(signing.public_key()),
                        "agreement_public_key": _pem(agreement.public_key())})


def join_network(node_dir: Path, path: Path) -> Network:
    """Point a node at its copy of the network file (checked to list the node)."""
    config = load_config(node_dir)
    network = load_network(path)
    if network.member(config.node_id) is None:
        raise NetworkFileError(f"{path}: node {config.node_id!r} is not a member of network "
                               f"{network.name!r}; the operator adds it with `genofed network "
                               f"add {path} --node {node_dir} --url URL`")
    federation = config.federation.model_copy(update={"network_file": str(path.resolve())})
    save_config(node_dir, config.model_copy(update={"federation": federation}))
    return network


def leave_network(node_dir: Path) -> Path:
    """Stop a node following its network file (its peers' signed requests get no standing from
    then on); returns the file it followed."""
    config = load_config(node_dir)
    if not config.federation.network_file:
        raise NetworkFileError(f"node {config.node_id!r} is in no network",
                               hint="`genofed network join NODE_DIR NETWORK_FILE` joins one")
    path = network_path_of(node_dir, config.federation.network_file)
    federation = config.federation.model_copy(update={"network_file": ""})
    save_config(node_dir, config.model_copy(update={"federation": federation}))
    return path


def network_path_of(node_dir: Path, network_file: str) -> Path:
    """`federation.network_file` as a path (relative paths are relative to the node)."""
    path = Path(network_file)
    return path if path.is_absolute() else node_dir / path


@dataclass
class _Loaded:
    stamp: tuple[int, int, int]
    network: Network | None
    error: str | None


class LiveNetwork:
    """The network file as it is now: reloaded whenever it changes (inode, size or mtime), so a
    removal takes effect on the next request without a restart. An unreadable file is reported,
    not papered over with the last good copy: peers must not keep access the operator revoked."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: _Loaded | None = None
        self._lock = threading.Lock()

    def current(self) -> Network:
        try:
            info = os.stat(self.path)
            stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        except OSError:
            stamp = (0, 0, 0)
        loaded = self._loaded
        if loaded is None or loaded.stamp != stamp:
            with self._lock:
                loaded = self._loaded
                if loaded is None or loaded.stamp != stamp:
                    try:
                        loaded = _Loaded(stamp, load_network(self.path), None)
                    except NetworkFileError as exc:
                        loaded = _Loaded(stamp, None, str(exc))
                    self._loaded = loaded
        if loaded.network is None:
            raise NetworkFileError(loaded.error or f"{self.path}: unreadable")
        return loaded.network


__all__ = [
    "FORMAT", "LiveNetwork", "Member", "Network", "NetworkFileError", "RemovedMember",
    "add_member", "create_network", "join_network", "leave_network", "load_network",
    "member_for_node",
    "member_from", "network_path_of", "normalize_agreement_key", "normalize_signing_key",
    "remove_member", "save_network",
]
