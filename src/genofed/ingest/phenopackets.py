"""GA4GH Phenopackets v2 (JSON) to rows of the individuals table.

Each file is parsed by the `phenopackets` package's protobuf schema, so a misspelt field or a wrong
type is rejected with the package's own message plus our file name; semantic checks (a subject id,
metaData, known HPO ids) follow.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from google.protobuf import json_format

from genofed.errors import InputError
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
    files = sorted(directory.glob("*.json"))
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


def load_phenopacket(path: Path) -> Individual:
    from phenopackets import Phenopacket

    name = str(path)
    text = path.read_text(encoding="utf-8")
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(name, f"invalid JSON: {exc.msg} (column {exc.colno})",
                         line=exc.lineno) from None
    if not isinstance(document, dict):
        raise InputError(name, "a phenopacket must be a JSON object")
    try:
        message = json_format.ParseDict(document, Phenopacket())
    except json_format.ParseError as exc:
        raise InputError(name, f"not a valid Phenopacket v2: {exc}") from None
    if not message.id:
        raise InputError(name, "the phenopacket has no id", field="id")
    if not message.HasField("subject") or not message.subject.id:
        raise InputError(name, "the phenopacket has no subject.id (the VCF sample name)",
                         field="subject.id")
    if not message.HasField("meta_data"):
        raise InputError(name, "the phenopacket has no metaData (required by Phenopackets v2)",
                         field="metaData")
    subject = message.subject
    person = Individual(sample_id=subject.id, phenopacket=json.dumps(document, sort_keys=True))
    person.sex = _SEX.get(type(subject).DESCRIPTOR.fields_by_name["sex"].enum_type
                          .values_by_number[subject.sex].name, "unknown")
    if subject.HasField("time_at_last_encounter"):
        age = subject.time_at_last_encounter
        if age.HasField("age"):
            person.age_iso = age.age.iso8601duration
            try:
                person.age_years = iso8601_years(person.age_iso)
            except ValueError as exc:
                raise InputError(name, str(exc),
                                 field="subject.timeAtLastEncounter.age.iso8601duration") from None
    ontology = hpo()
    for index, feature in enumerate(message.phenotypic_features):
        term_id = feature.type.id
        if not term_id.startswith("HP:") or ontology.resolve(term_id) is None:
            raise InputError(name, f"{term_id!r} is not a term of the Human Phenotype Ontology "
                             f"({ontology.version})", field=f"phenotypicFeatures[{index}].type.id")
        resolved = ontology.resolve(term_id)
        assert resolved is not None
        target = person.excluded_phenotypes if feature.excluded else person.phenotypes
        target.append(resolved.id)
    for disease in message.diseases:
        if not disease.excluded and disease.term.id:
            person.diseases.append(disease.term.id)
    for measurement in message.measurements:
        if measurement.HasField("value") and measurement.value.HasField("quantity"):
            quantity = measurement.value.quantity
            person.measurements.append({
                "assay": measurement.assay.id,
                "value": quantity.value,
                "unit": quantity.unit.id,
            })
    return person
