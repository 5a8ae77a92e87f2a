"""The OpenAPI documents of the node and the hub, corrected where FastAPI's derivation says
something the server does not do.

Each router declares the statuses it answers and its API's error envelope (the Beacon error
response under /beacon, `{"error": ...}` under /access and /catalogue, htsget's under /htsget;
:mod:`genofed.server.errors` writes them). What the serving layer adds, in
:func:`finish_document`:

* no 422 on operations with parameters: the error handlers answer validation errors with 400
  (declared where a router did not), and any operation may fail internally (500), each in its
  API's envelope;
* the Beacon queries' parameters, typed as the parsers validate them
  (:mod:`genofed.server.beacon_parameters`);
* components for request bodies that routes reference but read themselves (the hub forwards
  the body it was sent, unvalidated by FastAPI);
* what the node's middleware answers before any router is asked, in the API's envelope: 503 on
  every operation while node.toml cannot be read (:class:`genofed.server.errors.ConfigGuard`),
  and the peer signature refusals of `/federation`, which answers signed peer requests only
  (:mod:`genofed.federation.peers`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from genofed.access.router import AccessErrorResponse
from genofed.beacon.router import BeaconErrorResponse
from genofed.catalogue.router import CatalogueErrorResponse
from genofed.federation.router import PREFIX as FEDERATION_PREFIX
from genofed.files.htsget import HtsgetErrorResponse
from genofed.server.beacon_parameters import describe_beacon_queries, describe_request_body
from genofed.server.errors import envelope_of


class ApiErrorDetail(BaseModel):
    errorCode: int
    errorMessage: str


class ApiErrorResponse(BaseModel):
    """An error of an API that declares no error model of its own (the analyses')."""

    error: ApiErrorDetail


#: The error envelope of each API (:func:`genofed.server.errors.envelope_of`) by its model.
_ENVELOPES: dict[str, dict[str, type[BaseModel]]] = {
    "beacon": {"": BeaconErrorResponse}, "htsget": {"": HtsgetErrorResponse},
    "plain": {"/access": AccessErrorResponse, "/catalogue": CatalogueErrorResponse,
              "": ApiErrorResponse},
}
_INVALID = "The request is invalid (a parameter or the body)"
_BUG = "An internal error; the operator's log has the details"
_UNAVAILABLE = "The node's configuration cannot be read right now (the operator's log says why)"
_PEER_REFUSALS = {401: "Not a signed peer request, or its signature is refused",
                  403: "The signing peer may not make this request",
                  413: "The peer request's body is too large",
                  503: "The network file cannot be read right now"}


def _envelope(path: str) -> type[BaseModel]:
    kinds = _ENVELOPES[envelope_of(path)]
    return next(model for prefix, model in kinds.items() if path.startswith(prefix))


def _declare(operation: dict[str, Any], status: int, description: str,
             model: type[BaseModel]) -> None:
    operation.setdefault("responses", {}).setdefault(str(status), {
        "description": description,
        "content": {"application/json": {"schema": {
            "$ref": f"#/components/schemas/{model.__name__}"}}}})


def finish_document(app: FastAPI, *, beacon_prefix: str,
                    models: Sequence[type[BaseModel]] = (), node: bool = False) -> None:
    """Make `app.openapi()` say what the handlers do (see the module docstring); the Beacon
    API is served under `beacon_prefix`; a `node` has the node's middleware."""
    models = [*models, *(m for kinds in _ENVELOPES.values() for m in kinds.values())]
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = generate()
        for path, operations in document.get("paths", {}).items():
            model = _envelope(path)
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                if responses.pop("422", None) is not None:  # FastAPI validated something
                    _declare(operation, 400, _INVALID, model)
                _declare(operation, 500, _BUG, model)
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        describe_beacon_queries(document, beacon_prefix)
        if node:
            _describe_node_middleware(document)
        _definitions, top = models_json_schema(
            [(model, "validation") for model in models],
            ref_template="#/components/schemas/{model}")
        _add_referenced(document, top.get("$defs", {}))
        describe_request_body(schemas)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


#: A member node's HTTP Message Signature (RFC 9421), which `/federation` requires.
_PEER_SIGNATURE = {"type": "apiKey", "in": "header", "name": "Signature",
                   "description": "An HTTP Message Signature (RFC 9421) of a member of the "
                                  "node's network, with its Signature-Input"}


_REFERENCE = re.compile(r"#/components/schemas/([A-Za-z0-9_.-]+)")


def _add_referenced(document: dict[str, Any], definitions: dict[str, Any]) -> None:
    """Add the `definitions` the document names and does not hold (and those they name)."""
    schemas = document["components"]["schemas"]
    wanted = set(_REFERENCE.findall(json.dumps(document)))
    while missing := {name for name in wanted - set(schemas) if name in definitions}:
        for name in missing:
            schemas[name] = definitions[name]
            wanted |= set(_REFERENCE.findall(json.dumps(definitions[name])))


def _describe_node_middleware(document: dict[str, Any]) -> None:
    for path, operations in document.get("paths", {}).items():
        model = _envelope(path)
        for operation in operations.values():
            if path.startswith(FEDERATION_PREFIX + "/"):
                operation["security"] = [{"peerSignature": []}]
                for status, description in _PEER_REFUSALS.items():
                    _declare(operation, status, description, model)
            _declare(operation, 503, _UNAVAILABLE, model)
    schemes = document.setdefault("components", {}).setdefault("securitySchemes", {})
    schemes["peerSignature"] = _PEER_SIGNATURE
