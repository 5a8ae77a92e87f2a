"""The two portals: the network's, served beside the hub (search, catalogue, allele
frequencies, applications, analyses), and each node's own (its committee, operator and auditor
pages)."""

from __future__ import annotations

from fastapi import FastAPI

from genofed.access.db import GovernanceDB
from genofed.config.node import NodeConfig
from genofed.portal import analyse, apply, committee, discover, operate
from genofed.portal.login import OidcLogin
from genofed.portal.sessions import SessionStore
from genofed.portal.web import PREFIX, NavItem, Site, install

HUB_NAV = [NavItem("Home", f"{PREFIX}/"), NavItem("Search", f"{PREFIX}/search"),
           NavItem("Catalogue", f"{PREFIX}/catalogue"),
           NavItem("Allele frequencies", f"{PREFIX}/frequencies"),
           NavItem("Basket", f"{PREFIX}/basket", login=True),
           NavItem("My applications", f"{PREFIX}/applications", login=True),
           NavItem("Analyses", f"{PREFIX}/analyses", login=True)]
NODE_NAV = [NavItem("Home", f"{PREFIX}/"), NavItem("Committee", f"{PREFIX}/committee"),
            NavItem("Datasets", f"{PREFIX}/operate"), NavItem("Audit", f"{PREFIX}/audit")]


def _login(config: NodeConfig) -> OidcLogin | None:
    issuer = config.portal.issuer or next(iter(config.access.oidc_issuers), "")
    return OidcLogin(issuer, config.portal.client_id) if issuer else None


def install_node_portal(app: FastAPI, config: NodeConfig, db: GovernanceDB) -> Site:
    site = Site("node", config.node_id, f"genofed node {config.node_id} ({config.country})",
                SessionStore(db), _login(config), NODE_NAV,
                session_seconds=config.portal.session_hours * 3600)
    install(app, site)
    for module in (committee, operate):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    return site


def install_hub_portal(app: FastAPI, config: NodeConfig, db: GovernanceDB,
                       network_name: str) -> Site:
    site = Site("hub", config.node_id, f"genofed network {network_name}", SessionStore(db),
                _login(config), HUB_NAV, session_seconds=config.portal.session_hours * 3600)
    install(app, site)
    for module in (discover, apply, analyse):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    return site
