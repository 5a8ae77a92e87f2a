"""Disclosure control: small counts are never revealed below the floor, rare alleles take part in
no boolean match and reach registered callers as imprecise counts, and the per-caller query
budget answers 429 with the error envelope."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.beacon.access import QueryBudget
from genofed.beacon.disclosure import disclose
from genofed.errors import BudgetExceededError
from genofed.server.app import create_app

FLOOR = 5
R = "framework/json/responses/"


def test_disclose_rule() -> None:
    assert disclose(0, FLOOR).value == 0 and disclose(0, FLOOR).precision == "exact"
    for small in range(1, FLOOR):
        shown = disclose(small, FLOOR)
        assert (shown.value, shown.precision, shown.adjusted_to) == (FLOOR, "imprecise", FLOOR)
    assert disclose(FLOOR, FLOOR).value == FLOOR and disclose(7, FLOOR).precision == "exact"


def test_small_counts_never_revealed(client: TestClient) -> None:
    store = client.app.state.beacon.service.store  # type: ignore[attr-defined]
    dataset = store.dataset("ds-registered")
    # each individual by id: a true count of 1, reported as the floor, marked imprecise
    for sample in dataset.samples[:5]:
        document = client.get(f"/beacon/individuals/{sample}",
                              params={"requestedGranularity": "count",
                                      "datasets": "ds-registered"}).json()
        (result_set,) = [s for s in document["response"]["resultSets"]
                         if s["id"] == "ds-registered"]
        assert result_set["resultsCount"] == FLOOR
        assert result_set["countPrecision"] == "imprecise"
        assert result_set["countAdjustedTo"] == [FLOOR]
        assert document["responseSummary"]["countPrecision"] == "imprecise"
    # no count in 1..floor-1 ever appears, across many filter combinations
    terms = ["NCIT:C16576", "NCIT:C20197", "HP:0001250", "HP:0000964", "HP:0012378",
             "OMIM:616685", "age>=P60Y", "age<P20Y"]
    for first in terms:
        for second in terms:
            document = client.get("/beacon/individuals", params={
                "filters": f"{first},{second}", "requestedGranularity": "count",
                "includeResultsetResponses": "ALL"}).json()
            for result_set in document["response"]["resultSets"]:
                assert not 0 < result_set["resultsCount"] < FLOOR, (first, second, result_set)


def test_rare_alleles_hidden_from_boolean_answers(client: TestClient,
                                                  visa_client: TestClient) -> None:
    store = client.app.state.beacon.service.store  # type: ignore[attr-defined]
    sites = store.dataset("ds-controlled").sites.to_pylist()
    rare = [s for s in sites if 0 < s["ac"] < FLOOR][:5]
    assert rare
    for site in rare:
        variant = f"GRCh38:20:{site['pos']}:{site['ref']}:{site['alt']}"
        for path in (f"/beacon/g_variants/{variant}",
                     f"/beacon/g_variants/{variant}/individuals"):
            document = client.get(path, params={"requestedGranularity": "boolean",
                                                "includeResultsetResponses": "ALL",
                                                "datasets": "ds-controlled"}).json()
            (result_set,) = document["response"]["resultSets"]
            assert result_set["exists"] is False, path
            assert result_set["resultsCount"] == 0
        # a visa holder at record level sees the variant and its carriers exactly
        document = visa_client.get(f"/beacon/g_variants/{variant}/individuals", params={
            "requestedGranularity": "record", "datasets": "ds-controlled"}).json()
        (result_set,) = document["response"]["resultSets"]
        assert result_set["exists"] is True and 1 <= result_set["resultsCount"] < FLOOR


def test_registered_callers_find_rare_alleles_as_imprecise_counts(
        client: TestClient, schemas: Any) -> None:
    """A rare allele is no longer nothing to a registered caller: it exists, its carriers are
    "between 1 and floor - 1", and the answer hands over to the dataset's access application."""
    store = client.app.state.beacon.service.store  # type: ignore[attr-defined]
    sites = store.dataset("ds-controlled").sites.to_pylist()
    # Carried by a few (a sole carrier's allele costs more evidence than one budget holds).
    rare = [s for s in sites if 3 <= s["ac"] < FLOOR][:3]
    assert rare
    for site in rare:
        variant = f"GRCh38:20:{site['pos']}:{site['ref']}:{site['alt']}"
        params = {"requestedGranularity": "count", "datasets": "ds-controlled"}
        variants = client.get(f"/beacon/g_variants/{variant}", params=params).json()
        schemas.check(R + "beaconResultsetsResponse.json", variants)
        (result_set,) = variants["response"]["resultSets"]
        assert result_set["exists"] is True and result_set["resultsCount"] == 1
        assert "fewer than 5 individuals" in result_set["info"]["rareAlleles"]
        (handover,) = variants["beaconHandovers"]
        assert handover["url"].endswith("/catalogue/datasets/ds-controlled")
        assert "/access/applications" in handover["note"]
        people = client.get(f"/beacon/g_variants/{variant}/individuals", params=params).json()
        schemas.check(R + "beaconResultsetsResponse.json", people)
        (result_set,) = people["response"]["resultSets"]
        assert (result_set["resultsCount"], result_set["countPrecision"],
                result_set["countAdjustedTo"]) == (FLOOR, "imprecise", [FLOOR])
        assert people["beaconHandovers"][0]["url"] == handover["url"]


def test_query_budget_gives_429(beacon_node: Any, schemas: Any, researcher_token: str) -> None:
    app = create_app(beacon_node.node_dir, budget=QueryBudget(3, 3600))
    with TestClient(app) as http:
        for _ in range(3):
            assert http.get("/beacon/individuals").status_code == 200
        response = http.get("/beacon/individuals")
        assert response.status_code == 429
        assert int(response.headers["retry-after"]) > 0
        schemas.check(R + "beaconErrorResponse.json", response.json())
        assert "budget" in response.json()["error"]["errorMessage"]
        # per caller: a researcher's token has its own budget
        other = http.get("/beacon/individuals",
                         headers={"Authorization": f"Bearer {researcher_token}"})
        assert other.status_code == 200
        # informational endpoints are not charged
        assert http.get("/beacon/info").status_code == 200


def test_budget_window_refills() -> None:
    now = [0.0]
    budget = QueryBudget(2, 10, clock=lambda: now[0])
    budget.charge("a")
    budget.charge("a")
    with pytest.raises(BudgetExceededError) as refused:
        budget.charge("a")
    assert refused.value.status == 429
    budget.charge("b")  # another caller
    now[0] = 10.5
    budget.charge("a")


def test_validator_is_not_vacuous(schemas: Any) -> None:
    individual = "models/json/beacon-v2-default-model/individuals/defaultSchema.json"
    variant = "models/json/beacon-v2-default-model/genomicVariations/defaultSchema.json"
    assert schemas.errors(individual, {"id": "x"})  # sex missing
    assert schemas.errors(individual, {"id": "x", "sex": {"id": "female"}})  # not a CURIE
    assert schemas.errors(variant, {"variantInternalId": "v", "variation": {
        "variantType": "SNP", "alternateBases": "<DEL>", "location": {}}})
    assert schemas.errors(R + "beaconCountResponse.json", {"meta": {}, "responseSummary": {}})
