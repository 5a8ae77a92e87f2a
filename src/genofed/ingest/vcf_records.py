"""VCF records (text) to arrays, vectorised over samples.

htslib-based readers spend ~160 µs per record unpacking 2,500 genotypes one by one; plink2 parses
the same text in C with threads. To stay within reach of plink2 the sample columns never go
through Python objects:

* the common layout — FORMAT `GT` only, every call one character, separator, one character — is
  decoded by a C kernel (:mod:`genofed.ingest._calls`) straight from the inflated BGZF blocks,
  one pass over the bytes; the fixed columns of all lines are then read at once by Arrow's CSV
  reader;
* any other piece goes through a per-line path: the fixed columns are split in Python (a few
  `bytes.find` calls per line), lines of the common layout are decoded by the same kernel, and
  the others are vectorised over samples with numpy, falling back to Python only for the unusual
  calls themselves (more FORMAT fields, haploid calls, multi-digit alleles).

Genotypes follow the VCF Zarr conventions: int8 allele indexes, -1 missing, -2 for the absent second
allele of a haploid call.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from genofed.errors import InputError
from genofed.ingest import _calls

PLOIDY = 2
MISSING = -1
FILL = -2  # no allele at this ploidy position (haploid call)
_TAB, _COLON, _PIPE, _SLASH, _DOT = 9, 58, 124, 47, 46
_MAX_ALLELES = 127


#: Per-record flags (:attr:`ParsedRecords.flags`).
FLAG_NEGATIVE = 1  # some allele is missing (-1) or absent (-2): the genotype mask is not all False
FLAG_UNPHASED = 2  # some call is unphased: the phase flags are not all True


@dataclass
class ParsedRecords:
    """Arrays for a run of consecutive records (one ingest piece)."""

    contigs: list[str] = field(default_factory=list)  # local names; `contig` indexes into them
    contig: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    position: np.ndarray = field(default_factory=lambda: np.empty(0, np.int32))
    ids: list[str] = field(default_factory=list)
    alleles: list[list[str]] = field(default_factory=list)  # [REF, ALT1, ...]
    quality: np.ndarray = field(default_factory=lambda: np.empty(0, np.float32))
    filters: list[list[str]] = field(default_factory=list)
    genotypes: np.ndarray = field(default_factory=lambda: np.empty((0, 0, PLOIDY), np.int8))
    phased: np.ndarray = field(default_factory=lambda: np.empty((0, 0), bool))
    #: uint8 per record: FLAG_NEGATIVE | FLAG_UNPHASED, so that writers can skip all-fill chunks
    flags: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint8))

    def __len__(self) -> int:
        return len(self.position)


def call_flags(genotypes: np.ndarray, phased: np.ndarray) -> np.ndarray:
    """:attr:`ParsedRecords.flags` computed from the arrays (for records not read by the kernel)."""
    n = len(genotypes)
    if n == 0 or genotypes.shape[1] == 0:
        return np.zeros(n, dtype=np.uint8)
    flags = np.where((genotypes.reshape(n, -1) < 0).any(axis=1), FLAG_NEGATIVE, 0)
    flags |= np.where(phased.all(axis=1), 0, FLAG_UNPHASED)
    return flags.astype(np.uint8)


class _LineError(Exception):
    def __init__(self, index: int, problem: str, field: str | None = None) -> None:
        super().__init__(problem)
        self.index = index
        self.problem = problem
        self.field = field


def parse_records(parts: Sequence[bytes | memoryview], n_samples: int, *, name: str,
                  first_line: int | None) -> ParsedRecords:
    """Parse complete VCF record lines, given as consecutive pieces of one text (e.g. inflated
    BGZF blocks; a line may span pieces). Header lines at the start, if any, are skipped.

    ``first_line`` is the file line number of the first line of the text when known; errors then
    name it, otherwise they name the line within the text and the caller adds context.
    """
    try:
        bulk = _parse_bulk(parts, n_samples)
        if bulk is not None:
            return bulk
        return _parse(parts[0] if len(parts) == 1 and isinstance(parts[0], bytes)
                      else b"".join(parts), n_samples)
    except _LineError as err:
        if first_line is not None:
            raise InputError(name, err.problem, line=first_line + err.index,
                             field=err.field) from None
        raise PieceLineError(err.index, err.problem, err.field) from None


class PieceLineError(Exception):
    """A record error whose absolute line number the caller must still work out."""

    def __init__(self, index: int, problem: str, field: str | None) -> None:
        super().__init__(problem)
        self.index = index
        self.problem = problem
        self.field = field

    def __reduce__(self) -> tuple[object, ...]:  # crosses from worker to parent process
        return (PieceLineError, (self.index, self.problem, self.field))


_FIXED_NAMES = ["CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO"]


def _parse_bulk(parts: Sequence[bytes | memoryview], n_samples: int) -> ParsedRecords | None:
    """The fast path for a piece whose every record has FORMAT `GT` and one-character calls.

    The C kernel decodes the sample columns and hands back the fixed columns of every line, which
    Arrow's CSV reader parses at once. Returns None for anything unexpected, and the general
    parser (which names the line at fault) runs.
    """
    if not n_samples:
        return None
    import pyarrow as pa
    import pyarrow.compute as pc
    from pyarrow import csv

    # A line of this layout is at least 4N bytes long, so the text bounds the record count.
    capacity = sum(len(p) for p in parts) // (4 * n_samples) + 1
    genotypes = np.empty((capacity, n_samples, PLOIDY), dtype=np.int8)
    phased = np.empty((capacity, n_samples), dtype=bool)
    scanned = _calls.scan_gt_lines(parts, n_samples, genotypes, phased)
    if scanned is None:
        return None
    n, heads, flag_bytes, top_bytes = scanned
    try:
        table = csv.read_csv(
            pa.py_buffer(heads),
            read_options=csv.ReadOptions(column_names=_FIXED_NAMES, use_threads=False,
                                         block_size=1 << 26),
            parse_options=csv.ParseOptions(delimiter="\t", quote_char=False, escape_char=False,
                                           double_quote=False, ignore_empty_lines=False),
            convert_options=csv.ConvertOptions(
                column_types={name: pa.int64() if name == "POS" else pa.string()
                              for name in _FIXED_NAMES},
                null_values=[], strings_can_be_null=False),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if table.num_rows != n:
        return None
    position = table.column("POS").to_numpy()
    if position.min() < 0 or position.max() > 2**31 - 2:
        return None
    refs = table.column("REF").to_pylist()
    alts = table.column("ALT").to_pylist()
    alleles = [[ref] if alt == "." else [ref, *alt.split(",")] for ref, alt in zip(refs, alts,
                                                                                  strict=True)]
    if any(ref in ("", ".") for ref in refs) or max(map(len, alleles)) > _MAX_ALLELES:
        return None
    qual = table.column("QUAL")
    try:
        quality = pc.if_else(pc.equal(qual, "."), pa.scalar(None, pa.string()), qual).cast(
            pa.float32()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    filter_cache: dict[str, list[str]] = {}
    filters = []
    for value in table.column("FILTER").to_pylist():
        parsed = filter_cache.get(value)
        if parsed is None:
            parsed = filter_cache[value] = [] if value == "." else value.split(";")
        filters.append(parsed)
    contig = table.column("CHROM").combine_chunks().dictionary_encode()
    top = np.frombuffer(top_bytes, dtype=np.int8)
    if (top >= np.fromiter(map(len, alleles), dtype=np.int16, count=n)).any():
        return None
    kernel_flags = np.frombuffer(flag_bytes, dtype=np.uint8)
    return ParsedRecords(
        contigs=contig.dictionary.to_pylist(),
        contig=contig.indices.to_numpy().astype(np.int32),
        position=position.astype(np.int32),
        ids=table.column("ID").to_pylist(),
        alleles=alleles,
        quality=quality.astype(np.float32),
        filters=filters,
        genotypes=genotypes[:n],
        phased=phased[:n],
        # the kernel's bits are a missing allele (1) and an unphased call (2), as ours
        flags=kernel_flags.copy(),
    )


def _parse(buf: bytes, n_samples: int) -> ParsedRecords:
    out = ParsedRecords()
    contig_ids: dict[bytes, int] = {}
    contig_of: list[int] = []
    positions: list[int] = []
    quality: list[float] = []
    filter_cache: dict[bytes, list[str]] = {}
    fast_rows: list[int] = []
    fast_starts: list[int] = []
    slow_rows: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    n_fixed = 9 if n_samples else 8
    fast_len = 4 * n_samples - 1
    # A valid line with N samples is at least 2N + 17 bytes long, so the search for its newline can
    # start that far in; a malformed short line merged this way is caught by the column checks.
    min_jump = 2 * n_samples + 17 if n_samples else 0
    end = len(buf)
    view = np.frombuffer(buf, dtype=np.uint8)
    find = buf.find
    line_index = -1  # index of the line within buf, for error messages
    pos = 0
    row = 0
    while pos < end:
        line_index += 1
        if buf[pos] == 35:  # '#': header line (only at the start of the first piece)
            nl = find(b"\n", pos)
            pos = end if nl < 0 else nl + 1
            continue
        nl = find(b"\n", min(pos + min_jump, end))
        line_end = end if nl < 0 else nl
        # Split only the head of the line: the sample columns are decoded in bulk from `view`.
        head_end = min(pos + 1024, line_end)
        fields = buf[pos:head_end].split(b"\t", n_fixed)
        if len(fields) <= n_fixed and head_end < line_end:  # a long INFO column
            head_end = line_end
            fields = buf[pos:line_end].split(b"\t", n_fixed)
        if len(fields) <= n_fixed - (0 if n_samples else 1) or any(b"\n" in f for f in fields[:-1]):
            expected = 9 + n_samples if n_samples else 8
            raise _LineError(line_index, f"expected {expected} tab-separated columns; "
                             "the line has fewer")
        chrom, pos_text, vid, ref, alt, qual_text, filt = fields[:7]
        try:
            position = int(pos_text)
        except ValueError:
            raise _LineError(line_index, f"POS {pos_text.decode(errors='replace')!r} is not a "
                             "number", "POS") from None
        if position < 0 or position > 2**31 - 2:
            raise _LineError(line_index, f"POS {position} is out of range", "POS")
        if not ref or ref == b".":
            raise _LineError(line_index, "REF is empty", "REF")
        allele_list = [ref.decode()]
        if alt != b".":
            allele_list.extend(alt.decode().split(","))
        if len(allele_list) > _MAX_ALLELES:
            raise _LineError(line_index, f"{len(allele_list)} alleles; at most {_MAX_ALLELES} "
                             "are supported", "ALT")
        if qual_text == b".":
            qual = math.nan
        else:
            try:
                qual = float(qual_text)
            except ValueError:
                raise _LineError(line_index, f"QUAL {qual_text.decode(errors='replace')!r} is "
                                 "not a number", "QUAL") from None
        filters = filter_cache.get(filt)
        if filters is None:
            filters = [] if filt == b"." else filt.decode().split(";")
            filter_cache[filt] = filters

        if n_samples:
            fmt = fields[8]
            start = head_end - len(fields[9])
            if fmt == b"GT" and line_end - start == fast_len:
                fast_rows.append(row)
                fast_starts.append(start)
            else:
                slow_rows[row] = _parse_samples(view[start:line_end], fmt, n_samples, line_index)

        index = contig_ids.get(chrom)
        if index is None:
            index = contig_ids[chrom] = len(contig_ids)
        contig_of.append(index)
        positions.append(position)
        out.ids.append(vid.decode())
        out.alleles.append(allele_list)
        quality.append(qual)
        out.filters.append(filters)
        row += 1
        pos = line_end + 1

    out.contigs = [name.decode() for name in contig_ids]
    out.contig = np.asarray(contig_of, dtype=np.int32)
    out.position = np.asarray(positions, dtype=np.int32)
    out.quality = np.asarray(quality, dtype=np.float32)
    genotypes = np.empty((row, n_samples, PLOIDY), dtype=np.int8)
    phased = np.empty((row, n_samples), dtype=bool)
    if fast_rows:
        _decode_fast(buf, fast_starts, fast_rows, n_samples, genotypes, phased, slow_rows)
    for r, (calls, phase) in slow_rows.items():
        genotypes[r] = calls
        phased[r] = phase
    if row and n_samples:
        top = genotypes.reshape(row, -1).max(axis=1)
        n_alleles = np.fromiter((len(a) for a in out.alleles), dtype=np.int16, count=row)
        for wrong in np.flatnonzero(top >= n_alleles):
            raise _LineError(_line_of_row(buf, int(wrong)), f"genotype refers to allele "
                             f"{top[wrong]} but the record has only {n_alleles[wrong]} alleles",
                             "GT")
    out.genotypes = genotypes
    out.phased = phased
    out.flags = call_flags(genotypes, phased)
    return out


def _line_of_row(buf: bytes, row: int) -> int:
    """Line index of the row-th record (error path only)."""
    index = -1
    pos = 0
    seen = -1
    while True:
        index += 1
        if buf[pos : pos + 1] != b"#":
            seen += 1
            if seen == row:
                return index
        pos = buf.index(b"\n", pos) + 1


def _decode_fast(buf: bytes, starts: list[int], rows: list[int], n_samples: int,
                 genotypes: np.ndarray, phased: np.ndarray,
                 slow_rows: dict[int, tuple[np.ndarray, np.ndarray]]) -> None:
    """Decode lines whose sample columns (from `starts`) are all `a|b` or `a/b` with
    one-character alleles into `rows`; lines that are not (e.g. multi-digit alleles that
    happened to fit the width) are decoded generally into `slow_rows`."""
    starts_array = np.asarray(starts, dtype=np.int64)
    for k in _calls.decode_calls(buf, starts_array, np.asarray(rows, dtype=np.int64), n_samples,
                                 genotypes, phased):
        s = starts[k]
        view = np.frombuffer(buf, dtype=np.uint8, count=4 * n_samples - 1, offset=s)
        try:
            slow_rows[rows[k]] = _parse_samples(view, b"GT", n_samples, -1)
        except _LineError as err:  # the line is known by its row only: find it (error path)
            raise _LineError(_line_of_row(buf, rows[k]), err.problem, err.field) from None


def _parse_samples(seg: np.ndarray, fmt: bytes, n_samples: int,
                   line_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Decode the GT of every sample column of one line (any FORMAT layout)."""
    calls = np.full((n_samples, PLOIDY), MISSING, dtype=np.int8)
    phase = np.zeros(n_samples, dtype=bool)
    keys = fmt.split(b":")
    if b"GT" not in keys:
        # No genotypes on this line: every call is missing.
        starts = np.flatnonzero(seg == _TAB)
        if len(starts) + 1 != n_samples:
            raise _LineError(line_index, f"expected {n_samples} sample columns, found "
                             f"{len(starts) + 1}")
        return calls, phase
    gt_field = keys.index(b"GT")
    tabs = np.flatnonzero(seg == _TAB)
    if len(tabs) + 1 != n_samples:
        raise _LineError(line_index, f"expected {n_samples} sample columns, found {len(tabs) + 1}")
    starts = np.concatenate(([0], tabs + 1))
    ends = np.concatenate((tabs, [len(seg)]))
    if gt_field == 0:
        # Pad so that start+3 is always readable; the pad byte acts as a terminator.
        padded = np.concatenate((seg, np.full(4, _TAB, dtype=np.uint8)))
        c0 = padded[starts]
        c1 = padded[starts + 1]
        c2 = padded[starts + 2]
        c3 = padded[starts + 3]
        c1_end = (c1 == _TAB) | (c1 == _COLON) | (starts + 1 >= ends)
        c3_end = (c3 == _TAB) | (c3 == _COLON) | (starts + 3 >= ends)
        digit0 = ((c0 >= 48) & (c0 <= 57)) | (c0 == _DOT)
        digit2 = ((c2 >= 48) & (c2 <= 57)) | (c2 == _DOT)
        sep = (c1 == _PIPE) | (c1 == _SLASH)
        diploid = digit0 & sep & digit2 & c3_end & (starts + 2 < ends)
        haploid = digit0 & c1_end
        value0 = np.where(c0 == _DOT, MISSING, c0.astype(np.int16) - 48).astype(np.int8)
        value2 = np.where(c2 == _DOT, MISSING, c2.astype(np.int16) - 48).astype(np.int8)
        calls[diploid, 0] = value0[diploid]
        calls[diploid, 1] = value2[diploid]
        phase[diploid] = c1[diploid] == _PIPE
        calls[haploid, 0] = value0[haploid]
        calls[haploid, 1] = FILL
        others = np.flatnonzero(~(diploid | haploid))
    else:
        others = np.arange(n_samples)
    raw = seg.tobytes()
    for i in others:
        column = raw[starts[i] : ends[i]]
        parts = column.split(b":")
        token = parts[gt_field] if gt_field < len(parts) else b"."
        calls[i], phase[i] = _parse_gt(token, line_index)
    return calls, phase


def _parse_gt(token: bytes, line_index: int) -> tuple[np.ndarray, bool]:
    text = token.decode(errors="replace")
    pieces = text.replace("|", "/").split("/")
    if len(pieces) > PLOIDY:
        raise _LineError(line_index, f"genotype {text!r} has ploidy {len(pieces)}; only haploid "
                         "and diploid calls are supported", "GT")
    values = []
    for piece in pieces:
        if piece == ".":
            values.append(MISSING)
        elif piece.isdigit() and int(piece) < _MAX_ALLELES:
            values.append(int(piece))
        else:
            raise _LineError(line_index, f"genotype {text!r} is not a valid GT", "GT")
    if len(values) == 1:
        values.append(FILL)
    # A call is phased if its separator is '|' (a haploid call counts as phased, as in htslib).
    return np.asarray(values, dtype=np.int8), "/" not in text
