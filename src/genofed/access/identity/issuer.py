"""A local OIDC issuer that speaks real OIDC and GA4GH Passports: the embedded default for a
laptop node and the login server of the tests and the demo. LS-AAI takes its place in production.

An issuer lives in a directory (`genofed issuer init DIR --url http://127.0.0.1:PORT`)::

    issuer.toml          url (the `iss`), token and visa lifetimes, visa_sources
    users.toml           [[users]] id, sub, name, researcher_status, accepted_terms, password_hash
    clients.toml         [[clients]] client_id, redirect_uris: the web apps that may send users
                         here to sign in (`genofed issuer add-client`); absent = none
    keys/                RS256 keys (0600, directory 0700); the newest signs, all are published
    demo-passwords.toml  the generated passwords of the demo users (0600), if any

and is served (`genofed issuer serve DIR`; :mod:`genofed.server.issuer` has the ASGI app and
runs it in a thread for tests and the demo)::

    GET  /.well-known/openid-configuration   discovery
    GET  /jwks                               public keys (key rotation: `issuer rotate-key`)
    GET  /authorize  authorization code flow with PKCE (S256 only) for a registered client:
                     a sign-in form, which posts back to
    POST /authorize  -> 303 to redirect_uri?code=...&state=...&iss=... (or ?error=...)
    POST /token      grant_type=authorization_code (code, redirect_uri, client_id,
                     code_verifier) -> access token and ID token;
                     grant_type=password (username, password) -> access token (RS256 JWT);
                     grant_type=urn:ietf:params:oauth:grant-type:token-exchange with the access
                     token as subject_token -> a GA4GH Passport JWT (AAI 1.2)
    GET  /userinfo   Bearer access token -> {sub, name, ga4gh_passport_v1: [visa JWTs]}

The visas in userinfo are the issuer's own ResearcherStatus / AcceptedTermsAndPolicies visas for
users that hold them (jku = `{url}/jwks`), plus whatever the **visa sources** return: at userinfo
time the issuer calls `GET {source}` with an access token for the user as bearer and expects
`{"ga4gh_passport_v1": [visa JWTs]}` (how LS-AAI pulls ControlledAccessGrants from REMS). That
token lasts a minute and has scope `openid` only, so a source that authenticates it at this
userinfo gets no visas and cannot make the issuer call it again. A source that fails is
skipped, with a warning in the log. Sourced visas name the user by the same
`sub` under another `iss` (the source's), so the issuer adds one LinkedIdentities visa tying
those (sub, iss) pairs to the user's account here; without it a clearinghouse ignores them.

There are no default passwords: `--demo-users` generates a password per demo user. Tests and
demos rarely need them, since :class:`LocalIssuer` mints tokens straight from the key.

Helper API for other tests and the demo::

    from genofed.server.issuer import running_issuer

    with running_issuer(tmp_path / "issuer") as issuer:        # demo users, free loopback port
        token = issuer.access_token("alice")                   # what /token would return
        visa = issuer.visa("alice", "ControlledAccessGrants", "my-dataset", by="dac")
        passport = issuer.passport("alice", extra_visas=[visa])
        auth = PassportAuthenticator(oidc_issuers=[issuer.url],
                                     trusted_visas=[issuer.visa_trust])

`LocalIssuer.create(dir, url=...)` makes an issuer without serving it;
:func:`genofed.server.issuer.create_issuer_app` is its ASGI app (for in-process clients).
Demo users: alice (ResearcherStatus and AcceptedTermsAndPolicies), bob (AcceptedTermsAndPolicies
only), dana (both; a DAC member).
"""

from __future__ import annotations

import logging
import os
import secrets
import time
import tomllib
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import tomli_w
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from genofed.access.identity.code_flow import (
    RegisteredClient,
    check_redirect_uri,
)
from genofed.access.identity.issuer_files import (
    Keyring,
    TomlTable,
    check_password,
    hash_password,
    write_private,
)
from genofed.access.identity.oidc import inspect_jwt, verify_jwt
from genofed.access.identity.passport import (
    PASSPORT_CLAIM,
    PASSPORT_TYPE,
    REGISTERED_ACCESS,
    VISA_CLAIM,
    Identity,
    VisaType,
    format_linked_identities,
    sign_visa,
)
from genofed.errors import IssuerConfigError, TokenRejected

log = logging.getLogger(__name__)

CONFIG_FILE = "issuer.toml"
USERS_FILE = "users.toml"
KEYS_DIR = "keys"
DEMO_PASSWORDS_FILE = "demo-passwords.toml"
CLIENTS_FILE = "clients.toml"
DEFAULT_SCOPE = "openid profile ga4gh_passport_v1"
SUPPORTED_SCOPES = ("openid", "profile", PASSPORT_CLAIM)
AUTHORIZATION_CODE_GRANT = "authorization_code"
TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
JWT_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:jwt"
PASSPORT_TOKEN_TYPE = "urn:ga4gh:params:oauth:token-type:passport"
USER_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
#: Seconds a visa source may use the token it is called with.
SOURCE_TOKEN_LIFETIME = 60

#: (id, name, ResearcherStatus, AcceptedTermsAndPolicies) of the `--demo-users`.
DEMO_USERS = (
    ("alice", "Alice Researcher", True, True),
    ("bob", "Bob Newcomer", False, True),
    ("dana", "Dana DAC-member", True, True),
)


class IssuerSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    #: The issuer identifier (`iss`) and base URL of the endpoints.
    url: str
    created: str = ""
    token_lifetime_seconds: int = Field(default=3600, ge=60)
    visa_lifetime_seconds: int = Field(default=86_400, ge=60)
    #: URLs called at userinfo time with the user's access token; they answer
    #: {"ga4gh_passport_v1": [visa JWTs]}.
    visa_sources: list[str] = Field(default_factory=list)
    visa_source_timeout_seconds: float = Field(default=5.0, gt=0)


class IssuerUser(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=USER_ID_PATTERN)
    #: Opaque and stable, like LS-AAI's: the `sub` of every token and visa.
    sub: str
    name: str
    researcher_status: bool = False
    accepted_terms: bool = False
    #: When the statuses were asserted (visa `asserted`), epoch seconds.
    registered: int = 0
    #: "scrypt$salt$hash" (base64); empty = no password login, tokens only via the CLI/helper.
    password_hash: str = ""


def _normalise_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query \
            or parts.fragment:
        raise IssuerConfigError(f"issuer URL {url!r} must be http(s)://host[:port][/path] "
                                "without query or fragment")
    return url.rstrip("/")


class LocalIssuer:
    """An issuer directory: its settings, users and keys, and the tokens it mints."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        config = directory / CONFIG_FILE
        if not config.is_file():
            raise IssuerConfigError(f"{directory}: not a genofed issuer (no {CONFIG_FILE}); "
                                    f"create one with `genofed issuer init {directory} --url "
                                    "http://127.0.0.1:PORT`")
        try:
            self.settings = IssuerSettings.model_validate(tomllib.loads(config.read_text()))
        except (tomllib.TOMLDecodeError, ValidationError) as exc:
            raise IssuerConfigError(f"{config}: {exc}") from None
        self.url = _normalise_url(self.settings.url)
        self._keys = Keyring(directory / KEYS_DIR)
        self._users = TomlTable(directory / USERS_FILE, "users", IssuerUser,
                                 lambda user: user.id)
        self._clients = TomlTable(directory / CLIENTS_FILE, "clients", RegisteredClient,
                                   lambda client: client.client_id)

    # --- creation ------------------------------------------------------------------------------

    @classmethod
    def create(cls, directory: Path, *, url: str, demo_users: bool = False,
               visa_sources: Sequence[str] = (), token_lifetime: int = 3600,
               visa_lifetime: int = 86_400) -> LocalIssuer:
        """A new issuer directory with a fresh RS256 key; refuses to touch an existing one."""
        if (directory / CONFIG_FILE).exists():
            raise IssuerConfigError(f"{directory}: already an issuer; refusing to overwrite it")
        try:
            settings = IssuerSettings(
                url=_normalise_url(url), created=time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                                               time.gmtime()),
                token_lifetime_seconds=token_lifetime, visa_lifetime_seconds=visa_lifetime,
                visa_sources=list(visa_sources))
        except ValidationError as exc:
            raise IssuerConfigError(str(exc)) from None
        directory.mkdir(parents=True, exist_ok=True)
        keys = directory / KEYS_DIR
        keys.mkdir(mode=0o700, exist_ok=True)
        os.chmod(keys, 0o700)
        Keyring(keys).generate()
        write_private(directory / USERS_FILE, tomli_w.dumps({"users": []}).encode())
        (directory / CONFIG_FILE).write_text(tomli_w.dumps(settings.model_dump()))
        issuer = cls(directory)
        if demo_users:
            passwords = {}
            for user_id, name, researcher, terms in DEMO_USERS:
                passwords[user_id] = secrets.token_urlsafe(12)
                issuer.add_user(user_id, name=name, researcher_status=researcher,
                                accepted_terms=terms, password=passwords[user_id])
            write_private(directory / DEMO_PASSWORDS_FILE, tomli_w.dumps(passwords).encode())
        return issuer

    # --- users ---------------------------------------------------------------------------------

    def _user_table(self) -> dict[str, IssuerUser]:
        return self._users.rows()

    def users(self) -> list[IssuerUser]:
        return list(self._user_table().values())

    def user(self, user_id: str) -> IssuerUser:
        try:
            return self._user_table()[user_id]
        except KeyError:
            known = ", ".join(self._user_table()) or "none"
            raise IssuerConfigError(f"no user {user_id!r} in {self.directory / USERS_FILE} "
                                    f"(users: {known})") from None

    def user_by_sub(self, sub: str) -> IssuerUser | None:
        return next((u for u in self._user_table().values() if u.sub == sub), None)

    def add_user(self, user_id: str, *, name: str | None = None, researcher_status: bool = False,
                 accepted_terms: bool = False, password: str | None = None) -> IssuerUser:
        """Add a user with a fresh opaque `sub`; `password` enables the password grant."""
        table = dict(self._user_table())
        if user_id in table:
            raise IssuerConfigError(f"user {user_id!r} exists already")
        try:
            user = IssuerUser(id=user_id, sub=f"{uuid.uuid4().hex}@{urlsplit(self.url).netloc}",
                              name=name or user_id, researcher_status=researcher_status,
                              accepted_terms=accepted_terms, registered=int(time.time()),
                              password_hash=hash_password(password) if password else "")
        except ValidationError as exc:
            raise IssuerConfigError(f"user {user_id!r}: {exc}") from None
        table[user_id] = user
        self._users.write(table.values())
        return user

    def add_demo_user(self, user_id: str, *, name: str | None = None,
                      researcher_status: bool = False, accepted_terms: bool = False) -> str:
        """Add a user with a generated password, recorded beside the demo users' (a demo or test
        logs in through the login form with it); returns the password."""
        password = secrets.token_urlsafe(12)
        self.add_user(user_id, name=name, researcher_status=researcher_status,
                      accepted_terms=accepted_terms, password=password)
        passwords = {**self.demo_passwords(), user_id: password}
        write_private(self.directory / DEMO_PASSWORDS_FILE, tomli_w.dumps(passwords).encode())
        return password

    def demo_passwords(self) -> dict[str, str]:
        path = self.directory / DEMO_PASSWORDS_FILE
        return dict(tomllib.loads(path.read_text())) if path.is_file() else {}

    def login(self, username: str, password: str) -> IssuerUser | None:
        """The user whose id and password these are, else None."""
        user = self._user_table().get(username)
        if user is None or not user.password_hash:
            return None
        return user if check_password(password, user.password_hash) else None

    # --- clients -------------------------------------------------------------------------------

    def clients(self) -> list[RegisteredClient]:
        return list(self._clients.rows().values())

    def client(self, client_id: str) -> RegisteredClient | None:
        """The registered client, else None (an authorization request from it is refused)."""
        return self._clients.rows().get(client_id)

    def add_client(self, client_id: str, redirect_uris: Sequence[str]) -> None:
        """Register a public client with the exact redirect URIs it may receive codes at; for a
        registered client, add the URIs it lacks (so running it again changes nothing)."""
        for uri in redirect_uris:
            check_redirect_uri(uri)  # the clear message, before pydantic's wrapped one
        table = dict(self._clients.rows())
        known = table[client_id].redirect_uris if client_id in table else []
        try:
            table[client_id] = RegisteredClient(
                client_id=client_id, redirect_uris=list(dict.fromkeys([*known, *redirect_uris])))
        except ValidationError as exc:
            raise IssuerConfigError(f"client {client_id!r}: {exc}") from None
        self._clients.write(table.values())

    # --- keys and documents --------------------------------------------------------------------

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    @property
    def visa_trust(self) -> tuple[str, str]:
        """The (iss, jku) pair to put on a visa trust list for this issuer's visas."""
        return self.url, self.jwks_url

    def jwks(self) -> dict[str, Any]:
        return self._keys.jwks()

    def rotate_key(self) -> str:
        """Generate a new signing key (returned: its kid); old keys stay published so tokens
        they signed remain verifiable until they expire. Delete old files in keys/ to retire."""
        return self._keys.generate()

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "jwks_uri": self.jwks_url,
            "authorization_endpoint": f"{self.url}/authorize",
            "token_endpoint": f"{self.url}/token",
            "userinfo_endpoint": f"{self.url}/userinfo",
            "grant_types_supported": [AUTHORIZATION_CODE_GRANT, "password", TOKEN_EXCHANGE_GRANT],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "scopes_supported": list(SUPPORTED_SCOPES),
            "claims_supported": ["sub", "name", "nonce", PASSPORT_CLAIM],
        }

    # --- tokens --------------------------------------------------------------------------------

    def _sign(self, claims: dict[str, Any], typ: str = "JWT") -> str:
        kid, key = self._keys.signing()
        return jwt.encode(claims, key, algorithm="RS256", headers={"typ": typ, "kid": kid})

    def access_token(self, user_id: str, *, lifetime: int | None = None,
                     scope: str = DEFAULT_SCOPE, audience: str | None = None,
                     issued: int | None = None) -> str:
        """An RS256 JWT access token for `user_id`, as the token endpoint would issue it."""
        user = self.user(user_id)
        now = int(time.time()) if issued is None else issued
        claims: dict[str, Any] = {
            "iss": self.url, "sub": user.sub, "iat": now,
            "exp": now + (lifetime or self.settings.token_lifetime_seconds),
            "jti": str(uuid.uuid4()), "scope": scope}
        if audience:
            claims["aud"] = audience
        return self._sign(claims)

    def id_token(self, user_id: str, *, audience: str, nonce: str | None = None,
                 lifetime: int | None = None, issued: int | None = None) -> str:
        """An OpenID Connect ID token (RS256) telling the client `audience` who signed in."""
        user = self.user(user_id)
        now = int(time.time()) if issued is None else issued
        claims: dict[str, Any] = {
            "iss": self.url, "sub": user.sub, "aud": audience, "iat": now,
            "exp": now + (lifetime or self.settings.token_lifetime_seconds), "name": user.name}
        if nonce:
            claims["nonce"] = nonce
        return self._sign(claims)

    def verify_access_token(self, token: str) -> dict[str, Any]:
        """Claims of an access token this issuer signed (no HTTP); raises TokenRejected."""
        parsed = inspect_jwt(token, "access token")
        if parsed.issuer != self.url:
            raise TokenRejected("access token is from another issuer")
        if PASSPORT_CLAIM in parsed.claims or VISA_CLAIM in parsed.claims \
                or "jku" in parsed.header:
            raise TokenRejected("a passport or visa is not an access token")
        if not isinstance(parsed.claims.get("scope"), str):
            # Every access token minted here has a scope and no ID token has: an ID token tells
            # a client who signed in; it does not open APIs.
            raise TokenRejected("token has no scope: an ID token is not an access token")
        key = self._keys.public_key(parsed.key_id)
        if key is None:
            raise TokenRejected("access token names an unknown key id")
        return verify_jwt(parsed, key, now=time.time(), leeway=30, what="access token")

    def visa(self, user_id: str, visa_type: str, value: str, *, sub: str | None = None,
             source: str | None = None, by: str | None = None, lifetime: int | None = None,
             conditions: Sequence[Sequence[dict[str, str]]] | None = None,
             jku: str | None = None, issued: int | None = None, expires: int | None = None,
             jti: str | None = None) -> str:
        """A visa signed by this issuer for `user_id` (or any `sub`): jku = its /jwks unless
        overridden, source = its URL unless given."""
        kid, key = self._keys.signing()
        subject = sub if sub is not None else self.user(user_id).sub
        return sign_visa(key, kid=kid, iss=self.url, jku=jku or self.jwks_url, sub=subject,
                         visa_type=visa_type, value=value, source=source or self.url, by=by,
                         lifetime=lifetime or self.settings.visa_lifetime_seconds,
                         issued=issued, expires=expires, jti=jti, conditions=conditions)

    def own_visas(self, user: IssuerUser) -> list[str]:
        """The visas this issuer asserts itself (Registered Access statuses)."""
        visas = []
        asserted = user.registered or None
        if user.researcher_status:
            kid, key = self._keys.signing()
            visas.append(sign_visa(
                key, kid=kid, iss=self.url, jku=self.jwks_url, sub=user.sub,
                visa_type=VisaType.RESEARCHER_STATUS, value=REGISTERED_ACCESS, source=self.url,
                by="so", asserted=asserted, lifetime=self.settings.visa_lifetime_seconds))
        if user.accepted_terms:
            kid, key = self._keys.signing()
            visas.append(sign_visa(
                key, kid=kid, iss=self.url, jku=self.jwks_url, sub=user.sub,
                visa_type=VisaType.ACCEPTED_TERMS_AND_POLICIES, value=REGISTERED_ACCESS,
                source=self.url, by="self", asserted=asserted,
                lifetime=self.settings.visa_lifetime_seconds))
        return visas

    def link_visas(self, user: IssuerUser, sourced: Sequence[str]) -> list[str]:
        """One LinkedIdentities visa tying the user's accounts at the visa sources' issuers
        (same `sub`, another `iss`, e.g. a node's DAC) to their account here: the sources
        answered for this user's token, so this issuer vouches that these are the same person.
        Without it a clearinghouse must ignore those visas (Passport spec, LinkedIdentities)."""
        others = set()
        for token in sourced:
            try:
                claims = jwt.decode(token, options={"verify_signature": False})
            except jwt.PyJWTError:
                continue  # the clearinghouse will ignore it anyway
            iss = claims.get("iss")
            if claims.get("sub") == user.sub and isinstance(iss, str) and iss != self.url:
                others.add(Identity(user.sub, iss))
        if not others:
            return []
        return [self.visa(user.id, VisaType.LINKED_IDENTITIES,
                          format_linked_identities(sorted(others)), by="system")]

    def passport(self, user_id: str, *, visas: Sequence[str] | None = None,
                 extra_visas: Sequence[str] = (), lifetime: int | None = None,
                 audience: str | None = None, issued: int | None = None) -> str:
        """A Passport JWT (typ vnd.ga4gh.passport+jwt) for `user_id` carrying `visas` (default:
        the issuer's own visas for the user) plus `extra_visas`. Visa sources are not called
        here; the token-exchange endpoint calls them."""
        user = self.user(user_id)
        carried = [*(self.own_visas(user) if visas is None else visas), *extra_visas]
        return self.passport_for_user(user, carried, lifetime=lifetime, audience=audience,
                                      issued=issued)

    def passport_for_user(self, user: IssuerUser, visas: Sequence[str], *,
                          lifetime: int | None = None, audience: str | None = None,
                          issued: int | None = None, expires: int | None = None) -> str:
        """A Passport JWT carrying exactly `visas`, ending at `expires` at the latest."""
        now = int(time.time()) if issued is None else issued
        exp = now + (lifetime or self.settings.token_lifetime_seconds)
        claims: dict[str, Any] = {"iss": self.url, "sub": user.sub, "iat": now,
                                  "exp": min(exp, expires) if expires else exp,
                                  "jti": str(uuid.uuid4()), PASSPORT_CLAIM: list(visas)}
        if audience:
            claims["aud"] = audience
        return self._sign(claims, typ=PASSPORT_TYPE)


def loopback_port(url: str) -> int:
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or parts.port is None:
        raise IssuerConfigError(f"{url}: serving in-process needs a loopback URL with a port; "
                                "use `genofed issuer serve` for anything else")
    return parts.port
