"""Writing Zarr (format 2) arrays chunk by chunk, from any process.

Ingest workers compress and write genotype chunks in parallel; zarr-python 3 keeps an event loop
thread per process that does not survive `fork`, and its per-call overhead shows at this volume, so
the writer side is these few lines of the (frozen, simple) Zarr v2 on-disk format. Everything is
read back with zarr-python, which the tests do.
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from numcodecs import Blosc, VLenUTF8

#: Genotypes are small integers, mostly 0: bit-shuffling exposes that to zstd.
GENOTYPE_CODEC = Blosc(cname="zstd", clevel=3, shuffle=Blosc.BITSHUFFLE)
DEFAULT_CODEC = Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
_VLEN = VLenUTF8()


def write_group(path: Path, attrs: dict[str, object] | None = None) -> None:
    path.mkdir(parents=True, exist_ok=True)
    (path / ".zgroup").write_text(json.dumps({"zarr_format": 2}))
    if attrs is not None:
        (path / ".zattrs").write_text(json.dumps(attrs, indent=1))


def create_array(group: Path, name: str, *, shape: Sequence[int], chunks: Sequence[int],
                 dtype: np.dtype | str, dimensions: Sequence[str], fill_value: object = None,
                 codec: Blosc = DEFAULT_CODEC) -> Path:
    """Write the metadata of an array (no chunks yet)."""
    dtype = np.dtype(dtype)
    path = group / name
    path.mkdir(parents=True, exist_ok=True)
    is_text = dtype.kind in "OUT"
    meta = {
        "zarr_format": 2,
        "shape": list(shape),
        "chunks": [max(1, c) for c in chunks],
        "dtype": "|O" if is_text else dtype.str,
        "compressor": codec.get_config(),
        "fill_value": "" if is_text and fill_value is None else _json_fill(fill_value, dtype),
        "order": "C",
        "filters": [_VLEN.get_config()] if is_text else None,
        "dimension_separator": ".",
    }
    (path / ".zarray").write_text(json.dumps(meta))
    (path / ".zattrs").write_text(json.dumps({"_ARRAY_DIMENSIONS": list(dimensions)}))
    return path


def _json_fill(value: object, dtype: np.dtype) -> object:
    if value is None:
        return None
    if dtype.kind == "f" and isinstance(value, float) and np.isnan(value):
        return "NaN"
    if dtype.kind == "b":
        return bool(value)
    return value.item() if isinstance(value, np.generic) else value


def write_chunk(array_path: Path, coords: Sequence[int], data: np.ndarray,
                chunks: Sequence[int], fill_value: object, codec: Blosc = DEFAULT_CODEC) -> None:
    """Write one chunk; `data` may be smaller than a chunk at the array's edges (padded here)."""
    write_payload(array_path, coords, encode_chunk(data, chunks, fill_value, codec))


def encode_chunk(data: np.ndarray, chunks: Sequence[int], fill_value: object,
                 codec: Blosc = DEFAULT_CODEC) -> bytes:
    """The stored bytes of one chunk (padded with `fill_value` to the chunk shape)."""
    if tuple(data.shape) != tuple(chunks):
        padded = np.full(chunks, fill_value, dtype=data.dtype)
        padded[tuple(slice(0, n) for n in data.shape)] = data
        data = padded
    if data.dtype.kind in "OUT":
        return bytes(codec.encode(_VLEN.encode(np.asarray(data, dtype=object).ravel())))
    return bytes(codec.encode(np.ascontiguousarray(data)))


def write_payload(array_path: Path, coords: Sequence[int], payload: bytes) -> None:
    """Store an encoded chunk under its key, atomically (a reader never sees half a chunk)."""
    key = array_path / ".".join(str(c) for c in coords)
    tmp = key.with_name(key.name + f".tmp{os.getpid()}")
    tmp.write_bytes(payload)
    os.replace(tmp, key)


def write_array(group: Path, name: str, data: np.ndarray, *, chunks: Sequence[int],
                dimensions: Sequence[str], fill_value: object = None,
                codec: Blosc = DEFAULT_CODEC) -> None:
    """Create an array and write all of it (for the small per-variant and per-sample arrays)."""
    path = create_array(group, name, shape=data.shape, chunks=chunks, dtype=data.dtype,
                        dimensions=dimensions, fill_value=fill_value, codec=codec)
    if data.dtype.kind in "OUT":
        fill: object = ""
    elif fill_value is not None:
        fill = fill_value
    else:
        fill = 0
    ranges = [range(0, max(n, 1), max(1, c)) for n, c in zip(data.shape, chunks, strict=True)]
    for starts in itertools.product(*ranges):
        block = data[tuple(slice(s, s + max(1, c)) for s, c in zip(starts, chunks, strict=True))]
        if block.size == 0 and data.size:
            continue
        coords = [s // max(1, c) for s, c in zip(starts, chunks, strict=True)]
        write_chunk(path, coords, block, [max(1, c) for c in chunks], fill, codec)


# -- reading a few rows of a chunk ------------------------------------------------------------
def _blosc_getitem() -> Callable[[bytes, int, int, object], int] | None:
    """c-blosc's `blosc_getitem`, which decompresses only the internal blocks (128 KiB) that hold
    the items asked for. numcodecs links c-blosc into its extension and exports the symbol but
    has no Python binding for it; without the symbol, callers fall back to whole chunks."""
    try:
        import numcodecs.blosc

        library = ctypes.CDLL(numcodecs.blosc.__file__)
        getitem = library.blosc_getitem
    except (OSError, AttributeError):
        return None
    getitem.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.c_void_p]
    getitem.restype = ctypes.c_int
    return getitem


BLOSC_GETITEM = _blosc_getitem()


def read_items(payload: bytes, start: int, count: int, dtype: np.dtype) -> np.ndarray:
    """Items `start .. start + count` of a blosc-compressed chunk (C order, flattened)."""
    out = np.empty(count, dtype=dtype)
    if BLOSC_GETITEM is not None:
        if BLOSC_GETITEM(payload, start, count, out.ctypes.data) < 0:
            raise ValueError("corrupt genotype chunk (blosc_getitem failed)")
        return out
    whole = np.frombuffer(Blosc().decode(payload), dtype=dtype)
    out[:] = whole[start:start + count]
    return out
