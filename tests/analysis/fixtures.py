"""Fixtures (a pytest plugin: tests/conftest.py loads it) of the federated analysis tests: a
simulated cohort of 3,000 individuals (1 Mb of chr20, 1% of calls missing) shared by three
nodes, and the same data pooled for plink2: the reference every federated result must equal.

The shares are 1,200 (FI), 1,000 (SE) and 800 (NL) individuals. The SE node keeps its datasets
in S3 (a moto server on loopback), the others on local disk: every federated result is computed
over both stores, and must still equal plink2's. The NL share lacks every 40th
variant, as a node genotyped on another array would: in the pooled file those variants are
missing for NL's individuals (what `bcftools merge` of the three shares leaves), never reference.
`pooled.pgen` is that merge, multi-allelic records split (`bcftools norm -m-`), in plink2's own
format with sex; `pheno.tsv` and `covar.tsv` hold LDL (LOINC:2089-1), seizure status (HP:0002069
and descendants), sex and age, read from the Phenopackets as a node reads them.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from genofed.config.node import init_node
from genofed.federation.network import (
    Member,
    add_member,
    create_network,
    join_network,
    member_for_node,
)
from genofed.formats.bgzf import BgzfWriter
from genofed.ingest import ingest_dataset
from genofed.ontology.hpo import hpo
from genofed.server.app import create_app
from genofed.server.hub import create_hub_app
from genofed.server.loopback import LoopbackServer
from genofed.sim import simulate_cohort
from tests.s3 import S3Server, keep_datasets_in_s3
from tests.support import require_tool, served, trust_issuer

SHARES = {"fi": ("FI", 1200), "se": ("SE", 1000), "nl": ("NL", 800)}
#: The share whose node keeps its datasets in S3.
IN_S3 = "se"
#: The NL share lacks every DROP_EVERY-th record of the pooled cohort.
DROP_EVERY = 40
LDL = "LOINC:2089-1"
SEIZURES = "HP:0002069"


@dataclass(frozen=True)
class Share:
    node_id: str
    country: str
    node: Path  # the node directory
    dataset: str
    vcf: Path
    samples: list[str]


@dataclass(frozen=True)
class AnalysisCohort:
    root: Path
    shares: list[Share]
    #: plink2's input: pooled.pgen/.pvar/.psam (merged, split multi-allelics, sex set).
    plink_prefix: Path
    #: FID/IID, LDL, SEIZURES (1 control, 2 case; NA where unknown); FID/IID, SEX, AGE.
    pheno: Path
    covar: Path
    merged_vcf: Path
    truth: dict[str, object]

    @property
    def samples(self) -> list[str]:
        return [s for share in self.shares for s in share.samples]


def _run(*args: str | Path) -> str:
    return subprocess.run([str(a) for a in args], check=True, capture_output=True,
                          text=True).stdout


def _drop_records(source: Path, target: Path, every: int) -> None:
    with gzip.open(source, "rt") as handle, BgzfWriter(target) as writer:
        record = 0
        for line in handle:
            if not line.startswith("#"):
                record += 1
                if record % every == 0:
                    continue
            writer.write_record(line.encode())
    _run("bcftools", "index", "-t", target)


def _pheno_and_covar(packets: Path, samples: list[str], pheno: Path, covar: Path) -> None:
    seizures = hpo().descendants(SEIZURES) | {SEIZURES}
    pheno_rows, covar_rows = ["#FID\tIID\tLDL\tSEIZURES"], ["#FID\tIID\tSEX\tAGE"]
    for sample in samples:
        packet = json.loads((packets / f"{sample}.json").read_text())
        ldl = next((m["value"]["quantity"]["value"] for m in packet.get("measurements", [])
                    if m["assay"]["id"] == LDL), None)
        terms = {f["type"]["id"] for f in packet.get("phenotypicFeatures", [])
                 if not f.get("excluded")}
        case = 2 if terms & seizures else 1
        sex = {"MALE": "1", "FEMALE": "2"}.get(packet["subject"].get("sex", ""), "NA")
        age = packet["subject"]["timeAtLastEncounter"]["age"]["iso8601duration"]
        pheno_rows.append(f"{sample}\t{sample}\t{'NA' if ldl is None else ldl}\t{case}")
        covar_rows.append(f"{sample}\t{sample}\t{sex}\t{float(age[1:-1])}")
    pheno.write_text("\n".join(pheno_rows) + "\n")
    covar.write_text("\n".join(covar_rows) + "\n")


@pytest.fixture(scope="session")
def analysis_cohort(tmp_path_factory: pytest.TempPathFactory, s3: S3Server) -> AnalysisCohort:
    for tool in ("bcftools", "plink2"):
        require_tool(tool)
    root = tmp_path_factory.mktemp("analysis")
    total = sum(n for _c, n in SHARES.values())
    pooled = simulate_cohort(root / "pooled", samples=total, seed=23, length_mb=1.0,
                             missing_rate=0.01, dataset_id="pooled", access_tier="controlled")
    names = _run("bcftools", "query", "-l", pooled.vcf).split()
    shares, start = [], 0
    for node_id, (country, count) in SHARES.items():
        own = names[start:start + count]
        start += count
        out = root / f"share-{node_id}"
        (out / "phenopackets").mkdir(parents=True)
        vcf = out / "cohort.vcf.gz"
        _run("bcftools", "view", "-s", ",".join(own), "-Oz", "-o", vcf, pooled.vcf)
        _run("bcftools", "index", "-t", vcf)
        if node_id == "nl":
            dropped = out / "cohort.dropped.vcf.gz"
            _drop_records(vcf, dropped, DROP_EVERY)
            vcf = dropped
        for name in own:
            shutil.copy(pooled.phenopackets_dir / f"{name}.json", out / "phenopackets")
        dataset = f"{node_id}-cohort"
        metadata = json.loads(pooled.dataset_metadata.read_text())
        metadata.update(id=dataset, name=f"{dataset} ({len(own)} individuals)")
        (out / "dataset.json").write_text(json.dumps(metadata))
        node = root / f"node-{node_id}"
        init_node(node, node_id=f"{node_id}-node", country=country)
        if node_id == IN_S3:
            keep_datasets_in_s3(node, s3)
        ingest_dataset(node, dataset, vcf, phenopackets=out / "phenopackets",
                       metadata=out / "dataset.json")
        if node_id == IN_S3:  # served as by a machine that did not ingest
            shutil.rmtree(node / "cache")
        shares.append(Share(f"{node_id}-node", country, node, dataset, vcf, own))

    merged = root / "merged.vcf.gz"
    _run("bcftools", "merge", "-Oz", "-o", merged, *(s.vcf for s in shares))
    normalized = root / "merged.norm.vcf.gz"
    _run("bcftools", "norm", "-m-", "-Oz", "-o", normalized, merged)
    pheno, covar = root / "pheno.tsv", root / "covar.tsv"
    _pheno_and_covar(pooled.phenopackets_dir, names, pheno, covar)
    sex = root / "sex.tsv"
    sex.write_text("#FID\tIID\tSEX\n" + "".join(
        "\t".join(line.split()[:3]) + "\n" for line in covar.read_text().splitlines()[1:]))
    prefix = root / "pooled"
    _run("plink2", "--vcf", normalized, "--double-id", "--set-all-var-ids", "@:#:$r:$a",
         "--new-id-max-allele-len", "1000", "--update-sex", sex, "--make-pgen",
         "--out", prefix)
    return AnalysisCohort(root, shares, prefix, pheno, covar, merged,
                          json.loads(pooled.truth.read_text()))


# -- the same cohort served: three nodes, a login issuer, a coordinator beside the FI node ---------
@dataclass
class AnalysisNetwork:
    cohort: AnalysisCohort
    network_file: Path
    node_urls: dict[str, str]
    #: The coordinator's URL (beside the FI node, signing as it).
    hub: str
    issuer: Any

    @property
    def node_ids(self) -> list[str]:
        return [share.node_id for share in self.cohort.shares]

    def share(self, node_id: str) -> Share:
        return next(s for s in self.cohort.shares if s.node_id == node_id)

    def token(self, granted: list[str] | None = None, *, user: str = "alice") -> str:
        """A passport with ControlledAccessGrants visas for the `granted` datasets (default:
        every node's dataset)."""
        datasets = [s.dataset for s in self.cohort.shares] if granted is None else granted
        visas = [self.issuer.visa(user, "ControlledAccessGrants", dataset, by="dac",
                                  lifetime=6 * 3600) for dataset in datasets]
        token: str = self.issuer.passport(user, extra_visas=visas, lifetime=6 * 3600)
        return token

    def member(self, node_id: str) -> Member:
        return member_for_node(self.share(node_id).node, self.node_urls[node_id])


@pytest.fixture(scope="session")
def analysis_network(analysis_cohort: AnalysisCohort, issuer: Any,
                     tmp_path_factory: pytest.TempPathFactory) -> Iterator[AnalysisNetwork]:
    """The three shares on real loopback HTTP, one network file, one issuer they all trust."""
    root = tmp_path_factory.mktemp("analysis-network")
    network_file = root / "network.toml"
    create_network(network_file, "analysis-net")
    servers = {share.node_id: LoopbackServer() for share in analysis_cohort.shares}
    for share in analysis_cohort.shares:
        trust_issuer(share.node, issuer)
        add_member(network_file, member_for_node(share.node, servers[share.node_id].url))
    for share in analysis_cohort.shares:
        join_network(share.node, network_file)
    with ExitStack() as stack:
        for share in analysis_cohort.shares:
            stack.enter_context(servers[share.node_id]).start(create_app(share.node))
        hub = stack.enter_context(served(create_hub_app(
            network_file, analysis_cohort.shares[0].node, timeout=10.0, round_timeout=300.0)))
        yield AnalysisNetwork(analysis_cohort, network_file,
                              {n: s.url for n, s in servers.items()}, hub, issuer)
