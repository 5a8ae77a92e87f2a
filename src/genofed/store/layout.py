"""On-disk layout of a node's datasets, and atomic publishing of new versions.

    NODE_DIR/datasets/<id>/
        current -> versions/v3          (a symlink, swapped atomically)
        versions/v2/ versions/v3/       (immutable once published; the previous one is kept)
        .staging-<token>/                (a version being written; never read)
        .lock                            (one ingest per dataset at a time)

A version directory holds `manifest.json` (written last), `dataset.json`, `sites.parquet`,
`sites.idx/` (the same sites as memory-mapped columns), `genes.parquet`,
`individuals.parquet.c4gh` (Crypt4GH-encrypted for the node's key), `genotypes.zarr/` and
`files/` (the encrypted originals); the names are the constants below, and the modules of this
package are their only writers and readers. Readers resolve `current` once
and never see a half-written version; a crash leaves only a stale staging directory, removed by
the next writer.

Every writer goes through :func:`new_version`: lock, staging, atomic publish, cleanup.

A node whose node.toml sets `[store] url = "s3://..."` keeps the same version directories in S3
and publishes by writing one pointer object last (:mod:`genofed.store.backends`); the lock and the
staging directory stay here, in NODE_DIR/datasets/<id>/.
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
from typing import TYPE_CHECKING

from genofed.errors import DatasetBusyError

if TYPE_CHECKING:
    from genofed.store.backends import Backend

STORE_FORMAT = 1
#: The files of a version directory.
MANIFEST = "manifest.json"
METADATA = "dataset.json"
SITES = "sites.parquet"
SITES_INDEX = "sites.idx"  # the sites as memory-mapped columns (store/site_columns.py)
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
        return cls.parse((directory / MANIFEST).read_bytes())

    @classmethod
    def parse(cls, content: bytes) -> Manifest:
        return cls(**json.loads(content))


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
    #: For a store kept in S3, its directory in the node's cache: files are fetched into it
    #: when :func:`link_or_copy` links them.
    previous: Path | None
    staging: Path
    published: Path | None = None
    #: Where the versions live (default: directories beside `root`).
    backend: Backend | None = None
    #: Files of the previous version the new one holds without passing through this machine
    #: (relative path -> where the store has it; S3 copies them server-side at publish).
    carried: dict[str, str] = field(default_factory=dict)

    @property
    def dataset_id(self) -> str:
        return self.root.name

    def publish(self, manifest: Manifest) -> Path:
        """Name the version, write its manifest (last) and make it current, atomically.
        Returns the version's local directory."""
        self.published = self._backend().publish(self, manifest)
        return self.published

    def link_previous(self, *, skip: frozenset[str] = frozenset()) -> None:
        """Make every file of the previous version part of this one (versions are immutable:
        hard links, or server-side copies in S3), except the relative paths in `skip` and the
        manifest, which the new version rewrites."""
        self._backend().carry_previous(self, skip | {MANIFEST})

    def _backend(self) -> Backend:
        if self.backend is None:
            from genofed.store.backends import LocalBackend

            self.backend = LocalBackend(self.root.parent)
        return self.backend


@contextmanager
def new_version(datasets: Path | Backend, dataset_id: str) -> Iterator[VersionDraft]:
    """The one way a dataset gets a new version: holds the dataset's lock, gives a fresh staging
    directory, and removes it unless :meth:`VersionDraft.publish` was called — so an error (or a
    kill) at any point leaves the published version as it was.

    `datasets`: a node's datasets directory (its node.toml says where versions are published),
    or the node's :class:`~genofed.store.backends.Backend`."""
    from genofed.store.backends import Backend, backend_for

    backend = datasets if isinstance(datasets, Backend) else backend_for(datasets)
    root = dataset_root(backend.datasets_dir, dataset_id)
    with dataset_lock(root):
        backend.begin(dataset_id)
        draft = VersionDraft(root, backend.previous(dataset_id), new_staging(root), None,
                             backend)
        try:
            yield draft
        finally:
            if draft.published is None:
                shutil.rmtree(draft.staging, ignore_errors=True)


def link_or_copy(source: Path, target: Path) -> None:
    """Link a file of a published version into a draft (copy across filesystems). A file of a
    version kept in S3 is fetched into the node's cache first."""
    if not source.exists():
        from genofed.store.backends import fetch_into_cache

        fetch_into_cache(source)
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
