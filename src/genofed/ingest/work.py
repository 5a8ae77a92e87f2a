"""Ingest's work manager: runs tasks on a pool of forked worker processes, in this process, or
on the workers of a dask.distributed cluster (:mod:`genofed.ingest.cluster`).

A task is a plain function `task(context, item)`: everything it needs beyond its item comes in the
:class:`WorkerContext` it is given, so it can be called (and stepped through in a debugger)
directly. With more than one worker, the context reaches each worker process once, through the
pool's initializer (fork: inherited, not pickled, however large the input held in memory), and a
small trampoline hands it to every task the worker runs; only items and results cross processes.
With one worker, tasks run in the calling process when they are submitted. On a cluster, the
context is sent to each worker once and tasks run there; their futures behave as the pool's.
"""

from __future__ import annotations

import ctypes
import multiprocessing
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from genofed.config.cluster import connect
from genofed.errors import IngestClusterError, IngestError
from genofed.ingest.counting import SampleClasses
from genofed.ingest.sources import VcfSource
from genofed.store.genotypes import ChunkWriter

if TYPE_CHECKING:
    from genofed.ingest.cluster import ClusterWork

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class WorkerContext:
    """What every ingest task may read: the input, the staging directories and the writers."""

    source: VcfSource
    #: Where parsed pieces spill their genotypes (.npy) until the chunks holding them are written.
    spill: Path
    classes: SampleClasses
    #: Writes genotype chunks; each worker process has its own copy (and buffers).
    chunks: ChunkWriter


@dataclass(frozen=True)
class Cluster:
    """A dask.distributed scheduler to run the tasks on, and where its address was given (for
    the errors that name it)."""

    address: str
    setting: str = "ingest.scheduler in node.toml"


# The context of this worker process, set once by the pool's initializer (never in the parent).
_context: WorkerContext | None = None


def _enter_worker(context: WorkerContext) -> None:
    global _context
    _context = context
    _keep_freed_memory()
    _single_codec_thread()


def _single_codec_thread() -> int:
    """Compress with one blosc thread; returns the count before. Each worker has a core's share,
    so codec threads on top would only contend; and chunks compressed by one thread are the same
    bytes whichever process writes them (in-process or pooled ingests store identical files)."""
    import numcodecs.blosc

    before = int(numcodecs.blosc.get_nthreads())
    numcodecs.blosc.set_nthreads(1)
    return before


def _trampoline(task: Callable[[WorkerContext, T], R], item: T) -> R:
    assert _context is not None, "ingest tasks run in workers started by WorkManager"
    return task(_context, item)


def _keep_freed_memory() -> None:
    """Workers allocate and free arrays of tens of MB per piece. glibc returns such blocks to the
    kernel at once, and the next piece faults every page back in (seconds of system time per
    ingest); raising the mmap and trim thresholds makes freed memory reusable instead."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


class WorkManager:
    """`submit(task, item)` -> a Future of `task(context, item)`; use as a context manager.

    A worker that dies (e.g. killed for memory) fails the ingest with an :class:`IngestError`
    saying so; any other exception of a task is raised by its Future as it was raised.

    With a `cluster`, `workers` is ignored: once entered, :attr:`workers` is the number of
    threads of the cluster's workers."""

    def __init__(self, context: WorkerContext, workers: int,
                 cluster: Cluster | None = None) -> None:
        self.context = context
        self.workers = max(1, workers)
        self.cluster = cluster
        self._pool: ProcessPoolExecutor | None = None
        self._codec_threads: int | None = None
        self._remote: ClusterWork | None = None

    @property
    def in_process(self) -> bool:
        return self.workers == 1 and self.cluster is None

    def __enter__(self) -> WorkManager:
        if self.cluster is not None:
            client = connect(self.cluster.address, setting=self.cluster.setting,
                             error=IngestClusterError)
            from genofed.ingest.cluster import ClusterWork  # dask.distributed is installed

            self._remote = ClusterWork(self.context, self.cluster, client)
            self.workers = self._remote.start()
        elif self.in_process:
            self._codec_threads = _single_codec_thread()
        else:
            self._pool = ProcessPoolExecutor(
                max_workers=self.workers, mp_context=multiprocessing.get_context("fork"),
                initializer=_enter_worker, initargs=(self.context,))
        return self

    def submit(self, task: Callable[[WorkerContext, T], R], item: T) -> Future[R]:
        if self._remote is not None:
            return self._remote.submit(task, item)
        if self._pool is not None:
            return self._pool.submit(_trampoline, task, item)
        future: Future[R] = Future()
        try:
            future.set_result(task(self.context, item))
        except Exception as exc:  # raised by result(), as a pool's future would
            future.set_exception(exc)
        return future

    def cancel_pending(self) -> None:
        if self._remote is not None:
            self._remote.cancel_pending()
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._remote is not None:
            self._remote.stop(failed=error is not None)
            self._remote = None
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=error is not None)
            self._pool = None
        if self._codec_threads is not None:
            import numcodecs.blosc

            numcodecs.blosc.set_nthreads(self._codec_threads)
            self._codec_threads = None
        if isinstance(error, BrokenProcessPool):
            raise IngestError("an ingest worker process died (out of memory?); try fewer "
                              "--workers") from None
