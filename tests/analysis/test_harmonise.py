"""Variant matching by tokens: the job key opens only for the participant it was sealed for,
tokens match across nodes exactly when keys (and assembly) do, the union and each node's
positions in it are right (keys one node alone holds included), and revealing checks that the
nodes agree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import x25519

from genofed.analysis.harmonise import (
    TOKEN_DTYPE,
    VariantKey,
    agree,
    leader,
    new_job_key,
    open_job_key,
    positions,
    reveal,
    seal_job_key,
    site_keys,
    tokens,
    tokens_from_bytes,
    union,
    variant_key,
)
from genofed.errors import AggregationError
from genofed.store import NodeStore
from tests.support import Cohort

NODES = ("fi", "nl", "se")
JOB = "job-7"


def _keys() -> dict[str, x25519.X25519PrivateKey]:
    return {i: x25519.X25519PrivateKey.from_private_bytes(hashlib.sha256(i.encode()).digest())
            for i in (*NODES, "coordinator")}


def _variants(positions_: range, contig: str = "chr20") -> list[VariantKey]:
    return [(contig, p, "A", "G") for p in positions_]


def test_the_job_key_opens_only_for_the_participant_it_was_sealed_for() -> None:
    keys = _keys()
    public = {i: k.public_key() for i, k in keys.items() if i != "coordinator"}
    first = leader(reversed(NODES))
    assert first == "fi"
    job_key = new_job_key()
    sealed = seal_job_key(job_key, job_id=JOB, leader_id=first, private_key=keys[first],
                          public_keys=public)
    assert sorted(sealed) == ["nl", "se"] and job_key not in sealed["nl"]

    def opened(blob: bytes, node: str, job: str = JOB, by: str = first) -> bytes:
        return open_job_key(blob, job_id=job, node_id=node, leader_id=by,
                            private_key=keys[node], leader_public_key=keys[by].public_key())

    assert opened(sealed["nl"], "nl") == job_key == opened(sealed["se"], "se")
    tampered = bytearray(sealed["nl"])
    tampered[20] ^= 0x01
    refused = [(sealed["nl"], "se", JOB, first),  # se opening nl's copy
               (sealed["nl"], "coordinator", JOB, first),  # the relay itself
               (bytes(tampered), "nl", JOB, first),
               (sealed["nl"], "nl", "job-8", first),  # relayed into another job
               (sealed["nl"], "nl", JOB, "se")]  # claimed to come from another leader
    for blob, node, job, by in refused:
        with pytest.raises(AggregationError, match="does not open"):
            opened(blob, node, job, by)
    with pytest.raises(AggregationError, match="bytes"):
        opened(sealed["nl"][:-1], "nl")
    again = seal_job_key(job_key, job_id=JOB, leader_id=first, private_key=keys[first],
                         public_keys=public)
    assert again["nl"] != sealed["nl"]  # fresh nonces: sealing twice repeats nothing


def test_tokens_match_exactly_when_keys_and_assembly_do() -> None:
    job_key = new_job_key()
    at_fi = tokens(job_key, "GRCh38", [("chr20", 100, "A", "G"), ("chrM", 7, "ac", "<DEL>")])
    at_nl = tokens(job_key, "GRCh38", [("20", 100, "a", "g"), ("MT", 7, "AC", "<DEL>")])
    assert at_fi.dtype == TOKEN_DTYPE and at_fi.tobytes() == at_nl.tobytes()
    assert variant_key("chrx", 5, "acgtn", "<ins:me>") == ("X", 5, "ACGTN", "<ins:me>")
    different = [tokens(job_key, "GRCh37", [("chr20", 100, "A", "G")]),
                 tokens(new_job_key(), "GRCh38", [("chr20", 100, "A", "G")]),
                 tokens(job_key, "GRCh38", [("chr20", 100, "A", "T")]),
                 tokens(job_key, "GRCh38", [("chr20", 101, "A", "G")]),
                 tokens(job_key, "GRCh38", [("chr21", 100, "A", "G")])]
    assert len({t.tobytes() for t in different} | {at_fi[:1].tobytes()}) == 6
    assert tokens_from_bytes(at_fi.tobytes()).tobytes() == at_fi.tobytes()
    for bad in [("chr20", 0, "A", "G"), ("chr20", 1, "", "G"), ("chr\t20", 1, "A", "G")]:
        with pytest.raises(AggregationError):
            tokens(job_key, "GRCh38", [bad])
    with pytest.raises(AggregationError):
        tokens(b"short", "GRCh38", [])


def test_union_and_positions_include_variants_only_one_node_holds() -> None:
    job_key = new_job_key()
    held = {"fi": _variants(range(1, 6)),  # 1..5
            "nl": _variants(range(8, 2, -1), contig="20"),  # 8..3, in another order
            "se": [*_variants(range(5, 6)), ("chr20", 9, "C", "T"), ("chr21", 1, "A", "G")]}
    own = {node: tokens(job_key, "GRCh38", keys) for node, keys in held.items()}
    joined = union(list(own.values()))
    assert joined.size == 10 and list(joined) == sorted(joined)
    names = {t.tobytes(): variant_key(*k) for node in held
             for t, k in zip(own[node].reshape(-1, 1), held[node], strict=True)}
    expected_keys = {variant_key(*k) for keys in held.values() for k in keys}
    assert {names[t.tobytes()] for t in joined.reshape(-1, 1)} == expected_keys
    for node, keys in held.items():
        found = positions(joined, own[node])
        assert found.dtype == np.int64 and (found >= 0).sum() == len(keys)
        for t, index in zip(joined.reshape(-1, 1), found, strict=True):
            key = names[t.tobytes()]
            holds = any(variant_key(*k) == key for k in keys)
            assert (index >= 0) == holds
            if holds:
                assert variant_key(*keys[index]) == key
    only_se = [names[t.tobytes()] for t, *found in zip(
        joined.reshape(-1, 1), *(positions(joined, own[n]) for n in NODES), strict=True)
        if found[2] >= 0 and found[0] < 0 and found[1] < 0]
    assert sorted(only_se) == [("20", 9, "C", "T"), ("21", 1, "A", "G")]
    with pytest.raises(AggregationError, match="repeats"):
        positions(joined, np.concatenate([own["fi"], own["fi"][:1]]))


def test_union_and_positions_agree_with_a_dictionary_on_awkward_tokens() -> None:
    """Random tokens (some ending in zero bytes, which numpy's bytes scalars would drop) and
    tokens that share their first 8 bytes (the sort's slow path), against plain Python."""
    rng = np.random.default_rng(11)
    pool = np.frombuffer(rng.bytes(16 * 5000), dtype=TOKEN_DTYPE).copy()
    raw = pool.view(np.uint8).reshape(-1, 16)
    raw[:300, 12:] = 0  # trailing zero bytes
    raw[300:400, :8] = raw[300, :8]  # a shared first half
    for shared_half in (False, True):
        picks = [rng.choice(400 if shared_half else 5000, size=n, replace=False)
                 for n in (250, 300, 120)]
        arrays = [pool[p] for p in picks]
        joined = union(arrays)
        as_bytes = [t.tobytes() for t in joined.reshape(-1, 1)]
        assert as_bytes == sorted({pool[i:i + 1].tobytes() for p in picks for i in p})
        for array in arrays:
            index = {array[i:i + 1].tobytes(): i for i in range(array.size)}
            assert positions(joined, array).tolist() == [index.get(b, -1) for b in as_bytes]


def test_revealing_maps_requested_tokens_back_and_checks_that_nodes_agree() -> None:
    job_key = new_job_key()
    held = {"fi": _variants(range(1, 6)), "nl": _variants(range(3, 9), contig="20")}
    own = {node: tokens(job_key, "GRCh38", keys) for node, keys in held.items()}
    # To release: one variant only fi holds, one both hold, one only nl holds.
    released = [("chr20", 1, "A", "G"), ("chr20", 4, "A", "G"), ("chr20", 8, "A", "G")]
    requested = union([tokens(job_key, "GRCh38", released)])
    revealed = {node: reveal(requested, own[node], held[node]) for node in held}
    claimed = {node: positions(requested, own[node]) >= 0 for node in held}
    keys = agree(revealed, held=claimed)
    assert sorted(keys) == [variant_key(*k) for k in released]
    assert tokens(job_key, "GRCh38", keys).tobytes() == requested.tobytes()
    for node in held:
        assert [k is not None for k in revealed[node]] == claimed[node].tolist()
    assert sum(claimed["fi"] & claimed["nl"]) == 1

    shared = int(np.flatnonzero(claimed["fi"] & claimed["nl"])[0])
    lying = {**revealed, "nl": list(revealed["nl"])}
    lying["nl"][shared] = ("20", 999, "A", "G")
    with pytest.raises(AggregationError, match="disagree"):
        agree(lying)
    hiding = {**revealed, "nl": list(revealed["nl"])}
    hiding["nl"][shared] = None
    agree(hiding)  # the other node's key stands ...
    with pytest.raises(AggregationError, match="nl revealed other than"):
        agree(hiding, held=claimed)  # ... unless nl's token list says it holds the variant
    with pytest.raises(AggregationError, match="no node revealed it"):
        agree({"fi": [None], "nl": [None]})
    with pytest.raises(AggregationError):
        reveal(requested, own["fi"], held["fi"][:-1])


def test_site_keys_of_a_dataset_are_its_biallelic_rows(ingested: Path, cohort: Cohort) -> None:
    dataset = NodeStore.open(ingested).dataset(cohort.dataset_id)
    keys, rows = site_keys(dataset)
    assert len(keys) == rows.size > 100 and len(set(keys)) == len(keys)
    alts = dataset.site_strings("alt")
    assert (alts[rows] != ".").all()
    assert [k[1] for k in keys] == dataset.site_column("pos")[rows].tolist()
    assert {k[0] for k in keys} == {"20"}  # 'chr20' in the VCF
    assert [k[3] for k in keys] == alts[rows].tolist()
