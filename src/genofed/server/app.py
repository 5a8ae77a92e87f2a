"""ASGI app factory: `create_app(node_dir)` serves a node's Beacon under /beacon and the OpenAPI
document at /openapi.json. Every error becomes a Beacon error envelope with a 4xx status (or,
for a bug, a 500 without a stack trace)."""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed.access.governance import Governance
from genofed.access.router import router as access_router
from genofed.beacon.access import CallerResolver, QueryBudget, caller_from
from genofed.beacon.errors import BeaconRequestError, BudgetExceededError
from genofed.beacon.responses import error_response
from genofed.beacon.router import BeaconState, router
from genofed.beacon.service import BeaconService
from genofed.catalogue.router import build_router as catalogue_router
from genofed.federation.signatures import install_peer_verification
from genofed.store.node import NodeStore

log = logging.getLogger(__name__)


def _validation_message(exc: RequestValidationError) -> str:
    problems = []
    for err in exc.errors()[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        message = err.get("msg", "invalid")
        if err.get("type") == "json_invalid":
            message = f"malformed JSON ({err.get('ctx', {}).get('error', 'invalid')})"
        problems.append(f"{where}: {message}")
    return "invalid request: " + "; ".join(problems)


def create_app(node_dir: Path, *, caller_resolver: CallerResolver | None = None,
               budget: QueryBudget | None = None) -> FastAPI:
    """The node's ASGI app. `caller_resolver` maps (Authorization header, client host) to a
    :class:`~genofed.beacon.access.Caller` (the access issue plugs visas in here)."""
    store = NodeStore.open(node_dir)
    disclosure = store.config.disclosure
    app = FastAPI(title=f"genofed node {store.config.node_id}", version=__version__,
                  description="GA4GH Beacon v2 (under /beacon) over a genofed node store.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.beacon = BeaconState(
        service=BeaconService(store),
        budget=budget or QueryBudget(disclosure.query_budget, disclosure.budget_window_seconds),
        resolve_caller=caller_resolver or caller_from,
    )
    app.state.governance = Governance.open(node_dir, config=store.config)
    node_id = store.config.node_id

    @app.exception_handler(BeaconRequestError)
    async def _beacon_error(request: Request, exc: BeaconRequestError) -> JSONResponse:
        headers = ({"Retry-After": str(exc.retry_after)}
                   if isinstance(exc, BudgetExceededError) else None)
        return JSONResponse(error_response(node_id, exc.status, exc.message), exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_response(node_id, 400, _validation_message(exc)), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see /beacon/map)"
        return JSONResponse(error_response(node_id, exc.status_code, message), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        return JSONResponse(error_response(node_id, 500, "internal error; the node operator's "
                                           "log has the details"), 500)

    app.include_router(router, prefix="/beacon")
    app.include_router(access_router, prefix="/access")
    app.include_router(catalogue_router(store))
    install_peer_verification(app, node_dir, store.config)  # no-op outside a network
    return app


NODE_DIR_VARIABLE = "GENOFED_NODE_DIR"


def app_from_environment() -> FastAPI:
    """App factory for multi-process serving (`uvicorn --factory`, one app per worker process):
    the node directory comes from the environment."""
    import os

    return create_app(Path(os.environ[NODE_DIR_VARIABLE]))
