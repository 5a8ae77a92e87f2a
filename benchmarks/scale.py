"""Scale benchmark: how ingest, store size, server memory and lookup latency grow with the data.

    .venv/bin/python benchmarks/scale.py [--sites 1e6,5e6,2e7] [--sites-samples 4]
                                         [--samples 2000,6000,20000] [--samples-sites 20000]
                                         [--queries 2000] [--repeats 1] [--only sites|samples]
                                         [--keep]

Two axes, each a list of points: growing the variant SITES (`--sites` records, `--sites-samples`
samples each) and growing the SAMPLES (`--samples`, `--samples-sites` records each). Every
point's data is a synthetic VCF written with NumPy (VCF 4.2, contigs 1-22 of GRCh38 by length,
SNVs with ~5 % short indels and ~3 % multi-allelic records, phased diploid GT drawn from a skewed
allele-frequency spectrum AF = 10**U(-3.5, -0.3), every record carrying an ALT allele), bgzipped
and tabix-indexed, with one Phenopacket per sample, `dataset.json` (public tier, so anonymous
Beacon queries are answered) and `populations.tsv`. It is cached under benchmarks/work/scale/ and
reused. At every point it measures, in the same run:

1. ingest wall time of `genofed ingest` (with the Phenopackets, metadata and populations, a fresh
   ingest into a fresh node) vs `plink2 --make-pgen` on the same file, taking turns, median of
   `--repeats`; and the ratio;
2. store size (the version directory without `files/`, the encrypted original kept for htsget;
   sites.parquet, sites.idx and genotypes.zarr also apart) vs .pgen(+.pvar+.psam);
3. server memory: `genofed serve` (one worker) on that node alone, /proc/PID/status VmRSS,
   RssAnon and RssFile right after startup and after a fixed load of `--queries` anonymous Beacon
   v2 sequence queries (`GET /beacon/g_variants`) for random existing sites;
4. lookup latency p50/p99: those queries' HTTP round trips (sequential, one keep-alive client),
   the in-process point lookup (`Dataset.site_rows` + `Dataset.site_table`) over the same sites,
   and a `tabix` / `bcftools view -r` process call per query as the anchor.

Prints a table per axis, how each cost grows (its exponent: 1 = linear in the axis), and PASS/FAIL
for the targets of issue 15: server memory growth < 16 bytes per extra site (VmRSS and RssAnon,
smallest to largest sites point), lookup p50 largest/smallest sites point <= 2x, ingest <= 1.0x
plink2 at every point. The figures go to benchmarks/work/scale/results.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from rich.console import Console
from rich.table import Table

from common import free_port, percentile

WORK = Path(__file__).resolve().parent / "work" / "scale"
RESULTS = WORK / "results.json"
DATASET = "scale"
THREADS = os.cpu_count() or 2
console = Console()

#: GRCh38 autosome lengths (bp), the ##contig lines and how sites are spread over contigs.
GRCH38 = {
    "1": 248956422, "2": 242193529, "3": 198295559, "4": 190214555, "5": 181538259,
    "6": 170805979, "7": 159345973, "8": 145138636, "9": 138394717, "10": 133797422,
    "11": 135086622, "12": 133275309, "13": 114364328, "14": 107043718, "15": 101991189,
    "16": 90338345, "17": 83257441, "18": 80373285, "19": 58617616, "20": 64444167,
    "21": 46709983, "22": 50818468}
#: Records that are short indels / multi-allelic (two SNV ALTs); the rest are SNVs.
INDEL_SHARE, MULTI_SHARE = 0.05, 0.03
#: Records with an rs id (the others have ".").
RSID_SHARE = 0.1
#: log10 AF ~ Uniform(low, high): most sites rare, as in real call sets.
LOG10_AF = (-3.5, -0.3)
#: Share of samples in each population label (populations.tsv; allele counts by group).
POPULATIONS = {"CEU": 0.7, "YRI": 0.15, "CHB": 0.15}
#: Genotype bytes per generated block (bounds the generator's memory).
BLOCK_BYTES = 32_000_000
SEED = 15


# -- synthetic data --------------------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    axis: str  # "sites" or "samples"
    records: int
    samples: int

    @property
    def name(self) -> str:
        return f"{self.records}r-{self.samples}s"

    @property
    def data(self) -> Path:
        return WORK / f"data-{self.name}"

    @property
    def vcf(self) -> Path:
        return self.data / "cohort.vcf.gz"


def _allele_pool(rng: np.random.Generator) -> tuple[pa.Array, int, int, np.ndarray]:
    """Every REF/ALT string a record can carry, as one Arrow array to `take` from: the four
    bases (0-3); two-ALT lists "X,Y" of the three other bases, six per REF base (4 + 6 * ref + k);
    then random 2-6 bp sequences for indels (deletion REF / insertion ALT), with each one's
    first base (the anchor the other allele is)."""
    bases = "ACGT"
    pairs = [f"{x},{y}" for r in bases for x in bases for y in bases
             if len({r, x, y}) == 3]
    lengths = rng.integers(2, 7, 4096)
    letters = rng.integers(0, 4, int(lengths.sum()))
    indels, at = [], 0
    for length in lengths:  # 4096 short strings, once
        indels.append("".join(bases[i] for i in letters[at:at + length]))
        at += length
    first = np.array([bases.index(s[0]) for s in indels], dtype=np.int64)
    return pa.array(list(bases) + pairs + indels, pa.string()), 4, 4 + len(pairs), first


def _genotype_text(alleles: np.ndarray) -> pa.Array:
    """Rows of phased GT text ("0|1<TAB>...1|0<NEWLINE>") from a (rows, samples, 2) allele
    array, as an Arrow string array built straight from a byte matrix."""
    rows, samples, _two = alleles.shape
    text = np.empty((rows, samples, 4), dtype=np.uint8)
    text[:, :, 0] = alleles[:, :, 0] + 48
    text[:, :, 1] = ord("|")
    text[:, :, 2] = alleles[:, :, 1] + 48
    text[:, :, 3] = ord("\t")
    text[:, -1, 3] = ord("\n")
    offsets = np.arange(rows + 1, dtype=np.int64) * samples * 4
    return pa.StringArray.from_buffers(rows, pa.py_buffer(offsets.astype(np.int32)),
                                       pa.py_buffer(text.reshape(-1)))


def _block(contig: str, positions: np.ndarray, samples: int, pool: tuple[pa.Array, int, int,
           np.ndarray], rng: np.random.Generator) -> memoryview:
    """VCF lines for records at `positions` of `contig`, as bytes."""
    strings, pairs_at, indels_at, first = pool
    n = len(positions)
    kind = rng.random(n)
    indel, multi = kind < INDEL_SHARE, (kind >= INDEL_SHARE) & (kind < INDEL_SHARE + MULTI_SHARE)
    ref = rng.integers(0, 4, n)
    # Transitions (A<->G, C<->T: two apart in "ACGT") twice as often as transversions.
    alt = (ref + np.where(rng.random(n) < 2 / 3, 2, rng.choice([1, 3], n))) % 4
    alt = np.where(multi, pairs_at + ref * 6 + rng.integers(0, 6, n), alt)
    pick = rng.integers(0, len(first), n)
    deletion = rng.random(n) < 0.5
    ref = np.where(indel, np.where(deletion, indels_at + pick, first[pick]), ref)
    alt = np.where(indel, np.where(deletion, first[pick], indels_at + pick), alt)

    rs = pc.binary_join_element_wise(
        "rs", pa.array(rng.integers(1, 1_500_000_000, n)).cast(pa.string()), "")
    ids = pc.if_else(pa.array(rng.random(n) < RSID_SHARE), rs, ".")

    af = (10.0 ** rng.uniform(*LOG10_AF, n)).astype(np.float32)[:, None, None]
    draws = rng.random((n, samples, 2), dtype=np.float32)
    alleles = (draws < af).astype(np.uint8)
    alleles += (multi[:, None, None] & (draws < af / 3)).astype(np.uint8)  # the second ALT
    flat = alleles.reshape(n, -1)
    empty = np.flatnonzero(~flat.any(axis=1))  # a called VCF lists only variant sites
    flat[empty, rng.integers(0, 2 * samples, len(empty))] = 1
    lines = pc.binary_join_element_wise(
        contig, pa.array(positions).cast(pa.string()), ids, strings.take(pa.array(ref)),
        strings.take(pa.array(alt)), ".", "PASS", ".", "GT", _genotype_text(alleles), "\t")
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int32)[lines.offset:
                                                                 lines.offset + n + 1]
    return memoryview(lines.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def _positions(length: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` distinct sorted positions in 1..length - 10 (room for a deletion's REF)."""
    found = np.empty(0, dtype=np.int64)
    while len(found) < count:
        found = np.unique(np.concatenate(
            [found, rng.integers(1, length - 10, int(count * 1.02) + 16)]))
    return np.sort(rng.choice(found, count, replace=False))


def _per_contig(records: int) -> dict[str, int]:
    """Records per contig, in proportion to its length (largest remainders), summing exactly."""
    total = sum(GRCH38.values())
    shares = {c: records * length / total for c, length in GRCH38.items()}
    counts = {c: int(share) for c, share in shares.items()}
    for c in sorted(shares, key=lambda c: counts[c] - shares[c])[:records - sum(counts.values())]:
        counts[c] += 1
    return counts


def write_vcf(point: Point, sample_names: list[str], rng: np.random.Generator) -> None:
    header = ["##fileformat=VCFv4.2", '##FILTER=<ID=PASS,Description="All filters passed">',
              f"##source=genofed benchmarks/scale.py (synthetic, NumPy, seed {SEED})",
              "##reference=GRCh38",
              *(f"##contig=<ID={c},length={n},assembly=GRCh38>" for c, n in GRCH38.items()),
              '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
              "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                         "FORMAT", *sample_names])]
    pool = _allele_pool(rng)
    rows_per_block = max(1, BLOCK_BYTES // (point.samples * 8))
    partial = point.vcf.with_suffix(".partial")
    with open(partial, "wb") as out:
        bgzip = subprocess.Popen(["bgzip", "-@", str(THREADS), "-c"], stdin=subprocess.PIPE,
                                 stdout=out)
        assert bgzip.stdin is not None
        bgzip.stdin.write(("\n".join(header) + "\n").encode())
        for contig, count in _per_contig(point.records).items():
            positions = _positions(GRCH38[contig], count, rng)
            for at in range(0, count, rows_per_block):
                bgzip.stdin.write(_block(contig, positions[at:at + rows_per_block],
                                         point.samples, pool, rng))
        bgzip.stdin.close()
        if bgzip.wait() != 0:
            raise SystemExit(f"bgzip failed writing {point.vcf}")
    partial.replace(point.vcf)
    subprocess.run(["tabix", "-f", "-p", "vcf", str(point.vcf)], check=True)


def write_clinical(point: Point, sample_names: list[str], rng: np.random.Generator) -> None:
    """One Phenopacket per sample, dataset.json (public tier) and populations.tsv, written by
    genofed.sim's own functions (the layout `simulate_cohort` writes)."""
    from genofed.sim import cohort, traits, vocabulary
    from genofed.sim.clinical import ClinicalVocabulary, phenopacket_json
    from genofed.store.metadata import (
        AccessTier,
        DatasetMetadata,
        DataUseConditions,
        DuoDataUse,
    )

    n = point.samples
    # No traits are planted on these genotypes; the packets still carry an LDL value and
    # case status drawn as the simulator's populations have them.
    planted = traits.PlantedTraits(
        quantitative_causal=(), binary_causal=(),
        ldl_mg_dl=np.maximum(1.0, np.round(rng.normal(traits.LDL_MEAN_MG_DL,
                                                      traits.LDL_SD_MG_DL, n), 1)),
        is_case=rng.random(n) < traits.BINARY_PREVALENCE, liability_threshold=0.0)
    individuals = cohort._clinical_details(sample_names, planted, rng)
    terms = ClinicalVocabulary.load()
    created = cohort.created_date(SEED)
    packets = point.data / "phenopackets"
    packets.mkdir(exist_ok=True)
    for individual in individuals:
        (packets / f"{individual.sample_id}.json").write_text(phenopacket_json(
            individual, packet_id=f"{DATASET}.{individual.sample_id}", terms=terms,
            high_ldl_threshold=traits.HIGH_LDL_MG_DL, created=created), encoding="utf-8")
    labels = rng.choice(list(POPULATIONS), n, p=list(POPULATIONS.values()))
    cohort.write_populations(point.data / "populations.tsv",
                             zip(sample_names, (str(x) for x in labels), strict=True))
    gru = vocabulary.DUO_GENERAL_RESEARCH_USE
    stamp = f"{created.isoformat()}T00:00:00Z"
    metadata = DatasetMetadata(
        id=DATASET, name=f"Synthetic scale cohort ({n} individuals, {point.records} records)",
        description=("Synthetic data, no real people: random genotypes over GRCh38 "
                     "autosomes written by benchmarks/scale.py for the scale benchmark."),
        access_tier=AccessTier.PUBLIC,
        data_use_conditions=DataUseConditions(duo_data_use=[DuoDataUse(id=gru.id,
                                                                       label=gru.label)]),
        keywords=["synthetic", "benchmark"], create_date_time=stamp, update_date_time=stamp)
    (point.data / "dataset.json").write_text(metadata.to_json() + "\n", encoding="utf-8")


def prepare(point: Point) -> None:
    """The point's input files, generated once (a marker file, written last, says complete)."""
    done = point.data / "complete.json"
    if done.is_file():
        return
    console.print(f"Generating {point.records:,} records x {point.samples:,} samples into "
                  f"{point.data} ...")
    started = time.perf_counter()
    shutil.rmtree(point.data, ignore_errors=True)
    point.data.mkdir(parents=True)
    rng = np.random.default_rng([SEED, point.records, point.samples])
    names = [f"SCALE-S{number:05d}" for number in range(1, point.samples + 1)]
    write_vcf(point, names, rng)
    write_clinical(point, names, rng)
    done.write_text(json.dumps({"records": point.records, "samples": point.samples,
                                "seed": SEED}) + "\n")
    console.print(f"  generated in {time.perf_counter() - started:.1f} s "
                  f"({size_of(point.vcf) / 1e6:,.1f} MB VCF.gz)")


# -- measuring -------------------------------------------------------------------------------

def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def run_timed(command: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n"
                         f"{done.stderr.decode(errors='replace')[-3000:]}")
    return elapsed


def interleaved(commands: dict[str, tuple[list[str], Callable[[], None] | None]],
                repeats: int) -> dict[str, float]:
    """Median wall time of each command, the commands taking turns in every round so that
    background load affects them alike (as benchmarks/ingest.py)."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, before) in commands.items():
            if before is not None:
                before()
            times[name].append(run_timed(command))
    return {name: statistics.median(values) for name, values in times.items()}


def memory(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem and VmHWM of a process, in bytes (/proc/PID/status)."""
    wanted = ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM")
    found = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in wanted:
            found[key] = int(value.split()[0]) * 1024
    return found


@contextmanager
def serving(node: Path, port: int) -> Iterator[subprocess.Popen[bytes]]:
    """`genofed serve` on `node` (one worker, in this process's child), ready when it accepts
    connections: no request is sent, so startup memory is before any query."""
    log = node.with_name(node.name + "-serve.log")
    with open(log, "wb") as handle:  # a file, not a pipe: a full pipe would stall the server
        process = subprocess.Popen([sys.executable, "-m", "genofed", "serve", str(node),
                                    "--port", str(port), "--workers", "1", "--log-level",
                                    "warning"], stdout=handle, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise SystemExit(f"genofed serve exited with {process.returncode}:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("genofed serve did not start") from None
                time.sleep(0.1)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def beacon_load(port: int, paths: list[str]) -> tuple[list[float], dict[str, int]]:
    """Send `paths` one after another over one keep-alive connection; each round trip's time
    and the answers' tally (exists true / false, errors)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies: list[float] = []
    tally = {"exists": 0, "absent": 0, "errors": 0}
    try:
        for path in paths:
            started = time.perf_counter()
            connection.request("GET", path)
            response = connection.getresponse()
            body = response.read()
            latencies.append(time.perf_counter() - started)
            if response.status != 200:
                tally["errors"] += 1
                if tally["errors"] == 1:
                    console.print(f"[red]{response.status}[/red] {path}: {body[:300]!r}")
                continue
            exists = json.loads(body).get("responseSummary", {}).get("exists")
            tally["exists" if exists else "absent"] += 1
    finally:
        connection.close()
    return latencies, tally


def fresh_node(node: Path) -> None:
    from genofed.config.node import init_node, load_config, save_config

    shutil.rmtree(node, ignore_errors=True)
    init_node(node, node_id="bench-scale", country="FI")
    config = load_config(node)
    # One caller sends the whole load: lift its rate limit so no query is refused for it.
    config.disclosure.query_budget = 10_000_000
    save_config(node, config)


def measure(point: Point, args: argparse.Namespace) -> dict[str, Any]:
    from genofed.store import NodeStore, layout

    prepare(point)
    console.print(f"[bold]{point.axis} axis: {point.records:,} records x {point.samples:,} "
                  f"samples[/bold]")
    node = WORK / f"node-{point.name}"
    out = WORK / f"plink-{point.name}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    genofed = [sys.executable, "-m", "genofed", "ingest", str(node), "--dataset", DATASET,
               "--vcf", str(point.vcf), "--phenopackets", str(point.data / "phenopackets"),
               "--metadata", str(point.data / "dataset.json"),
               "--populations", str(point.data / "populations.tsv")]
    plink = ["plink2", "--vcf", str(point.vcf), "--make-pgen", "--out", str(out / "plink"),
             "--threads", str(THREADS)]
    ingest = interleaved({"genofed": (genofed, lambda: fresh_node(node)),
                          "plink2": (plink, None)}, args.repeats)
    console.print(f"  ingest {ingest['genofed']:.1f} s, plink2 {ingest['plink2']:.1f} s")

    ds = NodeStore.open(node).dataset(DATASET)
    version = ds.path
    store = size_of(version) - size_of(version / layout.FILES)
    sizes = {"store": store, "files": size_of(version / layout.FILES),
             "sites_parquet": size_of(version / layout.SITES),
             "sites_idx": size_of(version / layout.SITES_INDEX),
             "genotypes_zarr": size_of(version / layout.GENOTYPES),
             "vcf_gz": size_of(point.vcf),
             "pgen": size_of(out / "plink.pgen"),
             "pgen_pvar_psam": sum(size_of(out / f"plink.{e}") for e in ("pgen", "pvar", "psam"))}

    # Random existing sites, read from the memory-mapped columns (never the whole table).
    rng = np.random.default_rng([SEED, point.records, point.samples, 1])
    n_rows = ds.n_site_rows
    warmup = min(100, max(10, args.queries // 10))
    rows = rng.integers(0, n_rows, warmup + args.queries)
    contigs = ds.site_contigs
    chrom = [contigs[int(c)] for c in ds.site_column("contig")[rows]]
    pos = [int(p) for p in ds.site_column("pos")[rows]]
    ref, alt = ds.site_strings("ref")[rows], ds.site_strings("alt")[rows]
    paths = ["/beacon/g_variants?" + urlencode({
        "referenceName": c, "start": p - 1, "referenceBases": r, "alternateBases": a})
        for c, p, r, a in zip(chrom, pos, ref, alt, strict=True)]

    port = free_port()
    with serving(node, port) as server:
        time.sleep(0.5)
        startup = memory(server.pid)
        beacon_load(port, paths[:warmup])
        latencies, tally = beacon_load(port, paths[warmup:])
        loaded = memory(server.pid)
    if tally["errors"]:
        console.print(f"[red]  {tally['errors']} of {args.queries} Beacon queries failed[/red]")

    sites = list(zip(chrom[warmup:], pos[warmup:], strict=True))
    for c, p in sites[:warmup]:  # warm the mappings this process opened
        lo, hi, _mask = ds.site_rows(c, p)
        ds.site_table(slice(lo, hi))
    lookups = []
    for c, p in sites:
        started = time.perf_counter()
        lo, hi, _mask = ds.site_rows(c, p)
        table = ds.site_table(slice(lo, hi))
        lookups.append(time.perf_counter() - started)
        if table.num_rows == 0:
            raise SystemExit(f"in-process lookup found nothing at {c}:{p}")
    anchors = sites[:args.anchor_calls]
    tabix = [run_timed(["tabix", str(point.vcf), f"{c}:{p}-{p}"]) for c, p in anchors]
    bcftools = [run_timed(["bcftools", "view", "-H", "-r", f"{c}:{p}", str(point.vcf)])
                for c, p in anchors]
    del ds
    if not args.keep:
        shutil.rmtree(node, ignore_errors=True)
        node.with_name(node.name + "-serve.log").unlink(missing_ok=True)
        shutil.rmtree(out, ignore_errors=True)
    return {
        "axis": point.axis, "records": point.records, "samples": point.samples,
        "site_rows": n_rows, "genotypes": point.records * point.samples,
        "ingest_s": {"genofed": ingest["genofed"], "plink2": ingest["plink2"],
                     "ratio": ingest["genofed"] / ingest["plink2"], "repeats": args.repeats},
        "bytes": sizes,
        "server_memory": {"startup": startup, "after_queries": loaded},
        "queries": {"count": args.queries, "warmup": warmup, **tally},
        "latency_s": {
            "http": {"p50": percentile(latencies, 0.5), "p99": percentile(latencies, 0.99)},
            "in_process": {"p50": percentile(lookups, 0.5), "p99": percentile(lookups, 0.99)},
            "tabix": {"median": statistics.median(tabix), "calls": len(tabix)},
            "bcftools_view_r": {"median": statistics.median(bcftools), "calls": len(bcftools)},
        },
    }


# -- reporting -------------------------------------------------------------------------------

def mb(value: float) -> str:
    return f"{value / 1e6:,.1f}"


def ms(value: float) -> str:
    return f"{value * 1e3:.2f}"


def point_table(axis: str, points: list[dict[str, Any]]) -> Table:
    table = Table(title=f"{axis} axis ({THREADS} cores; ingest median of "
                  f"{points[0]['ingest_s']['repeats']}; memory in MB; latency in ms)")
    table.add_column("what")
    for p in points:
        table.add_column(f"{p['records']:,} rec\n{p['samples']:,} smp", justify="right")

    def row(label: str, fn: Callable[[dict[str, Any]], str]) -> None:
        table.add_row(label, *(fn(p) for p in points))

    row("biallelic site rows", lambda p: f"{p['site_rows']:,}")
    row("VCF.gz MB", lambda p: mb(p["bytes"]["vcf_gz"]))
    row("genofed ingest s (+pheno, meta)", lambda p: f"{p['ingest_s']['genofed']:.1f}")
    row("plink2 --make-pgen s", lambda p: f"{p['ingest_s']['plink2']:.1f}")
    row("ingest ratio genofed/plink2", lambda p: f"{p['ingest_s']['ratio']:.2f}x")
    row("store MB (version - files/)", lambda p: mb(p["bytes"]["store"]))
    row("  sites.parquet MB", lambda p: mb(p["bytes"]["sites_parquet"]))
    row("  sites.idx MB", lambda p: mb(p["bytes"]["sites_idx"]))
    row("  genotypes.zarr MB", lambda p: mb(p["bytes"]["genotypes_zarr"]))
    row(".pgen MB / +pvar+psam MB",
        lambda p: f"{mb(p['bytes']['pgen'])} / {mb(p['bytes']['pgen_pvar_psam'])}")
    row("store / (pgen+pvar+psam)",
        lambda p: f"{p['bytes']['store'] / p['bytes']['pgen_pvar_psam']:.2f}x")
    row("files/ (encrypted original) MB", lambda p: mb(p["bytes"]["files"]))
    for when, label in (("startup", "server at startup"), ("after_queries", "server after load")):
        for key in ("VmRSS", "RssAnon", "RssFile"):
            row(f"{label} {key}", lambda p, w=when, k=key: mb(p["server_memory"][w].get(k, 0)))
    row("server VmHWM (peak)", lambda p: mb(p["server_memory"]["after_queries"].get("VmHWM", 0)))
    row("Beacon answers yes/no/error",
        lambda p: f"{p['queries']['exists']}/{p['queries']['absent']}/{p['queries']['errors']}")
    row("HTTP round trip p50 / p99", lambda p: f"{ms(p['latency_s']['http']['p50'])} / "
        f"{ms(p['latency_s']['http']['p99'])}")
    row("in-process lookup p50 / p99", lambda p: f"{ms(p['latency_s']['in_process']['p50'])} / "
        f"{ms(p['latency_s']['in_process']['p99'])}")
    row("tabix call median", lambda p: ms(p["latency_s"]["tabix"]["median"]))
    row("bcftools view -r call median",
        lambda p: ms(p["latency_s"]["bcftools_view_r"]["median"]))
    row("tabix call / HTTP p50",
        lambda p: f"{p['latency_s']['tabix']['median'] / p['latency_s']['http']['p50']:.1f}x")
    return table


def exponent(x0: float, x1: float, y0: float, y1: float) -> float | None:
    """b in y ~ x**b between two points (1: linear, 0: flat); None if undefined."""
    if min(x0, x1, y0, y1) <= 0 or x0 == x1:
        return None
    return math.log(y1 / y0) / math.log(x1 / x0)


METRICS: dict[str, Callable[[dict[str, Any]], float]] = {
    "genofed ingest time": lambda p: p["ingest_s"]["genofed"],
    "plink2 --make-pgen time": lambda p: p["ingest_s"]["plink2"],
    "store size": lambda p: p["bytes"]["store"],
    "genotypes.zarr size": lambda p: p["bytes"]["genotypes_zarr"],
    "sites.idx size": lambda p: p["bytes"]["sites_idx"],
    ".pgen+pvar+psam size": lambda p: p["bytes"]["pgen_pvar_psam"],
    "server VmRSS after load": lambda p: p["server_memory"]["after_queries"]["VmRSS"],
    "server RssAnon after load": lambda p: p["server_memory"]["after_queries"]["RssAnon"],
    "server RssFile after load": lambda p: p["server_memory"]["after_queries"]["RssFile"],
    "HTTP p50": lambda p: p["latency_s"]["http"]["p50"],
    "in-process p50": lambda p: p["latency_s"]["in_process"]["p50"],
}


def growth(points: list[dict[str, Any]], axis: str) -> dict[str, Any]:
    """How each cost grows from the smallest to the largest point of an axis: its exponent,
    and the increment per extra site (sites axis) or sample (samples axis)."""
    first, last = points[0], points[-1]
    key = "site_rows" if axis == "sites" else "samples"
    x0, x1 = first[key], last[key]
    return {name: {"exponent": exponent(x0, x1, fn(first), fn(last)),
                   "per_extra_unit": (fn(last) - fn(first)) / (x1 - x0) if x1 != x0 else None,
                   "smallest": fn(first), "largest": fn(last)}
            for name, fn in METRICS.items()}


def growth_table(axis: str, grown: dict[str, Any]) -> Table:
    unit = "site row" if axis == "sites" else "sample"
    table = Table(title=f"How cost grows along the {axis} axis (smallest -> largest point; "
                  "exponent b in cost ~ n**b: 0 flat, 1 linear)")
    table.add_column("cost")
    table.add_column("exponent b", justify="right")
    table.add_column(f"increment per extra {unit}", justify="right")
    for name, g in grown.items():
        b = g["exponent"]
        per = g["per_extra_unit"]
        if per is None:
            shown = ""
        elif "time" in name or "p50" in name:
            shown = f"{per * 1e9:,.1f} ns"
        else:
            shown = f"{per:,.2f} B"
        table.add_row(name, "" if b is None else f"{b:.2f}", shown)
    return table


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"targets": {}}
    targets = summary["targets"]
    sites = results.get("sites", [])
    if len(sites) >= 2:
        first, last = sites[0], sites[-1]
        extra = last["site_rows"] - first["site_rows"]
        for key in ("VmRSS", "RssAnon"):
            per_site = (last["server_memory"]["after_queries"][key]
                        - first["server_memory"]["after_queries"][key]) / extra
            targets[f"server {key} growth per extra site"] = {
                "value": per_site, "unit": "bytes/site", "target": "< 16",
                "pass": per_site < 16}
        for kind in ("http", "in_process"):
            ratio = last["latency_s"][kind]["p50"] / first["latency_s"][kind]["p50"]
            targets[f"lookup p50 ({kind}) largest/smallest sites point"] = {
                "value": ratio, "unit": "x", "target": "<= 2", "pass": ratio <= 2}
    for axis, points in results.items():
        for p in points:
            ratio = p["ingest_s"]["ratio"]
            targets[f"ingest vs plink2, {axis} axis, {p['records']:,} records x "
                    f"{p['samples']:,} samples"] = {
                "value": ratio, "unit": "x", "target": "<= 1.0", "pass": ratio <= 1.0}
        if len(points) >= 2:
            summary[f"growth_{axis}"] = growth(points, axis)
    return summary


def targets_table(targets: dict[str, Any]) -> Table:
    table = Table(title="Issue 15 targets")
    table.add_column("target")
    table.add_column("value", justify="right")
    table.add_column("needs", justify="right")
    table.add_column("verdict")
    for name, t in targets.items():
        table.add_row(name, f"{t['value']:.2f} {t['unit']}", t["target"],
                      "[green]PASS[/green]" if t["pass"] else "[red]FAIL[/red]")
    return table


def counts(text: str) -> list[int]:
    """"1e6,5e6,2e7" -> [1000000, 5000000, 20000000]."""
    return sorted(int(float(x)) for x in text.split(",") if x.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", default="1e6,5e6,2e7",
                        help="records at each sites-axis point (comma-separated)")
    parser.add_argument("--sites-samples", type=int, default=4,
                        help="samples at every sites-axis point")
    parser.add_argument("--samples", default="2000,6000,20000",
                        help="samples at each samples-axis point (comma-separated)")
    parser.add_argument("--samples-sites", type=int, default=20_000,
                        help="records at every samples-axis point")
    parser.add_argument("--queries", type=int, default=2000,
                        help="Beacon queries (and in-process lookups) per point")
    parser.add_argument("--anchor-calls", type=int, default=20,
                        help="tabix / bcftools view -r process calls per point")
    parser.add_argument("--repeats", type=int, default=1, help="ingest runs per tool per point")
    parser.add_argument("--only", choices=("sites", "samples"))
    parser.add_argument("--keep", action="store_true",
                        help="keep each point's node and plink2 output (default: removed)")
    args = parser.parse_args()

    axes: dict[str, list[Point]] = {}
    if args.only != "samples":
        axes["sites"] = [Point("sites", n, args.sites_samples)
                         for n in counts(args.sites)]
    if args.only != "sites":
        axes["samples"] = [Point("samples", args.samples_sites, n)
                           for n in counts(args.samples)]
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    results: dict[str, list[dict[str, Any]]] = {}
    for axis, points in axes.items():
        results[axis] = [measure(point, args) for point in points]
        console.print(point_table(axis, results[axis]))
    summary = summarise(results)
    for axis in results:
        if f"growth_{axis}" in summary:
            console.print(growth_table(axis, summary[f"growth_{axis}"]))
    console.print(targets_table(summary["targets"]))
    verdicts = [t["pass"] for t in summary["targets"].values()]
    console.print(f"{sum(verdicts)} of {len(verdicts)} targets pass; "
                  f"{time.perf_counter() - started:,.0f} s in all")
    RESULTS.write_text(json.dumps({
        "machine": {"cores": THREADS, "platform": platform.platform(),
                    "python": platform.python_version()},
        "arguments": vars(args), "points": results, "summary": summary,
        "seconds": time.perf_counter() - started}, indent=2) + "\n")
    console.print(f"Figures written to {RESULTS}")


if __name__ == "__main__":
    main()
