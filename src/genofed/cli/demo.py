"""`genofed demo`: the README's first command — simulate, build a node, ingest, summarise."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from genofed.cli import data, node
from genofed.cli.output import console, fail, stage_progress
from genofed.config.node import CONFIG_FILE, NodeConfigError, init_node


def demo(
    directory: Path = typer.Option(Path("demo"), "--dir", help="Where to put the cohort and "
                                   "the node (reused if present)."),
    samples: int = typer.Option(500, "--samples", min=10, help="Individuals to simulate."),
    length_mb: float = typer.Option(2.0, "--length-mb", help="Megabases of chr20."),
    seed: int = typer.Option(1, "--seed", min=0, help="Simulation seed."),
) -> None:
    """Simulate a cohort, create a node, ingest the cohort and show what the node now holds."""
    from genofed.sim import simulate_cohort
    from genofed.store import NodeStore

    cohort_dir = directory / "cohort"
    node_dir = directory / "node-fi"
    console.rule("[bold]1. Simulate a Finnish-like cohort")
    if (cohort_dir / "dataset.json").is_file():
        console.print(f"Reusing the cohort in {cohort_dir}")
        from genofed.store.metadata import load_metadata

        dataset_id = load_metadata(cohort_dir / "dataset.json").id
    else:
        with stage_progress({}) as update:
            summary = simulate_cohort(
                cohort_dir, samples=samples, seed=seed, length_mb=length_mb, population="CEU",
                dataset_id="fi-demo-cohort", access_tier="controlled", overwrite=True,
                progress=lambda stage, fraction: update(stage, round(fraction * 100), 100))
        dataset_id = summary.dataset_id
        console.print(f"{summary.n_samples:,} individuals, {summary.n_variants:,} variants, "
                      f"{summary.n_cases:,} cases of the planted binary trait")

    console.rule("[bold]2. Create the node")
    if (node_dir / CONFIG_FILE).is_file():
        console.print(f"Reusing the node in {node_dir}")
    else:
        try:
            init_node(node_dir, node_id="fi-demo", country="FI")
        except NodeConfigError as exc:
            fail(str(exc))
        console.print(f"Node fi-demo (FI) in {node_dir}, keys generated in {node_dir / 'keys'}")

    console.rule("[bold]3. Ingest VCF + Phenopackets + metadata")
    data.ingest(node_dir, dataset_id, cohort_dir / "cohort.vcf.gz",
                phenopackets=cohort_dir / "phenopackets", metadata=cohort_dir / "dataset.json",
                populations=cohort_dir / "populations.tsv", assembly=None,
                genes=cohort_dir / "genes.bed", workers=None)

    console.rule("[bold]4. What the node holds")
    node.info(node_dir)
    ds = NodeStore.open(node_dir).dataset(dataset_id)
    common = ds.sites.sort_by([("af", "descending")]).slice(0, 5)
    table = Table(title="Most common alternate alleles")
    for column in ("site", "REF>ALT", "AF", "AF female", "AF male"):
        table.add_column(column, justify="right" if column.startswith("AF") else "left")
    rows = common.to_pylist()
    for row in rows:
        def freq(group: str, row: dict[str, object] = row) -> str:
            an = row.get(f"an_{group}")
            ac = row.get(f"ac_{group}")
            return f"{ac / an:.3f}" if isinstance(an, int) and an and isinstance(ac, int) else "-"

        table.add_row(f"{row['contig']}:{row['pos']}", f"{row['ref']}>{row['alt']}",
                      f"{row['af']:.3f}", freq("female"), freq("male"))
    console.print(table)
    seizure = ds.select_individuals(hpo="HP:0001250")
    women = ds.select_individuals(hpo="HP:0001250", sex="female")
    console.print(f"Individuals with Seizure (HP:0001250, descendants included): "
                  f"{len(seizure):,}, of whom women: {len(women):,}")
    console.print(f"\nTry: genofed sites {node_dir} --dataset {dataset_id} --region 20:1-100000")
