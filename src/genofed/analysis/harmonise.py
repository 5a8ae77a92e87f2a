"""Matching variants across nodes without a node showing the coordinator which variants it holds.

A job's variants are keyed by (contig, pos, ref, alt): the contig named as
:func:`~genofed.store.sites.normalize_contig` names it ('chr20' and '20' match), multi-allelic
records split into biallelic rows as the sites table already stores them. The coordinator never
sees a key: every node sends a keyed hash of each of its keys (a *token*: HMAC-SHA256 under a
per-job key K, truncated to 16 bytes), the coordinator takes the sorted union of the tokens as
the job's variant order (:func:`union`), and each node finds its own rows in it
(:func:`positions`). K is drawn by one participant, the leader (the first in id order), and
sealed for each other participant with their pairwise X25519 secret (:func:`seal_job_key`), so
the coordinator relays it without being able to read it, nor to hash candidate variants and
compare. After the pooled result is known, only the variants to be released are revealed: each
node maps the requested tokens back to its keys (:func:`reveal`), and the coordinator checks
that the nodes agree (:func:`agree`).

What the coordinator still learns: how many variants each node holds and which tokens nodes
share; the participants, who hold K, can test candidate variants against the union's tokens,
so the union (not who holds what) is known to every participant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import x25519
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from genofed.analysis.secure import agreement_secret
from genofed.errors import AggregationError
from genofed.store.dataset import Dataset
from genofed.store.sites import normalize_contig

#: (contig, pos, ref, alt), the contig normalised, pos 1-based as in VCF.
VariantKey = tuple[str, int, str, str]
TOKEN_BYTES = 16
#: Tokens as numpy holds them (fixed width; on the wire: `array.tobytes()`).
TOKEN_DTYPE = np.dtype(f"S{TOKEN_BYTES}")
JOB_KEY_BYTES = 32
_SEAL = "genofed/harmonise/job-key/v1"
_NONCE = 12


# -- variant keys --------------------------------------------------------------------------------
def variant_key(contig: str, pos: int, ref: str, alt: str) -> VariantKey:
    """The key two nodes compare: the contig normalised, plain-base alleles upper case (VCF
    bases are case-insensitive; symbolic alleles and breakends are kept as written)."""
    return _Normaliser()(contig, pos, ref, alt)


class _Normaliser:
    """:func:`variant_key` for many keys: each contig name normalised once."""

    def __init__(self) -> None:
        self._contigs: dict[str, str] = {}

    def __call__(self, contig: str, pos: int, ref: str, alt: str) -> VariantKey:
        name = self._contigs.get(contig)
        if name is None:
            if not contig or "\t" in contig or "\n" in contig:
                raise AggregationError(f"contig {contig!r}: empty, or holds a tab or newline")
            name = self._contigs[contig] = normalize_contig(contig)
        if pos < 1:
            raise AggregationError(f"{contig}:{pos}: positions are 1-based")
        return name, int(pos), _allele(ref), _allele(alt)


def _allele(allele: str) -> str:
    upper = allele.upper()
    if not upper.strip("ACGTN"):  # plain bases (or empty, refused below)
        if not upper:
            raise AggregationError("an empty allele")
        return upper
    if "\t" in allele or "\n" in allele:
        raise AggregationError(f"allele {allele!r} holds a tab or newline")
    return allele


def site_keys(dataset: Dataset) -> tuple[list[VariantKey], np.ndarray]:
    """A dataset's variant keys and the sites-table row of each: one per biallelic row, rows
    without an ALT allele left out, and a key that repeats (duplicate VCF records) kept once, at
    its first row."""
    names = [normalize_contig(n) for n in dataset.site_contigs]
    codes = dataset.site_column("contig")
    pos = dataset.site_column("pos")
    # Decoded whole for the job's duration (one pass over every row), then let go.
    refs = dataset.site_strings("ref")[:]
    alts = dataset.site_strings("alt")[:]
    keys: list[VariantKey] = []
    rows: list[int] = []
    seen: set[VariantKey] = set()
    normalise = _Normaliser()
    for row in range(len(pos)):
        if alts[row] == ".":
            continue
        key = normalise(names[codes[row]], int(pos[row]), refs[row], alts[row])
        if key not in seen:
            seen.add(key)
            keys.append(key)
            rows.append(row)
    return keys, np.asarray(rows, dtype=np.int64)


# -- the job key ---------------------------------------------------------------------------------
def leader(participants: Iterable[str]) -> str:
    """The participant who draws the job key: the first in id order."""
    ordered = sorted(participants)
    if not ordered:
        raise AggregationError("a job without participants has no leader")
    return ordered[0]


def new_job_key() -> bytes:
    return os.urandom(JOB_KEY_BYTES)


def _seal_key(secret: bytes, job_id: str, leader_id: str, recipient: str) -> bytes:
    info = json.dumps({"purpose": _SEAL, "job": job_id, "leader": leader_id,
                       "recipient": recipient}, sort_keys=True, separators=(",", ":")).encode()
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(secret)


def seal_job_key(job_key: bytes, *, job_id: str, leader_id: str,
                 private_key: x25519.X25519PrivateKey,
                 public_keys: Mapping[str, x25519.X25519PublicKey]) -> dict[str, bytes]:
    """K sealed for every participant in `public_keys` but the leader: ChaCha20-Poly1305 under
    a key derived (HKDF-SHA256) from the leader's X25519 secret with that participant, the job
    id as associated data. Each sealed key is nonce (12 bytes) || ciphertext and tag."""
    if len(job_key) != JOB_KEY_BYTES:
        raise AggregationError(f"a job key has {JOB_KEY_BYTES} bytes, not {len(job_key)}")
    sealed: dict[str, bytes] = {}
    for recipient, public in sorted(public_keys.items()):
        if recipient == leader_id:
            continue
        key = _seal_key(agreement_secret(private_key, recipient, public), job_id, leader_id,
                        recipient)
        # A random nonce: the leader may seal again for the same job (a restart) under the
        # same derived key, and a repeated nonce would reveal both plaintexts' difference.
        nonce = os.urandom(_NONCE)
        sealed[recipient] = nonce + ChaCha20Poly1305(key).encrypt(nonce, job_key,
                                                                  job_id.encode())
    return sealed


def open_job_key(sealed: bytes, *, job_id: str, node_id: str, leader_id: str,
                 private_key: x25519.X25519PrivateKey,
                 leader_public_key: x25519.X25519PublicKey) -> bytes:
    """K from the leader's sealed copy for this node; refuses a copy sealed for another node or
    job, or altered on the way."""
    if len(sealed) != _NONCE + JOB_KEY_BYTES + 16:
        raise AggregationError(f"a sealed job key of {len(sealed)} bytes; expected "
                               f"{_NONCE + JOB_KEY_BYTES + 16}")
    key = _seal_key(agreement_secret(private_key, leader_id, leader_public_key), job_id,
                    leader_id, node_id)
    try:
        return ChaCha20Poly1305(key).decrypt(sealed[:_NONCE], sealed[_NONCE:], job_id.encode())
    except InvalidTag:
        raise AggregationError(f"the job key for {node_id} in job {job_id} does not open: "
                               f"not sealed by {leader_id} for this node and job, or altered "
                               "in transit") from None


# -- tokens --------------------------------------------------------------------------------------
def tokens(job_key: bytes, assembly: str, keys: Sequence[VariantKey]) -> np.ndarray:
    """Each key's token: HMAC-SHA256 under K of assembly, contig, pos, ref and alt (tab
    separated, keys normalised first), truncated to 16 bytes."""
    if len(job_key) != JOB_KEY_BYTES:
        raise AggregationError(f"a job key has {JOB_KEY_BYTES} bytes, not {len(job_key)}")
    if not assembly or "\t" in assembly:
        raise AggregationError(f"assembly {assembly!r} is not a name")
    normalise = _Normaliser()
    keyed = hmac.new(job_key, digestmod=hashlib.sha256)  # copied per key: K is padded once
    out = bytearray(TOKEN_BYTES * len(keys))
    for i, key in enumerate(keys):
        contig, pos, ref, alt = normalise(*key)
        mac = keyed.copy()
        mac.update(f"{assembly}\t{contig}\t{pos}\t{ref}\t{alt}".encode())
        out[TOKEN_BYTES * i:TOKEN_BYTES * (i + 1)] = mac.digest()[:TOKEN_BYTES]
    return np.frombuffer(bytes(out), dtype=TOKEN_DTYPE)


def tokens_from_bytes(data: bytes) -> np.ndarray:
    if len(data) % TOKEN_BYTES:
        raise AggregationError(f"{len(data)} bytes are not whole {TOKEN_BYTES}-byte tokens")
    return np.frombuffer(data, dtype=TOKEN_DTYPE)


def _check(array: np.ndarray) -> np.ndarray:
    array = np.ascontiguousarray(array)
    if array.dtype != TOKEN_DTYPE or array.ndim != 1:
        raise AggregationError(f"tokens are a one-dimensional {TOKEN_DTYPE} array; got "
                               f"{array.dtype} with shape {array.shape}")
    return array


def _halves(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each token as two native uint64 (first and last 8 bytes, big-endian): comparing the pair
    orders tokens as bytes do, and sorts an order of magnitude faster than 16-byte strings."""
    words = array.view(">u8").reshape(-1, 2).astype(np.uint64)
    return words[:, 0].copy(), words[:, 1].copy()


def _order(high: np.ndarray, low: np.ndarray) -> tuple[np.ndarray, bool]:
    """A permutation sorting tokens bytewise, and whether two distinct tokens share their first
    8 bytes (about one job in 10**7 at 10**6 tokens; sorted by both halves then)."""
    order = np.argsort(high)
    sorted_high, sorted_low = high[order], low[order]
    tie = (sorted_high[1:] == sorted_high[:-1]) & (sorted_low[1:] != sorted_low[:-1])
    if tie.any():
        return np.lexsort((low, high)), True
    return order, False


def union(token_arrays: Sequence[np.ndarray]) -> np.ndarray:
    """The sorted distinct tokens of all nodes: the job's variant order."""
    joined: np.ndarray = np.concatenate([_check(a) for a in token_arrays]) if token_arrays else \
        np.empty(0, dtype=TOKEN_DTYPE)
    if not joined.size:
        return joined
    high, low = _halves(joined)
    order, _ = _order(high, low)
    high, low = high[order], low[order]
    first = np.ones(order.size, dtype=bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    distinct: np.ndarray = joined[order[first]]
    return distinct


def positions(union_tokens: np.ndarray, own_tokens: np.ndarray) -> np.ndarray:
    """For each token of the union, its index in this node's list (int64), -1 where the node
    lacks it. A node's tokens are distinct (its keys are)."""
    wanted, own = _check(union_tokens), _check(own_tokens)
    out = np.full(wanted.size, -1, dtype=np.int64)
    if not own.size or not wanted.size:
        return out
    high, low = _halves(own)
    order, tied = _order(high, low)
    high, low = high[order], low[order]
    if ((high[1:] == high[:-1]) & (low[1:] == low[:-1])).any():
        raise AggregationError("a node's token list repeats a token")
    if tied:  # shared first halves: search the 16-byte strings (their order is the same)
        index = np.minimum(np.searchsorted(own[order], wanted), own.size - 1)
        hit = own[order][index] == wanted
    else:
        want_high, want_low = _halves(wanted)
        index = np.minimum(np.searchsorted(high, want_high), own.size - 1)
        hit = (high[index] == want_high) & (low[index] == want_low)
    out[hit] = order[index[hit]]
    return out


# -- revealing -----------------------------------------------------------------------------------
def reveal(tokens_requested: np.ndarray, own_tokens: np.ndarray,
           own_keys: Sequence[VariantKey]) -> list[VariantKey | None]:
    """This node's key (normalised) for each requested token, None where it lacks it: a node
    reveals only what the coordinator asks for, once the pooled result says it is released."""
    own = _check(own_tokens)
    if own.size != len(own_keys):
        raise AggregationError(f"{own.size} tokens for {len(own_keys)} keys")
    found = positions(tokens_requested, own)
    normalise = _Normaliser()
    return [normalise(*own_keys[i]) if i >= 0 else None for i in found.tolist()]


def agree(revealed: Mapping[str, Sequence[VariantKey | None]], *,
          held: Mapping[str, np.ndarray] | None = None) -> list[VariantKey]:
    """The key of each requested token once the revealing nodes agree: every node that
    revealed a token gave the same key, and (given `held`: per node, whether its token list had
    each requested token) a node revealed exactly the tokens it holds."""
    if not revealed:
        raise AggregationError("no node revealed anything")
    counts = {len(keys) for keys in revealed.values()}
    if len(counts) != 1:
        raise AggregationError(f"nodes revealed different numbers of keys: {sorted(counts)}")
    agreed: list[VariantKey] = []
    normalise = _Normaliser()
    for i in range(counts.pop()):
        given: dict[str, VariantKey | None] = {}
        for node, keys in revealed.items():
            key = keys[i]
            given[node] = None if key is None else normalise(*key)
        if held is not None:
            wrong = sorted(node for node, key in given.items()
                           if node in held and bool(held[node][i]) != (key is not None))
            if wrong:
                raise AggregationError(f"requested token {i}: {', '.join(wrong)} revealed "
                                       "other than the token list they sent says they hold")
        distinct = {key for key in given.values() if key is not None}
        if len(distinct) != 1:
            detail = ", ".join(f"{node}: {key}" for node, key in sorted(given.items()))
            raise AggregationError(f"requested token {i}: " + (
                "no node revealed it" if not distinct else f"nodes disagree ({detail})"))
        agreed.append(distinct.pop())
    return agreed
