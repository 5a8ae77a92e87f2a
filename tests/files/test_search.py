"""The search layer: a slice holds exactly the records `bcftools view -r` / `samtools view
REGION` return on the source file, for random regions over files that stress it (long
deletions, INFO/END, records longer than a block, re-encoded layouts), and is a valid file."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest

from genofed.files.search import InlinePiece, Region, SlicePlan, plan_slice
from genofed.store import NodeStore
from genofed.store.originals import ArchivedFile
from tests.files.conftest import HtsgetNode
from tests.support import HTSGET_DATA

BAM = HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam"
CRAM = HTSGET_DATA / "cram" / "htsnexus_test_NA12878.cram"


#: Slices read from the store wherever it keeps the files: read by byte ranges from S3 too.
pytestmark = pytest.mark.parametrize("htsget_node", ["local", "s3"], indirect=True)


def archived(node: HtsgetNode, dataset: str, name: str, file_format: str) -> ArchivedFile:
    store = NodeStore.open(node.node_dir)
    version = store.dataset(dataset)
    entry = next(e for e in version.files.files if (e.name, e.format) == (name, file_format))
    return store.open_file(version, entry)


def assemble(plan: SlicePlan) -> bytes:
    return b"".join(p.data if isinstance(p, InlinePiece) else plan.file.data.read(p.start,
                                                                                   p.stop)
                    for p in plan.pieces)


def _region_text(region: Region) -> str:
    if region.start is None and region.end is None:
        return region.reference_name
    return f"{region.reference_name}:{(region.start or 0) + 1}-" + (
        str(region.end) if region.end is not None else "")


def _tool_output(command: list[str]) -> bytes:
    return subprocess.run(command, capture_output=True, check=True).stdout


def _random_regions(rng: random.Random, contigs: list[str], span: int, n: int) -> list[Region]:
    regions = []
    for _ in range(n):
        start = rng.randint(0, span)
        regions.append(Region(rng.choice(contigs), start,
                              start + rng.choice([1, 2, 50, 2_000, 40_000, 400_000])))
    return regions


@pytest.mark.parametrize(("name", "file_format"), [("synthetic", "VCF"), ("synthetic", "BCF"),
                                                   ("cohort", "VCF")])
def test_variant_slices_hold_exactly_bcftools_records(htsget_node: HtsgetNode, tmp_path: Path,
                                                      name: str, file_format: str) -> None:
    file = archived(htsget_node, "ds-plain", name, file_format)
    source = {"synthetic": {"VCF": htsget_node.synthetic_vcf, "BCF": htsget_node.synthetic_bcf},
              "cohort": {"VCF": htsget_node.cohort_vcf}}[name][file_format]
    rng = random.Random(f"{name}{file_format}")
    contigs = ["20"] if name == "cohort" else ["1", "2", "X"]
    regions = [*_random_regions(rng, contigs, 200_000 if name == "cohort" else 400_000, 14),
               Region(contigs[-1]), Region(contigs[0], 150_000, None), Region(contigs[0], 0, 1)]
    sliced = tmp_path / f"slice{file.file_format.suffix}"
    for region in regions:
        sliced.write_bytes(assemble(plan_slice(file, [region])))
        assert (_tool_output(["bcftools", "view", "-H", str(sliced)])
                == _tool_output(["bcftools", "view", "-H", "-r", _region_text(region),
                                 str(source)])), region
    # several regions at once: records in file order, each once
    several = [Region("1", 1_000, 90_000), Region("1", 50_000, 120_000), Region("X", 5, 9_000)] \
        if name == "synthetic" else [Region("20", 100, 5_000), Region("20", 30_000, 60_000)]
    sliced.write_bytes(assemble(plan_slice(file, several)))
    assert (_tool_output(["bcftools", "view", "-H", str(sliced)])
            == _tool_output(["bcftools", "view", "-H", "-r",
                             ",".join(_region_text(r) for r in several), str(source)]))


def test_read_slices_hold_exactly_samtools_records(htsget_node: HtsgetNode,
                                                   tmp_path: Path) -> None:
    file = archived(htsget_node, "ds-plain", "htsnexus_test_NA12878", "BAM")
    rng = random.Random(11)
    regions = [Region("11", 4_999_975, 5_000_100), Region("20"), Region("11", 0, 1_000),
               *(Region(c, s, s + rng.choice([1, 100, 5_000, 60_000]))
                 for c, s in ((rng.choice(["11", "20"]), rng.randint(4_990_000, 6_100_000))
                              for _ in range(12)))]
    sliced = tmp_path / "slice.bam"
    for region in regions:
        sliced.write_bytes(assemble(plan_slice(file, [region])))
        assert (_tool_output(["samtools", "view", str(sliced)])
                == _tool_output(["samtools", "view", str(BAM), _region_text(region)])), region
    # unplaced unmapped reads ('*'), and the whole file
    sliced.write_bytes(assemble(plan_slice(file, [Region("*")])))
    unplaced = _tool_output(["samtools", "view", str(sliced)])
    assert unplaced and unplaced == _tool_output(["samtools", "view", str(BAM), "*"])
    assert assemble(plan_slice(file, None)).endswith(BAM.read_bytes()[-28:])
    sliced.write_bytes(assemble(plan_slice(file, None)))
    assert _tool_output(["samtools", "view", str(sliced)]) == _tool_output(
        ["samtools", "view", str(BAM)])


def test_cram_slices_are_whole_containers(htsget_node: HtsgetNode, tmp_path: Path) -> None:
    file = archived(htsget_node, "ds-plain", "htsnexus_test_NA12878", "CRAM")
    sliced = tmp_path / "slice.cram"
    for region in (Region("11", 5_000_000, 5_050_000), Region("20", 6_000_000, 6_000_100)):
        sliced.write_bytes(assemble(plan_slice(file, [region])))
        subprocess.run(["samtools", "index", str(sliced)], check=True)
        text = _region_text(region)
        assert (_tool_output(["samtools", "view", str(sliced), text])
                == _tool_output(["samtools", "view", str(CRAM), text]))
    header = assemble(plan_slice(file, None, header_only=True))
    sliced.write_bytes(header)
    assert _tool_output(["samtools", "view", "--no-PG", "-H", str(sliced)]) == _tool_output(
        ["samtools", "view", "--no-PG", "-H", str(CRAM)])
    assert _tool_output(["samtools", "view", str(sliced)]) == b""


def test_header_only_slices(htsget_node: HtsgetNode, tmp_path: Path) -> None:
    for name, file_format, source in [("synthetic", "BCF", htsget_node.synthetic_bcf),
                                      ("cohort", "VCF", htsget_node.cohort_vcf)]:
        plan = plan_slice(archived(htsget_node, "ds-plain", name, file_format), None,
                          header_only=True)
        sliced = tmp_path / f"header.{file_format.lower()}"
        sliced.write_bytes(assemble(plan))
        assert (_tool_output(["bcftools", "view", "--no-version", str(sliced)])
                == _tool_output(["bcftools", "view", "--no-version", "-h", str(source)]))
