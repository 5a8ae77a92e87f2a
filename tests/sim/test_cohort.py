"""genofed.sim: simulated cohorts are deterministic, standard-conformant and carry their traits."""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import phenopackets
import pytest
from google.protobuf import json_format

from genofed.formats.bgzf import EOF_BLOCK, inflate_block, scan_blocks
from genofed.sim import CohortSummary, simulate_cohort, vocabulary
from genofed.store.metadata import AccessTier, load_metadata

DUO_CSV = Path("/work/shared/standards/duo/duo.csv")
SMALL_SAMPLES = 60
SMALL_LENGTH_MB = 0.5


def _small_cohort(out_dir: Path, seed: int, *, dataset_id: str | None = None,
                  sample_prefix: str | None = None) -> CohortSummary:
    return simulate_cohort(out_dir, samples=SMALL_SAMPLES, length_mb=SMALL_LENGTH_MB, seed=seed,
                           dataset_id=dataset_id, sample_prefix=sample_prefix)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    return _small_cohort(tmp_path_factory.mktemp("first"), seed=11)


@pytest.fixture(scope="module")
def larger_cohort(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    """Enough individuals for the planted effects to be estimated back."""
    return simulate_cohort(tmp_path_factory.mktemp("larger"), samples=600, seed=5,
                           length_mb=0.3, population="YRI")


def _output_files(summary: CohortSummary) -> dict[str, bytes]:
    return {str(path.relative_to(summary.out_dir)): path.read_bytes()
            for path in sorted(summary.out_dir.rglob("*")) if path.is_file()}


def _vcf_lines(summary: CohortSummary) -> list[str]:
    with gzip.open(summary.vcf, "rt", encoding="ascii") as handle:
        return handle.read().splitlines()


def _records(summary: CohortSummary) -> list[list[str]]:
    return [line.split("\t") for line in _vcf_lines(summary) if not line.startswith("#")]


def _sample_names(summary: CohortSummary) -> list[str]:
    header = next(line for line in _vcf_lines(summary) if line.startswith("#CHROM"))
    return header.split("\t")[9:]


def _truth(summary: CohortSummary) -> dict[str, Any]:
    return json.loads(summary.truth.read_text(encoding="utf-8"))


def _alt_dosages(record: list[str]) -> np.ndarray:
    """ALT copies per individual at a biallelic record."""
    calls = np.array([call.split("|") for call in record[9:]], dtype=int)
    return calls.sum(axis=1)


def test_same_seed_writes_identical_bytes(cohort: CohortSummary, tmp_path: Path) -> None:
    again = _small_cohort(tmp_path / "again", seed=11)
    first, second = _output_files(cohort), _output_files(again)
    assert sorted(first) == sorted(second)
    assert len([name for name in first if name.startswith("phenopackets/")]) == SMALL_SAMPLES
    for name, content in first.items():
        assert second[name] == content, name


def test_different_seed_writes_different_cohort(cohort: CohortSummary, tmp_path: Path) -> None:
    other = _small_cohort(tmp_path / "other", seed=12, dataset_id=cohort.dataset_id,
                          sample_prefix="SIM-CEU-11-S")
    assert other.vcf.read_bytes() != cohort.vcf.read_bytes()
    assert _truth(other)["traits"] != _truth(cohort)["traits"]
    packet = "phenopackets/SIM-CEU-11-S00001.json"
    assert _output_files(other)[packet] != _output_files(cohort)[packet]


def test_bcftools_reads_every_record_and_sample(cohort: CohortSummary) -> None:
    view = subprocess.run(["bcftools", "view", "-H", str(cohort.vcf)], capture_output=True,
                          text=True, check=True)
    assert view.stderr == ""
    assert len(view.stdout.splitlines()) == cohort.n_variants > 1000
    samples = subprocess.run(["bcftools", "query", "-l", str(cohort.vcf)], capture_output=True,
                             text=True, check=True).stdout.split()
    assert samples == [f"SIM-CEU-11-S{number:05d}" for number in range(1, 61)]
    assert cohort.n_samples == len(samples)


def test_vcf_header_and_records_follow_vcf_4_2(cohort: CohortSummary) -> None:
    lines = _vcf_lines(cohort)
    assert lines[0] == "##fileformat=VCFv4.2"
    assert "##contig=<ID=20,length=64444167,assembly=GRCh38>" in lines
    assert any(line.startswith("##FORMAT=<ID=GT,") for line in lines)
    records = _records(cohort)
    positions = [int(record[1]) for record in records]
    assert positions[0] >= 1 and positions[-1] <= 500_000
    assert all(a < b for a, b in itertools.pairwise(positions))  # no duplicates
    genotype = re.compile(r"^\d\|\d$")
    for record in records:
        assert record[0] == "20" and record[8] == "GT" and len(record) == 9 + 60
        assert record[3] in "ACGT" and len(record[3]) == 1
        assert all(alt in "ACGT" and alt != record[3] for alt in record[4].split(","))
        assert all(genotype.match(call) for call in record[9:])


def test_tabix_region_query_matches_records(cohort: CohortSummary) -> None:
    assert cohort.vcf_index.is_file()
    start, end = 200_000, 260_000
    expected = ["\t".join(record) for record in _records(cohort)
                if start <= int(record[1]) <= end]
    found = subprocess.run(["tabix", str(cohort.vcf), f"20:{start}-{end}"], capture_output=True,
                           text=True, check=True).stdout.splitlines()
    assert found == expected and len(expected) > 10


def test_every_bgzf_block_ends_on_a_line_boundary(cohort: CohortSummary) -> None:
    data = cohort.vcf.read_bytes()
    blocks = scan_blocks(data, name=str(cohort.vcf))
    assert data[blocks[-1].offset:] == EOF_BLOCK
    payloads = [inflate_block(data, block) for block in blocks[:-1]]
    assert len(payloads) > 1
    assert all(payload.endswith(b"\n") for payload in payloads)
    assert b"".join(payloads) == gzip.decompress(data)


def test_phenopackets_parse_and_describe_the_vcf_samples(cohort: CohortSummary) -> None:
    truth = _truth(cohort)
    subjects = []
    sexes = set()
    for path in sorted(cohort.phenopackets_dir.glob("*.json")):
        text = path.read_text(encoding="utf-8")
        assert '"metaData"' in text and '"meta_data"' not in text  # protobuf's camelCase JSON
        packet = json_format.Parse(text, phenopackets.Phenopacket())
        sample = packet.subject.id
        subjects.append(sample)
        assert path.name == f"{sample}.json"
        sexes.add(phenopackets.Sex.Name(packet.subject.sex))
        assert re.match(r"^P\d+Y$", packet.subject.time_at_last_encounter.age.iso8601duration)
        for feature in packet.phenotypic_features:
            assert feature.type.label == vocabulary.hpo_term(feature.type.id).label
        [measurement] = packet.measurements
        assert measurement.assay.id == "LOINC:2089-1"
        assert measurement.value.quantity.unit.id == "UCUM:mg/dL"
        assert measurement.value.quantity.value == truth["samples"][sample]["quantitative"]
        is_case = truth["samples"][sample]["binary"] == 1
        feature_ids = {feature.type.id for feature in packet.phenotypic_features}
        assert ("HP:0002069" in feature_ids) == is_case
        assert [disease.term.id for disease in packet.diseases] == (
            ["OMIM:616685"] if is_case else [])
        assert packet.meta_data.created_by == "genofed sim"
        assert packet.meta_data.phenopacket_schema_version == "2.0"
        prefixes = {resource.namespace_prefix for resource in packet.meta_data.resources}
        assert {"HP", "LOINC", "UCUM"} <= prefixes and ("OMIM" in prefixes) == is_case
    assert subjects == _sample_names(cohort)
    assert sexes == {"MALE", "FEMALE"}


def test_case_phenotype_has_an_ancestor_to_expand_from() -> None:
    assert vocabulary.CASE_PHENOTYPE_ANCESTOR_ID in vocabulary.hpo_parents(
        vocabulary.CASE_PHENOTYPE_ID)
    assert vocabulary.hpo_term("HP:0001250").label == "Seizure"
    assert vocabulary.hpo_term("HP:0002069").label == "Bilateral tonic-clonic seizure"
    for term_id in vocabulary.BACKGROUND_PHENOTYPE_IDS:
        assert vocabulary.hpo_term(term_id).label


def test_truth_causal_variants_are_common_vcf_records(cohort: CohortSummary) -> None:
    records = {(record[0], int(record[1])): record for record in _records(cohort)}
    traits = _truth(cohort)["traits"]
    seen = set()
    for trait in ("quantitative", "binary"):
        for variant in traits[trait]["causal_variants"]:
            record = records[(variant["chrom"], variant["pos"])]
            assert (record[3], record[4]) == (variant["ref"], variant["alt"])
            frequency = _alt_dosages(record).mean() / 2
            assert frequency == pytest.approx(variant["alt_allele_frequency"], abs=1e-6)
            assert 0.05 <= frequency <= 0.95
            seen.add(variant["pos"])
    assert len(seen) == 9  # 5 + 4, no variant drives both traits


def test_binary_trait_prevalence_and_truth_samples(cohort: CohortSummary) -> None:
    truth = _truth(cohort)
    values = truth["samples"]
    assert list(values) == _sample_names(cohort)
    cases = sum(value["binary"] for value in values.values())
    assert cases == cohort.n_cases == truth["traits"]["binary"]["n_cases"]
    assert 0.12 <= cases / cohort.n_samples <= 0.40
    assert truth["traits"]["binary"]["prevalence"] == 0.25
    assert truth["traits"]["quantitative"]["heritability"] == 0.4


def test_planted_effects_can_be_estimated_back(larger_cohort: CohortSummary) -> None:
    records = {int(record[1]): record for record in _records(larger_cohort)}
    truth = _truth(larger_cohort)
    samples = _sample_names(larger_cohort)
    quantitative = truth["traits"]["quantitative"]["causal_variants"]
    dosages = np.column_stack([_alt_dosages(records[v["pos"]]) for v in quantitative])
    ldl = np.array([truth["samples"][sample]["quantitative"] for sample in samples])
    design = np.column_stack([np.ones(len(ldl)), dosages])
    coefficients, *_ = np.linalg.lstsq(design, ldl, rcond=None)
    for estimate, variant in zip(coefficients[1:], quantitative, strict=True):
        assert abs(estimate - variant["effect"]) < 0.35 * abs(variant["effect"])
    explained = 1 - np.var(ldl - design @ coefficients) / np.var(ldl)
    assert 0.3 <= explained <= 0.5  # heritability 0.4

    binary = truth["traits"]["binary"]["causal_variants"]
    score = sum(_alt_dosages(records[v["pos"]]) * v["effect"] for v in binary)
    is_case = np.array([truth["samples"][sample]["binary"] == 1 for sample in samples])
    assert 0.2 <= is_case.mean() <= 0.3
    # Cases sit higher on the genetic liability, by well over its standard error.
    gap = score[is_case].mean() - score[~is_case].mean()
    assert gap > 5 * score.std() / np.sqrt(is_case.sum())


def test_dataset_metadata_loads_with_real_duo_terms(cohort: CohortSummary,
                                                    tmp_path: Path) -> None:
    metadata = load_metadata(cohort.dataset_metadata)
    assert metadata.id == cohort.dataset_id == "sim-ceu-11"
    assert metadata.access_tier is AccessTier.CONTROLLED
    assert metadata.population == "CEU" and metadata.assembly_id == "GRCh38"
    assert "60" in metadata.description and "OutOfAfrica_3G09" in metadata.description
    [controlled_use] = metadata.data_use_conditions.duo_data_use
    assert controlled_use.id == "DUO:0000006"
    assert [modifier.id for modifier in controlled_use.modifiers] == ["DUO:0000019"]

    public = simulate_cohort(tmp_path / "public", samples=20, seed=3, length_mb=0.2,
                             population="CHB", access_tier="public")
    public_metadata = load_metadata(public.dataset_metadata)
    assert public_metadata.id == "sim-chb-3" and public_metadata.access_tier is AccessTier.PUBLIC
    [public_use] = public_metadata.data_use_conditions.duo_data_use
    assert public_use.id == "DUO:0000042" and not public_use.modifiers

    if not DUO_CSV.is_file():
        pytest.skip(f"{DUO_CSV} (DUO snapshot) is not available")
    with DUO_CSV.open(encoding="utf-8", newline="") as handle:
        duo_labels = {row["id"]: row["label"] for row in csv.DictReader(handle)}
    for term in (controlled_use, *controlled_use.modifiers, public_use):
        assert duo_labels[term.id] == term.label


def test_populations_tsv_lists_every_sample(cohort: CohortSummary) -> None:
    lines = cohort.populations.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "sample\tpopulation"
    assert lines[1:] == [f"{sample}\tCEU" for sample in _sample_names(cohort)]


def test_unknown_population_is_rejected_naming_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="YRI, CEU, CHB"):
        simulate_cohort(tmp_path, samples=20, seed=1, population="FIN")
    assert not any(tmp_path.iterdir())


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="access tier"):
        simulate_cohort(tmp_path, samples=20, seed=1, access_tier="secret")
    with pytest.raises(ValueError, match="length_mb"):
        simulate_cohort(tmp_path, samples=20, seed=1, length_mb=70)
    with pytest.raises(ValueError, match="sample prefix"):
        simulate_cohort(tmp_path, samples=20, seed=1, sample_prefix="has space")


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    first = simulate_cohort(tmp_path, samples=20, seed=2, length_mb=0.2)
    before = _output_files(first)
    with pytest.raises(FileExistsError, match="overwrite"):
        simulate_cohort(tmp_path, samples=20, seed=2, length_mb=0.2)
    simulate_cohort(tmp_path, samples=12, seed=2, length_mb=0.2, overwrite=True)
    assert len(list(first.phenopackets_dir.glob("*.json"))) == 12  # stale packets removed
    simulate_cohort(tmp_path, samples=20, seed=2, length_mb=0.2, overwrite=True)
    assert _output_files(first) == before


def test_progress_reports_each_stage_in_order(tmp_path: Path) -> None:
    calls: list[tuple[str, float]] = []
    simulate_cohort(tmp_path, samples=20, seed=4, length_mb=0.2,
                    progress=lambda stage, fraction: calls.append((stage, fraction)))
    stages = list(dict.fromkeys(stage for stage, _ in calls))
    assert stages == ["simulate", "vcf", "index", "traits", "phenopackets", "metadata"]
    assert all(0.0 <= fraction <= 1.0 for _, fraction in calls)
    for stage in stages:
        assert [fraction for name, fraction in calls if name == stage][-1] == 1.0
