"""The `genofed` command: thin wrappers, each calling one package."""

from __future__ import annotations

import typer

from genofed.cli import data, demo, node, serve, sim

app = typer.Typer(
    name="genofed",
    help="genofed: a national node of a federated genomic data network (1+MG). Simulate cohorts, "
    "create a node, ingest VCF/BCF + Phenopackets, and inspect what it holds.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(node.app, name="node")
app.add_typer(sim.app, name="sim")
app.command("ingest")(data.ingest)
app.command("sites")(data.sites)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)


def main() -> None:
    app()
