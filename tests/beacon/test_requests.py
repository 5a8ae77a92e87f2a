"""Request handling: the GDI user-portal request, variant query kinds, filters, pagination, and
malformed requests (always a 4xx Beacon error envelope, never a 5xx or a stack trace)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

R = "framework/json/responses/"


def _sets(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in document["response"]["resultSets"]}


def _truth_count(client: TestClient, dataset: str, **select: Any) -> int:
    store = client.app.state.beacon.service.store  # type: ignore[attr-defined]
    return len(store.dataset(dataset).select_individuals(**select))


def test_gdi_user_portal_request(client: TestClient, schemas: Any) -> None:
    """POST /individuals, filters, record, pagination {skip 0, limit 1}, HIT: one resultSet per
    dataset with its real id; record level is refused on every tier without a visa, and the
    answer degrades to each tier's granularity, which `returnedGranularity` states."""
    body = {"meta": {"apiVersion": "2.0"}, "query": {
        "filters": [{"id": "NCIT:C16576", "scope": "individual"},
                    {"id": "HP:0001250", "includeDescendantTerms": True}],
        "requestedGranularity": "record", "pagination": {"skip": 0, "limit": 1},
        "includeResultsetResponses": "HIT", "testMode": False}}
    response = client.post("/beacon/individuals", json=body)
    assert response.status_code == 200
    document = response.json()
    schemas.check_response(document)
    sets = _sets(document)
    assert set(sets) == {"ds-public", "ds-registered", "ds-controlled"}
    assert document["meta"]["returnedGranularity"] == "boolean"  # coarsest of the sets
    assert sets["ds-public"]["returnedGranularity"] == "boolean"
    for dataset in ("ds-registered", "ds-controlled"):
        result_set = sets[dataset]
        assert result_set["setType"] == "dataset"
        assert result_set["returnedGranularity"] == "count"
        truth = _truth_count(client, dataset, sex="female", hpo="HP:0001250")
        assert truth >= 5
        assert result_set["resultsCount"] == truth and result_set["results"] == []
        assert result_set["exists"] is True
    assert "visa" in " ".join(sets["ds-controlled"]["info"]["notes"])


def test_gdi_request_with_visa_gets_records(visa_client: TestClient, schemas: Any) -> None:
    body = {"meta": {"apiVersion": "2.0"}, "query": {
        "filters": [{"id": "NCIT:C16576"}, {"id": "HP:0001250"}],
        "requestedGranularity": "record", "pagination": {"skip": 0, "limit": 1},
        "includeResultsetResponses": "HIT"}}
    document = visa_client.post("/beacon/individuals", json=body).json()
    schemas.check_response(document)
    controlled = _sets(document)["ds-controlled"]
    assert controlled["returnedGranularity"] == "record"
    assert controlled["resultsCount"] == _truth_count(visa_client, "ds-controlled",
                                                      sex="female", hpo="HP:0001250")
    assert len(controlled["results"]) == 1
    assert controlled["results"][0]["sex"]["id"] == "NCIT:C16576"


def test_pagination_skips_pages(visa_client: TestClient) -> None:
    def page(skip: int, limit: int) -> tuple[list[str], int]:
        document = visa_client.get("/beacon/datasets/ds-controlled/individuals", params={
            "requestedGranularity": "record", "skip": skip, "limit": limit}).json()
        (result_set,) = document["response"]["resultSets"]
        assert document["responseSummary"]["numTotalResults"] == result_set["resultsCount"]
        return [r["id"] for r in result_set["results"]], result_set["resultsCount"]

    first, total = page(0, 7)
    second, total2 = page(1, 7)
    everything, _ = page(0, 1000)
    assert total == total2 == len(everything) == 90
    assert first + second == everything[:14]


def test_variant_query_kinds(client: TestClient) -> None:
    store = client.app.state.beacon.service.store  # type: ignore[attr-defined]
    sites = store.dataset("ds-registered").sites.to_pylist()
    common = [s for s in sites if s["ac"] >= 5 and len(s["ref"]) == len(s["alt"]) == 1]
    site = common[len(common) // 2]

    def count(params: dict[str, Any]) -> int:
        response = client.get("/beacon/datasets/ds-registered/g_variants",
                              params={"requestedGranularity": "count",
                                      "includeResultsetResponses": "ALL", **params})
        assert response.status_code == 200, response.text
        return int(response.json()["response"]["resultSets"][0]["resultsCount"])

    start = site["pos"] - 1
    sequence = {"referenceName": "chr20", "start": start, "referenceBases": site["ref"],
                "alternateBases": site["alt"]}
    assert count(sequence) == 1
    assert count({**sequence, "referenceName": "20"}) == 1
    assert count({**sequence, "referenceName": "NC_000020.11"}) == 1
    assert count({**sequence, "alternateBases": "N"}) >= 1
    assert count({**sequence, "assemblyId": "GRCh37"}) == 0
    assert count({**sequence, "variantType": "SNP"}) == 1
    assert count({**sequence, "variantType": "DEL"}) == 0
    # range: overlap of [start, end) in 0-based coordinates
    # registered callers' counts include rare alleles (flagged as such)
    in_range = [s for s in sites if s["ac"] >= 1 and s["end"] > 100_000 and s["pos"] <= 150_000]
    assert count({"referenceName": "20", "start": 100_000, "end": 150_000}) == len(in_range) > 5
    # bracket: start within [a, b] and end within [c, d]
    bracket = [s for s in sites if s["ac"] >= 1 and 100_000 <= s["pos"] - 1 <= 120_000
               and 100_000 <= s["end"] <= 120_001]
    assert count({"referenceName": "20", "start": "100000,120000",
                  "end": "100000,120001"}) == len(bracket)


@pytest.mark.parametrize(("params", "fragment"), [
    ({"referenceName": "20", "start": "10", "end": "5"}, "greater than end"),
    ({"referenceName": "chr99", "start": "10"}, "referenceName"),
    ({"referenceName": "20", "start": "ten"}, "not an integer"),
    ({"start": "10"}, "referenceName"),
    ({"geneId": "BRCA1", "datasets": "ds-public"}, "gene table"),
    ({"limit": "100000"}, "limit"),
    ({"limit": "-1"}, "limit"),
    ({"requestedGranularity": "everything"}, "requestedGranularity"),
    ({"filters": "age>=P4X"}, "ISO 8601"),
    ({"variantType": "WHATEVER"}, "variantType"),
])
def test_malformed_get(client: TestClient, schemas: Any, params: dict[str, str],
                       fragment: str) -> None:
    response = client.get("/beacon/g_variants", params=params)
    assert response.status_code == 400, response.text
    document = response.json()
    schemas.check(R + "beaconErrorResponse.json", document)
    assert fragment in document["error"]["errorMessage"]
    assert "Traceback" not in response.text


@pytest.mark.parametrize("content", [
    b"{not json", b"[1, 2]", b'{"query": {"pagination": {"limit": "many"}}}',
    b'{"query": {"requestedGranularity": 3}}', b'{"query": {"filters": "HP:0001250"}}',
    b'{"query": {"pagination": {"limit": 1000000}}}', b'{"query": {"filters": [{}]}}',
    b'{"query": {"requestParameters": {"referenceName": "20", "start": [10], "end": [5]}}}',
    b'{"query": {"requestParameters": {"start": {"a": 1}}}}', b'\xff\xfe',
])
def test_malformed_post(client: TestClient, schemas: Any, content: bytes) -> None:
    response = client.post("/beacon/individuals", content=content,
                           headers={"content-type": "application/json"})
    assert 400 <= response.status_code < 500, response.text
    schemas.check(R + "beaconErrorResponse.json", response.json())
    assert "Traceback" not in response.text


def test_unknown_filters_are_reported(client: TestClient) -> None:
    document = client.post("/beacon/individuals", json={"query": {
        "filters": [{"id": "HP:9999999"}, {"id": "FOO:123"}, {"id": "NCIT:C20197"}],
        "requestedGranularity": "count", "includeResultsetResponses": "ALL"}}).json()
    warnings = " ".join(document["info"]["warnings"])
    assert "HP:9999999" in warnings and "FOO:123" in warnings
    assert "NCIT:C20197" not in warnings
    registered = _sets(document)["ds-registered"]
    assert registered["resultsCount"] == _truth_count(client, "ds-registered", sex="male")


@pytest.mark.parametrize(("text", "select"), [
    ("age>=P40Y", {"min_age": 40.0}),
    ("age<P30Y", {"max_age": 29.999}),
    ("age!P25Y", None),
])
def test_age_filters(client: TestClient, text: str, select: dict[str, float] | None) -> None:
    document = client.get("/beacon/individuals", params={
        "filters": text, "requestedGranularity": "count",
        "includeResultsetResponses": "ALL"}).json()
    registered = _sets(document)["ds-registered"]
    individuals = client.app.state.beacon.service.store.dataset(  # type: ignore[attr-defined]
        "ds-registered").individuals.to_pylist()
    if select is None:
        expected = sum(1 for i in individuals if i["age_years"] is not None
                       and i["age_years"] != 25.0)
    else:
        expected = _truth_count(client, "ds-registered", **select)
    assert registered["resultsCount"] == (expected if expected == 0 or expected >= 5 else 5)


def test_unknown_dataset_and_route(client: TestClient, schemas: Any) -> None:
    for path in ("/beacon/datasets/nope/individuals", "/beacon/no_such_endpoint",
                 "/beacon/datasets/nope"):
        response = client.get(path)
        assert response.status_code == 404
        schemas.check(R + "beaconErrorResponse.json", response.json())
