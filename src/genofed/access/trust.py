"""Which login issuers and visa signers a node trusts (node.toml `[access]`), and changing that.

Two settings, both written by `genofed access trust`:

* `oidc_issuers`: issuers whose access tokens (checked at their userinfo endpoint) and GA4GH
  Passports the node accepts;
* `trusted_visas`: (iss, jku) pairs whose visas the node believes. The jku is pinned: a visa
  naming another key set is ignored before any key is fetched (GA4GH AAI 1.2).

An issuer is usually trusted for both. Its jku is found in its OIDC discovery document
(`jwks_uri`) unless given. Every change is written atomically and recorded in the audit trail
(`trust.change`) by the command; a running node applies it on its next request.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from genofed.config.node import AccessSettings, NodeConfig, VisaTrust
from genofed.errors import NodeConfigError

_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def checked_url(value: str, what: str) -> str:
    """An https URL, or http on loopback (the embedded default's local issuer), without a
    trailing slash; anything else is refused naming `what`."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise NodeConfigError(f"{what} {value!r} is not an http(s) URL",
                              hint="e.g. https://login.elixir-czech.org/oidc/")
    if parts.scheme == "http" and parts.hostname not in _LOOPBACK:
        raise NodeConfigError(f"{what} {value!r} is plain http on a network address; tokens "
                              "and keys must come over https (http is for loopback only)")
    if parts.query or parts.fragment:
        raise NodeConfigError(f"{what} {value!r} has a query or fragment; give the bare URL")
    return normalised(value)


def normalised(url: str) -> str:
    """The form an issuer URL is kept in: no surrounding space, and no trailing slash after a
    bare host (issuers with a path keep theirs exactly: `iss` is compared as a string)."""
    url = url.strip()
    return url.rstrip("/") if urlsplit(url).path in ("", "/") else url


def discovered_jwks(issuer: str, *, timeout: float = 5.0) -> str:
    """The `jwks_uri` of an issuer's OIDC discovery document (the issuer must be reachable)."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = httpx.get(url, timeout=timeout, follow_redirects=False)
        response.raise_for_status()
        jwks = response.json().get("jwks_uri")
    except (httpx.HTTPError, ValueError, AttributeError) as exc:
        raise NodeConfigError(f"cannot read the discovery document {url} "
                              f"({type(exc).__name__})",
                              hint="give the issuer's visa key set with --jku URL") from None
    if not isinstance(jwks, str):
        raise NodeConfigError(f"{url} names no jwks_uri", hint="give it with --jku URL")
    return checked_url(jwks, "jwks_uri")


@dataclass(frozen=True)
class TrustEntry:
    """One issuer as the node trusts it."""

    issuer: str
    tokens: bool
    jku: str | None  # None: its visas are not trusted

    def to_dict(self) -> dict[str, object]:
        return {"issuer": self.issuer, "tokens": self.tokens, "visasJku": self.jku}


def entries(config: NodeConfig) -> list[TrustEntry]:
    """Every trusted issuer, with what it is trusted for."""
    issuers = list(dict.fromkeys([*config.access.oidc_issuers,
                                  *(t.iss for t in config.access.trusted_visas)]))
    jkus = {t.iss: t.jku for t in config.access.trusted_visas}
    return [TrustEntry(i, i in config.access.oidc_issuers, jkus.get(i)) for i in issuers]


def with_trust(config: NodeConfig, issuer: str, *, tokens: bool, jku: str | None) -> NodeConfig:
    """`config` trusting `issuer` for its tokens (`tokens`) and its visas signed under `jku`
    (None: not its visas); replaces what the node trusted it for before."""
    if not tokens and jku is None:
        raise NodeConfigError(f"trusting {issuer} for neither tokens nor visas trusts nothing",
                              hint="drop --visas-only or --tokens-only")
    access = _without(config, issuer)
    if tokens:
        access.oidc_issuers.append(issuer)
    if jku is not None:
        access.trusted_visas.append(VisaTrust(iss=issuer, jku=jku))
    return config.model_copy(update={"access": access})


def without_trust(config: NodeConfig, issuer: str) -> NodeConfig:
    """`config` trusting `issuer` for nothing (refused when it trusted it for nothing)."""
    if not any(e.issuer == issuer for e in entries(config)):
        known = ", ".join(e.issuer for e in entries(config)) or "none"
        raise NodeConfigError(f"this node does not trust {issuer!r}; it trusts: {known}")
    return config.model_copy(update={"access": _without(config, issuer)})


def _without(config: NodeConfig, issuer: str) -> AccessSettings:
    access = config.access.model_copy(deep=True)
    access.oidc_issuers = [i for i in access.oidc_issuers if i != issuer]
    access.trusted_visas = [t for t in access.trusted_visas if t.iss != issuer]
    return access
