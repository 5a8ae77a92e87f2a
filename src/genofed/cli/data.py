"""`genofed ingest` and `genofed sites`: put data into a node and look at it."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import typer
from rich.table import Table

from genofed.cli.output import console, fail, human_bytes, stage_progress
from genofed.ingest import ingest_dataset
from genofed.store import NodeStore

_REGION = re.compile(r"^(?P<chrom>[^:]+)(?::(?P<start>[\d,]+)(?:-(?P<end>[\d,]+))?)?$")


def ingest(
    node_dir: Path = typer.Argument(..., help="The node directory (see `genofed node init`)."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset id (shared by catalogue, "
                                "Beacon, visas and files)."),
    vcf: Path = typer.Option(..., "--vcf", help="VCF (.vcf, .vcf.gz bgzipped) or BCF file."),
    phenopackets: Path | None = typer.Option(
        None, "--phenopackets", help="Directory of Phenopacket v2 JSON files, one per sample."),
    metadata: Path | None = typer.Option(
        None, "--metadata", help="dataset.json: name, access tier, DUO data-use conditions."),
    populations: Path | None = typer.Option(
        None, "--populations", help="TSV 'sample<TAB>population' for allele counts by group."),
    assembly: str | None = typer.Option(None, "--assembly", help="GRCh37 or GRCh38 (overrides "
                                        "the metadata; default GRCh38)."),
    genes: Path | None = typer.Option(None, "--genes", help="Gene table (BED: chrom, start, "
                                      "end, name) so the Beacon answers geneId queries."),
    workers: int | None = typer.Option(None, "--workers", min=1, help="Parallel worker "
                                       "processes (default: one per core)."),
) -> None:
    """Ingest a VCF/BCF (with optional Phenopackets and metadata) as a new version of a dataset.

    Multi-allelic records are split into biallelic sites as `bcftools norm -m-` does; allele
    counts are kept overall, by sex and by population. The new version is published atomically:
    if ingest fails or is interrupted, the node keeps serving the previous version. Re-ingesting
    identical input changes nothing.
    """
    with stage_progress({"parse": "Parsing VCF (bytes)", "write": "Writing genotype chunks"}
                        ) as update:
        result = ingest_dataset(node_dir, dataset, vcf, phenopackets=phenopackets,
                                metadata=metadata, populations=populations, assembly=assembly,
                                genes=genes, workers=workers, progress=update)
    m = result.manifest
    if result.unchanged:
        console.print(f"Dataset [bold]{dataset}[/] is unchanged (same input as {m.version}); "
                      "nothing to do.")
        return
    table = Table(title=f"Ingested {dataset} {m.version} in {result.seconds:.1f} s")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("samples", f"{m.n_samples:,}")
    table.add_row("individuals with phenopackets", f"{m.n_individuals_with_phenopackets:,}")
    table.add_row("VCF records", f"{m.n_records:,}")
    table.add_row("biallelic sites", f"{m.n_sites:,}")
    table.add_row("contigs", ", ".join(m.contigs[:6]) + (" ..." if len(m.contigs) > 6 else ""))
    table.add_row("allele-count groups", ", ".join(m.groups))
    for part in ("genotypes.zarr", "sites.parquet", "individuals.parquet.c4gh"):
        table.add_row(f"size: {part}", human_bytes(result.sizes.get(part, 0)))
    table.add_row("size: total", human_bytes(result.sizes.get("total", 0)))
    console.print(table)


def parse_region(text: str) -> tuple[str, int, int]:
    """'chr20:1,000-2,000' -> ('chr20', 1000, 2000); 'chr20:5' -> a point; 'chr20' -> all."""
    match = _REGION.match(text.strip())
    if not match:
        raise ValueError(f"region {text!r} is not CHR, CHR:POS or CHR:START-END")
    start = int(match["start"].replace(",", "")) if match["start"] else 1
    end = int(match["end"].replace(",", "")) if match["end"] else (
        start if match["start"] else 2**31 - 1)
    if start < 1 or end < start:
        raise ValueError(f"region {text!r}: start must be >= 1 and not after end")
    return match["chrom"], start, end


def sites(
    node_dir: Path = typer.Argument(..., help="The node directory."),
    dataset: str = typer.Option(..., "--dataset", help="Dataset id."),
    region: str | None = typer.Option(None, "--region", help="CHR, CHR:POS or CHR:START-END "
                                      "(1-based, inclusive; records overlapping it, as "
                                      "`bcftools view -r`). 'chr' prefix optional."),
) -> None:
    """Print the dataset's biallelic sites as TSV: CHROM POS REF ALT AC AN."""
    ds = NodeStore.open(node_dir).dataset(dataset)
    if region is None:
        table = ds.sites
    else:
        try:
            chrom, start, end = parse_region(region)
        except ValueError as exc:
            fail(str(exc))
        if not ds.has_contig(chrom):
            fail(f"contig {chrom!r} is not in dataset {dataset!r}",
                 f"its contigs are: {', '.join(ds.contigs)}")
        table = ds.sites_in_range(chrom, start, end)
    out = sys.stdout
    out.write("CHROM\tPOS\tREF\tALT\tAC\tAN\n")
    columns = [table.column(c).to_pylist() for c in ("contig", "pos", "ref", "alt", "ac", "an")]
    out.writelines("\t".join(map(str, row)) + "\n" for row in zip(*columns, strict=True))
