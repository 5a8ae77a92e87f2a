"""Who is asking, and how much each dataset may tell them.

The Beacon never judges access itself: for each dataset it asks the node's one policy
(:mod:`genofed.access.policy`) for the requested granularity, and on a deny for the next coarser
one (record -> count -> boolean); every ask is audited by the policy. Tiers (dataset metadata
`accessTier`):

========== =================================================================================
public     boolean for anyone
registered count for a caller holding a ResearcherStatus visa
controlled record for a caller holding a valid ControlledAccessGrants visa for the dataset id
========== =================================================================================

A request for a finer granularity than allowed is *degraded*, never silently: the resultSet says
`returnedGranularity` and why in its `info`. When the caller names the datasets (path or
`datasets` parameter) and asks for records of a controlled dataset they hold no valid visa for,
the request is refused (403) instead: they asked for those records and nothing else.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from starlette.requests import Request

from genofed.access.policy import AccessPolicy, Action, Decision
from genofed.access.principal import Principal
from genofed.beacon.request import Granularity
from genofed.errors import BudgetExceededError
from genofed.store.dataset import Dataset

ACTIONS = {
    Granularity.RECORD: Action.BEACON_RECORD,
    Granularity.COUNT: Action.BEACON_COUNT,
    Granularity.BOOLEAN: Action.BEACON_BOOLEAN,
}
_COARSER = [Granularity.RECORD, Granularity.COUNT, Granularity.BOOLEAN]


@dataclass(frozen=True)
class Requester:
    """The caller of one Beacon request: who they are (None: anonymous), the key their query
    budget is charged to (their pseudonym, else their address), and the policy that judges."""

    principal: Principal | None
    key: str
    policy: AccessPolicy


@dataclass(frozen=True)
class Granted:
    granularity: Granularity | None  # None: the dataset may not even say whether it matches
    #: The note for the resultSet when a finer granularity was refused (else None).
    refusal: str | None
    #: The policy's reason for that refusal.
    reason: str = ""


def granted_granularity(dataset: Dataset, requested: Granularity, requester: Requester,
                        detail: str = "", *, degrade: bool = True) -> Granted:
    """The finest granularity not above `requested` the policy allows `requester` on `dataset`
    (with `degrade=False`, only `requested` is asked for: nothing coarser is released, or
    audited as released, when the caller will be refused anyway)."""
    refusal: Decision | None = None
    levels = _COARSER[_COARSER.index(requested):]
    for granularity in levels if degrade else levels[:1]:
        decision = requester.policy.decide(requester.principal, dataset.metadata,
                                           ACTIONS[granularity], detail=detail)
        if decision.allowed:
            if refusal is None:
                return Granted(granularity, None)
            return Granted(granularity, _note(dataset, requested, granularity, refusal),
                           refusal.reason)
        refusal = refusal or decision
    return Granted(None, _note(dataset, requested, None, refusal),
                   refusal.reason if refusal else "")


async def requested_action(request: Request) -> Action:
    """The action a Beacon request asks for, by its requestedGranularity (query string of a GET,
    JSON body of a POST), read before the request itself is parsed: a request refused at the
    door (an invalid token) is audited as what it asked for, so a refused count or record
    request is not recorded as a boolean one. What cannot be read counts as boolean, the
    Beacon's default granularity (the request is then refused as malformed anyway)."""
    requested: object = request.query_params.get("requestedGranularity")
    if request.method == "POST":
        try:
            body = json.loads(await request.body() or b"null")
        except ValueError:
            body = None
        query = body.get("query") if isinstance(body, dict) else None
        requested = query.get("requestedGranularity") if isinstance(query, dict) else None
    if isinstance(requested, str) and requested in tuple(Granularity):
        return ACTIONS[Granularity(requested)]
    return Action.BEACON_BOOLEAN


def _note(dataset: Dataset, requested: Granularity, granted: Granularity | None,
          refusal: Decision | None) -> str:
    reason = refusal.reason if refusal else "refused"
    answered = f"answered at {granted.value} level" if granted else "not answered"
    return (f"{requested.value} level refused for dataset {dataset.id!r} "
            f"({dataset.metadata.access_tier.value} tier): {reason}; {answered}")


class QueryBudget:
    """At most `limit` queries per caller key in any `window` seconds, in memory: for one process
    (tests, tools). A node's servers share :class:`~genofed.access.query_budget.SharedQueryBudget`
    through the governance database."""

    def __init__(self, limit: int, window: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._calls: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def charge_locally(self, key: str) -> bool:
        """Charge one query (nothing here needs I/O): True, or BudgetExceededError."""
        self.charge(key)
        return True

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
