"""ASGI app factory: `create_app(node_dir)` serves a node's APIs — Beacon under /beacon, access
(applications, committee, visas) under /access, the catalogue under /catalogue, htsget under
/htsget — and the OpenAPI document at /openapi.json. Errors keep each API's own envelope, always
without a stack trace. Every API that releases data asks the one access policy on
`app.state.access` (see :mod:`genofed.access.http`)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from genofed import __version__
from genofed.access.governance import Governance
from genofed.access.http import AccessContext, Authenticator
from genofed.access.identity import PassportAuthenticator
from genofed.access.router import router as access_router
from genofed.beacon.access import QueryBudget
from genofed.beacon.errors import BeaconRequestError, BudgetExceededError
from genofed.beacon.responses import error_response
from genofed.beacon.router import BeaconState, router
from genofed.beacon.service import BeaconService
from genofed.catalogue.router import build_router as catalogue_router
from genofed.federation.signatures import install_peer_verification
from genofed.files.htsget import HtsgetState, htsget_error_response
from genofed.files.htsget import router as htsget_router
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


def create_app(node_dir: Path, *, authenticator: Authenticator | None = None,
               budget: QueryBudget | None = None) -> FastAPI:
    """The node's ASGI app. Bearer tokens are checked by `authenticator` (default: OIDC tokens
    and GA4GH Passports from the issuers and visa signers the node's config trusts)."""
    store = NodeStore.open(node_dir)
    disclosure = store.config.disclosure

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.governance.close()  # writes audit records still queued

    app = FastAPI(title=f"genofed node {store.config.node_id}", version=__version__,
                  lifespan=lifespan,
                  description="GA4GH Beacon v2 (under /beacon) over a genofed node store.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.beacon = BeaconState(
        service=BeaconService(store),
        budget=budget or QueryBudget(disclosure.query_budget, disclosure.budget_window_seconds),
    )
    app.state.governance = governance = Governance.open(node_dir, config=store.config)
    app.state.access = AccessContext(
        authenticator=authenticator or PassportAuthenticator.for_node(node_dir),
        policy=governance.policy)
    app.state.htsget = HtsgetState.for_store(store)
    node_id = store.config.node_id

    @app.exception_handler(BeaconRequestError)
    async def _beacon_error(request: Request, exc: BeaconRequestError) -> JSONResponse:
        headers = ({"Retry-After": str(exc.retry_after)}
                   if isinstance(exc, BudgetExceededError) else None)
        return JSONResponse(error_response(node_id, exc.status, exc.message), exc.status,
                            headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        if (htsget_error := htsget_error_response(request, exc)) is not None:
            return htsget_error
        return JSONResponse(error_response(node_id, 400, _validation_message(exc)), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if (htsget_error := htsget_error_response(request, exc)) is not None:
            return htsget_error
        message = str(exc.detail) if exc.detail else "error"
        if exc.status_code == 404:
            message = f"no such endpoint: {request.url.path} (see /beacon/map)"
        return JSONResponse(error_response(node_id, exc.status_code, message), exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s", request.url.path)
        if (htsget_error := htsget_error_response(request, exc)) is not None:
            return htsget_error
        return JSONResponse(error_response(node_id, 500, "internal error; the node operator's "
                                           "log has the details"), 500)

    app.include_router(router, prefix="/beacon")
    app.include_router(access_router, prefix="/access")
    app.include_router(catalogue_router(store))
    app.include_router(htsget_router, prefix="/htsget")
    install_peer_verification(app, node_dir, store.config)  # no-op outside a network
    return app


NODE_DIR_VARIABLE = "GENOFED_NODE_DIR"


def app_from_environment() -> FastAPI:
    """App factory for multi-process serving (`uvicorn --factory`, one app per worker process):
    the node directory comes from the environment."""
    import os

    return create_app(Path(os.environ[NODE_DIR_VARIABLE]))
