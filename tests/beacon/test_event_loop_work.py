"""Which queries a node answers on its event loop (cheaper than a hop to a worker thread) and
which go to the thread pool: anything that may touch genotypes, decrypt a table or scan many
individuals must never stall the loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from genofed.beacon import service as beacon_service
from genofed.beacon.request import BeaconQuery, FilterSpec
from genofed.beacon.service import BeaconService, Scope
from genofed.store import NodeStore

WOMEN = [FilterSpec("NCIT:C16576"), FilterSpec("HP:0001250")]


@pytest.fixture
def service(ingested: Path) -> BeaconService:
    return BeaconService(NodeStore.open(ingested))


def test_phenotype_queries_over_few_loaded_individuals_are_quick(service: BeaconService) -> None:
    query = BeaconQuery(filters=WOMEN, parameters={"datasets": ["x"]})
    assert not service.answers_quickly("individuals", query, Scope()), \
        "the individuals table is not decrypted yet: that is work for a thread"
    for dataset in service.store.datasets():
        assert dataset.individuals.num_rows > 0
    assert service.answers_quickly("individuals", query, Scope())
    assert service.answers_quickly("biosamples", query, Scope())


def test_genotype_work_goes_to_the_thread_pool(service: BeaconService) -> None:
    for dataset in service.store.datasets():
        assert dataset.individuals.num_rows > 0
    variant = BeaconQuery(filters=WOMEN, parameters={"referenceName": "20", "start": [100]})
    assert not service.answers_quickly("individuals", variant, Scope())
    assert not service.answers_quickly("individuals", BeaconQuery(),
                                       Scope(variant_id="20:100:A:G"))
    assert not service.answers_quickly("g_variants", BeaconQuery(filters=WOMEN), Scope())
    assert service.answers_quickly("g_variants", BeaconQuery(parameters={"start": [1]}), Scope())


def test_many_individuals_go_to_the_thread_pool(service: BeaconService,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    for dataset in service.store.datasets():
        assert dataset.individuals.num_rows > 0
    monkeypatch.setattr(beacon_service, "QUICK_INDIVIDUALS", 10)
    assert not service.answers_quickly("individuals", BeaconQuery(filters=WOMEN), Scope())
