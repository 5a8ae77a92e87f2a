"""Who is asking, and how much each dataset may tell them.

Tiers (dataset metadata `accessTier`) set the finest granularity a dataset releases:

========== =================================================================
public     boolean (exists / does not exist)
registered count
controlled record for a caller holding a ControlledAccessGrants visa for the
           dataset id; otherwise count (the access issue wires visas; until
           then no caller holds one and record level is refused)
========== =================================================================

A request for a finer granularity than allowed is *degraded*, never silently: the resultSet says
`returnedGranularity` and why in its `info`. :func:`allowed_granularity` is the single decision
point, so the access policy can replace it later.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from genofed.beacon.errors import BudgetExceededError
from genofed.beacon.request import Granularity
from genofed.store.dataset import Dataset
from genofed.store.metadata import AccessTier

_CEILING = {
    AccessTier.PUBLIC: Granularity.BOOLEAN,
    AccessTier.REGISTERED: Granularity.COUNT,
    AccessTier.CONTROLLED: Granularity.COUNT,
}


@dataclass(frozen=True)
class Caller:
    """The requester as far as the Beacon knows it. `key` identifies them for the query budget
    (a hash of the bearer token, else the client address)."""

    key: str
    authenticated: bool = False
    #: Dataset ids the caller holds a ControlledAccessGrants visa for (none until visas exist).
    visas: frozenset[str] = field(default_factory=frozenset)


def caller_from(authorization: str | None, client_host: str | None) -> Caller:
    if authorization and authorization.lower().startswith("bearer ") and authorization[7:].strip():
        digest = hashlib.sha256(authorization[7:].strip().encode()).hexdigest()[:24]
        return Caller(key=f"token:{digest}")
    return Caller(key=f"ip:{client_host or 'unknown'}")


CallerResolver = Callable[[str | None, str | None], Caller]


def allowed_granularity(dataset: Dataset, requested: Granularity, caller: Caller) -> Granularity:
    """The granularity `dataset` answers `caller` with when `requested` is asked for."""
    tier = dataset.metadata.access_tier
    ceiling = _CEILING[tier]
    if tier is AccessTier.CONTROLLED and dataset.id in caller.visas:
        ceiling = Granularity.RECORD
    return requested if requested.rank <= ceiling.rank else ceiling


def degradation_note(dataset: Dataset, requested: Granularity, granted: Granularity) -> str | None:
    if granted == requested:
        return None
    tier = dataset.metadata.access_tier
    if tier is AccessTier.CONTROLLED:
        return (f"{requested.value} level refused: dataset {dataset.id!r} is controlled-access and "
                f"record level needs a ControlledAccessGrants visa for it; answered at "
                f"{granted.value} level")
    return (f"{requested.value} level refused: dataset {dataset.id!r} is {tier.value}-tier, which "
            f"answers at most at {granted.value} level")


class QueryBudget:
    """At most `limit` queries per caller key in any `window` seconds (in memory, per process)."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def charge(self, key: str) -> None:
        now = self._clock()
        with self._lock:
            calls = self._calls.setdefault(key, deque())
            while calls and calls[0] <= now - self.window:
                calls.popleft()
            if len(calls) >= self.limit:
                retry = max(1, int(calls[0] + self.window - now) + 1)
                raise BudgetExceededError(
                    f"query budget spent: {self.limit} queries per {int(self.window)} s for this "
                    f"caller; retry in {retry} s", retry)
            calls.append(now)
            if len(self._calls) > 100_000:
                self._calls = {k: v for k, v in self._calls.items()
                               if v and v[-1] > now - self.window}
