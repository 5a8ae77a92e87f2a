"""ASGI app factory: `create_app(node_dir)` serves a node's APIs — Beacon under /beacon, access
(applications, committee, visas) under /access, the catalogue under /catalogue, htsget under
/htsget, the node's portal pages (committee, operator, auditor) under /portal — the operator's
/health and /metrics (:mod:`genofed.server.operations`), and the
OpenAPI document at /openapi.json. Errors keep each API's own envelope, always
without a stack trace (:mod:`genofed.server.errors`). Every API that releases data asks the one
access policy on `app.state.access` (see :mod:`genofed.access.http`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import FastAPI

from genofed import __version__
from genofed.access.exposure import ExposureLedger
from genofed.access.governance import Governance
from genofed.access.http import AccessContext, Authenticator
from genofed.access.identity.live import NodeAuthenticator
from genofed.access.query_budget import SharedQueryBudget
from genofed.access.router import router as access_router
from genofed.analysis.http import node_router as analysis_node_router
from genofed.analysis.node import AnalysisNode
from genofed.analysis.protocol import ENDPOINT as ANALYSIS_ENDPOINT
from genofed.analysis.protocol import MAX_MESSAGE
from genofed.beacon.access import QueryBudget
from genofed.beacon.responses import beacon_id
from genofed.beacon.router import BeaconState, router
from genofed.beacon.service import BeaconService
from genofed.catalogue.router import build_router as catalogue_router
from genofed.config.live import LiveConfig
from genofed.federation.peers import install_peer_verification
from genofed.federation.router import PREFIX as FEDERATION_PREFIX
from genofed.federation.router import router as federation_router
from genofed.files.htsget import router as htsget_router
from genofed.files.service import HtsgetService
from genofed.portal.sites import install_node_portal
from genofed.server.errors import ConfigGuard, install_error_handlers
from genofed.server.openapi import finish_document
from genofed.server.operations import Metrics, MetricsMiddleware, operations_router
from genofed.store.node import NodeStore


def create_app(node_dir: Path, *, authenticator: Authenticator | None = None,
               budget: QueryBudget | SharedQueryBudget | None = None) -> FastAPI:
    """The node's ASGI app. Bearer tokens are checked by `authenticator` (default: OIDC tokens
    and GA4GH Passports from the issuers and visa signers the node's config trusts)."""
    store = NodeStore.open(node_dir)
    disclosure = store.config.disclosure
    live = LiveConfig(node_dir, store.config)  # trust, committee, network: applied as changed

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        app.state.governance.close()  # writes audit records still queued
        access = getattr(app.state, "access", None)
        close = getattr(access.authenticator, "close", None) if access is not None else None
        if close is not None:  # connections to the login issuers
            close()
        portal = getattr(app.state, "portal", None)
        if portal is not None and portal.login is not None:  # the portal's login connections
            portal.login.close()

    app = FastAPI(title=f"genofed node {store.config.node_id}", version=__version__,
                  lifespan=lifespan,
                  description="GA4GH Beacon v2 (under /beacon) over a genofed node store.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None)
    app.state.config = live
    app.state.store = store  # the operator pages read datasets and versions (portal/operate.py)
    app.state.governance = governance = Governance.open(node_dir, config=store.config, live=live)
    exposure = ExposureLedger(governance.db,
                              lambda: live.current().disclosure.exposure_budget)
    app.state.beacon = BeaconState(
        service=BeaconService(store, live, exposure),
        budget=budget or SharedQueryBudget(governance.db, disclosure.query_budget,
                                           disclosure.budget_window_seconds),
    )
    app.state.access = AccessContext(
        authenticator=authenticator or NodeAuthenticator(node_dir, live),
        policy=governance.policy)
    app.state.htsget = HtsgetService.for_store(store, governance.policy)
    node_id = store.config.node_id

    install_error_handlers(app, beacon_id=lambda: beacon_id(node_id), map_url="/beacon/map",
                           operator="node")
    app.include_router(router, prefix="/beacon")
    app.include_router(access_router, prefix="/access")
    app.include_router(catalogue_router(store))
    app.include_router(htsget_router, prefix="/htsget")
    app.state.analysis = AnalysisNode(store, live, governance.policy,
                                      app.state.access.authenticator, exposure)
    app.include_router(federation_router, prefix=FEDERATION_PREFIX)
    app.include_router(analysis_node_router)
    install_node_portal(app, store.config, governance.db)
    install_peer_verification(app, node_dir, live, required_prefixes=(FEDERATION_PREFIX + "/",),
                              large_bodies={ANALYSIS_ENDPOINT: MAX_MESSAGE})
    app.add_middleware(ConfigGuard, live=live, beacon_id=beacon_id(node_id))
    metrics = Metrics()
    app.include_router(operations_router(store, governance.db, metrics,
                                         lambda: governance.audit.decisions))
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: times everything
    finish_document(app, beacon_prefix="/beacon", node=True)
    return app


NODE_DIR_VARIABLE = "GENOFED_NODE_DIR"


def app_from_environment() -> FastAPI:
    """App factory for multi-process serving (`uvicorn --factory`, one app per worker process):
    the node directory comes from the environment."""
    import os

    return create_app(Path(os.environ[NODE_DIR_VARIABLE]))
