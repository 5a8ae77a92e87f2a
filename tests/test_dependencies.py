"""Dependencies by role: what only simulation needs (msprime, stdpopsim, tskit) stays out of the
core install; without it a node still ingests and serves, and `genofed sim` says what to install."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.support import Cohort

#: Run genofed's command line as if the simulation extra were not installed.
WITHOUT_SIM = ("import sys\n"
               "for name in ('msprime', 'stdpopsim', 'tskit'): sys.modules[name] = None\n"
               "from genofed.cli.main import main\n"
               "main()\n")


def _genofed_without_sim(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", WITHOUT_SIM, *map(str, args)],
                          capture_output=True, text=True, timeout=300,
                          env={"COLUMNS": "200", "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})


def test_simulation_without_its_extra_says_what_to_install(tmp_path: Path) -> None:
    result = _genofed_without_sim("sim", "cohort", tmp_path / "out", "--samples", "10",
                                  "--seed", "1")
    assert result.returncode == 1
    message = " ".join(result.stderr.split())
    assert "needs msprime" in message and "pip install 'genofed[sim]'" in message
    assert "Traceback" not in result.stderr


def test_a_node_ingests_and_serves_without_the_simulation_extra(tmp_path: Path,
                                                                 cohort: Cohort) -> None:
    node = tmp_path / "node"
    assert _genofed_without_sim("node", "init", node, "--node-id", "core-only",
                                "--country", "FI").returncode == 0
    ingest = _genofed_without_sim("ingest", node, "--dataset", cohort.dataset_id, "--vcf",
                                  cohort.vcf, "--phenopackets", cohort.phenopackets,
                                  "--metadata", cohort.metadata)
    assert ingest.returncode == 0, ingest.stderr
    serve = subprocess.run([sys.executable, "-c", (
        "import sys\n"
        "for name in ('msprime', 'stdpopsim', 'tskit'): sys.modules[name] = None\n"
        "from fastapi.testclient import TestClient\n"
        "from genofed.server.app import create_app\n"
        f"app = create_app(__import__('pathlib').Path({str(node)!r}))\n"
        "print(TestClient(app).get('/beacon/info').status_code)\n")],
        capture_output=True, text=True, timeout=120)
    assert serve.stdout.strip() == "200", serve.stderr
