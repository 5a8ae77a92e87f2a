"""Beacon benchmark: count queries over loopback vs `bcftools view -r` on the indexed VCF.

    .venv/bin/python benchmarks/beacon.py [--samples 2500] [--length-mb 9] [--clients 4]
                                          [--seconds 10] [--workers 2]

Serves the node with the real `genofed serve` command, trusting a local OIDC issuer whose
researcher (a ResearcherStatus visa: the registered tier's counts) sends every query with her
passport, so each query is authenticated, judged by the access policy and audited. It runs
`--clients` concurrent keep-alive HTTP/1.1 connections (a small raw-socket client, so the load
generator costs little of the two cores) sending `/beacon/g_variants` sequence queries for
random known sites at count granularity for `--seconds`. Prints p50/p99 latency and sustained
throughput, and the per-query wall time of `bcftools view -r` process calls for the same
positions in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from rich.console import Console
from rich.table import Table

from common import free_port, percentile

WORK = Path(__file__).resolve().parent / "work"
console = Console()


def prepare_node(samples: int, length_mb: float, issuer: Any) -> tuple[Path, Path]:
    """The simulated cohort (shared with benchmarks/ingest.py) ingested with its phenopackets,
    on a node that trusts `issuer`."""
    from genofed.config.node import VisaTrust, init_node, load_config, save_config
    from genofed.ingest import ingest_dataset
    from genofed.sim import simulate_cohort

    cohort = WORK / f"cohort-{samples}x{length_mb:g}"
    if not (cohort / "cohort.vcf.gz.tbi").exists():
        console.print(f"Simulating {samples} samples x {length_mb} Mb ...")
        simulate_cohort(cohort, samples=samples, seed=1, length_mb=length_mb,
                        dataset_id="bench", overwrite=True)
    node = WORK / f"beacon-node-{samples}x{length_mb:g}"
    if not (node / "node.toml").exists():
        init_node(node, node_id="bench-beacon", country="FI")
    config = load_config(node)
    # A load test is one caller sending many queries: lift its budget.
    config.disclosure.query_budget = 10_000_000
    config.access.oidc_issuers = [issuer.url]
    iss, jku = issuer.visa_trust
    config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
    save_config(node, config)
    console.print("Ingesting (idempotent) ...")
    ingest_dataset(node, "bench", cohort / "cohort.vcf.gz",
                   phenopackets=cohort / "phenopackets", metadata=cohort / "dataset.json",
                   populations=cohort / "populations.tsv")
    return node, cohort / "cohort.vcf.gz"


def query_paths(node: Path, n: int) -> tuple[list[str], list[tuple[str, int]]]:
    from genofed.store import NodeStore

    sites = NodeStore.open(node).dataset("bench").sites
    rng = random.Random(7)
    rows = [rng.randrange(sites.num_rows) for _ in range(n)]
    chrom, pos = sites.column("contig").to_pylist(), sites.column("pos").to_pylist()
    ref, alt = sites.column("ref").to_pylist(), sites.column("alt").to_pylist()
    paths, positions = [], []
    for row in rows:
        params = {"referenceName": chrom[row], "start": pos[row] - 1,
                  "referenceBases": ref[row], "alternateBases": alt[row],
                  "requestedGranularity": "count"}
        paths.append("/beacon/g_variants?" + urlencode(params))
        positions.append((chrom[row], pos[row]))
    return paths, positions


async def client(port: int, paths: list[str], stop_at: float, latencies: list[float],
                 errors: list[str], token: str) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = 0
    try:
        while time.perf_counter() < stop_at:
            path = paths[i % len(paths)]
            i += 1
            started = time.perf_counter()
            writer.write(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         f"Authorization: Bearer {token}\r\n\r\n".encode())
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            body = await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode() + " " + body[:200].decode())
    finally:
        writer.close()


async def load(port: int, paths: list[str], clients: int, seconds: float, token: str
               ) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    stop_at = started + seconds
    slices = [paths[i::clients] for i in range(clients)]
    await asyncio.gather(*(client(port, s, stop_at, latencies, errors, token)
                           for s in slices))
    return latencies, errors, time.perf_counter() - started


def wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("genofed serve exited early")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("genofed serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2500)
    parser.add_argument("--length-mb", type=float, default=9.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()


    from genofed.server.issuer import running_issuer

    with running_issuer(WORK / "beacon-issuer") as issuer:
        run(args, issuer)


def run(args: argparse.Namespace, issuer: Any) -> None:
    node, vcf = prepare_node(args.samples, args.length_mb, issuer)
    token = issuer.passport("alice", lifetime=3600)
    paths, positions = query_paths(node, 5000)
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "genofed", "serve", str(node), "--port",
                               str(port), "--workers", str(args.workers), "--log-level",
                               "warning"])
    try:
        wait_ready(port, server)
        # warm-up: imports, caches, connections, the passport's first check
        asyncio.run(load(port, paths[:200], 2, 2.0, token))
        latencies, errors, elapsed = asyncio.run(load(port, paths, args.clients, args.seconds,
                                                      token))
    finally:
        server.terminate()
        server.wait(timeout=30)
    if errors:
        console.print(f"[red]{len(errors)} failed queries[/red], e.g. {errors[0]}")

    # The anchor: one `bcftools view -r` process call per query, as a tool user meets it.
    bcftools_times = []
    for chrom, pos in positions[:100]:
        started = time.perf_counter()
        subprocess.run(["bcftools", "view", "-H", "-r", f"{chrom}:{pos}", str(vcf)], check=True,
                       stdout=subprocess.DEVNULL)
        bcftools_times.append(time.perf_counter() - started)

    p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
    throughput = len(latencies) / elapsed
    b50, b99 = percentile(bcftools_times, 0.5), percentile(bcftools_times, 0.99)
    table = Table(title=f"Beacon count queries: {args.clients} concurrent clients x "
                  f"{args.seconds:g} s over loopback, {args.workers} server workers, "
                  f"{os.cpu_count()} cores")
    table.add_column("what")
    table.add_column("p50", justify="right")
    table.add_column("p99", justify="right")
    table.add_column("queries/s", justify="right")
    table.add_column("target", justify="left")
    table.add_row("genofed /beacon/g_variants (count)", f"{p50 * 1e3:.2f} ms",
                  f"{p99 * 1e3:.2f} ms", f"{throughput:,.0f}",
                  "p50 < 5 ms, p99 < 50 ms, >= 500 q/s")
    table.add_row("bcftools view -r (one process per query)", f"{b50 * 1e3:.2f} ms",
                  f"{b99 * 1e3:.2f} ms", f"{1 / statistics.mean(bcftools_times):,.0f}", "")
    table.add_row("ratio bcftools / genofed", f"{b50 / p50:.1f}x", f"{b99 / p99:.1f}x",
                  f"{throughput * statistics.mean(bcftools_times):.1f}x", "")
    console.print(table)
    console.print(f"{len(latencies):,} queries, {len(errors)} errors")


if __name__ == "__main__":
    main()
