"""The `genofed` command: thin wrappers, each calling one package."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="genofed",
    help="genofed: a federated genomic data node (GA4GH Beacon v2, Passports, htsget, Crypt4GH).",
    no_args_is_help=True,
    add_completion=False,
)
