"""What a node operator watches: `GET /health` (liveness, and readiness: the store and the
governance database answer) and `GET /metrics` (Prometheus text format: requests and their
latency per route, access decisions, the datasets served, ingests under way).

Counters live in each server process, as Prometheus' client libraries keep them: with
`--workers N` each scrape reads one worker. Ingest progress is read from the store, so every
worker reports every ingest.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse
from sqlalchemy import text
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genofed import __version__
from genofed.access.db import GovernanceDB
from genofed.store.node import NodeStore
from genofed.store.progress import ingests_under_way

#: A labelled series: label pairs -> value.
Series = dict[tuple[tuple[str, str], ...], float]
#: Upper bounds (seconds) of the latency histogram's buckets.
BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Request counts and latencies per (method, route template, status), thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str, int]] = Counter()
        self._buckets: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}
        self._counts: Counter[str] = Counter()
        self.started = time.time()

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        with self._lock:
            self._requests[method, route, status] += 1
            buckets = self._buckets.setdefault(route, [0] * len(BUCKETS))
            for i in range(bisect.bisect_left(BUCKETS, seconds), len(BUCKETS)):
                buckets[i] += 1
            self._sums[route] = self._sums.get(route, 0.0) + seconds
            self._counts[route] += 1

    def render(self, gauges: dict[str, tuple[str, float | Series]],
               counters: dict[str, tuple[str, Series]] | None = None) -> str:
        """The Prometheus text exposition, with `counters` and `gauges` (name -> help, value
        or labelled series) appended."""
        lines = ["# HELP genofed_http_requests_total HTTP requests answered, by route template",
                 "# TYPE genofed_http_requests_total counter"]
        with self._lock:
            for (method, route, status), n in sorted(self._requests.items()):
                lines.append(f'genofed_http_requests_total{{method="{method}",'
                             f'route="{_escape(route)}",status="{status}"}} {n}')
            lines += ["# HELP genofed_http_request_duration_seconds Time to answer, by route",
                      "# TYPE genofed_http_request_duration_seconds histogram"]
            for route, buckets in sorted(self._buckets.items()):
                label = f'route="{_escape(route)}"'
                for bound, n in zip(BUCKETS, buckets, strict=True):
                    lines.append(f'genofed_http_request_duration_seconds_bucket{{{label},'
                                 f'le="{bound:g}"}} {n}')
                lines.append(f'genofed_http_request_duration_seconds_bucket{{{label},'
                             f'le="+Inf"}} {self._counts[route]}')
                lines.append(f"genofed_http_request_duration_seconds_sum{{{label}}} "
                             f"{self._sums[route]:.6f}")
                lines.append(f"genofed_http_request_duration_seconds_count{{{label}}} "
                             f"{self._counts[route]}")
        for kind, metrics in (("counter", counters or {}), ("gauge", gauges)):
            for name, (help_text, value) in sorted(metrics.items()):
                lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
                series = value if isinstance(value, dict) else {(): value}
                for labels, number in sorted(series.items()):
                    text = ",".join(f'{key}="{_escape(val)}"' for key, val in labels)
                    lines.append(f"{name}{{{text}}} {number:g}" if text
                                 else f"{name} {number:g}")
        return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class MetricsMiddleware:
    """Times every HTTP request and counts it under its route template (never the raw path:
    variant ids and dataset ids would make a series per query)."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record)
        finally:
            self.metrics.observe(scope["method"], _template(scope), status,
                                 time.perf_counter() - started)


def _template(scope: Scope) -> str:
    """The matched route's path template, with the prefix its router was included under (the
    route knows only its own part: "/datasets/{id}" for /beacon/datasets/x)."""
    template = getattr(scope.get("route"), "path", None)
    if not template:
        return "unmatched"
    path = scope["path"].strip("/").split("/")
    own = template.strip("/").split("/")
    if ":path}" in template or len(path) <= len(own):
        return str(template)
    return "/" + "/".join(path[:len(path) - len(own)]) + str(template)


def operations_router(store: NodeStore, db: GovernanceDB, metrics: Metrics,
                      decisions: Callable[[], Counter[tuple[str, str]]] | None = None
                      ) -> APIRouter:
    """`/health` and `/metrics` for a node; `decisions`: this process's access decisions by
    (action, decision), as the audit log counts them."""
    router = APIRouter(tags=["operations"])

    @router.get("/health", summary="Liveness and readiness")
    def health() -> JSONResponse:
        """200 when the node can answer: its store lists its datasets and its governance
        database answers a query on its schema; 503 naming what failed otherwise. Open to
        anyone, reveals no data."""
        checks: dict[str, Any] = {}
        try:
            checks["store"] = {"ok": True, "datasets": len(store.dataset_ids())}
        except Exception as exc:  # reported, not raised: that is the point
            checks["store"] = {"ok": False, "error": type(exc).__name__}
        try:
            with db.read() as session:  # the schema, not just the connection
                session.execute(text("SELECT version_num FROM alembic_version")).all()
            checks["database"] = {"ok": True, "dialect": db.engine.dialect.name}
        except Exception as exc:
            checks["database"] = {"ok": False, "error": type(exc).__name__}
        ready = all(check["ok"] for check in checks.values())
        body = {"status": "ready" if ready else "not ready", "live": True, "ready": ready,
                "version": __version__, "checks": checks}
        return JSONResponse(body, status_code=200 if ready else 503)

    @router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    def prometheus() -> PlainTextResponse:
        gauges: dict[str, tuple[str, float | Series]] = {
            "genofed_uptime_seconds": ("Seconds since this server process started",
                                       time.time() - metrics.started),
            "genofed_datasets": ("Datasets this node serves", float(len(store.dataset_ids())))}
        gauges.update(_ingest_gauges(store))
        counters: dict[str, tuple[str, Series]] = {}
        if decisions is not None:
            counters["genofed_access_decisions_total"] = (
                "Release decisions written to the audit log by this process, by action and "
                "decision",
                {(("action", action), ("decision", decision)): float(n)
                 for (action, decision), n in decisions().items()})
        return PlainTextResponse(metrics.render(gauges, counters),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    return router


def _ingest_gauges(store: NodeStore) -> dict[str, tuple[str, float | Series]]:
    """Ingests writing a dataset of this node now: stage, units done and to do, and since when."""
    under_way = ingests_under_way(store.paths.datasets)
    done: Series = {}
    total: Series = {}
    started: Series = {}
    for ingest in under_way:
        labels = (("dataset", ingest.dataset_id), ("stage", ingest.stage))
        done[labels], total[labels] = float(ingest.done), float(ingest.total)
        started[(("dataset", ingest.dataset_id),)] = ingest.started
    return {
        "genofed_ingests_running": ("Ingests writing a new dataset version now",
                                    float(len(under_way))),
        "genofed_ingest_done": ("Work an ingest has done in its current stage (parse: bytes "
                                "of input, write: genotype chunks)", done),
        "genofed_ingest_total": ("Work of an ingest's current stage, in the same units", total),
        "genofed_ingest_started_seconds": ("Unix time an ingest under way began", started),
    }
