"""Ingest benchmark: genofed vs plink2 --make-pgen vs bcftools view -Ob, same file, same run.

    .venv/bin/python benchmarks/ingest.py [--samples 2500] [--length-mb 9] [--repeats 3]

Prints wall times and ratios (median of repeats), store size vs the .pgen, and in-process point
lookup latency vs a `tabix` / `bcftools view -r` process call. The cohort is simulated once into
benchmarks/work/ and reused.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

WORK = Path(__file__).resolve().parent / "work"
console = Console()


def run_timed(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def interleaved(commands: dict[str, tuple[list[str], object]], repeats: int) -> dict[str, float]:
    """Median wall time of each command, the commands taking turns in every round so that
    background load affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(repeats):
        for name, (command, before) in commands.items():
            if callable(before):
                before()
            times[name].append(run_timed(command))
    return {name: statistics.median(values) for name, values in times.items()}


def median_call(commands: list[list[str]]) -> float:
    """Median wall time of one process call each (a tool's per-query cost as a user meets it)."""
    return statistics.median(run_timed(command) for command in commands)


def size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--length-mb", type=float, default=9.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from genofed.config.node import init_node
    from genofed.sim import simulate_cohort
    from genofed.store import NodeStore

    cohort = WORK / f"cohort-{args.samples}x{args.length_mb:g}"
    if not (cohort / "cohort.vcf.gz.tbi").exists():
        console.print(f"Simulating {args.samples} samples x {args.length_mb} Mb ...")
        simulate_cohort(cohort, samples=args.samples, seed=1, length_mb=args.length_mb,
                        dataset_id="bench", overwrite=True)
    vcf = cohort / "cohort.vcf.gz"
    n_records = int(subprocess.run(["bcftools", "index", "-n", vcf], capture_output=True,
                                   text=True, check=True).stdout)
    threads = str(os.cpu_count() or 2)
    node = WORK / "node"
    out = WORK / "out"
    out.mkdir(exist_ok=True)

    def fresh_node() -> None:
        shutil.rmtree(node, ignore_errors=True)
        init_node(node, node_id="bench", country="FI")

    genofed = [sys.executable, "-m", "genofed", "ingest", str(node), "--dataset", "bench",
               "--vcf", str(vcf)]
    full = [*genofed, "--phenopackets", str(cohort / "phenopackets"), "--metadata",
            str(cohort / "dataset.json"), "--populations", str(cohort / "populations.tsv")]
    plink = ["plink2", "--vcf", str(vcf), "--make-pgen", "--out", str(out / "plink"),
             "--threads", threads]
    bcf = ["bcftools", "view", "-Ob", "-o", str(out / "cohort.bcf"), str(vcf)]
    medians = interleaved({"genofed": (genofed, fresh_node), "plink2": (plink, None),
                           "full": (full, fresh_node), "bcftools": (bcf, None)}, args.repeats)
    t_genofed, t_plink, t_full, t_bcf = (medians[k] for k in ("genofed", "plink2", "full",
                                                              "bcftools"))

    version = NodeStore.open(node).dataset("bench").path
    archived = size_of(version / "files")  # the encrypted original, kept for htsget (issue 5)
    store_size = size_of(version) - archived
    genotype_size = size_of(version / "genotypes.zarr")
    pgen = size_of(out / "plink.pgen")
    pgen_all = pgen + size_of(out / "plink.pvar") + size_of(out / "plink.psam")

    ds = NodeStore.open(node).dataset("bench")
    positions = ds.sites.column("pos").to_pylist()
    rng = random.Random(1)
    sample = [rng.choice(positions) for _ in range(20_000)]
    ds.sites_at("20", sample[0])
    lookups = []
    for pos in sample:
        started = time.perf_counter()
        ds.sites_at("20", pos)
        lookups.append(time.perf_counter() - started)
    lookups.sort()
    process_calls = median_call([["tabix", str(vcf), f"20:{pos}-{pos}"] for pos in sample[:50]])
    bcftools_calls = median_call([["bcftools", "view", "-H", "-r", f"20:{pos}", str(vcf)]
                                  for pos in sample[:50]])

    table = Table(title=f"Ingest: {args.samples:,} samples x {n_records:,} records "
                  f"({size_of(vcf) / 1e6:.1f} MB VCF.gz), {threads} cores, median of "
                  f"{args.repeats}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_column("ratio (genofed / anchor)", justify="right")
    table.add_row("plink2 --make-pgen", f"{t_plink:.2f} s", "")
    table.add_row("bcftools view -Ob", f"{t_bcf:.2f} s", "")
    table.add_row("genofed ingest (VCF only)", f"{t_genofed:.2f} s",
                  f"{t_genofed / t_plink:.2f}x plink2, {t_genofed / t_bcf:.2f}x bcftools")
    table.add_row("genofed ingest (+ phenopackets, metadata)", f"{t_full:.2f} s",
                  f"{t_full / t_plink:.2f}x plink2")
    table.add_row(".pgen size", f"{pgen / 1e6:.2f} MB", "")
    table.add_row(".pgen+.pvar+.psam size", f"{pgen_all / 1e6:.2f} MB", "")
    table.add_row("genofed store (genotypes.zarr)", f"{genotype_size / 1e6:.2f} MB",
                  f"{genotype_size / pgen:.2f}x pgen")
    table.add_row("genofed variant store (whole version without files/)",
                  f"{store_size / 1e6:.2f} MB",
                  f"{store_size / pgen:.2f}x pgen, {store_size / pgen_all:.2f}x pgen+pvar+psam")
    table.add_row("+ encrypted original VCF.gz and index (files/)", f"{archived / 1e6:.2f} MB",
                  f"{archived / size_of(vcf):.2f}x the VCF.gz")
    p50 = lookups[len(lookups) // 2]
    table.add_row("point lookup in-process p50 / p99",
                  f"{p50 * 1e6:.1f} / {lookups[int(len(lookups) * 0.99)] * 1e6:.1f} us", "")
    table.add_row("tabix process call median",
                  f"{process_calls * 1e3:.2f} ms",
                  f"{process_calls / p50:.0f}x slower than genofed")
    table.add_row("bcftools view -r process call median",
                  f"{bcftools_calls * 1e3:.2f} ms",
                  f"{bcftools_calls / p50:.0f}x slower than genofed")
    console.print(table)


if __name__ == "__main__":
    main()
