"""The README's walk-through as a user runs it: every `sh` block of its walk-through section, in
order, in one shell in a fresh directory (with the repository's `.venv`), exactly as written. A
wrong flag or a missing step fails here. Then the auditor's view of what happened: every event of
the journey in the node's audit trail, refusals recorded as denials, the chain intact."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import REPO, bcftools, require_tool

SECTION = "## A walk-through"
PORTS = (8080, 9000, 8090)  # the node, the issuer and the hub, as the README names them


def walkthrough() -> list[str]:
    """The `sh` blocks of the walk-through section, in order."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.index("\n## ", start + len(SECTION))
    return re.findall(r"^```sh\n(.*?)^```", text[start:end], flags=re.M | re.S)


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_the_walkthrough_has_every_role() -> None:
    script = "\n".join(walkthrough())
    for command in ("genofed ingest", "genofed serve", "genofed access trust add",
                    "genofed access dac add", "/access/applications", "genofed access decide",
                    "genofed files fetch", "crypt4gh decrypt", "genofed files delivery",
                    "bcftools view", "genofed audit verify", "genofed network join",
                    "genofed hub serve"):
        assert command in script, command


@pytest.fixture(scope="module")
def journey(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The walk-through, run once: (its directory, what it printed)."""
    for tool in ("bcftools", "curl"):
        require_tool(tool)
    busy = [p for p in PORTS if not _free(p)]
    if busy:
        pytest.fail(f"the README's walk-through serves on ports {PORTS}, but {busy} are taken")
    directory = tmp_path_factory.mktemp("readme")
    (directory / ".venv").symlink_to(REPO / ".venv")
    script = "\n".join(["set -euo pipefail",
                        "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT", *walkthrough()])
    result = subprocess.run(["bash", "-c", script], cwd=directory, capture_output=True,
                            text=True, timeout=900,
                            env={**os.environ, "COLUMNS": "160", "NO_COLOR": "1"})
    assert result.returncode == 0, (f"the README walk-through failed:\n{result.stdout[-3000:]}\n"
                                    f"{result.stderr[-3000:]}")
    return directory, result.stdout


def test_the_walkthrough_runs_as_written(journey: tuple[Path, str]) -> None:
    directory, printed = journey
    assert "records without a visa: HTTP 403" in printed
    assert "plain slice: HTTP 403" in printed
    region = bcftools("view", "-H", "-r", "20:100001-110000",
                      directory / "cohort" / "cohort.vcf.gz").splitlines()
    # both slices are the region's records (htsget: 0-based start, as the URL gives it)
    assert (directory / "plain.vcf").read_text().splitlines() == region
    decrypted = bcftools("view", "-H", directory / "slice.vcf.gz").splitlines()
    assert decrypted == region and region


def test_the_auditor_finds_the_whole_journey(journey: tuple[Path, str]) -> None:
    directory, _ = journey
    node = directory / "node"
    listed = subprocess.run([REPO / ".venv" / "bin" / "genofed", "audit", "list", node,
                             "--json"], capture_output=True, text=True, check=True).stdout
    records = [json.loads(line) for line in listed.splitlines()]
    seen = {(r["action"], r["decision"]) for r in records}
    for event in [("trust.change", "allow"), ("dac.add", "allow"),
                  ("beacon.record", "deny"),  # alice before her visa
                  ("application.submit", "allow"), ("application.approve", "allow"),
                  ("visa.sign", "allow"), ("beacon.record", "allow"),
                  ("htsget.ticket", "allow"), ("htsget.data", "allow"),
                  ("htsget.ticket", "deny"),  # the plain slice, before plain delivery
                  ("delivery.change", "allow"), ("network.join", "allow")]:
        assert event in seen, event
    plain_refusal = next(r for r in records if r["action"] == "htsget.ticket"
                         and r["decision"] == "deny")
    assert "only Crypt4GH-encrypted" in plain_refusal["reason"]
    verified = subprocess.run([REPO / ".venv" / "bin" / "genofed", "audit", "verify", node],
                              capture_output=True, text=True)
    assert verified.returncode == 0 and "intact" in verified.stdout
