"""GA4GH Phenopackets v2 (JSON) to rows of the individuals table.

Each file is checked against the `phenopackets` package's protobuf schema, so a misspelt field or
a wrong type is rejected with the package's own message plus our file name; semantic checks (a
subject id, metaData, known HPO ids) follow. The schema check is first a fast walk of the decoded
JSON (`phenopacket_schema.certainly_valid`, which only says yes for documents protobuf's
`ParseDict` certainly accepts) and else `ParseDict` itself, the authority whose messages users
see; the fields genofed uses are then read from the JSON or from the parsed message alike.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import json_format

from genofed.errors import InputError
from genofed.ingest.phenopacket_schema import certainly_valid
from genofed.ontology.hpo import hpo
from genofed.store.individuals import iso8601_years

_SEX = {"FEMALE": "female", "MALE": "male", "OTHER_SEX": "other", "UNKNOWN_SEX": "unknown"}


@dataclass
class Individual:
    sample_id: str
    sex: str = "unknown"
    age_iso: str | None = None
    age_years: float | None = None
    phenotypes: list[str] = field(default_factory=list)
    excluded_phenotypes: list[str] = field(default_factory=list)
    diseases: list[str] = field(default_factory=list)
    measurements: list[dict[str, object]] = field(default_factory=list)
    phenopacket: str | None = None  # the original document, for record-level answers


def load_phenopackets(directory: Path) -> list[Individual]:
    """Read every `*.json` phenopacket in a directory (sorted by file name)."""
    if not directory.is_dir():
        raise InputError(str(directory), "not a directory of phenopacket JSON files")
    # In the order of sorted(paths), by comparing the names rather than the paths (10x cheaper).
    files = sorted(directory.glob("*.json"), key=lambda path: os.path.normcase(path.name))
    if not files:
        raise InputError(str(directory), "contains no *.json phenopackets")
    individuals = [load_phenopacket(path) for path in files]
    seen: dict[str, Path] = {}
    for path, person in zip(files, individuals, strict=True):
        if person.sample_id in seen:
            raise InputError(str(path), f"subject.id {person.sample_id!r} is also the subject of "
                             f"{seen[person.sample_id].name}", field="subject.id")
        seen[person.sample_id] = path
    return individuals


def load_phenopacket(path: Path, *, fast: bool = True) -> Individual:
    """One phenopacket. `fast=False`: always validate with ParseDict (the fast check's judge)."""
    name = str(path)
    text = _read_text(path)
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, f"invalid JSON: {exc.msg} (column {exc.colno})",
                         line=exc.lineno) from None
    if not isinstance(document, dict):
        raise InputError(name, "a phenopacket must be a JSON object")
    if fast and certainly_valid(document):
        fields = _fields_of_document(document)
    else:
        from phenopackets import Phenopacket

        try:
            message = json_format.ParseDict(document, Phenopacket())
        except json_format.ParseError as exc:
            raise InputError(name, f"not a valid Phenopacket v2: {exc}") from None
        fields = _fields_of_message(message)
    if not fields.id:
        raise InputError(name, "the phenopacket has no id", field="id")
    if not fields.subject_id:
        raise InputError(name, "the phenopacket has no subject.id (the VCF sample name)",
                         field="subject.id")
    if not fields.has_meta_data:
        raise InputError(name, "the phenopacket has no metaData (required by Phenopackets v2)",
                         field="metaData")
    person = Individual(sample_id=fields.subject_id,
                        phenopacket=json.dumps(document, sort_keys=True))
    sex_names = _sex_names()
    if not isinstance(fields.sex, str) and fields.sex not in sex_names:
        # proto3 enums are open: the schema lets any number through
        raise InputError(name, f"subject.sex {fields.sex} is not a value of the Phenopackets "
                         f"Sex enum ({', '.join(sex_names.values())})", field="subject.sex")
    sex = fields.sex if isinstance(fields.sex, str) else sex_names[fields.sex]
    person.sex = _SEX.get(sex, "unknown")
    if fields.age_iso is not None:
        person.age_iso = fields.age_iso
        try:
            person.age_years = iso8601_years(person.age_iso)
        except ValueError as exc:
            raise InputError(name, str(exc),
                             field="subject.timeAtLastEncounter.age.iso8601duration") from None
    ontology = hpo()
    for index, (term_id, excluded) in enumerate(fields.features):
        resolved = ontology.resolve(term_id) if term_id.startswith("HP:") else None
        if resolved is None:
            raise InputError(name, f"{term_id!r} is not a term of the Human Phenotype Ontology "
                             f"({ontology.version})", field=f"phenotypicFeatures[{index}].type.id")
        target = person.excluded_phenotypes if excluded else person.phenotypes
        target.append(resolved.id)
    person.diseases = [term_id for term_id, excluded in fields.diseases
                       if not excluded and term_id]
    person.measurements = fields.measurements
    return person


_READ_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0)
_CHUNK = 1 << 16  # a phenopacket is a few kB: one read and one at the end of the file


def _read_text(path: Path) -> str:
    """`path.read_text(encoding="utf-8")` in fewer system calls and less Python.

    On any error, `read_text` itself is called (and raises its own exception)."""
    try:
        handle = os.open(path, _READ_FLAGS)
        try:
            data = os.read(handle, _CHUNK)
            if data:
                chunks = [data]
                while chunk := os.read(handle, _CHUNK):
                    chunks.append(chunk)
                if len(chunks) > 1:
                    data = b"".join(chunks)
        finally:
            os.close(handle)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return path.read_text(encoding="utf-8")
    if "\r" in text:  # read_text's universal newlines
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


@dataclass
class _Fields:
    """What genofed reads of a phenopacket, with proto3's defaults for what is missing."""

    id: str
    subject_id: str | None  # None: no subject
    has_meta_data: bool
    sex: str | int  # the enum value's name (e.g. "UNKNOWN_SEX") or number
    age_iso: str | None  # subject.timeAtLastEncounter.age.iso8601duration, None: no such age
    features: list[tuple[str, bool]]  # (type.id, excluded)
    diseases: list[tuple[str, bool]]  # (term.id, excluded)
    measurements: list[dict[str, object]]


def _fields_of_message(message: Any) -> _Fields:
    subject = message.subject if message.HasField("subject") else None
    age_iso = None
    if subject is not None and subject.HasField("time_at_last_encounter"):
        age = subject.time_at_last_encounter
        if age.HasField("age"):
            age_iso = age.age.iso8601duration
    measurements: list[dict[str, object]] = []
    for measurement in message.measurements:
        if measurement.HasField("value") and measurement.value.HasField("quantity"):
            quantity = measurement.value.quantity
            measurements.append({
                "assay": measurement.assay.id,
                "value": quantity.value,
                "unit": quantity.unit.id,
            })
    return _Fields(
        id=message.id,
        subject_id=subject.id if subject is not None else None,
        has_meta_data=message.HasField("meta_data"),
        sex=message.subject.sex,
        age_iso=age_iso,
        features=[(feature.type.id, feature.excluded)
                  for feature in message.phenotypic_features],
        diseases=[(disease.term.id, disease.excluded) for disease in message.diseases],
        measurements=measurements,
    )


_EMPTY: dict[str, Any] = {}


def _get(mapping: dict[str, Any], json_name: str, proto_name: str) -> Any:
    """A field given under its JSON or its proto name (the fast check allows only one)."""
    value = mapping.get(json_name)
    return mapping.get(proto_name) if value is None else value


def _fields_of_document(document: dict[str, Any]) -> _Fields:
    """`_fields_of_message` read straight from a document `certainly_valid` accepted."""
    subject = document.get("subject")
    age_iso = None
    sex = 0
    if subject is not None:
        sex = subject.get("sex", 0)
        encounter = _get(subject, "timeAtLastEncounter", "time_at_last_encounter")
        if encounter is not None and "age" in encounter:
            age_iso = encounter["age"].get("iso8601duration", "")
    measurements: list[dict[str, object]] = []
    for measurement in document.get("measurements", ()):
        quantity = measurement.get("value", _EMPTY).get("quantity")
        if quantity is not None:
            measurements.append({
                "assay": measurement.get("assay", _EMPTY).get("id", ""),
                "value": float(quantity.get("value", 0.0)),
                "unit": quantity.get("unit", _EMPTY).get("id", ""),
            })
    return _Fields(
        id=document.get("id", ""),
        subject_id=subject.get("id", "") if subject is not None else None,
        has_meta_data=_get(document, "metaData", "meta_data") is not None,
        sex=sex,
        age_iso=age_iso,
        features=[(feature.get("type", _EMPTY).get("id", ""), feature.get("excluded", False))
                  for feature in _get(document, "phenotypicFeatures", "phenotypic_features")
                  or ()],
        diseases=[(disease.get("term", _EMPTY).get("id", ""), disease.get("excluded", False))
                  for disease in document.get("diseases", ())],
        measurements=measurements,
    )


@cache
def _sex_names() -> dict[int, str]:
    from phenopackets import Phenopacket

    subject = Phenopacket.DESCRIPTOR.fields_by_name["subject"].message_type
    return {value.number: value.name for value in subject.fields_by_name["sex"].enum_type.values}
