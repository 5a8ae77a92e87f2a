"""What a node computes in each step of each job type: the glue between the protocol
(:mod:`.node`), its data (:mod:`.data`) and the statistics modules. A node holding several of a
job's datasets contributes the sum over them."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np

from genofed.analysis import harmonise
from genofed.analysis.data import Cohort, Dosages, dosages, select
from genofed.analysis.disclosure import gwas_inputs
from genofed.analysis.protocol import RoundRequest
from genofed.analysis.scheduling import computing_on
from genofed.analysis.spec import AnalysisType, JobSpec
from genofed.analysis.state import NodeAnalysisState
from genofed.config.node import NodeConfig
from genofed.errors import FederationError
from genofed.store.dataset import Dataset
from genofed.store.sites import normalize_contig

Statistics = dict[str, np.ndarray]


class StepError(FederationError):
    """A round asks for a step this job type does not have, or lacks its inputs."""


# -- variants ----------------------------------------------------------------------------------
def variant_tokens(state: NodeAnalysisState, job: str, key: bytes, spec: JobSpec,
                   datasets: list[Dataset]) -> np.ndarray:
    """The tokens of every variant of the node's datasets in the job (unique, sorted). Each
    dataset's tokens and their sites-table rows are kept with the job, for the later rounds."""
    found = []
    for dataset in datasets:
        keys, rows = harmonise.site_keys(dataset)
        tokens = harmonise.tokens(key, spec.assembly, keys)
        state.save_arrays(job, dataset.id, tokens=tokens, token_rows=rows)
        found.append(tokens)
    return harmonise.union(found) if found else np.empty(0, dtype=harmonise.TOKEN_DTYPE)


def remember_variant_order(state: NodeAnalysisState, job: str, datasets: list[Dataset],
                           union: np.ndarray) -> None:
    """Save, per dataset, the sites-table row of each variant of the job's order (-1: lacks)."""
    for dataset in datasets:
        saved = state.arrays(job, dataset.id)
        index = harmonise.positions(union, saved["tokens"])
        rows = saved["token_rows"]
        state.save_arrays(job, dataset.id, rows=np.where(index >= 0, rows[np.maximum(index, 0)],
                                                          -1))


def reveal(state: NodeAnalysisState, job: str, datasets: list[Dataset],
           wanted: np.ndarray) -> dict[str, np.ndarray]:
    """(contig, pos, ref, alt) of each `wanted` token this node holds; `held` says which."""
    found: list[harmonise.VariantKey | None] = [None] * len(wanted)
    for dataset in datasets:
        saved = state.arrays(job, dataset.id)
        index = harmonise.positions(wanted, saved["tokens"])
        names = dataset.site_contigs
        codes = dataset.site_column("contig")
        pos = dataset.site_column("pos")
        ref, alt = dataset.site_strings("ref"), dataset.site_strings("alt")
        for i in np.flatnonzero(index >= 0):
            if found[i] is None:
                row = int(saved["token_rows"][index[i]])
                found[i] = harmonise.variant_key(normalize_contig(names[codes[row]]),
                                                 int(pos[row]), str(ref[row]), str(alt[row]))
    return {"held": np.array([v is not None for v in found], dtype=bool),
            "contig": np.array([v[0] if v else "" for v in found], dtype=str),
            "pos": np.array([v[1] if v else 0 for v in found], dtype=np.int64),
            "ref": np.array([v[2] if v else "" for v in found], dtype=str),
            "alt": np.array([v[3] if v else "" for v in found], dtype=str)}


# -- statistics --------------------------------------------------------------------------------
def compute_on(config: NodeConfig) -> contextlib.AbstractContextManager[None]:
    """Dask's local threads, or the cluster `analysis.scheduler` names."""
    return computing_on(config.analysis.scheduler)


def job_cohort(state: NodeAnalysisState, job: str, spec: JobSpec, dataset: Dataset) -> Cohort:
    """The individuals setup selected for this dataset (the same ones, every round)."""
    cohort = select(dataset, spec.cohort)
    columns = state.arrays(job, dataset.id)["columns"]
    return cohort.subset(np.isin(cohort.columns, columns))


@dataclass(frozen=True)
class StoreOrder:
    """The variants a round asks about, as the store holds them. A job's variant order follows
    its keyed tokens, a random order of the store's rows: read in it, every block of variants
    would touch every chunk of the store. So the node reads and computes in store order and puts
    per-variant results back in the job's."""

    #: The asked variants' positions, sorted by store row (rows the dataset lacks last).
    order: np.ndarray
    inverse: np.ndarray

    def to_store(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values[self.order])

    def to_job(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values[self.inverse])


def job_dosages(state: NodeAnalysisState, job: str, cohort: Cohort,
                variants: np.ndarray | None = None) -> tuple[Dosages, StoreOrder]:
    """The cohort's dosages of the job's variants (or the `variants` of its order given), in
    store order, and that order."""
    rows = state.arrays(job, cohort.dataset.id)["rows"]
    if variants is not None:
        rows = rows[variants]
    order = np.argsort(np.where(rows >= 0, rows, np.iinfo(np.int64).max), kind="stable")
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))
    return dosages(cohort, rows[order]), StoreOrder(order, inverse)


def node_statistics(state: NodeAnalysisState, request: RoundRequest, spec: JobSpec,
                    datasets: list[Dataset],
                    config: NodeConfig) -> tuple[Statistics, dict[str, int]]:
    """This node's statistics for the round's step (the sum over its datasets), and the
    fixed-point fraction bits of fields that need other than the default."""
    total: Statistics = {}
    with compute_on(config):
        for dataset in datasets:
            cohort = job_cohort(state, request.job, spec, dataset)
            part = _dataset_statistics(state, request, spec, cohort)
            for name, values in part.items():
                total[name] = values if name not in total else total[name] + values
    return total, fraction_bits(spec, request.step)


def fraction_bits(spec: JobSpec, step: str) -> dict[str, int]:
    """Fields whose values are small (PCA bases, logistic Firth terms) carry more fraction
    bits; the rest the default (enough for 1e-9 relative precision of sums above ~400)."""
    return {}


def _dataset_statistics(state: NodeAnalysisState, request: RoundRequest, spec: JobSpec,
                        cohort: Cohort) -> Statistics:
    step, arrays = request.step, request.arrays
    variants = arrays.get("variants")
    if spec.type is AnalysisType.FREQ or step == "counts":
        from genofed.analysis import freq

        groups = group_matrix(cohort, request.extra.get("groups", ["all"]), spec)
        dose, order = job_dosages(state, request.job, cohort, variants)
        return {"counts": order.to_job(freq.genotype_counts(dose, groups))}
    if spec.type is AnalysisType.LINEAR:
        from genofed.analysis import linear

        design, trait = gwas_inputs(cohort, spec, state)
        dose, order = job_dosages(state, request.job, cohort, variants)
        stats = linear.linear_statistics(dose, design, trait)
        return {name: value if name == "design_gram" else order.to_job(value)
                for name, value in stats.items()}
    if spec.type is AnalysisType.LOGISTIC:
        return _logistic_step(state, request, spec, cohort)
    if spec.type is AnalysisType.PCA:
        return _pca_step(state, request, cohort)
    if spec.type is AnalysisType.PRS:
        return _prs_step(request, spec, cohort)
    raise StepError(f"job type {spec.type} has no step {step!r}")


def group_matrix(cohort: Cohort, groups: list[str], spec: JobSpec | None = None) -> np.ndarray:
    """(groups, individuals) membership: "all", "female", "male", "pop:<label>", and "case"
    (the job's binary trait)."""
    rows = []
    for group in groups:
        if group == "all":
            rows.append(np.ones(len(cohort), dtype=bool))
        elif group == "case":
            if spec is None or spec.trait is None or not spec.trait.binary:
                raise StepError("the case group needs a binary trait")
            rows.append(cohort.trait(spec.trait) == 1.0)
        elif group in ("female", "male"):
            rows.append(cohort.sex == (2.0 if group == "female" else 1.0))
        elif group.startswith("pop:"):
            rows.append(np.array([p == group[4:] for p in cohort.population], dtype=bool))
        else:
            raise StepError(f"unknown group {group!r}")
    return np.array(rows, dtype=bool).reshape(len(groups), len(cohort))


def _logistic_step(state: NodeAnalysisState, request: RoundRequest, spec: JobSpec,
                   cohort: Cohort) -> Statistics:
    """Per-variant inputs (coefficients, Firth phase) go to store order and the sums come back
    in the job's; the Firth-only sums (loglik, third) are over the Firth variants in order."""
    from genofed.analysis import logistic

    arrays = request.arrays
    design, trait = gwas_inputs(cohort, spec, state)
    dose, order = job_dosages(state, request.job, cohort, arrays["variants"])
    asked = {**arrays, "variants": np.arange(len(arrays["variants"])),
             "coef": order.to_store(arrays["coef"]), "firth": order.to_store(arrays["firth"])}
    stats = logistic.logistic_statistics(dose, design, trait, asked)
    firth = np.flatnonzero(asked["firth"].astype(bool))          # store positions
    firth_order = np.argsort(order.order[firth], kind="stable")  # -> the job's order
    return {name: value[firth_order] if name in ("loglik", "third") else order.to_job(value)
            for name, value in stats.items()}


def _pca_step(state: NodeAnalysisState, request: RoundRequest, cohort: Cohort) -> Statistics:
    from genofed.analysis import pca

    arrays = request.arrays
    dose, order = job_dosages(state, request.job, cohort, arrays["variants"])
    if request.step == "scores":
        result = pca.PcaResult(eigenvalues=arrays["eigenvalues"],
                               loadings=order.to_store(arrays["loadings"]),
                               alt_freq=order.to_store(arrays["alt_freq"]),
                               alt_major=order.to_store(arrays["alt_major"]).astype(bool),
                               rounds=0, converged=True)
        # Kept in standard deviations: plink2's eigenvectors have unit norm, entries ~1/sqrt(N),
        # and beside an age covariate they fail plink2's scale check (which asks for
        # --covar-variance-standardize). One factor for every node: the model is unchanged.
        pooled = arrays.get("individuals")
        scale = float(np.sqrt(pooled[0])) if pooled is not None and pooled[0] > 0 else 1.0
        state.save_scores(request.job, cohort.dataset.id,
                          NodeAnalysisState.hash_each(cohort.sample_ids),
                          pca.pca_scores(dose, result) * scale)
        return {"individuals": np.array([len(cohort)], dtype=np.int64)}
    asked = {name: order.to_store(value) for name, value in arrays.items()
             if name in ("freq", "basis")}
    if "counts" in arrays:
        asked["counts"] = arrays["counts"]
    return {name: order.to_job(value) for name, value in pca.pca_statistics(dose, asked).items()}


def _prs_step(request: RoundRequest, spec: JobSpec, cohort: Cohort) -> Statistics:
    """Every individual's score as `plink2 --score` computes it on this dataset (SCORE1_SUM);
    only their distribution leaves: moments first, then histograms on the pooled edges."""
    from genofed.analysis import prs

    assert spec.prs is not None
    scoring = prs.parse_scoring_file(spec.prs.scoring_file)
    build = _ASSEMBLIES.get((scoring.genome_build or "").lower())
    if build is not None and build != spec.assembly:
        raise StepError(f"the scoring file's positions are on {build}, the job's on "
                        f"{spec.assembly}")
    matched = prs.match_variants(cohort.dataset, scoring)
    scores = prs.individual_scores(dosages(cohort, matched.rows), matched.effect_is_alt,
                                   scoring.weight).score_sum
    groups = group_matrix(cohort, request.extra.get("groups", ["all"]))
    edges = request.arrays.get("edges")
    trait = None
    if edges is not None and spec.trait is not None and spec.trait.binary:
        trait = cohort.trait(spec.trait)
    return prs.distribution_statistics(scores, groups, edges=edges, trait=trait)


#: How PGS Catalog headers name builds.
_ASSEMBLIES = {"grch37": "GRCh37", "hg19": "GRCh37", "grch38": "GRCh38", "hg38": "GRCh38"}
