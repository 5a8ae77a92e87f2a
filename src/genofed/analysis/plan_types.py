"""The plan of each job type: the statistics steps it asks the nodes for, in order, and the result
files it writes from their pooled sums (the solvers are in the statistics modules)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from genofed.analysis import freq as freq_stats
from genofed.analysis import outputs
from genofed.analysis.plans import Plan, PlanError, Step, VariantTable, gwas_files

_VARIANT = ["chromosome", "base_pair_location", "ref", "alt"]


def _variant_cells(variants: VariantTable, row: int) -> list[object]:
    return [variants.contig[row].removeprefix("chr"), int(variants.pos[row]), variants.ref[row],
            variants.alt[row]]


class FreqPlan(Plan):
    """Genotype counts per variant for everyone, each sex and each population label the nodes
    report: allele frequencies (`plink2 --freq`), Hardy-Weinberg (`--hardy`) and missingness
    (`--missing`). One statistics step.

    A group is reported only when it pools at least the largest `min_individuals` of the nodes
    (a small group's counts are too close to its members' genotypes)."""

    def __init__(self, spec: Any, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(spec, n_variants, nodes)
        populations = sorted({p for n in nodes.values() for p in n.get("populations", [])})
        self.groups = ["all", "female", "male", *(f"pop:{p}" for p in populations)]
        self.counts: np.ndarray | None = None

    def expected_steps(self) -> int:
        return 1

    def next_step(self) -> Step | None:
        if self.counts is not None:
            return None
        return self._step("counts", extra={"groups": self.groups})

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        self.counts = summed["counts"].astype(np.int64)
        self._absorb_counts(self.counts)

    def write(self, directory: Path, variants: VariantTable,
              meta: dict[str, Any]) -> list[str]:
        assert self.counts is not None
        counts = self.counts[variants.indices]
        sizes = self.counts[0].sum(axis=-1) if len(self.counts) else np.zeros(len(self.groups))
        floor = max([int(n.get("minIndividuals", 0)) for n in self.nodes.values()] + [1])
        shown = [g for g, size in zip(range(len(self.groups)), sizes, strict=True)
                 if size >= floor]
        if 0 not in shown:
            raise PlanError("the pooled cohort is smaller than a node's minimum")
        table = freq_stats.frequencies(counts)
        order = outputs.genomic_order(variants.contig, variants.pos, variants.ref, variants.alt)
        rows: list[list[object]] = []
        for row in order:
            for group in shown:
                rows.append([*_variant_cells(variants, row), self.groups[group],
                             float(table.alt_freq[row, group]), int(table.alt_count[row, group]),
                             int(table.obs_count[row, group]),
                             *(int(c) for c in counts[row, group])])
        outputs.write_table(directory / "freq.tsv", [
            *_VARIANT, "group", "alt_freq", "alt_count", "obs_count", "hom_ref", "het",
            "hom_alt", "missing"], rows)
        hardy = freq_stats.hardy(counts[:, 0])
        outputs.write_table(directory / "hardy.tsv", [
            *_VARIANT, "hom_ref", "het", "hom_alt", "observed_het", "expected_het", "p_hwe"],
            [[*_variant_cells(variants, row), int(hardy.hom_ref[row]), int(hardy.het[row]),
              int(hardy.hom_alt[row]), float(hardy.observed_het[row]),
              float(hardy.expected_het[row]), float(hardy.p[row])]
             for row in order])
        missing = freq_stats.missingness(counts[:, 0])
        outputs.write_table(directory / "missing.tsv", [
            *_VARIANT, "missing_count", "obs_count", "f_miss"],
            [[*_variant_cells(variants, row), int(missing.missing_count[row]),
              int(missing.obs_count[row]), float(missing.f_miss[row])]
             for row in order])
        groups = [{"group": self.groups[g], "individuals": int(sizes[g])} for g in shown]
        outputs.write_yaml(directory / "freq-meta.yaml", {
            "analysis": "freq", "job": meta["job"], "network": meta["network"],
            "datasets": self._datasets(meta), "nodes": meta["participants"],
            "individuals": self._individuals(meta), "groups": groups,
            "groups_suppressed": [self.groups[g] for g in range(len(self.groups))
                                  if g not in shown],
            "variants_tested": self.n_variants, "variants_released": len(variants.indices),
            "min_mac": self.threshold(),
            "variants_lacked": {n: meta["nodes"][n].get("variantsLacked", 0)
                                for n in meta["participants"]}})
        return ["freq.tsv", "hardy.tsv", "missing.tsv", "freq-meta.yaml"]


class _GwasPlan(Plan):
    """Shared by the two GWAS types: a `counts` step first (the pooled minor allele count
    decides which variants are tested and released), then the regression steps."""

    def __init__(self, spec: Any, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(spec, n_variants, nodes)
        self.counted = False
        self.results: dict[str, np.ndarray] | None = None
        self.cases: int | None = None
        self.errors: dict[str, int] = {}

    def _counts_step(self) -> Step:
        return self._step("counts", extra={"groups": ["all"]})

    def _absorb_first(self, summed: dict[str, np.ndarray]) -> None:
        self._absorb_counts(summed["counts"])
        self.counted = True
        if not len(self.eligible):
            raise PlanError(f"no variant reaches the pooled minor allele count of "
                            f"{self.threshold()}: nothing to test")

    def write(self, directory: Path, variants: VariantTable,
              meta: dict[str, Any]) -> list[str]:
        assert self.results is not None and self.spec.trait is not None
        stem = "gwas-" + (self.spec.name or self.spec.trait.name.replace(":", "_"))
        dropped = {"below_min_mac": int(self.n_variants - len(self.eligible)),
                   "min_mac": self.threshold(), "not_estimable": self.errors,
                   "lacked_per_node": {n: meta["nodes"][n].get("variantsLacked", 0)
                                       for n in meta["participants"]},
                   "variants_tested": len(self.eligible)}
        return gwas_files(directory, stem, self.spec, variants, self.results, meta,
                          datasets=self._datasets(meta), individuals=self._individuals(meta),
                          cases=self.cases, dropped=dropped)


class LinearPlan(_GwasPlan):
    """`plink2 --glm` for a quantitative trait in one step: per-variant sums over the
    individuals with a called genotype, for every variant; their ALT dosage sums give the pooled
    minor allele counts that decide which variants the result releases (no counts step), and
    the coordinator solves every variant's regression."""

    def expected_steps(self) -> int:
        return 1

    def next_step(self) -> Step | None:
        if self.results is None:
            return self._step("linear")
        return None

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        from genofed.analysis import linear

        alt = summed["g_cross"][:, 0]
        observed = 2.0 * summed["count"]
        self.mac = np.rint(np.minimum(alt, observed - alt))
        self.eligible = np.flatnonzero(self.mac >= self.threshold())
        self.counted = True
        if not len(self.eligible):
            raise PlanError(f"no variant reaches the pooled minor allele count of "
                            f"{self.threshold()}: nothing to test")
        result = linear.solve_linear(summed, 1 + len(self.spec.covariates))
        if result.phenotype_error is not None:
            raise PlanError(f"plink2 would skip this phenotype: {result.phenotype_error}")
        keep = self.eligible
        self.results = {"beta": result.beta[keep], "se": result.se[keep], "p": result.p[keep],
                        "n": result.obs_count[keep], "freq": result.alt_freq[keep]}
        every = result.error_labels()
        labels = [every[i] for i in keep]
        self.errors = {label: labels.count(label) for label in sorted(set(labels))
                       if label != "."}


class PrsPlan(Plan):
    """A polygenic score's distribution: pooled moments (mean and SD per group), then
    histograms on edges around them; for a binary trait also cases and controls per score
    quantile (odds ratios against the lowest) and the AUC. No variant is released: each node
    matches the scoring file against its own data.

    Display cells below the largest count floor of the nodes are suppressed (written NA)."""

    GROUPS: ClassVar[list[str]] = ["all", "female", "male"]

    def __init__(self, spec: Any, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(spec, n_variants, nodes)
        self.eligible = np.empty(0, dtype=np.int64)
        self.edges: np.ndarray | None = None
        self.distribution: Any = None

    def expected_steps(self) -> int:
        return 2

    def next_step(self) -> Step | None:
        if self.edges is None:
            return self._step("moments", extra={"groups": self.GROUPS})
        if self.distribution is None:
            return self._step("histogram", arrays={"edges": self.edges},
                              extra={"groups": self.GROUPS})
        return None

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        from genofed.analysis import prs

        assert self.spec.prs is not None
        if self.edges is None:
            self.edges = prs.histogram_edges(summed, self.spec.prs.bins)
            return
        self.distribution = prs.combine_distribution(
            summed, self.edges, bins=self.spec.prs.bins, quantiles=self.spec.prs.quantiles)

    def floor(self) -> int:
        return max([int(n.get("countFloor", 0)) for n in self.nodes.values()] + [1])

    def write(self, directory: Path, variants: VariantTable,
              meta: dict[str, Any]) -> list[str]:
        assert self.distribution is not None and self.spec.prs is not None
        result, floor = self.distribution, self.floor()

        def shown(count: int) -> object:
            return count if count == 0 or count >= floor else "NA"

        edges = [-np.inf, *result.display_edges.tolist(), np.inf]
        rows: list[list[object]] = []
        for g, group in enumerate(self.GROUPS):
            for b in range(len(edges) - 1):
                rows.append([group, float(edges[b]), float(edges[b + 1]),
                             shown(int(result.histogram[g, b]))])
        outputs.write_table(directory / "prs-distribution.tsv",
                            ["group", "score_from", "score_to", "individuals"], rows)
        outputs.write_table(directory / "prs-summary.tsv", ["group", "individuals", "mean", "sd"],
                            [[group, shown(int(result.count[g])), float(result.mean[g]),
                              float(result.sd[g])] for g, group in enumerate(self.GROUPS)])
        files = ["prs-distribution.tsv", "prs-summary.tsv"]
        summary: dict[str, Any] = {
            "analysis": "prs", "job": meta["job"], "network": meta["network"],
            "datasets": self._datasets(meta), "nodes": meta["participants"],
            "individuals": self._individuals(meta), "score": "SCORE1_SUM (plink2 --score)",
            "suppressed_below": floor}
        scoring_id = _scoring_id(self.spec.prs.scoring_file)
        if scoring_id:
            summary["pgs_id"] = scoring_id
        if result.quantile_cases is not None:
            assert self.spec.trait is not None
            q_rows = []
            for q in range(len(result.quantile_cases)):
                cases, controls = int(result.quantile_cases[q]), int(result.quantile_controls[q])
                hidden = 0 < cases < floor or 0 < controls < floor
                q_rows.append([q + 1, float(result.quantile_edges[q]),
                               float(result.quantile_edges[q + 1]), shown(cases),
                               shown(controls),
                               *(("NA", "NA", "NA") if hidden else (
                                   float(result.odds_ratio[q]), float(result.or_lower[q]),
                                   float(result.or_upper[q])))])
            outputs.write_table(directory / "prs-quantiles.tsv", [
                "quantile", "score_from", "score_to", "cases", "controls", "odds_ratio",
                "ci_lower", "ci_upper"], q_rows)
            files.append("prs-quantiles.tsv")
            summary.update(trait=self.spec.trait.name, auc=float(result.auc),
                           auc_within=float(result.auc_bound))
        outputs.write_yaml(directory / "prs-meta.yaml", summary)
        plotted = result.histogram[0, 1:-1].copy()
        plotted[(plotted > 0) & (plotted < floor)] = 0     # suppressed cells stay hidden
        outputs.histogram_plot(directory / "prs-histogram.png", result.display_edges, plotted,
                               title=f"Polygenic score, everyone (cells below {floor} hidden)")
        return [*files, "prs-meta.yaml", "prs-histogram.png"]


def _scoring_id(text: str) -> str | None:
    for line in text.splitlines()[:50]:
        if line.startswith("#pgs_id="):
            return line.split("=", 1)[1].strip()
    return None


class LogisticPlan(_GwasPlan):
    """`plink2 --glm` for a binary trait: the counts step (with the cases as a second group,
    for the pooled case count), then Newton-Raphson rounds over every variant still fitting,
    with plink2's fallback to Firth regression (:class:`~genofed.analysis.logistic.
    LogisticSolver`; typically 5-25 rounds)."""

    def __init__(self, spec: Any, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(spec, n_variants, nodes)
        self.solver: Any = None

    def expected_steps(self) -> int:
        return 22

    def _counts_step(self) -> Step:
        return self._step("counts", extra={"groups": ["all", "case"]})

    def next_step(self) -> Step | None:
        if not self.counted:
            return self._counts_step()
        if self.results is not None:
            return None
        request = self.solver.request()
        if request is None:
            self._finish()
            return None
        return self._step("logistic", arrays={**request,
                                              "variants": self.eligible[request["variants"]]})

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        if not self.counted:
            from genofed.analysis import logistic

            self.cases = int(summed["counts"][0, 1].sum()) if len(summed["counts"]) else 0
            self._absorb_first(summed)
            self.solver = logistic.LogisticSolver(len(self.eligible),
                                                  1 + len(self.spec.covariates))
            return
        self.solver.absorb(summed)

    def _finish(self) -> None:
        result = self.solver.result()
        errors = np.asarray(result.error, dtype=str)
        estimated = np.isin(errors, ["", ".", "UNFINISHED"])
        flip = np.where(result.a1_is_ref, -1.0, 1.0)     # results for ALT, as GWAS-SSF has it
        with np.errstate(invalid="ignore", divide="ignore"):
            a1_freq = result.a1_count / (2.0 * result.obs_ct)
        self.results = {
            "beta": np.where(estimated, result.beta * flip, np.nan),
            "se": np.where(estimated, result.se, np.nan),
            "p": np.where(estimated, result.p, np.nan),
            "n": result.obs_ct,
            "freq": np.where(result.a1_is_ref, 1.0 - a1_freq, a1_freq)}
        self.errors = {label: int((errors == label).sum()) for label in sorted(set(errors))
                       if label not in ("", ".")}
        self.errors["firth_fallback"] = int(np.asarray(result.firth).sum())
        self.errors["rounds"] = int(result.rounds)


class PcaPlan(Plan):
    """Principal components (`plink2 --pca meanimpute`) over variants with pooled minor allele
    frequency at least `pca.minMaf`, thinned to one per `pca.minDistance` bp (their positions
    are revealed for that once their pooled counts allow it); a block Krylov iteration on the
    pooled variant-space matrix (:class:`~genofed.analysis.pca.PcaSolver`), then a last step in
    which each node computes and keeps its own individuals' scores (never sent)."""

    def __init__(self, spec: Any, n_variants: int, nodes: dict[str, dict[str, Any]]) -> None:
        super().__init__(spec, n_variants, nodes)
        self.counts: np.ndarray | None = None
        self.candidates = np.empty(0, dtype=np.int64)
        self.solver: Any = None
        self.result: Any = None
        self.scored = False

    def expected_steps(self) -> int:
        return 12

    def wants_positions(self) -> tuple[np.ndarray, np.ndarray] | None:
        if self.counts is not None and self.positions is None:
            return self.candidates, self.mac[self.candidates]
        return None

    def next_step(self) -> Step | None:
        if self.counts is None:
            return self._step("counts", extra={"groups": ["all"]})
        if self.solver is None:
            self._start()
        if self.result is None:
            request = self.solver.request()
            if request is not None:
                return self._step("pca", arrays={**request, "variants": self.eligible})
            self.result = self.solver.result()
        if not self.scored:
            assert self.counts is not None
            # Every variant's counts (missing calls included) cover every individual once.
            pooled = int(self.counts[0, 0, :].sum()) if len(self.counts) else 0
            return self._step("scores", arrays={
                "individuals": np.array([pooled], dtype=np.int64),
                "variants": self.eligible, "eigenvalues": self.result.eigenvalues,
                "loadings": self.result.loadings, "alt_freq": self.result.alt_freq,
                "alt_major": self.result.alt_major.astype(np.int64)})
        return None

    def absorb(self, summed: dict[str, np.ndarray]) -> None:
        if self.counts is None:
            self.counts = summed["counts"].astype(np.int64)
            self._absorb_counts(self.counts)
            everyone = self.counts[:, 0, :]
            observed = 2 * everyone[:, :3].sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                maf = self.mac / observed
            self.candidates = np.flatnonzero((self.mac >= self.threshold())
                                             & (maf >= self.spec.pca.min_maf))
            return
        if self.result is None:
            self.solver.absorb(summed)
            return
        self.scored = True

    def _start(self) -> None:
        """Thin the candidates by distance, then seed the solver with their pooled allele
        counts (the counts step already has them: no extra round)."""
        from genofed.analysis import pca

        assert self.positions is not None and self.counts is not None
        table = self.positions
        order = outputs.genomic_order(table.contig, table.pos, table.ref, table.alt)
        kept: list[int] = []
        last: dict[str, int] = {}
        for row in order:
            contig, pos = table.contig[row], int(table.pos[row])
            if contig in last and pos - last[contig] < self.spec.pca.min_distance:
                continue
            last[contig] = pos
            kept.append(int(table.indices[row]))
        self.eligible = np.array(sorted(kept), dtype=np.int64)
        components = self.spec.pca.components
        if len(self.eligible) < components:
            raise PlanError(f"{len(self.eligible)} variants pass the PCA filters, fewer than "
                            f"the {components} components asked for")
        self.solver = pca.PcaSolver(len(self.eligible), components)
        everyone = self.counts[self.eligible, 0, :]
        self.solver.request()
        self.solver.absorb({"alt_count": (everyone[:, 1] + 2 * everyone[:, 2]).astype(float),
                            "allele_count": (2 * everyone[:, :3].sum(axis=1)).astype(float)})

    def write(self, directory: Path, variants: VariantTable,
              meta: dict[str, Any]) -> list[str]:
        assert self.result is not None
        values = self.result.eigenvalues
        outputs.write_table(directory / "pca-eigenvalues.tsv", ["component", "eigenvalue"],
                            [[f"pc{i + 1}", float(v)] for i, v in enumerate(values)])
        order = outputs.genomic_order(variants.contig, variants.pos, variants.ref, variants.alt)
        position = {int(index): row for row, index in enumerate(self.eligible)}
        loadings = self.result.loadings
        outputs.write_table(
            directory / "pca-loadings.tsv",
            [*_VARIANT, "allele", *(f"pc{i + 1}" for i in range(len(values)))],
            [[*_variant_cells(variants, row),
              variants.ref[row] if self.result.alt_major[position[int(variants.indices[row])]]
              else variants.alt[row],
              *(float(w) for w in loadings[position[int(variants.indices[row])]])]
             for row in order])
        outputs.write_yaml(directory / "pca-meta.yaml", {
            "analysis": "pca", "job": meta["job"], "network": meta["network"],
            "datasets": self._datasets(meta), "nodes": meta["participants"],
            "individuals": self._individuals(meta), "components": len(values),
            "variants": len(self.eligible), "min_maf": self.spec.pca.min_maf,
            "min_distance": self.spec.pca.min_distance, "min_mac": self.threshold(),
            "rounds": int(self.result.rounds), "converged": bool(self.result.converged),
            "method": "plink2 --pca meanimpute (variance-standardised dosages, missing "
                      "calls at the mean); loadings as plink2 biallelic-var-wts, for the "
                      "minor allele ('allele' column)",
            "scores": "kept at each node for its own individuals, in standard deviations "
                      "(plink2's .eigenvec times the square root of the individuals): "
                      "covariates pc1..pcN of later GWAS jobs with pcaJob set to this job"})
        outputs.scree_plot(directory / "pca-eigenvalues.png", values)
        return ["pca-eigenvalues.tsv", "pca-loadings.tsv", "pca-meta.yaml", "pca-eigenvalues.png"]
