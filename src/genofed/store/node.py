"""A node's store: the datasets it holds, each at its current published version."""

from __future__ import annotations

import threading
from pathlib import Path

from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.store import layout
from genofed.store.dataset import Dataset


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
        self._cache: dict[Path, Dataset] = {}
        self._lock = threading.Lock()

    @classmethod
    def open(cls, root: str | Path) -> NodeStore:
        root = Path(root)
        return cls(root, load_config(root))

    def dataset_ids(self) -> list[str]:
        if not self.paths.datasets.is_dir():
            return []
        return sorted(p.name for p in self.paths.datasets.iterdir()
                      if p.is_dir() and layout.current_version(p) is not None)

    def dataset(self, dataset_id: str) -> Dataset:
        root = layout.dataset_root(self.paths.datasets, dataset_id)
        version = layout.current_version(root) if root.is_dir() else None
        if version is None:
            raise UnknownDatasetError(dataset_id, self.dataset_ids())
        with self._lock:
            cached = self._cache.get(version)
            if cached is None:
                cached = self._cache[version] = Dataset(version)
            return cached

    def datasets(self) -> list[Dataset]:
        return [self.dataset(i) for i in self.dataset_ids()]
