"""On-disk layout of a node's datasets, and atomic publishing of new versions.

    NODE_DIR/datasets/<id>/
        current -> versions/v3          (a symlink, swapped atomically)
        versions/v2/ versions/v3/       (immutable once published; the previous one is kept)
        .staging-<token>/                (a version being written; never read)
        .lock                            (one ingest per dataset at a time)

A version directory holds `manifest.json` (written last), `dataset.json`, `sites.parquet`,
`genes.parquet`, `individuals.parquet.c4gh` (Crypt4GH-encrypted for the node's key),
`genotypes.zarr/` and `files/` (the encrypted originals); the names are the constants below, and
the modules of this package are their only writers and readers. Readers resolve `current` once
and never see a half-written version; a crash leaves only a stale staging directory, removed by
the next writer.

Every writer goes through :func:`new_version`: lock, staging, atomic publish, cleanup.
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

from genofed.errors import DatasetBusyError

STORE_FORMAT = 1
#: The files of a version directory.
MANIFEST = "manifest.json"
METADATA = "dataset.json"
SITES = "sites.parquet"
GENES = "genes.parquet"
INDIVIDUALS = "individuals.parquet.c4gh"
INDIVIDUALS_PLAIN = "individuals.parquet"  # versions written before the table was encrypted
GENOTYPES = "genotypes.zarr"
FILES = "files"
VERSION_NAME = re.compile(r"^v(\d+)$")
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
        _write_durably(directory / MANIFEST, json.dumps(asdict(self), indent=2).encode())

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        return cls(**json.loads((directory / MANIFEST).read_text()))


def dataset_root(datasets_dir: Path, dataset_id: str) -> Path:
    return datasets_dir / dataset_id


def current_version(root: Path) -> Path | None:
    """The published version directory of a dataset, or None if it has none."""
    link = root / "current"
    if not link.is_symlink():
        return None
    target = root / os.readlink(link)
    return target if (target / MANIFEST).is_file() else None


@contextmanager
def dataset_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise DatasetBusyError(f"another process is writing a new version of dataset "
                                   f"{root.name!r} (an ingest or a `genofed files` command)"
                                   ) from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@dataclass
class VersionDraft:
    """A version being written (yielded by :func:`new_version`): write into :attr:`staging`,
    then :meth:`publish`."""

    root: Path
    #: The version that was current when the draft began (None: the dataset's first version).
    previous: Path | None
    staging: Path
    published: Path | None = None

    def publish(self, manifest: Manifest) -> Path:
        """Name the version, write its manifest (last) and make it current, atomically."""
        manifest.version = next_version_name(self.root)
        manifest.write(self.staging)
        self.published = publish(self.root, self.staging, manifest.version)
        return self.published

    def link_previous(self, *, skip: frozenset[str] = frozenset()) -> None:
        """Hard-link every file of the previous version into staging (versions are immutable),
        except the relative paths in `skip` and the manifest, which the new version rewrites."""
        if self.previous is None:
            return
        skip = skip | {MANIFEST}
        for directory, _dirs, files in os.walk(self.previous):
            relative = Path(directory).relative_to(self.previous)
            (self.staging / relative).mkdir(parents=True, exist_ok=True)
            for filename in files:
                if (relative / filename).as_posix() not in skip:
                    link_or_copy(Path(directory) / filename, self.staging / relative / filename)


@contextmanager
def new_version(datasets_dir: Path, dataset_id: str) -> Iterator[VersionDraft]:
    """The one way a dataset gets a new version: holds the dataset's lock, gives a fresh staging
    directory, and removes it unless :meth:`VersionDraft.publish` was called — so an error (or a
    kill) at any point leaves the published version as it was."""
    root = dataset_root(datasets_dir, dataset_id)
    with dataset_lock(root):
        draft = VersionDraft(root, current_version(root), new_staging(root))
        try:
            yield draft
        finally:
            if draft.published is None:
                shutil.rmtree(draft.staging, ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


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
               if (m := VERSION_NAME.match(p.name))]
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
        (p for p in versions.iterdir() if VERSION_NAME.match(p.name)),
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
