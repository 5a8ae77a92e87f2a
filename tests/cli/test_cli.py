"""The command line as an operator meets it: help, init, ingest progress and summary, info."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from tests.support import Cohort, genofed

COMMANDS = [[], ["node"], ["node", "init"], ["node", "info"], ["sim"], ["sim", "cohort"],
            ["ingest"], ["sites"], ["demo"], ["serve"], ["issuer"], ["issuer", "init"],
            ["access"], ["access", "apply"], ["access", "decide"], ["audit"],
            ["audit", "verify"], ["network"], ["network", "add"], ["hub", "serve"], ["files"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "genofed")
def test_every_command_has_help(command: list[str]) -> None:
    result = genofed(*command, "--help", check=True)
    assert "Usage:" in result.stdout
    assert len(result.stdout.split()) > 20  # explains itself, not just a usage line


def test_node_init_generates_keys_and_refuses_to_overwrite(tmp_path: Path) -> None:
    node = tmp_path / "n"
    genofed("node", "init", node, "--node-id", "fi-test", "--country", "fi", check=True)
    config = (node / "node.toml").read_text()
    assert 'country = "FI"' in config and 'host = "127.0.0.1"' in config
    assert "password" not in config.lower()
    keys = node / "keys"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    for name in ("node.c4gh.sec", "signing.es256.pem", "agreement.x25519.pem"):
        assert stat.S_IMODE((keys / name).stat().st_mode) & 0o077 == 0, name
    first = (keys / "signing.es256.pem").read_bytes()

    again = genofed("node", "init", node, "--node-id", "fi-test", "--country", "FI")
    assert again.returncode != 0 and "refusing to overwrite" in again.stderr
    assert (keys / "signing.es256.pem").read_bytes() == first

    other = tmp_path / "m"
    genofed("node", "init", other, "--node-id", "fi-test", "--country", "FI", check=True)
    assert (other / "keys" / "signing.es256.pem").read_bytes() != first  # generated, not default


def test_node_init_validates(tmp_path: Path) -> None:
    result = genofed("node", "init", tmp_path / "n", "--node-id", "Bad Id!", "--country", "FI")
    assert result.returncode != 0 and "node_id" in result.stderr
    result = genofed("node", "init", tmp_path / "n", "--node-id", "ok", "--country", "Finland")
    assert result.returncode != 0 and "ISO 3166" in " ".join(result.stderr.split())


def test_ingest_shows_progress_and_summary(node: Path, cohort: Cohort) -> None:
    result = genofed("ingest", node, "--dataset", cohort.dataset_id, "--vcf", cohort.vcf,
                     "--phenopackets", cohort.phenopackets, "--metadata", cohort.metadata,
                     "--populations", cohort.populations, check=True)
    assert "Parsing VCF" in result.stderr and "Writing genotype chunks" in result.stderr
    assert "━" in result.stderr or "100%" in result.stderr or "/" in result.stderr  # a bar
    summary = result.stdout
    assert f"Ingested {cohort.dataset_id} v1" in summary
    for row in ("samples", "VCF records", "biallelic sites", "allele-count groups",
                "size: total"):
        assert row in summary
    assert "120" in summary and "pop_CEU" in summary

    info = genofed("node", "info", node, check=True).stdout
    assert cohort.dataset_id in info and "registered" in info and "v1" in info


def test_sim_cohort_takes_a_population_mix(tmp_path: Path) -> None:
    out = tmp_path / "mix"
    result = genofed("sim", "cohort", out, "--samples", "30", "--seed", "3", "--length-mb",
                     "0.05", "--population", "CEU=20, YRI=10", check=True)
    printed = " ".join(result.stdout.split())
    assert "Simulated 30 individuals" in printed and "(YRI+CEU)" in printed
    assert "--dataset sim-yri-ceu-3" in printed
    labels = [line.split("\t")[1] for line in
              (out / "populations.tsv").read_text().splitlines()[1:]]
    assert labels == ["YRI"] * 10 + ["CEU"] * 20
    for population, message in (("CEU=20,YRI", "NAME=COUNT"), ("CEU=20,YRI=5", "sum to 25"),
                                ("CEU=20,FIN=10", "unknown population 'FIN'")):
        bad = genofed("sim", "cohort", tmp_path / "bad", "--samples", "30", "--seed", "3",
                      "--population", population)
        assert bad.returncode != 0 and message in " ".join(bad.stderr.split()), population
    assert not (tmp_path / "bad").exists()


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    """The README's first command, non-interactively: three nodes, issuer, coordinator, and the
    journey from discovery to record-level answers, all on loopback."""
    args = ("demo", "--dir", tmp_path / "demo", "--no-wait", "--scale", "0.5",
            "--length-mb", "0.3")
    result = genofed(*args, check=True, timeout=600)
    out = " ".join(result.stdout.split())
    for fragment in ("simulated one population history (seed 2026): 350 individuals "
                     "(YRI 60, CEU 290)", "split into fi-biobank (120 CEU), fi-reference (40 CEU), "
                     "se-cohort (100 CEU), se-register (30 CEU), nl-diverse (60 YRI)",
                     "node fi (FI): created", "nl-diverse: ingested into node nl",
                     "Count query through the network", "needs-review",
                     "Approved by dac-fi", "value=fi-biobank",
                     "Record-level query through the network", "All services stopped"):
        assert fragment in out, fragment
    assert "fi (FI) ok" in out and "se (SE) ok" in out and "nl (NL) ok" in out
    # the record-level answer comes from the FI dataset only, the others stay at their tiers
    record_table = out.split("Record-level query through the network", 1)[1]
    assert "fi-biobank: DEMO-" in record_table  # the one simulation's sample names
    assert "│ fi-biobank │ controlled │ record" in record_table
    assert "│ nl-diverse │ controlled │ count" in record_table
    assert "│ se-register │ registered │ count" in record_table
    assert out.count("│ yes │") >= 3  # every node's audit trail verifies
    # Every committee grants its dataset, and the analyses run across the three countries.
    assert "the SE and NL committees approve" in out
    analyses = out.split("Analyses across three countries", 1)[1]
    assert analyses.count("│ done │ fi, nl, se │") == 3
    assert "Top hits, LDL cholesterol" in analyses and "Top hits, seizures" in analyses
    assert "is 20:" in analyses  # a planted causal variant among the top hits
    results = tmp_path / "demo" / "results"
    for name in ("gwas-ldl.tsv", "gwas-ldl.tsv-meta.yaml", "gwas-ldl-manhattan.png",
                 "gwas-ldl-qq.png", "gwas-HP_0002069.tsv", "gwas-HP_0002069.tsv-meta.yaml",
                 "gwas-HP_0002069-manhattan.png", "pca-eigenvalues.tsv", "pca-loadings.tsv"):
        assert (results / name).is_file(), name
    assert "datasets:\n- fi-biobank\n- nl-diverse\n- se-cohort" in \
        (results / "gwas-ldl.tsv-meta.yaml").read_text()
    rerun = genofed(*args, check=True, timeout=600)
    assert "simulated" not in rerun.stdout and "Record-level" in rerun.stdout
    assert "cohorts of seed 2026 reused" in " ".join(rerun.stdout.split())
