"""ASGI app factory of the coordinator: `create_hub_app(network_file, node_dir)` serves the Beacon
network (:class:`genofed.federation.hub.Hub`) under /network/beacon, federated analyses
(:mod:`genofed.analysis.coordinator`) under /analysis/jobs and the network's portal pages under
/portal, with the same error envelopes as a node
(:mod:`genofed.server.errors`). The hub runs beside a member node: it signs as that node, trusts
the login issuers that node trusts, and keeps its jobs in that node's directory."""

from __future__ import annotations

import warnings
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import Response

from genofed import __version__
from genofed.access.db import GovernanceDB
from genofed.access.http import Authenticator
from genofed.access.identity.live import NodeAuthenticator
from genofed.analysis.coordinator import ROUND_TIMEOUT, Coordinator
from genofed.analysis.http import hub_router
from genofed.analysis.jobs import JobStore
from genofed.beacon.request import BeaconRequestBody
from genofed.beacon.router import CollectionRequestBody, VariantIdRequestBody, error_responses
from genofed.config.live import LiveConfig
from genofed.config.node import NodePaths, load_config
from genofed.errors import NetworkFileError
from genofed.federation import answers, merge
from genofed.federation.answers import AnswerCheck
from genofed.federation.client import DEFAULT_TIMEOUT, FanOut, NodeAnswer
from genofed.federation.hub import (
    NODE_PREFIX,
    PREFIX,
    Hub,
    entity_of,
    json_response,
    mirrored_paths,
)
from genofed.federation.network import LiveNetwork, Network
from genofed.federation.signatures import PeerSigner
from genofed.portal.sites import install_hub_portal
from genofed.server.errors import install_error_handlers
from genofed.server.openapi import finish_document

#: What the merged framework endpoints answer besides 200: a status every asked member answered
#: with (e.g. 401 or 403 when they refuse the hub's signature), or the hub's own failures.
_FRAMEWORK_ERRORS = error_responses(401, 403, 404, 500, 502, 503, 504)
#: `/info` answers whatever the members do (their statuses are in `info.network`).
_INFO_ERRORS = error_responses(500, 503)
#: What the mirrored queries answer besides 200: the hub's own refusal of the request (400), a
#: status every asked member answered with (a 429 without the members' `Retry-After`), or the
#: hub's own failures.
_QUERY_ERRORS = error_responses(400, 401, 403, 404, 429, 500, 502, 503, 504, retry_after=False)


def create_hub_app(network_file: Path, node_dir: Path, *, timeout: float = DEFAULT_TIMEOUT,
                   directory_ttl: float = 30.0, round_timeout: float = ROUND_TIMEOUT,
                   authenticator: Authenticator | None = None) -> FastAPI:
    """The coordinator's ASGI app beside the member node at `node_dir`. `timeout` bounds each
    member's answer to a Beacon request, `round_timeout` to an analysis round (seconds);
    researchers' tokens are checked by `authenticator` (default: as the node checks them)."""
    config = load_config(node_dir)
    node_id = config.node_id
    signing_key_path = NodePaths(node_dir, config).signing_key
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
    jobs_dir = NodePaths(node_dir, config).hub
    # The portal's sessions live in the governance database of the node the hub runs beside.
    portal_db = GovernanceDB.for_node(node_dir, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Opened per start, closed per stop: a served app may be started again (and the job
        # store and login checks hold connections that must not outlive a stop).
        await fan_out.open()
        jobs = JobStore(jobs_dir)
        coordinator = Coordinator(jobs, fan_out, network, round_timeout=round_timeout)
        checker = authenticator or NodeAuthenticator(node_dir, LiveConfig(node_dir, config))
        app.state.jobs = jobs
        app.state.coordinator = coordinator
        app.state.analysis_authenticator = checker
        coordinator.resume_all()
        try:
            yield
        finally:
            await coordinator.stop()
            await fan_out.close()
            jobs.close()
            close = getattr(checker, "close", None)
            if site.login is not None:
                site.login.close()
            portal_db.close()
            if authenticator is None and close is not None:
                close()

    app = FastAPI(title=f"genofed Beacon network {current.name}", version=__version__,
                  description="A GA4GH Beacon v2 network (under /network/beacon) over the "
                              "members of a genofed network, per-node status in `info.network`; "
                              "federated analyses under /analysis/jobs.",
                  openapi_url="/openapi.json", docs_url="/docs", redoc_url=None,
                  lifespan=lifespan)
    app.state.hub = hub
    site = install_hub_portal(app, config, portal_db, current.name)

    def beacon_id() -> str:
        try:
            return network.current().beacon_id
        except NetworkFileError:
            return "org.genofed.network"

    install_error_handlers(app, beacon_id=beacon_id, map_url=f"{PREFIX}/map", operator="hub")

    def framework_route(path: str, node_path: str, check: AnswerCheck,
                        build: Callable[[Network, list[NodeAnswer]], dict[str, Any]],
                        summary: str, partial_ok: bool = False) -> None:
        async def handler(request: Request) -> Response:
            return await hub.framework(request, node_path, check, build, partial_ok=partial_ok)

        app.add_api_route(PREFIX + path, handler, methods=["GET"], summary=summary,
                          tags=["Beacon network framework"], include_in_schema=path != "",
                          name=f"network{path.replace('/', '_') or '_root'}",
                          responses=_INFO_ERRORS if partial_ok else _FRAMEWORK_ERRORS)

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
        root = Hub.root(request)
        return await hub.framework(request, "/map", answers.check_map,
                                   lambda n, found: merge.beacon_map(n, found, root))

    app.add_api_route(PREFIX + "/map", beacon_map, methods=["GET"],
                      summary="Merged map, every URL under this network",
                      tags=["Beacon network framework"], responses=_FRAMEWORK_ERRORS)

    async def service_info(request: Request) -> Response:
        return json_response(merge.service_info(hub.current(), Hub.root(request)))

    app.add_api_route(PREFIX + "/service-info", service_info, methods=["GET"],
                      summary="GA4GH service-info of the network",
                      tags=["Beacon network framework"], responses=_INFO_ERRORS)

    for path in mirrored_paths():  # GET and POST apart: one operation (and id) each
        entity = entity_of(path)
        handler = hub.entry_handler(entity)
        name = path.strip("/").replace("/", "_").replace("{id}", "by_id")
        for method in ("GET", "POST"):
            app.add_api_route(
                PREFIX + path, handler, methods=[method], tags=[path.strip("/").split("/")[0]],
                summary=f"{entity} from every member (mirrors {method} {NODE_PREFIX}{path})",
                name=f"network_{method.lower()}_{name}",
                operation_id=f"network_{method.lower()}_{name}", responses=_QUERY_ERRORS)
    # The handlers read their parameters and body themselves (and forward them as sent): the
    # document is told them, and the bodies' components, by the serving layer.
    app.include_router(hub_router)
    finish_document(app, beacon_prefix=PREFIX,
                    models=[BeaconRequestBody, VariantIdRequestBody, CollectionRequestBody])
    return app


