"""Secure aggregation: the coordinator of a federated analysis learns the elementwise sum of the
nodes' statistics, and nothing else about any one node's.

In each round every participating node encodes its statistics (a dict of float64/int64 arrays
whose names and shapes the job's :class:`Layout` fixes) as one vector of 64-bit fixed-point
words (:func:`encode`: an integer is one word, a float two, a high and a low part, so that sums
keep float64's precision), adds pairwise masks (:func:`mask`) and signs the result
(:func:`sign_contribution`). For participants i < j (ordered by node id) both derive the same
mask from their X25519 agreement; i adds it and j subtracts it, so every mask cancels in the sum
modulo 2**64 and the sum of the masked vectors (:func:`aggregate`) is the sum of the plain ones,
exactly (:func:`decode`). A mask is a ChaCha20 key stream keyed by HKDF-SHA256 of the pair's
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
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, utils, x25519
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from genofed.errors import AggregationError, ContributionRefused, EncodingError, StorageError

#: Fraction bits of a float64 field unless its layout says otherwise. A float travels as two
#: words (a signed high and an unsigned low part of one fixed-point number, summed apart and
#: joined after decoding), so 48 fraction bits err by at most 2**-49 (1.8e-15) per node and
#: value while values up to ~1e20 still fit: sums keep float64's own precision wherever the
#: pooled statistic is not itself ~1e-15 (a GWAS sum over individuals that nearly cancels, a
#: rare variant's, must stay exact well beyond 1e-6 relative).
DEFAULT_FLOAT_BITS = 48
#: How many nodes a layout's range is reserved for, unless it says otherwise (see :class:`Layout`).
DEFAULT_MAX_PARTICIPANTS = 32
_MAX_PARTICIPANTS = 1024
_MASK = b"genofed/secure-aggregation/mask/v1"
_CONTRIBUTION = b"genofed/secure-aggregation/contribution/v1"
#: Key stream generated per step (elements): bounds memory to 8 MiB whatever the vector's size.
_CHUNK = 1 << 20
_ZEROS = bytes(8 * _CHUNK)

Dtype = Literal["float64", "int64"]


def _headroom(max_participants: int) -> int:
    """Bits kept free above each node's value so that the sum of `max_participants` of them
    cannot wrap around 2**63."""
    return max(0, math.ceil(math.log2(max_participants)))


@dataclass(frozen=True)
class Field:
    """One array of a contribution: its name, shape, dtype and fixed-point fraction bits
    (None: :data:`DEFAULT_FLOAT_BITS` for float64; int64 fields are integers, 0 bits)."""

    name: str
    shape: tuple[int, ...]
    dtype: Dtype = "float64"
    bits: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(n) for n in self.shape))
        if not self.name:
            raise AggregationError("a layout field needs a name")
        if any(n < 0 for n in self.shape):
            raise AggregationError(f"field {self.name!r}: negative dimension in {self.shape}")
        if self.dtype not in ("float64", "int64"):
            raise AggregationError(f"field {self.name!r}: dtype {self.dtype!r} is not float64 "
                                   "or int64")
        if self.dtype == "int64" and self.bits not in (None, 0):
            raise AggregationError(f"field {self.name!r}: int64 fields have 0 fraction bits")
        if self.bits is not None and not 0 <= self.bits <= 960:
            raise AggregationError(f"field {self.name!r}: fraction bits {self.bits} outside "
                                   "0..960")
        if self.bits is None:  # resolved here, so that equal layouts compare equal
            object.__setattr__(self, "bits", 0 if self.dtype == "int64" else DEFAULT_FLOAT_BITS)

    @property
    def fraction_bits(self) -> int:
        return self.bits or 0

    @property
    def size(self) -> int:
        """Values in the field."""
        return math.prod(self.shape)

    @property
    def words(self) -> int:
        """uint64 words per value: integers one, floats two (high and low part)."""
        return 1 if self.dtype == "int64" else 2


@dataclass(frozen=True)
class Layout:
    """The arrays of a contribution, identical at every node and at the coordinator: the fields
    in vector order and the most participants the range is reserved for. A node refuses a value
    whose encoding exceeds 2**63 / 2**ceil(log2(max_participants)), so that no sum of that many
    contributions wraps; set it to the job's number of participants for the widest range."""

    fields: tuple[Field, ...]
    max_participants: int = DEFAULT_MAX_PARTICIPANTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise AggregationError(f"a layout names a field twice: {names}")
        if not 1 <= self.max_participants <= _MAX_PARTICIPANTS:
            raise AggregationError(f"max_participants {self.max_participants} outside "
                                   f"1..{_MAX_PARTICIPANTS}")

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray], *, bits: Mapping[str, int] | None = None,
           max_participants: int = DEFAULT_MAX_PARTICIPANTS) -> Layout:
        """The layout of a dict of arrays (fields in name order: the same at every node whatever
        order the dict was built in); integer arrays become int64 fields, all others float64."""
        bits = bits or {}
        if unknown := sorted(set(bits) - set(arrays)):
            raise AggregationError(f"fraction bits for fields that are not there: {unknown}")
        fields = []
        for name in sorted(arrays):
            value = np.asarray(arrays[name])
            integer = value.dtype.kind in "iub"
            fields.append(Field(name, value.shape, "int64" if integer else "float64",
                                None if integer else bits.get(name)))
        return cls(tuple(fields), max_participants)

    @property
    def size(self) -> int:
        """Elements (uint64 words) of the encoded vector."""
        return sum(f.size * f.words for f in self.fields)

    @property
    def low_bits(self) -> int:
        """Bits of a float's low word: the sum of `max_participants` low words fits in 63."""
        return 63 - _headroom(self.max_participants)

    def limit(self, field: Field) -> float:
        """The magnitude a node's value of `field` must stay below."""
        top = 63 - _headroom(self.max_participants)
        if field.words == 2:
            top += self.low_bits
        return math.ldexp(1.0, top - field.fraction_bits)

    def to_json(self) -> str:
        return json.dumps({"maxParticipants": self.max_participants,
                           "fields": [{"name": f.name, "shape": list(f.shape), "dtype": f.dtype,
                                       "bits": f.fraction_bits} for f in self.fields]},
                          separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Layout:
        try:
            data = json.loads(text)
            return cls(tuple(Field(f["name"], tuple(f["shape"]), f["dtype"], f["bits"])
                             for f in data["fields"]), int(data["maxParticipants"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise AggregationError(f"not a layout: {exc}") from None


def fraction_bits(bound: float, *, max_participants: int = DEFAULT_MAX_PARTICIPANTS) -> int:
    """The most fraction bits a float field can have when every node's values stay below
    `bound` in magnitude (public: from the job, never from one node's data)."""
    if not (math.isfinite(bound) and bound > 0):
        raise AggregationError(f"bound {bound} is not a positive number")
    headroom = _headroom(max_participants)
    bits = 62 - headroom + (63 - headroom) - math.floor(math.log2(bound))
    if bits < 0:
        raise AggregationError(f"no fixed-point encoding carries values up to {bound:g} for "
                               f"{max_participants} participants")
    return min(bits, 960)


# -- fixed point ----------------------------------------------------------------------------------
def encode(arrays: Mapping[str, np.ndarray], layout: Layout) -> np.ndarray:
    """One node's statistics as a uint64 vector: each value times 2**bits, rounded to the
    nearest integer (two's complement). Refuses, naming the field, a value that is NaN, infinite
    or beyond the layout's range: a wrapped value would silently corrupt the sum."""
    missing = [f.name for f in layout.fields if f.name not in arrays]
    extra = sorted(set(arrays) - {f.name for f in layout.fields})
    if missing or extra:
        raise AggregationError(f"statistics do not fit the layout: missing {missing}, "
                               f"unexpected {extra}")
    out = np.empty(layout.size, dtype=np.uint64)
    offset = 0
    for field in layout.fields:
        value = np.asarray(arrays[field.name])
        if value.shape != field.shape:
            raise EncodingError(field.name, f"field {field.name!r}: shape {value.shape}, the "
                                            f"layout says {field.shape}")
        target = out[offset:offset + field.size * field.words]
        if field.dtype == "int64":
            target[:] = _encode_integers(field, value.reshape(-1), layout)
        else:
            high, low = _encode_floats(field, value.reshape(-1), layout)
            target[:field.size] = high
            target[field.size:] = low
        offset += field.size * field.words
    return out


def _refuse(field: Field, flat: np.ndarray, bad: np.ndarray, problem: str) -> EncodingError:
    first = int(np.flatnonzero(bad)[0])
    index = tuple(int(i) for i in np.unravel_index(first, field.shape)) if field.shape else ()
    return EncodingError(field.name, f"field {field.name!r}{list(index)}: {flat[first].item()!r} "
                                     f"{problem} ({int(bad.sum())} value(s))")


def _encode_integers(field: Field, flat: np.ndarray, layout: Layout) -> np.ndarray:
    if flat.dtype.kind not in "iub":
        raise EncodingError(field.name, f"field {field.name!r} is int64; got {flat.dtype}")
    if flat.dtype.kind == "u" and flat.size and int(flat.max()) > np.iinfo(np.int64).max:
        raise _refuse(field, flat, flat > np.iinfo(np.int64).max, "does not fit in int64")
    values = flat.astype(np.int64)
    limit = int(layout.limit(field))
    bad = (values >= limit) | (values <= -limit)
    if bad.any():
        raise _refuse(field, flat, bad, f"is beyond what the layout carries (|value| < 2**"
                                        f"{limit.bit_length() - 1} for up to "
                                        f"{layout.max_participants} participants)")
    return values.view(np.uint64)


def _encode_floats(field: Field, flat: np.ndarray,
                   layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    """(high, low) words of round(value * 2**bits): high the floor of it over 2**low_bits
    (two's complement), low the rest (0 <= low < 2**low_bits). Exact: scaling by a power of two
    is, and so is splitting an integer-valued float at a power of two."""
    if flat.dtype.kind not in "iubf":
        raise EncodingError(field.name, f"field {field.name!r} is float64; got {flat.dtype}")
    scaled: np.ndarray = np.multiply(flat, 2.0 ** field.fraction_bits, dtype=np.float64)
    np.rint(scaled, out=scaled)
    # One pass over |scaled| < limit also catches NaN and infinities (their comparisons are
    # false), which are then told apart for the message.
    low_bits = layout.low_bits
    limit = 2.0 ** (63 - _headroom(layout.max_participants) + low_bits)
    bad = ~(np.abs(scaled) < limit)
    if bad.any():
        finite = np.isfinite(flat)
        if not finite.all():
            raise _refuse(field, flat, ~finite, "is not a finite number")
        raise _refuse(field, flat, bad, f"is beyond what the layout carries (|value| < "
                                        f"{layout.limit(field):.6g} with {field.fraction_bits} "
                                        f"fraction bits for up to {layout.max_participants} "
                                        f"participants)")
    unit = 2.0 ** low_bits
    high = np.floor(scaled / unit)
    # Below 2**62 in magnitude the integer is held in int64 and split with bit operations;
    # above, `scaled` is a multiple of 2**10 or more, and the float difference is exact.
    small = np.abs(scaled) < 2.0 ** 62
    whole = np.where(small, scaled, 0.0).astype(np.int64)
    low = np.where(small, whole & np.int64((1 << low_bits) - 1),
                   (scaled - high * unit).astype(np.int64) if not small.all() else 0)
    high = np.where(small, whole >> low_bits, high.astype(np.int64))
    return high.astype(np.int64).view(np.uint64), np.asarray(low, dtype=np.int64).view(
        np.uint64)


def decode(total: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """The summed statistics from the sum of encoded (or masked) vectors: int64 for integer
    fields (exact), float64 for float fields (the high and low sums joined in extended
    precision, then scaled by 2**-bits: the exact sum, rounded once to float64)."""
    vector = _vector(total, layout.size)
    signed = vector.view(np.int64)
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    unit = np.longdouble(2.0) ** layout.low_bits
    for field in layout.fields:
        if field.dtype == "int64":
            value = signed[offset:offset + field.size].copy()
        else:
            high = signed[offset:offset + field.size].astype(np.longdouble)
            low = vector[offset + field.size:offset + 2 * field.size].astype(np.longdouble)
            value = ((high * unit + low) * np.longdouble(2.0) ** -field.fraction_bits).astype(
                np.float64)
        arrays[field.name] = value.reshape(field.shape)
        offset += field.size * field.words
    return arrays


def _vector(vector: np.ndarray, size: int | None = None,
            expected: str = "the layout has") -> np.ndarray:
    array = np.asarray(vector)
    if array.dtype != np.uint64 or array.ndim != 1:
        raise AggregationError(f"an encoded vector is one-dimensional uint64; got "
                               f"{array.dtype} with shape {array.shape}")
    if size is not None and array.size != size:
        raise AggregationError(f"an encoded vector of {array.size} elements; {expected} "
                               f"{size}")
    return array


def to_bytes(vector: np.ndarray) -> bytes:
    """The wire form of a (masked) vector: little-endian uint64."""
    return _vector(vector).astype("<u8", copy=False).tobytes()


def from_bytes(data: bytes, layout: Layout) -> np.ndarray:
    if len(data) != 8 * layout.size:
        raise AggregationError(f"a contribution of {len(data)} bytes; the layout needs "
                               f"{8 * layout.size}")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)


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
    if len(ordered) > _MAX_PARTICIPANTS:
        raise AggregationError(f"{len(ordered)} participants; at most {_MAX_PARTICIPANTS}")
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
    out = _vector(vector).copy()
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
    first = _vector(vectors[0])
    total = first.copy()
    for vector in vectors[1:]:
        np.add(total, _vector(vector, first.size, "the first has"), out=total)
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
        vector = _vector(masked).astype("<u8", copy=False)
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
