"""The error handlers every genofed HTTP app installs (the node's and the hub's): each API keeps
its own envelope, always without a stack trace.

* under /htsget: htsget's `{"htsget": {"error", "message"}}` (htsget v1.3 "Errors");
* under /access, /catalogue and /analysis: `{"error": {"errorCode", "errorMessage"}}`, the
  shape their routers refuse requests in (they are not Beacon APIs, so no Beacon `meta`);
* everywhere else: the Beacon v2 error envelope (`meta` + `error`), whose
  `receivedRequestSummary` echoes what the caller sent wherever it fits the schema's types.

The routers declare these envelopes in the OpenAPI document, for every status they answer.

A 405 answer names the allowed methods in `Allow` (RFC 9110); a 429 says when to retry.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

from genofed.beacon.request import sent_summary
from genofed.beacon.responses import error_response
from genofed.config.live import LiveConfig
from genofed.errors import (
    BeaconRequestError,
    BudgetExceededError,
    HtsgetError,
    HtsgetInvalidInput,
    HtsgetNotFound,
    HtsgetServerError,
    NodeConfigError,
)
from genofed.files.htsget import PREFIX as HTSGET_PREFIX
from genofed.files.htsget import error_json, is_htsget_path

log = logging.getLogger(__name__)

#: APIs whose errors are the bare `error` object (see the module docstring).
_PLAIN_ERROR_PREFIXES = ("/access", "/catalogue", "/analysis")


def envelope_of(path: str) -> str:
    """The error envelope of the API a path belongs to: "htsget", "plain" or "beacon"."""
    if is_htsget_path(path):
        return "htsget"
    if any(path == prefix or path.startswith(prefix + "/") for prefix in _PLAIN_ERROR_PREFIXES):
        return "plain"
    return "beacon"


def _plain_errors(path: str) -> bool:
    return envelope_of(path) == "plain"


#: HTTP status -> htsget error type, for errors raised outside htsget's own code.
_HTSGET_ERROR_FOR_STATUS = {400: "InvalidInput", 401: "InvalidAuthentication",
                            403: "PermissionDenied", 404: "NotFound", 405: "InvalidInput",
                            413: "PayloadTooLarge"}


def validation_message(exc: RequestValidationError) -> str:
    """FastAPI's validation errors as one line naming each parameter at fault."""
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        message = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            message = f"malformed JSON ({err.get('ctx', {}).get('error', 'invalid')})"
        problems.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(problems)


def allowed_methods(app: FastAPI, request: Request) -> list[str]:
    """The methods the routes matching the request's path accept (for `Allow`)."""
    methods: set[str] = set()
    for route in app.router.routes:
        match, _child = route.matches(request.scope)  # PARTIAL: the path, not the method
        route_methods = getattr(route, "methods", None)
        if match is not Match.NONE and route_methods:
            methods |= set(route_methods)
    return sorted(methods)


def install_error_handlers(app: FastAPI, *, beacon_id: Callable[[], str], map_url: str,
                           operator: str) -> None:
    """Errors of `app` in the envelope of the API they occur in. `beacon_id()` names the Beacon
    (a node's, or the network's); `map_url` is where a client lost on a 404 is pointed;
    `operator` is whose log holds the details of a 500 ("node" or "hub")."""

    def beacon_error(request: Request, status: int, message: str,
                     headers: dict[str, str] | None = None, body: Any = None) -> Response:
        document: dict[str, Any]
        if _plain_errors(request.url.path):
            document = {"error": {"errorCode": status, "errorMessage": message}}
        else:
            document = error_response(beacon_id(), status, message,
                                      summary=_summary(request, body))
        return Response(_json(document), status, headers=headers, media_type="application/json")

    @app.exception_handler(BeaconRequestError)
    async def _beacon(request: Request, exc: BeaconRequestError) -> Response:
        headers = ({"Retry-After": str(exc.retry_after)}
                   if isinstance(exc, BudgetExceededError) else None)
        return beacon_error(request, exc.status, exc.message, headers)

    @app.exception_handler(HtsgetError)
    async def _htsget(request: Request, exc: HtsgetError) -> Response:
        return error_json(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        message = validation_message(exc)
        if is_htsget_path(request.url.path):
            return error_json(request, HtsgetInvalidInput(message))
        return beacon_error(request, 400, message, body=exc.body)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        headers = dict(getattr(exc, "headers", None) or {})
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 405:
            allowed = allowed_methods(app, request)
            headers["Allow"] = ", ".join(allowed)
            message = (f"{request.method} is not allowed on {request.url.path}; use "
                       f"{' or '.join(allowed) or 'another path'}")
        if is_htsget_path(request.url.path):
            if exc.status_code == 404:
                error: HtsgetError = HtsgetNotFound(
                    f"no such endpoint: {request.url.path} (htsget serves "
                    f"{HTSGET_PREFIX}/variants/{{id}} and {HTSGET_PREFIX}/reads/{{id}})")
            else:
                error = HtsgetError(message)
                error.status = exc.status_code
                error.error = _HTSGET_ERROR_FOR_STATUS.get(exc.status_code, "InvalidInput")
            response = error_json(request, error)
            response.headers.update(headers)
            return response
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see {map_url})"
        return beacon_error(request, exc.status_code, message, headers or None)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s", request.url.path)
        message = f"internal error; the {operator} operator's log has the details"
        if is_htsget_path(request.url.path):
            return error_json(request, HtsgetServerError(message))
        return beacon_error(request, 500, message)


def _json(document: Any) -> bytes:
    """`document` as JSON. What the caller sent is echoed, and may hold integers beyond 64 bits,
    which orjson refuses (the standard library writes them)."""
    try:
        return orjson.dumps(document)
    except TypeError:
        return json.dumps(document, separators=(",", ":")).encode()


#: Where a router leaves a POST request's decoded JSON body for the error handlers
#: (`request.state` lives in the ASGI scope, shared by every Request object of one request).
BODY_STATE = "beacon_body"


def _summary(request: Request, body: Any = None) -> dict[str, Any]:
    """What the caller sent, for `receivedRequestSummary`: the GET parameters, or the POST body
    (from a validation error, or as a router left it on `request.state`)."""
    if body is None:
        body = getattr(request.state, BODY_STATE, None)
    return sent_summary(request.query_params, body)


class ConfigGuard:
    """ASGI middleware: while node.toml cannot be read (a hand edit broke it), every request is
    refused with 503 in its API's envelope, instead of being answered under a configuration the
    node has not loaded (the operator's log says what is wrong; callers are not told)."""

    def __init__(self, app: ASGIApp, *, live: LiveConfig, beacon_id: str) -> None:
        self.app = app
        self.live = live
        self.beacon_id = beacon_id

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.live.current()
            except NodeConfigError:
                message = ("this node's configuration cannot be read right now; the node "
                           "operator's log says why")
                response: Response
                if is_htsget_path(scope["path"]):
                    error = HtsgetServerError(message)
                    error.status = 503
                    response = Response(orjson.dumps(error.to_json()), 503,
                                        media_type="application/json")
                elif _plain_errors(scope["path"]):
                    response = Response(orjson.dumps({"error": {
                        "errorCode": 503, "errorMessage": message}}), 503,
                        media_type="application/json")
                else:
                    response = Response(orjson.dumps(error_response(self.beacon_id, 503,
                                                                    message)),
                                        503, media_type="application/json")
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
