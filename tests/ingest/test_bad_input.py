"""Bad input: a non-zero exit, a message naming the file and line or field, the store unchanged."""

from __future__ import annotations

import gzip
import hashlib
import json
import shutil
from pathlib import Path

import pytest

from tests.support import Cohort, genofed


def snapshot(node: Path) -> dict[str, str]:
    """Every file under the node with a hash of its content (symlinks by target)."""
    state = {}
    for path in sorted(node.rglob("*")):
        key = str(path.relative_to(node))
        if path.is_symlink():
            state[key] = "-> " + str(path.readlink())
        elif path.is_file() and path.name != ".lock":
            state[key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return state


@pytest.fixture
def populated(node: Path, cohort: Cohort) -> Path:
    """A node that already serves the cohort (so 'unchanged' means something)."""
    genofed("ingest", node, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
            "--phenopackets", cohort.phenopackets, "--metadata", cohort.metadata, check=True)
    return node


def ingest_fails(node: Path, *args: str | Path) -> str:
    before = snapshot(node)
    result = genofed("ingest", node, *args)
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert snapshot(node) == before, "a failed ingest changed the store"
    return " ".join(result.stderr.split())  # unwrap the terminal's line breaks


def vcf_lines(cohort: Cohort) -> list[str]:
    with gzip.open(cohort.vcf, "rt") as handle:
        return handle.read().splitlines(keepends=True)


def test_truncated_gzip(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    data = cohort.vcf.read_bytes()
    bad = tmp_path / "truncated.vcf.gz"
    bad.write_bytes(data[: len(data) // 2])
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", bad)
    assert str(bad) in message and "truncated" in message


def test_malformed_header(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    lines = vcf_lines(cohort)
    chrom = next(i for i, line in enumerate(lines) if line.startswith("#CHROM"))
    lines[chrom] = lines[chrom].replace("\tREF\t", "\tREFERENCE\t")
    bad = tmp_path / "header.vcf"
    bad.write_text("".join(lines))
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", bad)
    assert f"{bad}, line {chrom + 1}" in message and "malformed header" in message


def test_non_numeric_pos(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    lines = vcf_lines(cohort)
    target = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 7
    fields = lines[target].split("\t")
    fields[1] = "12x45"
    lines[target] = "\t".join(fields)
    bad = tmp_path / "pos.vcf"
    bad.write_text("".join(lines))
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", bad)
    assert f"{bad}, line {target + 1}, field POS" in message and "'12x45'" in message


@pytest.mark.parametrize("suffix", [".vcf", ".vcf.gz"])
def test_bad_genotype_names_its_line(populated: Path, cohort: Cohort, tmp_path: Path,
                                     suffix: str) -> None:
    """A malformed call in an otherwise well-formed line (the kernel's layout) is reported at
    its own line, plain and bgzipped (it once said "line 0")."""
    from genofed.formats.bgzf import BgzfWriter

    lines = vcf_lines(cohort)
    target = next(i for i, line in enumerate(lines) if not line.startswith("#")) + 7
    fields = lines[target].rstrip("\n").split("\t")
    fields[9 + 3] = "0|X"
    lines[target] = "\t".join(fields) + "\n"
    bad = tmp_path / f"gt{suffix}"
    if suffix == ".vcf":
        bad.write_text("".join(lines))
    else:
        with BgzfWriter(bad) as writer:
            for line in lines:
                writer.write_record(line.encode())
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", bad)
    assert f"{bad}, line {target + 1}, field GT" in message and "'0|X'" in message


def test_non_numeric_pos_in_a_later_piece(populated: Path, cohort: Cohort,
                                          tmp_path: Path) -> None:
    """Line numbers stay right when the bad line is parsed by another worker's piece."""
    from genofed.formats.bgzf import BgzfWriter
    from genofed.ingest import sources

    lines = vcf_lines(cohort)
    target = len(lines) - 3
    fields = lines[target].split("\t")
    fields[1] = "abc"
    lines[target] = "\t".join(fields)
    bad = tmp_path / "late.vcf.gz"
    with BgzfWriter(bad) as writer:  # bcftools would refuse to write the bad POS
        for line in lines:
            writer.write_record(line.encode())
    source = sources.VcfSource(bad)
    assert len(source.pieces(target=64 << 10)) > 2
    original = sources.PIECE_PAYLOAD
    sources.PIECE_PAYLOAD = 64 << 10
    try:
        from genofed.ingest import InputError, ingest_dataset

        before = snapshot(populated)
        with pytest.raises(InputError) as error:
            ingest_dataset(populated, cohort.dataset_id, bad)
        assert snapshot(populated) == before
    finally:
        sources.PIECE_PAYLOAD = original
    assert error.value.line == target + 1 and error.value.field == "POS"


def test_phenopacket_subject_not_in_vcf(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    packets = tmp_path / "packets"
    shutil.copytree(cohort.phenopackets, packets)
    extra = json.loads(next(packets.glob("*.json")).read_text())
    extra["id"] = "stranger"
    extra["subject"]["id"] = "NOT-IN-VCF-1"
    (packets / "stranger.json").write_text(json.dumps(extra))
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                           "--phenopackets", packets)
    assert str(packets) in message and "NOT-IN-VCF-1" in message and "not samples of" in message


def test_vcf_sample_without_phenopacket(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    packets = tmp_path / "packets"
    shutil.copytree(cohort.phenopackets, packets)
    victim = sorted(packets.glob("*.json"))[3]
    sample = json.loads(victim.read_text())["subject"]["id"]
    victim.unlink()
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                           "--phenopackets", packets)
    assert str(cohort.vcf) in message and sample in message and "no phenopacket" in message


def test_invalid_phenopacket_json(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    packets = tmp_path / "packets"
    shutil.copytree(cohort.phenopackets, packets)
    victim = sorted(packets.glob("*.json"))[5]
    text = victim.read_text().splitlines()
    text[2] = text[2] + ","  # a trailing comma: invalid JSON on line 3 (or the next)
    victim.write_text("\n".join(text))
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                           "--phenopackets", packets)
    assert str(victim) in message and "invalid JSON" in message and ", line " in message


def test_phenopacket_with_wrong_field(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    packets = tmp_path / "packets"
    shutil.copytree(cohort.phenopackets, packets)
    victim = sorted(packets.glob("*.json"))[0]
    document = json.loads(victim.read_text())
    document["subject"]["sex"] = "WOMAN"
    victim.write_text(json.dumps(document))
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                           "--phenopackets", packets)
    assert str(victim) in message and "WOMAN" in message


def test_unknown_dataset(populated: Path, cohort: Cohort) -> None:
    before = snapshot(populated)
    result = genofed("sites", populated, "--dataset", "no-such-dataset")
    assert result.returncode != 0
    message = " ".join(result.stderr.split())
    assert "unknown dataset 'no-such-dataset'" in message and cohort.dataset_id in message
    assert snapshot(populated) == before


def test_metadata_for_another_dataset(populated: Path, cohort: Cohort) -> None:
    message = ingest_fails(populated, "--dataset", "other-id", "--vcf", cohort.vcf,
                           "--metadata", cohort.metadata)
    assert str(cohort.metadata) in message and "field id" in message


def test_not_a_node(tmp_path: Path, cohort: Cohort) -> None:
    result = genofed("ingest", tmp_path, "--dataset", "d", "--vcf", cohort.vcf)
    assert result.returncode != 0 and "genofed node init" in " ".join(result.stderr.split())


def test_malformed_gene_table(populated: Path, cohort: Cohort, tmp_path: Path) -> None:
    genes = tmp_path / "genes.bed"
    genes.write_text("# genes\n20\t100\t900\tGENE1\n20\tstart\t2000\tGENE2\n")
    message = ingest_fails(populated, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                           "--genes", genes)
    assert f"{genes}, line 3, field start/end" in message and "'start'" in message
