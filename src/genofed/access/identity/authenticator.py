"""`PassportAuthenticator`: the :class:`~genofed.access.http.Authenticator` for GA4GH Passports.

A bearer token is accepted in two forms, both signed (RS256/ES256) by a configured OIDC issuer
(`[access].oidc_issuers`; LS-AAI in production, `genofed issuer` for the embedded default):

(a) an OIDC **access token** (JWT): verified against the issuer's discovery document and JWKS,
    then the issuer's userinfo endpoint is asked for the `ga4gh_passport_v1` visas;
(b) a GA4GH **Passport** JWT (AAI 1.2; `typ: vnd.ga4gh.passport+jwt` or a `ga4gh_passport_v1`
    claim): verified the same way, its visas are the ones it carries.

Visas are trusted per (iss, jku) pair (`[access].trusted_visas`), plus the node's own pair
(iss = the node's public URL, jku = `{public_url}/access/jwks.json`), whose key is read from the
node's key directory, never fetched. A verified Principal is cached by the token's SHA-256 until
it expires, so a repeated token costs a hash and a dict lookup.

A visa counts for the caller only if its (sub, iss) is the token's or is tied to it by a trusted
LinkedIdentities visa. Visas that a node or DAC signs for a broker's user (iss = the node, sub =
the user's sub at the broker) therefore need such a link: the local issuer adds one for visas it
collects from its visa sources, and a visa issuer can sign one itself (type LinkedIdentities,
`sub` = the user's sub, value = `format_linked_identities([Identity(sub, broker_iss)])`).

Failures raise :class:`~genofed.access.http.AuthenticationError` with a one-line reason (status
401; 503 when the issuer cannot be reached, which is not the caller's fault).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from genofed.access.identity.oidc import (
    AccessTokenVerifier,
    Clock,
    JwksCache,
    OidcDiscovery,
    PublicKey,
    default_http_client,
    fetch_json,
    inspect_jwt,
    jwk_thumbprint,
    public_jwk,
)
from genofed.access.identity.passport import (
    PASSPORT_CLAIM,
    PASSPORT_TYPE,
    VISA_CLAIM,
    Identity,
    VisaVerifier,
    evaluate_passport,
    principal_from,
)
from genofed.access.principal import Principal
from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.errors import AuthenticationError, IssuerUnavailable, TokenRejected

#: Where a node publishes the JWKS of its visa-signing key, below its public URL.
NODE_JWKS_PATH = "/access/jwks.json"


def node_public_url(config: NodeConfig) -> str:
    """The node's public base URL without a trailing slash: `[access].public_url`, else
    http://host:port (the same rule as :mod:`genofed.access.visas`)."""
    url = config.access.public_url or f"http://{config.server.host}:{config.server.port}"
    return url.rstrip("/")


def node_visa_trust(config: NodeConfig) -> tuple[str, str]:
    """(iss, jku) of the visas the node signs itself: its public URL, and its JWKS below it."""
    url = node_public_url(config)
    return url, url + NODE_JWKS_PATH


def load_node_public_key(paths: NodePaths) -> ec.EllipticCurvePublicKey:
    """The public half of the node's ES256 signing key (`NodePaths.signing_key`)."""
    private = serialization.load_pem_private_key(paths.signing_key.read_bytes(), password=None)
    if not isinstance(private, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{paths.signing_key}: not an EC (ES256) private key")
    return private.public_key()


class _PrincipalCache:
    """Verified principals by token hash, until they expire; least recently used evicted."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[bytes, Principal] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes, now: float) -> Principal | None:
        with self._lock:
            principal = self._entries.get(key)
            if principal is None:
                return None
            if now >= principal.expires:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return principal

    def put(self, key: bytes, principal: Principal) -> None:
        with self._lock:
            self._entries[key] = principal
            self._entries.move_to_end(key)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)


class PassportAuthenticator:
    """Bearer token → :class:`Principal` (see the module docstring for what is accepted)."""

    def __init__(self, *, oidc_issuers: Iterable[str],
                 trusted_visas: Iterable[tuple[str, str]] = (),
                 node_visa_issuer: tuple[str, str] | None = None,
                 node_public_key: PublicKey | None = None,
                 audience: str | Iterable[str] | None = None,
                 http: httpx.Client | None = None, clock: Clock = time.time,
                 leeway: float = 30.0, jwks_max_age: float = 3600.0,
                 jwks_refetch_interval: float = 30.0, cache_size: int = 10_000) -> None:
        """`node_visa_issuer` is the node's own (iss, jku), verified with `node_public_key`
        without HTTP. `audience`: when given, access tokens and Passports must name it in
        `aud`; when None (the default) `aud` is not checked, since tokens are also confirmed
        at the issuer's userinfo. `http` is the client for discovery, JWKS and userinfo."""
        self.http = http or default_http_client()
        self._owns_http = http is None
        self._clock = clock
        self.jwks = JwksCache(self.http, max_age=jwks_max_age,
                              refetch_interval=jwks_refetch_interval, clock=clock)
        trusted = {(iss, jku) for iss, jku in trusted_visas}
        if node_visa_issuer is not None:
            if node_public_key is None:
                raise ValueError("node_visa_issuer needs node_public_key")
            trusted.add(node_visa_issuer)
            kid = jwk_thumbprint(public_jwk(node_public_key))
            self.jwks.add_static(node_visa_issuer[1], {kid: node_public_key})
        self.tokens = AccessTokenVerifier(
            oidc_issuers, http=self.http, jwks=self.jwks,
            discovery=OidcDiscovery(self.http, clock=clock), audience=audience, leeway=leeway,
            clock=clock)
        self.visas = VisaVerifier(trusted, self.jwks, leeway=leeway, clock=clock)
        self._cache = _PrincipalCache(cache_size)

    @classmethod
    def for_node(cls, node_dir: Path, **options: Any) -> PassportAuthenticator:
        """The authenticator a node's settings describe: its OIDC issuers, trusted visa
        issuers and its own visa key. `options` go to the constructor (e.g. `http`)."""
        config = load_config(node_dir)
        paths = NodePaths(node_dir, config)
        return cls(oidc_issuers=config.access.oidc_issuers,
                   trusted_visas=[(t.iss, t.jku) for t in config.access.trusted_visas],
                   node_visa_issuer=node_visa_trust(config),
                   node_public_key=load_node_public_key(paths), **options)

    def close(self) -> None:
        """Close the connections to issuers (the client's, unless the caller gave it)."""
        if self._owns_http:
            self.http.close()

    def known(self, authorization: str) -> Principal | None:
        """The principal of a token verified before and not yet expired, without any I/O (so
        an async caller may skip a thread hop); None if it must go through `authenticate`."""
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self._cache.get(hashlib.sha256(token.strip().encode()).digest(), self._clock())

    def authenticate(self, authorization: str | None) -> Principal | None:
        if authorization is None or not authorization.strip():
            return None
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        key = hashlib.sha256(token.encode()).digest()
        cached = self._cache.get(key, self._clock())
        if cached is not None:
            return cached
        try:
            principal = self._verify(token)
        except TokenRejected as exc:
            raise AuthenticationError(exc.reason) from None
        except IssuerUnavailable as exc:
            raise AuthenticationError(f"cannot verify the token now: {exc}", status=503) from None
        self._cache.put(key, principal)
        return principal

    def _verify(self, token: str) -> Principal:
        parsed = inspect_jwt(token)
        if VISA_CLAIM in parsed.claims or "jku" in parsed.header:
            # A visa names its holder but proves nothing about who presents it.
            raise TokenRejected("a visa is not an access token or passport; send the access "
                                "token or a Passport JWT")
        is_passport = (PASSPORT_CLAIM in parsed.claims
                       or str(parsed.header.get("typ", "")).lower().removeprefix("application/")
                       == PASSPORT_TYPE)
        what = "passport" if is_passport else "access token"
        claims = self.tokens.verify(parsed, what)
        holder = Identity(claims["sub"], claims["iss"])
        visas = claims.get(PASSPORT_CLAIM, []) if is_passport else self._userinfo_visas(
            token, holder)
        evaluation = evaluate_passport(visas, holder, self.visas)
        return principal_from(holder, int(claims["exp"]), evaluation)

    def _userinfo_visas(self, token: str, holder: Identity) -> object:
        endpoint = self.tokens.discovery.metadata(holder.iss).userinfo_endpoint
        if endpoint is None:
            raise IssuerUnavailable(f"issuer {holder.iss} publishes no userinfo_endpoint")
        try:
            info = fetch_json(self.http, endpoint, "userinfo",
                              headers={"authorization": f"Bearer {token}"})
        except IssuerUnavailable as exc:
            if exc.status in (401, 403):
                raise TokenRejected("the issuer's userinfo endpoint refused the access token "
                                    "(revoked or not meant for userinfo)") from None
            raise
        if info.get("sub") != holder.sub:
            # OIDC Core 5.3.2: userinfo for another subject must not be used.
            raise TokenRejected("userinfo answered for a different subject than the token's")
        return info.get(PASSPORT_CLAIM, [])

    @property
    def cached_principals(self) -> int:
        return len(self._cache)
