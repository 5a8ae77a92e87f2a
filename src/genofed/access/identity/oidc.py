"""Signed-JWT checks shared by access tokens, Passports and visas, and the two things fetched from
an issuer: its OIDC discovery document and its JWKS.

Order matters for security, so every verification goes: read the header → refuse any algorithm
but RS256/ES256 (no `none`, no HMAC, hence no "HS256 signed with the public key" confusion) →
decide *which* issuer and key URL from the still-unverified claims and check them against
configuration → only then fetch keys → verify the signature → check `exp`/`iat`/`nbf` against
our own clock.

:class:`JwksCache` follows key rotation: keys are cached per JWKS URL, and a token whose `kid`
is unknown triggers one refetch, at most once per `refetch_interval` per URL (so a stream of
tokens with made-up `kid`s cannot make us hammer an issuer); a failed refetch keeps the keys
already known. Static key sets (the node's own
visa key) are verified locally and never fetched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from genofed.errors import IssuerUnavailable, TokenRejected

#: The only signature algorithms accepted anywhere (GA4GH AAI profile).
ACCEPTED_ALGORITHMS = ("RS256", "ES256")
#: RSA keys shorter than this are refused even when the issuer publishes them.
MIN_RSA_BITS = 2048

PublicKey = rsa.RSAPublicKey | ec.EllipticCurvePublicKey
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
Clock = Callable[[], float]


def shown(value: object, limit: int = 80) -> str:
    """`repr(value)` cut to `limit` characters: token fields are attacker-controlled, and reasons
    end up in error messages and the audit log."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


# --- JOSE basics -------------------------------------------------------------------------------

def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """RS256 for RSA keys, ES256 for P-256 keys; anything else is refused."""
    if isinstance(key, rsa.RSAPrivateKey | rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey) \
            and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    raise ValueError(f"unsupported signing key {type(key).__name__}: use RSA or EC P-256")


def public_jwk(key: PublicKey, *, kid: str | None = None) -> dict[str, Any]:
    """The public JWK of `key` with `kid` (default: its RFC 7638 thumbprint), `alg`, `use`."""
    algorithm = algorithm_for(key)
    if isinstance(key, rsa.RSAPublicKey):
        jwk: dict[str, Any] = jwt.algorithms.RSAAlgorithm.to_jwk(key, as_dict=True)
    else:
        jwk = jwt.algorithms.ECAlgorithm.to_jwk(key, as_dict=True)
    jwk.pop("key_ops", None)
    jwk.update(kid=kid or jwk_thumbprint(jwk), alg=algorithm, use="sig")
    return jwk


def jwk_thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint: a key id derived from the key itself, so the same key always
    gets the same `kid` wherever it is published."""
    members = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in members}, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass(frozen=True)
class UnverifiedJwt:
    """A JWT's header and claims read *without* verifying the signature: only for choosing the
    issuer and key to verify with. Building one already refused every algorithm but ours."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def algorithm(self) -> str:
        return str(self.header["alg"])

    @property
    def key_id(self) -> str | None:
        kid = self.header.get("kid")
        return kid if isinstance(kid, str) else None

    @property
    def issuer(self) -> str | None:
        iss = self.claims.get("iss")
        return iss if isinstance(iss, str) else None


def inspect_jwt(token: str, what: str = "token") -> UnverifiedJwt:
    """Parse a compact JWS and check its algorithm before anything else is looked at."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise TokenRejected(f"{what} is not a JWT (expected header.payload.signature)") from None
    algorithm = header.get("alg")
    if algorithm not in ACCEPTED_ALGORITHMS:
        raise TokenRejected(f"{what} algorithm {shown(algorithm)} is not accepted; only "
                            f"{' or '.join(ACCEPTED_ALGORITHMS)}")
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise TokenRejected(f"{what} payload is not a JSON object") from None
    return UnverifiedJwt(token, header, claims)


def _check_key_matches(algorithm: str, key: PublicKey, what: str) -> None:
    # A key of the wrong type for the header's alg is refused outright, never "tried".
    if algorithm == "RS256":
        if not isinstance(key, rsa.RSAPublicKey):
            raise TokenRejected(f"{what} says RS256 but its key is not an RSA key")
        if key.key_size < MIN_RSA_BITS:
            raise TokenRejected(f"{what} is signed with a {key.key_size}-bit RSA key; at least "
                                f"{MIN_RSA_BITS} bits are required")
    elif not (isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1)):
        raise TokenRejected(f"{what} says ES256 but its key is not an EC P-256 key")


def verify_jwt(parsed: UnverifiedJwt, key: PublicKey, *, now: float, leeway: float,
               audience: str | Iterable[str] | None = None, what: str = "token") -> dict[str, Any]:
    """Verify the signature with `key` and the time claims against `now`; return the claims.
    `exp` and `iat` are required. `aud` is checked only when `audience` is given."""
    _check_key_matches(parsed.algorithm, key, what)
    try:
        claims: dict[str, Any] = jwt.decode(
            parsed.token, key, algorithms=[parsed.algorithm], audience=audience,
            # Times are checked below against our (injectable) clock with one leeway.
            options={"verify_exp": False, "verify_iat": False, "verify_nbf": False,
                     "verify_aud": audience is not None, "verify_iss": False})
    except jwt.InvalidSignatureError:
        raise TokenRejected(f"{what} signature does not verify (altered, or not signed by the "
                            "issuer's key)") from None
    except jwt.InvalidAudienceError:
        raise TokenRejected(f"{what} audience (aud) does not include this service") from None
    except jwt.PyJWTError as exc:
        raise TokenRejected(f"{what} is invalid: {exc}") from None
    check_times(claims, now=now, leeway=leeway, what=what)
    return claims


def _timestamp(claims: Mapping[str, Any], name: str, what: str, required: bool) -> int | None:
    value = claims.get(name)
    if value is None and not required:
        return None
    # JSON allows neither bools nor, strictly, Infinity/NaN as times; Python's parser does.
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value):
        raise TokenRejected(f"{what} has no numeric '{name}' claim (seconds since the epoch)")
    return int(value)


def check_times(claims: Mapping[str, Any], *, now: float, leeway: float, what: str) -> None:
    expires = _timestamp(claims, "exp", what, required=True)
    issued = _timestamp(claims, "iat", what, required=True)
    not_before = _timestamp(claims, "nbf", what, required=False)
    assert expires is not None and issued is not None
    if now >= expires + leeway:
        raise TokenRejected(f"{what} expired {int(now - expires)} s ago (exp)")
    if issued > now + leeway:
        raise TokenRejected(f"{what} is not yet valid: issued {int(issued - now)} s in the "
                            "future (iat)")
    if not_before is not None and not_before > now + leeway:
        raise TokenRejected(f"{what} is not yet valid until {int(not_before - now)} s from now "
                            "(nbf)")


# --- fetching ----------------------------------------------------------------------------------

def fetch_json(http: httpx.Client, url: str, what: str, *,
               headers: Mapping[str, str] | None = None) -> dict[str, Any]:
    """GET `url` and return its JSON object, or raise :class:`IssuerUnavailable` saying why."""
    try:
        response = http.get(url, headers=headers)
    except httpx.HTTPError as exc:
        raise IssuerUnavailable(f"cannot fetch {what} from {url}: {exc.__class__.__name__}") \
            from None
    if response.status_code != 200:
        raise IssuerUnavailable(f"{what} at {url} answered HTTP {response.status_code}",
                                response.status_code)
    try:
        document = response.json()
    except ValueError:
        raise IssuerUnavailable(f"{what} at {url} is not JSON") from None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{what} at {url} is not a JSON object")
    return document


def default_http_client(timeout: float = 5.0) -> httpx.Client:
    """The client used for discovery, JWKS and userinfo: short timeouts, no redirects (a key URL
    that redirects elsewhere is not the URL we trusted)."""
    return httpx.Client(timeout=timeout, follow_redirects=False,
                        headers={"accept": "application/json"})


@dataclass
class _KeySet:
    by_kid: dict[str, PublicKey]
    without_kid: list[PublicKey]
    fetched_at: float
    static: bool = False
    #: When an unknown `kid` last forced a refetch (rate limit; -inf = never).
    forced_at: float = float("-inf")

    def find(self, kid: str | None) -> PublicKey | None:
        if kid is not None and kid in self.by_kid:
            return self.by_kid[kid]
        every = [*self.by_kid.values(), *self.without_kid]
        # No kid and one key: that key. A local set with one key (the node's own): the
        # signature decides, not the kid hint.
        if len(every) == 1 and (kid is None or self.static):
            return every[0]
        return None


def _parse_jwks(document: Mapping[str, Any], now: float) -> _KeySet:
    keys = document.get("keys")
    if not isinstance(keys, list):
        raise IssuerUnavailable("JWKS has no 'keys' list")
    by_kid: dict[str, PublicKey] = {}
    without_kid: list[PublicKey] = []
    for entry in keys:
        if not isinstance(entry, dict) or entry.get("kty") not in ("RSA", "EC"):
            continue  # symmetric or unknown key types are never usable here
        if entry.get("use", "sig") != "sig":
            continue
        try:
            key = jwt.PyJWK(entry).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError):
            continue  # a malformed key is skipped, not fatal for the others
        if not isinstance(key, rsa.RSAPublicKey | ec.EllipticCurvePublicKey):
            continue
        kid = entry.get("kid")
        if isinstance(kid, str):
            by_kid[kid] = key
        else:
            without_kid.append(key)
    return _KeySet(by_kid, without_kid, now)


class JwksCache:
    """Public keys per JWKS URL, refetched when stale or when a token names an unknown `kid`."""

    def __init__(self, http: httpx.Client, *, max_age: float = 3600.0,
                 refetch_interval: float = 30.0, clock: Clock = time.time) -> None:
        self._http = http
        self._max_age = max_age
        self._refetch_interval = refetch_interval
        self._clock = clock
        self._sets: dict[str, _KeySet] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        #: How many times each URL was fetched (for operators' metrics and the tests).
        self.fetches: dict[str, int] = {}

    def add_static(self, url: str, keys: Mapping[str, PublicKey]) -> None:
        """Keys for `url` known out of band (the node's own): used as is, never fetched."""
        with self._guard:
            self._sets[url] = _KeySet(dict(keys), [], float("inf"), static=True)

    def key(self, url: str, kid: str | None, what: str = "token") -> PublicKey:
        """The key `kid` from the JWKS at `url` (which the caller has already decided to trust).
        Raises :class:`TokenRejected` for an unknown key, :class:`IssuerUnavailable` when the
        JWKS cannot be fetched and nothing usable is cached."""
        with self._guard:
            lock = self._locks.setdefault(url, threading.Lock())
        with lock:
            now = self._clock()
            current = self._sets.get(url)
            if current is None or (not current.static and now - current.fetched_at > self._max_age):
                current = self._refresh(url, current, now)
            found = current.find(kid)
            if found is None and not current.static \
                    and now - current.forced_at >= self._refetch_interval:
                # Unknown kid: the issuer may have rotated its key since we last looked.
                current = self._refresh(url, current, now)
                current.forced_at = now
                found = current.find(kid)
        if found is None:
            name = f"key id {shown(kid)}" if kid else "no key id (and several keys)"
            raise TokenRejected(f"{what} names {name}, which is not in the issuer's JWKS {url}")
        return found

    def _refresh(self, url: str, previous: _KeySet | None, now: float) -> _KeySet:
        self.fetches[url] = self.fetches.get(url, 0) + 1
        try:
            fresh = _parse_jwks(fetch_json(self._http, url, "JWKS"), now)
        except IssuerUnavailable:
            if previous is None:
                raise
            previous.fetched_at = now  # keep serving known keys; retry after max_age
            return previous
        if previous is not None:
            fresh.forced_at = previous.forced_at
        self._sets[url] = fresh
        return fresh


@dataclass(frozen=True)
class ProviderMetadata:
    """The parts of an OIDC discovery document genofed uses."""

    issuer: str
    jwks_uri: str
    userinfo_endpoint: str | None = None
    token_endpoint: str | None = None


def discovery_url(issuer: str) -> str:
    return issuer.rstrip("/") + "/.well-known/openid-configuration"


class OidcDiscovery:
    """Discovery documents of the configured issuers, cached for `max_age` seconds."""

    def __init__(self, http: httpx.Client, *, max_age: float = 3600.0,
                 clock: Clock = time.time) -> None:
        self._http = http
        self._max_age = max_age
        self._clock = clock
        self._cached: dict[str, tuple[ProviderMetadata, float]] = {}
        self._lock = threading.Lock()

    def metadata(self, issuer: str) -> ProviderMetadata:
        with self._lock:
            now = self._clock()
            cached = self._cached.get(issuer)
            if cached is not None and now - cached[1] <= self._max_age:
                return cached[0]
            try:
                metadata = self._fetch(issuer)
            except IssuerUnavailable:
                if cached is None:
                    raise
                metadata = cached[0]  # a stale document beats refusing everyone
            self._cached[issuer] = (metadata, now)
            return metadata

    def _fetch(self, issuer: str) -> ProviderMetadata:
        url = discovery_url(issuer)
        document = fetch_json(self._http, url, "OIDC discovery document")
        if document.get("issuer") != issuer:
            # OIDC Discovery 1.0 section 4.3: the document must name exactly the issuer asked.
            raise IssuerUnavailable(f"discovery document at {url} names issuer "
                                    f"{shown(document.get('issuer'))}, not {issuer!r}")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerUnavailable(f"discovery document at {url} has no jwks_uri")
        userinfo = document.get("userinfo_endpoint")
        token = document.get("token_endpoint")
        return ProviderMetadata(issuer, jwks_uri,
                                userinfo if isinstance(userinfo, str) else None,
                                token if isinstance(token, str) else None)


class AccessTokenVerifier:
    """Verifies JWT access tokens (or Passports) from a fixed set of OIDC issuers: the issuer is
    checked against the set before its discovery document or keys are fetched.

    Also usable on its own, e.g. by a visa source endpoint that receives a user's access token.
    """

    def __init__(self, issuers: Iterable[str], *, http: httpx.Client | None = None,
                 jwks: JwksCache | None = None, discovery: OidcDiscovery | None = None,
                 audience: str | Iterable[str] | None = None, leeway: float = 30.0,
                 clock: Clock = time.time) -> None:
        self.issuers = frozenset(issuers)
        self.http = http or default_http_client()
        self.jwks = jwks or JwksCache(self.http, clock=clock)
        self.discovery = discovery or OidcDiscovery(self.http, clock=clock)
        self._audience = audience
        self._leeway = leeway
        self._clock = clock

    def verify(self, token: str | UnverifiedJwt, what: str = "token") -> dict[str, Any]:
        """The verified claims (with string `iss` and `sub`), or :class:`TokenRejected`."""
        parsed = token if isinstance(token, UnverifiedJwt) else inspect_jwt(token, what)
        issuer = parsed.issuer
        if issuer not in self.issuers:
            source = shown(issuer) if issuer else "no issuer"
            raise TokenRejected(f"{what} is from {source}, which is not a configured OIDC "
                                "issuer")
        metadata = self.discovery.metadata(issuer)
        key = self.jwks.key(metadata.jwks_uri, parsed.key_id, what)
        claims = verify_jwt(parsed, key, now=self._clock(), leeway=self._leeway,
                            audience=self._audience, what=what)
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise TokenRejected(f"{what} has no 'sub' (subject) claim")
        return claims
