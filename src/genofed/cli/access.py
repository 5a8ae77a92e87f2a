"""`genofed access ...`: the committee workflow, for operators, on NODE_DIR's governance database
(the audit trail's commands are in :mod:`genofed.cli.audit`).

The governance modules (SQLAlchemy, Alembic, the store) are imported inside the commands, so
they cost nothing to every other `genofed` command.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from genofed.cli.output import (
    Column,
    console,
    fail,
    json_option,
    print_json,
    print_table,
)
from genofed.config.node import NodeConfig, load_config, save_config

if TYPE_CHECKING:
    from genofed.access.dac import ApplicationView, Identity
    from genofed.access.governance import Governance

VERDICTS = ("approve", "reject", "return")

app = typer.Typer(help="Data access applications, committee decisions and visas, on a node's "
                  "governance database (the same state the /access HTTP API serves).",
                  no_args_is_help=True)
dac_app = typer.Typer(help="Who sits on the node's data access committee (access.dac_members).",
                      no_args_is_help=True)
app.add_typer(dac_app, name="dac")

NODE_DIR = typer.Argument(..., help="The node directory.")
APPLICATION_ID = typer.Argument(..., help="The application id (see `genofed access list`): "
                                "whole, or its first characters (at least 4) when no other "
                                "application's id starts with them.")


@contextmanager
def governance_of(node_dir: Path) -> Iterator[Governance]:
    from genofed.access.governance import Governance

    governance = Governance.open(node_dir)
    try:
        yield governance
    finally:
        governance.close()


def identity_of(value: str, option: str) -> Identity:
    from genofed.access.dac import Identity
    from genofed.errors import GovernanceError

    try:
        return Identity.parse(value)
    except GovernanceError as exc:
        fail(f"{option}: {exc}")


def _application_id(governance: Governance, prefix: str) -> str:
    """The whole id of the application `prefix` names (see :mod:`genofed.access.lookup`)."""
    from genofed.access.lookup import application_id

    return application_id(governance.db, prefix)


def _print_application(view: ApplicationView, as_json: bool) -> None:
    if as_json:
        print_json(view.to_dict())
        return
    console.print(f"Application [bold]{view.id}[/] — {view.state}")
    console.print(f"  applicant  {view.applicant}")
    console.print(f"  purpose    {', '.join(view.purpose.terms)}"
                  + (f"; diseases {', '.join(view.purpose.diseases)}" if view.purpose.diseases
                     else "") + ("; commercial" if view.purpose.commercial else ""))
    console.print(f"  text       {view.text}", highlight=False)
    console.print(f"  duration   {view.duration_days} days")
    for request in view.datasets:
        console.print(f"  dataset {request.dataset_id}: DUO pre-assessment "
                      f"[bold]{request.assessment.value}[/]")
        for reason in request.reasons:
            console.print(f"      - {reason}", highlight=False)
    for event in view.events:
        note = f" — {event.note}" if event.note else ""
        console.print(f"  event {event.seq}: {event.kind} by {event.actor} at "
                      f"{event.at.isoformat(timespec='seconds')}{note}", highlight=False)
    for visa in view.visas:
        status = (f"revoked {visa.revoked_at.isoformat(timespec='seconds')}" if visa.revoked_at
                  else "valid until "
                  + datetime.fromtimestamp(visa.expires_at, UTC).isoformat(timespec="seconds"))
        console.print(f"  visa {visa.jti} for {visa.dataset_id}: {status}")


@app.command("apply")
def apply(
    node_dir: Path = NODE_DIR,
    applicant: str = typer.Option(..., "--applicant", help="The researcher, as ISSUER|SUBJECT."),
    datasets: list[str] = typer.Option(..., "--dataset", "-d", help="Dataset id (repeat for "
                                       "several)."),
    terms: list[str] = typer.Option(..., "--purpose", "-p", help="DUO term of the research "
                                    "purpose: HMB, DS, POA, GRU or DUO:0000031-40 (repeat)."),
    diseases: list[str] = typer.Option([], "--disease", help="Disease CURIE (MONDO) for "
                                       "disease-specific research (repeat)."),
    commercial: bool = typer.Option(False, "--commercial", help="Commercial use, or a "
                                    "for-profit organisation."),
    text: str = typer.Option(..., "--text", help="What the research is, in words."),
    days: int = typer.Option(365, "--days", help="Requested duration of access in days."),
    as_json: bool = json_option("the application", "The same document as `access show "
                                "--json`."),
) -> None:
    """File an application on a researcher's behalf; prints the DUO pre-assessment of each
    dataset (approve / deny / needs-review, with reasons)."""
    from genofed.access.duo import Purpose

    who = identity_of(applicant, "--applicant")
    with governance_of(node_dir) as governance:
        purpose = Purpose.parse(terms, diseases, commercial)
        view = governance.committee.apply(who, datasets, purpose, text, days)
        _print_application(view, as_json)


@app.command("list")
def list_applications(
    node_dir: Path = NODE_DIR,
    state: str | None = typer.Option(None, "--state", help="Only submitted, approved, rejected "
                                     "or returned applications."),
    applicant: str | None = typer.Option(None, "--applicant", help="Only this ISSUER|SUBJECT's."),
    as_json: bool = json_option("the applications", "An array of `access show --json` "
                                "documents."),
) -> None:
    """List applications, newest first.

    On a terminal a table; otherwise tab-separated values under a header line, ids whole
    (`... | cut -f1` gives the application ids)."""
    who = identity_of(applicant, "--applicant") if applicant else None
    with governance_of(node_dir) as governance:
        views = governance.committee.applications(who, state)
    if as_json:
        print_json([v.to_dict() for v in views])
        return
    print_table(
        (Column("id", identifier=True), Column("state"), Column("applicant", identifier=True),
         Column("datasets", identifier=True), Column("pre-assessment"), Column("submitted")),
        ((view.id, view.state, str(view.applicant),
          ", ".join(d.dataset_id for d in view.datasets),
          ", ".join(d.assessment.value for d in view.datasets),
          view.created_at.isoformat(timespec="seconds")) for view in views),
        empty="No applications.")


@app.command("show")
def show(
    node_dir: Path = NODE_DIR,
    application_id: str = APPLICATION_ID,
    as_json: bool = json_option("the application", "Keys: id, applicant, state, purpose, "
                                "durationDays, createdAt, updatedAt, datasets, events, visas."),
) -> None:
    """Show an application: purpose, pre-assessment, every event, and its visas."""
    with governance_of(node_dir) as governance:
        whole_id = _application_id(governance, application_id)
        _print_application(governance.committee.application(whole_id), as_json)


@app.command("decide")
def decide(
    node_dir: Path = NODE_DIR,
    application_id: str = APPLICATION_ID,
    verdict: str = typer.Argument(..., help="approve, reject or return."),
    member: str = typer.Option(..., "--member", help="The deciding DAC member, as "
                               "ISSUER|SUBJECT (must be in access.dac_members)."),
    note: str = typer.Option("", "--note", help="Why (required to approve against a DUO deny)."),
    expires: str | None = typer.Option(
        None, "--expires", help="On approval: the last day of access (YYYY-MM-DD, through that "
        "day, UTC; or a date and time), within the requested duration. Default: the requested "
        "duration from now."),
    as_json: bool = json_option("the decided application", "As `access show --json`: the "
                                "visas it issued, each with its jti, are under visas."),
) -> None:
    """Decide a submitted application. Approval signs a ControlledAccessGrants visa per dataset,
    valid for the requested duration or until --expires. An application is decided once only."""
    from genofed.access.dac import Verdict

    if verdict not in VERDICTS:
        fail(f"decision {verdict!r}: use one of {', '.join(VERDICTS)}")
    who = identity_of(member, "--member")
    with governance_of(node_dir) as governance:
        whole_id = _application_id(governance, application_id)
        view = governance.committee.decide(whole_id, who, Verdict(verdict), note, expires)
        if as_json:
            print_json(view.to_dict())
            return
        console.print(f"Application {view.id} is now [bold]{view.state}[/].")
        for visa in view.visas:
            console.print(f"  issued visa {visa.jti} for {visa.dataset_id}, valid until "
                          + datetime.fromtimestamp(visa.expires_at, UTC)
                          .isoformat(timespec="seconds"))


@app.command("revoke")
def revoke(
    node_dir: Path = NODE_DIR,
    jti: str = typer.Argument(..., help="The visa's jti (see `genofed access show`): whole, or "
                              "its first characters (at least 4) when no other visa's jti "
                              "starts with them."),
    member: str = typer.Option(..., "--member", help="The revoking DAC member, ISSUER|SUBJECT."),
    note: str = typer.Option("", "--note", help="Why."),
    as_json: bool = json_option("the revoked visa", "Keys: jti, applicationId, datasetId, "
                                "issuedAt, expiresAt, revokedAt, visa (the JWT)."),
) -> None:
    """Revoke a visa: from the next request on, the node refuses access that relied on it."""
    from genofed.access.lookup import visa_jti

    who = identity_of(member, "--member")
    with governance_of(node_dir) as governance:
        visa = governance.committee.revoke(visa_jti(governance.db, jti), who, note)
        if as_json:
            print_json(visa.to_dict())
            return
        console.print(f"Revoked visa {visa.jti} ({visa.dataset_id}, application "
                      f"{visa.application_id}).")


def _members_config(node_dir: Path) -> NodeConfig:
    return load_config(node_dir)


def _save_members(node_dir: Path, config: NodeConfig, member: Identity, added: bool) -> None:
    """Save a changed committee, recorded in the audit trail first (write-ahead: see
    :func:`genofed.access.events.recorded`)."""
    from genofed.access.events import GovernanceEvent, format_detail, recorded
    from genofed.errors import AuditWriteError

    event = GovernanceEvent.DAC_ADD if added else GovernanceEvent.DAC_REMOVE
    with governance_of(node_dir) as governance:
        try:
            with recorded(governance.audit, event, actor=member.pseudonym, dataset_id=None,
                          detail=format_detail(by="operator",
                                               members=len(config.access.dac_members))):
                save_config(node_dir, config)
        except AuditWriteError as exc:
            fail(f"the committee was not changed: {exc}",
                 "check that the governance database is reachable and writable")


@dac_app.command("add")
def dac_add(node_dir: Path = NODE_DIR,
            identity: str = typer.Argument(..., help="The member, as ISSUER|SUBJECT.")) -> None:
    """Add a member to the node's data access committee.

    Recorded in the audit trail as dac.add, under the member's pseudonym."""
    member = identity_of(identity, "IDENTITY")
    who = str(member)
    config = _members_config(node_dir)
    if who in config.access.dac_members:
        console.print(f"{who} is already a DAC member.")
        return
    config.access.dac_members.append(who)
    _save_members(node_dir, config, member, added=True)
    console.print(f"Added {who} to the DAC ({len(config.access.dac_members)} member(s)).")


@dac_app.command("remove")
def dac_remove(node_dir: Path = NODE_DIR,
               identity: str = typer.Argument(..., help="The member, as ISSUER|SUBJECT.")) -> None:
    """Remove a member from the node's data access committee.

    Recorded in the audit trail as dac.remove, under the member's pseudonym."""
    member = identity_of(identity, "IDENTITY")
    who = str(member)
    config = _members_config(node_dir)
    if who not in config.access.dac_members:
        fail(f"{who} is not a DAC member", "see `genofed access dac list`")
    config.access.dac_members.remove(who)
    _save_members(node_dir, config, member, added=False)
    console.print(f"Removed {who} from the DAC.")


@dac_app.command("list")
def dac_list(
    node_dir: Path = NODE_DIR,
    as_json: bool = json_option("the members", "An array of objects with identity "
                                "(ISSUER|SUBJECT), issuer, subject and pseudonym (how the audit "
                                "trail names them); null for an entry that is not "
                                "ISSUER|SUBJECT."),
) -> None:
    """List the DAC members, with the pseudonym the audit trail names each by."""
    members = [(entry, _parsed(entry)) for entry in _members_config(node_dir).access.dac_members]
    if as_json:
        print_json([{"identity": entry,
                     "issuer": who.issuer if who else None,
                     "subject": who.subject if who else None,
                     "pseudonym": who.pseudonym if who else None} for entry, who in members])
        return
    print_table((Column("member", identifier=True), Column("pseudonym", identifier=True)),
                ((entry, who.pseudonym if who else "- (not ISSUER|SUBJECT: never matches)")
                 for entry, who in members),
                empty=f"No DAC members: add one with `genofed access dac add {node_dir} "
                      "ISSUER|SUBJECT`.")


def _parsed(entry: str) -> Identity | None:
    """A configured member, or None for a hand-edited entry that is not ISSUER|SUBJECT (listed
    as it is, so the operator sees it, rather than failing the whole listing)."""
    from genofed.access.dac import Identity
    from genofed.errors import GovernanceError

    try:
        return Identity.parse(entry)
    except GovernanceError:
        return None


# -- audit ---------------------------------------------------------------------------------------
