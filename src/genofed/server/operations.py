"""What a node operator watches: `GET /health` (liveness, and readiness: the store and the
governance database answer) and `GET /metrics` (Prometheus text format: requests and their
latency per route, the datasets served).

Counters live in each server process, as Prometheus' client libraries keep them: with
`--workers N` each scrape reads one worker.
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

    def render(self, gauges: dict[str, tuple[str, float]]) -> str:
        """The Prometheus text exposition, with `gauges` (name -> help, value) appended."""
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
        for name, (help_text, value) in sorted(gauges.items()):
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} gauge",
                      f"{name} {value:g}"]
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
                      extra_gauges: Callable[[], dict[str, tuple[str, float]]] | None = None
                      ) -> APIRouter:
    """`/health` and `/metrics` for a node."""
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
        gauges = {"genofed_uptime_seconds": ("Seconds since this server process started",
                                             time.time() - metrics.started)}
        if extra_gauges is not None:
            gauges.update(extra_gauges())
        return PlainTextResponse(metrics.render(gauges),
                                 media_type="text/plain; version=0.0.4; charset=utf-8")

    return router
