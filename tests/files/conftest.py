"""Fixtures for the files / htsget tests: one node holding two controlled-access datasets,

* `ds-plain`, whose file policy allows plain delivery: a small simulated cohort, ingested (its
  VCF archived by ingest), plus plain files added with `files add`: the htsget test BAM, CRAM,
  BCF and VCF, and a synthetic VCF and BCF written by `bgzip` / `bcftools -Ob` (records straddle
  BGZF blocks there, so they are re-encoded) with long deletions, INFO/END and records longer
  than a BGZF block;
* `ds-enc` (encrypted delivery only, the default): a tiny ingested VCF plus the htsget-rs test
  files that another Crypt4GH implementation encrypted for `bob`, uploaded as they are (the
  node's key is bob's).

Access goes through the real parts: a local OIDC issuer on loopback (its passports carry
ControlledAccessGrants visas it signs, which the node trusts), the node's PassportAuthenticator and
its GovernancePolicy, whose audit trail the tests read back. `bearer(name)` gives the header of a
named caller: "token-both" (alice: visas for both datasets), "token-plain" (bob: ds-plain only),
"token-none" (dana: no visa); any other name is sent as it is (a forged token).
"""

from __future__ import annotations

import random
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from genofed.access.audit import entries
from genofed.access.governance import Governance
from genofed.access.identity.issuer import LocalIssuer
from genofed.access.policy import Action
from genofed.access.principal import Principal
from genofed.config.node import NodePaths, VisaTrust, init_node, load_config, save_config
from genofed.formats.crypt4gh import KeyPair, load_public_key, load_secret_key
from genofed.ingest import ingest_dataset
from genofed.server.app import create_app
from genofed.server.issuer import running_issuer
from genofed.sim import simulate_cohort
from genofed.store.archive import add_file, set_plain_delivery
from genofed.store.metadata import DatasetMetadata
from tests.edge_cases import WITHOUT_CHR, write_variants
from tests.s3 import S3Server, keep_datasets_in_s3
from tests.support import HTSGET_DATA

C4GH = HTSGET_DATA / "c4gh"
FAR_FUTURE = 4_102_444_800  # 2100-01-01


# -- callers -----------------------------------------------------------------------------------
#: caller name -> bearer token (filled when the node is built)
TOKENS: dict[str, str] = {}
_RUNNING: list[tuple[Any, LocalIssuer]] = []
#: audit pseudonym -> caller name
PSEUDONYMS: dict[str, str] = {}
CALLERS = {"token-both": ("alice", ("ds-plain", "ds-enc")),
           "token-plain": ("bob", ("ds-plain",)),
           "token-none": ("dana", ())}


def _issue_tokens(issuer: LocalIssuer) -> None:
    for name, (user, datasets) in CALLERS.items():
        visas = [issuer.visa(user, "ControlledAccessGrants", d, by="dac", lifetime=6 * 3600)
                 for d in datasets]
        TOKENS[name] = issuer.passport(user, extra_visas=visas, lifetime=6 * 3600)
        sub = issuer.user(user).sub
        PSEUDONYMS[Principal(issuer=issuer.url, subject=sub, expires=0).pseudonym] = user


@dataclass
class RecordedDecision:
    subject: str | None  # the caller's user name, None if anonymous
    dataset_id: str | None
    action: Action
    allowed: bool
    detail: str


# -- the node ------------------------------------------------------------------------------------
def synthetic_vcf(path: Path, *, seed: int = 7, records: int = 700) -> Path:
    """A VCF with what region queries trip over: long deletions reaching into later regions,
    INFO/END, and records longer than a BGZF block."""
    rng = random.Random(seed)
    samples = [f"SYN{i:03d}" for i in range(24)]
    lines = ["##fileformat=VCFv4.2",
             *(f"##contig=<ID={c},length=5000000>" for c in ("1", "2", "X")),
             '##INFO=<ID=END,Number=1,Type=Integer,Description="End">',
             '##INFO=<ID=PAD,Number=1,Type=String,Description="Padding">',
             '##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">',
             "\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO", "FORMAT",
                        *samples])]
    for contig in ("1", "2", "X"):
        position = 1
        for _ in range(records):
            position += rng.randint(0, 600)
            if rng.random() < 0.05:
                ref, alt = "A" * rng.randint(2, 4000), "A"
            else:
                ref = rng.choice("ACGT")
                alt = rng.choice([b for b in "ACGT" if b != ref])
            info = "."
            if rng.random() < 0.03:
                info = f"END={position + rng.randint(-5, 30000)}"
            elif rng.random() < 0.005:
                info = "PAD=" + "x" * rng.randint(60_000, 90_000)
            calls = "\t".join(rng.choice(["0/0", "0/1", "1/1", "./."]) for _ in samples)
            lines.append(f"{contig}\t{position}\t.\t{ref}\t{alt}\t50\tPASS\t{info}\tGT\t{calls}")
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class HtsgetNode:
    node_dir: Path
    keys: KeyPair
    cohort_vcf: Path
    synthetic_vcf: Path
    synthetic_bcf: Path
    work: Path
    issuer: LocalIssuer

    @property
    def paths(self) -> NodePaths:
        return NodePaths(self.node_dir, load_config(self.node_dir))

    def app(self) -> FastAPI:
        return create_app(self.node_dir)

    def decisions(self) -> list[RecordedDecision]:
        """The node's audit trail, read back from its governance database."""
        governance = Governance.open(self.node_dir)
        try:
            return [RecordedDecision(PSEUDONYMS.get(e.subject), e.dataset_id, Action(e.action),
                                     e.decision == "allow", e.detail)
                    for e in entries(governance.db)]
        finally:
            governance.close()


def _metadata(directory: Path, dataset_id: str, tier: str) -> Path:
    path = directory / f"{dataset_id}.json"
    path.write_text(DatasetMetadata(id=dataset_id, name=dataset_id,
                                    access_tier=tier).to_json())  # type: ignore[arg-type]
    return path


def _session_issuer(root: Path) -> LocalIssuer:
    """The login issuer of the files tests: one for the session, whatever nodes trust it."""
    if not _RUNNING:
        # It runs for the rest of the session (a daemon thread on loopback); its context
        # manager is kept referenced, or collecting it would stop the server.
        running = running_issuer(root / "issuer")
        _RUNNING.append((running, running.__enter__()))
        _issue_tokens(_RUNNING[0][1])
    issuer: LocalIssuer = _RUNNING[0][1]
    return issuer


def build_htsget_node(root: Path, s3: S3Server | None = None) -> HtsgetNode:
    """The node described in the module docstring (its datasets kept in S3 given `s3`)."""
    node_dir = root / "node"
    paths = init_node(node_dir, node_id="files-node", country="FI")
    if s3 is not None:
        keep_datasets_in_s3(node_dir, s3)
    issuer = _session_issuer(root)
    config = load_config(node_dir)
    config.access.oidc_issuers = [issuer.url]
    iss, jku = issuer.visa_trust
    config.access.trusted_visas = [VisaTrust(iss=iss, jku=jku)]
    save_config(node_dir, config)
    # The node's Crypt4GH key is bob's, so that the htsget-rs files encrypted for bob are
    # uploads "encrypted for the node's key".
    shutil.copyfile(C4GH / "keys" / "bob.sec", paths.c4gh_secret_key)
    shutil.copyfile(C4GH / "keys" / "bob.pub", paths.c4gh_public_key)
    keys = KeyPair(load_secret_key(paths.c4gh_secret_key),
                   load_public_key(paths.c4gh_public_key))
    work = root / "work"
    work.mkdir()
    cohort = work / "cohort"
    simulate_cohort(cohort, samples=40, seed=3, length_mb=0.2, dataset_id="ds-plain",
                    overwrite=True)
    ingest_dataset(node_dir, "ds-plain", cohort / "cohort.vcf.gz", workers=2,
                   metadata=_metadata(work, "ds-plain", "controlled"))
    set_plain_delivery(node_dir, "ds-plain", True)
    tiny = write_variants(work / "tiny", "tiny", WITHOUT_CHR)
    ingest_dataset(node_dir, "ds-enc", tiny["vcf.gz"], workers=2,
                   metadata=_metadata(work, "ds-enc", "controlled"))

    vcf = synthetic_vcf(work / "synthetic.vcf")
    subprocess.run(["bgzip", "-f", "-k", str(vcf)], check=True)
    subprocess.run(["tabix", "-f", "-p", "vcf", f"{vcf}.gz"], check=True)
    bcf = work / "synthetic.bcf"
    subprocess.run(["bcftools", "view", "--no-version", "-Ob", "-o", str(bcf), f"{vcf}.gz"],
                   check=True)
    subprocess.run(["bcftools", "index", "-f", str(bcf)], check=True)
    plain = [(HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam",
              HTSGET_DATA / "bam" / "htsnexus_test_NA12878.bam.bai"),
             (HTSGET_DATA / "cram" / "htsnexus_test_NA12878.cram", None),
             (HTSGET_DATA / "bcf" / "spec-v4.3.bcf", None),
             (HTSGET_DATA / "vcf" / "sample1-bcbio-cancer.vcf.gz", None),
             (Path(f"{vcf}.gz"), None),  # index built on the node (re-encoded anyway)
             (bcf, None)]
    for source, index in plain:
        add_file(node_dir, "ds-plain", source, index=index)
    uploads = [("htsnexus_test_NA12878.bam.c4gh", "htsnexus_test_NA12878.bam.bai"),
               ("htsnexus_test_NA12878.cram.c4gh", "htsnexus_test_NA12878.cram.crai"),
               ("spec-v4.3.bcf.c4gh", "spec-v4.3.bcf.csi"),
               ("sample1-bcbio-cancer.vcf.gz.c4gh", "sample1-bcbio-cancer.vcf.gz.tbi")]
    for name, index_name in uploads:
        add_file(node_dir, "ds-enc", C4GH / name, index=C4GH / index_name)
    if s3 is not None:  # served as by a machine that did not write it
        shutil.rmtree(node_dir / "cache")
    return HtsgetNode(node_dir, keys, cohort / "cohort.vcf.gz", Path(f"{vcf}.gz"), bcf, work,
                      issuer)


#: The node of each store backend, built once per session.
_NODES: dict[str, HtsgetNode] = {}


@pytest.fixture(scope="session")
def htsget_node(request: pytest.FixtureRequest,
                tmp_path_factory: pytest.TempPathFactory) -> HtsgetNode:
    """Datasets on local disk; a test that parametrizes this fixture indirectly with "s3" gets
    the same node with its datasets kept in S3."""
    backend = getattr(request, "param", "local")
    if backend not in _NODES:
        s3 = request.getfixturevalue("s3") if backend == "s3" else None
        _NODES[backend] = build_htsget_node(tmp_path_factory.mktemp(f"htsget-{backend}"), s3)
    return _NODES[backend]


@pytest.fixture(scope="session")
def client(htsget_node: HtsgetNode) -> Iterator[TestClient]:
    with TestClient(htsget_node.app()) as test_client:
        yield test_client


def bearer(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS.get(name, name)}"}
