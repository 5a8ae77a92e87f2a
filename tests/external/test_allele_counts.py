"""AC and AN of every biallelic record equal bcftools' (`norm -m-` then `+fill-tags`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.edge_cases import KERNEL_LAYOUT, SITES_ONLY, WITH_CHR, WITHOUT_CHR, write_variants
from tests.support import HTSGET_DATA, Cohort, bcftools, genofed

pytestmark = pytest.mark.external


def bcftools_counts(path: Path, samples: list[str] | None = None) -> list[str]:
    """CHROM POS REF ALT AC AN rows as bcftools computes them (AC 0 when there is no ALT, AN 0
    when there are no samples: bcftools leaves both unset)."""
    view = ["view", "-s", ",".join(samples)] if samples else ["view"]
    rows = []
    import subprocess

    norm = subprocess.run(f"bcftools {' '.join(view)} {path} | bcftools norm -m- - 2>/dev/null "
                          "| bcftools +fill-tags -- -t AC,AN | bcftools query -f "
                          "'%CHROM\\t%POS\\t%REF\\t%ALT\\t%AC\\t%AN\\n'",
                          shell=True, capture_output=True, text=True, check=True).stdout
    for line in norm.splitlines():
        chrom, pos, ref, alt, ac, an = line.split("\t")
        rows.append("\t".join([chrom, pos, ref, alt, "0" if ac == "." else ac,
                                "0" if an == "." else an]))
    return rows


def genofed_counts(node: Path, dataset: str, region: str | None = None) -> list[str]:
    args: list[str | Path] = ["sites", node, "--dataset", dataset]
    if region:
        args += ["--region", region]
    result = genofed(*args, check=True)
    lines = result.stdout.splitlines()
    assert lines[0] == "CHROM\tPOS\tREF\tALT\tAC\tAN"
    return lines[1:]


SHARED_FILES = sorted([*HTSGET_DATA.glob("vcf/*.vcf.gz"), *HTSGET_DATA.glob("bcf/*.bcf")])


@pytest.mark.parametrize("path", SHARED_FILES, ids=lambda p: p.name)
def test_shared_test_files(node: Path, path: Path) -> None:
    genofed("ingest", node, "--dataset", "d", "--vcf", path, check=True)
    assert genofed_counts(node, "d") == bcftools_counts(path)


@pytest.mark.parametrize("text", [WITH_CHR, WITHOUT_CHR, KERNEL_LAYOUT, SITES_ONLY],
                         ids=["chr-prefixed-4.1", "bare-4.3", "kernel-layout", "sites-only"])
@pytest.mark.parametrize("form", ["vcf", "vcf.gz", "bcf"])
def test_real_world_edge_cases(node: Path, tmp_path: Path, text: str, form: str) -> None:
    files = write_variants(tmp_path / "in", "edge", text)
    genofed("ingest", node, "--dataset", "edge", "--vcf", files[form], check=True)
    assert genofed_counts(node, "edge") == bcftools_counts(files["vcf.gz"])


def test_simulated_cohort_overall_and_by_sex(ingested: Path, cohort: Cohort) -> None:
    ours = genofed_counts(ingested, cohort.dataset_id)
    assert len(ours) > 500
    assert ours == bcftools_counts(cohort.vcf)

    from genofed.store import NodeStore

    ds = NodeStore.open(ingested).dataset(cohort.dataset_id)
    for sex in ("female", "male"):
        members = ds.select_individuals(sex=sex)
        assert 20 < len(members) < 100
        theirs = [line.split("\t") for line in bcftools_counts(cohort.vcf, members)]
        assert [int(r[4]) for r in theirs] == ds.sites.column(f"ac_{sex}").to_pylist()
        assert [int(r[5]) for r in theirs] == ds.sites.column(f"an_{sex}").to_pylist()


def test_region_matches_bcftools_view_r(ingested: Path, cohort: Cohort) -> None:
    for region in ("20:100000-120000", "chr20:250001-250500", "20:1-1"):
        chrom, span = region.replace("chr", "").split(":")
        theirs = [r for r in bcftools_counts(cohort.vcf)
                  if int(r.split("\t")[1]) >= 0]  # all rows; filter with bcftools -r below
        regional = bcftools("view", "-H", "-r", f"{chrom}:{span}", cohort.vcf)
        positions = {line.split("\t")[1] for line in regional.splitlines()}
        expected = [r for r in theirs if r.split("\t")[1] in positions]
        assert genofed_counts(ingested, cohort.dataset_id, region) == expected
