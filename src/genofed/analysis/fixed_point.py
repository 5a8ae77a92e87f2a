"""Fixed-point encoding of a node's statistics for secure aggregation (:mod:`.secure`): the
arrays of a contribution (a :class:`Layout`, the same at every node) as one vector of uint64
words whose sum modulo 2**64, over the nodes, decodes to the sum of their statistics.

An integer is one word (two's complement). A float is two: round(value * 2**bits) split into a
signed high word and an unsigned low word of `low_bits` bits, summed apart and joined after
decoding in extended precision, so sums keep float64's precision (a GWAS sum over individuals
that nearly cancels, as a rare variant's does, stays exact far beyond 1e-6 relative). A node
refuses, naming the field, a value that is not finite or too large for the layout's range:
a wrapped value would silently corrupt the sum.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np

from genofed.errors import AggregationError, EncodingError

#: Fraction bits of a float64 field unless its layout says otherwise. A float travels as two
#: words (a signed high and an unsigned low part of one fixed-point number, summed apart and
#: joined after decoding), so 48 fraction bits err by at most 2**-49 (1.8e-15) per node and
#: value while values up to ~1e20 still fit: sums keep float64's own precision wherever the
#: pooled statistic is not itself ~1e-15 (a GWAS sum over individuals that nearly cancels, a
#: rare variant's, must stay exact well beyond 1e-6 relative).
DEFAULT_FLOAT_BITS = 48
#: How many nodes a layout's range is reserved for, unless it says otherwise (see :class:`Layout`).
DEFAULTMAX_PARTICIPANTS = 32
MAX_PARTICIPANTS = 1024

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
    max_participants: int = DEFAULTMAX_PARTICIPANTS

    def __post_init__(self) -> None:
        object.__setattr__(self, "fields", tuple(self.fields))
        names = [f.name for f in self.fields]
        if len(set(names)) != len(names):
            raise AggregationError(f"a layout names a field twice: {names}")
        if not 1 <= self.max_participants <= MAX_PARTICIPANTS:
            raise AggregationError(f"max_participants {self.max_participants} outside "
                                   f"1..{MAX_PARTICIPANTS}")

    @classmethod
    def of(cls, arrays: Mapping[str, np.ndarray], *, bits: Mapping[str, int] | None = None,
           max_participants: int = DEFAULTMAX_PARTICIPANTS) -> Layout:
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


def fraction_bits(bound: float, *, max_participants: int = DEFAULTMAX_PARTICIPANTS) -> int:
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
    vector = vector_of(total, layout.size)
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


def vector_of(vector: np.ndarray, size: int | None = None,
              expected: str = "the layout has") -> np.ndarray:
    """`vector` checked to be an encoded (or masked) vector: one-dimensional uint64."""
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
    return vector_of(vector).astype("<u8", copy=False).tobytes()


def from_bytes(data: bytes, layout: Layout) -> np.ndarray:
    if len(data) != 8 * layout.size:
        raise AggregationError(f"a contribution of {len(data)} bytes; the layout needs "
                               f"{8 * layout.size}")
    return np.frombuffer(data, dtype="<u8").astype(np.uint64)
