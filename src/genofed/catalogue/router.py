"""The catalogue HTTP API (mounted at /catalogue): the node's DCAT-AP / HealthDCAT-AP records as
JSON-LD (the default) or Turtle, chosen by `Accept` or overridden by `?format=`.

Catalogue metadata is public by design (it is how researchers find what to apply for), so these
routes need no caller identity and charge no query budget."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from rdflib import Graph

from genofed.catalogue.records import PREFIXES, catalogue_graph, dataset_graph
from genofed.errors import NotAcceptableError, UnknownDatasetError
from genofed.store.node import NodeStore

_TAG = "Catalogue (DCAT-AP / HealthDCAT-AP)"


@dataclass(frozen=True)
class RdfFormat:
    media_type: str
    rdflib_name: str


JSON_LD = RdfFormat("application/ld+json", "json-ld")
TURTLE = RdfFormat("text/turtle", "turtle")

#: Media types served, in the server's order of preference (ties in `Accept` go to JSON-LD).
_BY_MEDIA_TYPE: dict[str, RdfFormat] = {
    "application/ld+json": JSON_LD,
    "application/json": JSON_LD,  # plain-JSON clients get JSON-LD, which is JSON
    "text/turtle": TURTLE,
}
_BY_FORMAT_PARAMETER: dict[str, RdfFormat] = {
    "jsonld": JSON_LD, "json-ld": JSON_LD, "json": JSON_LD, "ttl": TURTLE, "turtle": TURTLE,
}


class CatalogueErrorDetail(BaseModel):
    errorCode: int
    errorMessage: str


class CatalogueErrorResponse(BaseModel):
    """How the catalogue refuses a request: the HTTP status and a message."""

    error: CatalogueErrorDetail


def _errors(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": CatalogueErrorResponse, "description": description}
            for status, description in descriptions.items()}


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {JSON_LD.media_type: {"schema": {"type": "object"}},
                      TURTLE.media_type: {"schema": {"type": "string"}}},
          "description": "DCAT-AP / HealthDCAT-AP RDF",
          "headers": {"Vary": {"description": "Accept: the format is negotiated",
                               "schema": {"type": "string"}}}},
    **_errors({400: "Unknown `format` value", 406: "No served media type is acceptable",
               500: "An internal error; the operator's log has the details"}),
}


def _accepted(header: str) -> list[tuple[str, float]]:
    """(media range, q) for each entry of an Accept header."""
    entries = []
    for part in header.split(","):
        fields = [f.strip() for f in part.split(";")]
        media_range = fields[0].lower()
        if not media_range:
            continue
        q = 1.0
        for parameter in fields[1:]:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0  # an unreadable weight accepts nothing rather than everything
        entries.append((media_range, q))
    return entries


def _specificity(media_range: str) -> int:
    return 0 if media_range == "*/*" else 1 if media_range.endswith("/*") else 2


def negotiate(accept: str | None) -> RdfFormat:
    """The format for an Accept header (RFC 9110: most specific range sets the weight; highest
    weight wins; the server's order breaks ties). Raises NotAcceptableError."""
    if not accept or not accept.strip():
        return JSON_LD
    entries = _accepted(accept)
    best_q = 0.0
    chosen: RdfFormat | None = None
    for media_type, rdf_format in _BY_MEDIA_TYPE.items():
        kind = media_type.split("/")[0]
        matching = [(rng, q) for rng, q in entries if rng in (media_type, f"{kind}/*", "*/*")]
        if not matching:
            continue
        # The most specific matching range decides (text/turtle;q=0 beats */*).
        _rng, q = max(matching, key=lambda m: _specificity(m[0]))
        if q > best_q:  # strictly: on a tie the earlier (preferred) type stays
            best_q, chosen = q, rdf_format
    if chosen is None:
        raise NotAcceptableError(
            f"cannot produce any of {accept!r}; the catalogue is served as "
            f"{', '.join(_BY_MEDIA_TYPE)} (or add ?format=jsonld or ?format=ttl)")
    return chosen


def serialize(graph: Graph, rdf_format: RdfFormat) -> bytes:
    if rdf_format is JSON_LD:
        # A compacting @context of the specification prefixes keeps the JSON readable.
        text = graph.serialize(format="json-ld", context=PREFIXES, auto_compact=True, indent=2)
    else:
        text = graph.serialize(format="turtle")
    return text.encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"errorCode": status, "errorMessage": message}}, status)


def _base_url(store: NodeStore, request: Request) -> str:
    """IRIs use the node's configured public URL; without one, the URL the caller used."""
    return store.config.access.public_url or str(request.base_url)


def _format_schema(derived: dict[str, Any]) -> None:
    """The `format` parameter as the handler reads it: one of the names, in any case (FastAPI
    derives `string or null`, and validates just that)."""
    derived.pop("anyOf", None)
    derived.update(type="string", enum=sorted(_BY_FORMAT_PARAMETER))


FormatParameter = Annotated[str | None, Query(
    alias="format", description="override content negotiation: jsonld or ttl (any case)",
    json_schema_extra=_format_schema)]


def build_router(store: NodeStore) -> APIRouter:
    """The /catalogue routes over `store` (include without a prefix: the paths are absolute)."""
    router = APIRouter(tags=[_TAG])

    def respond(request: Request, format_: str | None,
                build: Callable[[str], Graph]) -> Response:
        if format_ is not None:
            rdf_format = _BY_FORMAT_PARAMETER.get(format_.lower())
            if rdf_format is None:
                return _error(400, f"unknown format {format_!r}; use one of: "
                                   f"{', '.join(_BY_FORMAT_PARAMETER)}")
        else:
            try:
                rdf_format = negotiate(request.headers.get("accept"))
            except NotAcceptableError as exc:
                return _error(406, str(exc))
        try:
            graph = build(_base_url(store, request))
        except UnknownDatasetError as exc:
            return _error(404, str(exc))
        media_type = rdf_format.media_type + ("; charset=utf-8" if rdf_format is TURTLE else "")
        return Response(serialize(graph, rdf_format), media_type=media_type,
                        headers={"Vary": "Accept"})

    @router.get("/catalogue", summary="The node's catalogue: every dataset", responses=_RESPONSES,
                response_class=Response)
    def whole_catalogue(request: Request, format: FormatParameter = None) -> Response:
        return respond(request, format, lambda base: catalogue_graph(store, base))

    @router.get("/catalogue/datasets/{dataset_id}", summary="One dataset's record",
                responses={**_RESPONSES, **_errors({404: "No such dataset"})},
                response_class=Response)
    def one_dataset(request: Request, dataset_id: str,
                    format: FormatParameter = None) -> Response:
        return respond(request, format, lambda base: dataset_graph(store, dataset_id, base))

    return router
