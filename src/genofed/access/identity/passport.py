"""GA4GH Passport v1.2 visas: verify each one, evaluate `conditions` and LinkedIdentities, and
turn what survives into a :class:`~genofed.access.principal.Principal`.

A visa (a *visa document token*) is a JWT with `jku` and `kid` in its header and `iss`, `sub`,
`iat`, `exp`, optional `jti` and a `ga4gh_visa_v1` object `{type, asserted, value, source, by?,
conditions?}` in its payload. One bad visa never sinks the passport: it is *ignored*, with a
reason that goes to the audit log. A visa is ignored when

- its algorithm is not RS256/ES256, it has no `jku`, or its (iss, jku) pair is not on the trust
  allow-list (checked before any key is fetched);
- its signature, `exp` or `iat` fail, or its visa object is malformed (ControlledAccessGrants and
  AcceptedTermsAndPolicies must say `by`);
- a condition clause uses an unknown match prefix (only `const:`, `pattern:`, `split_pattern:`
  exist) or is malformed, or its conditions are not met by the passport's other valid visas;
- its (sub, iss) is not the caller's and no trusted LinkedIdentities visa links the two.

Conditions are a list of alternatives (OR), each a list of clauses (AND); a clause matches one
unconditioned, valid visa of the same person. The expiry of an accepted visa is the earliest of
its own `exp`, the `exp` of the visas that satisfied its conditions and of the LinkedIdentities
visas that tied it to the caller.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, NamedTuple
from urllib.parse import quote, unquote

import jwt

from genofed.access.identity.oidc import (
    Clock,
    JwksCache,
    PrivateKey,
    algorithm_for,
    inspect_jwt,
    jwk_thumbprint,
    public_jwk,
    shown,
    verify_jwt,
)
from genofed.access.principal import Grant, Principal
from genofed.errors import IssuerUnavailable, TokenRejected

PASSPORT_CLAIM = "ga4gh_passport_v1"
VISA_CLAIM = "ga4gh_visa_v1"
#: `typ` header of a Passport JWT (AAI profile 1.2).
PASSPORT_TYPE = "vnd.ga4gh.passport+jwt"
#: The Registered Access publication, the usual `value` of ResearcherStatus and
#: AcceptedTermsAndPolicies visas.
REGISTERED_ACCESS = "https://doi.org/10.1038/s41431-018-0219-y"
#: Visas evaluated per passport; more are ignored (a passport is not a denial-of-service vector).
MAX_VISAS = 200


class VisaType(StrEnum):
    CONTROLLED_ACCESS_GRANTS = "ControlledAccessGrants"
    RESEARCHER_STATUS = "ResearcherStatus"
    ACCEPTED_TERMS_AND_POLICIES = "AcceptedTermsAndPolicies"
    AFFILIATION_AND_ROLE = "AffiliationAndRole"
    LINKED_IDENTITIES = "LinkedIdentities"


#: Visa types whose `by` field is mandatory (Passport spec).
_BY_REQUIRED = {VisaType.CONTROLLED_ACCESS_GRANTS, VisaType.ACCEPTED_TERMS_AND_POLICIES}
#: Visa object fields a condition clause may test (string fields; never `asserted` or
#: `conditions`).
_CONDITION_FIELDS = ("value", "source", "by")


class Identity(NamedTuple):
    """A visa identity: the (sub, iss) pair of a person's account at one issuer."""

    sub: str
    iss: str


# --- conditions --------------------------------------------------------------------------------

def _pattern(pattern: str) -> re.Pattern[str]:
    # `?` is one character, `*` any run of characters; nothing else is special, no escapes.
    collapsed = re.sub(r"\*+", "*", pattern)  # `**` means `*`; keeps matching linear-ish
    body = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in collapsed)
    return re.compile(body, re.DOTALL)


@dataclass(frozen=True)
class FieldMatch:
    """One `"<field>": "<prefix>:<operand>"` of a condition clause."""

    field: str
    prefix: str
    operand: str
    regex: re.Pattern[str] | None

    def matches(self, value: str | None) -> bool:
        if value is None:
            return False
        if self.regex is None:
            return value == self.operand
        if self.prefix == "split_pattern":
            return any(self.regex.fullmatch(part) for part in value.split(";"))
        return self.regex.fullmatch(value) is not None


@dataclass(frozen=True)
class ConditionClause:
    """A clause: a visa of `visa_type` whose fields all match."""

    visa_type: str
    fields: tuple[FieldMatch, ...]

    def matches(self, visa: Visa) -> bool:
        return visa.type == self.visa_type and all(
            m.matches(visa.field(m.field)) for m in self.fields)


Conditions = tuple[tuple[ConditionClause, ...], ...]


def parse_conditions(raw: object) -> Conditions:
    """Check and compile a `conditions` value; raise :class:`TokenRejected` (visa ignored) on an
    unknown prefix or any malformed clause. `[]` means no conditions."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise TokenRejected("visa 'conditions' is not a list of lists")
    alternatives = []
    for group in raw:
        if not isinstance(group, list) or not group:
            raise TokenRejected("visa 'conditions' has an empty or non-list group")
        alternatives.append(tuple(_parse_clause(clause) for clause in group))
    return tuple(alternatives)


def _parse_clause(clause: object) -> ConditionClause:
    if not isinstance(clause, dict) or not isinstance(clause.get("type"), str):
        raise TokenRejected("visa condition clause has no 'type'")
    matches = []
    for name, spec in clause.items():
        if name == "type":
            continue
        if name not in _CONDITION_FIELDS:
            raise TokenRejected(f"visa condition clause tests field {shown(name)}; only "
                                f"{', '.join(_CONDITION_FIELDS)} may be tested")
        if not isinstance(spec, str) or ":" not in spec:
            raise TokenRejected(f"visa condition on {shown(name)} is not '<prefix>:<value>'")
        prefix, _, operand = spec.partition(":")
        if prefix == "const":
            matches.append(FieldMatch(name, prefix, operand, None))
        elif prefix in ("pattern", "split_pattern"):
            matches.append(FieldMatch(name, prefix, operand, _pattern(operand)))
        else:
            raise TokenRejected(f"unknown condition prefix {shown(prefix)} (known: const, pattern, "
                                "split_pattern)")
    if not matches:
        raise TokenRejected("visa condition clause tests nothing besides 'type'")
    return ConditionClause(clause["type"], tuple(matches))


# --- visas -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Visa:
    """A visa whose signature, issuer trust, times and shape have been checked."""

    identity: Identity
    type: str
    value: str
    source: str
    by: str | None
    asserted: int
    issued: int
    expires: int
    jti: str | None
    conditions: Conditions = ()
    #: For a LinkedIdentities visa: the identities its value names.
    linked: frozenset[Identity] = frozenset()

    def field(self, name: str) -> str | None:
        return {"value": self.value, "source": self.source, "by": self.by}.get(name)


def parse_linked_identities(value: str) -> frozenset[Identity]:
    """`sub,iss;sub2,iss2` with each part URL-encoded (Passport spec, LinkedIdentities)."""
    identities = set()
    for entry in value.split(";"):
        sub, comma, iss = entry.partition(",")
        if not comma or not sub or not iss:
            raise TokenRejected("LinkedIdentities value is not 'sub,iss;sub,iss...'")
        identities.add(Identity(unquote(sub), unquote(iss)))
    return frozenset(identities)


def format_linked_identities(identities: Iterable[Identity]) -> str:
    return ";".join(f"{quote(i.sub, safe='')},{quote(i.iss, safe='')}" for i in identities)


def _string(obj: Mapping[str, Any], name: str, required: bool = True) -> str | None:
    value = obj.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise TokenRejected(f"visa object has no string '{name}'")
    return value


class VisaVerifier:
    """Checks single visas against the (iss, jku) trust allow-list and the issuers' keys."""

    def __init__(self, trusted: Iterable[tuple[str, str]], jwks: JwksCache, *,
                 leeway: float = 30.0, clock: Clock = time.time) -> None:
        self.trusted = frozenset(trusted)
        self._jwks = jwks
        self._leeway = leeway
        self._clock = clock

    def verify(self, token: str) -> Visa:
        parsed = inspect_jwt(token, "visa")
        jku = parsed.header.get("jku")
        if not isinstance(jku, str):
            raise TokenRejected("visa has no 'jku' header (only visa document tokens are "
                                "accepted)")
        issuer = parsed.issuer
        if (issuer, jku) not in self.trusted:
            # Before any fetch: an untrusted jku is never contacted.
            raise TokenRejected(f"visa issuer {shown(issuer)} with jku {shown(jku)} is not "
                                "trusted")
        key = self._jwks.key(jku, parsed.key_id, "visa")
        claims = verify_jwt(parsed, key, now=self._clock(), leeway=self._leeway, what="visa")
        if "openid" in str(claims.get("scope", "")).split():
            raise TokenRejected("visa carries scope 'openid' (a visa access token); not accepted")
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("visa has no 'sub'")
        obj = claims.get(VISA_CLAIM)
        if not isinstance(obj, dict):
            raise TokenRejected(f"visa has no '{VISA_CLAIM}' object")
        visa_type = _string(obj, "type")
        by = _string(obj, "by", required=False)
        if visa_type in _BY_REQUIRED and not by:
            raise TokenRejected(f"{visa_type} visa has no 'by'")
        asserted = obj.get("asserted")
        if isinstance(asserted, bool) or not isinstance(asserted, int | float) \
                or not math.isfinite(asserted):
            raise TokenRejected("visa object has no numeric 'asserted'")
        jti = claims.get("jti")
        value = str(_string(obj, "value"))
        linked = (parse_linked_identities(value) if visa_type == VisaType.LINKED_IDENTITIES
                  else frozenset())
        return Visa(
            identity=Identity(subject, str(issuer)), type=str(visa_type),
            value=value, source=str(_string(obj, "source")), by=by,
            asserted=int(asserted), issued=int(claims["iat"]), expires=int(claims["exp"]),
            jti=jti if isinstance(jti, str) else None,
            conditions=parse_conditions(obj.get("conditions")), linked=linked)


def sign_visa(key: PrivateKey, *, iss: str, jku: str, sub: str, visa_type: str, value: str,
              source: str, by: str | None = None, kid: str | None = None,
              lifetime: int = 3600, issued: int | None = None, expires: int | None = None,
              asserted: int | None = None, jti: str | None = None,
              conditions: Sequence[Sequence[Mapping[str, str]]] | None = None) -> str:
    """Mint a visa document token signed with `key` (RS256 for RSA, ES256 for P-256); `kid`
    defaults to the key's RFC 7638 thumbprint, `jti` to a fresh UUID. For issuers (the local
    OIDC issuer, the node's DAC) and for tests."""
    now = int(time.time()) if issued is None else issued
    visa: dict[str, Any] = {"type": visa_type, "asserted": now if asserted is None else asserted,
                            "value": value, "source": source}
    if by is not None:
        visa["by"] = by
    if conditions is not None:
        visa["conditions"] = [[dict(clause) for clause in group] for group in conditions]
    claims = {"iss": iss, "sub": sub, "iat": now,
              "exp": now + lifetime if expires is None else expires,
              "jti": jti or str(uuid.uuid4()), VISA_CLAIM: visa}
    headers = {"typ": "JWT", "jku": jku,
               "kid": kid or jwk_thumbprint(public_jwk(key.public_key()))}
    return jwt.encode(claims, key, algorithm=algorithm_for(key), headers=headers)


# --- passports ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class AcceptedVisa:
    visa: Visa
    #: Earliest expiry of the visa and of everything it relied on (conditions, identity links).
    expires: int


@dataclass(frozen=True)
class PassportEvaluation:
    accepted: tuple[AcceptedVisa, ...]
    #: Why each other visa was ignored ("visa 3 (ControlledAccessGrants): expired ...").
    ignored: tuple[str, ...]


_FOREVER = 2**62


def _reachable(holder: Identity, links: Sequence[tuple[Visa, int]]) -> dict[Identity, int]:
    """Identities tied to `holder` by LinkedIdentities visas, each with the latest expiry over
    the chains that tie it (a chain lasts as long as its shortest-lived link)."""
    reach = {holder: _FOREVER}
    groups = [(v.linked | {v.identity}, expires) for v, expires in links]
    changed = True
    while changed:
        changed = False
        for members, expires in groups:
            known = [reach[m] for m in members if m in reach]
            if not known:
                continue
            through = min(max(known), expires)
            for member in members:
                if reach.get(member, -1) < through:
                    reach[member] = through
                    changed = True
    return reach


def _conditions_expiry(conditions: Conditions,
                       candidates: Sequence[tuple[Visa, int]]) -> int | None:
    """None when no alternative is met, else how long the best alternative stays met."""
    best: int | None = None
    for clauses in conditions:
        expiry = _FOREVER
        for clause in clauses:
            matched = [expires for visa, expires in candidates if clause.matches(visa)]
            if not matched:
                break
            expiry = min(expiry, max(matched))
        else:
            best = expiry if best is None else max(best, expiry)
    return best


def _label(index: int, visa: Visa | None = None) -> str:
    return f"visa {index} ({visa.type})" if visa else f"visa {index}"


def evaluate_passport(visa_tokens: object, holder: Identity,
                      verifier: VisaVerifier) -> PassportEvaluation:
    """Verify every visa in a `ga4gh_passport_v1` value for the caller `holder`."""
    if not isinstance(visa_tokens, list):
        raise TokenRejected(f"'{PASSPORT_CLAIM}' is not a list of visas")
    ignored: list[str] = []
    verified: list[tuple[int, Visa]] = []
    for index, token in enumerate(visa_tokens):
        if index >= MAX_VISAS:
            ignored.append(f"visas after the first {MAX_VISAS} were not evaluated")
            break
        if not isinstance(token, str):
            ignored.append(f"{_label(index)}: not a JWT string")
            continue
        try:
            verified.append((index, verifier.verify(token)))
        except TokenRejected as exc:
            ignored.append(f"{_label(index)}: {exc.reason}")
        except IssuerUnavailable as exc:
            ignored.append(f"{_label(index)}: issuer keys unavailable ({exc})")

    plain = [(i, v) for i, v in verified if not v.conditions]
    conditional = [(i, v) for i, v in verified if v.conditions]
    satisfied: dict[int, int] = {}  # index of a conditional visa -> expiry of its conditions
    while True:
        # Fixpoint: a LinkedIdentities visa with conditions can, once met, link more visas.
        links = [(v, v.expires) for _, v in plain if v.type == VisaType.LINKED_IDENTITIES]
        links += [(v, min(v.expires, satisfied[i])) for i, v in conditional
                  if i in satisfied and v.type == VisaType.LINKED_IDENTITIES]
        reach = _reachable(holder, links)
        candidates = [(v, min(v.expires, reach[v.identity])) for _, v in plain
                      if v.identity in reach]
        progress = False
        for index, visa in conditional:
            if index in satisfied or visa.identity not in reach:
                continue
            expiry = _conditions_expiry(visa.conditions, candidates)
            if expiry is not None:
                satisfied[index] = expiry
                progress = True
        if not progress:
            break

    accepted: list[AcceptedVisa] = []
    for index, visa in sorted(verified, key=lambda item: item[0]):
        if visa.identity not in reach:
            ignored.append(f"{_label(index, visa)}: issued to another identity (sub, iss) and no "
                           "trusted LinkedIdentities visa links it to the caller")
        elif visa.conditions and index not in satisfied:
            ignored.append(f"{_label(index, visa)}: its conditions are not met by the "
                           "passport's other valid visas")
        else:
            expires = min(visa.expires, reach[visa.identity], satisfied.get(index, _FOREVER))
            accepted.append(AcceptedVisa(visa, expires))
    return PassportEvaluation(tuple(accepted), tuple(ignored))


def principal_from(holder: Identity, token_expires: int,
                   evaluation: PassportEvaluation) -> Principal:
    """The caller as the policy sees them. Each grant lasts until the earlier of its visa's and
    the token's expiry; the principal itself until the earliest expiry of the token and every
    visa it relies on (then it must be rebuilt from a fresh token)."""
    grants: list[Grant] = []
    relied_on = [token_expires]
    best: dict[str, int] = {}
    for item in evaluation.accepted:
        visa = item.visa
        expires = min(item.expires, token_expires)
        if visa.type == VisaType.CONTROLLED_ACCESS_GRANTS:
            grants.append(Grant(dataset_id=visa.value, issuer=visa.identity.iss,
                                by=visa.by or "", expires=expires, visa_id=visa.jti))
            relied_on.append(expires)
        elif visa.type in (VisaType.RESEARCHER_STATUS, VisaType.ACCEPTED_TERMS_AND_POLICIES):
            best[visa.type] = max(best.get(visa.type, 0), expires)  # one valid visa suffices
    relied_on.extend(best.values())
    # Longest-lived first, so Principal.grant_for finds the grant that lasts.
    grants.sort(key=lambda g: g.expires, reverse=True)
    return Principal(issuer=holder.iss, subject=holder.sub, expires=min(relied_on),
                     grants=tuple(grants),
                     researcher=VisaType.RESEARCHER_STATUS in best,
                     accepted_terms=VisaType.ACCEPTED_TERMS_AND_POLICIES in best,
                     ignored_visas=evaluation.ignored)
