"""Ingest: VCF/BCF + Phenopackets + metadata -> a new published version of a dataset.

Split the way bio2zarr splits a conversion: the source (:mod:`~genofed.ingest.sources`,
:mod:`~genofed.ingest.vcf_records`), the work (:mod:`~genofed.ingest.pieces` run by
:mod:`~genofed.ingest.work`), and the writers, which are the store's (:mod:`genofed.store`).
Parsing and writing overlap: pieces are parsed a few at a time, and each genotype chunk is
compressed as soon as the pieces covering it are parsed, so both phases keep every core busy.

Everything is written to a staging directory and published by an atomic rename
(:func:`genofed.store.layout.new_version`): a failure at any point, SIGKILL included, leaves the
node as it was.
"""

from __future__ import annotations

import gc
import shutil
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from genofed import __version__
from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.errors import InputError
from genofed.formats.bgzf_layout import BlockRow, KnownLayout
from genofed.formats.crypt4gh import KeyPair
from genofed.ingest import inputs
from genofed.ingest.counting import group_membership, sample_classes
from genofed.ingest.genes import load_gene_table
from genofed.ingest.phenopackets import Individual
from genofed.ingest.pieces import (
    PieceResult,
    SpillTracker,
    chunk_plan,
    chunks_overlapping,
    parse_piece,
    write_chunk,
)
from genofed.ingest.sources import Piece, VcfSource
from genofed.ingest.vcf_records import PieceLineError
from genofed.ingest.work import Cluster, WorkerContext, WorkManager
from genofed.store import genotypes, layout, sites
from genofed.store import individuals as individuals_table
from genofed.store.archive import archive_ingested_variants, node_keys
from genofed.store.metadata import DatasetMetadata
from genofed.store.progress import ProgressFile

#: progress(stage, done, total): stages are "parse" and "write" (units: bytes / chunks).
ProgressCallback = Callable[[str, int, int], None]


@dataclass
class IngestResult:
    dataset_id: str
    version: str
    unchanged: bool
    manifest: layout.Manifest
    seconds: float
    version_dir: Path
    sizes: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class _Inputs:
    source: VcfSource
    meta: DatasetMetadata
    people: dict[str, Individual]
    populations: dict[str, str]
    fingerprint: str
    keys: KeyPair


def ingest(node_dir: Path, dataset_id: str, vcf: Path, *, phenopackets: Path | None = None,
           metadata: Path | None = None, populations: Path | None = None,
           assembly: str | None = None, genes: Path | None = None, workers: int | None = None,
           progress: ProgressCallback | None = None,
           scheduler: str | None = None) -> IngestResult:
    """Ingest one dataset into a node; see the module docstring. Raises IngestError subclasses.

    `workers`: worker processes (default: one per core); with 1, everything runs in this
    process (a debugger can step through it). `scheduler`: the address of a dask.distributed
    scheduler whose workers do the work instead (`workers` is then ignored); None: node.toml's
    `[ingest] scheduler`; empty: this machine (see :mod:`genofed.ingest.cluster`)."""
    started = time.perf_counter()
    config = load_config(node_dir)
    cluster = _cluster(scheduler, config)
    # Workers elsewhere would resolve a relative node directory against their own.
    paths = NodePaths(node_dir.absolute() if cluster else node_dir, config)
    meta = inputs.load_dataset_metadata(dataset_id, metadata, assembly)
    source = VcfSource(vcf)
    samples = source.header.samples
    people = inputs.load_individuals(phenopackets, samples, vcf)
    population_of = inputs.load_populations(populations, samples, meta.population)
    gene_table = load_gene_table(genes) if genes is not None else None
    given = _Inputs(source, meta, people, population_of,
                    inputs.fingerprint(vcf, phenopackets, meta, population_of, genes),
                    node_keys(paths))

    with layout.new_version(paths.datasets, dataset_id) as draft:
        if draft.previous is not None:
            manifest = layout.Manifest.read(draft.previous)
            if manifest.fingerprint == given.fingerprint:
                return IngestResult(dataset_id, manifest.version, True, manifest,
                                    time.perf_counter() - started, draft.previous,
                                    _sizes(draft.previous))
        under_way = ProgressFile(draft.root)  # what the node's /metrics shows meanwhile
        try:
            with _without_cycle_collection():  # inherited by the forked workers
                manifest = _build_version(draft, given, workers or _cores(),
                                          _reporting(under_way, progress), cluster)
            if gene_table is not None:
                pq.write_table(gene_table, draft.staging / layout.GENES)
            final = draft.publish(manifest)
        finally:
            under_way.remove()
    return IngestResult(dataset_id, manifest.version, False, manifest,
                        time.perf_counter() - started, final, _sizes(final))


def _reporting(under_way: ProgressFile, progress: ProgressCallback | None) -> ProgressCallback:
    def report(stage: str, done: int, total: int) -> None:
        under_way.report(stage, done, total)
        if progress is not None:
            progress(stage, done, total)

    return report


def _cluster(scheduler: str | None, config: NodeConfig) -> Cluster | None:
    """The scheduler given, else node.toml's; None: ingest on this machine."""
    if scheduler is None:
        return Cluster(config.ingest.scheduler) if config.ingest.scheduler else None
    return Cluster(scheduler, "--scheduler") if scheduler else None


def _cores() -> int:
    import os

    return os.cpu_count() or 1


@contextmanager
def _without_cycle_collection() -> Iterator[None]:
    """Ingest makes millions of small acyclic objects (alleles, ids, filters): the cycle
    collector would walk them over and over (~5% of the CPU) and find nothing to free."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _build_version(draft: layout.VersionDraft, given: _Inputs, workers: int,
                   progress: ProgressCallback | None,
                   cluster: Cluster | None = None) -> layout.Manifest:
    staging, source = draft.staging, given.source
    samples = source.header.samples
    sexes = {s: p.sex for s, p in given.people.items()} if given.people else None
    group_names, membership = group_membership(samples, sexes, given.populations)
    spill = staging / "spill"
    spill.mkdir()
    group = staging / layout.GENOTYPES
    genotypes.prepare_call_arrays(group)  # chunks are written before the arrays' metadata
    context = WorkerContext(source, spill, sample_classes(membership),
                            genotypes.ChunkWriter(group, len(samples)))
    pieces = source.pieces()
    estimated = sum(b.payload_size for b in source.blocks) or 1
    results: list[PieceResult] = []
    offsets = [0]
    spills = SpillTracker(spill)
    with WorkManager(context, workers, cluster) as work:
        queue = iter(pieces)
        parsing: deque[tuple[Piece, Future[PieceResult]]] = deque()
        writes: list[Future[None]] = []

        def parse_next() -> None:
            piece = next(queue, None)
            if piece is not None:
                parsing.append((piece, work.submit(parse_piece, piece)))

        def write_chunks(upto: int, n_records: int) -> None:
            while len(writes) * genotypes.VARIANT_CHUNK < upto:
                plan = chunk_plan(len(writes), offsets, results, n_records)
                writes.append(work.submit(write_chunk, plan))
                spills.release_when_done(writes[-1], [s.piece for s in plan.sources])

        # A bgzipped VCF is archived once parsed: the parse has seen every block, so the
        # archive need not inflate it again. Other inputs are archived alongside the parse.
        # Archiving needs the node's secret key, which never goes to a cluster's workers: there
        # this process archives, at the end.
        archive_here = work.cluster is not None
        known: KnownLayout | None = None
        archived = (work.submit(_archive, (given.keys, staging, draft.previous, None))
                    if source.kind != "bgzf-vcf" and not archive_here else None)
        for _ in range(work.workers + 1):
            parse_next()
        done_bytes = 0
        while parsing:
            piece, future = parsing.popleft()
            try:
                result = future.result()
            except PieceLineError as err:
                work.cancel_pending()
                line = source.lines_before(piece) + err.index + 1
                raise InputError(source.name, err.problem, line=line, field=err.field) from None
            results.append(result)
            offsets.append(offsets[-1] + result.n_records)
            spills.expect(result.index, chunks_overlapping(offsets[-2], offsets[-1]))
            parse_next()
            write_chunks(offsets[-1] // genotypes.VARIANT_CHUNK * genotypes.VARIANT_CHUNK,
                         offsets[-1])
            if progress:
                done_bytes += sum(b.payload_size for b in
                                  source.blocks[piece.first_block : piece.last_block])
                progress("parse", done_bytes if source.blocks else len(results),
                         estimated if source.blocks else len(pieces))
        n_records = offsets[-1]
        write_chunks(n_records, n_records)
        if source.kind == "bgzf-vcf":
            known = KnownLayout([BlockRow(b.offset, b.size, b.payload_size)
                                 for b in source.blocks],
                                header_size=len(source.header.text.encode()),
                                aligned=all(r.lines_aligned for r in results))
            if not archive_here:  # a worker archives once it has written the last chunks
                archived = work.submit(_archive, (given.keys, staging, draft.previous, known))
        # Everything else is written here while the workers compress the last chunks.
        contigs = _contigs(source, results)
        genotypes.write_metadata(group, _variant_columns(source, results, contigs), len(samples),
                                 header=_header_without_samples(source.header.text),
                                 assembly_id=given.meta.assembly_id)
        n_sites = sites.write_sites(staging, contigs,
                                    _site_rows(results, offsets, contigs), group_names)
        individuals_table.write(staging, inputs.individual_rows(samples, given.people,
                                                                given.populations), given.keys)
        (staging / layout.METADATA).write_text(given.meta.to_json())
        if archived is None:
            _archive(context, (given.keys, staging, draft.previous, known))
        for i, write in enumerate(writes):
            write.result()
            if progress:
                progress("write", i + 1, len(writes))
        if archived is not None:
            archived.result()
    shutil.rmtree(spill)
    return layout.Manifest(
        dataset_id=given.meta.id, version="", fingerprint=given.fingerprint,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        n_samples=len(samples), n_records=n_records, n_sites=n_sites,
        n_individuals_with_phenopackets=len(given.people), contigs=contigs, groups=group_names,
        source={"vcf": source.name, "kind": source.kind, "genofed": __version__},
    )


def _archive(context: WorkerContext,
             job: tuple[KeyPair, Path, Path | None, KnownLayout | None]) -> None:
    """Keep the original VCF/BCF encrypted in the version (a task: a worker of the local pool
    runs it, or this process on a cluster)."""
    keys, staging, previous, known = job
    archive_ingested_variants(keys, staging, context.source.path, previous, known=known)


def _contigs(source: VcfSource, results: list[PieceResult]) -> list[str]:
    """The header's contigs, then any others in the order records name them."""
    names = [c.id for c in source.header.contigs]
    seen = set(names)
    for result in results:
        for name in result.contigs:
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def _variant_columns(source: VcfSource, results: list[PieceResult],
                     contigs: list[str]) -> genotypes.VariantColumns:
    index = {name: i for i, name in enumerate(contigs)}
    lengths = {c.id: c.length for c in source.header.contigs}
    variant_contig = np.concatenate(
        [np.asarray([index[n] for n in r.contigs], dtype=np.int16)[r.contig] if r.n_records
         else np.empty(0, np.int16) for r in results]) if results else np.empty(0, np.int16)
    filter_ids = list(source.header.filters)
    known = set(filter_ids)
    for r in results:
        for fs in r.filters:
            for f in fs:
                if f not in known:
                    known.add(f)
                    filter_ids.append(f)
    return genotypes.VariantColumns(
        contigs=contigs, contig_lengths=[lengths.get(c) for c in contigs],
        contig=variant_contig,
        position=(np.concatenate([r.position for r in results]) if results
                  else np.empty(0, np.int32)),
        alleles=[a for r in results for a in r.alleles],
        ids=[i for r in results for i in r.ids],
        quality=(np.concatenate([r.quality for r in results]) if results
                 else np.empty(0, np.float32)),
        filter_ids=filter_ids, filters=[fs for r in results for fs in r.filters])


def _site_rows(results: list[PieceResult], offsets: list[int],
               contigs: list[str]) -> list[sites.SiteRows]:
    """One piece's biallelic rows each, in record order (the sites writer sorts them)."""
    index = {name: i for i, name in enumerate(contigs)}
    parts = []
    for result, offset in zip(results, offsets, strict=False):
        local = np.asarray([index[n] for n in result.contigs], dtype=np.int32)
        records = result.counts.record
        allele = result.counts.allele
        alleles = genotypes.pad_string_lists(result.alleles, "")  # (records, alleles)
        ref_len = np.fromiter(map(len, alleles[:, 0]), dtype=np.int32, count=len(alleles))
        picked = alleles[records]
        alts = picked[np.arange(len(records)), allele.astype(np.int64)]
        alts[allele == 0] = "."  # a record without ALT
        pos = result.position[records]
        parts.append(sites.SiteRows(
            contig=local[result.contig[records]] if len(records) else np.empty(0, np.int32),
            pos=pos, end=pos + ref_len[records] - 1,
            ids=np.asarray(result.ids, dtype=object)[records].tolist(),
            refs=picked[:, 0].tolist(), alts=alts.tolist(),
            variant_index=records + int(offset), allele_index=result.counts.allele,
            ac=result.counts.ac, an=result.counts.an))
    return parts


def _header_without_samples(text: str) -> str:
    """Sample names stay in the encrypted individuals table: the genotype store's copy of the
    header keeps the columns up to FORMAT."""
    lines = text.rstrip("\n").split("\n")
    if lines and lines[-1].startswith("#CHROM"):
        lines[-1] = "\t".join(lines[-1].split("\t")[:9])
    return "\n".join(lines) + "\n"


def _sizes(version_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for entry in version_dir.iterdir():
        if entry.is_dir():
            sizes[entry.name] = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        else:
            sizes[entry.name] = entry.stat().st_size
    sizes["total"] = sum(sizes.values())
    return sizes
