"""The sites index (`sites.idx/`): the sites table as fixed-width columns that the server
memory-maps, so its memory does not grow with the number of variant sites.

    sites.idx/
        index.json                      rows, names (every contig, in code order), contigs
                                        [name, first row, stop row, longest span] of those with
                                        rows, groups, columns {name: dtype}
        contig.npy pos.npy end.npy variant_index.npy allele_index.npy ac.npy an.npy
        ac_<group>.npy an_<group>.npy   one per allele-count group after "all"
        id.offsets.npy id.heap.npy      strings: offsets (n + 1) into a byte heap (UTF-8)
        ref.offsets.npy ref.heap.npy alt.offsets.npy alt.heap.npy

Rows are in `sites.parquet`'s order (contig, position, record), so a contig is one run of rows
and point and range lookups are binary searches over the memory-mapped positions: only the pages
they touch are read, and the kernel shares and evicts them. Lookups return row numbers; a
table of just those rows (`SiteColumns.table`) has the Parquet file's columns and types. The
Parquet file stays the copy for ad-hoc SQL (DuckDB).

Versions written before the index existed are read through :meth:`SiteColumns.from_table`: the
same interface over columns held in memory.
"""

from __future__ import annotations

import functools
import json
import mmap
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import overload

import numpy as np
import pyarrow as pa

from genofed.store.contigs import normalize_contig

INDEX_FILE = "index.json"
INDEX_FORMAT = 1
#: Columns of strings, stored as offsets into a heap.
STRING_COLUMNS = ("id", "ref", "alt")
#: The Parquet file's type of each fixed-width column (the index may store narrower ones).
_ARROW_TYPES: dict[str, pa.DataType] = {
    "pos": pa.int32(), "end": pa.int32(), "variant_index": pa.int64(),
    "allele_index": pa.int8(), "ac": pa.int32(), "an": pa.int32()}


@dataclass(frozen=True)
class ContigSpan:
    """One contig's rows [first, stop) and its longest REF span (bounds range searches)."""

    name: str
    first: int
    stop: int
    span: int


class StringColumn:
    """A column of strings as offsets into a UTF-8 heap; indexing decodes only what it picks."""

    def __init__(self, offsets: np.ndarray, heap: np.ndarray) -> None:
        self._offsets = offsets
        self._heap = heap

    def __len__(self) -> int:
        return len(self._offsets) - 1

    @property
    def arrays(self) -> list[np.ndarray]:
        return [self._offsets, self._heap]

    @overload
    def __getitem__(self, rows: int | np.integer) -> str: ...
    @overload
    def __getitem__(self, rows: slice | np.ndarray) -> np.ndarray: ...
    def __getitem__(self, rows: int | np.integer | slice | np.ndarray) -> str | np.ndarray:
        """A row's string, or an object array of the strings at a slice or row numbers."""
        if isinstance(rows, int | np.integer):
            row = int(rows)
            if row < 0:
                row += len(self)
            lo, hi = self._offsets[row], self._offsets[row + 1]
            return bytes(self._heap[lo:hi]).decode()
        return np.asarray(self.arrow(rows).to_pylist(), dtype=object)

    def arrow(self, rows: slice | np.ndarray) -> pa.StringArray:
        """The strings at a slice or row numbers, as an Arrow array (built from the heap)."""
        if isinstance(rows, slice):
            lo, hi, step = rows.indices(len(self))
            if step == 1:
                return self._run(lo, max(lo, hi))
            rows = np.arange(lo, hi, step)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and np.all(np.diff(rows) == 1):
            return self._run(int(rows[0]), int(rows[-1]) + 1)
        starts = self._offsets[rows].astype(np.int64)
        lengths = self._offsets[rows + 1].astype(np.int64) - starts
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        # Each picked byte's place in the heap: its string's start plus its place within it.
        within = np.arange(offsets[-1], dtype=np.int64) - np.repeat(offsets[:-1], lengths)
        data = self._heap[np.repeat(starts, lengths) + within]
        return _string_array(offsets, np.ascontiguousarray(data))

    def _run(self, lo: int, hi: int) -> pa.StringArray:
        offsets = self._offsets[lo:hi + 1].astype(np.int64)
        base = int(offsets[0]) if len(offsets) else 0
        data = np.asarray(self._heap[base:int(offsets[-1]) if len(offsets) else 0])
        return _string_array(offsets - base, data)


def _string_array(offsets: np.ndarray, data: np.ndarray) -> pa.StringArray:
    if offsets[-1] < 2**31:
        return pa.StringArray.from_buffers(len(offsets) - 1, pa.py_buffer(
            offsets.astype(np.int32)), pa.py_buffer(np.ascontiguousarray(data)))
    large = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets),
                                             pa.py_buffer(np.ascontiguousarray(data)))
    return large.cast(pa.string())


class SiteColumns:
    """A version's sites: lookups by position and columns by row number."""

    def __init__(self, n_rows: int, names: Sequence[str], contigs: Sequence[ContigSpan],
                 groups: Sequence[str], fixed: Mapping[str, np.ndarray],
                 strings: Mapping[str, StringColumn]) -> None:
        self.n_rows = n_rows
        #: Every contig of the dataset, in code order (the "contig" column's codes index it).
        self.contig_names = list(names)
        #: The contigs that have rows, with where their rows are.
        self.contigs = list(contigs)
        #: Allele-count groups after "all" (columns ac_<group> and an_<group>).
        self.groups = list(groups)
        self._fixed = dict(fixed)
        self._strings = dict(strings)
        self._by_name = {normalize_contig(c.name): c for c in self.contigs}
        self._names = pa.array(self.contig_names, pa.string())

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, directory: Path) -> SiteColumns:
        """Memory-map a sites index written by :func:`write_site_columns`."""
        index = json.loads((directory / INDEX_FILE).read_text())
        if index.get("format") != INDEX_FORMAT:
            raise ValueError(f"{directory}: sites index format {index.get('format')!r}, "
                             f"this genofed reads {INDEX_FORMAT}")

        def mapped(name: str) -> np.ndarray:
            return _map_array(directory / f"{name}.npy")

        fixed = {name: mapped(name) for name in index["columns"]}
        strings = {name: StringColumn(mapped(f"{name}.offsets"), mapped(f"{name}.heap"))
                   for name in STRING_COLUMNS}
        contigs = [ContigSpan(*entry) for entry in index["contigs"]]
        return cls(int(index["rows"]), index["names"], contigs, index["groups"], fixed, strings)

    @classmethod
    def from_table(cls, table: pa.Table) -> SiteColumns:
        """The same interface over a sites table read whole (versions without an index)."""
        columns = _columns_of(table)
        groups = [name[3:] for name in table.column_names if name.startswith("ac_")]
        strings = {name: StringColumn(*columns.pop(name)) for name in STRING_COLUMNS}
        fixed = {name: value for name, (value, _unused) in columns.items()}
        names = table.column("contig").combine_chunks().dictionary.to_pylist()
        return cls(table.num_rows, names, _spans(fixed["contig"], fixed["pos"], fixed["end"],
                                                 names), groups, fixed, strings)

    # -- lookups -----------------------------------------------------------------------------
    def __contains__(self, contig: str) -> bool:
        return normalize_contig(contig) in self._by_name

    def rows(self, contig: str, start: int, end: int | None = None) -> tuple[int, int,
                                                                              np.ndarray]:
        """Row numbers of sites overlapping [start, end] (1-based, inclusive); a point if end is
        None (sites starting at `start`). Returns (lo, hi, mask over rows lo..hi)."""
        entry = self._by_name.get(normalize_contig(contig))
        if entry is None:
            return 0, 0, np.empty(0, dtype=bool)
        self.trim()  # what the previous lookup mapped (~20 us; see trim)
        pos = self._fixed["pos"][entry.first:entry.stop]
        # NumPy scalars of the array's type: a Python int makes searchsorted convert the whole
        # array (milliseconds on a mapped column) instead of searching it (microseconds).
        if end is None:
            key = _int32(start)
            lo = int(np.searchsorted(pos, key, "left"))
            hi = int(np.searchsorted(pos, key, "right"))
            return entry.first + lo, entry.first + hi, np.ones(hi - lo, dtype=bool)
        lo = int(np.searchsorted(pos, _int32(start - entry.span + 1), "left"))
        hi = int(np.searchsorted(pos, _int32(end), "right"))
        ends = self._fixed["end"][entry.first + lo:entry.first + hi]
        return entry.first + lo, entry.first + hi, np.asarray(ends >= start)

    def trim(self) -> None:
        """Unmap the pages lookups have touched. They stay in the kernel's page cache (the next
        touch maps them again: a minor fault), but leave this process's resident memory. The
        kernel maps a whole page-cache folio (up to 2 MB) where a lookup touches 4 bytes, so
        without this a server doing random lookups comes to map the whole index within a few
        thousand queries, its resident memory growing with the sites although none of it is
        its own (measured: 736 MB of a 848 MB index after 2,000 queries). Done before every
        lookup it costs ~0.1 ms of refaulting, against a Beacon answer's ~3 ms."""
        arrays = [*self._fixed.values()]
        for column in self._strings.values():
            arrays += column.arrays
        for array in arrays:
            view = array.base  # np.frombuffer over the mapping: a memoryview of it
            if isinstance(view, memoryview) and isinstance(view.obj, mmap.mmap):
                view.obj.madvise(mmap.MADV_DONTNEED)

    # -- columns -----------------------------------------------------------------------------
    def column(self, name: str) -> np.ndarray | StringColumn:
        """A column by name: a (memory-mapped) array, or a :class:`StringColumn`. "contig" gives
        each row's index into :attr:`contigs`."""
        if name in self._strings:
            return self._strings[name]
        if name == "af":
            return self._af(slice(None))
        if name not in self._fixed:
            raise KeyError(f"the sites table has no column {name!r}")
        return self._fixed[name]

    def table(self, rows: slice | np.ndarray) -> pa.Table:
        """The rows (a slice or row numbers) with the Parquet file's columns and types."""
        if isinstance(rows, slice):
            lo, hi, _step = rows.indices(self.n_rows)
            rows = slice(lo, max(lo, hi))
        else:
            rows = np.asarray(rows, dtype=np.int64)
        fixed, strings = self._fixed, self._strings
        codes = np.asarray(fixed["contig"][rows], dtype=np.int32)
        arrays: list[pa.Array] = [pa.DictionaryArray.from_arrays(codes, self._names)]
        for name, wanted in self._layout:
            if name in strings:
                arrays.append(strings[name].arrow(rows))
            elif name == "af":
                arrays.append(pa.array(self._af(rows)))
            else:
                values = fixed[name][rows]
                arrays.append(pa.array(values if values.dtype == wanted
                                       else values.astype(wanted)))
        return pa.Table.from_arrays(arrays, schema=self._schema)

    @functools.cached_property
    def _layout(self) -> list[tuple[str, np.dtype]]:
        """The columns after "contig", in the Parquet file's order, with their NumPy types."""
        names = ["pos", "end", "id", "ref", "alt", "variant_index", "allele_index", "ac", "an",
                 "af", *(f"{prefix}_{group}" for group in self.groups for prefix in ("ac", "an"))]
        return [(name, np.dtype(_ARROW_TYPES.get(name, pa.int32()).to_pandas_dtype()))
                for name in names]

    @functools.cached_property
    def _schema(self) -> pa.Schema:
        types = {"id": pa.string(), "ref": pa.string(), "alt": pa.string(), "af": pa.float64()}
        return pa.schema([("contig", pa.dictionary(pa.int32(), pa.string())),
                          *((name, types.get(name) or _ARROW_TYPES.get(name, pa.int32()))
                            for name, _dtype in self._layout)])

    def _af(self, rows: slice | np.ndarray) -> np.ndarray:
        """AF as the writer computed it: AC / AN, NaN where AN is 0."""
        ac = np.asarray(self._fixed["ac"][rows])
        an = np.asarray(self._fixed["an"][rows])
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(an > 0, ac / np.maximum(an, 1), np.nan)


def _map_array(path: Path) -> np.ndarray:
    """A read-only array over a memory-mapped .npy file. Lookups touch a few scattered pages,
    so the kernel is told not to read ahead around them (it would read ~128 KB per page
    touched); and a plain ndarray, as NumPy's memmap subclass slows every indexing."""
    with open(path, "rb") as handle:
        version = np.lib.format.read_magic(handle)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, fortran, dtype = read_header(handle)
        offset = handle.tell()
        if fortran or len(shape) != 1:
            raise ValueError(f"{path}: not a one-dimensional column")
        if shape[0] == 0:
            return np.empty(0, dtype=dtype)
        mapping = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)
    mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype=dtype, count=shape[0], offset=offset)


def _int32(value: int) -> np.int32:
    return np.int32(min(max(value, -(2**31)), 2**31 - 1))


def _columns_of(table: pa.Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each column of a sites table as (array, unused) or, for strings, (offsets, heap)."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    none = np.empty(0)
    for name in table.column_names:
        column = table.column(name).combine_chunks()
        if name == "contig":
            narrow = np.int16 if len(column.dictionary) < 2**15 else np.int32
            out[name] = (column.indices.to_numpy(zero_copy_only=False).astype(narrow), none)
        elif name in STRING_COLUMNS:
            out[name] = _offsets_and_heap(column)
        elif name != "af":
            out[name] = (column.to_numpy(zero_copy_only=False), none)
    return out


def _offsets_and_heap(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """A string column's (offsets, heap), offsets narrowed to int32 when the heap allows."""
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    column = column.fill_null("").cast(pa.large_string())
    n = len(column)
    if n == 0:
        return np.zeros(1, np.int32), np.empty(0, np.uint8)
    _validity, offsets, data = column.buffers()
    assert offsets is not None and data is not None
    raw = np.frombuffer(offsets, dtype=np.int64)[column.offset:column.offset + n + 1]
    heap = np.frombuffer(data, dtype=np.uint8)[int(raw[0]):int(raw[-1])].copy()
    offsets_array = raw - raw[0]
    if offsets_array[-1] < 2**31:
        offsets_array = offsets_array.astype(np.int32)
    return offsets_array, heap


def _spans(codes: np.ndarray, pos: np.ndarray, end: np.ndarray,
           names: Sequence[str]) -> list[ContigSpan]:
    """Runs of equal contig codes (rows are sorted by contig) with their longest REF span."""
    if len(codes) == 0:
        return []
    bounds = np.flatnonzero(np.diff(codes)) + 1
    spans = []
    for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(codes)], strict=True):
        width = int((end[lo:hi].astype(np.int64) - pos[lo:hi]).max()) + 1
        spans.append(ContigSpan(names[int(codes[lo])], int(lo), int(hi), width))
    return spans


def _narrowest(values: np.ndarray) -> np.dtype:
    """The smallest signed integer type holding every value (allele counts of a few samples fit
    a byte): the index is read a page at a time, so narrower columns mean fewer pages."""
    if values.dtype.kind not in "iu" or len(values) == 0:
        return values.dtype
    low, high = int(values.min()), int(values.max())
    for candidate in (np.int8, np.int16, np.int32, np.int64):
        info = np.iinfo(candidate)
        if info.min <= low and high <= info.max:
            return np.dtype(candidate)
    return values.dtype


def write_site_columns(directory: Path, table: pa.Table, contigs: Sequence[str]) -> None:
    """Write the sites index of a sorted sites table (as `sites.write_sites` builds it)."""
    directory.mkdir()
    columns = _columns_of(table)
    n_rows = table.num_rows
    dtypes: dict[str, str] = {}
    for name, (values, heap) in columns.items():
        if name in STRING_COLUMNS:
            np.save(directory / f"{name}.offsets.npy", values)
            np.save(directory / f"{name}.heap.npy", heap)
            continue
        if name not in ("contig", "pos", "end"):  # positions stay int32: searched as such
            values = values.astype(_narrowest(values), copy=False)
        np.save(directory / f"{name}.npy", np.ascontiguousarray(values))
        dtypes[name] = str(values.dtype)
    spans = _spans(columns["contig"][0], columns["pos"][0], columns["end"][0], contigs)
    index = {"format": INDEX_FORMAT, "rows": n_rows, "names": list(contigs),
             "contigs": [[s.name, s.first, s.stop, s.span] for s in spans],
             "groups": [name[3:] for name in table.column_names if name.startswith("ac_")],
             "columns": dtypes}
    path = directory / INDEX_FILE
    path.write_text(json.dumps(index, indent=1))
    os.chmod(path, 0o644)
