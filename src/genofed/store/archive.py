"""A dataset's original files, kept Crypt4GH-encrypted at rest: ingest's VCF/BCF, and BAM, CRAM,
VCF and BCF files added with `genofed files add`.

Each operation here publishes a new version of the dataset through
:func:`genofed.store.layout.new_version` (atomic: on any error nothing changes); the version
holds everything the previous one held, hard-linked. How one file is encrypted and indexed is
:mod:`genofed.store.archive_writer`; where the files lie and how they are read back is
:mod:`genofed.store.originals`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.errors import ArchiveError, Crypt4ghError
from genofed.formats.bgzf_layout import KnownLayout
from genofed.formats.crypt4gh import KeyPair
from genofed.store import layout
from genofed.store.archive_writer import archive_file
from genofed.store.backends import open_backend
from genofed.store.metadata import DATASET_ID_PATTERN
from genofed.store.originals import (
    CATALOGUE_PATH,
    ROLE_ADDED,
    ROLE_VARIANTS,
    Catalogue,
    CatalogueEntry,
    read_catalogue,
    write_catalogue,
)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_DATASET_ID = re.compile(DATASET_ID_PATTERN)


@dataclass
class AddResult:
    dataset_id: str
    version: str
    entry: CatalogueEntry


@dataclass
class DeliveryResult:
    dataset_id: str
    #: The dataset's version after the command (a new one only when the setting changed).
    version: str
    plain_delivery: bool
    changed: bool


def node_keys(paths: NodePaths) -> KeyPair:
    """The node's Crypt4GH key pair (from its keys directory, apart from the data)."""
    try:
        return KeyPair.load(paths.c4gh_secret_key, paths.c4gh_public_key)
    except (Crypt4ghError, FileNotFoundError) as exc:
        raise ArchiveError(f"the node's Crypt4GH keys cannot be read: {exc}") from None


def archive_ingested_variants(keys: KeyPair, staging: Path, source: Path,
                              previous: Path | None, *,
                              known: KnownLayout | None = None) -> CatalogueEntry:
    """Called by ingest with the version being staged: encrypt the dataset's VCF/BCF (with its
    index if one lies beside it) into `staging/files/`, and carry over from the previous version
    the files added with `genofed files add` and the dataset's delivery setting. `known`: the
    block layout of a bgzipped VCF when ingest has already seen it."""
    target = staging / layout.FILES
    target.mkdir(exist_ok=True)
    name = file_stem(source.name)
    index = next((source.with_name(source.name + s) for s in (".tbi", ".csi")
                  if source.with_name(source.name + s).is_file()), None)
    entry = archive_file(source, target, name=name, role=ROLE_VARIANTS, keys=keys, index=index,
                         layout=known)
    catalogue = Catalogue([entry])
    if previous is not None:
        before = read_catalogue(previous, keys)
        catalogue.plain_delivery = before.plain_delivery
        for kept in before.files:
            if kept.role != ROLE_ADDED or (kept.name, kept.format) == (entry.name, entry.format):
                continue
            for part in (kept.data, kept.index, kept.blocks):
                if part:
                    layout.link_or_copy(previous / layout.FILES / part, target / part)
            catalogue.files.append(kept)
    write_catalogue(staging, catalogue, keys)
    return entry


def add_file(node_dir: Path, dataset_id: str, source: Path, *, index: Path | None = None,
             name: str | None = None) -> AddResult:
    """Archive one more file into a dataset: a new version holding everything the current one
    holds plus the file, published atomically."""
    config = load_config(node_dir)
    paths = NodePaths(node_dir, config)
    keys = node_keys(paths)
    if not source.is_file():
        raise ArchiveError(f"{source}: no such file")
    if index is not None and not index.is_file():
        raise ArchiveError(f"{index}: no such index file")
    name = name or file_stem(source.name)
    if not _NAME.match(name):
        raise ArchiveError(f"file name {name!r} is not usable as an htsget id part: use "
                           "letters, digits, '.', '_' and '-' (give one with --name)")
    with _file_version(paths, config, dataset_id) as (draft, catalogue):
        target = draft.staging / layout.FILES
        target.mkdir(exist_ok=True)
        entry = archive_file(source, target, name=name, role=ROLE_ADDED, keys=keys, index=index)
        if any((e.name, e.format) == (entry.name, entry.format) for e in catalogue.files):
            raise ArchiveError(f"dataset {dataset_id!r} already holds a {entry.format} file "
                               f"named {entry.name!r}; choose another with --name")
        catalogue.files.append(entry)
        version = _publish(draft, catalogue, keys)
    return AddResult(dataset_id, version, entry)


def set_plain_delivery(node_dir: Path, dataset_id: str, allowed: bool) -> DeliveryResult:
    """Allow (or stop) plain htsget delivery of a dataset's files; without it, slices leave the
    node only Crypt4GH-encrypted for the requester. The setting lives in the dataset's (encrypted)
    file catalogue, so a change publishes a new version; asking for the setting the dataset
    already has changes nothing."""
    config = load_config(node_dir)
    paths = NodePaths(node_dir, config)
    keys = node_keys(paths)
    with _file_version(paths, config, dataset_id) as (draft, catalogue):
        assert draft.previous is not None
        if catalogue.plain_delivery == allowed:
            return DeliveryResult(dataset_id, draft.previous.name, allowed, False)
        catalogue.plain_delivery = allowed
        version = _publish(draft, catalogue, keys)
    return DeliveryResult(dataset_id, version, allowed, True)


@contextmanager
def _file_version(paths: NodePaths, config: NodeConfig,
                  dataset_id: str) -> Iterator[tuple[layout.VersionDraft, Catalogue]]:
    """A new version of a published dataset with the previous version's files linked in, and
    its file catalogue (decrypted) to change before :func:`_publish`."""
    backend = open_backend(paths, config.store)
    current = backend.current(dataset_id) if _DATASET_ID.match(dataset_id) else None
    if current is None:
        raise ArchiveError(f"dataset {dataset_id!r} has no published version on this node; "
                           "ingest its VCF/BCF first (`genofed ingest`)")
    with layout.new_version(backend, dataset_id) as draft:
        assert draft.previous is not None
        catalogue = read_catalogue(backend.open(dataset_id, draft.previous.name),
                                   node_keys(paths))
        draft.link_previous(skip=frozenset({CATALOGUE_PATH}))
        yield draft, catalogue


def _publish(draft: layout.VersionDraft, catalogue: Catalogue, keys: KeyPair) -> str:
    write_catalogue(draft.staging, catalogue, keys)
    assert draft.previous is not None
    manifest = layout.Manifest.read(draft.previous)
    manifest.created = datetime.now(UTC).isoformat(timespec="seconds")
    return draft.publish(manifest).name


def list_files(node_dir: Path) -> list[tuple[str, str, bool, CatalogueEntry]]:
    """(dataset id, version, plain delivery allowed, entry) for every archived file of every
    published dataset."""
    config = load_config(node_dir)
    paths = NodePaths(node_dir, config)
    keys = node_keys(paths)
    backend = open_backend(paths, config.store)
    rows: list[tuple[str, str, bool, CatalogueEntry]] = []
    for dataset_id in backend.dataset_names():
        version = backend.current(dataset_id)
        if version is not None and backend.published(dataset_id, version):
            catalogue = read_catalogue(backend.open(dataset_id, version), keys)
            rows.extend((dataset_id, version, catalogue.plain_delivery, e)
                        for e in catalogue.files)
    return rows


def file_stem(filename: str) -> str:
    """'sample1.vcf.gz.c4gh' -> 'sample1'."""
    stem = filename
    for suffix in (".c4gh", ".gz", ".bgz", ".vcf", ".bcf", ".bam", ".cram"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    return stem or filename
