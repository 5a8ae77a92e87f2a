"""Beacon answers below record level as counts for the exposure ledger
(:mod:`genofed.access.exposure`). Boolean answers, open to anyone, may only use an individual's
public share of the budget (`disclosure.public_exposure_budget`); counts, for accountable
researchers, the whole of it.

g_variants: each matched allele is one fact, its allele count (no filters: carriers add their
dosage, over 2n alleles) or its count of carriers among the selected individuals (filters: over
n individuals). A boolean answer discloses whether that count reaches the floor; a count answer
(registered callers) whether it is 0, between 1 and floor - 1 (a rare allele: imprecise), or at
least the floor. individuals / biosamples with variant conditions: one fact, the number of
selected individuals who carry any matched allele. Individuals who have spent their allowance
are taken out of every count first, free answers included.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from genofed.access.exposure import CountFact, ExposureLedger, Outcome, Released, free
from genofed.beacon.request import Granularity
from genofed.store.dataset import Dataset

_STEP = 20_000  # variants per genotype block read


def reaches(threshold: int) -> Callable[[int], Outcome]:
    """What a boolean answer discloses: the count reaches `threshold`, or not."""
    def disclose(count: int) -> Outcome:
        return Outcome(threshold) if count >= threshold else Outcome(0, threshold - 1)
    return disclose


def banded(floor: int) -> Callable[[int], Outcome]:
    """What a registered caller's variant count discloses per allele: absent, rare (between 1
    and floor - 1) or at least the floor."""
    def disclose(count: int) -> Outcome:
        if count == 0:
            return Outcome(0, 0)
        return Outcome(1, floor - 1) if count < floor else Outcome(floor)
    return disclose


def people_count(floor: int, granularity: Granularity) -> Callable[[int], Outcome]:
    """What a count of people discloses: exact at or above the floor, else "between 1 and floor
    - 1" (count granularity) — or, at boolean granularity, only whether anyone matches."""
    def disclose(count: int) -> Outcome:
        if count == 0:
            return Outcome(0, 0)
        if granularity is Granularity.BOOLEAN:
            return Outcome(1)
        return Outcome(count, count) if count >= floor else Outcome(1, floor - 1)
    return disclose


def _key(*parts: object) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()


def _selection_digest(selection: np.ndarray | None) -> str:
    if selection is None:
        return "all"
    return hashlib.sha256(np.packbits(selection).tobytes()).hexdigest()[:32]


def release_variants(ledger: ExposureLedger, dataset: Dataset, rows: pa.Table,
                     selection: np.ndarray | None, support: np.ndarray,
                     disclose: Callable[[int], Outcome], label: str,
                     limit: float | None = None) -> np.ndarray:
    """Per matched allele (row of `rows`), the count the answer may use: `support` (allele
    counts, or carriers among `selection`) without the individuals who have spent their
    allowance, then without the carriers whose budget cannot pay. Genotypes are read only for
    alleles whose answer is informative (and, once someone's allowance is spent, theirs)."""
    shown = support.astype(np.int64).copy()
    if ledger.budget <= 0 or rows.num_rows == 0:
        return shown
    individuals = int(selection.sum()) if selection is not None else dataset.manifest.n_samples
    by_carriers = selection is not None
    trials, per = (individuals, 1) if by_carriers else (2 * individuals, 2)
    variant_index = rows.column("variant_index").to_numpy()
    allele_index = rows.column("allele_index").to_numpy()
    samples = np.asarray(dataset.samples, dtype=object)
    gone = _exhausted(ledger, samples, ledger.allowance(limit))
    if gone is not None:
        shown = _without(dataset, variant_index, allele_index, selection, shown, gone)
    informative = ~free(disclose, shown, trials, per)
    if gone is not None:  # an answer given before they were gone is repeated unchanged
        informative |= ~free(disclose, support, trials, per)
    informative = np.flatnonzero(informative)
    if len(informative) == 0:
        return shown
    digest = _selection_digest(selection)
    keys = {int(row): _key(dataset.id, dataset.version, label, variant_index[row],
                           allele_index[row], digest) for row in informative}
    # Answers given before are repeated without reading a genotype.
    known = ledger.remembered(list(keys.values()))
    for position, key in keys.items():
        if key in known:
            shown[position] = known[key]
    informative = np.array([position for position, key in keys.items() if key not in known],
                           dtype=np.int64)
    if len(informative) == 0:
        return shown
    facts = []
    for lo in range(0, len(informative), _STEP):
        chunk = informative[lo:lo + _STEP]
        block = dataset.genotype_block(variant_index[chunk])
        for j, row in enumerate(chunk):
            dosage = (block.calls[j] == allele_index[row]).sum(axis=1)
            if selection is not None:
                dosage = np.where(selection, np.minimum(dosage, 1), 0)
            if gone is not None:
                dosage = np.where(gone, 0, dosage)
            carriers = np.flatnonzero(dosage)
            facts.append(CountFact(
                key=keys[int(row)],
                individuals=[str(s) for s in samples[carriers]],
                units=dosage[carriers].astype(np.int64), trials=trials, per_individual=per,
                disclose=disclose))
    for row, answer in zip(informative, ledger.release(facts, limit, checked=True),
                           strict=True):
        shown[row] = answer.count
    return shown


def _exhausted(ledger: ExposureLedger, samples: np.ndarray,
               allowance: float) -> np.ndarray | None:
    """Which of `samples` have spent `allowance` (None: no one). An allowance of 0 (open
    answers that may include no one they depend on) leaves everyone in the answers that depend
    on no single carrier."""
    if allowance <= 0:
        return None
    names = ledger.exhausted(allowance)
    if not names:
        return None
    gone = np.isin(samples, np.array(sorted(names), dtype=object))
    return gone if gone.any() else None


def _without(dataset: Dataset, variant_index: np.ndarray, allele_index: np.ndarray,
             selection: np.ndarray | None, support: np.ndarray,
             gone: np.ndarray) -> np.ndarray:
    """`support` (allele counts, or carriers among `selection`) without the individuals
    `gone`: every answer is then what the dataset without them would give."""
    out = support.copy()
    rows = np.flatnonzero(support > 0)
    names = [str(s) for s in np.asarray(dataset.samples, dtype=object)[gone]]
    for lo in range(0, len(rows), _STEP):
        chunk = rows[lo:lo + _STEP]
        block = dataset.genotype_block(variant_index[chunk], names)
        dosage = (block.calls == allele_index[chunk][:, None, None]).sum(axis=2)
        if selection is not None:
            dosage = np.where(selection[gone][None, :], np.minimum(dosage, 1), 0)
        out[chunk] -= dosage.sum(axis=1)
    return out


def release_people(ledger: ExposureLedger, dataset: Dataset, rows: pa.Table,
                   selection: np.ndarray, carrying: np.ndarray,
                   disclose: Callable[[int], Outcome], label: str,
                   limit: float | None = None) -> Released:
    """The number of selected individuals carrying any allele of `rows` (`carrying`: per
    individual), without the carriers whose budget cannot pay."""
    chosen = np.flatnonzero(selection & carrying)
    samples = np.asarray(dataset.samples, dtype=object)
    alleles = sorted(zip(rows.column("variant_index").to_pylist(),
                         rows.column("allele_index").to_pylist(), strict=True))
    fact = CountFact(
        key=_key(dataset.id, dataset.version, label, alleles, _selection_digest(selection)),
        individuals=[str(s) for s in samples[chosen]], units=np.ones(len(chosen), np.int64),
        trials=int(selection.sum()), per_individual=1, disclose=disclose)
    return ledger.release([fact], limit)[0]
