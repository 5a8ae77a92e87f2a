"""Schemathesis against /openapi.json: generated requests to every operation of the node (Beacon,
access, catalogue, htsget) never get a server error, and every error comes in its API's envelope
(bounded: 20 examples per operation, in-process ASGI)."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings

from genofed.beacon.access import QueryBudget
from genofed.server.app import create_app


@pytest.fixture(scope="module")
def fuzz_app(beacon_node: Any) -> Any:
    return create_app(beacon_node.node_dir, budget=QueryBudget(10**9, 3600))


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_app: Any) -> Any:
    return schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)


def test_openapi_lists_every_endpoint(fuzz_app: Any) -> None:
    paths = TestClient(fuzz_app).get("/openapi.json").json()["paths"]
    for path in ("/beacon/g_variants", "/beacon/g_variants/{id}/individuals",
                 "/beacon/individuals/{id}/g_variants", "/beacon/datasets/{id}/g_variants",
                 "/beacon/cohorts/{id}", "/beacon/filtering_terms", "/beacon/map"):
        assert path in paths
    assert sum(len(v) for v in paths.values()) >= 40


def test_no_server_error(fuzz_schema: Any) -> None:
    """Every operation, GET and POST, with generated parameters and bodies."""
    problems: list[str] = []
    operations = 0
    for result in fuzz_schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=20, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def check(case: Any) -> None:
            response = case.call()
            where = f"{case.method} {case.formatted_path} {case.query} {case.body!r:.200}"
            if response.status_code >= 500:
                problems.append(f"{where}: {response.status_code} {response.text[:300]}")
            elif response.status_code >= 400:
                body = response.json()
                if case.formatted_path.startswith("/htsget"):  # the htsget spec's own errors
                    ok = set(body.get("htsget", {})) == {"error", "message"}
                else:
                    ok = body.get("error", {}).get("errorCode") == response.status_code
                if not ok or "Traceback" in response.text:
                    problems.append(f"{where}: not the API's error envelope: "
                                    f"{response.text[:300]}")

        check()
    assert operations >= 40
    assert not problems, "\n".join(problems[:10])
