"""The operator's view of a running node: /health says whether it can answer (store and
governance database reachable) and /metrics counts requests by route template, access decisions
and ingests under way in the Prometheus text format."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

from fastapi.testclient import TestClient

from genofed.config.node import init_node, load_config, save_config
from genofed.server.app import create_app
from genofed.store.progress import PROGRESS_FILE, ProgressFile
from tests.support import Cohort


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


def test_metrics_count_access_decisions(ingested: Path, cohort: Cohort, tmp_path: Path) -> None:
    node = tmp_path / "node"
    shutil.copytree(ingested, node, symlinks=True)
    with TestClient(create_app(node)) as http:
        for start in (1000, 2000):
            response = http.get("/beacon/g_variants",
                                params={"referenceName": "20", "start": start})
            assert response.status_code == 200
        text = http.get("/metrics").text
    decisions = re.findall(r'^genofed_access_decisions_total\{action="([^"]+)",'
                           r'decision="([^"]+)"\} (\d+)$', text, re.MULTILINE)
    assert decisions, text
    assert sum(int(n) for _action, _decision, n in decisions) >= 2
    assert all(action.startswith("beacon.") for action, _decision, _n in decisions)
    assert "# TYPE genofed_access_decisions_total counter" in text


def test_metrics_show_ingests_under_way(tmp_path: Path) -> None:
    """An ingest (another process) reports its progress where every server process reads it;
    one that died is not reported."""
    node = _node(tmp_path)
    root = node / "datasets" / "big-cohort"
    root.mkdir(parents=True)
    under_way = ProgressFile(root)
    under_way.report("parse", 250, 1000)
    with TestClient(create_app(node)) as http:
        text = http.get("/metrics").text
        assert re.search(r"^genofed_ingests_running 1$", text, re.MULTILINE)
        assert 'genofed_ingest_done{dataset="big-cohort",stage="parse"} 250' in text
        assert 'genofed_ingest_total{dataset="big-cohort",stage="parse"} 1000' in text
        under_way.report("write", 3, 3)  # the last step of a stage is always written
        assert 'genofed_ingest_done{dataset="big-cohort",stage="write"} 3' in \
            http.get("/metrics").text
        body = json.loads(under_way.path.read_text())
        under_way.path.write_text(json.dumps({**body, "pid": _a_finished_process()}))
        assert re.search(r"^genofed_ingests_running 0$", http.get("/metrics").text,
                         re.MULTILINE)
        under_way.remove()
        assert not under_way.path.exists()


def test_an_ingest_leaves_no_progress_behind(node: Path, cohort: Cohort) -> None:
    from genofed.ingest import ingest_dataset

    seen: list[str] = []
    ingest_dataset(node, "goes", cohort.vcf, progress=lambda stage, done, total: seen.append(
        stage) if (node / "datasets" / "goes" / PROGRESS_FILE).is_file() else None)
    assert {"parse", "write"} <= set(seen)
    assert not (node / "datasets" / "goes" / PROGRESS_FILE).exists()


def _a_finished_process() -> int:
    process = subprocess.run(["sh", "-c", "echo $$"], capture_output=True, text=True,
                             check=True)
    return int(process.stdout)


def test_server_processes_share_the_query_budget(tmp_path: Path) -> None:
    """Two apps over one node (two server processes, or machines behind one address) share a
    caller's query budget through the governance database, not each their own."""
    node = _node(tmp_path)
    config = load_config(node)
    config.disclosure.query_budget = 6
    save_config(node, config)
    with TestClient(create_app(node)) as one, TestClient(create_app(node)) as two:
        statuses = [(one if turn % 2 else two).get(
            "/beacon/g_variants", params={"referenceName": "20", "start": 100}).status_code
            for turn in range(8)]
    assert statuses == [200] * 6 + [429] * 2
