"""Allele counts (AC, AN) per biallelic allele and sample group, as `bcftools norm -m- |
bcftools +fill-tags` counts them.

Groups are "all", then the sexes (when Phenopackets give them) and the populations. Samples alike
in every group form a class (e.g. female x CEU); the C kernel counts calls per class in one pass
over the genotypes, and classes are summed into groups, so the cost does not grow with the
number of groups.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from genofed.ingest import _calls
from genofed.ingest.vcf_records import ParsedRecords


def group_membership(samples: Sequence[str], sexes: Mapping[str, str] | None,
                     populations: Mapping[str, str]) -> tuple[list[str], np.ndarray]:
    """Allele-count groups and the (samples x groups) membership matrix. `sexes`: each sample's
    sex from its Phenopacket (None when there are none: no per-sex groups)."""
    names = ["all"]
    columns = [np.ones(len(samples), dtype=np.float32)]
    if sexes is not None:
        for sex in ("female", "male"):
            names.append(sex)
            columns.append(np.array([sexes.get(s) == sex for s in samples], dtype=np.float32))
    for label in sorted(set(populations.values())):
        names.append(f"pop_{label}")
        columns.append(np.array([populations.get(s) == label for s in samples], dtype=np.float32))
    return names, np.stack(columns, axis=1)


@dataclass(frozen=True)
class SampleClasses:
    """Samples grouped by the allele-count groups they belong to: counting per class and
    summing classes into groups touches each call once, whatever the groups."""

    of_sample: np.ndarray  # int32 per sample: its class
    groups: np.ndarray  # (classes x groups) int64 0/1: which groups a class belongs to


def sample_classes(membership: np.ndarray) -> SampleClasses:
    if membership.shape[0] == 0:
        return SampleClasses(np.empty(0, np.int32), np.ones((1, membership.shape[1]), np.int64))
    groups, of_sample = np.unique(membership, axis=0, return_inverse=True)
    return SampleClasses(of_sample.reshape(-1).astype(np.int32), groups.astype(np.int64))


def class_counts(genotypes: np.ndarray, classes: SampleClasses,
                 allele: int) -> tuple[np.ndarray, np.ndarray]:
    """Per record and group: calls of `allele`, and called alleles (int32 each)."""
    n, n_samples = genotypes.shape[:2]
    n_classes = len(classes.groups)
    counts = np.empty((n, n_classes, 2), dtype=np.int32)
    _calls.count_alleles(np.ascontiguousarray(genotypes), n_samples, classes.of_sample,
                         n_classes, counts, allele)
    return ((counts[:, :, 0] @ classes.groups).astype(np.int32),
            (counts[:, :, 1] @ classes.groups).astype(np.int32))


@dataclass(frozen=True)
class AlleleCounts:
    """Per biallelic row of a run of records: which record and allele it is, and AC / AN per
    group ((rows, groups) int32 each)."""

    record: np.ndarray  # int64: record index within the run
    allele: np.ndarray  # int8: allele index (0 when the record has no ALT)
    ac: np.ndarray
    an: np.ndarray


def allele_counts(records: ParsedRecords, classes: SampleClasses) -> AlleleCounts:
    """AC and AN per biallelic row and group; multi-allelic records are split as
    `bcftools norm -m-` splits them (one row per ALT; a record without ALT keeps one row)."""
    gt = records.genotypes
    n = len(records)
    groups = classes.groups.shape[1]
    n_alts = np.fromiter((len(a) - 1 for a in records.alleles), dtype=np.int32, count=n)
    rows_per_record = np.maximum(n_alts, 1)
    split_record = np.repeat(np.arange(n, dtype=np.int64), rows_per_record)
    starts = np.concatenate(([0], np.cumsum(rows_per_record)[:-1])).astype(np.int64)
    split_allele = (np.arange(len(split_record)) - np.repeat(starts, rows_per_record) + 1)
    split_allele[np.repeat(n_alts == 0, rows_per_record)] = 0
    if gt.shape[1] == 0 or n == 0:
        zeros = np.zeros((len(split_record), groups), dtype=np.int32)
        return AlleleCounts(split_record, split_allele.astype(np.int8), zeros, zeros.copy())
    ac_first, an_records = class_counts(gt, classes, allele=1)
    an = an_records[split_record]
    ac = ac_first[split_record]
    ac[split_allele == 0] = 0
    # Multi-allelic records: alleles 2, 3, ... each counted over the records that have them.
    for allele in range(2, int(n_alts.max(initial=0)) + 1):
        having = np.flatnonzero(n_alts >= allele)
        ac[starts[having] + allele - 1] = class_counts(gt[having], classes, allele)[0]
    return AlleleCounts(split_record, split_allele.astype(np.int8), ac, an)
