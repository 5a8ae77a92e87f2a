"""The operator's view of a running node: /health says whether it can answer (store and
governance database reachable) and /metrics counts requests by route template in the Prometheus
text format."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

from fastapi.testclient import TestClient

from genofed.config.node import init_node
from genofed.server.app import create_app


def _node(tmp_path: Path) -> Path:
    node = tmp_path / "node"
    init_node(node, node_id="ops-node", country="FI")
    return node


def test_health_is_ready_when_store_and_database_answer(tmp_path: Path) -> None:
    with TestClient(create_app(_node(tmp_path))) as http:
        response = http.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["live"] is True and body["ready"] is True and body["status"] == "ready"
    assert body["checks"]["store"] == {"ok": True, "datasets": 0}
    assert body["checks"]["database"] == {"ok": True, "dialect": "sqlite"}


def test_health_is_not_ready_without_the_governance_schema(tmp_path: Path) -> None:
    """A governance database that no longer holds the node's schema (as when a node is pointed
    at an empty database): 503, naming the failed check; the server still answers."""
    node = _node(tmp_path)
    with TestClient(create_app(node)) as http:
        assert http.get("/health").status_code == 200
        with sqlite3.connect(node / "governance.sqlite") as other:
            other.execute("DROP TABLE alembic_version")
        response = http.get("/health")
        assert response.status_code == 503
        body = response.json()
        assert body["ready"] is False and body["live"] is True
        assert body["checks"]["database"] == {"ok": False, "error": "OperationalError"}
        assert body["checks"]["store"]["ok"] is True
        assert http.get("/metrics").status_code == 200


def test_metrics_count_requests_by_route_template(tmp_path: Path) -> None:
    with TestClient(create_app(_node(tmp_path))) as http:
        for dataset in ("one", "two", "three"):  # three paths, one route template
            assert http.get(f"/beacon/datasets/{dataset}").status_code == 404
        assert http.get("/beacon/info").status_code == 200
        response = http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert ('genofed_http_requests_total{method="GET",route="/beacon/datasets/{id}",'
            'status="404"} 3') in text
    assert 'genofed_http_requests_total{method="GET",route="/beacon/info",status="200"} 1' \
        in text
    assert "/beacon/datasets/one" not in text  # raw paths would make a series per query
    buckets = re.findall(r'genofed_http_request_duration_seconds_bucket\{route="/beacon/info",'
                         r'le="([^"]+)"\} (\d+)', text)
    assert buckets[-1] == ("+Inf", "1")
    assert [int(n) for _, n in buckets] == sorted(int(n) for _, n in buckets)
    assert re.search(r"^genofed_datasets 0$", text, re.MULTILINE)
    assert re.search(r"^genofed_uptime_seconds [0-9.e+-]+$", text, re.MULTILINE)
