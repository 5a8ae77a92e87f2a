"""Beacon v2 response envelopes: meta, summaries, resultSets, collections and errors."""

from __future__ import annotations

from typing import Any

from genofed.beacon.request import API_VERSION, BeaconQuery, Granularity

SCHEMAS = {
    "genomicVariation": "ga4gh-beacon-variant-v2.0.0",
    "individual": "ga4gh-beacon-individual-v2.0.0",
    "biosample": "ga4gh-beacon-biosample-v2.0.0",
    "dataset": "ga4gh-beacon-dataset-v2.0.0",
    "cohort": "ga4gh-beacon-cohort-v2.0.0",
}


def beacon_id(node_id: str) -> str:
    return f"org.genofed.{node_id}"


def returned_schemas(entity: str | None) -> list[dict[str, str]]:
    if entity is None:
        return []
    return [{"entityType": entity, "schema": SCHEMAS[entity]}]


def informational_meta(node_id: str, entity: str | None = None) -> dict[str, Any]:
    return {"beaconId": beacon_id(node_id), "apiVersion": API_VERSION,
            "returnedSchemas": returned_schemas(entity)}


def response_meta(node_id: str, entity: str | None, query: BeaconQuery,
                  granularity: Granularity) -> dict[str, Any]:
    return {**informational_meta(node_id, entity), "returnedGranularity": granularity.value,
            "receivedRequestSummary": query.summary(), "testMode": query.test_mode}


def error_response(beacon: str, status: int, message: str, query: BeaconQuery | None = None,
                   *, summary: dict[str, Any] | None = None,
                   info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The Beacon error envelope, of a node or of the network (`beacon` is the Beacon id).
    `receivedRequestSummary` is the parsed `query`'s, or `summary` for a request that could not
    be parsed (:func:`genofed.beacon.request.sent_summary`)."""
    query = query or BeaconQuery()
    document: dict[str, Any] = {
        "meta": {"beaconId": beacon, "apiVersion": API_VERSION, "returnedSchemas": [],
                 "returnedGranularity": Granularity.BOOLEAN.value,
                 "receivedRequestSummary": summary if summary is not None else query.summary(),
                 "testMode": query.test_mode},
        "error": {"errorCode": status, "errorMessage": message},
    }
    if info:
        document["info"] = info
    return document


def collections_response(node_id: str, entity: str, query: BeaconQuery,
                         collections: list[dict[str, Any]], total: int,
                         info: dict[str, Any] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "meta": response_meta(node_id, entity, query, Granularity.RECORD),
        "responseSummary": {"exists": total > 0, "numTotalResults": total},
        "response": {"collections": collections},
    }
    if info:
        out["info"] = info
    return out
