"""`genofed node ...`: create a node and see what it holds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from genofed.cli.output import (
    Column,
    console,
    human_bytes,
    json_option,
    note,
    print_json,
    print_table,
)
from genofed.config.node import init_node

if TYPE_CHECKING:
    from genofed.store.dataset import Dataset

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
def info(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    as_json: bool = json_option("the node and its datasets", "Keys: nodeId, country, "
                                "created, datasets (each: datasetId, name, version, accessTier, "
                                "assemblyId, samples, individualsWithPhenopackets, vcfRecords, "
                                "biallelicSites, contigs, alleleCountGroups, sizeBytes)."),
) -> None:
    """Show the node's datasets: version, access tier, samples, variants and sizes.

    On a terminal a table under a line naming the node; otherwise tab-separated values under a
    header line (the node's line then goes to standard error)."""
    from genofed.store import NodeStore  # NumPy and Arrow: only for this command

    store = NodeStore.open(node_dir)
    config = store.config
    datasets = [(ds, _size(ds)) for ds in store.datasets()]
    if as_json:
        print_json({"nodeId": config.node_id, "country": config.country,
                    "created": config.created,
                    "datasets": [_dataset_json(ds, size) for ds, size in datasets]})
        return
    note(f"Node [bold]{config.node_id}[/] ({config.country}), created {config.created}")
    columns = (Column("dataset", identifier=True), Column("version"), Column("tier"),
               Column("assembly"), Column("samples", "right"), Column("phenopackets", "right"),
               Column("VCF records", "right"), Column("sites", "right"),
               Column("contig names", identifier=True), Column("size", "right"))
    print_table(columns, ((
        ds.id, ds.manifest.version, ds.metadata.access_tier.value, ds.metadata.assembly_id,
        f"{ds.manifest.n_samples:,}", f"{ds.manifest.n_individuals_with_phenopackets:,}",
        f"{ds.manifest.n_records:,}", f"{ds.manifest.n_sites:,}", ", ".join(ds.manifest.contigs),
        human_bytes(size)) for ds, size in datasets),
        empty=f"No datasets yet. Ingest one: genofed ingest {node_dir} --dataset ID "
              "--vcf FILE.vcf.gz")


def _size(ds: Dataset) -> int:
    """Bytes the dataset's current version takes in the store (on disk, or in S3)."""
    return ds.stored.total_size()


def _dataset_json(ds: Dataset, size: int) -> dict[str, Any]:
    m = ds.manifest
    return {"datasetId": ds.id, "name": ds.metadata.name, "version": m.version,
            "accessTier": ds.metadata.access_tier.value, "assemblyId": ds.metadata.assembly_id,
            "samples": m.n_samples, "individualsWithPhenopackets":
            m.n_individuals_with_phenopackets, "vcfRecords": m.n_records,
            "biallelicSites": m.n_sites, "contigs": list(m.contigs),
            "alleleCountGroups": list(m.groups), "sizeBytes": size}
