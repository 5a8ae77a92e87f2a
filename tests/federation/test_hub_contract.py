"""The hub reads a request as its members do and as its OpenAPI document says (the whole
contract is fuzzed in tests/beacon/test_fuzz.py): the differences the fuzzing found, pinned."""

from __future__ import annotations

from typing import Any

import httpx

_JSON = {"content-type": "application/json"}


def test_a_null_body_is_the_defaults_as_at_a_node(federation: Any) -> None:
    """The document says `BeaconRequestBody` or null, as a node reads it; the hub refused null."""
    response = httpx.post(f"{federation.hub}/network/beacon/individuals", content=b"null",
                          headers={**_JSON, **federation.researcher}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json()["meta"]["returnedGranularity"] == "boolean"


def test_a_blank_body_is_malformed_as_at_a_node(federation: Any) -> None:
    """A node answers a body of blanks 400 (malformed JSON); the hub took it for no body."""
    response = httpx.post(f"{federation.hub}/network/beacon/individuals", content=b"\n",
                          headers={**_JSON, **federation.researcher}, timeout=30)
    assert response.status_code == 400
    assert "malformed JSON" in response.json()["error"]["errorMessage"]


def test_a_huge_integer_is_echoed_not_a_crash(federation: Any) -> None:
    """An unknown parameter is echoed in receivedRequestSummary: orjson reads 1e30 as a float,
    the request parser reads that as the integer it is, and orjson writes no integer beyond 64
    bits (the answer is written by the standard library then)."""
    body = {"query": {"requestParameters": {"unknownParameter": 10**30}}}
    response = httpx.post(f"{federation.hub}/network/beacon/individuals", json=body,
                          headers=federation.researcher, timeout=30)
    assert response.status_code == 200, response.text
    echoed = response.json()["meta"]["receivedRequestSummary"]["requestParameters"]
    assert float(echoed["g_variant"]["unknownParameter"]) == 1e30  # read as a float by orjson


def test_other_methods_are_405_with_allow(federation: Any) -> None:
    response = httpx.put(f"{federation.hub}/network/beacon/g_variants", timeout=30)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, POST"
    assert response.json()["error"]["errorCode"] == 405


def test_a_parameter_given_twice_is_refused(federation: Any) -> None:
    response = httpx.get(f"{federation.hub}/network/beacon/individuals?filters=NCIT:C16576"
                         "&filters=NCIT:C20197", timeout=30)
    assert response.status_code == 400
    assert "given more than once" in response.json()["error"]["errorMessage"]
