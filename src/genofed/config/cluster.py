"""Connecting to the dask.distributed cluster a node's settings name (`[analysis] scheduler`,
`[ingest] scheduler`), for the packages that compute there.

dask.distributed is an optional dependency (`pip install 'genofed[cluster]'`): it is imported
only when an address is given. How long a connection is tried is Dask's connect timeout
(`distributed.comm.timeouts.connect`, 30 s unless the Dask configuration or the environment
variable DASK_DISTRIBUTED__COMM__TIMEOUTS__CONNECT says otherwise).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from genofed.errors import SchedulerError

if TYPE_CHECKING:
    from distributed import Client


def connect(address: str, *, setting: str,
            error: type[SchedulerError] = SchedulerError) -> Client:
    """A Client of the scheduler at `address` (close it when done: `with connect(...) as c`).
    `setting` says where the address came from, for the message of the `error` raised when
    dask.distributed is missing or the scheduler cannot be reached."""
    try:
        from distributed import Client
    except ImportError:
        raise error(f"{setting} names a Dask cluster, but dask.distributed is not installed "
                    "here (pip install 'genofed[cluster]')") from None
    try:
        # Never the process's default client: two nodes served by one process (the demo, the
        # tests) would take each other's cluster.
        return Client(address, set_as_default=False)
    except (OSError, ValueError, TypeError) as exc:  # unreachable; not an address
        raise error(f"the Dask cluster at {address} ({setting}) cannot be reached: "
                    f"{exc}") from None
