"""Build and serve the demo network: FI, SE and NL nodes with their own cohorts (different
populations and sizes, datasets in all three access tiers), a local OIDC issuer with a demo
researcher and one DAC member per node, and a coordinator beside the FI node.

The cohorts are cut from one simulated population history, as real national cohorts share their
variants: the same sites, and the same planted causal variants for a federated GWAS to find.

Everything lives under one directory and is reused by the next run (cohorts and ingests are
idempotent; the cohorts are simulated again when the seed, length or scale changes); only the
loopback ports change, so configuration that names URLs is rewritten at every start.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from genofed.access.identity.issuer import LocalIssuer
from genofed.config.node import CONFIG_FILE, VisaTrust, init_node, load_config, save_config
from genofed.server.issuer import running_issuer
from genofed.server.loopback import LoopbackServer

#: Users of the demo issuer besides its researcher `alice`: each node's committee member.
RESEARCHER = "alice"


@dataclass(frozen=True)
class DemoDataset:
    id: str
    tier: str
    population: str
    #: Individuals at --scale 1.
    samples: int
    #: Publishes allele frequencies to anyone (a reference resource, as a Genome of Europe
    #: national cohort does): the portal's allele-frequency browser shows them.
    public_frequencies: bool = False

    def scaled_samples(self, scale: float) -> int:
        return max(20, round(self.samples * scale))


@dataclass(frozen=True)
class DemoNode:
    id: str
    country: str
    datasets: tuple[DemoDataset, ...]

    @property
    def dac_member(self) -> str:
        return f"dac-{self.id}"


NODES = (
    DemoNode("fi", "FI", (DemoDataset("fi-biobank", "controlled", "CEU", 240),
                          DemoDataset("fi-reference", "public", "CEU", 80,
                                      public_frequencies=True))),
    DemoNode("se", "SE", (DemoDataset("se-cohort", "controlled", "CEU", 200),
                          DemoDataset("se-register", "registered", "CEU", 60))),
    DemoNode("nl", "NL", (DemoDataset("nl-diverse", "controlled", "YRI", 120),)),
)
#: The one simulation every dataset is cut from, under DIR/cohorts/; its sample names are
#: those the datasets keep.
POOLED_DIR, POOLED_ID, POOLED_SAMPLE_PREFIX = "pooled", "demo-pooled", "DEMO-"
#: What the cohorts were built from (seed, length, scale, datasets), written last: cohorts
#: are reused only when it matches this run's, so a new seed never meets old data.
PLAN_FILE = "demo-plan.json"
#: The coordinator runs beside this node and signs as it.
HUB_NODE = "fi"
#: The portals' client id at the demo issuer (`portal.client_id`'s default).
PORTAL_CLIENT = "genofed-portal"


@dataclass
class Running:
    """URLs of the running demo."""

    issuer: LocalIssuer
    hub_url: str
    node_urls: dict[str, str] = field(default_factory=dict)


Report = Callable[[str], None]


def build(directory: Path, *, seed: int, length_mb: float = 1.0, scale: float = 1.0,
          report: Report = lambda _: None) -> None:
    """Simulate the cohorts (unless those on disk came from the same seed, length and scale) and
    create and fill the nodes (skipping what exists)."""
    from genofed.ingest import ingest_dataset

    build_cohorts(directory / "cohorts", seed=seed, length_mb=length_mb, scale=scale,
                  report=report)
    for node in NODES:
        node_dir = directory / "nodes" / node.id
        if not (node_dir / CONFIG_FILE).is_file():
            init_node(node_dir, node_id=node.id, country=node.country)
            report(f"node {node.id} ({node.country}): created, keys generated")
        for dataset in node.datasets:
            cohort = directory / "cohorts" / dataset.id
            result = ingest_dataset(node_dir, dataset.id, cohort / "cohort.vcf.gz",
                                    phenopackets=cohort / "phenopackets",
                                    metadata=cohort / "dataset.json",
                                    populations=cohort / "populations.tsv",
                                    genes=cohort / "genes.bed")
            if not result.unchanged:
                report(f"{dataset.id}: ingested into node {node.id} ({dataset.tier} tier)")


def build_cohorts(cohorts: Path, *, seed: int, length_mb: float, scale: float,
                  report: Report = lambda _: None) -> None:
    """One simulation of every demo individual, cut into the datasets (`cohorts/{dataset id}`)."""
    datasets = [dataset for node in NODES for dataset in node.datasets]
    plan = json.dumps({"seed": seed, "length_mb": length_mb, "scale": scale, "datasets": [
        {"id": d.id, "tier": d.tier, "population": d.population,
         "samples": d.scaled_samples(scale), "public_frequencies": d.public_frequencies}
        for d in datasets]}, indent=2) + "\n"
    plan_file = cohorts / POOLED_DIR / PLAN_FILE
    if (plan_file.is_file() and plan_file.read_text(encoding="utf-8") == plan
            and all((cohorts / d.id / "dataset.json").is_file() for d in datasets)):
        report(f"cohorts of seed {seed} reused from {cohorts}")
        return
    from genofed.sim import Share, read_populations, simulate_cohort, split_cohort

    plan_file.unlink(missing_ok=True)  # a run stopped half-way leaves no plan that matches
    per_population: dict[str, int] = {}
    for dataset in datasets:
        per_population[dataset.population] = (per_population.get(dataset.population, 0)
                                              + dataset.scaled_samples(scale))
    pooled = simulate_cohort(cohorts / POOLED_DIR, samples=sum(per_population.values()),
                             seed=seed, length_mb=length_mb, population=per_population,
                             dataset_id=POOLED_ID, sample_prefix=POOLED_SAMPLE_PREFIX,
                             overwrite=True)
    # Each dataset takes the next individuals of its population, in the pooled order.
    unassigned: dict[str, list[str]] = {}
    for sample, population in read_populations(pooled.populations).items():
        unassigned.setdefault(population, []).append(sample)
    mix = ", ".join(f"{population} {len(names)}" for population, names in unassigned.items())
    report(f"simulated one population history (seed {seed}): {pooled.n_samples} individuals "
           f"({mix}), {pooled.n_variants:,} variants")
    shares = []
    for dataset in datasets:
        pool, count = unassigned[dataset.population], dataset.scaled_samples(scale)
        shares.append(Share(dataset.id, dataset.tier, tuple(pool[:count]),
                            public_frequencies=dataset.public_frequencies))
        del pool[:count]
    summaries = split_cohort(pooled, cohorts, shares, overwrite=True)
    report("split into " + ", ".join(f"{s.dataset_id} ({s.n_samples} {s.population})"
                                     for s in summaries)
           + f": the same {pooled.n_variants:,} sites and planted causal variants in each")
    plan_file.write_text(plan, encoding="utf-8")


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Running]:
    """Start the issuer, the three nodes and the coordinator on free loopback ports."""
    from genofed.federation.network import add_member, create_network, member_for_node
    from genofed.server.app import create_app
    from genofed.server.hub import create_hub_app

    with contextlib.ExitStack() as stack:
        servers = {node.id: stack.enter_context(LoopbackServer()) for node in NODES}
        hub_server = stack.enter_context(LoopbackServer())
        # The issuer's URL (its `iss`) changes with its port, so it is created afresh each run.
        issuer_dir = directory / "issuer"
        shutil.rmtree(issuer_dir, ignore_errors=True)
        issuer = stack.enter_context(running_issuer(
            issuer_dir, visa_sources=[f"{s.url}/access/visas" for s in servers.values()]))
        for node in NODES:
            if node.dac_member not in {u.id for u in issuer.users()}:
                issuer.add_demo_user(node.dac_member, name=f"DAC member, {node.country} node",
                                     researcher_status=True)
        network_file = directory / "network.toml"
        network_file.unlink(missing_ok=True)
        create_network(network_file, "genofed-demo")
        for node in NODES:
            node_dir = directory / "nodes" / node.id
            add_member(network_file, member_for_node(node_dir, servers[node.id].url))
            config = load_config(node_dir)
            config.access.public_url = servers[node.id].url
            config.access.oidc_issuers = [issuer.url]
            iss, jku = issuer.visa_trust
            config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
            committee = f"{issuer.url}|{issuer.user(node.dac_member).sub}"
            config.access.dac_members = [committee]
            config.access.operators = [committee]  # the demo's committee member also operates
            config.federation.network_file = str(network_file.resolve())
            save_config(node_dir, config)
        # The portals log users in at the issuer (code flow with PKCE): one public client,
        # allowed to return to each portal's callback.
        issuer.add_client(PORTAL_CLIENT, [f"{s.url}/portal/callback"
                                          for s in [*servers.values(), hub_server]])
        for node in NODES:
            servers[node.id].start(create_app(directory / "nodes" / node.id))
        hub_dir = directory / "nodes" / HUB_NODE
        hub_server.start(create_hub_app(network_file, hub_dir, timeout=5.0))
        yield Running(issuer, hub_server.url, {n: s.url for n, s in servers.items()})
