"""Every framework endpoint, and every URL /map lists (at each granularity, GET and POST),
validates against the official Beacon v2.1.1 schemas (envelope and entity schemas)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

R = "framework/json/responses/"
FRAMEWORK = {
    "/beacon/": R + "beaconInfoResponse.json",
    "/beacon/info": R + "beaconInfoResponse.json",
    "/beacon/service-info": R + "ga4gh-service-info-1-0-0-schema.json",
    "/beacon/map": R + "beaconMapResponse.json",
    "/beacon/configuration": R + "beaconConfigurationResponse.json",
    "/beacon/entry_types": R + "beaconEntryTypesResponse.json",
    "/beacon/filtering_terms": R + "beaconFilteringTermsResponse.json",
}


@pytest.mark.parametrize("path", sorted(FRAMEWORK))
def test_framework_endpoints_validate(client: TestClient, schemas: Any, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.text
    schemas.check(FRAMEWORK[path], response.json())


def test_filtering_terms_are_those_in_the_data(client: TestClient) -> None:
    terms = {t["id"]: t for t in client.get("/beacon/filtering_terms").json()["response"][
        "filteringTerms"]}
    assert terms["HP:0002069"]["label"] == "Bilateral tonic-clonic seizure"
    assert {"NCIT:C16576", "NCIT:C20197", "OMIM:616685", "age"} <= set(terms)
    assert "HP:0001250" not in terms  # only an ancestor of recorded terms: not "present"


def _example_ids(client: TestClient) -> dict[str, str]:
    """Ids from the controlled dataset (so that visa holders see records)."""
    dataset = client.app.state.beacon.service.store.dataset("ds-controlled")  # type: ignore[attr-defined]
    variants = dataset.sites
    common = variants.filter(variants.column("ac").to_numpy() >= 20).slice(0, 1).to_pylist()[0]
    sample = dataset.samples[0]
    return {
        "genomicVariation": f"GRCh38:20:{common['pos']}:{common['ref']}:{common['alt']}",
        "individual": sample, "biosample": sample,
        "dataset": "ds-controlled", "cohort": "ds-controlled",
    }


def _map_urls(client: TestClient) -> list[tuple[str, str]]:
    ids = _example_ids(client)
    endpoint_sets = client.get("/beacon/map").json()["response"]["endpointSets"]
    urls = []
    for entity, endpoint_set in endpoint_sets.items():
        urls.append((entity, endpoint_set["rootUrl"]))
        urls.append((entity, endpoint_set["singleEntryUrl"].replace("{id}", ids[entity])))
        for related in endpoint_set.get("endpoints", {}).values():
            urls.append((related["returnedEntryType"], related["url"].replace("{id}", ids[entity])))
    return [(e, urlsplit(u).path) for e, u in urls]


@pytest.mark.parametrize("granularity", ["boolean", "count", "record"])
@pytest.mark.parametrize("as_visa_holder", [False, True])
def test_every_map_url_validates(client: TestClient, visa_client: TestClient, schemas: Any,
                                 granularity: str, as_visa_holder: bool) -> None:
    http = visa_client if as_visa_holder else client
    records_seen: dict[str, int] = {}
    urls = _map_urls(client)
    assert len(urls) == 19  # 5 roots, 5 single entries, 9 related
    for entity, path in urls:
        for response in (
            http.get(path),  # a plain GET answers too
            http.get(path, params={"requestedGranularity": granularity,
                                   "includeResultsetResponses": "ALL"}),
            http.post(path, json={"meta": {"apiVersion": "v2.0"}, "query": {
                "requestedGranularity": granularity, "includeResultsetResponses": "ALL",
                "pagination": {"skip": 0, "limit": 3}}}),
        ):
            document = response.json()
            if response.status_code == 403:
                # records of a dataset the caller named but holds no visa for: refused, with
                # the Beacon error envelope (a plain GET asks for boolean, never refused)
                assert not as_visa_holder and granularity == "record", (path, response.text)
                assert "ds-controlled" in path and response.request.method in {"GET", "POST"}
                schemas.check(R + "beaconErrorResponse.json", document)
                continue
            assert response.status_code == 200, (path, response.text)
            schemas.check_response(document)
            assert document["meta"]["returnedSchemas"][0]["entityType"] == entity
            body = document.get("response", {})
            count = len(body.get("collections", [])) + sum(
                len(s["results"]) for s in body.get("resultSets", []))
            records_seen[entity] = records_seen.get(entity, 0) + count
    if granularity == "record" and as_visa_holder:
        # records of every entity type were produced and validated
        assert all(records_seen[e] > 0 for e in
                   ("genomicVariation", "individual", "biosample", "dataset", "cohort")), \
            records_seen
    elif not as_visa_holder:
        assert all(records_seen.get(e, 0) == 0 for e in
                   ("genomicVariation", "individual", "biosample")), records_seen


def test_error_envelope_validates(client: TestClient, schemas: Any) -> None:
    response = client.get("/beacon/g_variants", params={"referenceName": "20", "start": "10",
                                                       "end": "5"})
    assert response.status_code == 400
    schemas.check(R + "beaconErrorResponse.json", response.json())
