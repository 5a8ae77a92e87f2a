"""GA4GH Phenopackets v2 for simulated individuals.

Each packet is assembled as the JSON mapping Phenopackets defines, parsed into the `phenopackets`
protobuf message (so anything the schema rejects fails here, not at ingest) and printed back with
protobuf's canonical JSON printer, which is deterministic and uses the camelCase field names.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import phenopackets
from google.protobuf import json_format

from genofed.sim import vocabulary
from genofed.sim.vocabulary import Resource, Term


@dataclass(frozen=True, slots=True)
class Individual:
    """What a packet says about one simulated person."""

    sample_id: str
    sex: str  # "MALE" or "FEMALE" (the Phenopackets Sex enum)
    age_years: int
    ldl_mg_dl: float
    #: Age at onset of the seizure disorder; None for individuals who are not cases.
    case_onset_age_years: int | None
    background_phenotypes: tuple[Term, ...]


@dataclass(frozen=True, slots=True)
class ClinicalVocabulary:
    """The terms and ontology resources every packet of a cohort draws from."""

    case_phenotype: Term
    case_disease: Term
    high_ldl_phenotype: Term
    hpo: Resource
    omim: Resource

    @classmethod
    def load(cls) -> ClinicalVocabulary:
        return cls(
            case_phenotype=vocabulary.hpo_term(vocabulary.CASE_PHENOTYPE_ID),
            case_disease=vocabulary.omim_disease(vocabulary.CASE_DISEASE_ID),
            high_ldl_phenotype=vocabulary.hpo_term(vocabulary.HIGH_LDL_PHENOTYPE_ID),
            hpo=vocabulary.hpo_resource(),
            omim=vocabulary.omim_resource(),
        )


def _age(years: int) -> dict[str, object]:
    return {"age": {"iso8601duration": f"P{years}Y"}}


def phenopacket_json(individual: Individual, *, packet_id: str, terms: ClinicalVocabulary,
                     high_ldl_threshold: float, created: date) -> str:
    """One individual's phenopacket as canonical Phenopackets JSON (ending in a newline)."""
    onset = individual.case_onset_age_years
    features: list[dict[str, object]] = []
    if onset is not None:
        features.append({"type": terms.case_phenotype.as_dict(), "onset": _age(onset)})
    if individual.ldl_mg_dl >= high_ldl_threshold:
        features.append({"type": terms.high_ldl_phenotype.as_dict()})
    features.extend({"type": term.as_dict()} for term in individual.background_phenotypes)

    resources = [terms.hpo]
    packet: dict[str, object] = {
        "id": packet_id,
        "subject": {
            "id": individual.sample_id,
            "timeAtLastEncounter": _age(individual.age_years),
            "sex": individual.sex,
        },
        "phenotypicFeatures": features,
        "measurements": [{
            "assay": vocabulary.LDL_ASSAY.as_dict(),
            "value": {"quantity": {"unit": vocabulary.MG_PER_DL.as_dict(),
                                   "value": individual.ldl_mg_dl}},
            "timeObserved": _age(individual.age_years),
        }],
    }
    if onset is not None:
        packet["diseases"] = [{"term": terms.case_disease.as_dict(), "onset": _age(onset)}]
        resources.append(terms.omim)
    resources += [vocabulary.LOINC_RESOURCE, vocabulary.UCUM_RESOURCE]
    packet["metaData"] = {
        "created": f"{created.isoformat()}T00:00:00Z",
        "createdBy": "genofed sim",
        "resources": [resource.as_dict() for resource in resources],
        "phenopacketSchemaVersion": "2.0",
    }
    return _canonical_json(json_format.ParseDict(packet, phenopackets.Phenopacket()))


def relabelled_phenopacket_json(text: str, *, packet_id: str) -> str:
    """A packet written by `phenopacket_json`, with a new packet id and otherwise the same."""
    message = json_format.Parse(text, phenopackets.Phenopacket())
    message.id = packet_id
    return _canonical_json(message)


def _canonical_json(message: phenopackets.Phenopacket) -> str:
    return str(json_format.MessageToJson(message, indent=2)) + "\n"
