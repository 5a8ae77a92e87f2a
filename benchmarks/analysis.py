"""Federated analysis benchmark: allele frequencies, linear and logistic GWAS over 3 nodes vs plink2
on the pooled file, same data, same run.

    .venv/bin/python benchmarks/analysis.py [--individuals 10000] [--length-mb 5] [--scale 1]

One simulated cohort (1% of calls missing) is split over three nodes (40 / 33 / 27% of the
individuals) and pooled for plink2 (`--make-pgen` once, not timed, as our ingest is not). Every
node is a real `genofed serve` process, the coordinator a real `genofed hub serve` process beside
the first; the researcher holds a passport with a ControlledAccessGrants visa for every dataset.
Timed: submit to done (every round: setup, variant tokens, masked statistics, reveal, result
files) against `plink2 --freq`, `--glm` (LDL ~ sex + age) and `--glm` (seizures ~ sex + age,
logistic with Firth fallback) on the pooled .pgen with both cores. Prints the ratios against
the targets (linear <= 1.5x, logistic <= 2x, frequencies <= 1.5x), each job's rounds, the bytes
each node sent and received, and each node process's peak memory. `--scale 4` runs the same on
4x the variants (4x the length), to see how cost grows. Data is built once under
benchmarks/work/analysis/ and reused.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from common import free_port, peak_memory, running

WORK = Path(__file__).resolve().parent / "work" / "analysis"
console = Console()
SHARES = (("fi", "FI", 0.40), ("se", "SE", 0.33), ("nl", "NL", 0.27))
LDL, SEIZURES = "LOINC:2089-1", "HP:0002069"
JOBS: dict[str, dict[str, Any]] = {
    "allele frequencies": {"type": "freq"},
    "linear GWAS (LDL ~ sex + age)": {"type": "gwas-linear", "trait": {"measurement": LDL},
                                      "covariates": ["sex", "age"]},
    "logistic GWAS (seizures ~ sex + age)": {"type": "gwas-logistic",
                                             "trait": {"hpo": SEIZURES},
                                             "covariates": ["sex", "age"]},
}
TARGETS = {"allele frequencies": 1.5, "linear GWAS (LDL ~ sex + age)": 1.5,
           "logistic GWAS (seizures ~ sex + age)": 2.0}


def sh(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True,
                          text=True).stdout


def prepare(individuals: int, length_mb: float) -> tuple[Path, list[tuple[str, str, Path]]]:
    """The pooled plink2 fileset and the three nodes (node id, dataset, directory)."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset
    from genofed.sim import simulate_cohort

    root = WORK / f"{individuals}x{length_mb:g}"
    pooled = root / "pooled"
    if not (pooled / "dataset.json").is_file():
        console.print(f"Simulating {individuals:,} individuals x {length_mb:g} Mb ...")
        simulate_cohort(pooled, samples=individuals, seed=2026, length_mb=length_mb,
                        missing_rate=0.01, dataset_id="pooled", access_tier="controlled",
                        overwrite=True)
    names = sh("bcftools", "query", "-l", pooled / "cohort.vcf.gz").split()
    nodes, start = [], 0
    for index, (node_id, country, share) in enumerate(SHARES):
        count = len(names) - start if index == len(SHARES) - 1 else round(share * len(names))
        own, start = names[start:start + count], start + count
        node, dataset = root / f"node-{node_id}", f"{node_id}-cohort"
        nodes.append((f"{node_id}-node", dataset, node))
        if (node / "datasets" / dataset).is_dir():
            continue
        console.print(f"Splitting and ingesting {dataset} ({len(own):,} individuals) ...")
        part = root / f"share-{node_id}"
        (part / "phenopackets").mkdir(parents=True, exist_ok=True)
        (part / "samples.txt").write_text("\n".join(own) + "\n")
        sh("bcftools", "view", "-S", part / "samples.txt", "--threads", "2", "-Oz", "-o",
           part / "cohort.vcf.gz", pooled / "cohort.vcf.gz")
        for name in own:
            shutil.copy(pooled / "phenopackets" / f"{name}.json", part / "phenopackets")
        metadata = json.loads((pooled / "dataset.json").read_text())
        metadata.update(id=dataset, name=dataset)
        (part / "dataset.json").write_text(json.dumps(metadata))
        if not (node / "node.toml").is_file():
            init_node(node, node_id=f"{node_id}-node", country=country)
        ingest_dataset(node, dataset, part / "cohort.vcf.gz",
                       phenopackets=part / "phenopackets", metadata=part / "dataset.json")
    prefix = root / "plink" / "pooled"
    if not Path(f"{prefix}.pgen").is_file():
        console.print("Pooling for plink2 (split multi-allelic records, sex, phenotypes) ...")
        prefix.parent.mkdir(exist_ok=True)
        _phenotypes(pooled, names, prefix.parent)
        sh("bcftools", "norm", "-m-", "--threads", "2", "-Oz", "-o",
           prefix.parent / "norm.vcf.gz", pooled / "cohort.vcf.gz")
        sh("plink2", "--vcf", prefix.parent / "norm.vcf.gz", "--double-id",
           "--set-all-var-ids", "@:#:$r:$a", "--new-id-max-allele-len", "1000",
           "--update-sex", prefix.parent / "sex.tsv", "--make-pgen", "--out", prefix)
    return prefix, nodes


def _phenotypes(pooled: Path, names: list[str], out: Path) -> None:
    """pheno.tsv (LDL, SEIZURES), covar.tsv (SEX, AGE) and sex.tsv, read from the Phenopackets
    as a node reads them (seizures: HP:0002069 or a descendant)."""
    from genofed.ontology.hpo import hpo

    seizures = hpo().descendants(SEIZURES) | {SEIZURES}
    pheno, covar, sex = ["#FID\tIID\tLDL\tSEIZURES"], ["#FID\tIID\tSEX\tAGE"], ["#FID\tIID\tSEX"]
    for name in names:
        packet = json.loads((pooled / "phenopackets" / f"{name}.json").read_text())
        ldl = next((m["value"]["quantity"]["value"] for m in packet.get("measurements", [])
                    if m["assay"]["id"] == LDL), "NA")
        terms = {f["type"]["id"] for f in packet.get("phenotypicFeatures", [])
                 if not f.get("excluded")}
        code = {"MALE": "1", "FEMALE": "2"}.get(packet["subject"].get("sex", ""), "NA")
        age = packet["subject"]["timeAtLastEncounter"]["age"]["iso8601duration"][1:-1]
        pheno.append(f"{name}\t{name}\t{ldl}\t{2 if terms & seizures else 1}")
        covar.append(f"{name}\t{name}\t{code}\t{float(age)}")
        sex.append(f"{name}\t{name}\t{code}")
    for file, rows in (("pheno.tsv", pheno), ("covar.tsv", covar), ("sex.tsv", sex)):
        (out / file).write_text("\n".join(rows) + "\n")


def plink_times(prefix: Path, repeats: int) -> dict[str, float]:
    """Median wall time of each plink2 run (both cores, as plink2 defaults to)."""
    pheno = ["--pheno", prefix.parent / "pheno.tsv", "--covar", prefix.parent / "covar.tsv",
             "--covar-name", "SEX,AGE"]
    commands: dict[str, list[str | Path]] = {
        "allele frequencies": ["--freq"],
        "linear GWAS (LDL ~ sex + age)": [*pheno, "--pheno-name", "LDL", "--glm", "hide-covar"],
        "logistic GWAS (seizures ~ sex + age)": [*pheno, "--pheno-name", "SEIZURES", "--glm",
                                                 "hide-covar"],
    }
    times = {}
    for name, extra in commands.items():
        runs = []
        for _ in range(repeats):
            started = time.perf_counter()
            sh("plink2", "--pfile", prefix, *extra, "--out", prefix.parent / "out")
            runs.append(time.perf_counter() - started)
        times[name] = sorted(runs)[len(runs) // 2]
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--individuals", type=int, default=10_000)
    parser.add_argument("--length-mb", type=float, default=5.0)
    parser.add_argument("--scale", type=float, default=1.0,
                        help="multiply the simulated length (variants) by this")
    parser.add_argument("--repeats", type=int, default=3, help="plink2 runs per analysis")
    args = parser.parse_args()

    from genofed.analysis.client import HubClient
    from genofed.config.node import load_config, save_config
    from genofed.federation.network import (
        add_member,
        create_network,
        join_network,
        member_for_node,
    )
    from genofed.server.issuer import running_issuer

    length = args.length_mb * args.scale
    prefix, nodes = prepare(args.individuals, length)
    with Path(f"{prefix}.pvar").open() as pvar:
        variants = sum(1 for line in pvar if not line.startswith("#"))
    console.print(f"{args.individuals:,} individuals x {variants:,} variants (after splitting "
                  f"multi-allelic records), 3 nodes")
    root = prefix.parent.parent
    with ExitStack() as stack:
        issuer = stack.enter_context(running_issuer(root / "issuer"))
        network_file = root / "network.toml"
        network_file.unlink(missing_ok=True)
        create_network(network_file, "benchmark")
        ports = {node_id: free_port() for node_id, _d, _n in nodes}
        for node_id, _dataset, node in nodes:
            config = load_config(node)
            config.access.oidc_issuers = [issuer.url]
            iss, jku = issuer.visa_trust
            from genofed.config.node import VisaTrust

            config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
            save_config(node, config)
            add_member(network_file, member_for_node(node, f"http://127.0.0.1:{ports[node_id]}"))
        for _node_id, _dataset, node in nodes:
            join_network(node, network_file)
        processes = {}
        for node_id, _dataset, node in nodes:
            url = f"http://127.0.0.1:{ports[node_id]}"
            processes[node_id] = stack.enter_context(running(
                ["serve", str(node), "--port", str(ports[node_id]), "--log-level", "warning"],
                f"{url}/beacon/info"))
        hub_port = free_port()
        hub_url = f"http://127.0.0.1:{hub_port}"
        hub = stack.enter_context(running(
            ["hub", "serve", str(network_file), "--node", str(nodes[0][2]), "--port",
             str(hub_port), "--log-level", "warning"], f"{hub_url}/network/beacon/info"))
        visas = [issuer.visa("alice", "ControlledAccessGrants", dataset, by="dac")
                 for _n, dataset, _d in nodes]
        token = issuer.passport("alice", extra_visas=visas, lifetime=6 * 3600)
        ours: dict[str, float] = {}
        jobs: dict[str, dict[str, Any]] = {}
        with HubClient(hub_url, token, timeout=600) as client:
            for name, spec in JOBS.items():
                console.print(f"genofed: {name} ...")
                started = time.perf_counter()
                job = client.wait(client.submit(spec)["id"], timeout=7200, interval=0.1)
                ours[name] = time.perf_counter() - started
                if job["state"] != "done":
                    raise SystemExit(f"{name} failed: {job['message']}")
                jobs[name] = job
        memory = {node_id: peak_memory(p.pid) for node_id, p in processes.items()}
        memory["hub"] = peak_memory(hub.pid)
    console.print("plink2 on the pooled file ...")
    theirs = plink_times(prefix, args.repeats)
    _report(args, variants, ours, theirs, jobs, memory)


def _report(args: argparse.Namespace, variants: int, ours: dict[str, float],
            theirs: dict[str, float], jobs: dict[str, dict[str, Any]],
            memory: dict[str, int]) -> None:
    table = Table(title=f"Federated analysis, {args.individuals:,} individuals x {variants:,} "
                        "variants, 3 nodes (wall time, submit to done)")
    for column in ("analysis", "genofed", "plink2 pooled", "ratio", "target", "rounds",
                   "variants released"):
        table.add_column(column, justify="left" if column == "analysis" else "right")
    for name in JOBS:
        job = jobs[name]
        progress = job["progress"]
        ratio = ours[name] / theirs[name]
        table.add_row(name, f"{ours[name]:.2f} s", f"{theirs[name]:.2f} s", f"{ratio:.2f}x",
                      f"<= {TARGETS[name]:g}x {'ok' if ratio <= TARGETS[name] else 'MISSED'}",
                      str(max(t["rounds"] for t in progress["traffic"].values())),
                      f"{progress.get('released', 0):,} of {progress.get('variants', 0):,}")
    console.print(table)
    traffic = Table(title="Per node: bytes sent / received over all three jobs, peak memory")
    for column in ("node", "sent", "received", "peak RSS"):
        traffic.add_column(column, justify="left" if column == "node" else "right")
    for node_id in sorted(memory):
        sent = sum(j["progress"]["traffic"].get(node_id, {}).get("bytesSent", 0)
                   for j in jobs.values())
        received = sum(j["progress"]["traffic"].get(node_id, {}).get("bytesReceived", 0)
                       for j in jobs.values())
        traffic.add_row(node_id, f"{sent / 1e6:.1f} MB", f"{received / 1e6:.1f} MB",
                        f"{memory[node_id] / 1e6:.0f} MB")
    console.print(traffic)


if __name__ == "__main__":
    main()
