"""What the coordinator and a node say to each other in one round of a job, on the wire.

A message is a JSON header and named numpy arrays, in one body::

    4 bytes: header length (big-endian) | header (JSON, UTF-8) | arrays (.npz, no pickles)

The coordinator POSTs a :class:`RoundRequest` to `/federation/analysis` of every participant,
signed as a peer (RFC 9421; the body is covered by its Content-Digest); the node answers with a
:class:`RoundReply`. Arrays the coordinator sends (current coefficients, a PCA basis, the job's
variant order) are the same for every participant; what a node sends back is masked
(:mod:`genofed.analysis.secure`) except what the round's kind publishes on purpose (tokens of
the variants it holds, the size of its cohort).
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric import ec

from genofed.analysis.secure import RoundContext, sign_contribution, verify_contribution
from genofed.errors import ContributionRefused, FederationError

#: The node endpoint (peer-only: the peer-signature middleware refuses unsigned requests).
ENDPOINT = "/federation/analysis"
MEDIA_TYPE = "application/vnd.genofed.analysis+npz"
#: Largest message either side accepts.
MAX_MESSAGE = 512 << 20
_LENGTH = struct.Struct(">I")


class RoundKind(StrEnum):
    #: Authorise, select the cohort, check disclosure rules; the leader seals the job key.
    SETUP = "setup"
    #: Each node's variant tokens (the job key opened), for the job's variant order.
    VARIANTS = "variants"
    #: Masked statistics for the analysis step named in the header's `step`.
    STATISTICS = "statistics"
    #: The variant keys behind tokens the pooled result releases.
    REVEAL = "reveal"
    #: The job is over: drop its state (PCA scores stay, for later GWAS covariates).
    FINISH = "finish"


class ProtocolError(FederationError):
    """A message that does not follow this protocol."""


def pack(header: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> bytes:
    encoded = json.dumps(header, separators=(",", ":")).encode()
    buffer = io.BytesIO()
    savez: Any = np.savez  # its stubs take **arrays as if they could be its own keywords
    savez(buffer, **(arrays or {}))
    return _LENGTH.pack(len(encoded)) + encoded + buffer.getvalue()


def unpack(body: bytes) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if len(body) > MAX_MESSAGE:
        raise ProtocolError(f"message of {len(body)} bytes; at most {MAX_MESSAGE}")
    if len(body) < _LENGTH.size:
        raise ProtocolError("message too short")
    (length,) = _LENGTH.unpack_from(body)
    try:
        header = json.loads(body[_LENGTH.size:_LENGTH.size + length])
        with np.load(io.BytesIO(body[_LENGTH.size + length:]), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"malformed message: {exc}") from None
    if not isinstance(header, dict):
        raise ProtocolError("the message header is not a JSON object")
    return header, arrays


@dataclass
class RoundRequest:
    job: str
    kind: RoundKind
    #: Node ids taking part in this attempt, sorted (masks are derived from the list).
    participants: list[str]
    #: Counts the attempts of the job's data rounds: a round redone without a node that dropped
    #: out is a new attempt, with fresh masks.
    attempt: int
    #: For STATISTICS rounds: the analysis step (e.g. "counts", "iterate") and its number.
    step: str = ""
    number: int = 0
    #: SETUP only: the job spec (JSON text) and the submitting researcher's pseudonym.
    spec: str = ""
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def context(self) -> RoundContext:
        """What this round's masks and its answers' signatures are bound to (the masks also
        to the participant list)."""
        return RoundContext(self.job, f"{self.kind}/{self.step}/{self.number}/"
                                      f"{','.join(self.participants)}", self.attempt)

    def digest(self) -> str:
        """SHA-256 over everything the request asks (header and arrays): two requests of one
        round with the same digest ask the same."""
        digest = hashlib.sha256(json.dumps(
            {"job": self.job, "kind": self.kind.value, "participants": self.participants,
             "attempt": self.attempt, "step": self.step, "number": self.number,
             "spec": self.spec, "extra": self.extra}, sort_keys=True).encode())
        for name in sorted(self.arrays):
            array = np.ascontiguousarray(self.arrays[name])
            digest.update(f"{name}:{array.dtype.str}:{array.shape}".encode())
            digest.update(array.tobytes())
        return digest.hexdigest()

    def to_bytes(self) -> bytes:
        return pack({"job": self.job, "kind": self.kind.value,
                     "participants": self.participants, "attempt": self.attempt,
                     "step": self.step, "number": self.number, "spec": self.spec,
                     "extra": self.extra}, self.arrays)

    @classmethod
    def from_bytes(cls, body: bytes) -> RoundRequest:
        header, arrays = unpack(body)
        try:
            return cls(job=str(header["job"]), kind=RoundKind(header["kind"]),
                       participants=[str(p) for p in header["participants"]],
                       attempt=int(header["attempt"]), step=str(header.get("step", "")),
                       number=int(header.get("number", 0)), spec=str(header.get("spec", "")),
                       arrays=arrays, extra=dict(header.get("extra") or {}))
        except (KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(f"not a round request: {exc}") from None


@dataclass
class RoundReply:
    node: str
    #: "ok", or "refused" with `message` saying why (the node contributes nothing).
    status: str
    message: str = ""
    #: Public information of the round (cohort size, populations, tokens...).
    public: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    #: STATISTICS rounds: the contribution's layout (names, shapes, fixed-point bits; JSON).
    layout: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_bytes(self) -> bytes:
        return pack({"node": self.node, "status": self.status, "message": self.message,
                     "public": self.public, "layout": self.layout}, self.arrays)

    @classmethod
    def from_bytes(cls, body: bytes) -> RoundReply:
        header, arrays = unpack(body)
        try:
            return cls(node=str(header["node"]), status=str(header["status"]),
                       message=str(header.get("message", "")),
                       public=dict(header.get("public") or {}), arrays=arrays,
                       layout=str(header.get("layout") or ""))
        except (KeyError, ValueError, TypeError) as exc:
            raise ProtocolError(f"not a round reply: {exc}") from None


# -- signed answers -------------------------------------------------------------------------------
#: A node's answer on the wire: its ES256 signature (64 bytes) over the round's context and the
#: packed reply, then the packed reply. The coordinator reads nothing a node did not sign, so a
#: contribution, token list or reveal altered in transit is refused, not used.
SIGNATURE_BYTES = 64


def sign_reply(reply: RoundReply, request: RoundRequest,
               signing_key: ec.EllipticCurvePrivateKey) -> bytes:
    body = reply.to_bytes()
    return sign_contribution(body, request.context, signing_key) + body


def open_reply(data: bytes, request: RoundRequest, node_id: str,
               public_key: ec.EllipticCurvePublicKey) -> RoundReply:
    """The reply of `node_id` to `request`, once its signature verifies (ProtocolError if it
    does not, or is not a reply from that node)."""
    if len(data) < SIGNATURE_BYTES:
        raise ProtocolError("answer too short to carry a signature")
    signature, body = data[:SIGNATURE_BYTES], data[SIGNATURE_BYTES:]
    try:
        verify_contribution(body, request.context, signature, public_key, node_id=node_id)
    except ContributionRefused:
        raise ProtocolError(f"{node_id}'s answer does not match its signature (altered in "
                            "transit, or not this node's)") from None
    reply = RoundReply.from_bytes(body)
    if reply.node != node_id:
        raise ProtocolError(f"answered as {reply.node!r}")
    return reply
