"""Disclosure control at a node, before anything of a job leaves it (DataSHIELD's rules, with the
node's own thresholds from `[analysis]` and `[disclosure]` in node.toml):

* at least `min_individuals` individuals (all the node's datasets in the job together);
* for a binary trait, cases and controls each at least the count floor;
* at most n/3 model parameters (intercept, covariates and the genotype);
* no differencing: a selection that differs from one this node contributed to an earlier job
  by fewer than `min_individuals` individuals (but not zero) is refused, so two jobs whose
  cohorts differ by one person cannot reveal that person's trait or genotypes (re-running the
  same cohort is allowed: it reveals nothing new).

Results are released only for variants whose pooled minor allele count reaches the larger of
the job's and the node's `min_mac`; each node checks it before revealing a variant's identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from genofed.analysis.data import Cohort, select
from genofed.analysis.spec import AnalysisType, JobSpec, principal_components
from genofed.analysis.state import JobStateError, NodeAnalysisState
from genofed.errors import GenofedError
from genofed.store.dataset import Dataset


class DisclosureRefusal(GenofedError):
    """The job would disclose more than this node allows; it contributes nothing."""


@dataclass(frozen=True)
class Selection:
    """A dataset's individuals a job uses at this node."""

    dataset: Dataset
    #: Genotype-store columns, ascending.
    columns: np.ndarray
    #: Hashed sample ids, sorted (the differencing check).
    hashed: np.ndarray
    populations: list[str | None]


def gwas_inputs(cohort: Cohort, spec: JobSpec, state: NodeAnalysisState,
                job: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(design with the intercept first, trait) for every individual of `cohort`: NaN where a
    value is missing (setup drops those individuals, as plink2 does)."""
    assert spec.trait is not None
    columns = [np.ones(len(cohort))]
    pcs = principal_components(spec.covariates)
    scores: np.ndarray | None = None
    if pcs:
        assert spec.pca_job is not None
        scores = _scores_for(cohort, state, spec.pca_job)
    for covariate in spec.covariates:
        if covariate.startswith("pc") and covariate[2:].isdigit():
            assert scores is not None
            number = int(covariate[2:])
            if number > scores.shape[1]:
                raise DisclosureRefusal(f"{covariate}: pca job {spec.pca_job} kept "
                                        f"{scores.shape[1]} components")
            columns.append(scores[:, number - 1])
        else:
            columns.append(cohort.covariate(covariate))
    return np.column_stack(columns), cohort.trait(spec.trait)


def _scores_for(cohort: Cohort, state: NodeAnalysisState, pca_job: str) -> np.ndarray:
    """This node's PCA scores of the cohort's individuals (NaN for those the PCA lacked)."""
    try:
        hashes, scores = state.scores(pca_job, cohort.dataset.id)
    except JobStateError as exc:
        raise DisclosureRefusal(str(exc)) from None
    own = NodeAnalysisState.hash_each(cohort.sample_ids)
    order = np.argsort(hashes)
    found = np.searchsorted(hashes[order], own)
    found = np.minimum(found, len(hashes) - 1)
    hit = hashes[order][found] == own
    out = np.full((len(cohort), scores.shape[1]), np.nan)
    out[hit] = scores[order][found[hit]]
    return out


def select_cohorts(spec: JobSpec, datasets: list[Dataset], state: NodeAnalysisState, job: str,
                   min_individuals: int, count_floor: int) -> list[Selection]:
    """The individuals each dataset contributes, after every rule above (else a refusal that
    says which rule, without saying more about the data than the rule's threshold)."""
    selections: list[Selection] = []
    cases = controls = 0
    for dataset in datasets:
        cohort = select(dataset, spec.cohort)
        if spec.type in (AnalysisType.LINEAR, AnalysisType.LOGISTIC):
            design, trait = gwas_inputs(cohort, spec, state, job)
            complete = ~np.isnan(trait) & ~np.isnan(design).any(axis=1)
            cohort = cohort.subset(complete)
            trait = trait[complete]
            if spec.type is AnalysisType.LOGISTIC:
                cases += int(trait.sum())
                controls += int(len(trait) - trait.sum())
        hashed = NodeAnalysisState.hashed(cohort.sample_ids)
        selections.append(Selection(dataset, cohort.columns, hashed, cohort.population))
    total = sum(len(s.columns) for s in selections)
    if total < min_individuals:
        raise DisclosureRefusal(f"the cohort here has fewer than {min_individuals} individuals "
                                "(the node's minimum for an analysis)")
    if spec.type is AnalysisType.LOGISTIC and min(cases, controls) < count_floor:
        raise DisclosureRefusal(f"cases and controls must each number at least {count_floor} "
                                "here")
    parameters = 2 + len(spec.covariates)  # intercept, covariates, genotype
    if spec.type in (AnalysisType.LINEAR, AnalysisType.LOGISTIC) and parameters > total / 3:
        raise DisclosureRefusal(f"{parameters} model parameters for {total} individuals: at "
                                "most one per three individuals")
    for selection in selections:
        smallest = state.smallest_new_cell(selection.dataset.id, selection.hashed, job)
        if smallest is not None and smallest < min_individuals:
            raise DisclosureRefusal(
                f"{selection.dataset.id}: together with the cohorts of earlier jobs here, this "
                f"one would set apart a group of fewer than {min_individuals} individuals "
                "(sums over the jobs could reveal them); choose a broader or the same cohort")
    return selections
