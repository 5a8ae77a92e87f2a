"""The `genofed` command: thin wrappers, each calling one package. Errors are reported in one
place (:class:`genofed.cli.output.ReportingGroup`)."""

from __future__ import annotations

import typer

from genofed.cli import access as access_cli
from genofed.cli import analysis as analysis_cli
from genofed.cli import audit as audit_cli
from genofed.cli import data, demo, node, serve, sim
from genofed.cli import files as files_cli
from genofed.cli import hub as hub_cli
from genofed.cli import issuer as issuer_cli
from genofed.cli import network as network_cli
from genofed.cli import trust as trust_cli
from genofed.cli.output import ReportingGroup

app = typer.Typer(
    name="genofed",
    cls=ReportingGroup,
    help="genofed: a national node of a federated genomic data network (1+MG), in one package. "
    "A node keeps its genomes and clinical data at home, encrypted; researchers discover what "
    "exists (GA4GH Beacon v2), apply to each dataset's committee (DUO consent, GA4GH Passport "
    "visas), stream the slices they were granted (htsget + Crypt4GH), and query every country "
    "at once through a coordinator, and run analyses across countries where only aggregates "
    "leave a node. Start with `genofed demo`, or `genofed node init`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(node.app, name="node")
app.add_typer(sim.app, name="sim")
access_cli.app.add_typer(trust_cli.app, name="trust")
app.add_typer(access_cli.app, name="access")
app.add_typer(audit_cli.app, name="audit")
app.add_typer(issuer_cli.app, name="issuer")
app.add_typer(network_cli.app, name="network")
app.add_typer(hub_cli.app, name="hub")
app.add_typer(analysis_cli.app, name="analysis")
app.add_typer(files_cli.app, name="files")
app.command("ingest")(data.ingest)
app.command("sites")(data.sites)
app.command("demo", short_help="Three national nodes, a login issuer and the coordinator on "
            "this machine, and a walk through discovery, access, queries and "
            "federated analyses across countries.")(demo.demo)
app.command("serve")(serve.serve)


def main() -> None:
    app()
