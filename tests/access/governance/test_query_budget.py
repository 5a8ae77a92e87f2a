"""Query budgets shared through the governance database (SQLite and PostgreSQL): a caller gets
at most its budget however many server processes answer it, and the next window refills it."""

from __future__ import annotations

import threading

import pytest

from genofed.access.db import GovernanceDB
from genofed.access.query_budget import SharedQueryBudget
from genofed.errors import BudgetExceededError


def _spend(budget: SharedQueryBudget, key: str, tries: int) -> int:
    granted = 0
    for _ in range(tries):
        try:
            budget.charge(key)
        except BudgetExceededError:
            continue
        granted += 1
    return granted


def test_a_caller_gets_its_budget_from_all_processes_together(db: GovernanceDB) -> None:
    """Three "processes" (budgets over one database, as three server processes hold) answer
    one caller in turn: together they grant exactly the limit, then refuse with a retry time."""
    now = [1_000_000.0]
    servers = [SharedQueryBudget(db, 100, 3600, lease=7, clock=lambda: now[0])
               for _ in range(3)]
    granted = 0
    for turn in range(300):
        try:
            servers[turn % 3].charge("sub:alice")
        except BudgetExceededError as refused:
            assert refused.status == 429 and refused.retry_after >= 1
            continue
        granted += 1
    assert 100 - 2 * 7 <= granted <= 100  # at most one unspent lease left in each other one
    assert _spend(servers[0], "sub:bob", 5) == 5  # another caller
    now[0] += 3600  # the next window
    assert _spend(servers[1], "sub:alice", 5) == 5


def test_concurrent_processes_never_grant_more_than_the_limit(db: GovernanceDB) -> None:
    budgets = [SharedQueryBudget(db, 60, 3600, lease=4) for _ in range(4)]
    counts = [0] * 4

    def hammer(i: int) -> None:
        counts[i] = _spend(budgets[i], "ip:10.0.0.1", 40)

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 60 - 3 * 4 <= sum(counts) <= 60


def test_leases_spare_the_database(db: GovernanceDB) -> None:
    budget = SharedQueryBudget(db, 10_000, 3600)
    assert budget.lease == 50
    budget.charge("sub:carol")
    assert all(budget.charge_locally("sub:carol") for _ in range(49))
    assert not budget.charge_locally("sub:carol")  # the lease is spent: the next one leases


@pytest.mark.parametrize("limit", [1, 3])
def test_small_budgets_lease_one_query_at_a_time(db: GovernanceDB, limit: int) -> None:
    budget = SharedQueryBudget(db, limit, 60)
    assert budget.lease == 1
    assert _spend(budget, "ip:127.0.0.1", limit + 2) == limit
