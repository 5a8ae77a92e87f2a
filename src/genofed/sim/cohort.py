"""A complete synthetic cohort on disk, as a national node would receive one.

`simulate_cohort` writes, for one seed and always byte for byte the same:

* `cohort.vcf.gz` (+ `.tbi`): phased genotypes from stdpopsim/msprime, record-aligned BGZF;
* `phenopackets/{sample}.json`: one GA4GH Phenopacket v2 per individual;
* `truth.json`: the planted traits, their causal variants and every individual's trait values;
* `dataset.json`: dataset metadata (genofed.store.metadata) with DUO data-use terms;
* `populations.tsv`: each sample's population label (a cohort may mix populations of the model:
  then all of them come from one simulated history and share its variants);
* `genes.bed`: a synthetic gene table for the simulated region (for `ingest --genes`; the names
  are made up, not a real annotation).

Independent random streams (genotypes, traits, clinical details) are spawned from the seed, so a
change to how one is drawn does not reshuffle the others.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

import msprime
import numpy as np
import stdpopsim

from genofed.sim import genotypes, traits, vocabulary
from genofed.sim.clinical import ClinicalVocabulary, Individual, phenopacket_json
from genofed.sim.vocabulary import Term
from genofed.store.metadata import (
    DATASET_ID_PATTERN,
    AccessTier,
    DatasetMetadata,
    DataUseConditions,
    DuoDataUse,
    OntologyTerm,
)

VCF_NAME = "cohort.vcf.gz"
INDEX_NAME = VCF_NAME + ".tbi"
PHENOPACKETS_DIR = "phenopackets"
TRUTH_NAME = "truth.json"
DATASET_NAME = "dataset.json"
POPULATIONS_NAME = "populations.tsv"
GENES_NAME = "genes.bed"
#: Synthetic genes: one of GENE_LENGTH bp every GENE_SPACING bp of the simulated region.
GENE_SPACING, GENE_LENGTH = 100_000, 30_000

_SAMPLE_PREFIX = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$")
#: Metadata dates are derived from the seed (never the clock) so reruns are byte-identical.
_EPOCH = date(2024, 1, 1)
_ADULT_AGES = (18, 85)
#: Idiopathic generalised epilepsies start in childhood or early adulthood.
_ONSET_AGES = (5, 30)
_MAX_BACKGROUND_PHENOTYPES = 3


@dataclass(frozen=True, slots=True)
class CohortSummary:
    """What `simulate_cohort` wrote and the numbers a caller reports."""

    out_dir: Path
    vcf: Path
    vcf_index: Path
    phenopackets_dir: Path
    truth: Path
    dataset_metadata: Path
    populations: Path
    dataset_id: str
    #: The populations sampled, in the model's order, joined by "+": "CEU", "YRI+CEU".
    population: str
    seed: int
    n_samples: int
    #: VCF records (sites; multi-allelic sites are one record).
    n_variants: int
    n_cases: int
    length_bp: int


def simulate_cohort(out_dir: Path, *, samples: int, seed: int, length_mb: float = 1.0,
                    population: str | Mapping[str, int] = "CEU", dataset_id: str | None = None,
                    sample_prefix: str | None = None, access_tier: str = "controlled",
                    threads: int = 2, progress: Callable[[str, float], None] | None = None,
                    overwrite: bool = False, missing_rate: float = 0.0) -> CohortSummary:
    """Simulate `samples` diploid individuals of `population` over chr20:1-length_mb Mb.

    `population` names one population of the model (YRI, CEU or CHB), or maps several to how
    many individuals each contributes (the counts summing to `samples`), e.g. {"CEU": 480,
    "YRI": 120}: one simulated history, so the populations share variants, with the traits
    planted over everyone. Individuals come in the model's population order (YRI, CEU, CHB);
    `populations.tsv` says whose is whose.

    `progress(stage, fraction)` is called as work advances; the stages, in order, are
    "simulate", "vcf", "index", "traits", "phenopackets" and "metadata". Existing output files
    are an error unless `overwrite` is set, in which case only the files this function writes
    (and stale packets in `phenopackets/`) are replaced. `missing_rate`: the share of calls
    written missing (`./.`), at random (the planted traits follow the full genotypes).
    """
    if not 0.0 <= missing_rate < 0.5:
        raise ValueError(f"missing_rate must be at least 0 and below 0.5, not {missing_rate}")
    counts = _individuals_per_population(population, samples)
    label = genotypes.population_label(counts)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, not {seed!r}")
    if samples < 10:
        raise ValueError(f"samples must be at least 10 to plant traits on common variants, "
                         f"not {samples}")
    length_bp = round(length_mb * 1_000_000)
    max_length = genotypes.contig_length_limit()
    if not 0 < length_bp <= max_length:
        raise ValueError(f"length_mb must be above 0 and at most {max_length / 1e6:.3f} "
                         f"(the length of {genotypes.CHROMOSOME}), not {length_mb}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    tier = _access_tier(access_tier)
    dataset_id = (dataset_id if dataset_id is not None
                  else f"sim-{label.lower().replace('+', '-')}-{seed}")
    if not re.match(DATASET_ID_PATTERN, dataset_id):
        raise ValueError(f"dataset id {dataset_id!r} must match {DATASET_ID_PATTERN}")
    sample_prefix = sample_prefix if sample_prefix is not None else f"{dataset_id.upper()}-S"
    if not _SAMPLE_PREFIX.match(sample_prefix):
        raise ValueError(f"sample prefix {sample_prefix!r} may use only letters, digits, '.', "
                         "'_' and '-', and must start with a letter or digit")

    out_dir = Path(out_dir)
    summary = CohortSummary(
        out_dir=out_dir, vcf=out_dir / VCF_NAME, vcf_index=out_dir / INDEX_NAME,
        phenopackets_dir=out_dir / PHENOPACKETS_DIR, truth=out_dir / TRUTH_NAME,
        dataset_metadata=out_dir / DATASET_NAME, populations=out_dir / POPULATIONS_NAME,
        dataset_id=dataset_id, population=label, seed=seed, n_samples=samples,
        n_variants=0, n_cases=0, length_bp=length_bp)
    _prepare_output(summary, overwrite=overwrite)

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(stage, fraction)

    # A fourth stream for missing calls leaves the first three (and so every cohort simulated
    # without missing calls) exactly as they were.
    ancestry_stream, trait_stream, clinical_stream, missing_stream = \
        np.random.SeedSequence(seed).spawn(4)
    sample_names = [f"{sample_prefix}{number:05d}" for number in range(1, samples + 1)]

    report("simulate", 0.0)
    # msprime wants a seed in 1..2**32-1; derive one rather than pass the user's seed verbatim.
    msprime_seed = int(ancestry_stream.generate_state(1)[0] % (2**32 - 2)) + 1
    ancestry = genotypes.simulate_ancestry(individuals_per_population=counts,
                                           length_bp=length_bp, seed=msprime_seed)
    report("simulate", 1.0)

    sampled = (f"population {label}" if len(counts) == 1 else
               "populations " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    source = (f"genofed sim: stdpopsim {stdpopsim.__version__} {genotypes.SPECIES_ID} "
              f"{genotypes.MODEL_ID} {sampled}, msprime {msprime.__version__}, seed {seed}")
    sites = genotypes.write_vcf(ancestry, summary.vcf, sample_names=sample_names, source=source,
                                threads=threads, progress=progress, missing_rate=missing_rate,
                                missing_rng=np.random.default_rng(missing_stream))

    report("traits", 0.0)
    planted = traits.plant_traits(ancestry.tree_sequence, sites,
                                  genotypes.individual_sample_nodes(ancestry.tree_sequence),
                                  np.random.default_rng(trait_stream))
    report("traits", 1.0)

    created = created_date(seed)
    individuals = _clinical_details(sample_names, planted, np.random.default_rng(clinical_stream))
    terms = ClinicalVocabulary.load()
    summary.phenopackets_dir.mkdir(exist_ok=True)
    step = max(1, samples // 100)
    for number, individual in enumerate(individuals, start=1):
        text = phenopacket_json(individual, packet_id=f"{dataset_id}.{individual.sample_id}",
                                terms=terms, high_ldl_threshold=traits.HIGH_LDL_MG_DL,
                                created=created)
        _write_text(summary.phenopackets_dir / f"{individual.sample_id}.json", text)
        if number % step == 0 or number == samples:
            report("phenopackets", number / samples)

    report("metadata", 0.0)
    summary = replace(summary, n_variants=sites.records, n_cases=int(planted.is_case.sum()))
    _write_text(summary.truth, json.dumps(
        _truth(summary, ancestry.provenance(), planted, individuals, terms), indent=2) + "\n")
    _write_text(summary.dataset_metadata,
                _dataset_metadata(summary, tier, created, counts).to_json() + "\n")
    write_populations(summary.populations, zip(
        sample_names, genotypes.individual_populations(ancestry.tree_sequence), strict=True))
    _write_text(out_dir / GENES_NAME, synthetic_gene_table(genotypes.VCF_CHROM, length_bp))
    report("metadata", 1.0)
    return summary


def _individuals_per_population(population: str | Mapping[str, int],
                                 samples: int) -> dict[str, int]:
    """`population` as counts in the model's order, checked against the model and `samples`."""
    known = genotypes.population_names()
    counts = {population: samples} if isinstance(population, str) else dict(population)
    if not counts:
        raise ValueError("population must name at least one population")
    for name, count in counts.items():
        if name not in known:
            raise ValueError(f"unknown population {name!r}; {genotypes.MODEL_ID} has "
                             f"{', '.join(known)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"population {name} needs a positive number of individuals, "
                             f"not {count!r}")
    if sum(counts.values()) != samples:
        listed = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ValueError(f"the population counts ({listed}) sum to {sum(counts.values())}, "
                         f"but samples is {samples}; make them agree")
    return genotypes.in_model_order(counts)


def created_date(seed: int) -> date:
    """The date metadata and packets carry: derived from the seed, never the clock."""
    return _EPOCH + timedelta(days=seed % 366)


def write_populations(path: Path, labels: Iterable[tuple[str, str]]) -> None:
    """`populations.tsv`: a header, then one `sample<TAB>population` line per individual."""
    _write_text(path, "sample\tpopulation\n" + "".join(
        f"{sample}\t{population}\n" for sample, population in labels))


def read_populations(path: Path) -> dict[str, str]:
    """A `populations.tsv` as {sample: population}, in file order."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    if not lines or lines[0] != "sample\tpopulation":
        raise ValueError(f"{path}: expected the header 'sample<TAB>population'")
    labels: dict[str, str] = {}
    for number, line in enumerate(lines[1:], start=2):
        sample, separator, population = line.partition("\t")
        if not separator or not sample or not population or sample in labels:
            raise ValueError(f"{path}, line {number}: expected a new sample, a tab and its "
                             f"population, not {line!r}")
        labels[sample] = population
    return labels


def synthetic_gene_table(contig: str, length_bp: int) -> str:
    """BED lines `contig start end SIMG0001|SIMGENE:1` for genes laid out evenly."""
    lines = ["# synthetic genes for a genofed simulated cohort (not a real annotation)\n"]
    for number, start in enumerate(range(20_000, length_bp - GENE_LENGTH, GENE_SPACING), 1):
        lines.append(f"{contig}\t{start}\t{start + GENE_LENGTH}\tSIMG{number:04d}|"
                     f"SIMGENE:{number}\n")
    return "".join(lines)


def _access_tier(value: str) -> AccessTier:
    try:
        return AccessTier(value)
    except ValueError:
        valid = ", ".join(tier.value for tier in AccessTier)
        raise ValueError(f"unknown access tier {value!r}; use one of {valid}") from None


def _prepare_output(summary: CohortSummary, *, overwrite: bool) -> None:
    files = [summary.vcf, summary.vcf_index, summary.truth, summary.dataset_metadata,
             summary.populations, summary.out_dir / GENES_NAME]
    packets = (sorted(summary.phenopackets_dir.glob("*.json"))
               if summary.phenopackets_dir.is_dir() else [])
    existing = [path for path in files if path.exists()] + packets
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} already exists; choose an empty output directory "
                              "or overwrite")
    for path in existing:
        path.unlink()
    summary.out_dir.mkdir(parents=True, exist_ok=True)


def _write_text(path: Path, text: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as handle:
        handle.write(text)


def _clinical_details(sample_names: list[str], planted: traits.PlantedTraits,
                      rng: np.random.Generator) -> list[Individual]:
    """Sex, age, onset and background complaints: all independent of the genotypes."""
    count = len(sample_names)
    background = [vocabulary.hpo_term(term_id)
                  for term_id in vocabulary.BACKGROUND_PHENOTYPE_IDS]
    is_female = rng.random(count) < 0.5
    ages = rng.integers(_ADULT_AGES[0], _ADULT_AGES[1] + 1, count)
    # Drawn for everyone, used for cases only, so case status does not shift later draws.
    onset_fraction = rng.random(count)
    background_counts = rng.integers(0, _MAX_BACKGROUND_PHENOTYPES + 1, count)
    individuals = []
    for index, name in enumerate(sample_names):
        age = int(ages[index])
        latest_onset = min(age, _ONSET_AGES[1])
        onset = _ONSET_AGES[0] + int(onset_fraction[index] * (latest_onset - _ONSET_AGES[0] + 1))
        picks = sorted(rng.choice(len(background), int(background_counts[index]), replace=False))
        individuals.append(Individual(
            sample_id=name,
            sex="FEMALE" if is_female[index] else "MALE",
            age_years=age,
            ldl_mg_dl=float(planted.ldl_mg_dl[index]),
            case_onset_age_years=onset if planted.is_case[index] else None,
            background_phenotypes=tuple(background[pick] for pick in picks),
        ))
    return individuals


def _truth(summary: CohortSummary, provenance: dict[str, object],
           planted: traits.PlantedTraits, individuals: list[Individual],
           terms: ClinicalVocabulary) -> dict[str, object]:
    seizure = vocabulary.hpo_term(vocabulary.CASE_PHENOTYPE_ANCESTOR_ID)
    return {
        "generator": "genofed sim",
        "seed": summary.seed,
        "dataset_id": summary.dataset_id,
        "population": summary.population,
        "n_samples": summary.n_samples,
        "n_variants": summary.n_variants,
        "simulation": provenance,
        "traits": {
            "quantitative": {
                "name": "LDL cholesterol",
                "assay": vocabulary.LDL_ASSAY.as_dict(),
                "unit": vocabulary.MG_PER_DL.as_dict(),
                "model": "additive in ALT dosage; value = mean + sd * (g + e), "
                         "Var(g) = heritability in this cohort, e ~ N(0, 1 - heritability); "
                         "rounded to 0.1",
                "heritability": traits.QUANTITATIVE_HERITABILITY,
                "mean": traits.LDL_MEAN_MG_DL,
                "sd": traits.LDL_SD_MG_DL,
                "effect_unit": "mg/dL per ALT allele",
                "derived_phenotype": {**terms.high_ldl_phenotype.as_dict(),
                                      "recorded_when_value_at_least": traits.HIGH_LDL_MG_DL},
                "causal_variants": [v.as_dict() for v in planted.quantitative_causal],
            },
            "binary": {
                "name": terms.case_phenotype.label,
                "phenotype": terms.case_phenotype.as_dict(),
                "phenotype_ancestor": seizure.as_dict(),
                "disease": terms.case_disease.as_dict(),
                "model": "liability threshold: liability = g + e, Var(g) = heritability in "
                         "this cohort, e ~ N(0, 1 - heritability); case when liability > "
                         "threshold",
                "heritability": traits.BINARY_HERITABILITY,
                "prevalence": traits.BINARY_PREVALENCE,
                "liability_threshold": round(planted.liability_threshold, 6),
                "observed_prevalence": round(float(planted.is_case.mean()), 6),
                "n_cases": summary.n_cases,
                "effect_unit": "liability standard deviations per ALT allele",
                "causal_variants": [v.as_dict() for v in planted.binary_causal],
            },
        },
        "samples": {
            individual.sample_id: {
                "quantitative": individual.ldl_mg_dl,
                "binary": int(individual.case_onset_age_years is not None),
                "sex": individual.sex,
                "age": individual.age_years,
            }
            for individual in individuals
        },
    }


def _dataset_metadata(summary: CohortSummary, tier: AccessTier, created: date,
                      counts: Mapping[str, int], origin: str = "") -> DatasetMetadata:
    """The dataset's metadata; `origin`, when given, is a sentence on where its individuals came
    from (a share of a larger simulation), placed after the simulation's description."""
    def term(source: Term) -> OntologyTerm:
        return OntologyTerm(id=source.id, label=source.label)

    if tier is AccessTier.CONTROLLED:
        data_use = DuoDataUse(id=vocabulary.DUO_HEALTH_MEDICAL_BIOMEDICAL.id,
                              label=vocabulary.DUO_HEALTH_MEDICAL_BIOMEDICAL.label,
                              modifiers=[term(vocabulary.DUO_PUBLICATION_REQUIRED)])
    else:
        data_use = DuoDataUse(id=vocabulary.DUO_GENERAL_RESEARCH_USE.id,
                              label=vocabulary.DUO_GENERAL_RESEARCH_USE.label)
    region = f"chr{genotypes.VCF_CHROM}:1-{summary.length_bp}"
    names = list(counts)
    sampled = (f"{summary.population} population" if len(names) == 1 else
               ", ".join(f"{name} ({counts[name]})" for name in names[:-1])
               + f" and {names[-1]} ({counts[names[-1]]}) populations")
    return DatasetMetadata(
        id=summary.dataset_id,
        name=f"Simulated {summary.population} cohort ({summary.n_samples} individuals)",
        description=(
            f"Synthetic data, no real people: {summary.n_samples} diploid individuals of the "
            f"{sampled} simulated with stdpopsim "
            f"({genotypes.SPECIES_ID} {genotypes.MODEL_ID}, msprime engine) over GRCh38 {region} "
            f"({summary.n_variants} variant sites), seed {summary.seed}. "
            f"{origin + ' ' if origin else ''}Phenopackets carry a "
            "planted quantitative trait (LDL cholesterol) and a planted binary trait "
            "(bilateral tonic-clonic seizures / idiopathic generalized epilepsy)."),
        version="1",
        assembly_id="GRCh38",
        access_tier=tier,
        data_use_conditions=DataUseConditions(duo_data_use=[data_use]),
        population=summary.population,
        keywords=["synthetic", "simulation", *names, "GWAS"],
        create_date_time=f"{created.isoformat()}T00:00:00Z",
        update_date_time=f"{created.isoformat()}T00:00:00Z",
    )
