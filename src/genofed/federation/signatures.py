"""Node-to-node request authentication with HTTP Message Signatures (RFC 9421).

Signing (the hub, with the key of the node it runs beside): one signature per request, label
`genofed`, tag `genofed-peer`, `alg` ecdsa-p256-sha256, `keyid` = the sending node's id, `created`
and `expires` (60 s later). It covers `@method`, `@authority`, `@path` and `@query`, and when
present `content-digest` (RFC 9530 SHA-256 of the body), `authorization` (the researcher's token,
forwarded untouched; covering it pins it to this one request) and `genofed-forwarded-for` (the
researcher's address, so each node's per-caller query budget still applies per researcher).
`@scheme` is not covered so that TLS may end at a node's reverse proxy.

Verifying (a node in a network, :class:`PeerSignatureMiddleware`):

* a request without signature headers is a direct request and passes untouched: researchers
  query nodes directly too, and their own token decides what they see. "Refused" therefore
  applies to *signed* requests (and to paths listed in `required_prefixes`, none by default);
* a signed request whose keyid is not a current member is refused with 403 (saying whether the
  peer is unknown or was removed, and when); a signature that does not verify, has expired or
  leaves the token uncovered is refused with 401; an unreadable network file gives 503;
* a verified request reaches the app with `request.state.genofed_peer` = the member id and the
  client address taken from `genofed-forwarded-for`.

There is no replay cache: a signed request can be replayed only to the same node, for the same
read, with the same token, within its 60 s validity.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import http_sf
import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from http_message_signatures import (
    HTTPMessageSignaturesException,
    HTTPMessageVerifier,
    HTTPSignatureKeyResolver,
)
from http_message_signatures.algorithms import ECDSA_P256_SHA256

from genofed.config.node import NODE_ID_PATTERN
from genofed.errors import NetworkFileError, PeerRefused
from genofed.federation.network import LiveNetwork, Network

log = logging.getLogger(__name__)

ALGORITHM = ECDSA_P256_SHA256
LABEL = "genofed"
TAG = "genofed-peer"
VALIDITY = timedelta(seconds=60)
FORWARDED_FOR = "genofed-forwarded-for"
COVERED = ("@method", "@authority", "@path", "@query")
#: Where the verified member id is put (`request.state.genofed_peer`).
PEER_STATE = "genofed_peer"
#: Peer requests are Beacon queries; a body is buffered to check its digest, so it is capped.
MAX_BODY = 1 << 20


def load_signing_key(path: Path) -> ec.EllipticCurvePrivateKey:
    key = serialization.load_pem_private_key(path.read_bytes(), None)
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve,
                                                                         ec.SECP256R1):
        raise ValueError(f"{path}: not an ES256 (P-256) private key")
    return key


class PeerSigner:
    """Signs outgoing requests as node `node_id`.

    The signature base (RFC 9421 section 2.5) is built here for the fixed component set above,
    rather than by the library's generic signer, which costs ~1 ms a request in structured-field
    serialisation: a hub signs one request per member per query. Every signature made here is
    checked by the library's verifier at the receiving node.
    """

    def __init__(self, node_id: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        if not re.fullmatch(NODE_ID_PATTERN, node_id):
            raise ValueError(f"{node_id!r} is not a node id")
        self.node_id = node_id
        self._key = private_key
        self._ecdsa = ec.ECDSA(hashes.SHA256())

    @classmethod
    def from_key_file(cls, node_id: str, path: Path) -> PeerSigner:
        return cls(node_id, load_signing_key(path))

    def sign(self, request: httpx.Request, *, created: datetime | None = None) -> None:
        """Add `Signature-Input`, `Signature` (and `Content-Digest` for a body) in place."""
        path, _, _ = request.url.raw_path.partition(b"?")
        request.headers.update(self.signature_headers(
            request.method, request.url.netloc.decode("ascii"), path.decode("ascii"),
            request.url.query.decode("ascii"), request.headers, request.content,
            created=created))

    def signature_headers(self, method: str, authority: str, path: str, query: str,
                          headers: Mapping[str, str], body: bytes | None, *,
                          created: datetime | None = None) -> dict[str, str]:
        """The headers that sign a request with these parts (`path` and `query` raw, as sent;
        `headers` as sent, looked up by lower-case name): `Signature-Input`, `Signature`, and
        `Content-Digest` when there is a body."""
        components = [("@method", method.upper()), ("@authority", authority.lower()),
                      ("@path", path or "/"), ("@query", "?" + query)]
        for header in ("authorization", FORWARDED_FOR):
            value = headers.get(header)
            if value is not None:
                components.append((header, value.strip(" \t")))
        added: dict[str, str] = {}
        if body:
            digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()
                                                     ).decode("ascii") + ":"
            added["content-digest"] = digest
            components.append(("content-digest", digest))
        now = int((created or datetime.now(UTC)).timestamp())
        covered = " ".join(f'"{name}"' for name, _ in components)
        params = (f'({covered});created={now};keyid="{self.node_id}";'
                  f'alg="{ALGORITHM.algorithm_id}";expires={now + int(VALIDITY.total_seconds())};'
                  f'tag="{TAG}"')
        base = "".join(f'"{name}": {value}\n' for name, value in components)
        base += f'"@signature-params": {params}'
        r, s = decode_dss_signature(self._key.sign(base.encode("ascii"), self._ecdsa))
        signature = base64.b64encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))
        added["signature-input"] = f"{LABEL}={params}"
        added["signature"] = f"{LABEL}=:{signature.decode('ascii')}:"
        return added


@dataclass(frozen=True)
class Peer:
    node_id: str
    forwarded_for: str | None


class _HeaderView:
    """Read-only header lines in the shape the signature library reads."""

    def __init__(self, lines: Sequence[tuple[str, str]]) -> None:
        self._lines = lines

    def items(self) -> Iterable[tuple[str, str]]:
        return self._lines

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(name for name, _ in self._lines))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and any(n.lower() == name.lower() for n, _ in self._lines)

    def __setitem__(self, name: str, value: str) -> None:
        raise TypeError("read-only")

    def __delitem__(self, name: str) -> None:
        raise TypeError("read-only")


@dataclass
class _IncomingRequest:
    method: str
    url: str
    headers: _HeaderView


class _MemberKeys(HTTPSignatureKeyResolver):
    def __init__(self, network: Network) -> None:
        self.network = network

    def resolve_public_key(self, key_id: str) -> ec.EllipticCurvePublicKey | None:
        member = self.network.member(key_id)
        return None if member is None else member.signing_key

    def resolve_private_key(self, key_id: str) -> Any:
        raise HTTPMessageSignaturesException("a verifier holds no private keys")


class _Verifier(HTTPMessageVerifier):
    #: Nodes keep NTP time, but not to the second.
    max_clock_skew = timedelta(seconds=30)


def _parse_signature_input(signature_input: str) -> Any:
    """The Signature-Input field as parsed structured-field dictionary (401 when malformed)."""
    try:
        return http_sf.parse(signature_input.encode("latin-1"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        raise PeerRefused(401, "invalid peer signature: malformed Signature-Input") from None


def _signed_key_ids(inputs: Any) -> list[str]:
    """keyids of the genofed-tagged signatures in a parsed Signature-Input field."""
    ids = []
    for _label, (_member, params) in inputs.items():
        if params.get("tag") == TAG:
            key_id = params.get("keyid")
            if not isinstance(key_id, str):
                raise PeerRefused(401, "invalid peer signature: no keyid")
            ids.append(key_id)
    if not ids:
        raise PeerRefused(401, f"invalid peer signature: none tagged {TAG!r}")
    return ids


_PARAMETERS = {"created", "expires", "keyid", "alg", "tag", "nonce"}


def _sf_string(value: str) -> str | None:
    """`value` as a structured-field string, None when it cannot be one."""
    if not value.isascii() or not value.isprintable():
        return None
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _authority(scheme: str, host: str) -> str:
    host = host.lower()
    name, colon, port = host.rpartition(":")
    if colon and port.isdigit() and not host.endswith("]") and \
            port.lstrip("0") == {"http": "80", "https": "443"}.get(scheme):
        return name
    return host


def _fast_verify(network: Network, method: str, scheme: str, host: str, path: str, query: str,
                 fields: dict[str, str], inputs: Any, body: bytes) -> Peer | None:
    """Accept a signature in exactly the profile genofed signs (one genofed-tagged signature,
    plain components, ecdsa-p256-sha256, in date, body digest matching) after checking it
    against the RFC 9421 signature base built here; None in every other case, for the library's
    verifier to judge. This path can only accept what verifies cryptographically; it exists
    because the library spends ~1 ms a request in structured-field parsing."""
    try:
        signatures: Any = http_sf.parse(fields["signature"].encode("ascii"),
                                        tltype="dictionary")
    except (KeyError, ValueError, TypeError, UnicodeEncodeError):
        return None
    # `type(...) is str`: a Token or DisplayString equal to the text is another serialization
    tagged = [label for label, (_items, params) in inputs.items()
              if type(params.get("tag")) is str and params["tag"] == TAG]
    if len(tagged) != 1 or set(inputs) != set(signatures):
        return None
    items, params = inputs[tagged[0]]
    signature, signature_params = signatures[tagged[0]]
    created, expires, key_id = params.get("created"), params.get("expires", 0), params.get("keyid")
    if (not isinstance(items, list) or not isinstance(signature, bytes) or signature_params
            or set(params) - _PARAMETERS or params.get("alg", ALGORITHM.algorithm_id)
            != ALGORITHM.algorithm_id or type(created) is not int or type(expires) is not int
            or type(key_id) is not str or len(signature) != 64):
        return None
    now = datetime.now(UTC).timestamp()
    skew = _Verifier.max_clock_skew.total_seconds()
    if created > now + skew or created + VALIDITY.total_seconds() < now - skew or \
            ("expires" in params and expires < now - skew):
        return None
    member = network.member(key_id)
    names = [name for name, item_params in items if not item_params and type(name) is str]
    if member is None or len(names) != len(items) or len(set(names)) != len(names) or \
            not set(COVERED) <= set(names):
        return None
    derived = {"@method": method, "@authority": _authority(scheme, host),
               "@path": path or "/", "@query": "?" + query}
    lines = []
    for name in names:
        value = derived.get(name) if name.startswith("@") else fields.get(name)
        if value is None or name != name.lower() or not value.isascii() or \
                not value.replace("\t", " ").isprintable():
            return None
        lines.append(f'"{name}": {value}')
    serialized = []
    for key, value in params.items():
        text = str(value) if type(value) is int else _sf_string(value) \
            if type(value) is str else None
        if text is None:
            return None
        serialized.append(f";{key}={text}")
    covered = " ".join(f'"{name}"' for name in names)
    lines.append(f'"@signature-params": ({covered}){"".join(serialized)}')
    r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    try:
        member.signing_key.verify(encode_dss_signature(r, s), "\n".join(lines).encode("ascii"),
                                  ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return None
    if (body or "content-digest" in fields) and not _digest_matches(
            fields.get("content-digest") if "content-digest" in names else None, body):
        return None
    return Peer(key_id, fields.get(FORWARDED_FOR) if FORWARDED_FOR in names else None)


def _digest_matches(field: str | None, body: bytes) -> bool:
    """Every digest in a (signed) Content-Digest field matches `body` (RFC 9530)."""
    if field is None:
        return False
    try:
        digests: Any = http_sf.parse(field.encode("ascii"), tltype="dictionary")
    except (ValueError, TypeError, UnicodeEncodeError):
        return False
    hashers = {"sha-256": hashlib.sha256, "sha-512": hashlib.sha512}
    return bool(digests) and all(
        algorithm in hashers and isinstance(value, bytes) and not params
        and hmac.compare_digest(value, hashers[algorithm](body).digest())
        for algorithm, (value, params) in digests.items())


class PeerVerifier:
    """Checks a signed request against the network's current member list."""

    def __init__(self, network: LiveNetwork) -> None:
        self.network = network

    def verify(self, method: str, url: str, headers: Sequence[tuple[str, str]],
               body: bytes, *, fast: bool = True) -> Peer:
        """The verified peer behind a signed request, or :class:`PeerRefused`. `url` is the
        request's absolute URL as received (raw path and query); `fast=False` sends every
        signature through the library's verifier."""
        try:
            network = self.network.current()
        except NetworkFileError as exc:
            log.error("cannot check peer signatures: %s", exc)
            raise PeerRefused(503, "this node cannot check peer signatures now: its network "
                                   "file is unreadable (the operator's log has details)") from None
        view = _HeaderView(headers)
        fields: dict[str, str] = {}
        for name, value in headers:
            name, value = name.lower(), value.strip(" \t")
            fields[name] = f"{fields[name]}, {value}" if name in fields else value
        inputs = _parse_signature_input(fields.get("signature-input", ""))
        for key_id in _signed_key_ids(inputs):
            if network.member(key_id) is not None:
                continue
            removal = network.removal(key_id)
            if removal is not None:
                raise PeerRefused(403, f"peer {key_id!r} was removed from network "
                                       f"{network.name!r} on {removal.removed}; its requests "
                                       "are refused")
            raise PeerRefused(403, f"peer {key_id!r} is not a member of network "
                                   f"{network.name!r}; its requests are refused")
        peer = None
        if fast:
            scheme, _, rest = url.partition("://")
            host, slash, target = rest.partition("/")
            path, _, query = (slash + target).partition("?")
            peer = _fast_verify(network, method, scheme, host, path, query, fields, inputs,
                                body)
        if peer is None:
            peer = self._library_verify(network, method, url, view, body)
        for header in ("authorization", FORWARDED_FOR):
            if header in fields and not _covers(inputs, header):
                raise PeerRefused(401, f"invalid peer signature: it does not cover the "
                                       f"{header} header the request carries")
        return peer

    @staticmethod
    def _library_verify(network: Network, method: str, url: str, view: _HeaderView,
                        body: bytes) -> Peer:
        verifier = _Verifier(signature_algorithm=ALGORITHM, key_resolver=_MemberKeys(network))
        try:
            results = verifier.verify(_IncomingRequest(method, url, view), max_age=VALIDITY,
                                      expect_tag=TAG, require_components=COVERED, body=body)
        except HTTPMessageSignaturesException as exc:
            reason = str(exc) or ("it does not match this request (altered in transit, or "
                                  "signed for another node or URL)")
            raise PeerRefused(401, f"invalid peer signature: {reason}") from None
        result = results[0]
        forwarded = result.covered_components.get(f'"{FORWARDED_FOR}"')
        return Peer(str(result.parameters["keyid"]), forwarded)


def _covers(inputs: Any, header: str) -> bool:
    """Whether the genofed-tagged signature covers `header` (as a plain component)."""
    return any(params.get("tag") == TAG and isinstance(items, list)
               and any(name == header and not p for name, p in items)
               for items, params in inputs.values())
