"""Output for scripts (issue 12): `--json` on every command that prints a table or a summary,
plain tab-separated lines with whole values when stdout is not a terminal, and a table on a
terminal that still never cuts an id short. Every command runs for real, in a subprocess."""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from genofed.cli import output
from genofed.cli.output import Column, print_table
from tests.cli.scripted import (
    BOX,
    DATASET,
    MEMBER,
    apply,
    as_json,
    controlled_node,
    on_terminal,
)
from tests.support import HTSGET_DATA, Cohort, genofed

VCF = HTSGET_DATA / "vcf" / "spec-v4.3.vcf.gz"


@pytest.fixture(scope="module")
def governed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    """A node with a committee member and two applications (one of them approved)."""
    if not VCF.is_file():
        pytest.skip(f"{VCF} not found (the shared test data)")
    node = controlled_node(tmp_path_factory.mktemp("script-output"), VCF)
    first, second = apply(node), apply(node, "https://login.example.org|researcher-2")
    genofed("access", "decide", node, first["id"], "approve", "--member", MEMBER, check=True)
    return node, [first, second]


def tsv(stdout: str) -> list[list[str]]:
    """Tab-separated lines, checked to be plain: no box drawing, one cell count throughout."""
    assert not BOX & set(stdout), stdout
    rows = [line.split("\t") for line in stdout.splitlines()]
    assert rows and len({len(row) for row in rows}) == 1, stdout
    return rows


# -- access ---------------------------------------------------------------------------------------

def test_access_list_gives_whole_ids_to_scripts(governed: tuple[Path, list[dict[str, Any]]]
                                                ) -> None:
    node, applications = governed
    header, *rows = tsv(genofed("access", "list", node, check=True).stdout)
    assert header == ["id", "state", "applicant", "datasets", "pre-assessment", "submitted"]
    assert {row[0] for row in rows} == {a["id"] for a in applications}  # `cut -f1`: whole ids
    assert all(len(row[0]) == 32 for row in rows)
    assert {row[2] for row in rows} == {a["applicant"] for a in applications}

    listed = as_json(genofed("access", "list", node, "--json", check=True))
    assert {a["id"] for a in listed} == {row[0] for row in rows}
    assert {"id", "state", "applicant", "datasets", "visas"} <= set(listed[0])


def test_access_show_decide_and_revoke_print_json(tmp_path: Path) -> None:
    if not VCF.is_file():
        pytest.skip(f"{VCF} not found (the shared test data)")
    node = controlled_node(tmp_path, VCF)
    application = apply(node)
    decided = as_json(genofed("access", "decide", node, application["id"], "approve",
                              "--member", MEMBER, "--json", check=True))
    assert decided["id"] == application["id"] and decided["state"] == "approved"
    (visa,) = decided["visas"]
    assert visa["datasetId"] == DATASET and visa["revokedAt"] is None
    revoked = as_json(genofed("access", "revoke", node, visa["jti"], "--member", MEMBER,
                              "--json", check=True))
    assert revoked["jti"] == visa["jti"] and revoked["revokedAt"] is not None
    assert revoked["applicationId"] == application["id"]
    shown = as_json(genofed("access", "show", node, application["id"], "--json", check=True))
    assert [e["kind"] for e in shown["events"]] == ["submitted", "approved", "visa-revoked"]


def test_dac_list(governed: tuple[Path, list[dict[str, Any]]]) -> None:
    node, _ = governed
    (member,) = as_json(genofed("access", "dac", "list", node, "--json", check=True))
    issuer, subject = MEMBER.split("|")
    assert member == {"identity": MEMBER, "issuer": issuer, "subject": subject,
                      "pseudonym": hashlib.sha256(f"{issuer}\n{subject}".encode())
                      .hexdigest()[:32]}
    assert tsv(genofed("access", "dac", "list", node, check=True).stdout) == [
        ["member", "pseudonym"], [MEMBER, member["pseudonym"]]]


def test_audit_verify_json(governed: tuple[Path, list[dict[str, Any]]]) -> None:
    node, _ = governed
    verdict = as_json(genofed("audit", "verify", node, "--json", check=True))
    assert verdict["intact"] is True and verdict["problem"] is None
    assert verdict["records"] > 0 and len(verdict["headHash"]) == 64
    plain = genofed("audit", "verify", node, check=True).stdout
    assert verdict["headHash"] in plain  # the chain head in full, not cut short


def test_empty_listings_print_a_header_for_scripts(node: Path) -> None:
    listed = genofed("access", "list", node, check=True)
    assert listed.stdout.splitlines() == ["id\tstate\tapplicant\tdatasets\tpre-assessment\t"
                                          "submitted"]
    assert "No applications." in listed.stderr
    assert as_json(genofed("access", "list", node, "--json", check=True)) == []
    assert as_json(genofed("access", "dac", "list", node, "--json", check=True)) == []
    assert genofed("files", "list", node, check=True).stdout.startswith("htsget id")
    info = genofed("node", "info", node, "--json", check=True)
    assert as_json(info)["datasets"] == [] and info.stderr == ""


# -- node, ingest, files ----------------------------------------------------------------------

def test_node_info(ingested: Path, cohort: Cohort) -> None:
    shown = genofed("node", "info", ingested, check=True)
    header, row = tsv(shown.stdout)
    assert header[0] == "dataset" and "contig names" in header
    assert row[0] == cohort.dataset_id and row[header.index("tier")] == "registered"
    assert "Node test-node (FI)" in shown.stderr  # context, kept off a script's stdout

    document = as_json(genofed("node", "info", ingested, "--json", check=True))
    assert document["nodeId"] == "test-node" and document["country"] == "FI"
    (dataset,) = document["datasets"]
    assert dataset["datasetId"] == cohort.dataset_id and dataset["accessTier"] == "registered"
    assert dataset["samples"] == 120 and dataset["individualsWithPhenopackets"] == 120
    assert dataset["vcfRecords"] <= dataset["biallelicSites"]
    assert dataset["contigs"] == [row[header.index("contig names")]]
    assert dataset["sizeBytes"] > 0 and dataset["version"] == "v1"


def test_ingest_json_and_summary(node: Path, cohort: Cohort) -> None:
    args = ("ingest", node, "--vcf", cohort.vcf, "--phenopackets", cohort.phenopackets,
            "--populations", cohort.populations)
    described = (*args, "--dataset", cohort.dataset_id, "--metadata", cohort.metadata, "--json")
    result = genofed(*described, check=True)
    summary = as_json(result)  # the progress bars went to stderr
    assert "Parsing VCF" in result.stderr
    assert summary["datasetId"] == cohort.dataset_id and summary["version"] == "v1"
    assert summary["unchanged"] is False and summary["samples"] == 120
    assert summary["individualsWithPhenopackets"] == 120
    assert summary["biallelicSites"] >= summary["vcfRecords"] > 0
    assert summary["contigs"] in (["20"], ["chr20"])
    assert "pop_CEU" in summary["alleleCountGroups"]
    assert summary["sizes"]["total"] >= summary["sizes"]["genotypes.zarr"] > 0
    assert len(summary["fingerprint"]) >= 16

    again = as_json(genofed(*described, check=True))
    assert again["unchanged"] is True and again["version"] == "v1"
    assert again["fingerprint"] == summary["fingerprint"]

    table = genofed(*args, "--dataset", "as-table", check=True).stdout
    headline, *lines = table.splitlines()
    assert headline.startswith("Ingested as-table v1 in ")
    rows = {field: value for field, value in tsv("\n".join(lines))[1:]}
    # "contigs | 20" read as a count: the names and their number are labelled apart
    assert "contigs" not in rows
    assert rows["number of contigs"] == "1"
    assert rows["contig names"] == summary["contigs"][0]
    assert rows["samples"] == "120"


def test_files_list(ingested: Path, cohort: Cohort) -> None:
    header, row = tsv(genofed("files", "list", ingested, check=True).stdout)
    assert header[0].startswith("htsget id") and row[0] == f"variants/{cohort.dataset_id}"
    (entry,) = as_json(genofed("files", "list", ingested, "--json", check=True))
    assert entry["htsgetId"] == row[0] and entry["datasetId"] == cohort.dataset_id
    assert entry["role"] == "variants" and entry["sizeBytes"] > 0
    assert entry["plainDelivery"] is False and entry["index"] in ("tbi", "csi")


def test_files_add_json(tmp_path: Path) -> None:
    cram = HTSGET_DATA / "cram" / "htsnexus_test_NA12878.cram"
    if not (VCF.is_file() and cram.is_file()):
        pytest.skip("the shared htsget test data is not there")
    node = controlled_node(tmp_path, VCF)
    added = as_json(genofed("files", "add", node, "--dataset", DATASET, cram, "--json",
                            check=True))
    assert added["htsgetId"] == f"reads/{DATASET}/htsnexus_test_NA12878"
    assert added["version"] == "v2" and added["format"] == "CRAM"
    assert added["plainDelivery"] is False and added["sizeBytes"] > 0
    listed = as_json(genofed("files", "list", node, "--json", check=True))
    assert added in listed


# -- network and issuer ----------------------------------------------------------------------

def test_network_show(tmp_path: Path) -> None:
    from genofed.config.node import init_node

    network = tmp_path / "network.toml"
    genofed("network", "init", network, "--name", "scripted", check=True)
    for node_id, country in (("fi-hel", "FI"), ("se-sto", "SE")):
        init_node(tmp_path / node_id, node_id=node_id, country=country)
        genofed("network", "add", network, "--node", tmp_path / node_id, "--url",
                f"https://{node_id}.example", check=True)
    genofed("network", "remove", network, "se-sto", check=True)

    document = as_json(genofed("network", "show", network, "--json", check=True))
    assert document["name"] == "scripted" and document["version"] == 4
    (member,) = document["members"]
    assert member["id"] == "fi-hel" and member["baseUrl"] == "https://fi-hel.example"
    der = base64.b64decode("".join(line for line in member["signingPublicKey"].splitlines()
                                   if "-----" not in line))
    assert member["signingKeyFingerprint"] == hashlib.sha256(der).hexdigest()
    assert document["removed"][0]["id"] == "se-sto"

    shown = genofed("network", "show", network, check=True)
    header, row = tsv(shown.stdout)
    assert header[0] == "member" and header[-1].startswith("signing key")
    assert row == ["fi-hel", "FI", "https://fi-hel.example", member["signingKeyFingerprint"]]
    assert "removed: se-sto" in shown.stderr and "Network scripted" in shown.stderr


def test_issuer_users(issuer: Any) -> None:
    users = {u["id"]: u for u in as_json(genofed("issuer", "users", issuer.directory,
                                                  "--json", check=True))}
    assert set(users) == {"alice", "bob", "dana"}
    assert users["alice"]["researcherStatus"] is True and users["bob"]["researcherStatus"] is False
    assert all("password" not in key.lower() for user in users.values() for key in user)
    header, *rows = tsv(genofed("issuer", "users", issuer.directory, check=True).stdout)
    assert header[:2] == ["id", "sub"]
    assert {row[1] for row in rows} == {u["sub"] for u in users.values()}  # subs whole


# -- the audit list keeps its forms -----------------------------------------------------------

def test_audit_list_through_the_shared_printer(governed: tuple[Path, list[dict[str, Any]]]
                                               ) -> None:
    node, applications = governed
    header, *rows = tsv(genofed("audit", "list", node, "--action", "application",
                                check=True).stdout)
    assert header == ["seq", "at", "subject", "action", "decision", "dataset", "reason",
                      "detail"]
    assert {f"application={a['id']}" for a in applications} <= {
        part for row in rows for part in row[7].split(" ")}
    lines = genofed("audit", "list", node, "--json", check=True).stdout.splitlines()
    assert len(lines) >= len(rows) and all(json.loads(line)["hash"] for line in lines)


# -- on a terminal -------------------------------------------------------------------------------

def test_a_terminal_gets_a_table_with_whole_ids(governed: tuple[Path, list[dict[str, Any]]]
                                                ) -> None:
    node, applications = governed
    screen = on_terminal("access", "list", node, columns=150)
    assert BOX & set(screen)
    lines = screen.splitlines()
    for application in applications:  # on one line each, not folded nor cut
        assert any(application["id"] in line and application["applicant"] in line
                   for line in lines), screen
    assert "…" not in screen

    narrow = on_terminal("access", "list", node, columns=60)
    assert "…" not in narrow  # too narrow for whole lines: folded, never cut
    cells = "".join(part.strip() for line in narrow.splitlines()
                    for part in line.split("│")[1:2])
    for application in applications:
        assert application["id"] in cells, narrow


def test_the_printer_folds_rather_than_cuts(capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    columns = (Column("id", identifier=True), Column("text"))
    rows = [("f" * 40, "a\tfree text\nover two lines that is long enough to need folding")]
    assert print_table(columns, rows, terminal=False) == 1
    assert capsys.readouterr().out.splitlines() == [
        "id\ttext", "f" * 40 + "\ta free text over two lines that is long enough to need "
        "folding"]

    monkeypatch.setattr(output.console, "width", 60)
    print_table(columns, rows, terminal=True)
    screen = capsys.readouterr().out
    assert "f" * 40 in screen and "…" not in screen  # the id on one line, the text folded
    monkeypatch.setattr(output.console, "width", 30)
    print_table(columns, rows, terminal=True)
    screen = capsys.readouterr().out
    assert "…" not in screen and "f" * 40 not in screen
    assert "".join(line.split("│")[1].strip() for line in screen.splitlines()
                   if line.startswith("│")).startswith("f" * 40)
