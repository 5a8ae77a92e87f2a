"""Per-caller query budgets shared by all server processes of a node, through the governance
database: `limit` queries per caller in each window of `window` seconds.

A process does not write to the database for every query: it leases a block of queries for a
caller at a time (one short write transaction) and spends it locally. The database never grants
more than `limit` in a window, so a caller gets at most `limit` however many processes (or
machines) serve the node; what a process leased and did not spend before the window ended is
lost, so a caller spread over P processes may be refused up to (P - 1) blocks early. Windows are
fixed (aligned to multiples of `window`), not sliding: a caller may spend a budget at the end of
one window and another at the start of the next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from genofed.access.db import GovernanceDB, insert_new
from genofed.access.models import QueryCount
from genofed.errors import BudgetExceededError

#: Longest caller key stored (keys are a token subject's hash or an address).
_KEY = 128
#: Callers leasing before expired windows are swept out of the table.
_SWEEP_EVERY = 1000


@dataclass
class _Lease:
    window_start: int
    left: int


class SharedQueryBudget:
    """`charge(key)` once per query; raises :class:`BudgetExceededError` (429) when the caller
    has spent the window's budget. Thread-safe; one per server process."""

    def __init__(self, db: GovernanceDB, limit: int, window: float, *, lease: int | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.limit = limit
        self.window = max(1, int(window))
        #: Queries leased at a time: few writes, and little lost when several processes serve.
        self.lease = lease or max(1, min(50, limit // 20))
        self._clock = clock
        self._leases: dict[str, _Lease] = {}
        self._lock = threading.Lock()
        self._leased = 0

    def charge_locally(self, key: str) -> bool:
        """Charge one query from what this process has leased; False: :meth:`charge` must
        lease more (or refuse), which writes to the database."""
        start = int(self._clock()) // self.window * self.window
        with self._lock:
            lease = self._leases.get(key[:_KEY])
            if lease is not None and lease.window_start == start and lease.left > 0:
                lease.left -= 1
                return True
        return False

    def charge(self, key: str) -> None:
        if self.charge_locally(key):
            return
        now = self._clock()
        start = int(now) // self.window * self.window
        key = key[:_KEY]
        granted = self._take(key, start)  # outside the lock: a database round trip
        with self._lock:
            if granted <= 0:
                self._leases.pop(key, None)
                retry = max(1, int(start + self.window - now) + 1)
                raise BudgetExceededError(
                    f"query budget spent: {self.limit} queries per {self.window} s for this "
                    f"caller; retry in {retry} s", retry)
            self._leases[key] = _Lease(start, granted - 1)
            if len(self._leases) > 100_000:
                self._leases = {k: v for k, v in self._leases.items() if v.window_start == start}

    def _take(self, key: str, start: int) -> int:
        """Lease up to a block of the caller's window from the database; what was granted."""
        with self.db.write() as session:
            insert_new(session, QueryCount, [{"caller": key, "window_start": start, "granted": 0}],
                       [QueryCount.caller, QueryCount.window_start])
            statement = select(QueryCount.granted).where(
                QueryCount.caller == key, QueryCount.window_start == start)
            if session.get_bind().dialect.name == "postgresql":
                statement = statement.with_for_update()
            already = int(session.execute(statement).scalar_one())
            granted = max(0, min(self.lease, self.limit - already))
            if granted:
                row = session.get(QueryCount, (key, start))
                assert row is not None
                row.granted = already + granted
            self._leased += 1
            if self._leased % _SWEEP_EVERY == 0:
                session.execute(delete(QueryCount).where(QueryCount.window_start < start))
        return granted

