"""`genofed ingest` and `genofed sites`: put data into a node and look at it."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from genofed.cli.output import (
    Column,
    console,
    fail,
    human_bytes,
    json_option,
    print_json,
    print_table,
    stage_progress,
)

# ingest and the store (NumPy, Arrow, Zarr) are imported inside the commands: every other
# `genofed` command, and --help, starts without them.
if TYPE_CHECKING:
    from genofed.ingest.pipeline import IngestResult

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
                                       "processes (default: one per core; not with a "
                                       "scheduler)."),
    scheduler: str | None = typer.Option(
        None, "--scheduler", metavar="ADDRESS", help="A dask.distributed scheduler (e.g. "
        "tcp://10.0.0.5:8786) whose workers parse and write instead; they must see the input "
        "and the node directory at the same paths (a shared filesystem). Overrides "
        "ingest.scheduler in node.toml; '' ingests on this machine."),
    as_json: bool = json_option("the summary", "Keys: datasetId, version, unchanged, "
                                "seconds, samples, individualsWithPhenopackets, vcfRecords, "
                                "biallelicSites, contigs, alleleCountGroups, fingerprint, "
                                "created, storeFormat, source, path, sizes (bytes by part, and "
                                "total). Progress stays on standard error."),
) -> None:
    """Ingest a VCF/BCF (with optional Phenopackets and metadata) as a new version of a dataset.

    Multi-allelic records are split into biallelic sites as `bcftools norm -m-` does; allele
    counts are kept overall, by sex and by population. The new version is published atomically:
    if ingest fails or is interrupted, the node keeps serving the previous version. Re-ingesting
    identical input changes nothing.

    Progress bars are drawn on standard error; the summary goes to standard output (a table on
    a terminal, tab-separated `field<TAB>value` lines otherwise, or JSON with --json).
    """
    from genofed.ingest import ingest_dataset

    with stage_progress({"parse": "Parsing VCF (bytes)", "write": "Writing genotype chunks"}
                        ) as update:
        result = ingest_dataset(node_dir, dataset, vcf, phenopackets=phenopackets,
                                metadata=metadata, populations=populations, assembly=assembly,
                                genes=genes, workers=workers, progress=update,
                                scheduler=scheduler)
    if as_json:
        print_json(_summary(result))
        return
    m = result.manifest
    if result.unchanged:
        console.print(f"Dataset [bold]{dataset}[/] is unchanged (same input as {m.version}); "
                      "nothing to do.")
        return
    console.print(f"Ingested [bold]{dataset}[/] {m.version} in {result.seconds:.1f} s",
                  highlight=False)
    sizes = [(f"size: {part}", human_bytes(result.sizes.get(part, 0)))
             for part in ("genotypes.zarr", "sites.parquet", "individuals.parquet.c4gh",
                          "total")]
    print_table((Column("what"), Column("value", justify="right")), (
        ("samples", f"{m.n_samples:,}"),
        ("individuals with phenopackets", f"{m.n_individuals_with_phenopackets:,}"),
        ("VCF records", f"{m.n_records:,}"),
        ("biallelic sites", f"{m.n_sites:,}"),
        # names and their number on separate rows: "contigs | 20" read as twenty contigs
        ("number of contigs", f"{len(m.contigs):,}"),
        ("contig names", ", ".join(m.contigs)),
        ("allele-count groups", ", ".join(m.groups)),
        *sizes))


def _summary(result: IngestResult) -> dict[str, Any]:
    """What `ingest --json` prints: the manifest's fields (camelCase, as the other documents the
    command line prints), the version, whether anything changed, and the sizes in bytes."""
    m = result.manifest
    return {"datasetId": result.dataset_id, "version": result.version,
            "unchanged": result.unchanged, "seconds": round(result.seconds, 3),
            "samples": m.n_samples,
            "individualsWithPhenopackets": m.n_individuals_with_phenopackets,
            "vcfRecords": m.n_records, "biallelicSites": m.n_sites, "contigs": list(m.contigs),
            "alleleCountGroups": list(m.groups), "fingerprint": m.fingerprint,
            "created": m.created, "storeFormat": m.store_format, "source": dict(m.source),
            "path": str(result.version_dir), "sizes": dict(result.sizes)}


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
    from genofed.store import NodeStore

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
