"""Where a node's statistics are computed: Dask's local threads, or the dask.distributed cluster
that `[analysis] scheduler` in node.toml names.

The choice is held per thread of control (a context variable) and passed to every compute call
explicitly: Dask's own switches (`dask.config.set(scheduler=...)`, a default Client) are global
to the process, so two nodes served by one process (the demo, the tests) or two rounds answered
at once would take each other's scheduler, and a restored setting could leak into later rounds.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from dask.base import compute as dask_compute

from genofed.config.cluster import connect
from genofed.errors import SchedulerError

__all__ = ["SchedulerError", "compute", "computing_on"]


#: "threads", or a dask.distributed Client.
_SCHEDULER: ContextVar[Any] = ContextVar("genofed_analysis_scheduler", default="threads")


@contextlib.contextmanager
def computing_on(address: str) -> Iterator[None]:
    """Compute on the cluster at `address` while the block runs (local threads if empty)."""
    if not address:
        token = _SCHEDULER.set("threads")
        try:
            yield
        finally:
            _SCHEDULER.reset(token)
        return
    client = connect(address, setting="analysis.scheduler in node.toml")
    with client:
        token = _SCHEDULER.set(client)
        try:
            yield
        finally:
            _SCHEDULER.reset(token)


def compute(*collections: Any) -> tuple[Any, ...]:
    """`dask.compute` on this round's scheduler."""
    return tuple(dask_compute(*collections, scheduler=_SCHEDULER.get()))
