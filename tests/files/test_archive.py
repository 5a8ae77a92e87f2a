"""Crypt4GH at rest: what ingest and `files add` store, that no plaintext record is left on the
node, that uploads encrypted for the node are kept as uploaded, and that damaged uploads are
rejected without storing anything."""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from genofed.config.node import NodePaths, init_node, load_config
from genofed.errors import ArchiveError
from genofed.formats.bgzf_layout import check_layout, inflated_blocks
from genofed.formats.crypt4gh import (
    CIPHER_SEGMENT_SIZE,
    EncryptedFile,
    encrypt_bytes,
    read_header,
)
from genofed.formats.hts import FileFormat
from genofed.ingest import ingest_dataset
from genofed.ingest.sources import VcfSource
from genofed.store import layout
from genofed.store.archive import add_file, list_files, node_keys, set_plain_delivery
from genofed.store.originals import FILES_DIR, ROLE_VARIANTS, read_catalogue
from tests.edge_cases import WITH_CHR, WITHOUT_CHR, write_variants
from tests.files.conftest import C4GH, HtsgetNode, synthetic_vcf
from tests.support import HTSGET_DATA, genofed

BAM = HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam"


def _version(node_dir: Path, dataset: str) -> Path:
    root = layout.dataset_root(node_dir / "datasets", dataset)
    version = layout.current_version(root)
    assert version is not None
    return version


def test_ingest_keeps_the_original_encrypted_with_its_index(htsget_node: HtsgetNode) -> None:
    version = _version(htsget_node.node_dir, "ds-plain")
    catalogue = read_catalogue(version, htsget_node.keys)
    assert catalogue.plain_delivery
    (entry,) = [e for e in catalogue.files if e.role == ROLE_VARIANTS]
    assert (entry.name, entry.format, entry.index_kind) == ("cohort", "VCF", "tbi")
    stored = EncryptedFile(version / FILES_DIR / entry.data, htsget_node.keys.secret)
    assert stored.read_all() == htsget_node.cohort_vcf.read_bytes()  # already record-aligned
    index = EncryptedFile(version / FILES_DIR / entry.index, htsget_node.keys.secret)
    assert index.read_all() == htsget_node.cohort_vcf.with_suffix(".gz.tbi").read_bytes()
    for part in os.listdir(version / FILES_DIR):  # everything encrypted, under random names
        assert (version / FILES_DIR / part).read_bytes()[:8] == b"crypt4gh", part
        assert "cohort" not in part


def _plaintext_markers(node: HtsgetNode) -> tuple[list[bytes], list[bytes]]:
    """(header lines, records and reads): things a plaintext copy of an archived file would
    contain."""
    with gzip.open(node.cohort_vcf, "rt") as handle:
        lines = handle.read().splitlines()
    header = next(line for line in lines if line.startswith("#CHROM"))
    records = [line for line in lines if not line.startswith("#")]
    reads = subprocess.run(["samtools", "view", str(BAM)], capture_output=True, text=True,
                           check=True).stdout.splitlines()
    headers = [header[:60], "SYN000\tSYN001", "##fileformat=VCF"]
    body = [records[0][:60], records[len(records) // 2][:60],
            "\t".join(reads[0].split("\t")[:4]),  # QNAME FLAG RNAME POS
            reads[0].split("\t")[9], reads[-1].split("\t")[9],  # read sequences
            "14370\trs6054257\tG\tA"]
    return [m.encode() for m in headers], [m.encode() for m in body]


def _grep(root: Path, needles: list[bytes], *,
          skip: frozenset[str] = frozenset()) -> list[str]:
    hits: list[str] = []
    for directory, _dirs, files in os.walk(root):
        for name in files:
            path = Path(directory) / name
            if any(part in skip for part in path.relative_to(root).parts):
                continue
            data = path.read_bytes()
            hits.extend(f"{path.relative_to(root)}: {n[:30]!r}" for n in needles if n in data)
    return hits


def test_no_plaintext_record_anywhere_on_the_node(htsget_node: HtsgetNode) -> None:
    headers, records = _plaintext_markers(htsget_node)
    datasets = htsget_node.node_dir / "datasets"
    # the encrypted-files area holds no plaintext at all, sample ids included
    with gzip.open(htsget_node.cohort_vcf, "rt") as handle:
        sample = next(line for line in handle if line.startswith("#CHROM")).split("\t")[9]
    files_areas = [v / FILES_DIR for v in datasets.glob("*/versions/*")]
    assert files_areas
    for area in files_areas:
        assert _grep(area, [*headers, *records, sample.encode(), b"NA12878"]) == []
        assert not [p.name for p in area.iterdir() if "NA12878" in p.name or "cohort" in p.name]
    # nowhere on the node is there a record line, a read, a read sequence or a sample id of
    # any ingested file: the variant store keeps sample ids only in its encrypted individuals
    # table (genotypes.zarr holds positional pseudonyms and a header without sample columns)
    with gzip.open(htsget_node.cohort_vcf, "rt") as handle:
        samples = next(line for line in handle if line.startswith("#CHROM")).split()[9:]
    assert len(samples) == 40
    needles = [*records, *(s.encode() for s in samples), b"NA12878", b"SYN001"]
    assert _grep(htsget_node.node_dir, needles) == []


def test_uploads_encrypted_for_the_node_are_kept_as_uploaded(htsget_node: HtsgetNode) -> None:
    version = _version(htsget_node.node_dir, "ds-enc")
    entries = {(e.name, e.format): e
               for e in read_catalogue(version, htsget_node.keys).files}
    for name, fmt, upload in [("htsnexus_test_NA12878", "BAM", "htsnexus_test_NA12878.bam.c4gh"),
                              ("htsnexus_test_NA12878", "CRAM",
                               "htsnexus_test_NA12878.cram.c4gh"),
                              ("sample1-bcbio-cancer", "VCF",
                               "sample1-bcbio-cancer.vcf.gz.c4gh"),
                              ("spec-v4.3", "BCF", "spec-v4.3.bcf.c4gh")]:
        entry = entries[(name, fmt)]
        assert entry.uploaded_encrypted and not entry.reencoded
        assert (version / FILES_DIR / entry.data).read_bytes() == (C4GH / upload).read_bytes()


def test_files_that_split_records_across_blocks_are_reencoded(htsget_node: HtsgetNode) -> None:
    version = _version(htsget_node.node_dir, "ds-plain")
    entries = {(e.name, e.format): e
               for e in read_catalogue(version, htsget_node.keys).files}
    assert entries[("synthetic", "VCF")].reencoded  # Debian bgzip
    assert entries[("synthetic", "BCF")].reencoded  # bcftools view -Ob
    assert not entries[("htsnexus_test_NA12878", "BAM")].reencoded


@pytest.fixture
def small_node(tmp_path: Path) -> tuple[Path, Path]:
    node = tmp_path / "node"
    init_node(node, node_id="small-node", country="FI")
    tiny = write_variants(tmp_path / "tiny", "tiny", WITHOUT_CHR)
    ingest_dataset(node, "ds-small", tiny["vcf.gz"], workers=1)
    return node, tmp_path


def _snapshot(node: Path) -> list[str]:
    return sorted(str(p.relative_to(node)) for p in (node / "datasets").rglob("*"))


def test_damaged_uploads_are_rejected_and_nothing_is_stored(small_node: tuple[Path, Path]
                                                            ) -> None:
    node, work = small_node
    # this node's key is its own, not bob's: the htsget-rs files are "for another key";
    # damaged copies are made for the node's key
    keys = node_keys(NodePaths(node, load_config(node)))
    sealed = encrypt_bytes(BAM.read_bytes(), keys.public, keys.secret)
    upload = work / "good.bam.c4gh"
    upload.write_bytes(sealed)
    shutil.copyfile(C4GH / "htsnexus_test_NA12878.bam.c4gh", work / "bob.bam.c4gh")
    with open(upload, "rb") as handle:
        header_length = read_header(handle, keys.secret).length
    body = len(sealed) - header_length
    damaged = {
        "truncated inside a segment": sealed[:-1000],
        "truncated at a segment boundary":
            sealed[: header_length + (body // CIPHER_SEGMENT_SIZE - 3) * CIPHER_SEGMENT_SIZE],
        "one bit flipped": sealed[: len(sealed) // 2] + bytes([sealed[len(sealed) // 2] ^ 1])
        + sealed[len(sealed) // 2 + 1 :],
    }
    before = _snapshot(node)
    for problem, data in damaged.items():
        path = work / f"{problem.replace(' ', '-')}.bam.c4gh"
        path.write_bytes(data)
        with pytest.raises(ArchiveError, match="rejected"):
            add_file(node, "ds-small", path, index=BAM.with_suffix(".bam.bai"))
        assert _snapshot(node) == before, problem
    with pytest.raises(ArchiveError, match="this node's public key"):
        add_file(node, "ds-small", work / "bob.bam.c4gh")
    assert _snapshot(node) == before
    # the undamaged upload goes in, unchanged
    result = add_file(node, "ds-small", upload, index=BAM.with_suffix(".bam.bai"))
    version = _version(node, "ds-small")
    assert (version / FILES_DIR / result.entry.data).read_bytes() == sealed


def test_encrypted_upload_that_splits_records_is_reencoded(small_node: tuple[Path, Path]
                                                           ) -> None:
    node, work = small_node
    keys = node_keys(NodePaths(node, load_config(node)))
    vcf = synthetic_vcf(work / "upload.vcf", records=150)
    bcf = work / "upload.bcf"  # bcftools fills BGZF blocks to the brim, splitting records
    subprocess.run(["bcftools", "view", "--no-version", "-Ob", "-o", str(bcf), str(vcf)],
                   check=True)
    upload = work / "upload.bcf.c4gh"
    upload.write_bytes(encrypt_bytes(bcf.read_bytes(), keys.public, keys.secret))
    entry = add_file(node, "ds-small", upload).entry
    assert entry.uploaded_encrypted and entry.reencoded
    stored = work / "stored.bcf"
    stored.write_bytes(EncryptedFile(_version(node, "ds-small") / FILES_DIR / entry.data,
                                     keys.secret).read_all())
    view = ["bcftools", "view", "--no-version"]
    assert (subprocess.run([*view, str(stored)], capture_output=True, check=True).stdout
            == subprocess.run([*view, str(bcf)], capture_output=True, check=True).stdout)


def test_encrypted_text_vcf_uploads(small_node: tuple[Path, Path]) -> None:
    node, work = small_node
    keys = node_keys(NodePaths(node, load_config(node)))
    text = synthetic_vcf(work / "text.vcf", records=100).read_bytes()
    for name, data in (("plain-text", text), ("gzip-text", gzip.compress(text))):
        upload = work / f"{name}.vcf.c4gh"
        upload.write_bytes(encrypt_bytes(data, keys.public, keys.secret))
        entry = add_file(node, "ds-small", upload).entry
        assert entry.reencoded and entry.format == "VCF"
        stored = EncryptedFile(_version(node, "ds-small") / FILES_DIR / entry.data, keys.secret)
        assert gzip.decompress(stored.read_all()) == text
    # cut at a segment boundary: every segment authenticates, but the text ends mid-line
    sealed = encrypt_bytes(text, keys.public, keys.secret)
    with open(work / "plain-text.vcf.c4gh", "rb") as handle:
        header_length = read_header(handle, keys.secret).length
    cut = work / "cut.vcf.c4gh"
    cut.write_bytes(sealed[: header_length + 2 * CIPHER_SEGMENT_SIZE])
    before = _snapshot(node)
    with pytest.raises(ArchiveError, match="truncated"):
        add_file(node, "ds-small", cut)
    assert _snapshot(node) == before


def test_an_index_of_another_file_is_refused(small_node: tuple[Path, Path]) -> None:
    node, work = small_node
    other = work / "other.bam"
    subprocess.run(["samtools", "view", "-b", "--no-PG", "-o", str(other), str(BAM), "20"],
                   check=True)
    subprocess.run(["samtools", "index", str(other)], check=True)
    before = _snapshot(node)
    with pytest.raises(ArchiveError, match="belongs to another file"):
        add_file(node, "ds-small", BAM, index=work / "other.bam.bai")
    assert _snapshot(node) == before


def test_add_needs_an_ingested_dataset_and_a_free_name(small_node: tuple[Path, Path]) -> None:
    node, _work = small_node
    with pytest.raises(ArchiveError, match="ingest its VCF/BCF first"):
        add_file(node, "no-such-dataset", BAM)
    add_file(node, "ds-small", BAM)
    with pytest.raises(ArchiveError, match="already holds"):
        add_file(node, "ds-small", BAM)
    add_file(node, "ds-small", BAM, name="second-copy")


def test_reingest_keeps_added_files_and_the_delivery_setting(small_node: tuple[Path, Path]
                                                             ) -> None:
    node, work = small_node
    add_file(node, "ds-small", BAM, index=BAM.with_suffix(".bam.bai"))
    set_plain_delivery(node, "ds-small", True)
    other = write_variants(work / "other", "other", WITH_CHR)
    ingest_dataset(node, "ds-small", other["bcf"], workers=1)
    keys = node_keys(NodePaths(node, load_config(node)))
    catalogue = read_catalogue(_version(node, "ds-small"), keys)
    assert catalogue.plain_delivery
    assert {(e.name, e.format, e.role) for e in catalogue.files} == {
        ("other", "BCF", "variants"), ("htsnexus_test_NA12878", "BAM", "added")}
    rows = list_files(node)
    assert {r[3].name for r in rows} == {"other", "htsnexus_test_NA12878"}


def test_cli(small_node: tuple[Path, Path]) -> None:
    node, _work = small_node
    added = genofed("files", "add", node, "--dataset", "ds-small",
                    HTSGET_DATA / "cram" / "htsnexus_test_NA12878.cram", check=True)
    assert "htsget id: ds-small/htsnexus_test_NA12878" in added.stdout
    listed = genofed("files", "list", node, check=True)
    assert "reads/ds-small/htsnexus_test_NA12878" in listed.stdout
    assert "C4GH only" in listed.stdout
    assert "plain or Crypt4GH-encrypted" in genofed("files", "delivery", node, "--dataset",
                                                    "ds-small", "--plain", check=True).stdout
    assert "plain or C4GH" in genofed("files", "list", node, check=True).stdout
    key = genofed("files", "key", node, check=True).stdout
    assert key.startswith("-----BEGIN CRYPT4GH PUBLIC KEY-----")
    failed = genofed("files", "add", node, "--dataset", "ds-small",
                     C4GH / "htsnexus_test_NA12878.bam.c4gh")
    assert failed.returncode == 1 and "nothing was stored" in failed.stderr


@pytest.mark.parametrize("name", ["cohort", "synthetic", "spec-v4.3.vcf.gz",
                                  "sample1-bcbio-cancer.vcf.gz"])
def test_the_layout_ingest_learns_equals_the_archives_own_check(htsget_node: HtsgetNode,
                                                                name: str) -> None:
    """Ingest hands the archive the block layout its parse saw, sparing a second inflate of
    every block: it must be the very layout the archive's own check finds."""
    path = {"cohort": htsget_node.cohort_vcf, "synthetic": htsget_node.synthetic_vcf}.get(
        name, HTSGET_DATA / "vcf" / name)
    source = VcfSource(path)
    check = check_layout(inflated_blocks([path.read_bytes()]), FileFormat.VCF)
    assert [(r.coffset, r.csize, r.usize) for r in check.rows] == [
        (b.offset, b.size, b.payload_size) for b in source.blocks]
    assert check.header_size == len(source.header.text.encode())
    aligned = all(source.piece_parts(p)[1] for p in source.pieces(target=4096))
    # ingest's flag is conservative (any block not ending a line); it never claims alignment
    # the check would deny, and agrees on files our own writers and bcftools produce
    assert aligned == check.aligned if name != "synthetic" else (not aligned or check.aligned)
