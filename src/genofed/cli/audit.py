"""`genofed audit ...`: list and filter the audit trail, verify it, export it, explain
pseudonyms. The governance modules are imported inside the commands."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genofed.access.pseudonyms import DERIVATION
from genofed.cli.access import NODE_DIR, governance_of, identity_of
from genofed.cli.output import (
    Column,
    console,
    errors,
    fail,
    json_option,
    print_json,
    print_table,
    reader_may_leave,
    stdout_is_terminal,
)
from genofed.config.node import NodePaths, load_config

if TYPE_CHECKING:
    from genofed.access.audit import AuditEntry

# Paragraphs are single lines: the help formatter keeps line breaks after the first one.
_AUDIT_HELP = "\n\n".join((
    "The append-only, hash-chained audit trail: every release or refusal of data (beacon.*, "
    "htsget.*, analysis) and every governance event (application.*, visa.*, dac.*, delivery.*, "
    "trust.*, network.*). List and filter it, check that nothing was altered, export it.",
    "Records name people only by pseudonym: {derivation}. Compute one with `genofed audit "
    "pseudonym 'ISSUER|SUBJECT'`, or pass the identity to `genofed audit list --subject`.",
    "The decision is allow when the node carried the action out (released data, took a "
    "committee decision, signed a visa) and deny when it refused it.",
))

app = typer.Typer(help=_AUDIT_HELP.format(derivation=DERIVATION), no_args_is_help=True)


@app.command("verify")
def audit_verify(
    node_dir: Path = NODE_DIR,
    as_json: bool = json_option("the verdict", "Keys: intact, records, headHash, problem "
                                "(null, or the kind, seq and message of the first record at "
                                "fault). The exit status is 1 when the trail is not intact, as "
                                "without --json."),
) -> None:
    """Check that the audit trail is intact.

    Checks every record's hash, the chain linking them, their sequence numbers and the node's
    seal. Exit status 0 if intact; otherwise 1, naming the first record at fault and whether it
    was edited, deleted, inserted or reordered."""
    from genofed.access.audit import seal_key_from_signing_key, verify

    config = load_config(node_dir)
    with governance_of(node_dir) as governance:
        report = verify(governance.db,
                        seal_key_from_signing_key(NodePaths(node_dir, config).signing_key))
    if as_json:
        problem = report.problem
        print_json({"intact": problem is None, "records": report.records,
                    "headHash": report.head_hash,
                    "problem": None if problem is None else {
                        "kind": problem.kind, "seq": problem.seq, "message": problem.message}})
    if report.problem is not None:
        fail(f"audit trail of {node_dir} is NOT intact: {report.problem.message}",
             "restore the governance database from a backup and compare with an export")
    if not as_json:
        console.print(f"Audit trail intact: {report.records:,} records, chain head "
                      f"{report.head_hash}", highlight=False)


@app.command("export")
def audit_export(
    node_dir: Path = NODE_DIR,
    out: Path | None = typer.Option(None, "--out", help="Write JSON lines here (default: "
                                    "standard output)."),
) -> None:
    """Export the audit trail as JSON lines (one record per line, with its hashes)."""
    from genofed.access.audit import export_jsonl

    with governance_of(node_dir) as governance:
        if out is None:
            export_jsonl(governance.db, sys.stdout)
            return
        tmp = out.with_name(out.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as handle:
            count = export_jsonl(governance.db, handle)
        tmp.replace(out)
    console.print(f"Exported {count:,} audit records to {out}")



#: The audit list's columns; on a terminal the fixed-width ones are aligned and the free-width
#: ones follow, each line written as its record arrives (a trail can be longer than memory).
_COLUMNS = (Column("seq", justify="right", width=8), Column("at", width=27),
            Column("subject", identifier=True, width=32), Column("action", width=20),
            Column("decision", width=8), Column("dataset", identifier=True, width=16),
            Column("reason"), Column("detail"))


def _row(entry: AuditEntry) -> tuple[str, ...]:
    return (str(entry.seq), entry.at, entry.subject, entry.action, entry.decision,
            entry.dataset_id or "-", entry.reason, entry.detail)


def _write_records(records: Iterable[AuditEntry], as_json: bool, terminal: bool) -> int:
    """Stream records to stdout (never truncated, never held in memory); returns how many."""
    if as_json:
        out = sys.stdout
        count = 0
        for entry in records:
            out.write(entry.to_json() + "\n")
            count += 1
        return count
    # A terminal: aligned columns; otherwise tab-separated, for scripts (cut -f3, sort, awk).
    return print_table(_COLUMNS, (_row(entry) for entry in records), terminal=terminal,
                       stream=True)


@app.command("list")
def audit_list(
    node_dir: Path = NODE_DIR,
    subject: str | None = typer.Option(None, "--subject", help="Only this person's records: "
                                       "their pseudonym, a prefix of it that only they have, or "
                                       "their identity 'ISSUER|SUBJECT' (converted to the "
                                       "pseudonym); or 'anonymous' / 'operator'."),
    dataset: str | None = typer.Option(None, "--dataset", help="Only records about this "
                                       "dataset id."),
    actions: list[str] = typer.Option([], "--action", "--event", help="Only this action, e.g. "
                                      "beacon.record or application.approve, or a family of "
                                      "them: beacon, htsget, application, visa, dac, ... "
                                      "(repeat for several)."),
    decision: str | None = typer.Option(None, "--decision", help="Only allow (carried out) or "
                                        "deny (refused)."),
    since: str | None = typer.Option(None, "--since", help="Only records at or after this ISO "
                                     "8601 time (2025-03-01, 2025-03-01T14:30, ...+02:00; no "
                                     "zone = UTC)."),
    until: str | None = typer.Option(None, "--until", help="Only records before this time "
                                     "(exclusive: --until 2025-03-02 ends at midnight UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON Lines: one JSON object per "
                                 "record and line, with its hashes and seal (as `audit "
                                 "export`)."),
) -> None:
    """List audit records, filtered.

    Records come in sequence order, filtered by the database and streamed (any number of
    records). On a terminal: aligned columns; otherwise tab-separated values with a header line;
    with --json, JSON Lines (one object per line). Nothing is ever shortened."""
    from genofed.access.audit_query import parse_query, select_entries
    from genofed.access.db import GovernanceDB

    db = GovernanceDB.for_node(node_dir)
    terminal = stdout_is_terminal()
    try:
        query = parse_query(db, subject=subject, dataset_id=dataset, actions=actions,
                            decision=decision, since=since, until=until)
        with reader_may_leave():
            count = _write_records(select_entries(db, query), as_json, terminal)
            sys.stdout.flush()
    finally:
        db.close()
    if terminal:
        errors.print(f"{count:,} record(s)", highlight=False)


@app.command("pseudonym")
def audit_pseudonym(
    identities: list[str] = typer.Argument(..., help="A person's identity, ISSUER|SUBJECT: the "
                                           "`iss` and `sub` of their login token (repeat for "
                                           "several)."),
) -> None:
    """Print a person's pseudonym in the audit trail, and how it is derived.

    An auditor who knows the identity can then find that person's records (`genofed audit list
    NODE_DIR --subject PSEUDONYM`). The same identity has the same pseudonym on every node."""
    people = [identity_of(value, "IDENTITY") for value in identities]
    for who in people:
        sys.stdout.write(f"{who.pseudonym}  {who}\n"
                         f"  = sha256(\"{who.issuer}\\n{who.subject}\")[:32]\n")
    sys.stdout.write(f"A pseudonym is {DERIVATION}.\n")
