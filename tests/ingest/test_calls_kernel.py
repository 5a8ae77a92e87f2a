"""The C genotype kernels (`genofed.ingest._calls`) against plain Python references and the general
parser: every split of the text into parts, every call spelling of the layout, and every way a
line can fall outside it (the kernel must then decline, never guess)."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import sysconfig
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from genofed.ingest import _calls
from genofed.ingest.vcf_records import (
    FLAG_NEGATIVE,
    FLAG_UNPHASED,
    PLOIDY,
    _parse,
    call_flags,
    parse_records,
)

HEADER = b"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tA\tB\tC\n"


def line(pos: int, calls: list[str], *, fmt: str = "GT", alt: str = "T") -> bytes:
    return (f"20\t{pos}\trs{pos}\tC\t{alt}\t50\tPASS\tAC=1\t{fmt}\t" + "\t".join(calls)
            + "\n").encode()


def scan(parts: list[bytes], n_samples: int) -> tuple[np.ndarray, np.ndarray, tuple] | None:
    capacity = sum(map(len, parts)) // (4 * n_samples) + 1
    genotypes = np.full((capacity, n_samples, PLOIDY), 99, dtype=np.int8)
    phased = np.zeros((capacity, n_samples), dtype=bool)
    result = _calls.scan_gt_lines(parts, n_samples, genotypes, phased)
    if result is None:
        return None
    n = result[0]
    return genotypes[:n], phased[:n], result


def reference(calls: list[str]) -> tuple[list[list[int]], list[bool]]:
    """One line's calls decoded by hand."""
    values, phases = [], []
    for call in calls:
        a, sep, b = call[0], call[1], call[2]
        values.append([-1 if a == "." else int(a), -1 if b == "." else int(b)])
        phases.append(sep == "|")
    return values, phases


def split_everywhere(text: bytes, rng: random.Random, pieces: int) -> list[bytes]:
    cuts = sorted(rng.sample(range(1, len(text)), min(pieces, len(text) - 1)))
    return [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]


ALLELE = st.sampled_from("0123456789.")
CALL = st.builds(lambda a, s, b: a + s + b, ALLELE, st.sampled_from("|/"), ALLELE)


@st.composite
def call_rows(draw: st.DrawFn) -> list[list[str]]:
    """Records of one to 40 samples (vector loops have a remainder to get right too)."""
    n_samples = draw(st.integers(1, 40))
    return draw(st.lists(st.lists(CALL, min_size=n_samples, max_size=n_samples), min_size=1,
                         max_size=12))


@settings(max_examples=200, deadline=None)
@given(rows=call_rows(), seed=st.integers(0, 2**32 - 1), pieces=st.integers(1, 40))
def test_scan_decodes_any_split_of_the_text(rows: list[list[str]], seed: int,
                                            pieces: int) -> None:
    text = HEADER + b"".join(line(100 + i, calls, alt="T,G,A,AA,CC,GG,TT,CA,AC")
                             for i, calls in enumerate(rows))
    parts = split_everywhere(text, random.Random(seed), pieces)
    scanned = scan(parts, len(rows[0]))
    assert scanned is not None
    genotypes, phased, (n, heads, flags, tops) = scanned
    assert n == len(rows)
    for r, calls in enumerate(rows):
        values, phases = reference(calls)
        assert genotypes[r].tolist() == values
        assert phased[r].tolist() == phases
        flat = [v for pair in values for v in pair]
        assert np.frombuffer(tops, np.int8)[r] == max(flat)  # -1 when all are missing
        assert bool(flags[r] & FLAG_NEGATIVE) == (-1 in flat)
        assert bool(flags[r] & FLAG_UNPHASED) == (not all(phases))
    assert heads.splitlines() == [f"20\t{100 + i}\trs{100 + i}\tC\tT,G,A,AA,CC,GG,TT,CA,AC\t50"
                                  "\tPASS\tAC=1".encode() for i in range(len(rows))]
    # the flags are the ones the general parser computes from the arrays
    assert np.frombuffer(flags, np.uint8).tolist() == call_flags(genotypes, phased).tolist()


@settings(max_examples=200, deadline=None)
@given(rows=call_rows(), where=st.integers(0, 10**6), bad=st.sampled_from(b"x :,-;"))
def test_one_bad_byte_anywhere_declines(rows: list[list[str]], where: int, bad: int) -> None:
    """A byte of the sample columns that is no allele, separator or tab, at any position of
    any line (the vectorised loop checks every call, the last one included)."""
    lines = [line(100 + i, calls) for i, calls in enumerate(rows)]
    victim = where % len(lines)
    width = 4 * len(rows[0]) - 1
    at = len(lines[victim]) - 1 - width + (where // len(lines)) % width
    lines[victim] = lines[victim][:at] + bytes([bad]) + lines[victim][at + 1:]
    assert scan([HEADER + b"".join(lines)], len(rows[0])) is None


def test_last_line_without_newline() -> None:
    text = HEADER + line(1, ["0|1", "1|1", "0/0"]) + line(2, ["1|0", ".|.", "0|0"])[:-1]
    scanned = scan([text[:70], text[70:]], 3)
    assert scanned is not None
    assert scanned[0].tolist() == [[[0, 1], [1, 1], [0, 0]], [[1, 0], [-1, -1], [0, 0]]]


@pytest.mark.parametrize("bad", [
    line(5, ["0|1", "1|1", "0/0"], fmt="GT:DP"),          # another FORMAT
    line(5, ["0|1", "1", "0/0"]),                          # a haploid call
    line(5, ["0|1", "10|1", "0/0"]),                       # a multi-digit allele
    line(5, ["0|1", "1|1", "0/0", "0|0"]),                 # a sample too many
    line(5, ["0|1", "1|1"]),                               # a sample too few
    line(5, ["0|1", "1-1", "0/0"]),                        # not a separator
    line(5, ["0|1", "x|1", "0/0"]),                        # not an allele
    line(5, ["0|1", "1|1", "0/0"]).replace(b"\n", b"\r\n"),  # CRLF
    b"20\t5\n",                                            # a short line
    b"\n",                                                 # an empty line
    b"#a comment among the records\n",
])
def test_anything_else_is_declined(bad: bytes) -> None:
    text = HEADER + line(1, ["0|1", "1|1", "0/0"]) + bad + line(9, ["0|0", "0|0", "0|0"])
    assert scan([text], 3) is None


def test_a_too_small_output_is_declined() -> None:
    text = line(1, ["0|1", "1|1", "0/0"]) * 3
    genotypes = np.empty((2, 3, PLOIDY), dtype=np.int8)
    phased = np.empty((2, 3), dtype=bool)
    assert _calls.scan_gt_lines([text], 3, genotypes, phased) is None


def test_bad_arguments_raise() -> None:
    genotypes = np.empty((2, 3, PLOIDY), dtype=np.int8)
    with pytest.raises(TypeError, match="writable"):
        _calls.scan_gt_lines([b""], 3, genotypes, b"read-only")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        _calls.scan_gt_lines([b""], 0, genotypes, np.empty((2, 3), bool))
    with pytest.raises(TypeError):
        _calls.scan_gt_lines([1], 3, genotypes, np.empty((2, 3), bool))  # type: ignore[list-item]


def test_fast_and_general_parsers_agree() -> None:
    """The same records through the kernel (parse_records) and through the general parser,
    on a mix that includes missing and unphased calls and multi-allelic records."""
    rng = random.Random(7)
    n_samples = 50
    lines = []
    for i in range(300):
        calls = [f"{rng.choice('0001.')}{rng.choice('||/')}{rng.choice('00012')}"
                 for _ in range(n_samples)]
        lines.append(line(1000 + i, calls, alt="T,G"))
    header = HEADER.replace(b"A\tB\tC\n", "\t".join(f"S{i}" for i in range(n_samples))
                            .encode() + b"\n")
    text = header + b"".join(lines)
    fast = parse_records(split_everywhere(text, rng, 80), n_samples, name="x", first_line=1)
    general = _parse(text, n_samples)
    assert np.array_equal(fast.genotypes, general.genotypes)
    assert np.array_equal(fast.phased, general.phased)
    assert np.array_equal(fast.flags, general.flags)
    assert fast.position.tolist() == general.position.tolist()
    assert fast.alleles == general.alleles
    assert fast.ids == general.ids and fast.filters == general.filters


def test_decode_calls_reports_the_lines_it_cannot_decode() -> None:
    good = line(1, ["0|1", "1/.", "0|0"])
    bad = line(2, ["0|1", "1:1", "0|0"])
    text = good + bad
    starts = np.array([good.index(b"GT\t") + 3, len(good) + bad.index(b"GT\t") + 3,
                       len(text) - 2], dtype=np.int64)  # the last runs past the text
    genotypes = np.zeros((3, 3, PLOIDY), dtype=np.int8)
    phased = np.zeros((3, 3), dtype=bool)
    bad_k = _calls.decode_calls(text, starts, np.array([2, 0, 1], dtype=np.int64), 3, genotypes,
                                phased)
    assert bad_k == [1, 2]
    assert genotypes[2].tolist() == [[0, 1], [1, -1], [0, 0]]
    assert phased[2].tolist() == [True, False, True]


@settings(max_examples=80, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n_samples=st.integers(1, 40),
       n_classes=st.integers(1, 5), allele=st.integers(0, 4), grouped=st.booleans())
def test_count_alleles_counts_per_class(seed: int, n_samples: int, n_classes: int, allele: int,
                                        grouped: bool) -> None:
    rng = np.random.default_rng(seed)
    genotypes = rng.integers(-2, 4, size=(17, n_samples, PLOIDY)).astype(np.int8)
    sample_class = rng.integers(0, n_classes, size=n_samples).astype(np.int32)
    if grouped:  # each class one run of samples: the kernel sums those directly
        sample_class.sort()
    counts = np.full((17, n_classes, 2), -7, dtype=np.int32)
    _calls.count_alleles(genotypes, n_samples, sample_class, n_classes, counts, allele)
    for c in range(n_classes):
        mine = genotypes[:, sample_class == c]
        assert counts[:, c, 0].tolist() == (mine == allele).sum(axis=(1, 2)).tolist()
        assert counts[:, c, 1].tolist() == (mine >= 0).sum(axis=(1, 2)).tolist()


def test_count_alleles_checks_its_inputs() -> None:
    genotypes = np.zeros((2, 3, PLOIDY), dtype=np.int8)
    counts = np.zeros((2, 2, 2), dtype=np.int32)
    with pytest.raises(ValueError, match="classes"):
        _calls.count_alleles(genotypes, 3, np.array([0, 1, 2], np.int32), 2, counts)
    with pytest.raises(ValueError, match="shapes"):
        _calls.count_alleles(genotypes, 3, np.array([0, 1], np.int32), 2, counts)
    with pytest.raises(ValueError, match="allele index"):
        _calls.count_alleles(genotypes, 3, np.array([0, 1, 1], np.int32), 2, counts, 128)


# -- the C source itself ------------------------------------------------------------------------
SOURCE = Path(_calls.__file__).with_name("_calls.c")
INCLUDE = sysconfig.get_paths()["include"]


def test_kernel_compiles_without_warnings(tmp_path: Path) -> None:
    result = subprocess.run(["gcc", "-O3", "-Wall", "-Wextra", "-Werror", "-fPIC", "-shared",
                             f"-I{INCLUDE}", str(SOURCE), "-o", str(tmp_path / "k.so")],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_kernel_tests_pass_under_sanitizers(tmp_path: Path) -> None:
    """This file's other tests, against the kernel built with AddressSanitizer and UBSan: an
    out-of-bounds read or write, or undefined behaviour, fails them."""
    built = tmp_path / f"_calls{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-O1", "-g", "-fsanitize=address,undefined", "-fno-sanitize-recover",
                    "-fno-omit-frame-pointer", "-fPIC", "-shared", f"-I{INCLUDE}", str(SOURCE),
                    "-o", str(built)], check=True)
    runtimes = [subprocess.run(["gcc", f"-print-file-name={name}"], capture_output=True,
                               text=True, check=True).stdout.strip()
                for name in ("libasan.so", "libubsan.so")]
    assert all(Path(r).is_absolute() for r in runtimes), f"sanitizer runtimes missing: {runtimes}"
    script = f"""
import importlib.util, sys
spec = importlib.util.spec_from_file_location("genofed.ingest._calls", {str(built)!r})
kernel = importlib.util.module_from_spec(spec)
spec.loader.exec_module(kernel)
sys.modules["genofed.ingest._calls"] = kernel
import pytest
sys.exit(pytest.main(["-q", "-s", "-p", "no:cacheprovider", {__file__!r},
                      "-k", "not sanitizers and not warnings"]))
"""
    env = {**os.environ, "LD_PRELOAD": " ".join(runtimes), "ASAN_OPTIONS": "detect_leaks=0"}
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            env=env, cwd=Path(__file__).parent.parent)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert " passed" in result.stdout and "sanitizer" not in result.stderr.lower()
