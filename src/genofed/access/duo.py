"""DUO matching: does a stated research purpose fit a dataset's data use conditions?

The answer is a pre-assessment for the data access committee: **approve** (the purpose is within
what consent permits and nothing needs checking by a person), **deny** (it is outside), or
**needs-review** (it may be allowed, but a condition such as ethics approval or collaboration
must be checked by the committee), always with reasons.

Permissions follow DUO's hierarchy: GRU (DUO:0000042) ⊇ HMB (DUO:0000006) ⊇ DS (DUO:0000007);
GRU also covers population origins/ancestry research, which HMB excludes by definition; POA
(DUO:0000011) allows only that; NRES (DUO:0000004) allows anything. Research purposes are coded
with the same permission terms or with DUO's research-purpose classes (DUO:0000031-40, e.g.
DUO:0000038 genetic research). Modifiers narrow a permission (NPU/NCU, NPOA, NMDS, GSO) or
attach a condition for the committee (IRB, COL, PUB, RTN, MOR, TS, US, PS, IS, GS, RS).

Disease-specific matching compares disease CURIEs exactly unless a `disease_within` function
(e.g. backed by MONDO) is supplied: the ontology is not shipped, so a different disease is denied
with a reason that says so, and the committee can still approve it.

The term table (`duo_terms.json`) is derived from the DUO release in `standards/duo`; a test
checks it against that ontology.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources

from genofed.errors import PurposeError
from genofed.store.metadata import DataUseConditions, DuoDataUse, OntologyTerm

GRU, HMB, DS, POA, NRES = "DUO:0000042", "DUO:0000006", "DUO:0000007", "DUO:0000011", "DUO:0000004"
PERMISSION_ROOT, MODIFIER_ROOT = "DUO:0000001", "DUO:0000017"
BIOMEDICAL_RESEARCH, GENETIC_RESEARCH = "DUO:0000037", "DUO:0000038"
DISEASE_CATEGORY_RESEARCH, METHOD_DEVELOPMENT = "DUO:0000040", "DUO:0000031"
POPULATION_RESEARCH, ANCESTRY_RESEARCH = "DUO:0000032", "DUO:0000033"
NPU, NCU, NPUNCU = "DUO:0000045", "DUO:0000046", "DUO:0000018"
NPOA, NMDS, GSO, CC = "DUO:0000044", "DUO:0000015", "DUO:0000016", "DUO:0000043"

_CURIE = re.compile(r"^[A-Za-z][A-Za-z0-9_.]*:\S+$")

#: Modifiers that attach a condition only a person can check, and what the committee checks.
_REVIEW_CONDITIONS = {
    "DUO:0000021": "ethics approval required: the committee must see the applicant's IRB/ERB "
                   "approval",
    "DUO:0000020": "collaboration with the primary study investigators required: the applicant "
                   "must agree to it",
    "DUO:0000019": "publication required: the applicant must agree to make results available to "
                   "the scientific community",
    "DUO:0000029": "derived or enriched data must be returned to the resource",
    "DUO:0000024": "publication moratorium: results may not be published before the set date",
    "DUO:0000025": "time limit on use: the committee sets how long the grant lasts",
    "DUO:0000026": "restricted to approved users",
    "DUO:0000027": "restricted to an approved project",
    "DUO:0000028": "restricted to an approved institution",
    "DUO:0000022": "restricted to a geographical region",
    "DUO:0000012": "restricted to a type of research",
}


class Outcome(StrEnum):
    APPROVE = "approve"
    NEEDS_REVIEW = "needs-review"
    DENY = "deny"

    @property
    def severity(self) -> int:
        return {"approve": 0, "needs-review": 1, "deny": 2}[self.value]


@dataclass(frozen=True)
class DuoTerm:
    id: str
    shorthand: str
    label: str
    parents: tuple[str, ...]
    #: "permission", "modifier" or "purpose" (research-purpose class).
    kind: str
    #: What the term must be combined with (e.g. DS: a MONDO disease).
    restricted_to: tuple[str, ...]

    @property
    def name(self) -> str:
        """'HMB (DUO:0000006)' or 'genetic research (DUO:0000038)'."""
        return f"{self.shorthand or self.label} ({self.id})"


class DuoTable:
    """The DUO terms genofed understands, with their parents."""

    def __init__(self, terms: dict[str, DuoTerm], version: str) -> None:
        self.terms = terms
        self.version = version
        self._by_shorthand = {t.shorthand.upper(): t for t in terms.values() if t.shorthand}

    @classmethod
    def load(cls) -> DuoTable:
        raw = json.loads(resources.files("genofed.access").joinpath("duo_terms.json")
                         .read_text(encoding="utf-8"))
        terms = {tid: DuoTerm(id=tid, shorthand=t["shorthand"], label=t["label"],
                              parents=tuple(t["parents"]), kind=t["kind"],
                              restricted_to=tuple(t["restricted_to"]))
                 for tid, t in raw["terms"].items()}
        return cls(terms, raw["version"])

    def get(self, term: str) -> DuoTerm | None:
        """A term by CURIE or shorthand ('HMB', 'DUO:0000006')."""
        return self.terms.get(term) or self._by_shorthand.get(term.upper())

    def is_a(self, term: str, ancestor: str) -> bool:
        """`term` is `ancestor` or one of its descendants."""
        seen: set[str] = set()
        pending = [term]
        while pending:
            current = pending.pop()
            if current == ancestor:
                return True
            if current not in seen and current in self.terms:
                seen.add(current)
                pending.extend(self.terms[current].parents)
        return False


@functools.cache
def duo_table() -> DuoTable:
    return DuoTable.load()


@dataclass(frozen=True)
class Purpose:
    """What a researcher intends to do, in DUO terms (build it with :meth:`parse`)."""

    terms: tuple[str, ...]
    #: Disease CURIEs (MONDO recommended) for disease-specific research.
    diseases: tuple[str, ...] = ()
    #: Commercial use, or an applicant organisation that is not for profit.
    commercial: bool = False

    @classmethod
    def parse(cls, terms: Iterable[str], diseases: Iterable[str] = (),
              commercial: bool = False, table: DuoTable | None = None) -> Purpose:
        """Normalise shorthands to CURIEs; reject terms that cannot describe a purpose."""
        table = table or duo_table()
        resolved: list[str] = []
        for given in terms:
            term = table.get(given.strip())
            if term is None:
                raise PurposeError(f"purpose term {given!r} is not a DUO term genofed knows; use "
                                   "a research purpose such as DUO:0000038 (genetic research) "
                                   "or HMB, DS, POA, GRU")
            usable = term.kind == "purpose" or term.id in (GRU, HMB, DS, POA)
            if not usable:
                raise PurposeError(f"purpose term {given!r} is {term.name}, a {term.kind} that "
                                   "describes datasets, not research; use GRU, HMB, DS, POA or "
                                   "a DUO research-purpose term (DUO:0000031-40)")
            if term.id not in resolved:
                resolved.append(term.id)
        if not resolved:
            raise PurposeError("a purpose needs at least one DUO term (e.g. HMB, or "
                               "DUO:0000038 genetic research)")
        cleaned = []
        for disease in diseases:
            if not _CURIE.match(disease.strip()):
                raise PurposeError(f"disease {disease!r} is not a CURIE such as 'MONDO:0005148'")
            cleaned.append(disease.strip())
        return cls(tuple(resolved), tuple(dict.fromkeys(cleaned)), commercial)


@dataclass(frozen=True)
class Assessment:
    outcome: Outcome
    reasons: tuple[str, ...]


class _Scope(StrEnum):
    """The broad kind of research a purpose is, for comparing with a permission."""

    GENERAL = "general research"  # explicitly GRU: not health-specific
    UNSPECIFIED = "research not coded as biomedical"  # age/gender category, research control
    METHODS = "method development"
    BIOMEDICAL = "health/medical/biomedical research"
    DISEASE = "disease-specific research"
    ANCESTRY = "population origins or ancestry research"


@dataclass(frozen=True)
class _Finding:
    outcome: Outcome
    reason: str


def _combine(findings: Iterable[_Finding]) -> Assessment:
    """The most severe outcome, with the reasons that led to it."""
    findings = list(findings)
    outcome = max((f.outcome for f in findings), key=lambda o: o.severity,
                  default=Outcome.APPROVE)
    return Assessment(outcome, tuple(dict.fromkeys(f.reason for f in findings
                                                   if f.outcome is outcome)))


class DuoMatcher:
    """Assess purposes against datasets' `dataUseConditions.duoDataUse`."""

    def __init__(self, table: DuoTable | None = None,
                 disease_within: Callable[[str, str], bool] | None = None) -> None:
        self.table = table or duo_table()
        #: (purpose disease, dataset disease) -> the first is the second or a subtype of it.
        self.disease_within = disease_within or (lambda purpose, dataset: purpose == dataset)

    def assess(self, purpose: Purpose, conditions: DataUseConditions) -> Assessment:
        entries = conditions.duo_data_use
        if not entries:
            return Assessment(Outcome.NEEDS_REVIEW, (
                "the dataset states no data use conditions (dataUseConditions.duoDataUse): "
                "the committee decides",))
        # Modifiers listed on their own apply to every permission of the dataset.
        shared = [e for e in entries if self._kind(e.id) != "permission"]
        permissions = [e for e in entries if self._kind(e.id) == "permission"]
        if not permissions:
            return _combine([_Finding(Outcome.NEEDS_REVIEW, "the dataset states modifiers but "
                                      "no data use permission: the committee decides"),
                             *self._modifiers(purpose, shared)])
        # Several permissions are alternatives: the purpose needs to fit one of them.
        options = [_combine([*self._permission(purpose, entry),
                             *self._modifiers(purpose, [*shared, *entry.modifiers])])
                   for entry in permissions]
        best = min(o.outcome.severity for o in options)
        reasons = [r for o in options if o.outcome.severity == best for r in o.reasons]
        return Assessment(next(o.outcome for o in options if o.outcome.severity == best),
                          tuple(dict.fromkeys(reasons)))

    # -- the purpose ---------------------------------------------------------------------------
    def _scopes(self, purpose: Purpose) -> set[_Scope]:
        scopes: set[_Scope] = set()
        for term in purpose.terms:
            if term in (DS, DISEASE_CATEGORY_RESEARCH):
                scopes.add(_Scope.DISEASE)
            elif term == HMB or self.table.is_a(term, BIOMEDICAL_RESEARCH):
                scopes.add(_Scope.BIOMEDICAL)
            elif term in (POA, POPULATION_RESEARCH, ANCESTRY_RESEARCH):
                scopes.add(_Scope.ANCESTRY)
            elif term == GRU:
                scopes.add(_Scope.GENERAL)
            elif term == METHOD_DEVELOPMENT:
                scopes.add(_Scope.METHODS)
            else:
                scopes.add(_Scope.UNSPECIFIED)
        # Biomedical terms qualify a disease-specific purpose (genetic research *on* disease X).
        if _Scope.DISEASE in scopes:
            scopes.discard(_Scope.BIOMEDICAL)
        # Method development is within the scope of whatever else the purpose says.
        if len(scopes) > 1:
            scopes.discard(_Scope.METHODS)
        return scopes

    def _kind(self, term_id: str) -> str:
        term = self.table.get(term_id)
        return term.kind if term is not None and term.id == term_id else "unknown"

    def _name(self, term_id: str) -> str:
        term = self.table.get(term_id)
        return term.name if term is not None and term.id == term_id else term_id

    # -- permissions ---------------------------------------------------------------------------
    def _permission(self, purpose: Purpose, entry: DuoDataUse) -> list[_Finding]:
        permission = entry.id
        name = self._name(permission)
        scopes = self._scopes(purpose)
        if permission in (NRES, GRU):
            what = "no restriction" if permission == NRES else "any research purpose"
            return [_Finding(Outcome.APPROVE, f"{name} permits {what}")]
        if permission == PERMISSION_ROOT:
            return [_Finding(Outcome.NEEDS_REVIEW, f"{name} is not a specific permission: the "
                             "committee decides")]
        if permission == HMB:
            return [self._within_hmb(name, scope) for scope in sorted(scopes)]
        if permission == DS:
            return self._within_ds(name, entry, purpose, scopes)
        if permission == POA:
            return [_Finding(Outcome.APPROVE, f"{name} permits {scope.value}")
                    if scope is _Scope.ANCESTRY else
                    _Finding(Outcome.DENY, f"{name} permits population origins or ancestry "
                             f"research only; the purpose includes {scope.value}")
                    for scope in sorted(scopes)]
        return [_Finding(Outcome.NEEDS_REVIEW, f"{name}: a data use permission genofed cannot "
                         "assess: the committee decides")]

    def _within_hmb(self, name: str, scope: _Scope) -> _Finding:
        if scope in (_Scope.BIOMEDICAL, _Scope.DISEASE, _Scope.METHODS):
            return _Finding(Outcome.APPROVE, f"{name} permits {scope.value}")
        if scope is _Scope.ANCESTRY:
            return _Finding(Outcome.DENY, f"{name} excludes population origins or ancestry "
                            "research")
        if scope is _Scope.GENERAL:
            return _Finding(Outcome.DENY, f"{name} permits health/medical/biomedical research "
                            "only; the purpose is general research use (GRU)")
        return _Finding(Outcome.NEEDS_REVIEW, f"{name} permits health/medical/biomedical "
                        f"research only; the purpose includes {scope.value}: the committee "
                        "judges whether it is biomedical")

    def _within_ds(self, name: str, entry: DuoDataUse, purpose: Purpose,
                   scopes: set[_Scope]) -> list[_Finding]:
        diseases = [m.id for m in entry.modifiers if not m.id.startswith("DUO:")]
        findings: list[_Finding] = []
        for scope in sorted(scopes):
            if scope is _Scope.DISEASE:
                findings.extend(self._diseases(name, diseases, purpose.diseases))
            elif scope in (_Scope.METHODS, _Scope.UNSPECIFIED):
                findings.append(_Finding(Outcome.NEEDS_REVIEW, f"{name} is restricted to "
                                         f"research on {_listing(diseases)}; the committee "
                                         f"judges whether {scope.value} stays within it"))
            else:
                findings.append(_Finding(Outcome.DENY, f"{name} is restricted to research on "
                                         f"{_listing(diseases)}; the purpose is {scope.value}, "
                                         "which is broader"))
        return findings

    def _diseases(self, name: str, allowed: list[str], asked: tuple[str, ...]) -> list[_Finding]:
        if not allowed:
            return [_Finding(Outcome.NEEDS_REVIEW, f"{name} names no disease (add the MONDO "
                             "term as a modifier): the committee decides")]
        if not asked:
            return [_Finding(Outcome.NEEDS_REVIEW, f"{name} is restricted to "
                             f"{_listing(allowed)}; the purpose names no disease")]
        findings = []
        for disease in asked:
            if any(self.disease_within(disease, d) for d in allowed):
                findings.append(_Finding(Outcome.APPROVE, f"{name} permits research on "
                                         f"{disease}"))
            else:
                findings.append(_Finding(Outcome.DENY, f"{name} is restricted to "
                                         f"{_listing(allowed)}; {disease} is not among them "
                                         "(diseases are matched exactly unless a disease "
                                         "ontology is configured)"))
        return findings

    # -- modifiers -----------------------------------------------------------------------------
    def _modifiers(self, purpose: Purpose, modifiers: Iterable[OntologyTerm]) -> list[_Finding]:
        findings: list[_Finding] = []
        scopes = self._scopes(purpose)
        for modifier in modifiers:
            term_id = modifier.id
            if not term_id.startswith("DUO:"):
                continue  # the disease, region or topic a permission/modifier is about
            name = self._name(term_id)
            kind = self._kind(term_id)
            if term_id in (NPU, NCU, NPUNCU):
                if purpose.commercial:
                    findings.append(_Finding(Outcome.DENY, f"{name} limits use to not-for-profit "
                                             "organisations and use; the purpose is commercial"))
            elif term_id == NPOA:
                if _Scope.ANCESTRY in scopes:
                    findings.append(_Finding(Outcome.DENY, f"{name} prohibits population "
                                             "origins or ancestry research"))
            elif term_id == NMDS:
                if METHOD_DEVELOPMENT in purpose.terms:
                    findings.append(_Finding(Outcome.DENY, f"{name} prohibits general methods "
                                             "development research"))
            elif term_id == GSO:
                if GENETIC_RESEARCH not in purpose.terms:
                    findings.append(_Finding(Outcome.NEEDS_REVIEW, f"{name}: genetic studies "
                                             "only; the purpose is not coded as genetic "
                                             "research (DUO:0000038): the committee checks"))
            elif term_id in _REVIEW_CONDITIONS:
                findings.append(_Finding(Outcome.NEEDS_REVIEW,
                                         f"{name}: {_REVIEW_CONDITIONS[term_id]}"))
            elif term_id == CC:
                continue  # widens use to clinical care; restricts nothing
            elif kind == "unknown":
                findings.append(_Finding(Outcome.NEEDS_REVIEW, f"{term_id} is not a DUO term "
                                         "genofed knows: the committee decides"))
            else:
                findings.append(_Finding(Outcome.NEEDS_REVIEW, f"{name}: a condition genofed "
                                         "cannot assess: the committee decides"))
        return findings


def _listing(items: list[str]) -> str:
    return ", ".join(items) if items else "an unnamed disease"
