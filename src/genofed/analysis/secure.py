"""Secure aggregation: the coordinator of a federated analysis learns the elementwise sum of the
nodes' statistics, and nothing else about any one node's.

In each round every participating node encodes its statistics (a dict of float64/int64 arrays
whose names and shapes the job's :class:`~genofed.analysis.fixed_point.Layout` fixes) as one
vector of 64-bit fixed-point words (:mod:`.fixed_point`), adds pairwise masks (:func:`mask`) and
signs the result (:func:`sign_contribution`). For participants i < j (ordered by node id) both
derive the same mask from their X25519 agreement; i adds it and j subtracts it, so every mask
cancels in the sum modulo 2**64 and the sum of the masked vectors (:func:`aggregate`) is the sum
of the plain ones, exactly. A mask is a ChaCha20 key stream keyed by HKDF-SHA256 of the pair's
secret and bound to job, round, attempt and participant list, so without a participant's private
key any one masked vector, or any set of them short of all, is uniformly random.

What this protects against: a coordinator that follows the protocol but reads everything it
receives, also when it colludes with some nodes: together they learn the sum of the honest nodes'
statistics, never one honest node's alone, as long as two honest nodes take part. What it does
not: a coordinator that obtains two sums over participant sets differing by one node (a round
redone without a node that "dropped out") could subtract them. The job protocol bounds that
(:meth:`genofed.analysis.node.AnalysisNode._check_round`): a node answers each round once, and
refuses a restart without a node once statistics including that node were pooled. Nor is the
sum itself secret: job types release aggregates over many individuals.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from genofed.analysis.fixed_point import MAX_PARTICIPANTS, vector_of
from genofed.errors import AggregationError, ContributionRefused, StorageError

_MASK = b"genofed/secure-aggregation/mask/v1"
_CONTRIBUTION = b"genofed/secure-aggregation/contribution/v1"
#: Key stream generated per step (elements): bounds memory to 8 MiB whatever the vector's size.
_CHUNK = 1 << 20
_ZEROS = bytes(8 * _CHUNK)



# -- pairwise masks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class RoundContext:
    """What a contribution belongs to: masks and signatures are bound to it. `attempt` counts
    the tries of one round (a round redone without a node that dropped out is a new attempt)."""

    job_id: str
    round: str
    attempt: int

    def __post_init__(self) -> None:
        if not self.job_id or not self.round:
            raise AggregationError("a round context needs a job id and a round name")
        if self.attempt < 0:
            raise AggregationError(f"attempt {self.attempt} is negative")

    def encoded(self) -> bytes:
        """A canonical byte string (JSON, sorted keys): the same at every node."""
        return json.dumps({"job": self.job_id, "round": self.round, "attempt": self.attempt},
                          sort_keys=True, separators=(",", ":")).encode()


def _participants(node_id: str, participants: Sequence[str]) -> list[str]:
    ordered = sorted(participants)
    if len(set(ordered)) != len(ordered):
        raise AggregationError(f"a participant is listed twice: {ordered}")
    if node_id not in ordered:
        raise AggregationError(f"{node_id!r} is not among the participants {ordered}")
    if len(ordered) < 2:
        raise AggregationError("a sum over one node is that node's statistics: secure "
                               "aggregation needs at least two participants")
    if len(ordered) > MAX_PARTICIPANTS:
        raise AggregationError(f"{len(ordered)} participants; at most {MAX_PARTICIPANTS}")
    return ordered


def agreement_secret(private_key: x25519.X25519PrivateKey, peer_id: str,
                     peer_public_key: x25519.X25519PublicKey) -> bytes:
    """The X25519 secret this node shares with a peer (input to HKDF, never used directly)."""
    try:
        return private_key.exchange(peer_public_key)
    except ValueError as exc:  # a low-order point: the all-zero secret anyone could compute
        raise AggregationError(f"{peer_id}'s agreement key is not usable: {exc}") from None


def _mask_key(secret: bytes, pair: tuple[str, str], participants: Sequence[str],
              context: RoundContext) -> bytes:
    info = json.dumps({"purpose": _MASK.decode(), "context": context.encoded().decode(),
                       "participants": list(participants), "pair": list(pair)},
                      sort_keys=True, separators=(",", ":")).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def _keystream_into(key: bytes, out: np.ndarray, subtract: bool) -> None:
    """Add (or subtract) the pair's key stream, read as little-endian uint64, to `out` in
    place, modulo 2**64 (numpy's unsigned arithmetic wraps)."""
    # The key is used for this one stream only, so the all-zero nonce never repeats under it.
    encryptor = Cipher(algorithms.ChaCha20(key, bytes(16)), mode=None).encryptor()
    buffer = np.empty(min(_CHUNK, out.size), dtype="<u8")
    raw = buffer.view(np.uint8)
    zeros = memoryview(_ZEROS)
    for start in range(0, out.size, _CHUNK):
        n = min(_CHUNK, out.size - start)
        encryptor.update_into(zeros[:8 * n], raw.data[:8 * n])
        target = out[start:start + n]
        (np.subtract if subtract else np.add)(target, buffer[:n], out=target)


def pair_mask(size: int, *, node_id: str, peer_id: str, participants: Sequence[str],
              private_key: x25519.X25519PrivateKey, peer_public_key: x25519.X25519PublicKey,
              context: RoundContext) -> np.ndarray:
    """The mask `node_id` and `peer_id` share in this round and attempt (what :func:`mask` adds
    at the lower id and subtracts at the higher): both derive it, nobody else can."""
    ordered = _participants(node_id, participants)
    if peer_id == node_id or peer_id not in ordered:
        raise AggregationError(f"{peer_id!r} is not another participant")
    pair = (min(node_id, peer_id), max(node_id, peer_id))
    key = _mask_key(agreement_secret(private_key, peer_id, peer_public_key), pair, ordered,
                    context)
    out = np.zeros(size, dtype=np.uint64)
    _keystream_into(key, out, subtract=False)
    return out


def mask(vector: np.ndarray, *, node_id: str, participants: Sequence[str],
         private_key: x25519.X25519PrivateKey,
         public_keys: Mapping[str, x25519.X25519PublicKey], context: RoundContext) -> np.ndarray:
    """This node's encoded vector plus its masks with every peer j > node_id, minus those with
    every j < node_id (mod 2**64): what the coordinator receives. Summed over all participants
    the masks cancel.

    Masks are never reused: the HKDF info holds job, round, attempt and the participant list,
    so a new round or a new attempt draws fresh ones. A mask is a one-time pad: the same mask on
    two vectors lets whoever holds both subtract them and read the difference of the plain
    statistics (between two Newton iterations, or between two attempts of a round, with no key
    at all), and an attempt redone without a dropped node would leave the masks shared with that
    node uncancelled in one sum and absent from the other.
    """
    ordered = _participants(node_id, participants)
    out = vector_of(vector).copy()
    for peer in ordered:
        if peer == node_id:
            continue
        public = public_keys.get(peer)
        if public is None:
            raise AggregationError(f"no agreement key for participant {peer!r}")
        pair = (min(node_id, peer), max(node_id, peer))
        key = _mask_key(agreement_secret(private_key, peer, public), pair, ordered, context)
        _keystream_into(key, out, subtract=peer < node_id)
    return out


def aggregate(vectors: Sequence[np.ndarray]) -> np.ndarray:
    """The elementwise sum of the masked vectors modulo 2**64: the sum of the plain ones, once
    every participant's vector is in (missing one, it is noise)."""
    if not vectors:
        raise AggregationError("nothing to aggregate")
    first = vector_of(vectors[0])
    total = first.copy()
    for vector in vectors[1:]:
        np.add(total, vector_of(vector, first.size, "the first has"), out=total)
    return total


# -- integrity -----------------------------------------------------------------------------------
def _digest(masked: np.ndarray | bytes, context: RoundContext) -> bytes:
    """SHA-256 of label, context (length-prefixed) and contribution: a vector (as its
    little-endian uint64 bytes, :func:`to_bytes`) or a whole message's bytes."""
    encoded = context.encoded()
    digest = hashlib.sha256(_CONTRIBUTION)
    digest.update(len(encoded).to_bytes(4, "big"))
    digest.update(encoded)
    if isinstance(masked, bytes):
        digest.update(masked)
    else:
        vector = vector_of(masked).astype("<u8", copy=False)
        digest.update(np.ascontiguousarray(vector).data)
    return digest.digest()


_ES256 = ec.ECDSA(utils.Prehashed(hashes.SHA256()))


def sign_contribution(masked: np.ndarray | bytes, context: RoundContext,
                      signing_key: ec.EllipticCurvePrivateKey) -> bytes:
    """An ES256 signature (64 bytes, r || s as JWS writes it) over the contribution: SHA-256
    of the context and the masked vector (or a node's whole answer, as bytes), so that a
    contribution altered in transit, or replayed into another round or attempt, is refused."""
    if not isinstance(signing_key.curve, ec.SECP256R1):
        raise AggregationError(f"ES256 needs a P-256 key, not {signing_key.curve.name}")
    r, s = utils.decode_dss_signature(signing_key.sign(_digest(masked, context), _ES256))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def verify_contribution(masked: np.ndarray | bytes, context: RoundContext, signature: bytes,
                        public_key: ec.EllipticCurvePublicKey, *, node_id: str) -> None:
    """Raises :class:`ContributionRefused` (naming `node_id`) unless `signature` is the node's
    over this vector in this context; the caller then redoes the round without the node."""
    if len(signature) != 64:
        raise ContributionRefused(node_id, f"{node_id}: a contribution signature of "
                                           f"{len(signature)} bytes; ES256 has 64")
    der = utils.encode_dss_signature(int.from_bytes(signature[:32], "big"),
                               int.from_bytes(signature[32:], "big"))
    try:
        public_key.verify(der, _digest(masked, context), _ES256)
    except InvalidSignature:
        raise ContributionRefused(node_id, f"{node_id}: the contribution to {context.job_id} "
                                           f"round {context.round!r} attempt {context.attempt} "
                                           "does not match its signature (altered in transit, "
                                           "or not this node's)") from None


def load_agreement_key(path: Path) -> x25519.X25519PrivateKey:
    """A node's X25519 private key (`NodePaths.agreement_key`, PKCS8 PEM)."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), None)
    except (OSError, ValueError) as exc:
        raise StorageError(f"{path}: cannot read the node's agreement key: {exc}") from None
    if not isinstance(key, x25519.X25519PrivateKey):
        raise StorageError(f"{path}: not an X25519 private key")
    return key
