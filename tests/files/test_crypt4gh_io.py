"""Crypt4GH interoperability: files another implementation wrote decrypt through our code, files
our node writes decrypt with the `crypt4gh` package's own command line, and damage is caught."""

from __future__ import annotations

import base64
import io
import subprocess
import sys
from pathlib import Path

import pytest

from genofed.errors import Crypt4ghError
from genofed.formats.crypt4gh import (
    CIPHER_SEGMENT_SIZE,
    EncryptedFile,
    KeyPair,
    apply_edit_list,
    build_header,
    decrypt_stream,
    encrypt_bytes,
    load_secret_key,
    parse_public_key,
    read_header,
    verify_file,
)
from genofed.store import layout
from genofed.store.originals import FILES_DIR, read_catalogue
from tests.files.conftest import C4GH, HtsgetNode
from tests.support import HTSGET_DATA

CRYPT4GH_CLI = Path(sys.executable).with_name("crypt4gh")


@pytest.mark.parametrize(("encrypted", "plain"), [
    ("htsnexus_test_NA12878.bam.c4gh", "bam/htsnexus_test_NA12878.bam"),
    ("htsnexus_test_NA12878.cram.c4gh", "cram/htsnexus_test_NA12878.cram"),
    ("sample1-bcbio-cancer.bcf.c4gh", "bcf/sample1-bcbio-cancer.bcf"),
    ("spec-v4.3.bcf.c4gh", "bcf/spec-v4.3.bcf"),
    ("sample1-bcbio-cancer.vcf.gz.c4gh", "vcf/sample1-bcbio-cancer.vcf.gz"),
    ("spec-v4.3.vcf.gz.c4gh", "vcf/spec-v4.3.vcf.gz"),
])
def test_files_written_by_another_implementation_decrypt_with_bobs_key(encrypted: str,
                                                                       plain: str) -> None:
    bob = load_secret_key(C4GH / "keys" / "bob.sec")
    original = (HTSGET_DATA / plain).read_bytes()
    stored = verify_file(C4GH / encrypted, bob)
    assert stored.read_all() == original
    # random access by whole segments, across segment boundaries
    assert stored.read(70_000, 200_000) == original[70_000:200_000]
    assert decrypt_stream((C4GH / encrypted).read_bytes(), bob) == original


def test_other_readers_key_is_refused() -> None:
    alice = load_secret_key(C4GH / "keys" / "alice.sec")
    with pytest.raises(Crypt4ghError, match="no data key"):
        EncryptedFile(C4GH / "spec-v4.3.bcf.c4gh", alice)


def _current_files(node: HtsgetNode, dataset: str) -> Path:
    version = layout.current_version(layout.dataset_root(node.paths.datasets, dataset))
    assert version is not None
    return version


def test_node_written_files_decrypt_with_the_crypt4gh_cli(htsget_node: HtsgetNode,
                                                          tmp_path: Path) -> None:
    version = _current_files(htsget_node, "ds-plain")
    entries = {(e.name, e.format): e
               for e in read_catalogue(version, htsget_node.keys).files}
    checks = [(entries[("cohort", "VCF")], htsget_node.cohort_vcf),
              (entries[("htsnexus_test_NA12878", "BAM")],
               HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam")]
    for entry, original in checks:
        decrypted = tmp_path / entry.source
        with open(version / FILES_DIR / entry.data, "rb") as inp, open(decrypted, "wb") as out:
            subprocess.run([str(CRYPT4GH_CLI), "decrypt", "--sk",
                            str(htsget_node.paths.c4gh_secret_key)], stdin=inp, stdout=out,
                           check=True)
        assert decrypted.read_bytes() == original.read_bytes(), entry.name
    # a re-encoded file: other bytes, same records
    entry = entries[("synthetic", "VCF")]
    assert entry.reencoded
    decrypted = tmp_path / "synthetic.vcf.gz"
    with open(version / FILES_DIR / entry.data, "rb") as inp, open(decrypted, "wb") as out:
        subprocess.run([str(CRYPT4GH_CLI), "decrypt", "--sk",
                        str(htsget_node.paths.c4gh_secret_key)], stdin=inp, stdout=out,
                       check=True)
    view = ["bcftools", "view", "--no-version"]
    assert (subprocess.run([*view, str(decrypted)], capture_output=True, check=True).stdout
            == subprocess.run([*view, str(htsget_node.synthetic_vcf)], capture_output=True,
                              check=True).stdout)


def test_damage_is_detected(tmp_path: Path) -> None:
    keys = KeyPair.generate()
    data = bytes(range(256)) * 1000  # ~4 segments
    sealed = encrypt_bytes(data, keys.public, keys.secret)
    header_length = read_header(io.BytesIO(sealed), keys.secret).length
    path = tmp_path / "x.c4gh"
    tampered = bytearray(sealed)
    tampered[header_length + CIPHER_SEGMENT_SIZE + 100] ^= 1
    path.write_bytes(bytes(tampered))
    with pytest.raises(Crypt4ghError, match="segment 1"):
        verify_file(path, keys.secret)
    path.write_bytes(sealed[:-10])
    with pytest.raises(Crypt4ghError, match="authentication"):
        verify_file(path, keys.secret)
    path.write_bytes(sealed[: header_length + CIPHER_SEGMENT_SIZE + 20])
    with pytest.raises(Crypt4ghError, match="truncated"):
        EncryptedFile(path, keys.secret)


def test_edit_lists_and_keys() -> None:
    assert apply_edit_list(b"abcdefghij", [1, 2, 3, 1]) == b"bcg"
    assert apply_edit_list(b"abcdefghij", [1, 2, 3]) == b"bcghij"  # ends on a skip: keep rest
    keys, reader = KeyPair.generate(), KeyPair.generate()
    header = build_header([b"k" * 32], reader.public, keys.secret, [0, 5])
    assert header.startswith(b"crypt4gh")
    text = (C4GH / "keys" / "bob.pub").read_bytes()
    assert parse_public_key(base64.b64encode(text)) == parse_public_key(text)
    with pytest.raises(Crypt4ghError):
        parse_public_key("not a key")
