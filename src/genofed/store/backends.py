"""Where a node's dataset versions live: the local disk (NODE_DIR/datasets, the default) or S3
(`[store] url` in node.toml). Both give the store the same operations; :mod:`.layout` drives the
writing ones (lock, staging, publish) and :class:`~genofed.store.node.NodeStore` the reading ones.

Either way a version is written in a local staging directory, `NODE_DIR/datasets/<id>/.staging-*`,
under the dataset's lock file beside it. The lock is a local file lock: one machine ingests (or
runs `genofed files`) per dataset, while any number of machines may serve it.

On S3 (:class:`ObjectBackend`) publishing uploads the staging directory to
`datasets/<id>/versions/vN/` (manifest last), then writes the pointer object `datasets/<id>/current`
("vN"): that one write is the publish. A publish interrupted before it leaves the previous
version served; the next writer deletes the partial prefix. Readers re-read the pointer at most
every :data:`POINTER_TTL` seconds, so a version published from another machine is served within
that time.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from genofed.config.node import CONFIG_FILE, NodePaths, StoreSettings, load_config
from genofed.errors import ObjectStoreError
from genofed.formats.crypt4gh import ByteSource
from genofed.store import layout
from genofed.store.cache import VersionCache
from genofed.store.objects import ObjectFile, ObjectStore
from genofed.store.originals import CATALOGUE_PATH
from genofed.store.versions import LocalVersion, VersionFiles

if TYPE_CHECKING:
    from genofed.store.layout import VersionDraft

log = logging.getLogger(__name__)

#: Seconds a reader trusts what it read of the bucket (pointers, the list of datasets).
POINTER_TTL = 1.0
POINTER = "current"


class Backend(ABC):
    """The published versions of a node's datasets, and how a new one is published."""

    def __init__(self, datasets_dir: Path) -> None:
        #: Local: the versions themselves. S3: locks and staging only.
        self.datasets_dir = datasets_dir

    # -- reading -------------------------------------------------------------------------------
    @abstractmethod
    def dataset_names(self) -> list[str]:
        """Ids that may have a published version (see :meth:`current`), sorted."""

    @abstractmethod
    def current(self, dataset_id: str) -> str | None:
        """The name of the dataset's published version ("v3"), None if it has none."""

    @abstractmethod
    def published(self, dataset_id: str, version: str) -> bool:
        """Whether a version was published and is still kept."""

    @abstractmethod
    def open(self, dataset_id: str, version: str) -> VersionFiles:
        """The files of a published version."""

    # -- writing (with the dataset's lock held) ------------------------------------------------
    @abstractmethod
    def begin(self, dataset_id: str) -> None:
        """Clean up after interrupted publishes (staging directories are removed by the
        caller)."""

    @abstractmethod
    def previous(self, dataset_id: str) -> Path | None:
        """A local directory of the current version for a draft (see VersionDraft.previous)."""

    @abstractmethod
    def carry_previous(self, draft: VersionDraft, skip: frozenset[str]) -> None:
        """Make every file of the draft's previous version part of the draft, except `skip`."""

    @abstractmethod
    def publish(self, draft: VersionDraft, manifest: layout.Manifest) -> Path:
        """Name the version, write it and make it current; returns its local directory."""


class LocalBackend(Backend):
    """Versions as directories under NODE_DIR/datasets, `current` a symlink (:mod:`.layout`)."""

    def __init__(self, datasets_dir: Path) -> None:
        super().__init__(datasets_dir)
        # Looked up on every Beacon query: plain os calls on strings, and the directory listing
        # is re-read only when the datasets directory changes.
        self._dir = str(datasets_dir)
        self._listing: tuple[int, list[str]] = (-1, [])

    def dataset_names(self) -> list[str]:
        try:
            stamp = os.stat(self._dir).st_mtime_ns
        except OSError:
            return []
        if stamp != self._listing[0]:
            with os.scandir(self._dir) as entries:
                names = sorted(e.name for e in entries
                               if e.is_dir() and not e.name.startswith("."))
            self._listing = (stamp, names)
        return self._listing[1]

    def current(self, dataset_id: str) -> str | None:
        try:
            target = os.readlink(os.path.join(self._dir, dataset_id, "current"))
        except OSError:
            return None
        return os.path.basename(target)

    def published(self, dataset_id: str, version: str) -> bool:
        return os.path.isfile(os.path.join(self._dir, dataset_id, "versions", version,
                                           layout.MANIFEST))

    def open(self, dataset_id: str, version: str) -> VersionFiles:
        return LocalVersion(self.datasets_dir / dataset_id / "versions" / version)

    def begin(self, dataset_id: str) -> None:
        """Nothing: an interrupted publish leaves only a staging directory."""

    def previous(self, dataset_id: str) -> Path | None:
        return layout.current_version(layout.dataset_root(self.datasets_dir, dataset_id))

    def carry_previous(self, draft: VersionDraft, skip: frozenset[str]) -> None:
        """Hard links: versions are immutable."""
        if draft.previous is None:
            return
        for directory, _dirs, files in os.walk(draft.previous):
            relative = Path(directory).relative_to(draft.previous)
            (draft.staging / relative).mkdir(parents=True, exist_ok=True)
            for filename in files:
                if (relative / filename).as_posix() not in skip:
                    layout.link_or_copy(Path(directory) / filename,
                                        draft.staging / relative / filename)

    def publish(self, draft: VersionDraft, manifest: layout.Manifest) -> Path:
        manifest.version = layout.next_version_name(draft.root)
        manifest.write(draft.staging)
        return layout.publish(draft.root, draft.staging, manifest.version)


class ObjectBackend(Backend):
    """Versions under a bucket prefix (the module docstring), cached locally on demand."""

    def __init__(self, datasets_dir: Path, cache_dir: Path, settings: StoreSettings) -> None:
        super().__init__(datasets_dir)
        self.objects = ObjectStore(settings)
        self.cache = VersionCache(cache_dir)
        self._pointers: dict[str, tuple[float, str | None]] = {}
        self._names: tuple[float, list[str]] = (-POINTER_TTL, [])
        self._lock = threading.Lock()

    def _key(self, dataset_id: str, *parts: str) -> str:
        return self.objects.key("datasets", dataset_id, *parts)

    def _version_key(self, dataset_id: str, version: str) -> str:
        return self._key(dataset_id, "versions", version)

    # -- reading -------------------------------------------------------------------------------
    def dataset_names(self) -> list[str]:
        read_at, names = self._names
        now = time.monotonic()
        if now - read_at >= POINTER_TTL:
            names = self.objects.directories(self.objects.key("datasets"))
            self._names = (now, names)
        return names

    def current(self, dataset_id: str, *, fresh: bool = False) -> str | None:
        """The pointer, read again when older than POINTER_TTL (or when `fresh`)."""
        now = time.monotonic()
        cached = self._pointers.get(dataset_id)
        if not fresh and cached is not None and now - cached[0] < POINTER_TTL:
            return cached[1]
        try:
            text = self.objects.get(self._key(dataset_id, POINTER)).decode().strip()
        except FileNotFoundError:
            text = ""
        version = text if layout.VERSION_NAME.match(text) else None
        self._pointers[dataset_id] = (now, version)
        if cached is not None and version is not None and cached[1] != version:
            # A new version: what this machine cached of versions the store no longer keeps
            # goes (readers of those would find them gone from the bucket too).
            newest = _number(version)
            self.cache.prune(dataset_id, {f"v{n}" for n in range(
                newest - layout.KEEP_VERSIONS + 1, newest + 1)})
        return version

    def published(self, dataset_id: str, version: str) -> bool:
        current = self.current(dataset_id)
        if current is None or _number(version) > _number(current):
            return False  # a prefix beyond the pointer is an interrupted publish
        if version == current:
            return True
        try:
            self.objects.size(f"{self._version_key(dataset_id, version)}/{layout.MANIFEST}")
        except FileNotFoundError:
            return False
        return True

    def open(self, dataset_id: str, version: str) -> VersionFiles:
        return ObjectVersion(self, dataset_id, version)

    # -- writing -------------------------------------------------------------------------------
    def _versions(self, dataset_id: str) -> list[str]:
        names = self.objects.directories(self._key(dataset_id, "versions"))
        return sorted((n for n in names if layout.VERSION_NAME.match(n)), key=_number)

    def begin(self, dataset_id: str) -> None:
        current = self.current(dataset_id, fresh=True)
        upto = _number(current) if current else 0
        kept = []
        for name in self._versions(dataset_id):
            if _number(name) <= upto:
                kept.append(name)
                continue
            log.info("removing %s: a publish that did not finish",
                     self.objects.url(self._version_key(dataset_id, name)))
            self._delete_version(dataset_id, name)
        self.cache.prune(dataset_id, kept)
        # What the last publish left here that readers never take from the cache: the local
        # disk need not hold a second copy of the dataset while the next one is staged.
        self.cache.trim(dataset_id, (layout.GENOTYPES, layout.FILES))

    def previous(self, dataset_id: str) -> Path | None:
        """The current version's cache directory, with its manifest and file catalogue (what
        writers read); its other files are fetched when a draft links them
        (:func:`genofed.store.layout.link_or_copy`)."""
        current = self.current(dataset_id, fresh=True)
        if current is None:
            return None
        version = self.open(dataset_id, current)
        for relative in (layout.MANIFEST, CATALOGUE_PATH):
            version.local_copy(relative)
        return version.local_dir

    def carry_previous(self, draft: VersionDraft, skip: frozenset[str]) -> None:
        """Server-side copies at publish: the previous version's bytes never come here."""
        if draft.previous is None:
            return
        source = self._version_key(draft.dataset_id, draft.previous.name)
        for relative in self.objects.find(source):
            if relative not in skip:
                draft.carried[relative] = f"{source}/{relative}"

    def publish(self, draft: VersionDraft, manifest: layout.Manifest) -> Path:
        dataset_id = draft.dataset_id
        current = self.current(dataset_id, fresh=True)
        manifest.version = version = f"v{(_number(current) if current else 0) + 1}"
        manifest.write(draft.staging)
        target = self._version_key(dataset_id, version)
        files = {p.relative_to(draft.staging).as_posix(): p
                 for p in sorted(draft.staging.rglob("*")) if p.is_file()}
        self.objects.put_files([(p, f"{target}/{r}") for r, p in files.items()
                                if r != layout.MANIFEST])
        self.objects.copy([(source, f"{target}/{r}") for r, source in draft.carried.items()
                           if r not in files and r != layout.MANIFEST])
        self.objects.put_files([(files[layout.MANIFEST], f"{target}/{layout.MANIFEST}")])
        self.objects.put_bytes(self._key(dataset_id, POINTER), version.encode())  # published
        self._pointers[dataset_id] = (time.monotonic(), version)
        if draft.carried:  # only part of the version is here: the cache fills on demand
            shutil.rmtree(draft.staging, ignore_errors=True)
            local = self.cache.directory(dataset_id, version)
        else:
            local = self.cache.adopt(dataset_id, version, draft.staging)
        self._prune(dataset_id)
        return local

    def _prune(self, dataset_id: str) -> None:
        """Keep the newest KEEP_VERSIONS versions (in the bucket and in the cache)."""
        try:
            versions = self._versions(dataset_id)
            for old in versions[:-layout.KEEP_VERSIONS]:
                self._delete_version(dataset_id, old)
        except ObjectStoreError as exc:  # published already; the next writer retries
            log.warning("old versions of %s were not removed: %s", dataset_id, exc)
            return
        self.cache.prune(dataset_id, versions[-layout.KEEP_VERSIONS:])

    def _delete_version(self, dataset_id: str, version: str) -> None:
        """The manifest first, so that no reader opens a version half deleted."""
        key = self._version_key(dataset_id, version)
        self.objects.delete([f"{key}/{layout.MANIFEST}"])
        self.objects.delete([f"{key}/{r}" for r in self.objects.find(key)])


class ObjectVersion(VersionFiles):
    """A version kept in S3: small files are read whole, originals by byte ranges, genotypes
    through Zarr's store for S3, and local copies land in the node's cache."""

    def __init__(self, backend: ObjectBackend, dataset_id: str, version: str) -> None:
        self.objects = backend.objects
        self.cache = backend.cache
        self.key = backend._version_key(dataset_id, version)
        self.name = version
        self.location = self.objects.url(self.key)
        self.local_dir = backend.cache.directory(dataset_id, version)

    def read_bytes(self, relative: str) -> bytes:
        return self.objects.get(f"{self.key}/{relative}")

    def byte_source(self, relative: str) -> ByteSource:
        return ObjectFile(self.objects, f"{self.key}/{relative}")

    def zarr_store(self, relative: str) -> Any:
        return self.objects.zarr_store(f"{self.key}/{relative}")

    def local_copy(self, relative: str) -> Path:
        return self.cache.fetch(self.local_dir, relative,
                                lambda temporary: self.objects.download(
                                    f"{self.key}/{relative}", temporary))

    def total_size(self) -> int:
        return sum(self.objects.find(self.key).values())


def open_backend(paths: NodePaths, settings: StoreSettings) -> Backend:
    if not settings.url:
        return LocalBackend(paths.datasets)
    return ObjectBackend(paths.datasets, paths.cache, settings)


def backend_for(datasets_dir: Path) -> Backend:
    """The backend of the node whose datasets directory this is (local when it is not a node's:
    tests write versions into bare directories)."""
    node_dir = datasets_dir.parent
    if datasets_dir.name == "datasets" and (node_dir / CONFIG_FILE).is_file():
        config = load_config(node_dir)
        return open_backend(NodePaths(node_dir, config), config.store)
    return LocalBackend(datasets_dir)


def fetch_into_cache(path: Path) -> bool:
    """Fetch a missing file of a version kept in S3 into its place in the node's cache
    (`NODE_DIR/cache/<id>/<version>/...`); False if `path` is not such a place."""
    parts = path.parts
    for i in range(len(parts) - 3, 0, -1):
        node_dir = Path(*parts[:i])
        if parts[i] == "cache" and (node_dir / CONFIG_FILE).is_file():
            backend = backend_for(node_dir / "datasets")
            if not isinstance(backend, ObjectBackend):
                return False
            dataset_id, version = parts[i + 1], parts[i + 2]
            backend.open(dataset_id, version).local_copy("/".join(parts[i + 3:]))
            return True
    return False


def _number(version: str) -> int:
    return int(version[1:])

