"""genofed.sim.split_cohort: datasets cut from one simulated cohort hold exactly its columns, the
same records, and packets, truth and metadata of their own."""

from __future__ import annotations

import gzip
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genofed.formats.bgzf import EOF_BLOCK, inflate_block, scan_blocks
from genofed.sim import CohortSummary, Share, read_populations, simulate_cohort, split_cohort
from genofed.store.metadata import AccessTier, AlleleFrequencyRelease, load_metadata
from tests.support import require_tool

LDL_ASSAY = "LOINC:2089-1"
CASE_PHENOTYPE = "HP:0002069"


@dataclass(frozen=True)
class Split:
    pooled: CohortSummary
    shares: list[Share]
    summaries: list[CohortSummary]
    root: Path


@pytest.fixture(scope="module")
def split(tmp_path_factory: pytest.TempPathFactory) -> Split:
    root = tmp_path_factory.mktemp("split")
    pooled = simulate_cohort(root / "pooled", samples=60, seed=9, length_mb=0.1,
                             population={"CEU": 40, "YRI": 20}, missing_rate=0.02)
    names = list(read_populations(pooled.populations))
    shares = [Share("mixed-share", "public", tuple(names[:25]),  # YRI 20 and CEU 5
                    public_frequencies=True),
              Share("ceu-share", "controlled", tuple(names[25:50])),
              # in another order than the pooled one, and five individuals in no share
              Share("small-share", "registered", tuple(reversed(names[50:55])))]
    return Split(pooled, shares, split_cohort(pooled, root / "shares", shares), root)


def _lines(vcf: Path) -> list[str]:
    with gzip.open(vcf, "rt", encoding="ascii") as handle:
        return handle.read().splitlines()


def _columns(vcf: Path) -> tuple[list[str], list[list[str]]]:
    """Sample names, and every record's fields."""
    lines = _lines(vcf)
    header = next(line for line in lines if line.startswith("#CHROM"))
    return header.split("\t")[9:], [line.split("\t") for line in lines
                                    if not line.startswith("#")]


def _packet(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _truth(summary: CohortSummary) -> dict[str, Any]:
    return json.loads(summary.truth.read_text(encoding="utf-8"))


def test_each_share_holds_exactly_its_columns_of_the_pooled_vcf(split: Split) -> None:
    pooled_names, pooled_records = _columns(split.pooled.vcf)
    for share, summary in zip(split.shares, split.summaries, strict=True):
        names, records = _columns(summary.vcf)
        assert names == list(share.samples)
        assert len(records) == len(pooled_records) == summary.n_variants
        columns = [pooled_names.index(name) + 9 for name in names]
        for record, pooled_record in zip(records, pooled_records, strict=True):
            assert record[:9] == pooled_record[:9]
            assert record[9:] == [pooled_record[column] for column in columns]


def test_shares_match_bcftools_view_of_the_same_samples(split: Split) -> None:
    require_tool("bcftools")
    query = "%CHROM\t%POS\t%REF\t%ALT\t%QUAL\t%FILTER[\t%GT]\n"
    for share, summary in zip(split.shares, split.summaries, strict=True):
        view = subprocess.run(["bcftools", "view", "-s", ",".join(share.samples),
                               str(split.pooled.vcf)], capture_output=True, check=True)
        expected = subprocess.run(["bcftools", "query", "-f", query, "-"], input=view.stdout,
                                  capture_output=True, check=True).stdout
        found = subprocess.run(["bcftools", "query", "-f", query, str(summary.vcf)],
                               capture_output=True, check=True)
        assert found.stderr == b""
        assert found.stdout == expected
        listed = subprocess.run(["bcftools", "query", "-l", str(summary.vcf)],
                                capture_output=True, text=True, check=True).stdout.split()
        assert listed == list(share.samples)


def test_shares_keep_every_record_even_where_they_carry_no_alt(split: Split) -> None:
    sites = [[record[:5] for record in _columns(summary.vcf)[1]] for summary in split.summaries]
    assert sites[0] == sites[1] == sites[2] and len(sites[0]) > 300
    _, small_records = _columns(split.summaries[2].vcf)
    carry_no_alt = [record for record in small_records
                    if all(call in ("0|0", "./.") for call in record[9:])]
    assert carry_no_alt  # five individuals do not carry every variant of sixty
    assert any("./." in record[9:] for record in small_records)  # missing calls stay missing


def test_share_vcfs_are_record_aligned_and_indexed(split: Split) -> None:
    require_tool("tabix")
    for summary in split.summaries:
        data = summary.vcf.read_bytes()
        blocks = scan_blocks(data, name=str(summary.vcf))
        assert data[blocks[-1].offset:] == EOF_BLOCK
        assert all(inflate_block(data, block).endswith(b"\n") for block in blocks[:-1])
        assert summary.vcf_index.is_file()
        start, end = 20_000, 60_000
        expected = [line for line in _lines(summary.vcf) if not line.startswith("#")
                    and start <= int(line.split("\t")[1]) <= end]
        found = subprocess.run(["tabix", str(summary.vcf), f"20:{start}-{end}"],
                               capture_output=True, text=True, check=True).stdout.splitlines()
        assert found == expected and len(expected) > 10


def test_share_phenopackets_are_the_pooled_ones_relabelled(split: Split) -> None:
    for share, summary in zip(split.shares, split.summaries, strict=True):
        truth = _truth(summary)
        paths = sorted(summary.phenopackets_dir.glob("*.json"))
        assert [path.stem for path in paths] == sorted(share.samples)
        for sample in share.samples:
            packet = _packet(summary.phenopackets_dir / f"{sample}.json")
            original = _packet(split.pooled.phenopackets_dir / f"{sample}.json")
            assert original["id"] == f"{split.pooled.dataset_id}.{sample}"
            assert packet.pop("id") == f"{share.dataset_id}.{sample}"
            original.pop("id")
            assert packet == original
            # What a federated GWAS needs of everyone: the LDL measurement and case status.
            [ldl] = [m for m in packet["measurements"] if m["assay"]["id"] == LDL_ASSAY]
            assert ldl["value"]["quantity"]["value"] == truth["samples"][sample]["quantitative"]
            features = {feature["type"]["id"] for feature in packet.get("phenotypicFeatures", [])}
            assert (CASE_PHENOTYPE in features) == (truth["samples"][sample]["binary"] == 1)
        assert summary.n_cases > 0


def test_share_truth_metadata_and_populations(split: Split) -> None:
    pooled_truth = _truth(split.pooled)
    labels = read_populations(split.pooled.populations)
    for share, summary in zip(split.shares, split.summaries, strict=True):
        truth = _truth(summary)
        assert list(truth["samples"]) == list(share.samples)
        assert truth["samples"] == {s: pooled_truth["samples"][s] for s in share.samples}
        assert truth["traits"] == pooled_truth["traits"]  # the same planted causal variants
        assert truth["split_from"]["dataset_id"] == split.pooled.dataset_id
        assert truth["dataset_id"] == summary.dataset_id == share.dataset_id
        cases = sum(value["binary"] for value in truth["samples"].values())
        assert truth["n_cases"] == summary.n_cases == cases
        assert summary.n_samples == len(share.samples) and summary.seed == split.pooled.seed

        metadata = load_metadata(summary.dataset_metadata)
        assert metadata.id == share.dataset_id
        assert metadata.access_tier is AccessTier(share.access_tier)
        assert metadata.allele_frequencies is (AlleleFrequencyRelease.PUBLIC
                                               if share.public_frequencies else
                                               AlleleFrequencyRelease.WITHHELD)
        assert f"{len(share.samples)} diploid individuals" in metadata.description
        assert split.pooled.dataset_id in metadata.description
        assert (summary.out_dir / "genes.bed").read_bytes() == \
            (split.pooled.out_dir / "genes.bed").read_bytes()
        own = read_populations(summary.populations)
        assert own == {sample: labels[sample] for sample in share.samples}
        assert list(own) == list(share.samples)
    assert [s.population for s in split.summaries] == ["YRI+CEU", "CEU", "CEU"]
    assert load_metadata(split.summaries[1].dataset_metadata).population == "CEU"


def test_splitting_again_writes_identical_bytes(split: Split, tmp_path: Path) -> None:
    again = split_cohort(split.pooled, tmp_path, split.shares)
    for first, second in zip(split.summaries, again, strict=True):
        files = sorted(path.relative_to(first.out_dir) for path in first.out_dir.rglob("*")
                       if path.is_file())
        assert files == sorted(path.relative_to(second.out_dir)
                               for path in second.out_dir.rglob("*") if path.is_file())
        for name in files:
            assert (first.out_dir / name).read_bytes() == (second.out_dir / name).read_bytes()
    with pytest.raises(FileExistsError, match="overwrite"):
        split_cohort(split.pooled, tmp_path, split.shares)
    split_cohort(split.pooled, tmp_path, split.shares, overwrite=True)


#: Shares as (dataset id, tier, samples), a number standing for the pooled sample at that position.
ShareSpec = tuple[str, str, tuple[int | str, ...]]


@pytest.mark.parametrize(("specs", "message"), [
    ([("a", "public", ("NOBODY",))], "does not have, e.g. 'NOBODY'"),
    ([("a", "public", (0, 1)), ("b", "public", (1, 2))],
     "is in both a and b; shares must not overlap"),
    ([("a", "public", (0, 0))], "more than once"),
    ([("a", "public", (0,)), ("a", "public", (1,))], "two shares are named a"),
    ([("a", "secret", (0,))], "unknown access tier"),
    ([("bad id", "public", (0,))], "must match"),
    ([("a", "public", ())], "one or more sample names"),
    ([], "no shares"),
])
def test_bad_shares_are_rejected_before_anything_is_written(
        split: Split, tmp_path: Path, specs: list[ShareSpec], message: str) -> None:
    names = list(read_populations(split.pooled.populations))
    shares = [Share(dataset_id, tier, tuple(names[s] if isinstance(s, int) else s
                                            for s in samples))
              for dataset_id, tier, samples in specs]
    with pytest.raises(ValueError, match=message):
        split_cohort(split.pooled, tmp_path / "out", shares)
    assert not (tmp_path / "out").exists()
