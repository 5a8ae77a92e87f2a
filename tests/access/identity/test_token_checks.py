"""Bearer tokens at the authenticator: what is accepted, and every way a token must be refused
(GA4GH AAI profile / Passport v1.2). Each bad token is a real token from a real issuer, altered
the way an attacker would; where it matters, the test also checks nothing was fetched first."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genofed.access.identity.issuer import LocalIssuer
from genofed.errors import AuthenticationError

if TYPE_CHECKING:  # fixture types only; the fixtures come from this folder's conftest
    from conftest import Clock, Forge, MakeAuth, Recorder


def bearer(token: str) -> str:
    return f"Bearer {token}"


def rejected(auth_call: object, token: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as caught:
        auth_call(bearer(token))  # type: ignore[operator]
    return caught.value


def test_no_token_is_anonymous_and_a_malformed_header_is_refused(make_auth: MakeAuth) -> None:
    auth = make_auth()
    assert auth.authenticate(None) is None
    assert auth.authenticate("   ") is None
    for header in ("Basic YWxpY2U6cGFzcw==", "Bearer", "Bearer   ", "token"):
        with pytest.raises(AuthenticationError, match="Bearer <token>"):
            auth.authenticate(header)
    assert "not a JWT" in rejected(auth.authenticate, "opaque-token-123").reason


def test_access_token_gives_principal_with_userinfo_visas(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder) -> None:
    auth = make_auth()
    token = issuer.access_token("alice")
    principal = auth.authenticate(bearer(token))
    assert principal is not None
    assert (principal.issuer, principal.subject) == (issuer.url, issuer.user("alice").sub)
    assert principal.researcher and principal.accepted_terms
    assert principal.grants == () and principal.ignored_visas == ()
    assert principal.expires == jwt.decode(token, options={"verify_signature": False})["exp"]
    assert recorder.count("/.well-known/openid-configuration") == 1
    assert recorder.count("/jwks") == 1 and recorder.count("/userinfo") == 1

    bob = auth.authenticate(bearer(issuer.access_token("bob")))
    assert bob is not None and not bob.researcher and bob.accepted_terms
    assert recorder.count("/.well-known") == 1 and recorder.count("/jwks") == 1  # cached


def test_repeated_token_is_served_from_cache(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder) -> None:
    """A token seen before is recognised without verifying it again (how fast: see
    benchmarks/beacon.py)."""
    auth = make_auth()
    header = bearer(issuer.access_token("alice"))
    first = auth.authenticate(header)
    requests = len(recorder.urls)
    for _ in range(20):
        assert auth.authenticate(header) is first
    assert auth.known(header) is first
    assert len(recorder.urls) == requests  # no userinfo, no JWKS: nothing over the network


def test_cached_principal_is_dropped_when_it_expires(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder, clock: Clock) -> None:
    auth = make_auth()
    header = bearer(issuer.access_token("alice", lifetime=120))
    auth.authenticate(header)
    assert recorder.count("/userinfo") == 1
    clock.advance(200)
    with pytest.raises(AuthenticationError, match="expired"):
        auth.authenticate(header)


def test_alg_none_is_refused_before_anything_is_fetched(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder, forge: Forge) -> None:
    token = forge(issuer.access_token("alice"), header={"alg": "none"}, signature="")
    error = rejected(make_auth().authenticate, token)
    assert "'none'" in error.reason and "RS256" in error.reason and error.status == 401
    assert recorder.urls == []


def test_hs256_signed_with_the_rs256_public_key_is_refused(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder) -> None:
    # The classic key-confusion attack: HMAC keyed with the public key the issuer publishes.
    jwk = issuer.jwks()["keys"][0]
    public_pem = jwt.PyJWK(jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    claims = jwt.decode(issuer.access_token("alice"), options={"verify_signature": False})

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part({'alg': 'HS256', 'typ': 'JWT', 'kid': jwk['kid']})}.{part(claims)}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    token = f"{signing_input}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    error = rejected(make_auth().authenticate, token)
    assert "'HS256'" in error.reason and "not accepted" in error.reason
    assert recorder.urls == []


@pytest.mark.parametrize("algorithm", ["RS512", "PS256"])
def test_other_rsa_algorithms_are_refused_even_with_the_right_key(
        issuer: LocalIssuer, issuer_key: tuple[str, rsa.RSAPrivateKey], make_auth: MakeAuth,
        algorithm: str) -> None:
    kid, key = issuer_key
    claims = jwt.decode(issuer.access_token("alice"), options={"verify_signature": False})
    token = jwt.encode(claims, key, algorithm=algorithm, headers={"kid": kid})
    assert f"'{algorithm}'" in rejected(make_auth().authenticate, token).reason


def test_expired_token_is_refused(issuer: LocalIssuer, make_auth: MakeAuth) -> None:
    token = issuer.access_token("alice", issued=int(time.time()) - 7200, lifetime=3600)
    assert "expired" in rejected(make_auth().authenticate, token).reason


def test_token_not_yet_valid_is_refused(
        issuer: LocalIssuer, issuer_key: tuple[str, rsa.RSAPrivateKey],
        make_auth: MakeAuth) -> None:
    auth = make_auth()
    future = issuer.access_token("alice", issued=int(time.time()) + 3600)
    assert "not yet valid" in rejected(auth.authenticate, future).reason
    kid, key = issuer_key
    claims = jwt.decode(issuer.access_token("alice"), options={"verify_signature": False})
    not_before = jwt.encode({**claims, "nbf": int(time.time()) + 600}, key, algorithm="RS256",
                            headers={"kid": kid})
    assert "(nbf)" in rejected(auth.authenticate, not_before).reason


def test_unconfigured_issuer_is_refused_without_contacting_it(
        tmp_path: Path, make_auth: MakeAuth, recorder: Recorder, dead_url: str) -> None:
    stranger = LocalIssuer.create(tmp_path / "stranger", url=dead_url)
    stranger.add_user("mallory")
    error = rejected(make_auth().authenticate, stranger.access_token("mallory"))
    assert "not a configured OIDC issuer" in error.reason
    assert recorder.urls == []


def test_token_claiming_a_trusted_issuer_but_signed_by_another_key_is_refused(
        tmp_path: Path, issuer: LocalIssuer, make_auth: MakeAuth, forge: Forge) -> None:
    impostor = LocalIssuer.create(tmp_path / "impostor", url=issuer.url)  # same iss, own key
    impostor.add_user("alice")
    auth = make_auth()
    token = impostor.access_token("alice")
    assert "not in the issuer's JWKS" in rejected(auth.authenticate, token).reason
    borrowed_kid = forge(token, header={"kid": issuer.jwks()["keys"][0]["kid"]})
    assert "signature does not verify" in rejected(auth.authenticate, borrowed_kid).reason


def test_tampered_payload_is_refused(
        issuer: LocalIssuer, make_auth: MakeAuth, forge: Forge) -> None:
    auth = make_auth()
    token = issuer.access_token("bob")
    as_alice = forge(token, claims={"sub": issuer.user("alice").sub})
    assert "signature does not verify" in rejected(auth.authenticate, as_alice).reason
    longer = forge(token, claims={"exp": int(time.time()) + 10 * 365 * 86400})
    assert "signature does not verify" in rejected(auth.authenticate, longer).reason


def test_unreachable_issuer_is_a_503_not_a_crash(
        tmp_path: Path, make_auth: MakeAuth, dead_url: str) -> None:
    offline = LocalIssuer.create(tmp_path / "offline", url=dead_url)
    offline.add_user("alice")
    error = rejected(make_auth(oidc_issuers=[dead_url]).authenticate,
                     offline.access_token("alice"))
    assert error.status == 503 and "cannot verify the token now" in error.reason
    assert "Traceback" not in error.reason


def test_audience_is_checked_when_configured(issuer: LocalIssuer, make_auth: MakeAuth) -> None:
    auth = make_auth(audience="https://node.example.org")
    assert auth.authenticate(bearer(issuer.access_token(
        "alice", audience="https://node.example.org"))) is not None
    other = issuer.access_token("alice", audience="https://elsewhere.example.org")
    assert "audience" in rejected(auth.authenticate, other).reason
    assert "aud" in rejected(auth.authenticate, issuer.access_token("alice")).reason


def test_passport_jwt_is_accepted_without_userinfo(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder) -> None:
    principal = make_auth().authenticate(bearer(issuer.passport("alice")))
    assert principal is not None and principal.researcher and principal.accepted_terms
    assert recorder.count("/userinfo") == 0


def test_tampered_passport_is_refused(
        issuer: LocalIssuer, make_auth: MakeAuth, forge: Forge) -> None:
    visa = issuer.visa("alice", "ControlledAccessGrants", "ds-1", by="dac")
    passport = issuer.passport("bob")
    with_stolen_visa = forge(passport, claims={"ga4gh_passport_v1": [visa]})
    assert "signature does not verify" in rejected(
        make_auth().authenticate, with_stolen_visa).reason


def test_passport_whose_visa_list_is_not_a_list_is_refused(
        issuer: LocalIssuer, issuer_key: tuple[str, rsa.RSAPrivateKey],
        make_auth: MakeAuth) -> None:
    kid, key = issuer_key
    claims = jwt.decode(issuer.passport("alice"), options={"verify_signature": False})
    broken = jwt.encode({**claims, "ga4gh_passport_v1": "not-a-list"}, key, algorithm="RS256",
                        headers={"kid": kid, "typ": "vnd.ga4gh.passport+jwt"})
    assert "not a list" in rejected(make_auth().authenticate, broken).reason


def test_a_visa_is_not_accepted_as_a_bearer_token(
        issuer: LocalIssuer, make_auth: MakeAuth, recorder: Recorder) -> None:
    visa = issuer.visa("alice", "ControlledAccessGrants", "ds-1", by="dac")
    assert "a visa is not an access token" in rejected(make_auth().authenticate, visa).reason
    assert recorder.urls == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=3),
    max_leaves=8)
claim_names = st.sampled_from(["iss", "sub", "exp", "iat", "nbf", "aud", "scope", "jti",
                               "ga4gh_passport_v1", "ga4gh_visa_v1"])


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(claims=st.dictionaries(claim_names, json_values, max_size=6),
       header=st.dictionaries(st.sampled_from(["typ", "jku", "cty", "crit"]), json_values,
                              max_size=2),
       keep_issuer=st.booleans(), garbage=st.text(max_size=40))
def test_any_signed_garbage_is_an_authentication_error_never_a_crash(
        issuer: LocalIssuer, issuer_key: tuple[str, rsa.RSAPrivateKey], make_auth: MakeAuth,
        claims: dict[str, object], header: dict[str, object], keep_issuer: bool,
        garbage: str) -> None:
    # Signed with the issuer's real key, so every check after the signature is exercised too.
    kid, key = issuer_key
    base = jwt.decode(issuer.passport("alice"), options={"verify_signature": False})
    payload = {**base, **claims, **({"iss": issuer.url} if keep_issuer else {})}
    # PyJWS signs any payload bytes (jwt.encode would refuse, e.g., a non-string iss).
    token = jwt.PyJWS().encode(json.dumps(payload).encode(), key, algorithm="RS256",
                               headers={**header, "kid": kid})
    auth = make_auth()
    for candidate in (token, garbage):
        try:
            auth.authenticate(f"Bearer {candidate}")
        except AuthenticationError as error:
            assert error.reason and "Traceback" not in error.reason


visa_fields = st.dictionaries(
    st.sampled_from(["type", "asserted", "value", "source", "by", "conditions"]),
    json_values | st.sampled_from(["ControlledAccessGrants", "LinkedIdentities", "x,y;z"]),
    max_size=6)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(visas=st.lists(st.tuples(st.dictionaries(claim_names, json_values, max_size=3),
                                visa_fields), max_size=3))
def test_any_signed_garbage_visa_is_ignored_never_a_crash(
        issuer: LocalIssuer, issuer_key: tuple[str, rsa.RSAPrivateKey], make_auth: MakeAuth,
        visas: list[tuple[dict[str, object], dict[str, object]]]) -> None:
    kid, key = issuer_key
    base = jwt.decode(issuer.visa("alice", "ResearcherStatus", "x", by="so"),
                      options={"verify_signature": False})
    tokens = [jwt.PyJWS().encode(json.dumps({**base, **claims, "ga4gh_visa_v1": fields}).encode(),
                                 key, algorithm="RS256",
                                 headers={"kid": kid, "jku": issuer.jwks_url})
              for claims, fields in visas]
    # Bad visas are ignored one by one: the passport itself still authenticates.
    principal = make_auth().authenticate(f"Bearer {issuer.passport('alice', visas=tokens)}")
    assert principal is not None and principal.subject == issuer.user("alice").sub
