"""`genofed sim ...`: synthetic cohorts for demos, tests and benchmarks."""

from __future__ import annotations

from pathlib import Path

import typer

from genofed.cli.output import console, fail, stage_progress

app = typer.Typer(help="Simulate realistic synthetic data.", no_args_is_help=True)

_STAGES = {"simulate": "Simulating genealogy", "vcf": "Writing VCF", "index": "Indexing VCF",
           "traits": "Planting traits", "phenopackets": "Writing phenopackets",
           "metadata": "Writing metadata"}


@app.command("cohort")
def cohort(
    out_dir: Path = typer.Argument(..., help="Output directory (created)."),
    samples: int = typer.Option(..., "--samples", min=10, help="Number of diploid individuals "
                                "(with a population mix, the sum of its counts)."),
    seed: int = typer.Option(..., "--seed", min=0, help="Random seed: same seed, same files."),
    length_mb: float = typer.Option(1.0, "--length-mb", help="Megabases of chr20 to simulate."),
    population: str = typer.Option("CEU", "--population", help="OutOfAfrica_3G09 population: "
                                   "YRI, CEU or CHB; or a mix from one simulated history, with "
                                   "counts: CEU=480,YRI=120."),
    dataset_id: str | None = typer.Option(None, "--dataset-id", help="Dataset id for "
                                          "dataset.json (default sim-<pop>-<seed>)."),
    access_tier: str = typer.Option("controlled", "--access-tier",
                                    help="public, registered or controlled."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing output."),
    missing_rate: float = typer.Option(0.0, "--missing-rate", min=0.0, max=0.49,
                                       help="Share of calls written missing (./.), at random, "
                                       "as genotyping leaves some in real cohorts."),
) -> None:
    """Simulate a cohort of one population, or of several from one history (sharing variants):
    genotypes (msprime/stdpopsim, human out-of-Africa model, no downloads) in
    OUT_DIR/cohort.vcf.gz (+ .tbi), one Phenopacket v2 per individual with planted
    quantitative and binary traits (truth in OUT_DIR/truth.json), OUT_DIR/dataset.json (DUO
    codes, access tier), OUT_DIR/populations.tsv and OUT_DIR/genes.bed (a synthetic gene
    table)."""
    from genofed.sim import simulate_cohort

    try:
        sampled = _population_mix(population)
        with stage_progress(_STAGES) as update:
            summary = simulate_cohort(
                out_dir, samples=samples, seed=seed, length_mb=length_mb, population=sampled,
                dataset_id=dataset_id, access_tier=access_tier, overwrite=overwrite,
                missing_rate=missing_rate,
                progress=lambda stage, fraction: update(stage, round(fraction * 100), 100))
    except (ValueError, FileExistsError) as exc:
        fail(str(exc))
    console.print(f"Simulated [bold]{summary.n_samples:,}[/] individuals x "
                  f"[bold]{summary.n_variants:,}[/] variants ({summary.population}) in {out_dir}")
    console.print(f"Next: genofed ingest NODE_DIR --dataset {summary.dataset_id} "
                  f"--vcf {summary.vcf} --phenopackets {summary.phenopackets_dir} "
                  f"--metadata {summary.dataset_metadata} --populations {summary.populations} "
                  f"--genes {out_dir / 'genes.bed'}")


def _population_mix(text: str) -> str | dict[str, int]:
    """"CEU" as it is; "CEU=480,YRI=120" as {"CEU": 480, "YRI": 120}."""
    if "=" not in text:
        return text
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, _, count = (part.strip() for part in item.partition("="))
        if not name or not count.isdigit() or name in counts:
            raise ValueError(f"--population {text!r}: write one population or a mix as "
                             "NAME=COUNT pairs, each name once, e.g. CEU=480,YRI=120")
        counts[name] = int(count)
    return counts
