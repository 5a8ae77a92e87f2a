"""`genofed audit` as an auditor meets it: help that explains pseudonyms, the pseudonym of an
identity, listing in every output form, and errors that name the option at fault."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from genofed.access.audit import AuditEntry
from genofed.access.principal import Principal
from tests.support import genofed

IDENTITY = "https://login.example.org|researcher-1"


def words(text: str) -> str:
    return " ".join(text.split())


@pytest.mark.parametrize("command", [["audit"], ["audit", "list"], ["audit", "pseudonym"]])
def test_audit_commands_explain_themselves(command: list[str]) -> None:
    result = genofed(*command, "--help", check=True)
    assert "Usage:" in result.stdout and len(result.stdout.split()) > 40


def test_audit_help_says_how_pseudonyms_are_derived() -> None:
    text = words(genofed("audit", "--help", check=True).stdout)
    assert 'first 32 hex digits of SHA-256 over the UTF-8 bytes of ISSUER + "\\n" + SUBJECT' \
        in text
    assert "genofed audit pseudonym" in text
    listing = words(genofed("audit", "list", "--help", check=True).stdout)
    for option in ("--subject", "--dataset", "--action", "--event", "--decision", "--since",
                   "--until", "--json", "JSON Lines"):
        assert option in listing


def test_pseudonym_of_an_identity() -> None:
    result = genofed("audit", "pseudonym", IDENTITY, check=True)
    first, second, *_ = result.stdout.splitlines()
    expected = Principal(issuer="https://login.example.org", subject="researcher-1",
                         expires=0).pseudonym
    assert expected == hashlib.sha256(b"https://login.example.org\nresearcher-1").hexdigest()[:32]
    assert first.split() == [expected, IDENTITY]
    assert 'sha256("https://login.example.org\\nresearcher-1")[:32]' in second
    assert "SHA-256" in result.stdout

    several = genofed("audit", "pseudonym", IDENTITY, "https://other.example|x", check=True)
    assert len([line for line in several.stdout.splitlines() if "  = sha256" in line]) == 2

    bad = genofed("audit", "pseudonym", "researcher-1")
    assert bad.returncode == 1 and "IDENTITY" in bad.stderr and "ISSUER|SUBJECT" in bad.stderr


def test_list_errors_name_the_option(node: Path) -> None:
    for options, named in ((["--decision", "maybe"], "--decision"),
                           (["--action", "beacons"], "--action"),
                           (["--until", "tomorrow"], "--until"),
                           (["--subject", "jane@example.org"], "--subject")):
        result = genofed("audit", "list", node, *options)
        assert result.returncode == 1 and named in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
    missing = genofed("audit", "list", node.parent / "nowhere")
    assert missing.returncode == 1 and "not a genofed node" in missing.stderr


def test_an_empty_trail_lists_as_a_header_or_nothing(node: Path) -> None:
    assert genofed("audit", "list", node, check=True).stdout.split("\t")[0] == "seq"
    assert genofed("audit", "list", node, "--json", check=True).stdout == ""


ENTRY = AuditEntry(seq=1, at="2025-03-01T12:00:00.000000Z", subject="ab" * 16,
                   dataset_id="a-dataset-id-longer-than-its-column",
                   action="application.resubmit", decision="allow",
                   reason="a reason\twith a tab", detail="application=" + "f" * 32,
                   prev_hash="0" * 64, hash="1" * 64, seal="2" * 64)


def test_every_output_form_keeps_values_whole(capsys: pytest.CaptureFixture[str]) -> None:
    from genofed.cli.audit import _write_records

    records = [ENTRY, replace(ENTRY, seq=12345678, dataset_id=None)]
    assert _write_records(iter(records), as_json=False, terminal=True) == 2
    header, first, second = capsys.readouterr().out.splitlines()
    assert header.split() == ["seq", "at", "subject", "action", "decision", "dataset", "reason",
                              "detail"]
    assert first.index("ab" * 16) == header.index("subject")  # aligned
    assert second.index("ab" * 16) == header.index("subject")
    for line in (first, second):
        assert "ab" * 16 in line and "application=" + "f" * 32 in line
    assert "a-dataset-id-longer-than-its-column" in first

    _write_records(iter(records), as_json=False, terminal=False)
    rows = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [len(row) for row in rows] == [8, 8, 8]
    assert rows[1][6] == "a reason with a tab" and rows[2][5] == "-"

    _write_records(iter(records), as_json=True, terminal=False)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["seq"] for line in lines] == [1, 12345678]
    assert lines[0]["hash"] == "1" * 64 and lines[1]["dataset_id"] is None
