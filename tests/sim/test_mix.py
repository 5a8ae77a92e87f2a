"""genofed.sim: a cohort mixing populations of one simulated history, and single-population
cohorts written exactly as before mixes existed."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path

import msprime
import numpy as np
import pytest
import stdpopsim
import tskit

from genofed.sim import CohortSummary, read_populations, simulate_cohort
from genofed.store.metadata import load_metadata

MIX = {"CEU": 40, "YRI": 20}
MIX_SAMPLES = 60
MIX_LENGTH_MB = 0.1
#: Digests of single-population cohorts as genofed wrote them before population mixes (commit
#: 9061f4a), with these simulation libraries, re-pinned when dataset.json gained the
#: `alleleFrequencies` choice (its only change); the VCF is digested decompressed and its index
#: left out, so a zlib build does not matter. Other library versions simulate other data.
PINNED_VERSIONS = {"msprime": "1.4.4", "stdpopsim": "0.3.0", "tskit": "1.0.3"}
PINNED_CEU = "a516f30f368ae23c71bfd7392ba1e81979f2292b9db424ede98e17e4ac02a31e"
PINNED_YRI = "b6604c534b2f4d456c95530bbef4e69a9f71e2179e28ade34047daf83995c3df"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> CohortSummary:
    return simulate_cohort(tmp_path_factory.mktemp("mixed"), samples=MIX_SAMPLES, seed=9,
                           length_mb=MIX_LENGTH_MB, population=MIX)


def _content_digest(out_dir: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(out_dir.rglob("*")):
        if path.is_file() and path.suffix != ".tbi":
            data = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else \
                path.read_bytes()
            digest.update(str(path.relative_to(out_dir)).encode() + b"\0" + data + b"\0")
    return digest.hexdigest()


def _output_files(out_dir: Path) -> dict[str, bytes]:
    return {str(path.relative_to(out_dir)): path.read_bytes()
            for path in sorted(out_dir.rglob("*")) if path.is_file()}


def _heterozygous_calls(vcf: Path) -> np.ndarray:
    """Heterozygous calls per individual over the whole VCF."""
    with gzip.open(vcf, "rt", encoding="ascii") as handle:
        rows = [line.rstrip("\n").split("\t")[9:] for line in handle if not line.startswith("#")]
    return np.array([[call[0] != call[2] for call in row] for row in rows]).sum(axis=0)


def test_single_population_cohorts_are_unchanged(tmp_path: Path) -> None:
    installed = {"msprime": msprime.__version__, "stdpopsim": stdpopsim.__version__,
                 "tskit": tskit.__version__}
    if installed != PINNED_VERSIONS:
        pytest.skip(f"digests were pinned with {PINNED_VERSIONS}, not {installed}")
    ceu = simulate_cohort(tmp_path / "ceu", samples=30, seed=7, length_mb=0.1)
    yri = simulate_cohort(tmp_path / "yri", samples=24, seed=8, length_mb=0.08,
                          population="YRI", missing_rate=0.02, access_tier="public")
    assert _content_digest(ceu.out_dir) == PINNED_CEU
    assert _content_digest(yri.out_dir) == PINNED_YRI


def test_a_mix_of_one_population_is_that_population(tmp_path: Path) -> None:
    named = simulate_cohort(tmp_path / "named", samples=20, seed=4, length_mb=0.05,
                            population="CHB")
    mapped = simulate_cohort(tmp_path / "mapped", samples=20, seed=4, length_mb=0.05,
                             population={"CHB": 20})
    assert mapped.population == named.population == "CHB"
    assert _output_files(mapped.out_dir) == _output_files(named.out_dir)


def test_mixed_cohort_labels_each_sample_with_its_population(mixed: CohortSummary) -> None:
    labels = read_populations(mixed.populations)
    # msprime samples populations in the model's order (YRI, CEU, CHB), not the mapping's.
    assert list(labels.values()) == ["YRI"] * 20 + ["CEU"] * 40
    assert list(labels) == [f"SIM-YRI-CEU-9-S{number:05d}" for number in range(1, 61)]
    # The labels are the simulated ancestries: out of Africa lost diversity, so the YRI
    # individuals carry far more heterozygous sites than the CEU ones.
    heterozygous = _heterozygous_calls(mixed.vcf)
    is_yri = np.array([label == "YRI" for label in labels.values()])
    assert heterozygous[is_yri].mean() > 1.5 * heterozygous[~is_yri].mean()


def test_mixed_cohort_describes_its_mix(mixed: CohortSummary) -> None:
    assert mixed.population == "YRI+CEU" and mixed.dataset_id == "sim-yri-ceu-9"
    assert mixed.n_samples == MIX_SAMPLES
    truth = json.loads(mixed.truth.read_text(encoding="utf-8"))
    assert truth["population"] == "YRI+CEU"
    assert truth["simulation"]["individuals_per_population"] == {"YRI": 20, "CEU": 40}
    assert len(truth["samples"]) == MIX_SAMPLES  # traits planted over everyone
    metadata = load_metadata(mixed.dataset_metadata)
    assert metadata.population == "YRI+CEU"
    assert "YRI (20) and CEU (40) populations" in metadata.description
    assert {"YRI", "CEU"} <= set(metadata.keywords)
    with gzip.open(mixed.vcf, "rt", encoding="ascii") as handle:
        source = next(line for line in handle if line.startswith("##source="))
    assert "populations YRI 20, CEU 40" in source


def test_mixed_cohort_is_deterministic_whatever_the_mapping_order(
        mixed: CohortSummary, tmp_path: Path) -> None:
    again = simulate_cohort(tmp_path, samples=MIX_SAMPLES, seed=9, length_mb=MIX_LENGTH_MB,
                            population={"YRI": 20, "CEU": 40})
    assert _output_files(again.out_dir) == _output_files(mixed.out_dir)


@pytest.mark.parametrize(("population", "message"), [
    ({"CEU": 30, "FIN": 30}, "unknown population 'FIN'.*YRI, CEU, CHB"),
    ({"CEU": 30, "YRI": 20}, r"sum to 50, but samples is 60"),
    ({"CEU": 60, "YRI": 0}, "YRI needs a positive number"),
    ({"CEU": 59.5, "YRI": 0.5}, "CEU needs a positive number"),
    ({}, "at least one population"),
])
def test_bad_population_mixes_are_rejected(population: dict[str, int], message: str,
                                           tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=message):
        simulate_cohort(tmp_path, samples=60, seed=1, length_mb=0.05, population=population)
    assert not any(tmp_path.iterdir())
