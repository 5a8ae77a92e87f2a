"""`genofed access ...` and `genofed audit ...` as an operator runs them, in subprocesses, on a
node with one ingested controlled-access dataset."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from genofed.access.audit import entries
from genofed.access.governance import Governance
from genofed.access.policy import Action
from genofed.access.principal import Principal
from tests.support import HTSGET_DATA, genofed

VCF = HTSGET_DATA / "vcf" / "spec-v4.3.vcf.gz"
MEMBER = "https://login.example.org|dac-alice"
RESEARCHER = "https://login.example.org|researcher-1"


@pytest.fixture(scope="module")
def cli_node(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A node holding 'cli-cohort': controlled, general research use by non-profits only."""
    if not VCF.is_file():
        pytest.skip(f"{VCF} not found (the shared test data)")
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset

    root = tmp_path_factory.mktemp("cli-node")
    node = root / "node"
    init_node(node, node_id="cli-node", country="FI")
    metadata = root / "dataset.json"
    metadata.write_text(json.dumps({
        "id": "cli-cohort", "name": "CLI cohort", "accessTier": "controlled",
        "dataUseConditions": {"duoDataUse": [
            {"id": "DUO:0000042", "modifiers": [{"id": "DUO:0000045"}]}]}}))
    ingest_dataset(node, "cli-cohort", VCF, metadata=metadata, workers=1)
    return node


def test_committee_workflow(cli_node: Path) -> None:
    added = genofed("access", "dac", "add", cli_node, MEMBER, check=True)
    assert MEMBER in added.stdout
    assert MEMBER in (cli_node / "node.toml").read_text()

    applied = genofed("access", "apply", cli_node, "--applicant", RESEARCHER,
                      "--dataset", "cli-cohort", "--purpose", "HMB", "--commercial",
                      "--text", "Drug target discovery", "--days", "10", "--json", check=True)
    application = json.loads(applied.stdout)
    assert application["state"] == "submitted"
    (assessment,) = application["datasets"]
    assert assessment["assessment"] == "deny" and "NPU" in assessment["reasons"][0]

    stranger = genofed("access", "decide", cli_node, application["id"], "approve",
                       "--member", "https://login.example.org|mallory")
    assert stranger.returncode == 1 and "not a member" in stranger.stderr

    approved = genofed("access", "decide", cli_node, application["id"], "approve",
                       "--member", MEMBER, "--note", "sponsor is a non-profit foundation",
                       check=True)
    assert "approved" in approved.stdout and "issued visa" in approved.stdout

    jti = approved.stdout.split("issued visa ")[1].split()[0]
    genofed("access", "revoke", cli_node, jti, "--member", MEMBER, "--note", "ended",
            check=True)
    shown = json.loads(genofed("access", "show", cli_node, application["id"], "--json",
                               check=True).stdout)
    assert [e["kind"] for e in shown["events"]] == ["submitted", "approved", "visa-revoked"]
    (visa,) = shown["visas"]
    assert visa["jti"] == jti and visa["datasetId"] == "cli-cohort"
    assert visa["revokedAt"] is not None


def test_an_approval_with_an_end_date(cli_node: Path) -> None:
    from datetime import UTC, date, datetime, timedelta

    genofed("access", "dac", "add", cli_node, MEMBER, check=True)
    applied = genofed("access", "apply", cli_node, "--applicant", RESEARCHER,
                      "--dataset", "cli-cohort", "--purpose", "GRU", "--text", "Allele counts",
                      "--days", "30", "--json", check=True)
    application = json.loads(applied.stdout)["id"]
    past = genofed("access", "decide", cli_node, application, "approve", "--member", MEMBER,
                   "--expires", "2020-01-01")
    assert past.returncode == 1 and "has passed" in past.stderr
    end = date.today() + timedelta(days=7)
    approved = genofed("access", "decide", cli_node, application, "approve", "--member", MEMBER,
                       "--expires", end.isoformat(), "--json", check=True)
    (visa,) = json.loads(approved.stdout)["visas"]
    assert datetime.fromtimestamp(visa["expiresAt"], UTC).date() == end


def test_audit_verify_and_export(cli_node: Path, tmp_path: Path) -> None:
    governance = Governance.open(cli_node)
    before = sum(1 for _ in entries(governance.db))  # the committee workflow's records
    dataset = governance.committee.datasets("cli-cohort")
    someone = Principal(issuer="https://login.example.org", subject="researcher-1",
                        expires=2**40, researcher=True)
    for action in (Action.BEACON_BOOLEAN, Action.BEACON_COUNT, Action.BEACON_RECORD):
        governance.policy.decide(someone, dataset, action)
    governance.policy.deny_unauthenticated("cli-cohort", Action.HTSGET_TICKET, "expired token")
    governance.close()

    verified = genofed("audit", "verify", cli_node, check=True)
    assert f"intact: {before + 4} records" in verified.stdout

    out = tmp_path / "audit.jsonl"
    genofed("audit", "export", cli_node, "--out", out, check=True)
    records = [json.loads(line) for line in out.read_text().splitlines()][before:]
    assert [r["decision"] for r in records] == ["allow", "allow", "deny", "deny"]
    assert "researcher-1" not in out.read_text()

    with sqlite3.connect(cli_node / "governance.sqlite") as connection:
        connection.execute("UPDATE audit_records SET decision = 'allow' WHERE seq = ?",
                           (before + 3,))
    broken = genofed("audit", "verify", cli_node)
    assert broken.returncode == 1
    assert f"record {before + 3} was edited" in broken.stderr and "NOT intact" in broken.stderr
