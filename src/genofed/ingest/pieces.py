"""Ingest's two kinds of task (run by :mod:`genofed.ingest.work`):

1. :func:`parse_piece` inflates and parses one piece of the VCF, counts alleles for every group
   (:mod:`genofed.ingest.counting`) and spills the piece's genotypes to the staging directory as
   .npy, returning everything else;
2. :func:`write_chunk` gathers one variant chunk's rows from the spills of the pieces covering it
   and hands them to the store's genotype writer; a piece's spill is deleted as soon as every
   chunk holding its rows is written (so the kernel reuses its memory instead of finding fresh
   pages).
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from genofed.ingest.counting import AlleleCounts, allele_counts
from genofed.ingest.sources import Piece, read_bcf
from genofed.ingest.vcf_records import FLAG_NEGATIVE, FLAG_UNPHASED, parse_records
from genofed.ingest.work import WorkerContext
from genofed.store.genotypes import VARIANT_CHUNK, Fragment


@dataclass
class PieceResult:
    """A parsed piece, without its genotypes (they are spilled)."""

    index: int
    n_records: int
    contigs: list[str]  # local names; `contig` indexes into them
    contig: np.ndarray
    position: np.ndarray
    ids: list[str]
    alleles: list[list[str]]
    quality: np.ndarray
    filters: list[list[str]]
    counts: AlleleCounts
    flags: np.ndarray  # per record: FLAG_NEGATIVE | FLAG_UNPHASED (which chunks need writing)
    lines_aligned: bool = False  # every BGZF block of the piece ends at a line end

    @property
    def phase_spilled(self) -> bool:
        """Whether the phase flags were spilled (they are not when every call is phased)."""
        return bool((self.flags & FLAG_UNPHASED).any())


def _spill_path(spill: Path, piece: int, kind: str) -> Path:
    return spill / f"{piece}.{kind}.npy"


def parse_piece(context: WorkerContext, piece: Piece) -> PieceResult:
    source = context.source
    n_samples = len(source.header.samples)
    aligned = False
    if source.kind == "bcf":
        records = read_bcf(source)
    else:
        parts, aligned = source.piece_parts(piece)
        records = parse_records(parts, n_samples, name=source.name,
                                first_line=1 if piece.index == 0 else None)
        del parts
    result = PieceResult(piece.index, len(records), records.contigs, records.contig,
                         records.position, records.ids, records.alleles, records.quality,
                         records.filters, allele_counts(records, context.classes), records.flags,
                         aligned)
    _spill(_spill_path(context.spill, piece.index, "gt"), records.genotypes)
    if result.phase_spilled:  # the chunk writers read the same property
        _spill(_spill_path(context.spill, piece.index, "ph"), records.phased)
    return result


def _spill(path: Path, array: np.ndarray) -> None:
    """`np.save`, atomically: on a Dask cluster a piece may be parsed twice at once (the
    scheduler reruns the tasks of a worker it lost touch with), and a chunk writer must never
    read a spill that the other run is rewriting."""
    tmp = path.with_name(f"{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        np.save(handle, array)
    os.replace(tmp, path)


# -- genotype chunks ------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpillRows:
    """Rows `start:stop` of a piece's spill, landing at row `at` of a chunk."""

    piece: int
    start: int
    stop: int
    at: int
    phase_spilled: bool


@dataclass(frozen=True)
class ChunkPlan:
    chunk: int
    rows: int
    sources: list[SpillRows]
    negative: bool  # some allele is missing or absent: the mask chunk is needed
    unphased: bool  # some call is unphased: the phase chunk is not all True


def chunks_overlapping(start: int, stop: int) -> int:
    """How many variant chunks hold rows `start:stop` (0 for none)."""
    return 0 if stop <= start else (stop - 1) // VARIANT_CHUNK - start // VARIANT_CHUNK + 1


def chunk_plan(chunk: int, offsets: list[int], results: list[PieceResult],
               n_records: int) -> ChunkPlan:
    """Where the rows of variant chunk `chunk` come from (`offsets`: first record of each parsed
    piece, then the total so far)."""
    lo = chunk * VARIANT_CHUNK
    hi = min(lo + VARIANT_CHUNK, n_records)
    sources = []
    flags = 0
    for index, (start, stop) in enumerate(itertools.pairwise(offsets)):
        if stop <= lo or start >= hi:
            continue
        a, b = max(lo, start) - start, min(hi, stop) - start
        result = results[index]
        sources.append(SpillRows(result.index, a, b, start + a - lo, result.phase_spilled))
        flags |= int(np.bitwise_or.reduce(result.flags[a:b])) if b > a else 0
    return ChunkPlan(chunk, hi - lo, sources, bool(flags & FLAG_NEGATIVE),
                     bool(flags & FLAG_UNPHASED))


def write_chunk(context: WorkerContext, plan: ChunkPlan) -> None:
    fragments = [
        Fragment(np.load(_spill_path(context.spill, s.piece, "gt"), mmap_mode="r"),
                 np.load(_spill_path(context.spill, s.piece, "ph"), mmap_mode="r")
                 if s.phase_spilled else None, s.start, s.stop, s.at)
        for s in plan.sources]
    context.chunks.write(plan.chunk, plan.rows, fragments, negative=plan.negative,
                         unphased=plan.unphased)


class SpillTracker:
    """Deletes a piece's spill once every chunk holding its rows is written (the parent sets
    how many chunks that is when the piece is parsed, before any of them is submitted)."""

    def __init__(self, spill: Path) -> None:
        self.spill = spill
        self.pending: dict[int, int] = {}
        self.lock = threading.Lock()

    def expect(self, piece: int, chunks: int) -> None:
        with self.lock:
            self.pending[piece] = chunks
        if chunks == 0:
            self._delete(piece)

    def release_when_done(self, write: Future[None], pieces: list[int]) -> None:
        def done(future: Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # the staging directory goes as a whole
            for piece in pieces:
                with self.lock:
                    self.pending[piece] -= 1
                    finished = self.pending[piece] == 0
                if finished:
                    self._delete(piece)

        write.add_done_callback(done)

    def _delete(self, piece: int) -> None:
        for kind in ("gt", "ph"):
            _spill_path(self.spill, piece, kind).unlink(missing_ok=True)
