"""Ingest's tasks on the workers of a dask.distributed cluster (`[ingest] scheduler` in node.toml,
or `genofed ingest --scheduler`): the work manager's backend when a scheduler is named.

The same tasks as the local pool's (:mod:`genofed.ingest.work`), on the same pieces of the input:

- the :class:`~genofed.ingest.work.WorkerContext` is scattered to every worker once; each task
  receives it there, and each worker thread gets its own genotype chunk writer (its gather
  buffers are reused from chunk to chunk, and a worker with several threads runs tasks side by
  side);
- while the ingest runs, every worker compresses with one blosc thread (a worker plugin, removed
  at the end), so the chunks are the bytes a local ingest writes;
- each task's outcome is handed to a :class:`concurrent.futures.Future`, what the pipeline and
  its spill tracker wait on, exactly as for the pool;
- a worker that dies (Dask retries its task elsewhere, up to
  `distributed.scheduler.allowed-failures` times) or a scheduler that goes away fails the task,
  and so the ingest, with an :class:`~genofed.errors.IngestClusterError` saying which;
- on an error, queued tasks are cancelled and those already running are waited for, so nothing
  writes into the staging directory once it is removed (the node is left as it was).

Workers read the input and write into the node's staging directory by path: on a cluster of
several machines, the input file and the node directory must be on a filesystem every worker
mounts at the same path (a LocalCluster's workers share this machine's). Paths are made absolute
here, and a cluster whose workers cannot see them, or run another genofed, is refused at the
start, before any work.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import dataclasses
import functools
import itertools
import threading
import uuid
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError, Future
from pathlib import Path
from typing import Any, TypeVar

import distributed
from distributed.diagnostics.plugin import WorkerPlugin

from genofed import __version__
from genofed.errors import IngestClusterError
from genofed.ingest.work import Cluster, WorkerContext, _single_codec_thread
from genofed.store.genotypes import ChunkWriter

T = TypeVar("T")
R = TypeVar("R")


class ClusterWork:
    """Submits ingest tasks to the cluster `client` is connected to (it is closed by
    :meth:`stop`); :meth:`start` before, :meth:`stop` after."""

    def __init__(self, context: WorkerContext, cluster: Cluster,
                 client: distributed.Client) -> None:
        self.context = _absolute(context)
        self.cluster = cluster
        self._client: distributed.Client | None = client
        self._shared: distributed.Future[WorkerContext] | None = None
        #: Task keys start with it: this ingest's tasks, among whatever else the cluster runs.
        self._prefix = f"genofed-ingest-{uuid.uuid4().hex}"
        self._numbers = itertools.count()
        self._running: dict[str, distributed.Future[Any]] = {}
        self._lock = threading.Lock()
        self._cancelled = False

    def start(self) -> int:
        """Check the workers and set them up; returns how many threads they have."""
        client = self._client
        assert client is not None, "started once"
        try:
            threads = self._check(client)
            client.register_plugin(_OneCodecThread(), name=self._prefix)
            self._shared = client.scatter(self.context, broadcast=True, hash=False)
        except BaseException:
            self.stop(failed=True)
            raise
        return threads

    def _check(self, client: distributed.Client) -> int:
        where = f"the Dask cluster at {self.cluster.address} ({self.cluster.setting})"
        threads = client.nthreads()
        if not threads:
            raise IngestClusterError(f"{where} has no workers")
        paths = [str(self.context.source.path), str(self.context.spill)]
        try:
            views = client.run(_worker_view, paths)
        except Exception as exc:  # e.g. genofed is not installed where the workers run
            raise IngestClusterError(f"{where}: its workers cannot run genofed: "
                                     f"{type(exc).__name__}: {exc}") from None
        for worker, (version, missing) in sorted(views.items()):
            if version != __version__:
                raise IngestClusterError(
                    f"{where}: worker {worker} runs genofed {version}, this ingest "
                    f"{__version__}; install the same version on every worker")
            if missing:
                raise IngestClusterError(
                    f"{where}: worker {worker} cannot see {missing[0]}; the input file and the "
                    "node directory must be on a filesystem every worker mounts at the same "
                    "path")
        return sum(threads.values())

    def submit(self, task: Callable[[WorkerContext, T], R], item: T) -> Future[R]:
        assert self._client is not None and self._shared is not None, "start() first"
        key = f"{self._prefix}-{task.__name__}-{next(self._numbers)}"
        outcome: Future[R] = Future()
        remote = self._client.submit(_run, task, self._shared, item, key=key)
        with self._lock:  # held until settled: a Dask future nobody holds is forgotten
            self._running[key] = remote
        remote.add_done_callback(functools.partial(self._settle, outcome))
        return outcome

    def _settle(self, outcome: Future[Any], remote: distributed.Future[Any]) -> None:
        """Hand a finished task's outcome on (in the client's callback thread)."""
        try:
            value = remote.result()
        except BaseException as exc:
            if remote.status == "cancelled" and self._cancelled:
                outcome.cancel()
            else:
                outcome.set_exception(self._explain(remote, exc))
        else:
            outcome.set_result(value)
        finally:
            with self._lock:
                self._running.pop(str(remote.key), None)

    def _explain(self, remote: distributed.Future[Any], exc: BaseException) -> BaseException:
        """The task's own exception as it was raised; what the cluster did, said as such."""
        where = f"the Dask cluster at {self.cluster.address}"
        if isinstance(exc, distributed.KilledWorker):
            return IngestClusterError(f"{where}: a worker died running ingest task {remote.key} "
                                      f"(out of memory, or killed): {exc}")
        if remote.status == "error":
            return exc
        if isinstance(exc, CancelledError):  # e.g. the connection to the scheduler was lost
            return IngestClusterError(f"{where} dropped ingest task {remote.key}: {exc}")
        return IngestClusterError(f"{where}: the result of ingest task {remote.key} could not "
                                  f"be fetched: {type(exc).__name__}: {exc}")

    def cancel_pending(self) -> None:
        if self._client is not None:
            self._cancel(self._client)

    def _cancel(self, client: distributed.Client) -> None:
        with self._lock:
            pending = list(self._running.values())
        self._cancelled = True
        if pending:
            with _cluster_may_be_gone():
                client.cancel(pending)

    def stop(self, *, failed: bool) -> None:
        """Release the workers; after a failure, cancel what is queued and wait for what runs
        (it would write into a staging directory about to be removed)."""
        client, self._client = self._client, None
        if client is None:
            return
        try:
            if failed:
                self._cancel(client)
                with _cluster_may_be_gone():
                    client.run(_until_finished, self._prefix)
            with _cluster_may_be_gone():
                client.unregister_worker_plugin(self._prefix)
        finally:
            self._shared = None
            with _cluster_may_be_gone():
                client.close()


@contextlib.contextmanager
def _cluster_may_be_gone() -> Iterator[None]:
    """Cleanup on a cluster that may have gone away: the ingest's own outcome (its result, or
    the error that stopped it) is what the caller must see, not a failed goodbye."""
    with contextlib.suppress(Exception):
        yield


def _absolute(context: WorkerContext) -> WorkerContext:
    """The context with absolute paths (workers resolve relative ones against their own working
    directory); names in messages stay as given."""
    source = copy.copy(context.source)
    source.path = source.path.absolute()
    return dataclasses.replace(context, source=source, spill=context.spill.absolute(),
                               chunks=ChunkWriter(context.chunks.group.absolute(),
                                                  context.chunks.n_samples))


# -- on the workers ------------------------------------------------------------------------------
def _worker_view(paths: list[str]) -> tuple[str, list[str]]:
    """This worker's genofed version, and which of `paths` it cannot see."""
    return __version__, [p for p in paths if not Path(p).exists()]


async def _until_finished(prefix: str, dask_worker: distributed.Worker) -> None:
    """Wait until no task whose key starts with `prefix` occupies a thread of this worker
    (cancelled tasks keep running until they return)."""
    while any(str(ts.key).startswith(prefix) for ts in dask_worker.state.all_running_tasks):
        await asyncio.sleep(0.05)


class _OneCodecThread(WorkerPlugin):
    """One blosc thread on a worker while an ingest runs (the count before is restored)."""

    def __init__(self) -> None:
        self.before: int | None = None

    def setup(self, worker: distributed.Worker) -> None:
        self.before = _single_codec_thread()

    def teardown(self, worker: distributed.Worker) -> None:
        if self.before is not None:
            import numcodecs.blosc

            numcodecs.blosc.set_nthreads(self.before)


#: Each ingest's context as each worker thread sees it (its own chunk writer), by the id of the
#: scattered context, then the thread's. An ingest's copies go with its context (Dask drops it
#: when the ingest ends). Only atomic dict operations: a finalizer may run in any thread.
_copies: dict[int, dict[int, WorkerContext]] = {}


def _thread_context(shared: WorkerContext) -> WorkerContext:
    threads = _copies.get(id(shared))
    if threads is None:
        threads = _copies.setdefault(id(shared), {})
        weakref.finalize(shared, _copies.pop, id(shared), None)
    mine = threads.get(threading.get_ident())
    if mine is None:
        mine = threads[threading.get_ident()] = dataclasses.replace(
            shared, chunks=ChunkWriter(shared.chunks.group, shared.chunks.n_samples))
    return mine


def _run(task: Callable[[WorkerContext, T], R], shared: WorkerContext, item: T) -> R:
    return task(_thread_context(shared), item)
