"""The node-local cache of dataset versions kept in S3: `NODE_DIR/cache/<dataset>/<version>/`
mirrors a version's directory, holding the files and directories fetched so far (what needs a
local path: memory-mapped sites, DuckDB's Parquet).

Versions are immutable, so an entry never needs invalidating. Each one is downloaded under a
temporary name beside its place and renamed into it, so concurrent server processes never see
half a file or half a directory: an entry that exists is complete. Versions the store no longer
keeps are removed by the next writer (:meth:`VersionCache.prune`).
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Collection
from pathlib import Path


class VersionCache:
    def __init__(self, root: Path) -> None:
        self.root = root

    def directory(self, dataset_id: str, version: str) -> Path:
        return self.root / dataset_id / version

    def fetch(self, directory: Path, relative: str, download: Callable[[Path], None]) -> Path:
        """The local path of `relative` in a version's cache `directory`, fetched by
        `download(temporary path)` (a file or a whole directory) unless it is there already.
        What the version does not hold (FileNotFoundError) is a path that does not exist, as
        it would be in a version directory on disk."""
        target = directory / relative
        if target.exists():
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{secrets.token_hex(6)}.part")
        try:
            try:
                download(temporary)
            except FileNotFoundError:
                return target
            try:
                os.rename(temporary, target)  # atomic; a file replaces one fetched meanwhile
            except OSError:
                if not target.exists():  # a directory fetched meanwhile is as good as ours
                    raise
        finally:
            _remove(temporary)
        return target

    def prune(self, dataset_id: str, keep: Collection[str]) -> None:
        """Remove the cached versions of a dataset that are not in `keep`."""
        try:
            cached = list((self.root / dataset_id).iterdir())
        except FileNotFoundError:
            return
        for entry in cached:
            if entry.name not in keep:
                _remove(entry)

    def trim(self, dataset_id: str, names: Collection[str]) -> None:
        """Remove the entries `names` (e.g. the genotypes, read from the bucket directly) from
        every cached version of a dataset."""
        try:
            cached = list((self.root / dataset_id).iterdir())
        except FileNotFoundError:
            return
        for version in cached:
            for name in names:
                _remove(version / name)

    def adopt(self, dataset_id: str, version: str, staging: Path) -> Path:
        """Make a fully written local version directory the cache of `version` (after it was
        uploaded): the machine that wrote it need not fetch it again."""
        target = self.directory(dataset_id, version)
        target.parent.mkdir(parents=True, exist_ok=True)
        _remove(target)
        os.rename(staging, target)
        return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
