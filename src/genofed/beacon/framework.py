"""Framework (informational) endpoints: info, service-info, map, configuration, entry types and
filtering terms."""

from __future__ import annotations

import functools
import json
from collections import Counter
from typing import Any

import pyarrow as pa

from genofed import __version__
from genofed.beacon.entities import SEX_TERM
from genofed.beacon.request import API_VERSION
from genofed.beacon.responses import SCHEMAS, beacon_id, informational_meta
from genofed.ontology.hpo import hpo
from genofed.store.node import NodeStore

SPEC = f"Beacon {API_VERSION}"
_MODEL = ("https://raw.githubusercontent.com/ga4gh-beacon/beacon-v2/main/models/json/"
          "beacon-v2-default-model")

#: entry-type id -> (path, name, ontology term, schema folder)
ENTRY_TYPES: dict[str, tuple[str, str, dict[str, str], str]] = {
    "genomicVariation": ("g_variants", "Genomic variation",
                         {"id": "ENSGLOSSARY:0000092", "label": "Variant"}, "genomicVariations"),
    "individual": ("individuals", "Individual", {"id": "NCIT:C25190", "label": "Person"},
                   "individuals"),
    "biosample": ("biosamples", "Biosample", {"id": "NCIT:C70699", "label": "Biospecimen"},
                  "biosamples"),
    "dataset": ("datasets", "Dataset", {"id": "NCIT:C47824", "label": "Data set"}, "datasets"),
    "cohort": ("cohorts", "Cohort", {"id": "NCIT:C61512", "label": "Cohort"}, "cohorts"),
}

#: entry type -> {related entry type: path suffix after /{id}/}
RELATED: dict[str, dict[str, str]] = {
    "genomicVariation": {"individual": "individuals", "biosample": "biosamples"},
    "individual": {"genomicVariation": "g_variants", "biosample": "biosamples"},
    "biosample": {"genomicVariation": "g_variants"},
    "dataset": {"individual": "individuals", "genomicVariation": "g_variants",
                "biosample": "biosamples"},
    "cohort": {"individual": "individuals"},
}


def _organization(store: NodeStore) -> dict[str, Any]:
    config = store.config
    return {"id": f"genofed-{config.node_id}", "name": f"genofed node {config.node_id} "
            f"({config.country})", "info": {"country": config.country}}


def info(store: NodeStore) -> dict[str, Any]:
    config = store.config
    return {
        "meta": informational_meta(config.node_id),
        "response": {
            "id": beacon_id(config.node_id),
            "name": f"genofed Beacon of node {config.node_id}",
            "apiVersion": API_VERSION,
            "environment": "dev",
            "organization": _organization(store),
            "version": __version__,
            "createDateTime": config.created,
            "info": {"datasets": store.dataset_ids(), "country": config.country},
        },
    }


def service_info(store: NodeStore, base_url: str) -> dict[str, Any]:
    config = store.config
    return {
        "id": beacon_id(config.node_id),
        "name": f"genofed Beacon of node {config.node_id}",
        "type": {"group": "org.ga4gh", "artifact": "beacon", "version": API_VERSION},
        "description": "GA4GH Beacon v2 over a genofed node store",
        "organization": {"name": _organization(store)["name"], "url": base_url},
        "version": __version__,
        "environment": "dev",
        "createdAt": config.created,
    }


def beacon_map(store: NodeStore, base_url: str) -> dict[str, Any]:
    sets: dict[str, Any] = {}
    for entity, (path, _name, _term, folder) in ENTRY_TYPES.items():
        root = f"{base_url}/{path}"
        sets[entity] = {
            "entryType": entity,
            "openAPIEndpointsDefinition": f"{_MODEL}/{folder}/endpoints.json",
            "rootUrl": root,
            "singleEntryUrl": f"{root}/{{id}}",
            "endpoints": {related: {"returnedEntryType": related,
                                    "url": f"{root}/{{id}}/{suffix}"}
                          for related, suffix in RELATED[entity].items()},
        }
    return {"meta": informational_meta(store.config.node_id),
            "response": {"$schema": "beaconMapSchema.json", "endpointSets": sets}}


def _entry_types() -> dict[str, Any]:
    out = {}
    for entity, (_path, name, term, folder) in ENTRY_TYPES.items():
        entry: dict[str, Any] = {
            "id": entity, "name": name, "ontologyTermForThisType": term,
            "partOfSpecification": SPEC,
            "defaultSchema": {"id": SCHEMAS[entity], "name": f"Default schema for {name}",
                              "referenceToSchemaDefinition":
                                  f"{_MODEL}/{folder}/defaultSchema.json",
                              "schemaVersion": API_VERSION},
            "nonFilteredQueriesAllowed": True,
        }
        if entity in {"dataset", "cohort"}:
            entry["aCollectionOf"] = [{"id": "individual", "name": "Individuals"}]
        out[entity] = entry
    return out


def configuration(store: NodeStore) -> dict[str, Any]:
    return {"meta": informational_meta(store.config.node_id),
            "response": {"$schema": "beaconConfigurationSchema.json",
                         "maturityAttributes": {"productionStatus": "DEV"},
                         "securityAttributes": {"defaultGranularity": "boolean",
                                                "securityLevels": ["PUBLIC", "REGISTERED",
                                                                   "CONTROLLED"]},
                         "entryTypes": _entry_types()}}


def entry_types(store: NodeStore) -> dict[str, Any]:
    return {"meta": informational_meta(store.config.node_id),
            "response": {"entryTypes": _entry_types()}}


@functools.lru_cache(maxsize=16)
def _terms_for(versions: tuple[tuple[str, str], ...], store_root: str) -> list[dict[str, Any]]:
    store = NodeStore.open(store_root)
    hpo_terms: Counter[str] = Counter()
    diseases: dict[str, str | None] = {}
    sexes: set[str] = set()
    assays: dict[str, str | None] = {}
    any_age = False
    for dataset_id, _version in versions:
        table = store.dataset(dataset_id).individuals
        for recorded in table.column("phenotypes").to_pylist():
            hpo_terms.update(recorded)
        sexes.update(table.column("sex").cast(pa.string()).to_pylist())
        any_age |= table.column("age_years").null_count < table.num_rows
        for packet_text, ids in zip(table.column("phenopacket").to_pylist(),
                                    table.column("diseases").to_pylist(), strict=True):
            packet = json.loads(packet_text) if packet_text else {}
            labels = {d["term"]["id"]: d["term"].get("label") for d in packet.get("diseases", [])}
            for disease in ids:
                diseases.setdefault(disease, labels.get(disease))
            for m in packet.get("measurements", []):
                assays.setdefault(m["assay"]["id"], m["assay"].get("label"))
    ontology = hpo()
    terms: list[dict[str, Any]] = []
    for term in sorted(hpo_terms):
        entry = {"type": "ontology", "id": term, "scopes": ["individual"]}
        label = ontology.label(term)
        if label:
            entry["label"] = label
        terms.append(entry)
    for disease, label in sorted(diseases.items()):
        terms.append({"type": "ontology", "id": disease, "scopes": ["individual"],
                      **({"label": label} if label else {})})
    for sex in sorted(sexes):
        sex_term = SEX_TERM.get(sex)
        if sex_term and sex in {"female", "male", "unknown"}:
            terms.append({"type": "ontology", "id": sex_term["id"], "label": sex_term["label"],
                          "scopes": ["individual"]})
    if any_age:
        terms.append({"type": "alphanumeric", "id": "age", "label": "age at last encounter "
                      "(ISO 8601 duration, e.g. P40Y; operators = < > <= >= !)",
                      "scopes": ["individual"]})
    for assay, label in sorted(assays.items()):
        terms.append({"type": "alphanumeric", "id": assay, "scopes": ["individual"],
                      **({"label": label} if label else {})})
    return terms


def filtering_terms(store: NodeStore) -> dict[str, Any]:
    versions = tuple((d.id, d.version) for d in store.datasets())
    terms = _terms_for(versions, str(store.root))
    prefixes = {t["id"].split(":", 1)[0] for t in terms if ":" in t["id"]}
    resources = [r for r in (
        {"id": "hp", "name": "Human Phenotype Ontology", "nameSpacePrefix": "HP",
         "iriPrefix": "http://purl.obolibrary.org/obo/HP_", "url":
         "http://purl.obolibrary.org/obo/hp.owl", "version": hpo().version},
        {"id": "ncit", "name": "NCI Thesaurus", "nameSpacePrefix": "NCIT",
         "iriPrefix": "http://purl.obolibrary.org/obo/NCIT_",
         "url": "http://purl.obolibrary.org/obo/ncit.owl"},
        {"id": "omim", "name": "Online Mendelian Inheritance in Man", "nameSpacePrefix": "OMIM",
         "iriPrefix": "https://omim.org/entry/", "url": "https://www.omim.org"},
        {"id": "loinc", "name": "LOINC", "nameSpacePrefix": "LOINC",
         "iriPrefix": "https://loinc.org/", "url": "https://loinc.org"},
    ) if r["nameSpacePrefix"] in prefixes]
    return {"meta": informational_meta(store.config.node_id),
            "response": {"filteringTerms": terms, "resources": resources}}
