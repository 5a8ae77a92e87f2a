"""The files of one published dataset version, wherever the store keeps them: a local directory
(:class:`LocalVersion`) or a prefix in S3 (:class:`genofed.store.objects.ObjectVersion`).

Readers in this package go through this interface and never assume a local path: small files
are read whole (:meth:`VersionFiles.read_bytes`), the encrypted originals by byte ranges
(:meth:`VersionFiles.byte_source`), the genotypes through a Zarr store
(:meth:`VersionFiles.zarr_store`), and whatever needs a local path (memory-mapped sites) through
:meth:`VersionFiles.local_copy`. Relative names use '/' whatever the backend.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from genofed.formats.crypt4gh import ByteSource, LocalFile


class VersionFiles(ABC):
    """One published, immutable dataset version."""

    #: The version's name ("v3").
    name: str
    #: Where it is, for messages: a directory, or an s3:// URL.
    location: str
    #: Its directory on this machine: the version itself, or (S3) its node-local cache, which
    #: holds only what :meth:`local_copy` fetched.
    local_dir: Path

    @abstractmethod
    def read_bytes(self, relative: str) -> bytes:
        """A file's content; FileNotFoundError if the version has no such file."""

    def read_optional(self, relative: str) -> bytes | None:
        try:
            return self.read_bytes(relative)
        except FileNotFoundError:
            return None

    @abstractmethod
    def byte_source(self, relative: str) -> ByteSource:
        """A file for reading by byte ranges (the encrypted originals)."""

    @abstractmethod
    def zarr_store(self, relative: str) -> Any:
        """What `zarr.open_group` reads a group of this version from (a path or a store)."""

    @abstractmethod
    def local_copy(self, relative: str) -> Path:
        """A local path of a file or directory of this version (fetched once if need be)."""

    @abstractmethod
    def total_size(self) -> int:
        """Bytes the version takes in the store."""


class LocalVersion(VersionFiles):
    """A version directory on this machine's disk."""

    def __init__(self, directory: Path) -> None:
        self.local_dir = directory
        self.name = directory.name
        self.location = str(directory)

    def read_bytes(self, relative: str) -> bytes:
        return (self.local_dir / relative).read_bytes()

    def byte_source(self, relative: str) -> ByteSource:
        return LocalFile(self.local_dir / relative)

    def zarr_store(self, relative: str) -> Any:
        return str(self.local_dir / relative)

    def local_copy(self, relative: str) -> Path:
        return self.local_dir / relative

    def total_size(self) -> int:
        return sum(f.stat().st_size for f in self.local_dir.rglob("*") if f.is_file())


def as_version(version: Path | VersionFiles) -> VersionFiles:
    """A version given as a local directory (writers, tests) or as what the store opened."""
    return LocalVersion(version) if isinstance(version, Path) else version
