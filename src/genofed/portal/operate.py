"""The node portal's operator view (`/portal/operate`): the node's datasets and their published
versions, its service health and key metrics; with the audit trail (:mod:`.audit`) under the
same rule: only the node's operators (`access.operators` in node.toml) see them.

Health and metrics come from the node's own `/health` and `/metrics`, called in-process, so the
page shows what a monitoring system sees. Datasets are read from the node store directly (the
operator's view of what is published; no personal data: counts, versions, sizes).
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from genofed.errors import GenofedError
from genofed.portal import audit
from genofed.portal.analyse_results import human_bytes
from genofed.portal.audit import require_operator
from genofed.portal.web import site_of
from genofed.store.layout import KEEP_VERSIONS, VERSION_NAME
from genofed.store.node import NodeStore
from genofed.store.progress import ingests_under_way

router = APIRouter()
router.include_router(audit.router)

# -- datasets ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class VersionRow:
    version: str
    current: bool
    created: str
    samples: int
    individuals: int
    records: int
    sites: int
    contigs: str
    size: str


@dataclass(frozen=True)
class DatasetRow:
    id: str
    name: str
    tier: str
    assembly: str
    versions: list[VersionRow]


def dataset_rows(store: NodeStore) -> list[DatasetRow]:
    """Every dataset with its published versions still kept, newest first."""
    rows = []
    for dataset_id in store.dataset_ids():
        try:
            current = store.dataset(dataset_id)
        except GenofedError:  # unpublished between the listing and now
            continue
        versions = []
        match = VERSION_NAME.match(current.version)
        newest = int(match.group(1)) if match else 0
        # The store keeps the current version and a few before it (for readers still on them).
        for number in range(newest, max(newest - KEEP_VERSIONS - 1, 0), -1):
            dataset = current if number == newest else \
                store.dataset_version(dataset_id, f"v{number}")
            if dataset is None:
                break
            manifest = dataset.manifest
            versions.append(VersionRow(
                manifest.version, number == newest, manifest.created, manifest.n_samples,
                manifest.n_individuals_with_phenopackets, manifest.n_records, manifest.n_sites,
                ", ".join(manifest.contigs), human_bytes(dataset.stored.total_size())))
        metadata = current.metadata
        rows.append(DatasetRow(dataset_id, metadata.name, metadata.access_tier.value,
                               metadata.assembly_id, versions))
    return rows


# -- metrics -----------------------------------------------------------------------------------
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text: str) -> list[tuple[str, dict[str, str], float]]:
    """Samples of a Prometheus text exposition: (name, labels, value)."""
    samples = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE.match(line)
        if match is None:
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        labels = {k: v.replace('\\"', '"').replace("\\\\", "\\")
                  for k, v in _LABEL.findall(match.group(2) or "")}
        samples.append((match.group(1), labels, value))
    return samples


@dataclass
class MetricsView:
    uptime: float = 0.0
    datasets: int = 0
    ingests_running: int = 0
    requests: int = 0
    #: Requests by status class ("2xx", "4xx", "5xx", ...).
    by_status: dict[str, int] = field(default_factory=dict)
    #: The busiest routes: (method, route, requests).
    routes: list[tuple[str, str, int]] = field(default_factory=list)
    #: Access decisions this process wrote: allow and deny totals, and (action, allowed,
    #: denied).
    allowed: int = 0
    denied: int = 0
    decisions: list[tuple[str, int, int]] = field(default_factory=list)


def metrics_view(text: str) -> MetricsView:
    view = MetricsView()
    per_route: dict[tuple[str, str], int] = defaultdict(int)
    per_action: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, labels, value in parse_metrics(text):
        if name == "genofed_uptime_seconds":
            view.uptime = value
        elif name == "genofed_datasets":
            view.datasets = int(value)
        elif name == "genofed_ingests_running":
            view.ingests_running = int(value)
        elif name == "genofed_http_requests_total":
            count = int(value)
            view.requests += count
            status_class = f"{labels.get('status', '?')[:1]}xx"
            view.by_status[status_class] = view.by_status.get(status_class, 0) + count
            per_route[labels.get("method", ""), labels.get("route", "")] += count
        elif name == "genofed_access_decisions_total":
            count = int(value)
            allowed = labels.get("decision") == "allow"
            per_action[labels.get("action", "")][0 if allowed else 1] += count
            if allowed:
                view.allowed += count
            else:
                view.denied += count
    view.routes = sorted(((m, r, n) for (m, r), n in per_route.items()),
                         key=lambda item: (-item[2], item[1]))[:10]
    view.decisions = sorted((action, a, d) for action, (a, d) in per_action.items())
    view.by_status = dict(sorted(view.by_status.items()))
    return view


def _duration(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min" if minutes else f"{int(seconds)} s"


# -- the page ----------------------------------------------------------------------------------
def _health_checks(body: dict[str, Any]) -> list[tuple[str, bool, str]]:
    checks = []
    for name, check in sorted((body.get("checks") or {}).items()):
        check = check if isinstance(check, dict) else {}
        details = ", ".join(f"{k}: {v}" for k, v in sorted(check.items()) if k != "ok")
        checks.append((name, bool(check.get("ok")), details))
    return checks


@router.get("/operate")
async def operate(request: Request) -> Response:
    require_operator(request)
    site = site_of(request)
    async with site.api(request, None) as api:  # both are open to anyone: no token needed
        health = await api.get("/health")
        metrics = await api.get("/metrics")
    try:
        health_body: dict[str, Any] = health.json()
    except ValueError:
        health_body = {"status": f"no answer (HTTP {health.status_code})"}
    view = metrics_view(metrics.text) if metrics.status_code == 200 else None
    store: NodeStore = request.app.state.store
    datasets = await run_in_threadpool(dataset_rows, store)
    ingests = await run_in_threadpool(ingests_under_way, store.paths.datasets)
    config = request.app.state.config.current()
    return site.render(
        request, "operate/operate.html", title=f"Node {config.node_id}: datasets and health",
        config=config, health=health_body, health_status=health.status_code,
        checks=_health_checks(health_body), metrics=view,
        uptime=_duration(view.uptime) if view else "", datasets=datasets, ingests=ingests)
