"""`genofed access trust ...`: which login issuers and visa signers a node trusts.

Each change is checked, recorded in the audit trail (trust.change) and written to node.toml
atomically; a running node applies it on its next request (no restart)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer
from rich.table import Table

from genofed.cli.output import console

app = typer.Typer(
    help="The login issuers whose tokens and passports this node accepts, and the visa signers "
    "(iss + pinned jku) whose visas it believes. A running node applies changes at once.",
    no_args_is_help=True)

NODE_DIR = typer.Argument(..., help="The node directory.")
ISSUER = typer.Argument(..., help="The issuer URL: its `iss`, e.g. "
                        "https://login.elixir-czech.org/oidc/ (http only on loopback).")


@app.command("add")
def add(
    node_dir: Path = NODE_DIR,
    issuer: str = ISSUER,
    jku: str | None = typer.Option(None, "--jku", help="The URL of the key set its visas name "
                                   "(jku). Default: the jwks_uri of its OIDC discovery "
                                   "document, fetched now."),
    tokens_only: bool = typer.Option(False, "--tokens-only", help="Accept its access tokens "
                                     "and passports, not visas it signs."),
    visas_only: bool = typer.Option(False, "--visas-only", help="Believe visas it signs (e.g. "
                                    "another node's committee), not its logins."),
) -> None:
    """Trust an issuer: its logins (access tokens, checked at its userinfo endpoint, and
    Passports) and the visas it signs with the key set at its jku."""
    from genofed.access import trust
    from genofed.access.changes import audited_change
    from genofed.access.events import GovernanceEvent
    from genofed.config.node import load_config, save_config

    issuer = trust.checked_url(issuer, "issuer")
    config = load_config(node_dir)
    if tokens_only:
        pinned = None
    elif jku is not None:
        pinned = trust.checked_url(jku, "--jku")
    else:
        pinned = trust.discovered_jwks(issuer)
    changed = trust.with_trust(config, issuer, tokens=not visas_only, jku=pinned)
    entry = next(e for e in trust.entries(changed) if e.issuer == issuer)
    with audited_change(node_dir, GovernanceEvent.TRUST_CHANGE, trusted=issuer,
                        tokens=entry.tokens, jku=entry.jku or "-"):
        save_config(node_dir, changed)
    what = " and ".join(w for w, on in (("logins", entry.tokens),
                                       (f"visas signed at {entry.jku}", entry.jku)) if on)
    console.print(f"{node_dir} now trusts {issuer} for its {what}.", highlight=False)


@app.command("remove")
def remove(node_dir: Path = NODE_DIR, issuer: str = ISSUER) -> None:
    """Stop trusting an issuer, for its logins and its visas alike."""
    from genofed.access import trust
    from genofed.access.changes import audited_change
    from genofed.access.events import GovernanceEvent
    from genofed.config.node import load_config, save_config

    changed = trust.without_trust(load_config(node_dir), trust.normalised(issuer))
    with audited_change(node_dir, GovernanceEvent.TRUST_CHANGE, untrusted=issuer):
        save_config(node_dir, changed)
    console.print(f"{node_dir} no longer trusts {issuer}.", highlight=False)


@app.command("list")
def list_(node_dir: Path = NODE_DIR,
          as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """The issuers this node trusts, and for what."""
    from genofed.access import trust
    from genofed.config.node import load_config

    found = trust.entries(load_config(node_dir))
    if as_json:
        sys.stdout.write(json.dumps([e.to_dict() for e in found], indent=2) + "\n")
        return
    if not found:
        console.print(f"This node trusts no issuer yet: genofed access trust add {node_dir} "
                      "ISSUER_URL")
        return
    table = Table()
    for column in ("issuer", "logins", "visas (jku)"):
        table.add_column(column, overflow="fold")
    for entry in found:
        table.add_row(entry.issuer, "yes" if entry.tokens else "no", entry.jku or "no")
    console.print(table)
