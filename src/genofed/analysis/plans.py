"""The coordinator's side of each job type: which statistics step comes next, what to do with
their sum, which variants the result releases, and the result files.

Every plan starts with a `counts` step (genotype counts of the whole cohort per variant) unless
the job needs no variants (a polygenic score): the pooled minor allele count decides which
variants a GWAS or PCA goes on with and which the result may release, so nodes spend no work
(and the result shows nothing) on variants too rare to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from genofed.analysis import harmonise, outputs
from genofed.analysis.spec import AnalysisType, JobSpec
from genofed.errors import AggregationError, FederationError


class PlanError(FederationError):
    """The pooled statistics do not allow the job to go on (e.g. nothing to release)."""


@dataclass
class Step:
    """A statistics step the coordinator broadcasts."""

    name: str
    number: int
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    #: The first statistics step of an attempt carries the job's variant order.
    first: bool = False


@dataclass
class VariantTable:
    """The released variants: their place in the job's order and what they are."""

    indices: np.ndarray
    contig: list[str]
    pos: np.ndarray
    ref: list[str]
    alt: list[str]

    @classmethod
    def merge(cls, indices: np.ndarray, replies: dict[str, dict[str, np.ndarray]]) -> VariantTable:
        """One table from every node's reveal, checked: every released variant revealed by some
        node, and the nodes agreeing on what each is (else the nodes disagree on the job key)."""
        revealed: dict[str, list[harmonise.VariantKey | None]] = {}
        for node, reply in replies.items():
            if len(reply["held"]) != len(indices):
                raise PlanError(f"{node} revealed {len(reply['held'])} variants of "
                                f"{len(indices)}")
            revealed[node] = [
                (str(c), int(p), str(r), str(a)) if held else None
                for held, c, p, r, a in zip(reply["held"].tolist(), reply["contig"].tolist(),
                                            reply["pos"].tolist(), reply["ref"].tolist(),
                                            reply["alt"].tolist(), strict=True)]
        try:
            variants = harmonise.agree(revealed) if len(indices) else []
        except AggregationError as exc:
            raise PlanError(f"the nodes' reveal does not agree: {exc}") from None
        return cls(indices, [v[0] for v in variants],
                   np.array([v[1] for v in variants], dtype=np.int64),
                   [v[2] for v in variants], [v[3] for v in variants])


class Plan:
    """Base: `next_step` / `absorb` until `next_step` is None, then `to_reveal` and `write`."""

    def __init__(self, spec: JobSpec, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        self.spec = spec
        self.n_variants = n_variants
        self.nodes = nodes
        self.number = 0
        self.eligible = np.arange(n_variants)
        self.mac = np.zeros(n_variants)
        self.positions: VariantTable | None = None

    def describe(self) -> str:
        return f"{self.spec.type.value}: step {self.number}"

    def _step(self, name: str, **kwargs: Any) -> Step:
        self.number += 1
        return Step(name, self.number, first=self.number == 1, **kwargs)

    def expected_steps(self) -> int:
        """About how many statistics steps the job takes (for progress bars)."""
        return 2

    def next_step(self) -> Step | None:
        raise NotImplementedError

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def wants_positions(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Variants whose positions the plan needs before its next step (None: none)."""
        return None

    def to_reveal(self) -> tuple[np.ndarray, np.ndarray]:
        """(indices in the job's order, their pooled minor allele counts) to release."""
        return self.eligible, self.mac[self.eligible]

    def write(self, directory: Path, variants: VariantTable,
              meta: dict[str, Any]) -> list[str]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def _absorb_counts(self, counts: np.ndarray) -> None:
        """Pooled counts (variants, groups, 4) of the whole cohort (group 0): minor allele
        counts, and the variants that reach the release threshold."""
        everyone = counts[:, 0, :].astype(np.int64)
        alt = everyone[:, 1] + 2 * everyone[:, 2]
        observed = 2 * (everyone[:, 0] + everyone[:, 1] + everyone[:, 2])
        self.mac = np.minimum(alt, observed - alt).astype(np.float64)
        self.eligible = np.flatnonzero(self.mac >= self.threshold())

    def threshold(self) -> int:
        nodes = [int(n.get("minMac", 0)) for n in self.nodes.values()]
        return max([self.spec.min_mac, *nodes])

    def _datasets(self, meta: dict[str, Any]) -> list[str]:
        return sorted({d for node in meta["participants"]
                       for d in meta["nodes"][node].get("datasets", [])})

    def _individuals(self, meta: dict[str, Any]) -> int:
        return sum(int(meta["nodes"][n].get("individuals", 0)) for n in meta["participants"])


def make_plan(spec: JobSpec, n_variants: int, nodes: dict[str, dict[str, Any]]) -> Plan:
    """The plan of a job type (a fresh one: a new attempt starts over)."""
    from genofed.analysis import plan_types

    kinds: dict[AnalysisType, str] = {
        AnalysisType.FREQ: "FreqPlan", AnalysisType.LINEAR: "LinearPlan",
        AnalysisType.LOGISTIC: "LogisticPlan", AnalysisType.PCA: "PcaPlan",
        AnalysisType.PRS: "PrsPlan"}
    kind: type[Plan] = getattr(plan_types, kinds[spec.type])
    return kind(spec, n_variants, nodes)


def gwas_files(directory: Path, stem: str, spec: JobSpec, variants: VariantTable,
               results: dict[str, np.ndarray], meta: dict[str, Any], *, datasets: list[str],
               individuals: int, cases: int | None, dropped: dict[str, Any]) -> list[str]:
    """GWAS-SSF, its metadata and the two plots for a GWAS result (rows aligned with
    `variants`)."""
    assert spec.trait is not None
    data = directory / f"{stem}.tsv"
    binary = spec.type is AnalysisType.LOGISTIC
    outputs.write_gwas_ssf(data, contig=variants.contig, pos=variants.pos, ref=variants.ref,
                           alt=variants.alt, beta=results["beta"], se=results["se"],
                           freq=results["freq"], p=results["p"], n=results["n"],
                           odds_ratio=binary)
    trait = spec.trait.name
    outputs.write_gwas_meta(
        data, trait=trait, trait_description=f"{trait} ({'binary' if binary else 'quantitative'})",
        datasets=datasets, covariates=spec.covariates, sample_size=individuals, cases=cases,
        assembly=spec.assembly, analysis=spec.type.value,
        extra={"cohort": spec.cohort.model_dump(by_alias=True, exclude_none=True),
               "nodes": meta["participants"], "variants_dropped": dropped,
               "job": meta["job"], "network": meta["network"]})
    plots = outputs.manhattan_and_qq(directory / stem, contig=variants.contig,
                                     pos=variants.pos, p=results["p"], title=trait)
    return [data.name, data.name + "-meta.yaml", *(p.name for p in plots)]
