"""`genofed node ...`: create a node and see what it holds."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from genofed.cli.output import console, human_bytes
from genofed.config.node import init_node
from genofed.store import NodeStore

app = typer.Typer(help="Create a node and inspect it.", no_args_is_help=True)


@app.command("init")
def init(
    node_dir: Path = typer.Argument(..., help="Directory for the new node (created)."),
    node_id: str = typer.Option(..., "--node-id", help="Short lower-case id, e.g. 'fi-helsinki'."),
    country: str = typer.Option(..., "--country", help="ISO 3166-1 alpha-2 code, e.g. FI."),
    keys_dir: str | None = typer.Option(
        None, "--keys-dir", help="Keep key material here instead of NODE_DIR/keys."),
) -> None:
    """Create a node: its configuration and freshly generated keys (Crypt4GH, ES256 signing,
    X25519 key agreement). Nothing is defaulted; an existing node is never overwritten."""
    paths = init_node(node_dir, node_id=node_id, country=country, keys_dir=keys_dir)
    console.print(f"Created node [bold]{node_id}[/] ({country.upper()}) in {node_dir}")
    console.print(f"  configuration  {paths.config_file}")
    console.print(f"  keys           {paths.keys} (owner-only)")
    console.print(f"Next: genofed ingest {node_dir} --dataset ID --vcf FILE.vcf.gz")


@app.command("info")
def info(node_dir: Path = typer.Argument(..., help="The node directory.")) -> None:
    """Show the node's datasets: version, access tier, samples, variants and sizes."""
    store = NodeStore.open(node_dir)
    config = store.config
    console.print(f"Node [bold]{config.node_id}[/] ({config.country}), created {config.created}")
    table = Table(title=None, show_lines=False)
    for column, justify in (("dataset", "left"), ("version", "left"), ("tier", "left"),
                            ("assembly", "left"), ("samples", "right"),
                            ("phenopackets", "right"), ("VCF records", "right"),
                            ("sites", "right"), ("contigs", "left"), ("size", "right")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    datasets = store.datasets()
    for ds in datasets:
        m = ds.manifest
        size = sum(f.stat().st_size for f in ds.path.rglob("*") if f.is_file())
        contigs = ", ".join(m.contigs[:4]) + (" ..." if len(m.contigs) > 4 else "")
        table.add_row(ds.id, m.version, ds.metadata.access_tier.value, ds.metadata.assembly_id,
                      f"{m.n_samples:,}", f"{m.n_individuals_with_phenopackets:,}",
                      f"{m.n_records:,}", f"{m.n_sites:,}", contigs, human_bytes(size))
    if datasets:
        console.print(table)
    else:
        console.print(f"No datasets yet. Ingest one: genofed ingest {node_dir} --dataset ID "
                      "--vcf FILE.vcf.gz")
