"""On-disk layout of a node's datasets, and atomic publishing of new versions.

    NODE_DIR/datasets/<id>/
        current -> versions/v3          (a symlink, swapped atomically)
        versions/v2/ versions/v3/       (immutable once published; the previous one is kept)
        .staging-<token>/                (a version being written; never read)
        .lock                            (one ingest per dataset at a time)

A version directory holds `manifest.json` (written last), `dataset.json`, `sites.parquet`,
`individuals.parquet.c4gh` (Crypt4GH-encrypted for the node's key), `genotypes.zarr/` and
`files/` (the encrypted originals). Readers resolve `current` once and never see a
half-written version; a crash leaves only a stale staging directory, removed by the next ingest.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

STORE_FORMAT = 1
_VERSION = re.compile(r"^v(\d+)$")
KEEP_VERSIONS = 2  # the current one and its predecessor (for readers still holding it)


@dataclass
class Manifest:
    """What a published version contains; the last file written to it."""

    dataset_id: str
    version: str
    fingerprint: str
    created: str
    store_format: int = STORE_FORMAT
    n_samples: int = 0
    n_records: int = 0  # VCF records (zarr variants)
    n_sites: int = 0  # biallelic rows in sites.parquet
    n_individuals_with_phenopackets: int = 0
    contigs: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # allele-count groups (columns ac_<group>)
    source: dict[str, object] = field(default_factory=dict)

    def write(self, directory: Path) -> None:
        _write_durably(directory / "manifest.json", json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls(**json.loads((directory / "manifest.json").read_text()))


def dataset_root(datasets_dir: Path, dataset_id: str) -> Path:
    return datasets_dir / dataset_id


def current_version(root: Path) -> Path | None:
    """The published version directory of a dataset, or None if it has none."""
    link = root / "current"
    if not link.is_symlink():
        return None
    target = root / os.readlink(link)
    return target if (target / "manifest.json").is_file() else None


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"another ingest of dataset {root.name!r} is running") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def new_staging(root: Path) -> Path:
    """A fresh private directory for writing a version; stale ones (crashed ingests) are removed.

    Only called with the dataset lock held, so no other ingest can own a staging directory.
    """
    for stale in root.glob(".staging-*"):
        shutil.rmtree(stale, ignore_errors=True)
    staging = root / f".staging-{secrets.token_hex(6)}"
    staging.mkdir()
    return staging


def next_version_name(root: Path) -> str:
    numbers = [int(m.group(1)) for p in (root / "versions").glob("v*")
               if (m := _VERSION.match(p.name))]
    return f"v{max(numbers, default=0) + 1}"


def publish(root: Path, staging: Path, version: str) -> Path:
    """Move a fully written staging directory into place and point `current` at it atomically."""
    _fsync_tree(staging)
    versions = root / "versions"
    versions.mkdir(exist_ok=True)
    final = versions / version
    os.rename(staging, final)
    _fsync_dir(versions)
    tmp_link = root / f".current-{secrets.token_hex(4)}"
    os.symlink(os.path.join("versions", version), tmp_link)
    os.replace(tmp_link, root / "current")
    _fsync_dir(root)
    _prune(versions, keep=final)
    return final


def _prune(versions: Path, keep: Path) -> None:
    published = sorted(
        (p for p in versions.iterdir() if _VERSION.match(p.name)),
        key=lambda p: int(p.name[1:]),
    )
    for old in published[:-KEEP_VERSIONS]:
        if old != keep:
            shutil.rmtree(old, ignore_errors=True)


def _write_durably(path: Path, data: bytes) -> None:
    with open(path, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(root: Path) -> None:
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
