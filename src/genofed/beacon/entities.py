"""Store rows -> Beacon v2 default-model records (individual, biosample, genomicVariation,
dataset, cohort)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pyarrow as pa

from genofed.beacon.variants import beacon_variant_type, variant_classes, variant_id
from genofed.ontology.hpo import hpo
from genofed.store.dataset import Dataset
from genofed.store.sites import normalize_contig

SEX_TERM = {
    "female": {"id": "NCIT:C16576", "label": "female"},
    "male": {"id": "NCIT:C20197", "label": "male"},
    "other": {"id": "NCIT:C17649", "label": "Other"},
    "unknown": {"id": "NCIT:C17998", "label": "Unknown"},
}
BLOOD = {"id": "UBERON:0000178", "label": "blood"}
REFERENCE_SAMPLE = {"id": "EFO:0009654", "label": "reference sample"}
_GRCH38_REFSEQ = {
    "1": "NC_000001.11", "2": "NC_000002.12", "3": "NC_000003.12", "4": "NC_000004.12",
    "5": "NC_000005.10", "6": "NC_000006.12", "7": "NC_000007.14", "8": "NC_000008.11",
    "9": "NC_000009.12", "10": "NC_000010.11", "11": "NC_000011.10", "12": "NC_000012.12",
    "13": "NC_000013.11", "14": "NC_000014.9", "15": "NC_000015.10", "16": "NC_000016.10",
    "17": "NC_000017.11", "18": "NC_000018.10", "19": "NC_000019.10", "20": "NC_000020.11",
    "21": "NC_000021.9", "22": "NC_000022.11", "X": "NC_000023.11", "Y": "NC_000024.10",
    "MT": "NC_012920.1",
}
_BASES_OK = set("ACGTUNRYSWKMBDHV-.")


def _time_element(element: dict[str, Any] | None) -> dict[str, Any] | None:
    """Phenopacket TimeElement -> Beacon timeElement (only ages are carried over)."""
    if not element:
        return None
    if "age" in element and isinstance(element["age"], dict):
        return {"iso8601duration": str(element["age"].get("iso8601duration", ""))}
    if "ontologyClass" in element:
        return dict(element["ontologyClass"])
    return None


def _term(term: dict[str, Any]) -> dict[str, Any]:
    out = {"id": str(term["id"])}
    label = term.get("label") or hpo().label(out["id"])
    if label:
        out["label"] = str(label)
    return out


def individual(row: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    packet: dict[str, Any] = json.loads(row["phenopacket"]) if row.get("phenopacket") else {}
    record: dict[str, Any] = {"id": row["sample_id"], "sex": SEX_TERM.get(row["sex"] or "unknown",
                                                                         SEX_TERM["unknown"])}
    features = []
    for feature in packet.get("phenotypicFeatures", []):
        item: dict[str, Any] = {"featureType": _term(feature["type"]),
                                "excluded": bool(feature.get("excluded", False))}
        onset = _time_element(feature.get("onset"))
        if onset:
            item["onset"] = onset
        features.append(item)
    if not packet:
        features = [{"featureType": _term({"id": t}), "excluded": False}
                    for t in row.get("phenotypes") or []]
    if features:
        record["phenotypicFeatures"] = features
    diseases = []
    for disease in packet.get("diseases", []):
        entry: dict[str, Any] = {"diseaseCode": _term(disease["term"])}
        onset = _time_element(disease.get("onset"))
        if onset:
            entry["ageOfOnset"] = onset
        diseases.append(entry)
    if not packet:
        diseases = [{"diseaseCode": {"id": d}} for d in row.get("diseases") or []]
    if diseases:
        record["diseases"] = diseases
    measures = []
    for m in packet.get("measurements", []):
        quantity = (m.get("value") or {}).get("quantity")
        if not quantity or "unit" not in quantity:
            continue
        measure: dict[str, Any] = {
            "assayCode": _term(m["assay"]),
            "measurementValue": {"value": float(quantity["value"]),
                                 "unit": _term(quantity["unit"])},
        }
        observed = _time_element(m.get("timeObserved"))
        if observed:
            measure["observationMoment"] = observed
        measures.append(measure)
    if measures:
        record["measures"] = measures
    info: dict[str, Any] = {"datasetId": dataset.id}
    if row.get("population"):
        info["population"] = row["population"]
    if row.get("age_iso"):
        info["ageAtLastEncounter"] = {"iso8601duration": row["age_iso"]}
    record["info"] = info
    return record


def biosample(row: dict[str, Any], dataset: Dataset) -> dict[str, Any]:
    """One biosample per individual: the sequenced sample (the VCF column), from blood."""
    return {
        "id": row["sample_id"],
        "individualId": row["sample_id"],
        "biosampleStatus": REFERENCE_SAMPLE,
        "sampleOriginType": BLOOD,
        "info": {"datasetId": dataset.id, "derivedFrom": "VCF sample column"},
    }


def sequence_location(assembly: str, contig: str, start0: int, end0: int) -> dict[str, Any]:
    name = normalize_contig(contig)
    refseq = _GRCH38_REFSEQ.get(name) if assembly.lower() in {"grch38", "hg38"} else None
    return {
        "type": "SequenceLocation",
        "sequence_id": f"refseq:{refseq}" if refseq else f"{assembly}:{name}",
        "interval": {"type": "SequenceInterval",
                     "start": {"type": "Number", "value": start0},
                     "end": {"type": "Number", "value": end0}},
    }


def _population_label(group: str) -> str:
    return group[4:] if group.startswith("pop_") else group


def group_members(dataset: Dataset) -> dict[str, np.ndarray]:
    """Per allele-count group (all, female, male, pop_<label>): which samples belong to it."""
    table = dataset.individuals
    sex = np.asarray(table.column("sex").to_pylist(), dtype=object)
    population = np.asarray(table.column("population").to_pylist(), dtype=object)
    members = {}
    for group in dataset.manifest.groups:
        if group == "all":
            members[group] = np.ones(len(sex), dtype=bool)
        elif group.startswith("pop_"):
            members[group] = population == group[4:]
        else:
            members[group] = sex == group
    return members


def genotype_counts(dataset: Dataset, rows: pa.Table) -> list[dict[str, dict[str, int]]]:
    """Per row: homozygous, heterozygous and hemizygous carriers of its allele in each group
    (gnomAD's and the GDI allele-frequency Beacon's counts)."""
    if rows.num_rows == 0:
        return []
    block = dataset.genotype_block(rows.column("variant_index").to_numpy())
    alleles = rows.column("allele_index").to_numpy()
    members = group_members(dataset)
    out = []
    for j, allele in enumerate(alleles):
        calls = block.calls[j]
        copies = (calls == allele).sum(axis=1)
        haploid = calls[:, 1] == -2
        kinds = {"alleleCountHomozygous": ~haploid & (copies == 2),
                 "alleleCountHeterozygous": ~haploid & (copies == 1),
                 "alleleCountHemizygous": haploid & (copies == 1)}
        out.append({group: {name: int((kind & inside).sum()) for name, kind in kinds.items()}
                    for group, inside in members.items()})
    return out


def frequencies(row: dict[str, Any], dataset: Dataset, base_url: str,
                genotypes: dict[str, dict[str, int]] | None = None) -> list[dict[str, Any]]:
    """Allele frequencies of one allele in each allele-count group (all, female, male, each
    population) as `frequencyInPopulations` (with genotype counts where given)."""
    items = []
    for group in dataset.manifest.groups:
        suffix = "" if group == "all" else f"_{group}"
        ac, an = row.get(f"ac{suffix}"), row.get(f"an{suffix}")
        if ac is None or not an:
            continue
        items.append({"population": _population_label(group), "alleleFrequency": ac / an,
                      "alleleCount": int(ac), "alleleNumber": int(an),
                      **(genotypes or {}).get(group, {})})
    if not items:
        return []
    return [{
        "source": f"genofed dataset {dataset.id}",
        "sourceReference": f"{base_url}/datasets/{dataset.id}",
        "version": f"{dataset.id} {dataset.version}",
        "frequencies": items,
    }]


def genomic_variations(rows: pa.Table, dataset: Dataset, base_url: str, *,
                       with_genotype_counts: bool = False) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    counts = genotype_counts(dataset, rows) if with_genotype_counts else None
    assembly = dataset.metadata.assembly_id
    plain = rows.to_pylist()
    if not plain:
        return []
    classes = variant_classes([r["ref"] for r in plain], [r["alt"] for r in plain])  # type: ignore[arg-type]
    for row, cls in zip(plain, classes, strict=True):
        contig = str(row["contig"])
        alt = row["alt"]
        alt_bases = alt if set(alt.upper()) <= _BASES_OK else "N"
        ref_bases = row["ref"] if set(row["ref"].upper()) <= _BASES_OK else "N"
        record: dict[str, Any] = {
            "variantInternalId": variant_id(assembly, contig, row["pos"], row["ref"], alt),
            "variation": {
                "variantType": beacon_variant_type(str(cls)),
                "referenceBases": ref_bases,
                "alternateBases": alt_bases,
                "location": sequence_location(assembly, contig, row["pos"] - 1, row["end"]),
            },
            "info": {"datasetId": dataset.id, "assemblyId": assembly, "vcfAlt": alt,
                     "alleleCount": int(row["ac"]), "alleleNumber": int(row["an"])},
        }
        if row.get("id") and row["id"] != ".":
            record["identifiers"] = {"variantAlternativeIds": [
                {"id": i if ":" in i else f"dbSNP:{i}"} for i in str(row["id"]).split(";")]}
        freq = frequencies(row, dataset, base_url, counts[len(records)] if counts else None)
        if freq:
            record["frequencyInPopulations"] = freq
        records.append(record)
    return records


def dataset_record(dataset: Dataset) -> dict[str, Any]:
    meta = dataset.metadata
    record: dict[str, Any] = {"id": dataset.id, "name": meta.name, "description": meta.description,
                              "version": meta.version}
    if meta.create_date_time:
        record["createDateTime"] = meta.create_date_time
    if meta.update_date_time:
        record["updateDateTime"] = meta.update_date_time
    if meta.external_url:
        record["externalUrl"] = meta.external_url
    if meta.data_use_conditions.duo_data_use:
        record["dataUseConditions"] = {"duoDataUse": [
            {"id": d.id, **({"label": d.label} if d.label else {}),
             "version": d.version or "unspecified",
             "modifiers": [{"id": m.id, **({"label": m.label} if m.label else {})}
                           for m in d.modifiers]}
            for d in meta.data_use_conditions.duo_data_use]}
    record["info"] = {
        "accessTier": meta.access_tier.value, "assemblyId": meta.assembly_id,
        "alleleFrequencies": meta.allele_frequencies.value,
        "population": meta.population, "keywords": meta.keywords,
        "storeVersion": dataset.version, "nIndividuals": dataset.manifest.n_samples,
        "nVariantRecords": dataset.manifest.n_records, "contigs": dataset.contigs,
    }
    return record


def cohort_record(dataset: Dataset) -> dict[str, Any]:
    """One cohort per dataset: the people whose data the dataset holds."""
    sexes = sorted(set(dataset.individuals.column("sex").cast(pa.string()).to_pylist()))
    criteria: dict[str, Any] = {"genders": [SEX_TERM.get(s, SEX_TERM["unknown"]) for s in sexes]}
    return {
        "id": dataset.id,
        "name": dataset.metadata.name,
        "cohortType": "study-defined",
        "cohortSize": dataset.manifest.n_samples,
        "inclusionCriteria": criteria,
        "info": {"datasetId": dataset.id, "population": dataset.metadata.population},
    }
