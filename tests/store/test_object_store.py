"""Datasets kept in S3 (`[store] url` in node.toml), against a real S3 server (moto's, on
loopback): atomic publish when the writer is refused or killed midway, other machines serving
the same bucket, pruning, what may and may not go to the bucket, and the errors an operator sees
when the bucket cannot be used."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from genofed.config.node import init_node, load_config, save_config
from genofed.errors import NodeConfigError, ObjectStoreError
from genofed.ingest import ingest_dataset
from genofed.store import NodeStore
from genofed.store.backends import POINTER_TTL
from tests.s3 import BUCKET, S3Server, keep_datasets_in_s3
from tests.support import Cohort, genofed, refused_port


@pytest.fixture
def s3_node(tmp_path: Path, s3: S3Server) -> Path:
    """A fresh node whose datasets live under a fresh prefix of the test bucket."""
    path = tmp_path / "node"
    init_node(path, node_id="s3-node", country="FI")
    keep_datasets_in_s3(path, s3)
    return path


def _prefix(node: Path) -> str:
    return load_config(node).store.url.removeprefix(f"s3://{BUCKET}/")


def _versions(s3: S3Server, node: Path, dataset: str) -> list[str]:
    base = f"{_prefix(node)}/datasets/{dataset}/versions/"
    return sorted({key[len(base):].split("/")[0] for key in s3.keys(base)})


def _another_machine(node: Path, root: Path) -> Path:
    """A second server of the same node: its settings and keys, nothing else (no datasets
    directory, no cache)."""
    other = root / "other-machine"
    other.mkdir()
    shutil.copy(node / "node.toml", other / "node.toml")
    shutil.copytree(node / "keys", other / "keys")
    return other


def test_a_publish_refused_at_the_pointer_leaves_the_previous_version(
        s3_node: Path, s3: S3Server, cohort: Cohort) -> None:
    ingest_dataset(s3_node, "d", cohort.vcf)
    with s3.fault("PUT", r"/datasets/d/current$") as refused, \
            pytest.raises(ObjectStoreError, match="refused"):
        ingest_dataset(s3_node, "d", cohort.vcf, populations=cohort.populations)
    assert refused.reached.is_set()
    # Everything of v2 was uploaded, its manifest last; only the pointer write failed.
    stale = f"{_prefix(s3_node)}/datasets/d/versions/v2/"
    assert f"{stale}manifest.json" in s3.keys(stale)
    store = NodeStore.open(s3_node)
    assert store.dataset("d").version == "v1"
    assert "pop_CEU" not in store.dataset("d").manifest.groups
    assert store.dataset_version("d", "v2") is None  # a prefix beyond the pointer is not served
    assert not any((s3_node / "datasets" / "d").glob(".staging-*"))

    # The next writer removes the stale prefix and publishes v2 afresh (from other input: no
    # object of the refused attempt may survive in it).
    ingest_dataset(s3_node, "d", cohort.vcf, phenopackets=cohort.phenopackets)
    served = NodeStore.open(s3_node).dataset("d")
    assert served.version == "v2" and "female" in served.manifest.groups
    assert "pop_CEU" not in served.manifest.groups
    assert not [k for k in s3.keys(stale) if "pop_CEU" in k]
    assert served.genotype_block(slice(0, 5)).calls.shape == (5, 120, 2)


def test_a_writer_killed_mid_upload_leaves_the_previous_version(
        s3_node: Path, s3: S3Server, cohort: Cohort) -> None:
    genofed("ingest", s3_node, "--dataset", "d", "--vcf", cohort.vcf, check=True)
    before = NodeStore.open(s3_node).dataset("d")
    with s3.fault("PUT", r"/datasets/d/versions/v2/", hold=True) as upload:
        process = subprocess.Popen(
            [sys.executable, "-m", "genofed", "ingest", s3_node, "--dataset", "d", "--vcf",
             cohort.vcf, "--populations", cohort.populations, "--workers", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            assert upload.reached.wait(120), "the upload never started"
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # mid-upload, no cleanup
            process.wait()
    # (the held requests now reach the server, like packets arriving after the writer died)
    store = NodeStore.open(s3_node)
    assert store.dataset("d").version == "v1"
    assert store.dataset("d").genotype_block(slice(0, 3)).calls.tobytes() == \
        before.genotype_block(slice(0, 3)).calls.tobytes()

    rerun = genofed("ingest", s3_node, "--dataset", "d", "--vcf", cohort.vcf, "--populations",
                    cohort.populations, check=True)
    assert "Ingested d v2" in " ".join(rerun.stdout.split())
    assert not any((s3_node / "datasets" / "d").glob(".staging-*"))
    assert "pop_CEU" in NodeStore.open(s3_node).dataset("d").manifest.groups


def test_another_machine_serves_what_one_publishes(s3_node: Path, s3: S3Server, cohort: Cohort,
                                                   tmp_path: Path) -> None:
    other = NodeStore.open(_another_machine(s3_node, tmp_path))
    assert other.dataset_ids() == []
    ingest_dataset(s3_node, "d", cohort.vcf)
    time.sleep(POINTER_TTL + 0.1)  # a long-lived reader re-reads the pointer this often
    first = other.dataset("d")
    assert other.dataset_ids() == ["d"] and first.version == "v1"
    ingest_dataset(s3_node, "d", cohort.vcf, populations=cohort.populations)
    time.sleep(POINTER_TTL + 0.1)
    assert other.dataset("d").version == "v2"
    assert other.dataset_version("d", "v1") is first  # still kept, for tickets issued on it
    here = NodeStore.open(s3_node).dataset("d")
    assert other.dataset("d").site_table(slice(0, 50)).equals(here.site_table(slice(0, 50)))

    # The other machine fetched into its cache only what needs a local path, once.
    copy = other.dataset("d").local_copy("sites.idx")
    assert sorted(p.name for p in copy.iterdir()) == \
        sorted(p.name for p in here.local_copy("sites.idx").iterdir())
    stamp = copy.stat().st_mtime_ns
    assert other.dataset("d").local_copy("sites.idx").stat().st_mtime_ns == stamp
    cached = copy.parent
    assert not (cached / "genotypes.zarr").exists() and not (cached / "files").exists()
    assert not list(cached.glob(".*.part"))
    assert not other.dataset("d").local_copy("no-such-file").exists()

    # Once the store drops a version, so does the other machine's cache.
    other.dataset_version("d", "v1").local_copy("sites.parquet")  # type: ignore[union-attr]
    assert sorted(p.name for p in cached.parent.iterdir()) == ["v1", "v2"]
    ingest_dataset(s3_node, "d", cohort.vcf, phenopackets=cohort.phenopackets)
    time.sleep(POINTER_TTL + 0.1)
    assert other.dataset("d").version == "v3"
    assert sorted(p.name for p in cached.parent.iterdir()) == ["v2"]
    assert other.dataset_version("d", "v1") is not None  # still open in this process...
    assert NodeStore.open(other.root).dataset_version("d", "v1") is None  # ...gone for others


def test_old_versions_are_pruned_in_the_bucket_and_the_cache(s3_node: Path, s3: S3Server,
                                                             cohort: Cohort) -> None:
    for populations in (None, cohort.populations):
        ingest_dataset(s3_node, "d", cohort.vcf, populations=populations)
    ingest_dataset(s3_node, "d", cohort.vcf, phenopackets=cohort.phenopackets)
    assert _versions(s3, s3_node, "d") == ["v2", "v3"]
    cache = s3_node / "cache" / "d"
    assert sorted(p.name for p in cache.iterdir()) == ["v2", "v3"]
    # The writer's own copy of what it published, less what readers take from the bucket.
    assert (cache / "v3" / "genotypes.zarr").is_dir()
    assert not (cache / "v2" / "genotypes.zarr").exists()
    store = NodeStore.open(s3_node)
    assert store.dataset_version("d", "v1") is None
    assert store.dataset_version("d", "v2") is not None


def test_only_encrypted_dataset_versions_go_to_the_bucket(s3_node: Path, s3: S3Server,
                                                          cohort: Cohort) -> None:
    ingest_dataset(s3_node, "d", cohort.vcf, phenopackets=cohort.phenopackets)
    prefix = _prefix(s3_node)
    keys = s3.keys(prefix + "/")
    assert keys and all(k.startswith(f"{prefix}/datasets/d/") for k in keys)  # no keys/, ...
    client = s3.client()
    version = f"{prefix}/datasets/d/versions/v1"
    for name in ("individuals.parquet.c4gh", "files/catalogue.c4gh"):
        body = client.get_object(Bucket=BUCKET, Key=f"{version}/{name}")["Body"].read()
        assert body.startswith(b"crypt4gh")
    secret = (s3_node / "keys" / "node.c4gh.sec").read_bytes()
    assert not any(secret in client.get_object(Bucket=BUCKET, Key=k)["Body"].read()
                   for k in keys if "genotypes.zarr" not in k)


def test_files_added_to_a_dataset_in_s3_are_kept_by_reingest(s3_node: Path, cohort: Cohort,
                                                             tmp_path: Path) -> None:
    """`files add` copies the previous version server-side; a re-ingest carries the added file
    over from the bucket."""
    from genofed.store.archive import add_file, list_files, set_plain_delivery

    ingest_dataset(s3_node, "d", cohort.vcf)
    added = add_file(s3_node, "d", cohort.vcf, name="again")
    assert added.version == "v2"
    assert set_plain_delivery(s3_node, "d", True).version == "v3"
    shutil.rmtree(s3_node / "cache")  # as on a machine that never saw the files
    # From BCF, archived by a forked worker process: it fetches the added file from the bucket.
    bcf = tmp_path / "cohort.bcf"
    subprocess.run(["bcftools", "view", "--no-version", "-Ob", "-o", bcf, cohort.vcf],
                   check=True)
    ingest_dataset(s3_node, "d", bcf, populations=cohort.populations, workers=2)
    rows = list_files(s3_node)
    assert sorted((r[0], r[1], r[2], r[3].name) for r in rows) == [
        ("d", "v4", True, "again"), ("d", "v4", True, "cohort")]
    store = NodeStore.open(s3_node)
    ds = store.dataset("d")
    entry = next(e for e in ds.files.files if e.name == "again")
    opened = store.open_file(ds, entry)
    assert opened.data.read(0, 100) == opened.data.read(0, 100) and opened.header


# -- what an operator sees when the bucket cannot be used ------------------------------------------
def _set_store(node: Path, **settings: str) -> None:
    config = load_config(node)
    config.store = config.store.model_copy(update=settings)
    save_config(node, config)


def test_a_missing_bucket_names_the_setting(s3_node: Path, cohort: Cohort) -> None:
    _set_store(s3_node, url="s3://no-such-bucket/x")
    with pytest.raises(ObjectStoreError, match=r"no-such-bucket.*does not exist") as raised:
        NodeStore.open(s3_node).dataset_ids()
    assert raised.value.hint is not None and "[store] url" in raised.value.hint
    result = genofed("ingest", s3_node, "--dataset", "d", "--vcf", cohort.vcf)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "does not exist" in result.stderr and "[store] url" in " ".join(result.stderr.split())


def test_an_unreachable_endpoint_names_the_setting(s3_node: Path) -> None:
    with refused_port() as port:
        _set_store(s3_node, endpoint_url=f"http://127.0.0.1:{port}")
        with pytest.raises(ObjectStoreError, match="cannot reach") as raised:
            NodeStore.open(s3_node).dataset_ids()
    assert raised.value.hint is not None and "[store] endpoint_url" in raised.value.hint


def test_missing_credentials_say_where_they_come_from(s3_node: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    with pytest.raises(ObjectStoreError, match="no AWS credentials") as raised:
        NodeStore.open(s3_node).dataset_ids()
    assert raised.value.hint is not None and "AWS_ACCESS_KEY_ID" in raised.value.hint
    assert "node.toml" in raised.value.hint


def test_a_store_url_that_is_not_s3_is_refused(s3_node: Path) -> None:
    text = (s3_node / "node.toml").read_text()
    (s3_node / "node.toml").write_text(text.replace('url = "s3://', 'url = "https://'))
    with pytest.raises(NodeConfigError, match=r"store\.url") as raised:
        load_config(s3_node)
    assert raised.value.hint is not None and "s3://BUCKET" in raised.value.hint
