"""Build and serve the demo network: FI, SE and NL nodes with different simulated cohorts (different
populations and sizes, datasets in all three access tiers), a local OIDC issuer with a demo
researcher and one DAC member per node, and a coordinator beside the FI node.

Everything lives under one directory and is reused by the next run (cohorts and ingests are
idempotent); only the loopback ports change, so configuration that names URLs is rewritten at
every start.
"""

from __future__ import annotations

import contextlib
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
    samples: int
    seed: int


@dataclass(frozen=True)
class DemoNode:
    id: str
    country: str
    datasets: tuple[DemoDataset, ...]

    @property
    def dac_member(self) -> str:
        return f"dac-{self.id}"


NODES = (
    DemoNode("fi", "FI", (DemoDataset("fi-biobank", "controlled", "CEU", 240, 1),
                          DemoDataset("fi-reference", "public", "CEU", 80, 2))),
    DemoNode("se", "SE", (DemoDataset("se-cohort", "registered", "CEU", 160, 3),)),
    DemoNode("nl", "NL", (DemoDataset("nl-diverse", "controlled", "YRI", 120, 4),)),
)
#: The coordinator runs beside this node and signs as it.
HUB_NODE = "fi"


@dataclass
class Running:
    """URLs of the running demo."""

    issuer: LocalIssuer
    hub_url: str
    node_urls: dict[str, str] = field(default_factory=dict)


Report = Callable[[str], None]


def build(directory: Path, *, length_mb: float = 1.0, scale: float = 1.0,
          report: Report = lambda _: None) -> None:
    """Simulate the cohorts and create and fill the nodes (skipping what exists)."""
    from genofed.ingest import ingest_dataset
    from genofed.sim import simulate_cohort

    for node in NODES:
        node_dir = directory / "nodes" / node.id
        if not (node_dir / CONFIG_FILE).is_file():
            init_node(node_dir, node_id=node.id, country=node.country)
            report(f"node {node.id} ({node.country}): created, keys generated")
        for dataset in node.datasets:
            cohort = directory / "cohorts" / dataset.id
            if not (cohort / "dataset.json").is_file():
                samples = max(20, round(dataset.samples * scale))
                summary = simulate_cohort(cohort, samples=samples, seed=dataset.seed,
                                          length_mb=length_mb, population=dataset.population,
                                          dataset_id=dataset.id, access_tier=dataset.tier,
                                          overwrite=True)
                report(f"{dataset.id}: simulated {summary.n_samples} individuals "
                       f"({dataset.population}), {summary.n_variants:,} variants")
            result = ingest_dataset(node_dir, dataset.id, cohort / "cohort.vcf.gz",
                                    phenopackets=cohort / "phenopackets",
                                    metadata=cohort / "dataset.json",
                                    populations=cohort / "populations.tsv",
                                    genes=cohort / "genes.bed")
            if not result.unchanged:
                report(f"{dataset.id}: ingested into node {node.id} ({dataset.tier} tier)")


@contextlib.contextmanager
def serving(directory: Path) -> Iterator[Running]:
    """Start the issuer, the three nodes and the coordinator on free loopback ports."""
    from genofed.config.node import NodePaths
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
                issuer.add_user(node.dac_member, name=f"DAC member, {node.country} node",
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
            config.access.dac_members = [f"{issuer.url}|{issuer.user(node.dac_member).sub}"]
            config.federation.network_file = str(network_file.resolve())
            save_config(node_dir, config)
        for node in NODES:
            servers[node.id].start(create_app(directory / "nodes" / node.id))
        hub_dir = directory / "nodes" / HUB_NODE
        hub_config = load_config(hub_dir)
        hub_server.start(create_hub_app(network_file, NodePaths(hub_dir, hub_config).signing_key,
                                        HUB_NODE, timeout=5.0))
        yield Running(issuer, hub_server.url, {n: s.url for n, s in servers.items()})
