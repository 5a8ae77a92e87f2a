"""The coordinator: a Beacon network at `/network/beacon/...` over every member of a network.

`create_hub_app(network_file, signing_key_path, node_id)` runs beside a member node (and signs as
that node). Each researcher request is validated once here, then sent to every member at once
with the researcher's `Authorization` header forwarded untouched, so each node decides access
for itself and answers only for itself; the answers are merged by :mod:`genofed.federation.merge`.
Entry-type and collection endpoints mirror the node's Beacon router exactly (same paths, GET and
POST); `/info`, `/map`, `/configuration`, `/entry_types` and `/filtering_terms` are merged from
the members', `/service-info` describes the network itself.

A request naming datasets (`datasets` parameter, or a `/datasets/{id}/...` path) goes only to the
members holding them, each asked for its own subset; the others are reported as `skipped`.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed.beacon.errors import BeaconRequestError
from genofed.beacon.request import BeaconQuery, from_query_params, parse_body_json
from genofed.beacon.router import router as node_router
from genofed.federation import answers, merge
from genofed.federation.answers import AnswerCheck
from genofed.federation.client import DEFAULT_TIMEOUT, FanOut, NodeAnswer, Outgoing
from genofed.federation.network import LiveNetwork, Member, Network, NetworkFileError
from genofed.federation.signatures import FORWARDED_FOR, PeerSigner

log = logging.getLogger(__name__)

PREFIX = "/network/beacon"
NODE_PREFIX = "/beacon"
_ENTITY = {"g_variants": "genomicVariation", "individuals": "individual",
           "biosamples": "biosample", "datasets": "dataset", "cohorts": "cohort"}
_FRAMEWORK = {"", "/", "/info", "/service-info", "/map", "/configuration", "/entry_types",
              "/filtering_terms"}
_COLLECTIONS = {"dataset", "cohort"}


def mirrored_paths() -> list[str]:
    """The node's entry-type and collection paths (e.g. `/g_variants/{id}/individuals`)."""
    return sorted({r.path for r in node_router.routes
                   if isinstance(r, APIRoute) and r.path not in _FRAMEWORK})


def entity_of(path: str) -> str:
    """The entry type a path returns: its last segment that is not an id."""
    segments = [s for s in path.strip("/").split("/") if s and not s.startswith("{")]
    return _ENTITY[segments[-1]]


def _without_datasets(parameters: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in parameters.items() if k not in ("datasets", "datasetIds")}
    for key, value in out.items():
        if isinstance(value, dict) and key in {"g_variant", "g_variants", "genomicVariation",
                                               "genomicVariations"}:
            out[key] = _without_datasets(value)
    return out


@dataclass(frozen=True)
class _Forward:
    """A researcher's request, parsed and ready to be re-sent to members."""

    method: str
    node_path: str
    query_string: str
    body: bytes | None
    headers: dict[str, str]

    def for_datasets(self, datasets: list[str]) -> Outgoing:
        """The same request restricted to `datasets` (a member's share of those named)."""
        if self.method == "GET":
            pairs = [(k, v) for k, v in parse_qsl(self.query_string, keep_blank_values=True)
                     if k not in ("datasets", "datasetIds")]
            return Outgoing("GET", self.node_path,
                            urlencode([*pairs, ("datasets", ",".join(datasets))]), None,
                            self.headers)
        document = orjson.loads(self.body or b"{}")
        query = document.setdefault("query", {})
        query["requestParameters"] = {**_without_datasets(query.get("requestParameters") or {}),
                                      "datasets": datasets}
        return Outgoing("POST", self.node_path, self.query_string, orjson.dumps(document),
                        self.headers)

    def unchanged(self) -> Outgoing:
        return Outgoing(self.method, self.node_path, self.query_string, self.body, self.headers)


def _json(document: dict[str, Any], status: int = 200) -> Response:
    return Response(orjson.dumps(document), status, media_type="application/json")


class Hub:
    def __init__(self, network: LiveNetwork, fan_out: FanOut) -> None:
        self.network = network
        self.fan_out = fan_out

    def current(self) -> Network:
        try:
            return self.network.current()
        except NetworkFileError as exc:
            log.error("network file unreadable: %s", exc)
            raise BeaconRequestError("the network file of this hub is unreadable; the "
                                     "operator's log has details", 503) from None

    @staticmethod
    def _root(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    @staticmethod
    async def _parse(request: Request) -> tuple[BeaconQuery, bytes | None]:
        if request.method == "GET":
            return from_query_params(dict(request.query_params)), None
        body = await request.body()
        if not body.strip():
            return parse_body_json(None), None
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BeaconRequestError(f"invalid request: body: malformed JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise BeaconRequestError("invalid request: body: a Beacon request is a JSON object")
        return parse_body_json(raw), body

    @staticmethod
    def _headers(request: Request, body: bytes | None) -> dict[str, str]:
        headers = {"accept": "application/json"}
        authorization = request.headers.get("authorization")
        if authorization is not None:
            headers["authorization"] = authorization  # untouched: each node judges it
        if request.client is not None:
            headers[FORWARDED_FOR] = request.client.host
        if body is not None:
            headers["content-type"] = "application/json"
        return headers

    def entry_handler(self, entity: str) -> Callable[[Request], Awaitable[Response]]:
        async def handler(request: Request) -> Response:
            return await self.entry(request, entity)

        return handler

    async def entry(self, request: Request, entity: str) -> Response:
        """A mirrored entry-type or collection endpoint returning `entity`, GET or POST."""
        network = self.current()
        query, body = await self._parse(request)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        tail = raw_path.decode("latin-1").removeprefix(PREFIX)
        requested = query.requested_datasets()
        segments = tail.strip("/").split("/")
        scoped = unquote(segments[1]) if segments[0] in ("datasets", "cohorts") and \
            len(segments) > 1 else None
        forward = _Forward(request.method, NODE_PREFIX + tail,
                           request.scope.get("query_string", b"").decode("latin-1"), body,
                           self._headers(request, body))

        def plan(member: Member, held: frozenset[str] | None) -> Outgoing | str:
            if held is None:
                return forward.unchanged()
            if scoped is not None and scoped not in held:
                return f"holds no dataset {scoped!r}"
            if requested is not None:
                mine = [d for d in requested if d in held]
                if not mine:
                    return "holds none of the requested datasets"
                if len(mine) < len(requested):
                    return forward.for_datasets(mine)
            return forward.unchanged()

        check = answers.check_collections if entity in _COLLECTIONS else \
            answers.check_result_sets
        found = await self.fan_out.ask_all(network.members, plan, check,
                                           needs_datasets=requested is not None or
                                           scoped is not None)
        if not any(a.ok for a in found):
            return self._failed(network, found, query)
        merged = merge.collections if entity in _COLLECTIONS else merge.result_sets
        return _json(merged(network, found, query, entity))

    def _failed(self, network: Network, found: list[NodeAnswer],
                query: BeaconQuery | None = None) -> Response:
        if not found:
            status, message = 503, f"network {network.name!r} has no members"
        else:
            status, message = merge.failure(found)
        return _json(merge.error_document(network.beacon_id, status, message, query,
                                          {"network": merge.network_report(network, found)}),
                     status)

    async def framework(self, request: Request, node_path: str, check: AnswerCheck,
                        build: Callable[[Network, list[NodeAnswer]], dict[str, Any]],
                        *, partial_ok: bool = False) -> Response:
        network = self.current()
        outgoing = Outgoing("GET", NODE_PREFIX + node_path, "", None,
                            self._headers(request, None))

        def plan(_member: Member, _held: frozenset[str] | None) -> Outgoing:
            return outgoing

        found = await self.fan_out.ask_all(network.members, plan, check)
        if not partial_ok and not any(a.ok for a in found):
            return self._failed(network, found)
        return _json(build(network, found))


def create_hub_app(network_file: Path, signing_key_path: Path, node_id: str, *,
                   timeout: float = DEFAULT_TIMEOUT, directory_ttl: float = 30.0) -> FastAPI:
    """The coordinator's ASGI app, signing as member `node_id` with its key. `timeout` bounds
    each member's answer (seconds)."""
    # FastAPI re-derives the mirrored node routes' `{id}` parameters and pydantic warns that an
    # alias it sets there has no effect; harmless, and noise in every operator's terminal.
    warnings.filterwarnings("ignore", message="The 'alias' attribute with value 'id'")
    network = LiveNetwork(network_file)
    current = network.current()
    if current.member(node_id) is None:
        raise NetworkFileError(f"{network_file}: node {node_id!r} is not a member of network "
                               f"{current.name!r}, so the members would refuse its requests; "
                               "add it with `genofed network add`")
    fan_out = FanOut(PeerSigner.from_key_file(node_id, signing_key_path), timeout=timeout,
                     directory_ttl=directory_ttl)
    hub = Hub(network, fan_out)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await fan_out.open()
        try:
            yield
        finally:
            await fan_out.close()

    app = FastAPI(title=f"genofed Beacon network {current.name}", version=__version__,
                  description="A GA4GH Beacon v2 network (under /network/beacon) over the "
                              "members of a genofed network; per-node status in `info.network`.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)
    app.state.hub = hub

    def beacon_id() -> str:
        try:
            return network.current().beacon_id
        except NetworkFileError:
            return "org.genofed.network"

    @app.exception_handler(BeaconRequestError)
    async def _beacon_error(request: Request, exc: BeaconRequestError) -> Response:
        return _json(merge.error_document(beacon_id(), exc.status, exc.message), exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        return _json(merge.error_document(beacon_id(), 400, f"invalid request: {exc}"), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see {PREFIX}/map)"
        return _json(merge.error_document(beacon_id(), exc.status_code, message),
                     exc.status_code)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        return _json(merge.error_document(beacon_id(), 500, "internal error; the hub "
                                          "operator's log has the details"), 500)

    def framework_route(path: str, node_path: str, check: AnswerCheck,
                        build: Callable[[Network, list[NodeAnswer]], dict[str, Any]],
                        summary: str, partial_ok: bool = False) -> None:
        async def handler(request: Request) -> Response:
            return await hub.framework(request, node_path, check, build, partial_ok=partial_ok)

        app.add_api_route(PREFIX + path, handler, methods=["GET"], summary=summary,
                          tags=["Beacon network framework"], include_in_schema=path != "",
                          name=f"network{path.replace('/', '_') or '_root'}")

    for path in ("", "/", "/info"):
        framework_route(path, "/info", answers.check_info, merge.info,
                        "Network information and every member's status", partial_ok=True)
    framework_route("/configuration", "/configuration", answers.check_entry_types,
                    merge.configuration, "Merged configuration of the members")
    framework_route("/entry_types", "/entry_types", answers.check_entry_types,
                    merge.entry_types, "Entry types any member serves")
    framework_route("/filtering_terms", "/filtering_terms", answers.check_filtering_terms,
                    merge.filtering_terms, "Filtering terms present at any member")

    async def beacon_map(request: Request) -> Response:
        root = Hub._root(request)
        return await hub.framework(request, "/map", answers.check_map,
                                   lambda n, found: merge.beacon_map(n, found, root))

    app.add_api_route(PREFIX + "/map", beacon_map, methods=["GET"],
                      summary="Merged map, every URL under this network",
                      tags=["Beacon network framework"])

    async def service_info(request: Request) -> Response:
        return _json(merge.service_info(hub.current(), Hub._root(request)))

    app.add_api_route(PREFIX + "/service-info", service_info, methods=["GET"],
                      summary="GA4GH service-info of the network",
                      tags=["Beacon network framework"])

    for path in mirrored_paths():
        entity = entity_of(path)
        app.add_api_route(PREFIX + path, hub.entry_handler(entity), methods=["GET", "POST"],
                          summary=f"{entity} from every member (mirrors {NODE_PREFIX}{path})",
                          tags=[path.strip("/").split("/")[0]],
                          name=f"network_{path.strip('/').replace('/', '_')}")
    return app


__all__ = ["PREFIX", "Hub", "create_hub_app", "mirrored_paths"]
