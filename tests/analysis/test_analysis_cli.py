"""`genofed analysis submit | status | list | result`, the real command line against the served
three-node network: a researcher's token file, the coordinator's URL, result files on disk, and
errors that say what to do."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.analysis.fixtures import LDL, AnalysisNetwork
from tests.support import genofed, refused_port

pytestmark = pytest.mark.external


@pytest.fixture
def token_file(analysis_network: AnalysisNetwork, tmp_path: Path) -> Path:
    path = tmp_path / "alice.token"
    path.write_text(analysis_network.token() + "\n")
    return path


def test_submit_follows_the_job_and_downloads_its_results(
        analysis_network: AnalysisNetwork, token_file: Path, tmp_path: Path) -> None:
    hub = ("--hub", analysis_network.hub, "--token-file", token_file)
    out = tmp_path / "results"
    submitted = genofed("analysis", "submit", "--type", "gwas-linear", "--measurement", LDL,
                        "--covariate", "sex", "--covariate", "age", "--name", "cli-ldl",
                        "--out", out, *hub, check=True, timeout=600)
    text = " ".join(submitted.stdout.split())
    assert ": done — done over fi-node, nl-node, se-node" in text
    assert "result file(s) in" in text
    for name in ("gwas-cli-ldl.tsv", "gwas-cli-ldl.tsv-meta.yaml", "gwas-cli-ldl-qq.png"):
        assert (out / name).is_file(), name
    job_id = text.split("Job ", 1)[1].split()[0]
    # A script reads whole ids, one per line, and JSON where it wants more.
    listed = genofed("analysis", "list", *hub, check=True).stdout.splitlines()
    assert listed[0].split("\t")[:3] == ["job", "type", "state"]
    assert any(line.startswith(f"{job_id}\tgwas-linear\tdone") for line in listed[1:])
    status = json.loads(genofed("analysis", "status", job_id, "--json", *hub,
                                check=True).stdout)
    assert status["state"] == "done" and status["spec"]["name"] == "cli-ldl"
    assert set(status["progress"]["traffic"]) == set(analysis_network.node_ids)
    again = genofed("analysis", "result", job_id, "--out", tmp_path / "again", *hub, check=True)
    assert "gwas-cli-ldl.tsv" in again.stdout
    assert (tmp_path / "again" / "gwas-cli-ldl.tsv").read_bytes() == \
        (out / "gwas-cli-ldl.tsv").read_bytes()
    # --no-wait: the id, at once.
    quick = genofed("analysis", "submit", "--type", "freq", "--no-wait", *hub, check=True)
    assert len(quick.stdout.strip()) == 16


def test_a_spec_file_and_options_make_one_spec(analysis_network: AnalysisNetwork,
                                               token_file: Path, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"type": "freq", "cohort": {"sex": "female"}}))
    result = genofed("analysis", "submit", spec, "--no-wait", "--json", "--hub",
                     analysis_network.hub, "--token-file", token_file, check=True)
    status = json.loads(result.stdout)
    assert status["spec"]["cohort"]["sex"] == "female"


def test_errors_say_what_is_wrong_and_what_to_do(analysis_network: AnalysisNetwork,
                                                 token_file: Path, tmp_path: Path) -> None:
    hub = ("--hub", analysis_network.hub, "--token-file", token_file)
    wrong = genofed("analysis", "submit", "--type", "gwas-linear", "--hpo", "HP:0002069", *hub)
    assert wrong.returncode == 1
    assert "gwas-linear needs a quantitative trait" in " ".join(wrong.stderr.split())
    nothing = genofed("analysis", "submit", *hub)
    assert nothing.returncode == 1 and "give --type" in nothing.stderr
    missing = genofed("analysis", "list", "--hub", analysis_network.hub, "--token-file",
                      tmp_path / "nope.token")
    assert missing.returncode == 1 and "cannot read the token file" in missing.stderr
    assert "genofed issuer token" in " ".join(missing.stderr.split())
    with refused_port() as port:
        down = genofed("analysis", "list", "--hub", f"http://127.0.0.1:{port}",
                       "--token-file", token_file)
    assert down.returncode == 1 and "cannot reach the coordinator" in down.stderr
    assert "genofed hub serve" in down.stderr
    unknown = genofed("analysis", "status", "0123456789abcdef", *hub)
    assert unknown.returncode == 1 and "404" in unknown.stderr
    stranger = tmp_path / "stranger.token"
    stranger.write_text("not-a-token")
    refused = genofed("analysis", "list", "--hub", analysis_network.hub, "--token-file",
                      stranger)
    assert refused.returncode == 1 and "bearer token refused" in refused.stderr
