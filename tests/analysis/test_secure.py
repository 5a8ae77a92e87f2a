"""Secure aggregation: masked contributions sum to the plain sum exactly, while what the
coordinator receives (alone, or together with one colluding node) is indistinguishable from
uniform noise; the fixed-point encoding refuses what it cannot carry; altered contributions are
refused.

Keys for the statistical tests are X25519 keys made from fixed seeds, so that every test is
deterministic: a uniformity check that passes once passes every time.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, x25519

from genofed.analysis.fixed_point import (
    Field,
    Layout,
    decode,
    encode,
    fraction_bits,
    from_bytes,
    to_bytes,
)
from genofed.analysis.secure import (
    RoundContext,
    aggregate,
    load_agreement_key,
    mask,
    pair_mask,
    sign_contribution,
    verify_contribution,
)
from genofed.config.node import init_node
from genofed.errors import AggregationError, ContributionRefused, EncodingError
from genofed.federation.network import member_for_node
from genofed.federation.signatures import load_signing_key

NODES = ("fi", "nl", "se")  # id order: fi < nl < se
CONTEXT = RoundContext("job-1", "score", 0)
#: Elements of the vectors the uniformity checks read (8 MiB).
LARGE = 1 << 20


def _seeded_keys(ids: tuple[str, ...] = NODES) -> dict[str, x25519.X25519PrivateKey]:
    return {i: x25519.X25519PrivateKey.from_private_bytes(hashlib.sha256(i.encode()).digest())
            for i in ids}


def _public(keys: dict[str, x25519.X25519PrivateKey]) -> dict[str, x25519.X25519PublicKey]:
    return {i: k.public_key() for i, k in keys.items()}


def _mask_all(encoded: dict[str, np.ndarray], keys: dict[str, x25519.X25519PrivateKey],
              context: RoundContext = CONTEXT) -> dict[str, np.ndarray]:
    public = _public(keys)
    return {node: mask(vector, node_id=node, participants=list(encoded), private_key=keys[node],
                       public_keys=public, context=context)
            for node, vector in encoded.items()}


def _chi2_critical(df: int, z: float = 4.75) -> float:
    """The chi-square value exceeded with probability about 1e-6 (Wilson-Hilferty)."""
    c = 2 / (9 * df)
    return df * (1 - c + z * math.sqrt(c)) ** 3


def _departures(vector: np.ndarray) -> list[str]:
    """How a uint64 vector departs from uniform: byte frequencies (chi-square, 255 degrees of
    freedom), the frequency of ones at each of the 64 bit positions, and the mean and variance
    of the values against those of the uniform distribution on [0, 2**64). Each check fails
    with probability about 1e-6 for a truly uniform vector."""
    found = []
    counts = np.bincount(vector.view(np.uint8), minlength=256)
    expected = vector.size * 8 / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    if chi2 > _chi2_critical(255):
        found.append(f"byte chi-square {chi2:.0f} > {_chi2_critical(255):.0f}")
    sample = vector[: 1 << 18]
    ones = np.unpackbits(sample.view(np.uint8)).reshape(-1, 64).mean(axis=0)
    if np.abs(ones - 0.5).max() > 6 * 0.5 / math.sqrt(sample.size):
        found.append(f"bit frequencies {ones.min():.4f}..{ones.max():.4f}")
    unit = vector.astype(np.float64) / 2.0 ** 64
    if abs(unit.mean() - 0.5) > 6 * math.sqrt(1 / 12 / unit.size):
        found.append(f"mean {unit.mean():.5f}")
    if abs(unit.var() - 1 / 12) > 6 * math.sqrt((1 / 80 - 1 / 144) / unit.size):
        found.append(f"variance {unit.var():.5f}")
    return found


def _zeros_layout(size: int = LARGE) -> Layout:
    return Layout((Field("counts", (size,), "int64"),), max_participants=3)


# -- exact sums -----------------------------------------------------------------------------------
def test_masked_contributions_of_three_nodes_sum_to_the_plain_sum_exactly() -> None:
    rng = np.random.default_rng(7)
    layout = Layout((Field("xtx", (40, 3)), Field("n", (40,), "int64"),
                     Field("dyadic", (6,))), max_participants=3)
    stats = {node: {"xtx": rng.normal(size=(40, 3)) * rng.choice([1e-3, 1, 1e4, 1e10],
                                                                     size=(40, 3)),
                    "n": rng.integers(-2**58, 2**58, size=40),
                    "dyadic": np.array([-0.5, 1.25, -3e9, 2.0**-20, 2.0**38, -2.0**38])}
             for node in NODES}
    keys = {node: x25519.X25519PrivateKey.generate() for node in NODES}
    encoded = {node: encode(stats[node], layout) for node in NODES}
    masked = _mask_all(encoded, keys)
    assert all(not np.array_equal(masked[n], encoded[n]) for n in NODES)

    total = decode(aggregate(list(masked.values())), layout)
    plain = decode(aggregate(list(encoded.values())), layout)
    for name in ("xtx", "n", "dyadic"):  # bit for bit what the plain fixed-point sum gives
        assert total[name].dtype == plain[name].dtype
        assert total[name].tobytes() == plain[name].tobytes()
    assert total["n"].dtype == np.int64
    assert np.array_equal(total["n"], sum(s["n"] for s in stats.values()))
    assert np.array_equal(total["dyadic"], 3 * stats["fi"]["dyadic"])  # representable: exact
    exact = np.array([math.fsum(s["xtx"].flat[i] for s in stats.values()) for i in range(120)])
    # Each node rounds to the nearest 2**-22; the integer sum and the exact reference each
    # round to float64 once.
    bound = 3 * 2.0**-23 + np.abs(exact) * 2.0**-52
    assert (np.abs(total["xtx"].reshape(-1) - exact) <= bound).all()


def test_keys_from_node_directories_mask_sign_and_sum(tmp_path: Path) -> None:
    """The node's own key files (init_node) and the public halves its member entry carries."""
    paths = {node: init_node(tmp_path / node, node_id=node, country="FI") for node in NODES}
    members = {node: member_for_node(tmp_path / node, f"http://127.0.0.1:{8080 + i}")
               for i, node in enumerate(NODES)}
    public = {node: m.agreement_key for node, m in members.items()}
    layout = Layout((Field("sums", (5,)),), max_participants=3)
    stats = {node: {"sums": np.arange(5.0) * (i + 1) - 2} for i, node in enumerate(NODES)}
    received = []
    for node in NODES:
        masked = mask(encode(stats[node], layout), node_id=node, participants=NODES,
                      private_key=load_agreement_key(paths[node].agreement_key),
                      public_keys=public, context=CONTEXT)
        signature = sign_contribution(masked, CONTEXT, load_signing_key(paths[node].signing_key))
        wire = to_bytes(masked)
        arrived = from_bytes(wire, layout)
        verify_contribution(arrived, CONTEXT, signature, members[node].signing_key,
                            node_id=node)
        received.append(arrived)
    total = decode(aggregate(received), layout)["sums"]
    assert np.array_equal(total, sum(s["sums"] for s in stats.values()))


def test_default_fraction_bits_keep_float64_precision_from_1e_9_to_2_60() -> None:
    """Sums from 1e-9 to beyond 2**60 in magnitude over three nodes: within 1e-13 relative of
    the exact sum of the float64 inputs (each node's value rounded to 2**-48: 2e-15 absolute);
    from 100 on, float64's own precision."""
    rng = np.random.default_rng(3)
    magnitudes = np.geomspace(1e-9, 2.0**62, 400)
    signs = rng.choice([-1.0, 1.0], size=magnitudes.size)
    layout = Layout((Field("s", (magnitudes.size,)),), max_participants=3)
    shares = rng.uniform(0.2, 0.45, size=(3, magnitudes.size)) * magnitudes * signs
    total = decode(aggregate([encode({"s": share}, layout) for share in shares]), layout)["s"]
    exact = np.array([math.fsum(column) for column in shares.T])
    assert np.abs(exact).min() < 1e-8 and np.abs(exact).max() > 2.0**60
    error = np.abs(total - exact)
    assert (error <= 3 * 2.0**-49 + 1e-13 * np.abs(exact)).all()
    large = np.abs(exact) > 100
    assert (error[large] <= 2 * np.spacing(np.abs(exact[large]))).all()


def test_each_node_may_use_its_whole_share_of_the_range_without_the_sum_wrapping() -> None:
    for participants in (2, 3, 32):
        layout = Layout((Field("x", (2,)), Field("k", (2,), "int64")),
                        max_participants=participants)
        top = float(np.nextafter(layout.limit(layout.fields[0]), 0.0))
        top_int = int(layout.limit(layout.fields[1])) - 1
        values = {"x": np.array([top, -top]), "k": np.array([top_int, -top_int])}
        total = decode(aggregate([encode(values, layout)] * participants), layout)
        exact = (np.array([top, -top], dtype=np.longdouble) * participants).astype(np.float64)
        assert np.array_equal(total["x"], exact)
        assert total["k"].tolist() == [top_int * participants, -top_int * participants]


def test_overflow_nan_and_infinity_are_refused_naming_the_field() -> None:
    layout = Layout((Field("beta", (2, 2)), Field("n", (3,), "int64")))  # 32 participants
    assert layout.limit(layout.fields[0]) == 2.0**68     # 58 + 58 bits less 48 fraction bits
    fine = {"beta": np.full((2, 2), np.nextafter(2.0**68, 0.0)),
            "n": np.array([0, 2**58 - 1, -(2**58) + 1])}
    encode(fine, layout)
    cases = [({"beta": np.array([[0.0, 0.0], [0.0, 2.0**68]])}, "'beta'[1, 1]", "beyond"),
             ({"beta": np.array([[0.0, np.nan], [0.0, 0.0]])}, "'beta'[0, 1]", "not a finite"),
             ({"beta": np.array([[-np.inf, 0.0], [0.0, 0.0]])}, "'beta'[0, 0]", "not a finite"),
             ({"n": np.array([0, 0, 2**58])}, "'n'[2]", "beyond"),
             ({"n": np.array([-(2**63), 0, 0])}, "'n'[0]", "beyond")]
    for change, where, problem in cases:
        with pytest.raises(EncodingError) as caught:
            encode({**fine, **change}, layout)
        assert where in str(caught.value) and problem in str(caught.value)
        assert caught.value.field == where.split("'")[1] and caught.value.hint
    with pytest.raises(EncodingError, match="'n' is int64; got float64"):
        encode({**fine, "n": np.zeros(3)}, layout)
    with pytest.raises(EncodingError, match=r"'beta': shape \(4,\)"):
        encode({**fine, "beta": np.zeros(4)}, layout)
    with pytest.raises(AggregationError, match=r"missing \['n'\], unexpected \['x'\]"):
        encode({"beta": fine["beta"], "x": np.zeros(1)}, layout)


def test_layouts_are_the_same_everywhere_and_fraction_bits_follow_a_bound() -> None:
    arrays: dict[str, np.ndarray] = {"yty": np.zeros(()), "count": np.zeros(4, dtype=np.int32),
                                     "xty": np.zeros((3, 2))}
    layout = Layout.of(arrays, bits={"xty": 30}, max_participants=3)
    assert [(f.name, f.dtype, f.fraction_bits) for f in layout.fields] == [
        ("count", "int64", 0), ("xty", "float64", 30), ("yty", "float64", 48)]
    assert layout.size == 4 + 2 * 6 + 2 * 1       # a float is two words
    assert Layout.from_json(layout.to_json()) == Layout.of(
        dict(reversed(arrays.items())), bits={"xty": 30}, max_participants=3)
    bits = fraction_bits(1e-3, max_participants=4)
    tight = Layout((Field("v", (1,), bits=bits),), max_participants=4)
    assert tight.limit(tight.fields[0]) > 1e-3 >= tight.limit(tight.fields[0]) / 2
    with pytest.raises(AggregationError):
        Field("n", (1,), "int64", bits=3)
    with pytest.raises(AggregationError):
        Layout.from_json('{"fields": 1}')


# -- what the coordinator receives ----------------------------------------------------------------
def test_a_single_masked_vector_is_indistinguishable_from_uniform() -> None:
    layout = _zeros_layout()
    zeros = encode({"counts": np.zeros(LARGE, dtype=np.int64)}, layout)
    assert _departures(zeros)  # the checks do see structure
    masked = _mask_all({node: zeros for node in NODES}, _seeded_keys())
    for node in NODES:  # fi only adds masks, se only subtracts, nl both
        assert _departures(masked[node]) == [], node
    partial = aggregate([masked["fi"], masked["se"]])  # a sum short of one node: still noise
    assert _departures(partial) == []
    assert not aggregate(list(masked.values())).any()


def test_masks_are_never_reused_across_attempts_rounds_or_participant_lists() -> None:
    keys = _seeded_keys()
    public = _public(keys)
    zeros = np.zeros(LARGE, dtype=np.uint64)

    def masked(context: RoundContext, participants: tuple[str, ...] = NODES) -> np.ndarray:
        return mask(zeros, node_id="fi", participants=participants, private_key=keys["fi"],
                    public_keys=public, context=context)

    first = masked(CONTEXT)
    assert np.array_equal(first, masked(RoundContext("job-1", "score", 0)))  # derived, not drawn
    others = [masked(RoundContext("job-1", "score", 1)),  # the round redone
              masked(RoundContext("job-1", "score", 1), ("fi", "nl")),  # ... without se
              masked(RoundContext("job-1", "hessian", 0)),  # another round
              masked(RoundContext("job-2", "score", 0))]  # another job
    for other in [first, *others]:
        for again in others:
            if other is not again:
                assert not (other == again).any()  # no element of any mask repeats
                difference = other - again  # what subtracting two contributions leaves
                assert _departures(difference) == []


def test_a_coordinator_colluding_with_one_node_learns_only_the_sum_of_the_other_two() -> None:
    """The coordinator holds fi's private key and statistics. It removes every mask fi takes
    part in; nl's vector is then still masked by the nl-se mask, uniform although nl's
    statistics are mostly zeros, while nl's and se's together give exactly their plain sum."""
    keys = _seeded_keys()
    public = _public(keys)
    layout = _zeros_layout()
    rng = np.random.default_rng(5)
    plain = {node: {"counts": np.where(rng.random(LARGE) < 0.01, rng.integers(1, 40, LARGE), 0)}
             for node in NODES}
    encoded = {node: encode(plain[node], layout) for node in NODES}
    received = _mask_all(encoded, keys)

    def colluders_mask(peer: str) -> np.ndarray:  # what fi's key computes
        return pair_mask(LARGE, node_id="fi", peer_id=peer, participants=NODES,
                         private_key=keys["fi"], peer_public_key=public[peer], context=CONTEXT)

    # fi adds the masks it shares; nl and se subtract them (their ids are higher).
    nl_rest = received["nl"] + colluders_mask("nl")  # = nl's statistics + the nl-se mask
    se_rest = received["se"] + colluders_mask("se")  # = se's statistics - the nl-se mask
    assert _departures(encoded["nl"]) and _departures(encoded["se"])
    assert _departures(nl_rest) == [] and _departures(se_rest) == []
    two = decode(aggregate([nl_rest, se_rest]), layout)["counts"]
    assert np.array_equal(two, plain["nl"]["counts"] + plain["se"]["counts"])
    total = decode(aggregate(list(received.values())), layout)["counts"]
    assert np.array_equal(total - plain["fi"]["counts"], two)  # the same, from the total

    # fi's key cannot derive the nl-se mask: naming that pair with fi's key gives another one.
    true_nl_se = pair_mask(LARGE, node_id="nl", peer_id="se", participants=NODES,
                           private_key=keys["nl"], peer_public_key=public["se"], context=CONTEXT)
    assert np.array_equal(true_nl_se, pair_mask(
        LARGE, node_id="se", peer_id="nl", participants=NODES, private_key=keys["se"],
        peer_public_key=public["nl"], context=CONTEXT))
    guess = pair_mask(LARGE, node_id="nl", peer_id="se", participants=NODES,
                      private_key=keys["fi"], peer_public_key=public["se"], context=CONTEXT)
    assert not (guess == true_nl_se).any()
    assert _departures(nl_rest - encoded["nl"] - true_nl_se) != []  # all zeros: the mask it was


def test_masking_refuses_what_would_not_be_secure() -> None:
    keys = _seeded_keys()
    public = _public(keys)
    vector = np.zeros(4, dtype=np.uint64)
    cases: list[tuple[dict[str, object], str]] = [
        ({"participants": ["fi"]}, "at least two participants"),
        ({"participants": ["nl", "se"]}, "'fi' is not among"),
        ({"participants": ["fi", "nl", "nl"]}, "listed twice"),
        ({"public_keys": {"nl": public["nl"]}}, "no agreement key for participant 'se'"),
    ]
    for change, message in cases:
        arguments: dict[str, object] = {"node_id": "fi", "participants": NODES,
                                        "private_key": keys["fi"], "public_keys": public,
                                        "context": CONTEXT, **change}
        with pytest.raises(AggregationError, match=message):
            mask(vector, **arguments)  # type: ignore[arg-type]
    with pytest.raises(AggregationError, match="uint64"):
        mask(np.zeros(4), node_id="fi", participants=NODES, private_key=keys["fi"],
             public_keys=public, context=CONTEXT)
    with pytest.raises(AggregationError, match="5 elements; the first has 4"):
        aggregate([vector, np.zeros(5, dtype=np.uint64)])


# -- integrity ------------------------------------------------------------------------------------
def test_a_contribution_altered_in_transit_is_refused() -> None:
    keys = _seeded_keys()
    layout = Layout((Field("x", (64,)),), max_participants=3)
    vector = mask(encode({"x": np.linspace(-5, 5, 64)}, layout), node_id="nl",
                  participants=NODES, private_key=keys["nl"], public_keys=_public(keys),
                  context=CONTEXT)
    signing = ec.generate_private_key(ec.SECP256R1())
    public = signing.public_key()
    signature = sign_contribution(vector, CONTEXT, signing)
    assert len(signature) == 64
    verify_contribution(from_bytes(to_bytes(vector), layout), CONTEXT, signature, public,
                        node_id="nl")

    wire = bytearray(to_bytes(vector))
    wire[100] ^= 0x01
    with pytest.raises(ContributionRefused, match="nl: the contribution") as caught:
        verify_contribution(from_bytes(bytes(wire), layout), CONTEXT, signature, public,
                            node_id="nl")
    assert caught.value.node_id == "nl"
    flipped = bytearray(signature)
    flipped[5] ^= 0x80
    refused = [(vector, RoundContext("job-1", "score", 1), signature, public),  # replayed
               (vector, CONTEXT, bytes(flipped), public),
               (vector, CONTEXT, signature[:63], public),
               (vector, CONTEXT, signature, ec.generate_private_key(ec.SECP256R1()).public_key())]
    for masked, context, candidate, key in refused:
        with pytest.raises(ContributionRefused):
            verify_contribution(masked, context, candidate, key, node_id="nl")
