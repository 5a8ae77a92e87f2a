"""Ingest's inputs besides the VCF: dataset metadata, Phenopackets, population labels, and the
fingerprint that tells a re-ingest of identical input from a new version. Every error names the
file, line and field at fault."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path

from genofed.errors import IngestError, InputError, MetadataError
from genofed.ingest.phenopackets import Individual, load_phenopackets
from genofed.ontology.hpo import hpo
from genofed.store import individuals as individuals_table
from genofed.store import layout
from genofed.store.metadata import DATASET_ID_PATTERN, DatasetMetadata, load_metadata

ASSEMBLIES = ("GRCh37", "GRCh38")


def load_dataset_metadata(dataset_id: str, path: Path | None,
                           assembly: str | None) -> DatasetMetadata:
    if not re.match(DATASET_ID_PATTERN, dataset_id):
        raise IngestError(f"dataset id {dataset_id!r} is not valid: use letters, digits, '.', "
                          "'_' and '-' (up to 128 characters)")
    if path is None:
        meta = DatasetMetadata.default_for(dataset_id)
    else:
        try:
            meta = load_metadata(path)
        except MetadataError as exc:
            raise InputError(str(path), str(exc).split(": ", 1)[1]) from None
        if meta.id != dataset_id:
            raise InputError(str(path), f"id is {meta.id!r} but --dataset is {dataset_id!r}; "
                             "they must agree", field="id")
    if assembly is not None:
        if assembly not in ASSEMBLIES:
            raise IngestError(f"assembly {assembly!r} is not one of {', '.join(ASSEMBLIES)}")
        meta = meta.model_copy(update={"assembly_id": assembly})
    return meta


def load_individuals(directory: Path | None, samples: Sequence[str],
                      vcf: Path) -> dict[str, Individual]:
    if directory is None:
        return {}
    people = {p.sample_id: p for p in load_phenopackets(directory)}
    in_vcf = set(samples)
    only_packets = sorted(set(people) - in_vcf)
    only_vcf = [s for s in samples if s not in people]
    if only_packets:
        raise InputError(str(directory), f"{len(only_packets)} phenopacket subject(s) are not "
                         f"samples of {vcf}: {', '.join(only_packets[:10])}"
                         f"{' ...' if len(only_packets) > 10 else ''}", field="subject.id")
    if only_vcf:
        raise InputError(str(vcf), f"{len(only_vcf)} VCF sample(s) have no phenopacket in "
                         f"{directory}: {', '.join(only_vcf[:10])}"
                         f"{' ...' if len(only_vcf) > 10 else ''}")
    return people


def load_populations(path: Path | None, samples: Sequence[str],
                      default: str | None) -> dict[str, str]:
    labels = dict.fromkeys(samples, default) if default else {}
    if path is None:
        return {k: v for k, v in labels.items() if v}
    known = set(samples)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.split("\t")[0] == "sample"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1]:
            raise InputError(str(path), "expected two tab-separated columns: sample, population",
                             line=number)
        if parts[0] not in known:
            raise InputError(str(path), f"sample {parts[0]!r} is not in the VCF", line=number)
        labels[parts[0]] = parts[1]
    return {k: v for k, v in labels.items() if v}


def fingerprint(vcf: Path, phenopackets: Path | None, meta: DatasetMetadata,
                 populations: dict[str, str], genes: Path | None) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"store-format={layout.STORE_FORMAT}\n".encode())
    with open(vcf, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    if phenopackets is not None:
        for path in sorted(phenopackets.glob("*.json")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(meta.to_json().encode())
    digest.update(json.dumps(populations, sort_keys=True).encode())
    if genes is not None:
        digest.update(b"genes\0" + genes.read_bytes())
    return digest.hexdigest()


def individual_rows(samples: Sequence[str], people: dict[str, Individual],
                    populations: dict[str, str]) -> dict[str, list[object]]:
    """The individuals table's columns: HPO terms as given and closed under is_a ancestors."""
    rows = individuals_table.empty_rows(samples)
    ontology = hpo() if people else None
    for i, sample in enumerate(samples):
        rows["population"][i] = populations.get(sample)
        person = people.get(sample)
        if person is None:
            continue
        rows["sex"][i] = person.sex
        rows["age_iso"][i] = person.age_iso
        rows["age_years"][i] = person.age_years
        rows["phenotypes"][i] = person.phenotypes
        rows["excluded_phenotypes"][i] = person.excluded_phenotypes
        assert ontology is not None
        rows["phenotype_closure"][i] = sorted(ontology.closure(person.phenotypes))
        rows["diseases"][i] = person.diseases
        rows["measurements"][i] = person.measurements
        rows["phenopacket"][i] = person.phenopacket
    return rows
