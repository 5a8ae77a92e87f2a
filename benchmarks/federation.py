"""Federation benchmark: a federated count query over 3 and over 10 local nodes through the hub,
vs the slowest of the same nodes queried directly, same run.

    .venv/bin/python benchmarks/federation.py [--rounds 300] [--samples 100] [--length-mb 0.2]

Every node is a real `genofed serve` process holding one simulated registered-tier cohort (built
once into benchmarks/work/federation/) and trusting a local OIDC issuer; each hub is a real
`genofed hub serve` process beside the first node, signing its requests (RFC 9421), which every
node verifies. The researcher holds a passport with ResearcherStatus (what registered-tier counts
need). A keep-alive HTTP/1.1 client takes turns, round by round, between the hub, each of its
nodes directly, and all of them directly at once (a bare concurrent client over the hub's own
transport: what the machine allows with no hub at all), so load and caches affect them alike.
The query is the GDI portal's: POST /individuals, women with HP:0001250 (descendants included),
count granularity. Prints p50 / p99 latencies, the fan-out overhead (hub p50 - slowest node p50)
against its target (< 10 ms at 3 nodes, < 20 ms at 10), the hub's own share (hub p50 - all nodes
at once p50: what is left once the nodes' competition for the cores is taken out) and the hub
process's CPU time per query.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

from common import cpu_seconds, free_port, percentile, running

WORK = Path(__file__).resolve().parent / "work" / "federation"
console = Console()
QUERY = {"meta": {"apiVersion": "v2.0"}, "query": {
    "filters": [{"id": "NCIT:C16576"}, {"id": "HP:0001250", "includeDescendantTerms": True}],
    "requestedGranularity": "count"}}
TARGET_MS = {3: 10.0, 10: 20.0}
COUNTRIES = ["FI", "SE", "NO", "DK", "EE", "DE", "NL", "BE", "ES", "PT"]


def prepare_nodes(count: int, samples: int, length_mb: float) -> list[Path]:
    """`count` nodes, each with its own simulated cohort (kept between runs)."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset
    from genofed.sim import simulate_cohort

    nodes = []
    for index in range(count):
        node_id = f"{COUNTRIES[index].lower()}-node"
        node = WORK / f"{node_id}-{samples}x{length_mb:g}"
        if not (node / "datasets" / f"{node_id}-cohort").exists():
            console.print(f"Simulating and ingesting {node_id} ({samples} samples) ...")
            cohort = WORK / f"cohort-{index}-{samples}x{length_mb:g}"
            summary = simulate_cohort(cohort, samples=samples, seed=100 + index,
                                      length_mb=length_mb, dataset_id=f"{node_id}-cohort",
                                      access_tier="registered", overwrite=True)
            if not (node / "node.toml").exists():
                init_node(node, node_id=node_id, country=COUNTRIES[index])
            ingest_dataset(node, summary.dataset_id, summary.vcf,
                           phenopackets=summary.phenopackets_dir,
                           metadata=summary.dataset_metadata, populations=summary.populations)
        nodes.append(node)
    return nodes


class Timer:
    """Round-by-round latencies (ms) of the hub, of each node alone, and of all nodes at once
    (unsigned, over the hub's own lean transport, from this process: the no-hub baseline)."""

    def __init__(self, client: httpx.Client, hub: str, nodes: list[str],
                 headers: dict[str, str]) -> None:
        from genofed.federation.transport import ConnectionPool, Origin

        self.client = client
        self.network = f"{hub}/network/beacon/individuals"
        self.direct = [f"{url}/beacon/individuals" for url in nodes]
        self.headers = headers
        self.loop = asyncio.new_event_loop()
        self.pool = ConnectionPool()
        self.origins = [Origin.of(url) for url in nodes]
        self.body = json.dumps(QUERY).encode()

    def timed(self, url: str) -> float:
        started = time.perf_counter()
        response = self.client.post(url, json=QUERY, headers=self.headers)
        elapsed = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            raise SystemExit(f"{url}: HTTP {response.status_code}: {response.text[:300]}")
        return elapsed

    def all_at_once(self) -> float:
        async def one(origin: Any) -> None:
            reply = await self.pool.request(origin, "POST", "/beacon/individuals", [
                ("host", origin.authority), ("content-type", "application/json"),
                ("content-length", str(len(self.body))), *self.headers.items()], self.body)
            if reply.status != 200:
                raise SystemExit(f"{origin.authority}: HTTP {reply.status}")

        async def gather() -> None:
            await asyncio.gather(*(one(origin) for origin in self.origins))

        started = time.perf_counter()
        self.loop.run_until_complete(gather())
        return (time.perf_counter() - started) * 1000

    def run(self, rounds: int) -> tuple[list[float], dict[str, list[float]], list[float]]:
        for _ in range(20):  # warm connections, caches and token verification
            self.timed(self.network)
            for url in self.direct:
                self.timed(url)
            self.all_at_once()
        answer = self.client.post(self.network, json=QUERY, headers=self.headers).json()
        lines = answer["info"]["network"]["nodes"]
        if [n["status"] for n in lines] != ["ok"] * len(self.direct) or \
                any(n.get("returnedGranularity") != "count" for n in lines):
            raise SystemExit(f"not every node answered with a count: {lines}")
        hub: list[float] = []
        alone: dict[str, list[float]] = {url: [] for url in self.direct}
        together: list[float] = []
        for _ in range(rounds):
            hub.append(self.timed(self.network))
            for url in self.direct:
                alone[url].append(self.timed(url))
            together.append(self.all_at_once())
        self.loop.run_until_complete(self.pool.close())
        self.loop.close()
        return hub, alone, together


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--length-mb", type=float, default=0.2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[3, 10])
    args = parser.parse_args()
    if max(args.sizes) > len(COUNTRIES):
        raise SystemExit(f"at most {len(COUNTRIES)} nodes")


    from genofed.config.node import VisaTrust, load_config, save_config
    from genofed.federation.network import (
        add_member,
        create_network,
        join_network,
        member_for_node,
    )
    from genofed.server.issuer import running_issuer

    WORK.mkdir(parents=True, exist_ok=True)
    nodes = prepare_nodes(max(args.sizes), args.samples, args.length_mb)
    stack = ExitStack()
    issuer = stack.enter_context(running_issuer(WORK / "issuer"))
    for node in nodes:
        config = load_config(node)
        iss, jku = issuer.visa_trust
        save_config(node, config.model_copy(update={"access": config.access.model_copy(
            update={"oidc_issuers": [issuer.url],
                    "trusted_visas": [VisaTrust(iss=iss, jku=jku)]})}))
    headers = {"Authorization": f"Bearer {issuer.passport('alice', lifetime=6 * 3600)}"}
    urls = [f"http://127.0.0.1:{free_port()}" for _ in nodes]
    networks: dict[int, Path] = {}
    for size in sorted({*args.sizes, max(args.sizes)}):
        path = WORK / f"network-{size}.toml"
        path.unlink(missing_ok=True)
        create_network(path, f"bench-{size}")
        for node, url in zip(nodes[:size], urls[:size], strict=True):
            add_member(path, member_for_node(node, url))
        networks[size] = path
    for node in nodes:  # every node verifies against the largest network
        join_network(node, networks[max(args.sizes)])

    rows = []
    with stack:
        for node, url in zip(nodes, urls, strict=True):
            stack.enter_context(running(["serve", str(node), "--port", url.rsplit(":", 1)[1],
                                         "--log-level", "warning"], f"{url}/beacon/info"))
        hubs = {}
        hub_pids = {}
        for size in args.sizes:
            port = free_port()
            hubs[size] = f"http://127.0.0.1:{port}"
            command = ["hub", "serve", str(networks[size]), "--node", str(nodes[0]), "--port",
                       str(port), "--timeout", "10", "--log-level", "warning"]
            ready = f"{hubs[size]}/network/beacon/service-info"
            hub_pids[size] = stack.enter_context(running(command, ready)).pid
        with httpx.Client(timeout=30) as client:
            for size in args.sizes:
                console.print(f"Measuring {size} nodes, {args.rounds} rounds ...")
                timer = Timer(client, hubs[size], urls[:size], headers)
                cpu_before = cpu_seconds(hub_pids[size])
                hub_times, node_times, together = timer.run(args.rounds)
                # the warm-up's 20 hub queries and the status check count too
                hub_cpu = (cpu_seconds(hub_pids[size]) - cpu_before) / (args.rounds + 21) * 1000
                slowest = max(node_times, key=lambda u: percentile(node_times[u], 0.5))
                rows.append((size, hub_times, node_times[slowest], together, hub_cpu))

    table = Table(title=f"Federated count query (POST /individuals, women with HP:0001250), "
                  f"{args.rounds} rounds, {os.cpu_count()} cores shared by every node, the hub "
                  "and the client")
    for column in ("nodes", "hub p50 / p99", "slowest node alone p50 / p99",
                   "fan-out overhead p50 (target)", "all nodes at once, no hub, p50",
                   "hub's own share p50", "hub CPU per query"):
        table.add_column(column, justify="right")
    for size, hub_times, slowest, together, hub_cpu in rows:
        hub_p50, slowest_p50 = percentile(hub_times, 0.5), percentile(slowest, 0.5)
        overhead = hub_p50 - slowest_p50
        target = TARGET_MS.get(size)
        verdict = "" if target is None else (f" (< {target:g} ms: "
                                             + ("met)" if overhead < target else "MISSED)"))
        table.add_row(str(size),
                      f"{hub_p50:.1f} / {percentile(hub_times, 0.99):.1f} ms",
                      f"{slowest_p50:.1f} / {percentile(slowest, 0.99):.1f} ms",
                      f"{overhead:.1f} ms{verdict}",
                      f"{percentile(together, 0.5):.1f} ms",
                      f"{hub_p50 - percentile(together, 0.5):.1f} ms",
                      f"{hub_cpu:.1f} ms")
    console.print(table)


if __name__ == "__main__":
    main()
