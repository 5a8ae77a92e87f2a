"""Ingest: VCF/BCF + Phenopackets + metadata -> a new published version of a dataset.

Two parallel phases over a process pool (fork):

1. each worker inflates and parses one piece of the VCF, computes allele counts for every group
   (all, female, male, each population) by counting per sample class (samples alike in every
   group) in C, and spills the piece's genotypes to the staging directory as .npy;
2. as soon as the pieces covering a Zarr chunk (variants x samples) are parsed, a worker gathers
   its rows, compresses and writes it, and the spills no longer needed are deleted (so the
   kernel reuses their memory instead of finding fresh pages).

Everything is written to a staging directory and published by an atomic rename
(:mod:`genofed.store.layout`): a failure at any point, SIGKILL included, leaves the node as it was.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import itertools
import json
import multiprocessing
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from genofed import __version__
from genofed.config.node import NodePaths, load_config
from genofed.files import archive as files_archive
from genofed.files.bgzf_layout import BlockRow, KnownLayout
from genofed.files.crypt4gh_io import KeyPair, encrypt_bytes
from genofed.ingest import _calls
from genofed.ingest.errors import IngestError, InputError
from genofed.ingest.genes import load_gene_table
from genofed.ingest.phenopackets import Individual, load_phenopackets
from genofed.ingest.sources import Piece, VcfSource
from genofed.ingest.vcf_records import (
    FLAG_NEGATIVE,
    FLAG_UNPHASED,
    PLOIDY,
    ParsedRecords,
    PieceLineError,
    call_flags,
    parse_records,
)
from genofed.ontology.hpo import hpo
from genofed.store import individuals as individuals_table
from genofed.store import layout, zarr_v2
from genofed.store.metadata import DATASET_ID_PATTERN, DatasetMetadata, MetadataError, load_metadata

VARIANT_CHUNK = 10_000
INDIVIDUALS_FILE = "individuals.parquet.c4gh"
SAMPLE_CHUNK = 1_000
ASSEMBLIES = ("GRCh37", "GRCh38")

#: progress(stage, done, total): stages are "parse" and "write" (units: records / chunks).
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


@dataclass
class _PieceResult:
    index: int
    n_records: int
    contigs: list[str]
    contig: np.ndarray
    position: np.ndarray
    ids: list[str]
    alleles: list[list[str]]
    quality: np.ndarray
    filters: list[list[str]]
    split_record: np.ndarray  # per biallelic row: record index within the piece
    split_allele: np.ndarray  # per biallelic row: allele index (0 when the record has no ALT)
    ac: np.ndarray  # (rows, groups) int32
    an: np.ndarray  # (rows, groups) int32
    flags: np.ndarray  # per record: FLAG_NEGATIVE | FLAG_UNPHASED (which chunks need writing)
    lines_aligned: bool = False  # every BGZF block of the piece ends at a line end

    @property
    def phase_spilled(self) -> bool:
        """Whether the phase flags were spilled (they are not when every call is phased)."""
        return bool((self.flags & FLAG_UNPHASED).any())


# State shared with forked workers (set before the pool starts; read-only in workers).
_WORKER_STATE: dict[str, object] = {}


def ingest(node_dir: Path, dataset_id: str, vcf: Path, *, phenopackets: Path | None = None,
           metadata: Path | None = None, populations: Path | None = None,
           assembly: str | None = None, genes: Path | None = None, workers: int | None = None,
           progress: ProgressCallback | None = None) -> IngestResult:
    """Ingest one dataset into a node; see the module docstring. Raises IngestError subclasses."""
    started = time.perf_counter()
    paths = NodePaths(node_dir, load_config(node_dir))
    meta = _load_dataset_metadata(dataset_id, metadata, assembly)
    source = VcfSource(vcf)
    samples = source.header.samples
    people = _load_individuals(phenopackets, samples, vcf)
    population_of = _load_populations(populations, samples, meta.population)
    gene_table = load_gene_table(genes) if genes is not None else None
    fingerprint = _fingerprint(vcf, phenopackets, meta, population_of, genes)

    root = layout.dataset_root(paths.datasets, dataset_id)
    with layout.dataset_lock(root):
        current = layout.current_version(root)
        if current is not None:
            manifest = layout.Manifest.read(current)
            if manifest.fingerprint == fingerprint:
                return IngestResult(dataset_id, manifest.version, True, manifest,
                                    time.perf_counter() - started, current, _sizes(current))
        staging = layout.new_staging(root)
        try:
            # The original is encrypted into the version by a pool worker alongside the parse.
            archive = (paths, staging, vcf, current)
            with _without_cycle_collection():  # inherited by the forked workers
                manifest = _build_version(staging, source, meta, people, population_of,
                                          fingerprint, workers or os.cpu_count() or 1, progress,
                                          archive)
            if gene_table is not None:
                pq.write_table(gene_table, staging / "genes.parquet")
            manifest.version = layout.next_version_name(root)
            manifest.write(staging)
            final = layout.publish(root, staging, manifest.version)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return IngestResult(dataset_id, manifest.version, False, manifest,
                        time.perf_counter() - started, final, _sizes(final))


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


# -- inputs -----------------------------------------------------------------------------------
def _load_dataset_metadata(dataset_id: str, path: Path | None,
                           assembly: str | None) -> DatasetMetadata:
    import re

    if not re.match(DATASET_ID_PATTERN, dataset_id):
        raise IngestError(f"dataset id {dataset_id!r} is not valid: use letters, digits, '.', "
                          "'_' and '-' (up to 128 characters)")
    if path is None:
        meta = DatasetMetadata.default_for(dataset_id)
    else:
        try:
            meta = load_metadata(path)
        except MetadataError as exc:
            raise InputError(str(path), str(exc).split(": ", 1)[1]) from None
        if meta.id != dataset_id:
            raise InputError(str(path), f"id is {meta.id!r} but --dataset is {dataset_id!r}; "
                             "they must agree", field="id")
    if assembly is not None:
        if assembly not in ASSEMBLIES:
            raise IngestError(f"assembly {assembly!r} is not one of {', '.join(ASSEMBLIES)}")
        meta = meta.model_copy(update={"assembly_id": assembly})
    return meta


def _load_individuals(directory: Path | None, samples: Sequence[str],
                      vcf: Path) -> dict[str, Individual]:
    if directory is None:
        return {}
    people = {p.sample_id: p for p in load_phenopackets(directory)}
    in_vcf = set(samples)
    only_packets = sorted(set(people) - in_vcf)
    only_vcf = [s for s in samples if s not in people]
    if only_packets:
        raise InputError(str(directory), f"{len(only_packets)} phenopacket subject(s) are not "
                         f"samples of {vcf}: {', '.join(only_packets[:10])}"
                         f"{' ...' if len(only_packets) > 10 else ''}", field="subject.id")
    if only_vcf:
        raise InputError(str(vcf), f"{len(only_vcf)} VCF sample(s) have no phenopacket in "
                         f"{directory}: {', '.join(only_vcf[:10])}"
                         f"{' ...' if len(only_vcf) > 10 else ''}")
    return people


def _load_populations(path: Path | None, samples: Sequence[str],
                      default: str | None) -> dict[str, str]:
    labels = dict.fromkeys(samples, default) if default else {}
    if path is None:
        return {k: v for k, v in labels.items() if v}
    known = set(samples)
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip() or (number == 1 and line.split("\t")[0] == "sample"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[1]:
            raise InputError(str(path), "expected two tab-separated columns: sample, population",
                             line=number)
        if parts[0] not in known:
            raise InputError(str(path), f"sample {parts[0]!r} is not in the VCF", line=number)
        labels[parts[0]] = parts[1]
    return {k: v for k, v in labels.items() if v}


def _fingerprint(vcf: Path, phenopackets: Path | None, meta: DatasetMetadata,
                 populations: dict[str, str], genes: Path | None) -> str:
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"store-format={layout.STORE_FORMAT}\n".encode())
    with open(vcf, "rb") as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    if phenopackets is not None:
        for path in sorted(phenopackets.glob("*.json")):
            digest.update(path.name.encode() + b"\0" + path.read_bytes())
    digest.update(meta.to_json().encode())
    digest.update(json.dumps(populations, sort_keys=True).encode())
    if genes is not None:
        digest.update(b"genes\0" + genes.read_bytes())
    return digest.hexdigest()


# -- building a version -----------------------------------------------------------------------
def _groups(samples: Sequence[str], people: dict[str, Individual],
            populations: dict[str, str]) -> tuple[list[str], np.ndarray]:
    """Allele-count groups and the (samples x groups) membership matrix."""
    names = ["all"]
    columns = [np.ones(len(samples), dtype=np.float32)]
    if people:
        for sex in ("female", "male"):
            mask = np.array([people[s].sex == sex for s in samples], dtype=np.float32)
            names.append(sex)
            columns.append(mask)
    for label in sorted(set(populations.values())):
        names.append(f"pop_{label}")
        columns.append(np.array([populations.get(s) == label for s in samples], dtype=np.float32))
    return names, np.stack(columns, axis=1)


def _build_version(staging: Path, source: VcfSource, meta: DatasetMetadata,
                   people: dict[str, Individual], populations: dict[str, str], fingerprint: str,
                   workers: int, progress: ProgressCallback | None,
                   archive: tuple[NodePaths, Path, Path, Path | None]) -> layout.Manifest:
    samples = source.header.samples
    group_names, membership = _groups(samples, people, populations)
    spill = staging / "spill"
    spill.mkdir()
    pieces = source.pieces()
    _WORKER_STATE.update(source=source, spill=spill, classes=_sample_classes(membership))
    context = multiprocessing.get_context("fork")
    estimated = sum(b.payload_size for b in source.blocks) or 1
    results: list[_PieceResult] = []
    genotypes = staging / "genotypes.zarr"
    for name in CALL_ARRAYS:  # chunks are written before the arrays' metadata
        (genotypes / name).mkdir(parents=True)
    n_samples = len(samples)
    try:
        with ProcessPoolExecutor(max_workers=max(1, workers), mp_context=context,
                                 initializer=_single_threaded_worker) as pool:
            # Pieces are parsed a few at a time so that genotype chunks, queued as soon as the
            # pieces covering them are parsed, are compressed while later pieces are parsed:
            # both phases keep every core busy instead of running one after the other.
            queue = iter(pieces)
            parsing: deque[tuple[Piece, Future[_PieceResult]]] = deque()
            writes: list[Future[None]] = []
            offsets = [0]
            spills = _SpillTracker(spill)

            def parse_next() -> None:
                piece = next(queue, None)
                if piece is not None:
                    parsing.append((piece, pool.submit(_parse_piece, piece)))

            def write_chunks(upto: int, n_records: int) -> None:
                while len(writes) * VARIANT_CHUNK < upto:
                    chunk = len(writes)
                    plan = _chunk_plan(chunk, offsets, results, n_records)
                    writes.append(pool.submit(_write_genotype_chunk, plan, n_samples))
                    spills.release_when_done(writes[-1], [f.piece for f in plan.fragments])

            # A bgzipped VCF is archived once parsed: the parse has seen every block, so the
            # archive need not inflate it again. Other inputs are archived alongside the parse.
            archived = (pool.submit(files_archive.archive_ingested_variants, *archive)
                        if source.kind != "bgzf-vcf" else None)
            for _ in range(max(1, workers) + 1):
                parse_next()
            done_bytes = 0
            while parsing:
                piece, future = parsing.popleft()
                try:
                    result = future.result()
                except PieceLineError as err:
                    pool.shutdown(cancel_futures=True)
                    line = source.lines_before(piece) + err.index + 1
                    raise InputError(source.name, err.problem, line=line, field=err.field) from None
                results.append(result)
                offsets.append(offsets[-1] + result.n_records)
                spills.expect(result.index, _chunks_overlapping(offsets[-2], offsets[-1]))
                parse_next()
                complete = offsets[-1] // VARIANT_CHUNK * VARIANT_CHUNK
                write_chunks(complete, offsets[-1])
                if progress:
                    done_bytes += sum(b.payload_size for b in
                                      source.blocks[piece.first_block : piece.last_block])
                    progress("parse", done_bytes if source.blocks else len(results),
                             estimated if source.blocks else len(pieces))
            n_records = offsets[-1]
            write_chunks(n_records, n_records)
            # Everything else is written here while the workers compress the last chunks.
            _write_variant_arrays(genotypes, source, results, samples, meta)
            contigs, n_sites = _write_sites(staging / "sites.parquet", source, results,
                                            np.array(offsets), group_names)
            _write_individuals(staging / INDIVIDUALS_FILE, samples, people, populations,
                               files_archive.node_keys(archive[0]))
            (staging / "dataset.json").write_text(meta.to_json())
            if archived is None:
                known = KnownLayout(
                    [BlockRow(b.offset, b.size, b.payload_size) for b in source.blocks],
                    header_size=len(source.header.text.encode()),
                    aligned=all(r.lines_aligned for r in results))
                files_archive.archive_ingested_variants(*archive, layout=known)
            for i, write in enumerate(writes):
                write.result()
                if progress:
                    progress("write", i + 1, len(writes))
            if archived is not None:
                archived.result()
    except BrokenProcessPool:
        raise IngestError("an ingest worker process died (out of memory?); try fewer "
                          "--workers") from None
    finally:
        _WORKER_STATE.clear()
    shutil.rmtree(spill)
    return layout.Manifest(
        dataset_id=meta.id, version="", fingerprint=fingerprint,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        n_samples=len(samples), n_records=n_records, n_sites=n_sites,
        n_individuals_with_phenopackets=len(people), contigs=contigs, groups=group_names,
        source={"vcf": source.name, "kind": source.kind, "genofed": __version__},
    )


def _single_threaded_worker() -> None:
    """Each worker process has a core's share; codec threads on top would only contend."""
    _keep_freed_memory()
    import numcodecs

    numcodecs.blosc.set_nthreads(1)


def _keep_freed_memory() -> None:
    """Workers allocate and free arrays of tens of MB per piece. glibc returns such blocks to the
    kernel at once, and the next piece faults every page back in (seconds of system time per
    ingest); raising the mmap and trim thresholds makes freed memory reusable instead."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)
    libc.mallopt(m_trim_threshold, 1 << 31)


def _parse_piece(piece: Piece) -> _PieceResult:
    source: VcfSource = _WORKER_STATE["source"]  # type: ignore[assignment]
    classes: _SampleClasses = _WORKER_STATE["classes"]  # type: ignore[assignment]
    spill: Path = _WORKER_STATE["spill"]  # type: ignore[assignment]
    n_samples = len(source.header.samples)
    aligned = False
    if source.kind == "bcf":
        records = _read_bcf(source)
    else:
        parts, aligned = source.piece_parts(piece)
        records = parse_records(parts, n_samples, name=source.name,
                                first_line=1 if piece.index == 0 else None)
        del parts
    split_record, split_allele, ac, an = _allele_counts(records, classes)
    result = _PieceResult(piece.index, len(records), records.contigs, records.contig,
                          records.position, records.ids, records.alleles, records.quality,
                          records.filters, split_record, split_allele, ac, an, records.flags,
                          aligned)
    np.save(spill / f"{piece.index}.gt.npy", records.genotypes)
    if result.phase_spilled:  # the chunk writers read the same property
        np.save(spill / f"{piece.index}.ph.npy", records.phased)
    return result


@dataclass(frozen=True)
class _SampleClasses:
    """Samples grouped by the allele-count groups they belong to (e.g. female x CEU): counting
    per class and summing classes into groups touches each call once, whatever the groups."""

    of_sample: np.ndarray  # int32 per sample: its class
    groups: np.ndarray  # (classes x groups) int64 0/1: which groups a class belongs to


def _sample_classes(membership: np.ndarray) -> _SampleClasses:
    if membership.shape[0] == 0:
        return _SampleClasses(np.empty(0, np.int32), np.ones((1, membership.shape[1]), np.int64))
    groups, of_sample = np.unique(membership, axis=0, return_inverse=True)
    return _SampleClasses(of_sample.reshape(-1).astype(np.int32), groups.astype(np.int64))


def _class_counts(genotypes: np.ndarray, classes: _SampleClasses,
                  allele: int) -> tuple[np.ndarray, np.ndarray]:
    """Per record and group: calls of `allele`, and called alleles (int32 each)."""
    n, n_samples = genotypes.shape[:2]
    n_classes = len(classes.groups)
    counts = np.empty((n, n_classes, 2), dtype=np.int32)
    _calls.count_alleles(np.ascontiguousarray(genotypes), n_samples, classes.of_sample,
                         n_classes, counts, allele)
    return ((counts[:, :, 0] @ classes.groups).astype(np.int32),
            (counts[:, :, 1] @ classes.groups).astype(np.int32))


def _allele_counts(records: ParsedRecords, classes: _SampleClasses,
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AC and AN per biallelic row and group, as `bcftools norm -m- | +fill-tags` counts them."""
    gt = records.genotypes
    n = len(records)
    groups = classes.groups.shape[1]
    n_alts = np.fromiter((len(a) - 1 for a in records.alleles), dtype=np.int32, count=n)
    rows_per_record = np.maximum(n_alts, 1)
    split_record = np.repeat(np.arange(n, dtype=np.int64), rows_per_record)
    starts = np.concatenate(([0], np.cumsum(rows_per_record)[:-1])).astype(np.int64)
    split_allele = (np.arange(len(split_record)) - np.repeat(starts, rows_per_record) + 1)
    split_allele[np.repeat(n_alts == 0, rows_per_record)] = 0
    if gt.shape[1] == 0 or n == 0:
        zeros = np.zeros((len(split_record), groups), dtype=np.int32)
        return split_record, split_allele.astype(np.int8), zeros, zeros.copy()
    ac_first, an_records = _class_counts(gt, classes, allele=1)
    an = an_records[split_record]
    ac = ac_first[split_record]
    ac[split_allele == 0] = 0
    # Multi-allelic records: alleles 2, 3, ... each counted over the records that have them.
    for allele in range(2, int(n_alts.max(initial=0)) + 1):
        having = np.flatnonzero(n_alts >= allele)
        ac[starts[having] + allele - 1] = _class_counts(gt[having], classes, allele)[0]
    return split_record, split_allele.astype(np.int8), ac, an


def _read_bcf(source: VcfSource) -> ParsedRecords:
    """BCF through htslib: slower per record than the text path, but BCF inputs are small here."""
    import cyvcf2

    n_samples = len(source.header.samples)
    out = ParsedRecords()
    contig_ids: dict[str, int] = {}
    contig_of: list[int] = []
    positions: list[int] = []
    quality: list[float] = []
    calls: list[np.ndarray] = []
    phases: list[np.ndarray] = []
    reader = cyvcf2.VCF(str(source.path), gts012=False)
    for number, record in enumerate(reader, start=1):
        contig_of.append(contig_ids.setdefault(record.CHROM, len(contig_ids)))
        positions.append(record.POS)
        out.ids.append(record.ID or ".")
        out.alleles.append([record.REF, *record.ALT])
        quality.append(np.nan if record.QUAL is None else record.QUAL)
        out.filters.append([] if record.FILTER is None and record.FILTERS == [] else
                           [f for f in (record.FILTERS or ["PASS"])])
        row = np.full((n_samples, PLOIDY), -1, dtype=np.int8)
        phased = np.zeros(n_samples, dtype=bool)
        genotype = record.genotype
        if genotype is not None and n_samples:
            array = genotype.array()
            if array.shape[1] - 1 > PLOIDY:
                raise InputError(source.name, f"ploidy {array.shape[1] - 1} is not supported",
                                 field=f"record {number} GT")
            width = array.shape[1] - 1
            row[:, :width] = np.where(array[:, :width] < -1, -2, array[:, :width])
            if width == 1:
                row[:, 1] = -2
            phased = array[:, -1].astype(bool)
        calls.append(row)
        phases.append(phased)
    reader.close()
    out.contigs = list(contig_ids)
    out.contig = np.asarray(contig_of, dtype=np.int32)
    out.position = np.asarray(positions, dtype=np.int32)
    out.quality = np.asarray(quality, dtype=np.float32)
    out.genotypes = (np.stack(calls) if calls
                     else np.empty((0, n_samples, PLOIDY), dtype=np.int8))
    out.phased = np.stack(phases) if phases else np.empty((0, n_samples), dtype=bool)
    out.flags = call_flags(out.genotypes, out.phased)
    return out


def _global_contigs(source: VcfSource, results: list[_PieceResult]) -> list[str]:
    names = [c.id for c in source.header.contigs]
    seen = set(names)
    for result in results:
        for name in result.contigs:
            if name not in seen:
                seen.add(name)
                names.append(name)
    return names


def _write_variant_arrays(group: Path, source: VcfSource, results: list[_PieceResult],
                          samples: Sequence[str], meta: DatasetMetadata) -> None:
    """The VCF Zarr (v0.4) per-variant, per-sample and per-contig arrays."""
    contigs = _global_contigs(source, results)
    index = {name: i for i, name in enumerate(contigs)}
    lengths = {c.id: c.length for c in source.header.contigs}
    variant_contig = np.concatenate(
        [np.asarray([index[n] for n in r.contigs], dtype=np.int16)[r.contig] if r.n_records
         else np.empty(0, np.int16) for r in results]) if results else np.empty(0, np.int16)
    positions = (np.concatenate([r.position for r in results]) if results
                 else np.empty(0, np.int32))
    all_alleles = [a for r in results for a in r.alleles]
    max_alleles = max((len(a) for a in all_alleles), default=1)
    alleles = np.full((len(all_alleles), max_alleles), "", dtype=object)
    for i, allele_list in enumerate(all_alleles):
        alleles[i, : len(allele_list)] = allele_list
    ids = np.array([i if i != "." else "" for r in results for i in r.ids], dtype=object)
    quality = (np.concatenate([r.quality for r in results]) if results
               else np.empty(0, np.float32))
    filter_ids = list(source.header.filters)
    for r in results:
        for fs in r.filters:
            for f in fs:
                if f not in filter_ids:
                    filter_ids.append(f)
    filter_index = {f: i for i, f in enumerate(filter_ids)}
    flat_filters = [fs for r in results for fs in r.filters]
    variant_filter = np.zeros((len(flat_filters), len(filter_ids)), dtype=bool)
    for i, fs in enumerate(flat_filters):
        for f in fs:
            variant_filter[i, filter_index[f]] = True
    n = len(positions)
    zarr_v2.write_group(group, {
        "vcf_zarr_version": "0.4",
        "source": f"genofed {__version__}",
        # Sample names stay in the encrypted individuals table: the header keeps the columns up
        # to FORMAT, and sample_id holds positional pseudonyms.
        "vcf_header": _header_without_samples(source.header.text),
        "sample_id_note": "positional pseudonyms; the node's sample ids are in the encrypted "
                          "individuals table",
        "assembly_id": meta.assembly_id,
    })
    vc = (VARIANT_CHUNK,)
    zarr_v2.write_array(group, "sample_id", np.array(sample_pseudonyms(len(samples)),
                                                     dtype=object),
                        chunks=(SAMPLE_CHUNK,), dimensions=["samples"])
    zarr_v2.write_array(group, "contig_id", np.array(contigs, dtype=object),
                        chunks=(max(1, len(contigs)),), dimensions=["contigs"])
    zarr_v2.write_array(group, "contig_length",
                        np.array([lengths.get(c) or -1 for c in contigs], dtype=np.int64),
                        chunks=(max(1, len(contigs)),), dimensions=["contigs"], fill_value=-1)
    zarr_v2.write_array(group, "filter_id", np.array(filter_ids, dtype=object),
                        chunks=(max(1, len(filter_ids)),), dimensions=["filters"])
    zarr_v2.write_array(group, "variant_contig", variant_contig, chunks=vc,
                        dimensions=["variants"], fill_value=-1)
    zarr_v2.write_array(group, "variant_position", positions, chunks=vc,
                        dimensions=["variants"], fill_value=-1)
    zarr_v2.write_array(group, "variant_allele", alleles, chunks=(VARIANT_CHUNK, max_alleles),
                        dimensions=["variants", "alleles"])
    zarr_v2.write_array(group, "variant_id", ids, chunks=vc, dimensions=["variants"])
    zarr_v2.write_array(group, "variant_id_mask", ids == "", chunks=vc, dimensions=["variants"],
                        fill_value=True)
    zarr_v2.write_array(group, "variant_quality", quality, chunks=vc, dimensions=["variants"],
                        fill_value=float("nan"))
    zarr_v2.write_array(group, "variant_filter", variant_filter,
                        chunks=(VARIANT_CHUNK, max(1, len(filter_ids))),
                        dimensions=["variants", "filters"], fill_value=False)
    n_samples = len(samples)
    zarr_v2.create_array(group, "call_genotype", shape=(n, n_samples, PLOIDY),
                         chunks=(VARIANT_CHUNK, SAMPLE_CHUNK, PLOIDY), dtype=np.dtype(np.int8),
                         dimensions=["variants", "samples", "ploidy"], fill_value=-1,
                         codec=zarr_v2.GENOTYPE_CODEC)
    zarr_v2.create_array(group, "call_genotype_mask", shape=(n, n_samples, PLOIDY),
                         chunks=(VARIANT_CHUNK, SAMPLE_CHUNK, PLOIDY), dtype=np.dtype(bool),
                         dimensions=["variants", "samples", "ploidy"], fill_value=False,
                         codec=zarr_v2.GENOTYPE_CODEC)
    zarr_v2.create_array(group, "call_genotype_phased", shape=(n, n_samples),
                         chunks=(VARIANT_CHUNK, SAMPLE_CHUNK), dtype=np.dtype(bool),
                         dimensions=["variants", "samples"], fill_value=False,
                         codec=zarr_v2.GENOTYPE_CODEC)


CALL_ARRAYS = ("call_genotype", "call_genotype_mask", "call_genotype_phased")


@dataclass(frozen=True)
class _Fragment:
    """Rows `start:stop` of a piece's spill, landing at row `at` of a chunk."""

    piece: int
    start: int
    stop: int
    at: int
    phase_spilled: bool


@dataclass(frozen=True)
class _ChunkPlan:
    chunk: int
    rows: int
    fragments: list[_Fragment]
    negative: bool  # some allele is missing or absent: the mask chunk is needed
    unphased: bool  # some call is unphased: the phase chunk is not all True


def _chunks_overlapping(start: int, stop: int) -> int:
    """How many variant chunks hold rows `start:stop` (0 for none)."""
    return 0 if stop <= start else (stop - 1) // VARIANT_CHUNK - start // VARIANT_CHUNK + 1


def _chunk_plan(chunk: int, offsets: list[int], results: list[_PieceResult],
                n_records: int) -> _ChunkPlan:
    lo = chunk * VARIANT_CHUNK
    hi = min(lo + VARIANT_CHUNK, n_records)
    fragments = []
    flags = 0
    for index, (start, stop) in enumerate(itertools.pairwise(offsets)):
        if stop <= lo or start >= hi:
            continue
        a, b = max(lo, start) - start, min(hi, stop) - start
        result = results[index]
        fragments.append(_Fragment(result.index, a, b, start + a - lo, result.phase_spilled))
        flags |= int(np.bitwise_or.reduce(result.flags[a:b])) if b > a else 0
    return _ChunkPlan(chunk, hi - lo, fragments, bool(flags & FLAG_NEGATIVE),
                      bool(flags & FLAG_UNPHASED))


class _SpillTracker:
    """Deletes a piece's spill once every chunk holding its rows is written (the parent sets
    how many chunks that is when the piece is parsed, before any of them is submitted)."""

    def __init__(self, spill: Path) -> None:
        self.spill = spill
        self.pending: dict[int, int] = {}
        self.lock = threading.Lock()

    def expect(self, piece: int, chunks: int) -> None:
        with self.lock:
            self.pending[piece] = chunks
        if chunks == 0:
            self._delete(piece)

    def release_when_done(self, write: Future[None], pieces: list[int]) -> None:
        def done(future: Future[None]) -> None:
            if future.cancelled() or future.exception() is not None:
                return  # the staging directory goes as a whole
            for piece in pieces:
                with self.lock:
                    self.pending[piece] -= 1
                    finished = self.pending[piece] == 0
                if finished:
                    self._delete(piece)

        write.add_done_callback(done)

    def _delete(self, piece: int) -> None:
        for suffix in ("gt", "ph"):
            (self.spill / f"{piece}.{suffix}.npy").unlink(missing_ok=True)


# Per-worker buffers reused from chunk to chunk (fresh pages are costly; see _keep_freed_memory),
# and the encoded all-True phase chunk of each shape.
_SCRATCH: dict[tuple[tuple[int, ...], str], np.ndarray] = {}
_ALL_PHASED: dict[tuple[int, int], bytes] = {}


def _scratch(shape: tuple[int, ...], dtype: type, name: str) -> np.ndarray:
    key = (shape, name)
    array = _SCRATCH.get(key)
    if array is None:
        array = _SCRATCH[key] = np.empty(shape, dtype=dtype)
    return array


def _write_genotype_chunk(plan: _ChunkPlan, n_samples: int) -> None:
    spill: Path = _WORKER_STATE["spill"]  # type: ignore[assignment]
    group = spill.parent / "genotypes.zarr"
    calls = [np.load(spill / f"{f.piece}.gt.npy", mmap_mode="r") for f in plan.fragments]
    phases = [np.load(spill / f"{f.piece}.ph.npy", mmap_mode="r") if f.phase_spilled else None
              for f in plan.fragments]
    g_chunks = (VARIANT_CHUNK, SAMPLE_CHUNK, PLOIDY)
    for j, s0 in enumerate(range(0, max(n_samples, 1), SAMPLE_CHUNK)):
        s1 = min(s0 + SAMPLE_CHUNK, n_samples)
        # Chunks are stored whole, edges padded with the fill value: gathered in place.
        whole = _scratch(g_chunks, np.int8, "calls")
        part = whole[: plan.rows, : s1 - s0]
        if part.shape != whole.shape:
            whole.fill(-1)
        for fragment, source in zip(plan.fragments, calls, strict=True):
            part[fragment.at : fragment.at + fragment.stop - fragment.start] = \
                source[fragment.start : fragment.stop, s0:s1]
        zarr_v2.write_chunk(group / "call_genotype", (plan.chunk, j, 0), whole, g_chunks, -1,
                            zarr_v2.GENOTYPE_CODEC)
        # An absent chunk reads as the fill value (False), so all-False chunks are not written:
        # most masks are, and so are the phase flags of unphased callsets.
        if plan.negative:
            mask = part < 0
            if mask.any():
                zarr_v2.write_chunk(group / "call_genotype_mask", (plan.chunk, j, 0), mask,
                                    g_chunks, False, zarr_v2.GENOTYPE_CODEC)
        phase_path = group / "call_genotype_phased"
        if not plan.unphased and s1 > s0:  # all True: the same bytes for every such chunk
            shape = (plan.rows, s1 - s0)
            payload = _ALL_PHASED.get(shape)
            if payload is None:
                payload = _ALL_PHASED[shape] = zarr_v2.encode_chunk(
                    np.ones(shape, dtype=bool), g_chunks[:2], False, zarr_v2.GENOTYPE_CODEC)
            zarr_v2.write_payload(phase_path, (plan.chunk, j), payload)
            continue
        phase_part = _scratch((plan.rows, s1 - s0), bool, "phased")
        for fragment, phase_source in zip(plan.fragments, phases, strict=True):
            rows = slice(fragment.at, fragment.at + fragment.stop - fragment.start)
            if phase_source is None:
                phase_part[rows] = True
            else:
                phase_part[rows] = phase_source[fragment.start : fragment.stop, s0:s1]
        if phase_part.any():
            zarr_v2.write_chunk(phase_path, (plan.chunk, j), phase_part, g_chunks[:2], False,
                                zarr_v2.GENOTYPE_CODEC)


SITE_FIXED_COLUMNS = ("contig", "pos", "end", "id", "ref", "alt", "variant_index",
                      "allele_index", "ac", "an", "af")


def _write_sites(path: Path, source: VcfSource, results: list[_PieceResult], offsets: np.ndarray,
                 group_names: list[str]) -> tuple[list[str], int]:
    """One row per biallelic record, sorted by contig (header order) and position."""
    contigs = _global_contigs(source, results)
    index = {name: i for i, name in enumerate(contigs)}
    contig_col: list[np.ndarray] = []
    pos_col: list[np.ndarray] = []
    end_col: list[np.ndarray] = []
    ids: list[str] = []
    refs: list[str] = []
    alts: list[str] = []
    variant_index: list[np.ndarray] = []
    allele_index: list[np.ndarray] = []
    for result, offset in zip(results, offsets, strict=False):
        local = np.asarray([index[n] for n in result.contigs], dtype=np.int32)
        records = result.split_record
        contig_col.append(local[result.contig[records]] if len(records) else
                          np.empty(0, np.int32))
        pos_col.append(result.position[records])
        ref_len = np.fromiter((len(a[0]) for a in result.alleles), dtype=np.int32,
                              count=result.n_records)
        end_col.append(result.position[records] + ref_len[records] - 1)
        for r, a in zip(records.tolist(), result.split_allele.tolist(), strict=True):
            allele_list = result.alleles[r]
            refs.append(allele_list[0])
            alts.append(allele_list[a] if a else ".")
            ids.append(result.ids[r])
        variant_index.append(records + int(offset))
        allele_index.append(result.split_allele)
    ac = np.concatenate([r.ac for r in results]) if results else np.zeros((0, len(group_names)))
    an = np.concatenate([r.an for r in results]) if results else np.zeros((0, len(group_names)))
    contig_idx = np.concatenate(contig_col) if contig_col else np.empty(0, np.int32)
    pos = np.concatenate(pos_col) if pos_col else np.empty(0, np.int32)
    order = np.lexsort((np.concatenate(variant_index) if variant_index else np.empty(0),
                        pos, contig_idx))
    sorted_already = bool(np.all(order == np.arange(len(order))))
    take = (lambda a: a) if sorted_already else (lambda a: a[order])
    with np.errstate(divide="ignore", invalid="ignore"):
        af = np.where(an[:, 0] > 0, ac[:, 0] / np.maximum(an[:, 0], 1), np.nan)
    columns: dict[str, pa.Array] = {
        "contig": pa.DictionaryArray.from_arrays(pa.array(take(contig_idx), pa.int32()),
                                                 pa.array(contigs, pa.string())),
        "pos": pa.array(take(pos), pa.int32()),
        "end": pa.array(take(np.concatenate(end_col) if end_col else np.empty(0, np.int32)),
                        pa.int32()),
        "id": pa.array(ids if sorted_already else [ids[i] for i in order], pa.string()),
        "ref": pa.array(refs if sorted_already else [refs[i] for i in order], pa.string()),
        "alt": pa.array(alts if sorted_already else [alts[i] for i in order], pa.string()),
        "variant_index": pa.array(take(np.concatenate(variant_index) if variant_index
                                       else np.empty(0, np.int64)), pa.int64()),
        "allele_index": pa.array(take(np.concatenate(allele_index) if allele_index
                                      else np.empty(0, np.int8)), pa.int8()),
        "ac": pa.array(take(ac[:, 0]), pa.int32()),
        "an": pa.array(take(an[:, 0]), pa.int32()),
        "af": pa.array(take(af), pa.float64()),
    }
    for g, name in enumerate(group_names[1:], start=1):
        columns[f"ac_{name}"] = pa.array(take(ac[:, g]), pa.int32())
        columns[f"an_{name}"] = pa.array(take(an[:, g]), pa.int32())
    table = pa.table(columns)
    pq.write_table(table, path, compression="zstd", row_group_size=256 * 1024,
                   use_dictionary=["contig", "ref", "alt"], write_statistics=["contig", "pos"])
    return contigs, table.num_rows


def sample_pseudonyms(n: int) -> list[str]:
    return [f"sample-{i:06d}" for i in range(1, n + 1)]


def _header_without_samples(text: str) -> str:
    lines = text.rstrip("\n").split("\n")
    if lines and lines[-1].startswith("#CHROM"):
        lines[-1] = "\t".join(lines[-1].split("\t")[:9])
    return "\n".join(lines) + "\n"


def _write_individuals(path: Path, samples: Sequence[str], people: dict[str, Individual],
                       populations: dict[str, str], keys: KeyPair) -> None:
    """The individuals table, Crypt4GH-encrypted for the node's key: it links sample ids to
    phenotypes, so it never lies on disk in plaintext."""
    rows = individuals_table.empty_rows(samples)
    ontology = hpo() if people else None
    for i, sample in enumerate(samples):
        rows["population"][i] = populations.get(sample)
        person = people.get(sample)
        if person is None:
            continue
        rows["sex"][i] = person.sex
        rows["age_iso"][i] = person.age_iso
        rows["age_years"][i] = person.age_years
        rows["phenotypes"][i] = person.phenotypes
        rows["excluded_phenotypes"][i] = person.excluded_phenotypes
        assert ontology is not None
        rows["phenotype_closure"][i] = sorted(ontology.closure(person.phenotypes))
        rows["diseases"][i] = person.diseases
        rows["measurements"][i] = person.measurements
        rows["phenopacket"][i] = person.phenopacket
    table = pa.Table.from_pydict(rows, schema=individuals_table.SCHEMA)
    buffer = pa.BufferOutputStream()
    pq.write_table(table, buffer, compression="zstd")
    path.write_bytes(encrypt_bytes(buffer.getvalue().to_pybytes(), keys.public, keys.secret))


def _sizes(version_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for entry in version_dir.iterdir():
        if entry.is_dir():
            sizes[entry.name] = sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
        else:
            sizes[entry.name] = entry.stat().st_size
    sizes["total"] = sum(sizes.values())
    return sizes
