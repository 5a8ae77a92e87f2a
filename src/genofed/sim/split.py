"""Datasets cut from one simulated cohort, as national cohorts share one population history.

Cohorts simulated separately share nothing: not a variant, not a causal one. `split_cohort` cuts
one pooled simulation (`simulate_cohort`) into shares instead, and writes each share as a
complete cohort directory with the files `simulate_cohort` writes:

* `cohort.vcf.gz` (+ `.tbi`): every record of the pooled VCF with the share's sample columns only
  (like `bcftools view -s` without `-c`: a site the share does not carry stays), so all shares
  list the same sites; record-aligned BGZF like the pooled file;
* `phenopackets/`: the share's packets, their ids relabelled `{dataset id}.{sample}`;
* `truth.json`: the planted traits as in the pooled cohort (their frequencies, heritability and
  prevalence refer to it; `split_from` says so), and the share's individuals' values only;
* `dataset.json` (the share's id, tier, size and populations), `populations.tsv`, `genes.bed`.

Sample names stay those of the pooled cohort, so the shares can be merged back and compared
with the pooled data. The pooled VCF is read once, every share's columns written in that pass.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pysam

from genofed.formats.bgzf import BgzfWriter
from genofed.sim import genotypes
from genofed.sim.clinical import relabelled_phenopacket_json
from genofed.sim.cohort import (
    DATASET_NAME,
    GENES_NAME,
    INDEX_NAME,
    PHENOPACKETS_DIR,
    POPULATIONS_NAME,
    TRUTH_NAME,
    VCF_NAME,
    CohortSummary,
    _access_tier,
    _dataset_metadata,
    _prepare_output,
    _write_text,
    created_date,
    read_populations,
    write_populations,
)
from genofed.store.metadata import DATASET_ID_PATTERN, AlleleFrequencyRelease

#: VCF columns before the first sample's: CHROM POS ID REF ALT QUAL FILTER INFO FORMAT.
_FIXED_COLUMNS = 9


@dataclass(frozen=True, slots=True)
class Share:
    """One dataset cut from a pooled cohort."""

    dataset_id: str
    access_tier: str
    #: Sample names of the pooled cohort, in the order the share's files list them.
    samples: tuple[str, ...]
    #: The dataset publishes its allele frequencies to anyone (`alleleFrequencies: public`).
    public_frequencies: bool = False


def split_cohort(pooled: CohortSummary, out_root: Path, shares: Sequence[Share], *,
                 overwrite: bool = False, threads: int = 1) -> list[CohortSummary]:
    """Write each share to `out_root/{dataset id}`; return their summaries, in `shares` order.

    Shares must name samples of the pooled cohort, each at most once across all shares (a
    sample left out of every share is simply not written). Existing output files are an error
    unless `overwrite` is set, as for `simulate_cohort`. Rerunning writes identical bytes.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    pooled_samples = _vcf_samples(pooled.vcf)
    _check_shares(shares, pooled_samples)
    populations = read_populations(pooled.populations)
    absent = [sample for sample in pooled_samples if sample not in populations]
    if absent:
        raise ValueError(f"{pooled.populations} has no population for {absent[0]!r}, a sample "
                         f"of {pooled.vcf}")
    truth: dict[str, Any] = json.loads(pooled.truth.read_text(encoding="utf-8"))
    untold = [sample for sample in pooled_samples if sample not in truth["samples"]]
    if untold:
        raise ValueError(f"{pooled.truth} has no trait values for {untold[0]!r}, a sample of "
                         f"{pooled.vcf}")

    summaries, share_counts = [], []
    for share in shares:
        out_dir = Path(out_root) / share.dataset_id
        if out_dir.resolve() == pooled.out_dir.resolve():
            raise ValueError(f"share {share.dataset_id} would be written over the pooled cohort "
                             f"in {out_dir}; choose another out_root")
        counts = _counts_in_model_order(populations[sample] for sample in share.samples)
        share_counts.append(counts)
        cases = sum(int(truth["samples"][sample]["binary"]) for sample in share.samples)
        summaries.append(CohortSummary(
            out_dir=out_dir, vcf=out_dir / VCF_NAME, vcf_index=out_dir / INDEX_NAME,
            phenopackets_dir=out_dir / PHENOPACKETS_DIR, truth=out_dir / TRUTH_NAME,
            dataset_metadata=out_dir / DATASET_NAME, populations=out_dir / POPULATIONS_NAME,
            dataset_id=share.dataset_id, population=genotypes.population_label(counts),
            seed=pooled.seed, n_samples=len(share.samples), n_variants=0, n_cases=cases,
            length_bp=pooled.length_bp))
    for summary in summaries:
        _prepare_output(summary, overwrite=overwrite)

    records = _split_vcf(pooled.vcf, [(summary.vcf, share.samples)
                                      for summary, share in zip(summaries, shares, strict=True)],
                         threads=threads)
    pooled_counts = _counts_in_model_order(populations.values())
    pooled_mix = ", ".join(f"{name} {count}" for name, count in pooled_counts.items())
    genes = (pooled.out_dir / GENES_NAME).read_text(encoding="utf-8")
    written = []
    for summary, share, counts in zip(summaries, shares, share_counts, strict=True):
        summary = replace(summary, n_variants=records)
        summary.phenopackets_dir.mkdir(exist_ok=True)
        for sample in share.samples:
            text = (pooled.phenopackets_dir / f"{sample}.json").read_text(encoding="utf-8")
            _write_text(summary.phenopackets_dir / f"{sample}.json", relabelled_phenopacket_json(
                text, packet_id=f"{share.dataset_id}.{sample}"))
        _write_text(summary.truth, json.dumps(
            _share_truth(truth, summary, share), indent=2) + "\n")
        origin = (f"They are {summary.n_samples} of the {len(pooled_samples)} individuals "
                  f"({pooled_mix}) of one simulation, {pooled.dataset_id}, cut into datasets "
                  "that share its variant sites and planted causal variants.")
        metadata = _dataset_metadata(summary, _access_tier(share.access_tier),
                                     created_date(pooled.seed), counts, origin)
        if share.public_frequencies:
            metadata = metadata.model_copy(
                update={"allele_frequencies": AlleleFrequencyRelease.PUBLIC})
        _write_text(summary.dataset_metadata, metadata.to_json() + "\n")
        write_populations(summary.populations,
                          ((sample, populations[sample]) for sample in share.samples))
        _write_text(summary.out_dir / GENES_NAME, genes)
        written.append(summary)
    return written


def _check_shares(shares: Sequence[Share], pooled_samples: Sequence[str]) -> None:
    """Every problem with the shares is found before anything is written."""
    if not shares:
        raise ValueError("no shares to split the cohort into")
    known = set(pooled_samples)
    owner: dict[str, str] = {}
    for share in shares:
        if not re.match(DATASET_ID_PATTERN, share.dataset_id):
            raise ValueError(f"dataset id {share.dataset_id!r} must match {DATASET_ID_PATTERN}")
        if sum(other.dataset_id == share.dataset_id for other in shares) > 1:
            raise ValueError(f"two shares are named {share.dataset_id}; dataset ids must differ")
        _access_tier(share.access_tier)
        if isinstance(share.samples, str) or not share.samples:
            raise ValueError(f"share {share.dataset_id} needs a tuple of one or more sample "
                             f"names, not {share.samples!r}")
        unknown = [sample for sample in share.samples if sample not in known]
        if unknown:
            raise ValueError(f"share {share.dataset_id} names {len(unknown)} samples that the "
                             f"pooled cohort does not have, e.g. {unknown[0]!r}")
        repeated = [sample for sample, n in Counter(share.samples).items() if n > 1]
        if repeated:
            raise ValueError(f"share {share.dataset_id} names {repeated[0]!r} more than once")
        for sample in share.samples:
            if sample in owner:
                raise ValueError(f"{sample!r} is in both {owner[sample]} and "
                                 f"{share.dataset_id}; shares must not overlap")
            owner[sample] = share.dataset_id


def _counts_in_model_order(labels: Iterable[str]) -> dict[str, int]:
    return genotypes.in_model_order(Counter(labels))


def _vcf_samples(path: Path) -> list[str]:
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            if line.startswith("#CHROM"):
                return line.rstrip("\n").split("\t")[_FIXED_COLUMNS:]
            if not line.startswith("##"):
                break
    raise ValueError(f"{path}: no #CHROM header line before the first record")


def _split_vcf(source: Path, targets: Sequence[tuple[Path, Sequence[str]]], *,
               threads: int) -> int:
    """Write each target VCF with its samples' columns of `source`; return the record count."""
    records = 0
    with gzip.open(source, "rb") as lines, ExitStack() as stack:
        writers = [stack.enter_context(BgzfWriter(path, threads=threads)) for path, _ in targets]
        meta = bytearray()  # the ## lines, kept as they are
        for line in lines:
            if line.startswith(b"#CHROM"):
                names = line.rstrip(b"\n").split(b"\t")
                break
            meta += line
        else:
            raise ValueError(f"{source}: no #CHROM header line")
        column = {name.decode(): index for index, name in enumerate(names)
                  if index >= _FIXED_COLUMNS}
        columns = [[column[sample] for sample in samples] for _, samples in targets]
        # The header goes out as one record, as genotypes.write_vcf writes it.
        for writer, (_, samples) in zip(writers, targets, strict=True):
            writer.write_record(bytes(meta) + b"\t".join(
                [*names[:_FIXED_COLUMNS], *(sample.encode() for sample in samples)]) + b"\n")
        for line in lines:
            fields = line.rstrip(b"\n").split(b"\t")
            site = b"\t".join(fields[:_FIXED_COLUMNS])
            for writer, indices in zip(writers, columns, strict=True):
                writer.write_record(site + b"\t" + b"\t".join([fields[i] for i in indices])
                                    + b"\n")
            records += 1
    for path, _ in targets:
        # Already BGZF: pysam only builds the index, as for the pooled VCF.
        pysam.tabix_index(str(path), preset="vcf", force=True, keep_original=True)
    return records


def _share_truth(pooled: dict[str, Any], summary: CohortSummary,
                 share: Share) -> dict[str, object]:
    samples = pooled["samples"]
    return {
        "generator": pooled["generator"],
        "seed": summary.seed,
        "dataset_id": summary.dataset_id,
        "population": summary.population,
        "n_samples": summary.n_samples,
        "n_variants": summary.n_variants,
        "n_cases": summary.n_cases,
        "split_from": {
            "dataset_id": pooled["dataset_id"],
            "population": pooled["population"],
            "n_samples": pooled["n_samples"],
            "note": "the traits were planted over every individual of this pooled cohort: the "
                    "causal variants' frequencies, the heritability, prevalence and case count "
                    "under 'traits' refer to it",
        },
        "simulation": pooled["simulation"],
        "traits": pooled["traits"],
        "samples": {sample: samples[sample] for sample in share.samples},
    }
