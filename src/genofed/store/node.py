"""A node's store: the datasets it holds, each at its current published version."""

from __future__ import annotations

import re
import threading
from pathlib import Path

from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.errors import UnknownDatasetError
from genofed.formats.crypt4gh import KeyPair
from genofed.store import layout
from genofed.store.backends import Backend, open_backend
from genofed.store.dataset import Dataset
from genofed.store.metadata import DATASET_ID_PATTERN
from genofed.store.originals import ArchivedFile, ArchivedFileCache, CatalogueEntry

_DATASET_ID = re.compile(DATASET_ID_PATTERN)


class NodeStore:
    """Open with :meth:`open`; `dataset(id)` always returns the currently published version,
    wherever the node keeps its datasets (NODE_DIR/datasets, or S3: `[store]` in node.toml)."""

    def __init__(self, root: Path, config: NodeConfig) -> None:
        self.root = root
        self.config = config
        self.paths = NodePaths(root, config)
        self.backend: Backend = open_backend(self.paths, config.store)
        self._cache: dict[tuple[str, str], Dataset] = {}
        self._lock = threading.Lock()
        self._key: bytes | None = None
        self._keys: KeyPair | None = None
        self._files: ArchivedFileCache | None = None

    @classmethod
    def open(cls, root: str | Path) -> NodeStore:
        root = Path(root)
        return cls(root, load_config(root))

    def dataset_ids(self) -> list[str]:
        """Ids of the datasets with a published version, sorted."""
        return [i for i in self.backend.dataset_names() if self._current(i) is not None]

    def _current(self, dataset_id: str) -> str | None:
        """The current version's name (None: not published)."""
        version = self.backend.current(dataset_id)
        if version is None or (dataset_id, version) in self._cache:  # versions are immutable
            return version
        return version if self.backend.published(dataset_id, version) else None

    def dataset(self, dataset_id: str) -> Dataset:
        """The currently published version of a dataset."""
        # The id pattern admits no path separators and no leading dot.
        version = self._current(dataset_id) if _DATASET_ID.match(dataset_id) else None
        if version is None:
            raise UnknownDatasetError(dataset_id, self.dataset_ids())
        return self._opened(dataset_id, version)

    def _opened(self, dataset_id: str, version: str) -> Dataset:
        key = (dataset_id, version)
        with self._lock:
            cached = self._cache.get(key)
        if cached is None:
            opened = Dataset(self.backend.open(dataset_id, version), self._secret_key())
            with self._lock:
                cached = self._cache.setdefault(key, opened)
        return cached

    def dataset_version(self, dataset_id: str, version: str) -> Dataset | None:
        """A published version of a dataset, current or not (e.g. the one an htsget ticket was
        issued for); None when the node no longer keeps it."""
        if not _DATASET_ID.match(dataset_id) or not layout.VERSION_NAME.match(version):
            return None
        with self._lock:
            cached = self._cache.get((dataset_id, version))
        if cached is not None:
            return cached
        if not self.backend.published(dataset_id, version):
            return None
        return self._opened(dataset_id, version)

    @property
    def keys(self) -> KeyPair:
        """The node's Crypt4GH key pair (files at rest; re-encryption for a requester)."""
        if self._keys is None:
            from genofed.store.archive import node_keys

            self._keys = node_keys(self.paths)
        return self._keys

    def open_file(self, dataset: Dataset, entry: CatalogueEntry) -> ArchivedFile:
        """An archived file of a dataset version, opened for slicing (kept in a small cache;
        versions are immutable)."""
        if self._files is None:
            self._files = ArchivedFileCache(self.keys)
        return self._files.get(dataset.stored, entry)

    def _secret_key(self) -> bytes | None:
        """The node's Crypt4GH secret key (opens the encrypted individuals tables)."""
        if self._key is None and self.paths.c4gh_secret_key.is_file():
            from genofed.formats.crypt4gh import load_secret_key

            self._key = load_secret_key(self.paths.c4gh_secret_key)
        return self._key

    def datasets(self) -> list[Dataset]:
        return [self.dataset(i) for i in self.dataset_ids()]
