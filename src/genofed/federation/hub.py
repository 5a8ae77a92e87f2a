"""The coordinator: a Beacon network at `/network/beacon/...` over every member of a network.

The hub (:func:`genofed.server.hub.create_hub_app`) runs beside a member node and signs as that
node. Each researcher request is validated once here, then sent to every member at once
with the researcher's `Authorization` header forwarded untouched, so each node decides access
for itself and answers only for itself; the answers are merged by :mod:`genofed.federation.merge`.
Entry-type and collection endpoints mirror the node's Beacon router exactly (same paths, GET and
POST); `/info`, `/map`, `/configuration`, `/entry_types` and `/filtering_terms` are merged from
the members', `/service-info` describes the network itself.

A request naming datasets (`datasets` parameter, or a `/datasets/{id}/...` path) goes only to the
members holding them, each asked for its own subset; the others are reported as `skipped`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode

import orjson
from fastapi import Request
from fastapi.responses import Response
from fastapi.routing import APIRoute

from genofed.beacon.request import (
    BeaconQuery,
    from_query_params,
    parse_body_json,
    single_valued,
)
from genofed.beacon.router import router as node_router
from genofed.errors import BeaconRequestError
from genofed.federation import answers, merge
from genofed.federation.answers import AnswerCheck
from genofed.federation.client import FanOut, NodeAnswer, Outgoing
from genofed.federation.network import LiveNetwork, Member, Network, NetworkFileError
from genofed.federation.signatures import FORWARDED_FOR

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


def json_response(document: dict[str, Any], status: int = 200) -> Response:
    try:
        content = orjson.dumps(document)
    except TypeError:  # an integer beyond 64 bits echoed from the request: orjson refuses it
        content = json.dumps(document, separators=(",", ":")).encode()
    return Response(content, status, media_type="application/json")


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
    def root(request: Request) -> str:
        return str(request.base_url).rstrip("/") + PREFIX

    @staticmethod
    async def _parse(request: Request) -> tuple[BeaconQuery, bytes | None]:
        if request.method == "GET":
            return from_query_params(single_valued(request.query_params.multi_items())), None
        body = await request.body()
        if not body:  # as the node reads it: no body is the defaults, a blank one malformed
            return parse_body_json(None), None
        try:
            raw = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise BeaconRequestError(f"invalid request: body: malformed JSON ({exc})") from None
        if raw is None:  # `null`, like an empty body: the defaults (as the node reads it)
            return parse_body_json(None), None
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
        return json_response(merged(network, found, query, entity))

    def _failed(self, network: Network, found: list[NodeAnswer],
                query: BeaconQuery | None = None) -> Response:
        if not found:
            status, message = 503, f"network {network.name!r} has no members"
        else:
            status, message = merge.failure(found)
        return json_response(merge.error_document(network.beacon_id, status, message, query,
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
        return json_response(build(network, found))


__all__ = ["NODE_PREFIX", "PREFIX", "Hub", "entity_of", "mirrored_paths"]
