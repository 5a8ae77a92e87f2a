"""Asking through the network is no way around a node's exposure budgets: the hub's merged
answers are each node's own accounted answers, spent from the same ledger, repeated unchanged
when asked again directly, and an individual exhausted at the node is missing from them."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest

from genofed.access.db import GovernanceDB
from genofed.access.exposure import ExposureLedger
from genofed.store.node import NodeStore
from tests.federation.conftest import Federation, NodeUnderTest
from tests.support import set_exposure_budget

BUDGET = 5.0  # enough for every carrier to pay for a few exact counts


@pytest.fixture
def accounted(federation: Federation) -> Iterator[tuple[NodeUnderTest, ExposureLedger]]:
    """fi-a with exposure accounting on (node.toml is read live), and its ledger."""
    node = federation.nodes["fi-a"]
    set_exposure_budget(node.dir, BUDGET)
    db = GovernanceDB.for_node(node.dir)
    try:
        yield node, ExposureLedger(db, lambda: BUDGET)
    finally:
        set_exposure_budget(node.dir, 0)
        db.close()


def _alleles(node: NodeUnderTest, low: int, high: int) -> list[tuple[int, str, str, list[str]]]:
    """Alleles of the node's dataset seen `low`..`high` times, with their carriers."""
    dataset = NodeStore.open(node.dir).dataset(node.dataset)
    sites = dataset.sites
    ac = sites.column("ac").to_numpy()
    rows = np.flatnonzero((ac >= low) & (ac <= high))
    block = dataset.genotype_block(sites.column("variant_index").to_numpy()[rows])
    alleles = sites.column("allele_index").to_numpy()[rows]
    samples = np.asarray(dataset.samples, dtype=object)
    out = []
    for j, row in enumerate(rows):
        carriers = (block.calls[j] == alleles[j]).any(axis=1)
        out.append((int(sites.column("pos")[row].as_py()), str(sites.column("ref")[row]),
                    str(sites.column("alt")[row]), [str(s) for s in samples[carriers]]))
    return out


def _body(pos: int, ref: str, alt: str, dataset: str) -> dict[str, Any]:
    return {"meta": {"apiVersion": "v2.0"}, "query": {
        "requestParameters": {"referenceName": "20", "start": [pos - 1], "referenceBases": ref,
                              "alternateBases": alt, "datasets": [dataset]},
        "requestedGranularity": "count", "includeResultsetResponses": "ALL"}}


def _count(url: str, body: dict[str, Any], headers: dict[str, str], dataset: str) -> int:
    response = httpx.post(url, json=body, headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    (result,) = [s for s in response.json()["response"]["resultSets"] if s["id"] == dataset]
    return int(result["resultsCount"])


def test_merged_answers_spend_the_nodes_budgets(
        federation: Federation, accounted: tuple[NodeUnderTest, ExposureLedger]) -> None:
    node, ledger = accounted
    hub = f"{federation.hub}/network/beacon/individuals"
    direct = f"{node.url}/beacon/individuals"
    alleles = _alleles(node, 6, 12)[:4]
    assert alleles
    before = sum(ledger.spent(node.samples).values())
    through_hub = [_count(hub, _body(p, r, a, node.dataset), federation.researcher,
                          node.dataset) for p, r, a, _ in alleles]
    spent = ledger.spent(node.samples)
    assert sum(spent.values()) > before
    # the node's own answer to the same question: the one it gave the hub, at no cost
    assert [_count(direct, _body(p, r, a, node.dataset), federation.researcher, node.dataset)
            for p, r, a, _ in alleles] == through_hub
    assert ledger.spent(node.samples) == spent
    # each node's policy travels with its result sets
    pos, ref, alt, _ = alleles[0]
    merged = httpx.post(hub, json=_body(pos, ref, alt, node.dataset),
                        headers=federation.researcher, timeout=30).json()
    (result,) = [s for s in merged["response"]["resultSets"] if s["id"] == node.dataset]
    assert result["info"]["node"]["disclosure"]["exposureBudget"]["nats"] == BUDGET
    assert "info.node.disclosure" in merged["info"]["disclosure"]


def test_an_individual_exhausted_at_the_node_is_missing_from_the_network(
        federation: Federation, accounted: tuple[NodeUnderTest, ExposureLedger]) -> None:
    node, ledger = accounted
    hub = f"{federation.hub}/network/beacon/individuals"
    pos, ref, alt, carriers = _alleles(node, 14, 40)[-1]
    ledger.spend({carriers[0]: 1000.0})
    shown = _count(hub, _body(pos, ref, alt, node.dataset), federation.researcher, node.dataset)
    assert shown == len(carriers) - 1
