"""A node's store: the datasets it holds, each at its current published version."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.store.dataset import Dataset
from genofed.store.metadata import DATASET_ID_PATTERN

_DATASET_ID = re.compile(DATASET_ID_PATTERN)


class UnknownDatasetError(KeyError):
    """No published dataset by that id on this node."""

    def __init__(self, dataset_id: str, known: list[str]) -> None:
        self.dataset_id = dataset_id
        listing = ", ".join(known) if known else "none yet: ingest one with `genofed ingest`"
        super().__init__(f"unknown dataset {dataset_id!r}; this node has: {listing}")

    def __str__(self) -> str:
        return str(self.args[0])


class NodeStore:
    """Open with :meth:`open`; `dataset(id)` always returns the currently published version."""

    def __init__(self, root: Path, config: NodeConfig) -> None:
        self.root = root
        self.config = config
        self.paths = NodePaths(root, config)
        self._cache: dict[str, Dataset] = {}
        self._lock = threading.Lock()
        # Looked up on every Beacon query: plain os calls on strings, and the directory listing
        # is re-read only when the datasets directory changes.
        self._datasets_dir = str(self.paths.datasets)
        self._listing: tuple[int, list[str]] = (-1, [])
        self._key: bytes | None = None

    @classmethod
    def open(cls, root: str | Path) -> NodeStore:
        root = Path(root)
        return cls(root, load_config(root))

    def dataset_ids(self) -> list[str]:
        """Ids of the datasets with a published version, sorted."""
        return [i for i in self._directories() if self._current(i) is not None]

    def _directories(self) -> list[str]:
        try:
            stamp = os.stat(self._datasets_dir).st_mtime_ns
        except OSError:
            return []
        if stamp != self._listing[0]:
            with os.scandir(self._datasets_dir) as entries:
                names = sorted(e.name for e in entries
                               if e.is_dir() and not e.name.startswith("."))
            self._listing = (stamp, names)
        return self._listing[1]

    def _current(self, dataset_id: str) -> str | None:
        """The current version directory of a dataset, as a string (None: not published)."""
        root = os.path.join(self._datasets_dir, dataset_id)
        try:
            target = os.path.join(root, os.readlink(os.path.join(root, "current")))
        except OSError:
            return None
        if target in self._cache:  # versions are immutable once published
            return target
        return target if os.path.isfile(os.path.join(target, "manifest.json")) else None

    def dataset(self, dataset_id: str) -> Dataset:
        """The currently published version of a dataset."""
        # The id pattern admits no path separators and no leading dot.
        version = self._current(dataset_id) if _DATASET_ID.match(dataset_id) else None
        if version is None:
            raise UnknownDatasetError(dataset_id, self.dataset_ids())
        with self._lock:
            cached = self._cache.get(version)
            if cached is None:
                cached = self._cache[version] = Dataset(Path(version), self._secret_key())
            return cached

    def _secret_key(self) -> bytes | None:
        """The node's Crypt4GH secret key (opens the encrypted individuals tables)."""
        if self._key is None and self.paths.c4gh_secret_key.is_file():
            from genofed.files.crypt4gh_io import load_secret_key

            self._key = load_secret_key(self.paths.c4gh_secret_key)
        return self._key

    def datasets(self) -> list[Dataset]:
        return [self.dataset(i) for i in self.dataset_ids()]
