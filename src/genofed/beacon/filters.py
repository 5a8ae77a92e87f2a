"""Beacon filters over a dataset's individuals table.

* HPO terms (`HP:nnnnnnn`): with `includeDescendantTerms` (default) an individual with a more
  specific term matches (membership in the precomputed `phenotype_closure`); without, only the
  term as recorded. Obsolete/alternative ids resolve to the current term.
* Sex: NCIT:C16576 female, NCIT:C20197 male, NCIT:C17998 unknown.
* Diseases: OMIM / ORPHA / MONDO / ICD10 / DOID ids, exact.
* Alphanumeric: `age` (or NCIT:C25150) with `=, <, >, <=, >=, !` and an ISO 8601 duration
  (`P40Y`, `P40Y6M`) or a number of years; a measurement's assay id (e.g. `LOINC:2089-1`) with a
  number compares the measured value.
* Anything else is *not applied* and reported in the response's `info.warnings`.
"""

from __future__ import annotations

import operator as op
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from genofed.beacon.request import FilterSpec
from genofed.errors import BeaconRequestError
from genofed.ontology.hpo import hpo
from genofed.store.individuals import iso8601_years

SEX_TERMS = {"NCIT:C16576": "female", "NCIT:C20197": "male", "NCIT:C17998": "unknown"}
AGE_IDS = {"age", "NCIT:C25150", "ageAtLastEncounter"}
DISEASE_PREFIXES = {"OMIM", "ORPHA", "Orphanet", "MONDO", "ICD10", "ICD10CM", "DOID"}
_HPO_ID = re.compile(r"^HP:\d{7}$")
_OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "=": op.eq, "<": op.lt, ">": op.gt, "<=": op.le, ">=": op.ge, "!": op.ne,
}


@dataclass(frozen=True)
class _Applied:
    kind: str  # hpo / sex / disease / age / measurement
    term: str
    include_descendants: bool = True
    operator: str | None = None
    number: float | None = None


@dataclass
class FilterPlan:
    applied: list[_Applied] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        return bool(self.applied)


def plan_filters(filters: Sequence[FilterSpec]) -> FilterPlan:
    plan = FilterPlan()
    for spec in filters:
        term = spec.id
        prefix = term.split(":", 1)[0] if ":" in term else ""
        if spec.operator is not None:
            if term in AGE_IDS:
                plan.applied.append(_Applied("age", term, operator=spec.operator,
                                             number=_age_years(spec.value or "")))
            elif prefix:
                plan.applied.append(_Applied("measurement", term, operator=spec.operator,
                                             number=_number(term, spec.value or "")))
            else:
                plan.warnings.append(f"filter {spec}: unknown alphanumeric filter id "
                                     f"{term!r}; not applied (known: age, assay CURIEs)")
            continue
        if _HPO_ID.match(term):
            resolved = hpo().resolve(term)
            if resolved is None:
                plan.warnings.append(f"filter {term}: not a term of HPO {hpo().version}; "
                                     f"not applied")
                continue
            plan.applied.append(_Applied("hpo", resolved.id, spec.include_descendants))
        elif term in SEX_TERMS:
            plan.applied.append(_Applied("sex", SEX_TERMS[term]))
        elif prefix in DISEASE_PREFIXES:
            plan.applied.append(_Applied("disease", term))
        else:
            plan.warnings.append(f"filter {term}: unknown filtering term; not applied "
                                 f"(see /filtering_terms for the terms this node knows)")
    return plan


def _age_years(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        pass
    try:
        return iso8601_years(value)
    except ValueError as exc:
        raise BeaconRequestError(f"age filter: {exc}") from None


def _number(term: str, value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise BeaconRequestError(f"filter {term}: value {value!r} is not a number") from None


def individuals_mask(individuals: pa.Table, plan: FilterPlan) -> np.ndarray:
    """Rows of the individuals table matching every applied filter."""
    n = individuals.num_rows
    keep = np.ones(n, dtype=bool)
    for item in plan.applied:
        if item.kind == "hpo":
            column = "phenotype_closure" if item.include_descendants else "phenotypes"
            values = individuals.column(column).to_pylist()
            keep &= np.fromiter((item.term in v for v in values), dtype=bool, count=n)
        elif item.kind == "sex":
            sexes = individuals.column("sex").cast(pa.string()).to_pylist()
            keep &= np.asarray([s == item.term for s in sexes], dtype=bool)
        elif item.kind == "disease":
            values = individuals.column("diseases").to_pylist()
            keep &= np.fromiter((item.term in v for v in values), dtype=bool, count=n)
        elif item.kind == "age":
            ages = individuals.column("age_years").to_numpy(zero_copy_only=False)
            compare = _OPERATORS[item.operator or "="]
            with np.errstate(invalid="ignore"):
                known = ~np.isnan(ages)
                keep &= known & compare(np.nan_to_num(ages), float(item.number or 0.0))
        elif item.kind == "measurement":
            compare = _OPERATORS[item.operator or "="]
            rows = individuals.column("measurements").to_pylist()
            threshold = float(item.number or 0.0)
            keep &= np.asarray([any(m["assay"] == item.term and m["value"] is not None
                                    and bool(compare(m["value"], threshold)) for m in ms or [])
                                for ms in rows], dtype=bool)
    return keep
