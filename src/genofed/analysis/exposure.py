"""What a federated analysis reveals about each individual, spent from the same budgets as the
Beacon's answers (:mod:`genofed.access.exposure`).

A released result (a frequency, an effect size) pins down the pooled count of the variant's
minor allele, and an exact count c is membership evidence about each carrier: with the others'
count Poisson around c - d, log P(c | member with d copies) - log P(c | not a member) =
log(c! / (c - d)!) - d log(c - d). Each individual in a job's cohort pays the sum over the
released variants they carry, once per job, when the node reveals which variants those are.
Results are not withheld for it — the caller holds record-level grants and the pooled result
must equal plink2's — but what a published result exposes counts against the person's budget,
so the Beacon tells less about them afterwards: the network is no way around the budgets.
"""

from __future__ import annotations

import dask.array as da
import numpy as np

from genofed.access.exposure import ExposureLedger
from genofed.analysis import harmonise
from genofed.analysis.data import dosages
from genofed.analysis.scheduling import compute
from genofed.analysis.spec import JobSpec
from genofed.analysis.state import NodeAnalysisState
from genofed.analysis.steps import job_cohort
from genofed.store.dataset import Dataset


def count_evidence(count: np.ndarray, copies: int) -> np.ndarray:
    """Evidence (nats) about a carrier of `copies` minor alleles of an exact pooled `count`."""
    c = np.maximum(np.asarray(count, dtype=np.float64), copies + 1.0)
    others = c - copies
    evidence = -copies * np.log(others)
    for k in range(copies):
        evidence += np.log(c - k)
    return np.asarray(np.maximum(evidence, 0.0))


def release_charges(state: NodeAnalysisState, job: str, spec: JobSpec,
                    datasets: list[Dataset], tokens: np.ndarray,
                    minor_counts: np.ndarray) -> dict[str, float]:
    """Per individual (sample id) of the job's cohorts: the evidence the released variants
    (`tokens`, with their pooled minor allele counts) give about them."""
    charges: dict[str, float] = {}
    for dataset in datasets:
        saved = state.arrays(job, dataset.id)
        index = harmonise.positions(tokens, saved["tokens"])
        held = index >= 0
        if not held.any():
            continue
        rows = saved["token_rows"][index[held]].astype(np.int64)
        counts = minor_counts[held]
        cohort = job_cohort(state, job, spec, dataset)
        codes = dosages(cohort, rows).codes
        assert codes is not None
        # The minor allele here is the one rarer at this node (the pooled count is of the
        # minor allele; a node cannot tell better without another round).
        alt_share = da.where(codes >= 0, codes, 0).sum(axis=1) / (
            2 * da.maximum((codes >= 0).sum(axis=1), 1))
        flip = (alt_share > 0.5)[:, None]
        minor = da.where(codes < 0, -1, da.where(flip, 2 - codes, codes))
        one, two = count_evidence(counts, 1), count_evidence(counts, 2)
        (paid,) = compute((minor == 1).astype(np.float64).T @ one
                          + (minor == 2).astype(np.float64).T @ two)
        for sample, charge in zip(cohort.sample_ids, np.asarray(paid), strict=True):
            if charge > 0:
                charges[sample] = charges.get(sample, 0.0) + float(charge)
    return charges


def spend_for_release(ledger: ExposureLedger, state: NodeAnalysisState, job: str,
                      spec: JobSpec, datasets: list[Dataset], tokens: np.ndarray,
                      minor_counts: np.ndarray) -> None:
    """Charge the job's individuals for its released variants, once however often the
    coordinator asks for the reveal."""
    if ledger.budget <= 0 or not len(tokens):
        return
    charges = release_charges(state, job, spec, datasets, tokens, minor_counts)
    ledger.spend_once(f"analysis|{job}", charges)
