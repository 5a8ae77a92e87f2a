"""A Beacon request refused for its token (401) is audited as what it asked for: a count or
record request is recorded as beacon.count / beacon.record, not as the boolean default."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from genofed.access.audit import entries
from genofed.access.governance import Governance
from genofed.access.principal import Principal
from genofed.errors import AuthenticationError


class RefuseEveryToken:
    """Authenticator: no token is anonymous; every token is refused (401)."""

    def authenticate(self, authorization: str | None) -> Principal | None:
        if authorization is None:
            return None
        raise AuthenticationError("token signature does not verify")


@pytest.fixture
def beacon_app(node: Path) -> Iterator[tuple[TestClient, Governance]]:
    from genofed.server.app import create_app

    app = create_app(node, authenticator=RefuseEveryToken())
    try:
        yield TestClient(app), app.state.governance
    finally:
        app.state.governance.close()


@pytest.mark.parametrize(("method", "path", "options", "action"), [
    ("POST", "/beacon/individuals", {"json": {"query": {"requestedGranularity": "count"}}},
     "beacon.count"),
    ("POST", "/beacon/g_variants", {"json": {"meta": {"apiVersion": "v2.0"}, "query": {
        "requestedGranularity": "record", "pagination": {"limit": 5}}}}, "beacon.record"),
    ("GET", "/beacon/individuals?requestedGranularity=count", {}, "beacon.count"),
    ("GET", "/beacon/g_variants?requestedGranularity=record&referenceName=20&start=1&end=9",
     {}, "beacon.record"),
    ("GET", "/beacon/individuals", {}, "beacon.boolean"),
    ("POST", "/beacon/individuals", {}, "beacon.boolean"),
], ids=["post-count", "post-record", "get-count", "get-record", "get-default", "post-empty"])
def test_a_refused_token_is_audited_as_the_granularity_asked_for(
        beacon_app: tuple[TestClient, Governance], method: str, path: str,
        options: dict[str, Any], action: str) -> None:
    client, governance = beacon_app
    response = client.request(method, path, headers={"Authorization": "Bearer forged"}, **options)
    assert response.status_code == 401, response.text
    governance.audit.flush()
    (record,) = list(entries(governance.db))
    assert (record.action, record.decision, record.subject, record.dataset_id) == (
        action, "deny", "anonymous", None)
    assert record.reason == "unauthenticated: token signature does not verify"
