"""Polygenic scores: a PGS Catalog scoring file applied at each node, each individual's score
equal to `plink2 --score` (v2.00a3.5) run on that node's own data; only the scores'
distribution leaves the node.

Scoring (node side) mirrors `ScoreReport` (plink2_matrix_calc.cc) with its defaults:

* a scoring-file variant the dataset does not hold, or whose alleles do not match, is skipped
  (plink2: "skipped due to a missing variant ID / mismatching allele code"): it adds nothing to
  any score or denominator;
* a missing call is mean-imputed: it contributes 2 x weight x the effect allele's frequency
  among the dataset's selected individuals (plink2 imputes from the frequencies of the loaded
  founders, without pseudocounts);
* SCORE1_SUM is the sum; SCORE1_AVG divides it by DENOM = 2 x the number of variants used
  (the same for everyone, since missing calls are imputed); ALLELE_CT is DENOM less 2 per
  missing call; NAMED_ALLELE_DOSAGE_SUM sums the observed effect-allele copies.

A variant the dataset holds but has no call for at all imputes 0 here (plink2 would impute
from an undefined frequency).

Calls are diploid (autosomes): plink2's haploid handling of chrX, chrY and MT is not mirrored.

The distribution leaves in two rounds (:func:`distribution_statistics`, summed across nodes):
moments first (count, sum, sum of squares per group); the coordinator derives bin edges from
the pooled mean and SD (:func:`histogram_edges`); then histograms on those edges per group and,
for a binary trait, per case/control status. :func:`combine_distribution` gives the mean and
SD, the histogram, odds ratios per score quantile against the lowest (Wald 95% CI) and the AUC.
Quantile groups and the AUC come from the fine histogram (every display bin split in
`subdivisions`): quantile boundaries fall on fine-bin edges, so a group's share differs from
1/quantiles by at most the share of one fine bin (the odds ratios are exact for the groups as
reported by their edges); the AUC counts a case and a control in the same fine bin as half a
concordant pair, so it is within :attr:`Distribution.auc_bound` (0.5 x the share of pairs that
share a bin) of the exact Mann-Whitney AUC.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import dask.array as da
import numpy as np

from genofed.analysis import data
from genofed.analysis.scheduling import compute
from genofed.errors import InputError
from genofed.store.dataset import Dataset

_ALLELE = re.compile(r"^[ACGTacgt]+$")
_CONTIG = re.compile(r"^[A-Za-z0-9_.]+$")
#: The 97.5% standard normal quantile (95% Wald intervals).
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class ScoringFile:
    """A PGS Catalog scoring file: its `#key=value` header and one entry per variant.
    Positions come from `hm_chr`/`hm_pos` in a harmonized file, else `chr_name`/
    `chr_position`; a harmonized entry without a position has position -1 (never matches)."""

    metadata: dict[str, str]
    contig: list[str]
    position: np.ndarray          # int64, 1-based
    effect_allele: list[str]
    other_allele: list[str | None]
    weight: np.ndarray            # float64
    line: np.ndarray              # int64: each entry's line in the file
    harmonized: bool

    def __len__(self) -> int:
        return len(self.contig)

    @property
    def pgs_id(self) -> str | None:
        return self.metadata.get("pgs_id")

    @property
    def genome_build(self) -> str | None:
        """The build of the positions used (HmPOS_build for a harmonized file)."""
        key = "HmPOS_build" if self.harmonized else "genome_build"
        return self.metadata.get(key) or None


def parse_scoring_file(text: str, name: str = "scoring file") -> ScoringFile:
    """Read a PGS Catalog scoring file (formats 1 and 2; tab-separated). Raises
    :class:`InputError` naming the line and column of the first problem."""
    metadata: dict[str, str] = {}
    header: list[str] | None = None
    entries: list[_Entry] = []
    seen: dict[tuple[str, int, str, str | None], int] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip("\r")
        if line.startswith("#"):
            key, sep, value = line.lstrip("#").partition("=")
            key = key.strip()
            if sep and header is None:
                metadata[key.replace(" ", "_").lower() if " " in key else key] = value.strip()
            continue
        if not line.strip():
            continue
        fields = line.split("\t")
        if header is None:
            header = [f.strip() for f in fields]
            _check_header(header, name, number)
            continue
        entry = _entry(fields, header, name, number)
        variant = (entry.contig.removeprefix("chr"), entry.position, entry.effect, entry.other)
        if entry.position > 0 and variant in seen:
            raise InputError(name, f"the same variant and effect allele as line "
                             f"{seen[variant]}", line=number, field="effect_allele")
        seen[variant] = number
        entries.append(entry)
    if header is None:
        raise InputError(name, "no column header line (e.g. chr_name, chr_position, "
                         "effect_allele, effect_weight)")
    if not entries:
        raise InputError(name, "no variants")
    declared = metadata.get("variants_number")
    if declared is not None and declared.isdigit() and int(declared) != len(entries):
        raise InputError(name, f"#variants_number={declared} but {len(entries)} variants "
                         "follow", field="variants_number")
    return ScoringFile(metadata, [e.contig for e in entries],
                       np.array([e.position for e in entries], dtype=np.int64),
                       [e.effect for e in entries], [e.other for e in entries],
                       np.array([e.weight for e in entries], dtype=np.float64),
                       np.array([e.line for e in entries], dtype=np.int64),
                       "hm_pos" in header)


@dataclass(frozen=True)
class _Entry:
    contig: str
    position: int
    effect: str
    other: str | None
    weight: float
    line: int


def _place_columns(header: list[str]) -> tuple[str, str]:
    return ("hm_chr", "hm_pos") if "hm_pos" in header else ("chr_name", "chr_position")


def _check_header(header: list[str], name: str, number: int) -> None:
    for required in ("effect_allele", "effect_weight", *_place_columns(header)):
        if required not in header:
            hint = " (rsID-only files cannot be placed: use the harmonized file)" \
                if required in ("chr_name", "chr_position") else ""
            raise InputError(name, f"no {required} column{hint}", line=number, field=required)
    for special in ("is_haplotype", "is_diplotype", "is_interaction"):
        if special in header:
            raise InputError(name, f"{special} entries are not supported (only additive "
                             "per-allele weights are)", line=number, field=special)


def _entry(fields: list[str], header: list[str], name: str, number: int) -> _Entry:
    """One variant line, checked field by field."""
    if len(fields) < len(header):
        raise InputError(name, f"{len(fields)} fields where the header has {len(header)}",
                         line=number, field=header[len(fields)])
    values = {column: fields[i].strip() for i, column in enumerate(header)}
    chrom, pos = _place_columns(header)
    contig, place_text = values[chrom], values[pos]
    if chrom == "hm_chr" and (not contig or not place_text):
        contig, place = contig or "?", -1       # not mapped by the harmonisation
    else:
        if not _CONTIG.match(contig):
            raise InputError(name, f"{contig!r} is not a chromosome name", line=number,
                             field=chrom)
        if not place_text.isdigit() or int(place_text) < 1:
            raise InputError(name, f"{place_text!r} is not a position (a positive integer)",
                             line=number, field=pos)
        place = int(place_text)
    effect = values["effect_allele"]
    if not _ALLELE.match(effect):
        raise InputError(name, f"{effect!r} is not an allele (A, C, G, T)", line=number,
                         field="effect_allele")
    other = values.get("other_allele") or None
    if other is not None and not _ALLELE.match(other):
        raise InputError(name, f"{other!r} is not an allele (A, C, G, T)", line=number,
                         field="other_allele")
    try:
        weight = float(values["effect_weight"])
    except ValueError:
        weight = math.nan
    if not math.isfinite(weight):
        raise InputError(name, f"{values['effect_weight']!r} is not a number", line=number,
                         field="effect_weight")
    return _Entry(contig, place, effect.upper(), other.upper() if other else None, weight,
                  number)


@dataclass(frozen=True)
class ScoreVariants:
    """The scoring file's entries in one dataset: sites-table row (-1: not held or alleles
    that do not match) and whether the effect allele is the row's ALT."""

    rows: np.ndarray          # int64
    effect_is_alt: np.ndarray  # bool


def match_variants(dataset: Dataset, scoring: ScoringFile) -> ScoreVariants:
    """Each entry's biallelic row: the effect allele must be the row's ALT or REF and, when
    the file gives one, the other allele the other (contigs with or without `chr`). Without
    an other allele, a row with the effect allele as ALT is preferred; at a multi-allelic
    site split into several rows an effect allele equal to REF then takes the first row."""
    keys_alt = [(c, int(p), o or "", e) for c, p, e, o in
                zip(scoring.contig, scoring.position, scoring.effect_allele,
                    scoring.other_allele, strict=True)]
    keys_ref = [(c, p, e, o) for c, p, o, e in keys_alt]
    as_alt = data.site_rows(dataset, keys_alt)
    as_ref = data.site_rows(dataset, keys_ref)
    unknown = [i for i, o in enumerate(scoring.other_allele) if o is None]
    if unknown:
        ref, alt = dataset.site_strings("ref"), dataset.site_strings("alt")
        for i in unknown:
            if scoring.position[i] < 1:
                continue
            lo, hi, _mask = dataset.site_rows(scoring.contig[i], int(scoring.position[i]))
            wanted = scoring.effect_allele[i]
            alts = [r for r in range(lo, hi) if alt[r] == wanted]
            refs = [r for r in range(lo, hi) if ref[r] == wanted]
            as_alt[i] = alts[0] if alts else -1
            as_ref[i] = refs[0] if refs and not alts else -1
    effect_is_alt = as_alt >= 0
    return ScoreVariants(np.where(effect_is_alt, as_alt, as_ref), effect_is_alt)


@dataclass(frozen=True)
class IndividualScores:
    """plink2 `.sscore` columns per individual (cohort order). Nothing here leaves a node."""

    score_sum: np.ndarray      # SCORE1_SUM
    score_avg: np.ndarray      # SCORE1_AVG = SCORE1_SUM / DENOM
    allele_count: np.ndarray   # ALLELE_CT (int64): non-missing alleles
    dosage_sum: np.ndarray     # NAMED_ALLELE_DOSAGE_SUM
    denominator: int           # DENOM: 2 x variants used
    variants_used: int


def individual_scores(dosages: data.Dosages, effect_is_alt: np.ndarray,
                      weights: np.ndarray) -> IndividualScores:
    """Scores of a dataset's cohort from the ALT dosages of the scoring file's variants (rows
    -1 for those the dataset lacks: skipped, as plink2 skips them). Two passes over the Dask
    chunks: effect-allele frequencies for the imputation, then the weighted sums."""
    dosage = dosages.dosage
    variants, n = dosage.shape
    effect_is_alt = np.asarray(effect_is_alt, dtype=bool)
    weights = np.asarray(weights, dtype=np.float64)
    if effect_is_alt.shape != (variants,) or weights.shape != (variants,):
        raise ValueError(f"effect_is_alt and weights must be ({variants},)")
    used = np.asarray(dosages.held, dtype=bool)
    if variants == 0 or n == 0 or not used.any():
        zero = np.zeros(n)
        denom = 2 * int(used.sum())
        return IndividualScores(zero, zero.copy(), np.full(n, denom, dtype=np.int64),
                                zero.copy(), denom, int(used.sum()))
    flip = da.from_array(~effect_is_alt, chunks=dosage.chunks[0])[:, None]
    effect = da.where(flip, 2.0 - dosage, dosage)      # NaN stays NaN
    observed = ~da.isnan(effect)
    copies = da.where(observed, effect, 0.0)
    seen, total = compute(observed.sum(axis=1), copies.sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        freq = np.where(seen > 0, total / (2.0 * seen), 0.0)
    w = np.where(used, weights, 0.0)
    chunks = dosage.chunks[0]
    imputed = da.where(observed, effect, da.from_array(2.0 * freq, chunks=chunks)[:, None])
    w_chunked = da.from_array(w, chunks=chunks)
    used_chunked = da.from_array(used.astype(np.float64), chunks=chunks)
    score, missing, dosage_sum = compute(
        w_chunked @ imputed,
        used_chunked @ (~observed).astype(np.float64),
        used_chunked @ copies)
    denom = 2 * int(used.sum())
    return IndividualScores(score, score / denom,
                            denom - 2 * np.rint(missing).astype(np.int64), dosage_sum, denom,
                            int(used.sum()))


def distribution_statistics(scores: np.ndarray, groups: np.ndarray, *,
                            edges: np.ndarray | None = None,
                            trait: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """A node's summable distribution aggregates (one dict per dataset, summed).

    Always: ``count`` (G,) int64, ``sum`` (G,), ``sum_sq`` (G,) over each group's members
    (`groups`: a (G, n) bool matrix). With the coordinator's `edges` (E increasing values):
    ``histogram`` (G, E + 1) int64 over the bins (-inf, e0), [e0, e1), ..., [e_(E-1), inf).
    With `edges` and a binary `trait` (1.0 case, 0.0 control, NaN unknown): ``cases`` and
    ``controls`` (E + 1,) int64 over the same bins, every individual with a known status.
    """
    scores = np.asarray(scores, dtype=np.float64)
    groups = np.asarray(groups)
    n = len(scores)
    if groups.ndim != 2 or groups.shape[1] != n or groups.dtype != np.bool_:
        raise ValueError(f"groups must be a bool matrix (G, {n})")
    if not np.isfinite(scores).all():
        raise ValueError("scores must be finite")
    members = groups.astype(np.float64)
    out: dict[str, np.ndarray] = {
        "count": groups.sum(axis=1).astype(np.int64),
        "sum": members @ scores,
        "sum_sq": members @ (scores * scores),
    }
    if edges is None:
        return out
    edges = np.asarray(edges, dtype=np.float64)
    if edges.ndim != 1 or len(edges) < 1 or np.any(np.diff(edges) <= 0):
        raise ValueError("edges must be increasing")
    index = np.searchsorted(edges, scores, side="right")
    width = len(edges) + 1
    out["histogram"] = np.stack([np.bincount(index[g], minlength=width) for g in groups]
                                ).astype(np.int64).reshape(len(groups), width)
    if trait is not None:
        trait = np.asarray(trait, dtype=np.float64)
        if trait.shape != (n,) or not np.all(np.isnan(trait) | (trait == 0) | (trait == 1)):
            raise ValueError("trait must be 1.0 (case), 0.0 (control) or NaN per individual")
        out["cases"] = np.bincount(index[trait == 1], minlength=width).astype(np.int64)
        out["controls"] = np.bincount(index[trait == 0], minlength=width).astype(np.int64)
    return out


def histogram_edges(summed: dict[str, np.ndarray], bins: int, *, subdivisions: int = 50,
                    width_sd: float = 4.0, group: int = 0) -> np.ndarray:
    """The coordinator's fine edges for round two, from round one's pooled moments: the mean
    +/- `width_sd` SDs of `group`, in `bins` display bins each split into `subdivisions`
    (bins x subdivisions + 1 edges; display edges are every `subdivisions`-th)."""
    count = float(summed["count"][group])
    if count < 1:
        raise ValueError("no individuals in the group")
    mean = float(summed["sum"][group]) / count
    sd = _sd(count, float(summed["sum"][group]), float(summed["sum_sq"][group]))
    if not (math.isfinite(sd) and sd > 0):
        sd = max(abs(mean), 1.0) * 1e-3
    return np.asarray(mean + sd * width_sd * np.linspace(-1.0, 1.0, bins * subdivisions + 1))


@dataclass(frozen=True)
class Distribution:
    """The pooled score distribution. Per group: count, mean, SD (n - 1), and the histogram
    over `display_edges` with an underflow and an overflow bin. For a binary trait (else
    None): per score quantile group (bounds `quantile_edges`, -inf and inf at the ends) cases,
    controls and the odds ratio against the lowest with its Wald 95% CI (NaN where a cell is
    empty), and the AUC with the bound on its distance from the exact one."""

    count: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    display_edges: np.ndarray
    histogram: np.ndarray
    quantile_edges: np.ndarray | None = None
    quantile_cases: np.ndarray | None = None
    quantile_controls: np.ndarray | None = None
    odds_ratio: np.ndarray | None = None
    or_lower: np.ndarray | None = None
    or_upper: np.ndarray | None = None
    auc: float | None = None
    auc_bound: float | None = None


def combine_distribution(summed: dict[str, np.ndarray], edges: np.ndarray, *, bins: int,
                         quantiles: int) -> Distribution:
    """The coordinator's result from round two's summed aggregates on `edges` (from
    :func:`histogram_edges` with `bins` display bins)."""
    edges = np.asarray(edges, dtype=np.float64)
    count = np.asarray(summed["count"], dtype=np.int64)
    if (len(edges) - 1) % bins:
        raise ValueError(f"{len(edges) - 1} fine bins do not split into {bins} display bins")
    sub = (len(edges) - 1) // bins
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = summed["sum"] / count
        sd = np.array([_sd(float(c), float(s), float(q)) for c, s, q in
                       zip(count, summed["sum"], summed["sum_sq"], strict=True)])
    fine = np.asarray(summed["histogram"], dtype=np.int64)
    # Display bin i gathers fine bins 1 + i*sub .. (i+1)*sub; the tails stay as they are.
    inner = fine[:, 1:-1].reshape(len(fine), bins, sub).sum(axis=2)
    histogram = np.concatenate([fine[:, :1], inner, fine[:, -1:]], axis=1)
    result = Distribution(count, mean, sd, edges[::sub].copy(), histogram)
    if "cases" not in summed:
        return result
    cases = np.asarray(summed["cases"], dtype=np.int64)
    controls = np.asarray(summed["controls"], dtype=np.int64)
    both = np.cumsum(cases + controls)
    total = both[-1]
    # Boundary k: the first fine bin whose cumulative count reaches k/quantiles of the total.
    cuts = np.searchsorted(both, total * np.arange(1, quantiles) / quantiles, side="left")
    starts = np.concatenate([[0], cuts + 1])
    stops = np.concatenate([cuts + 1, [len(both)]])
    starts = np.minimum(starts, stops)
    cum_cases = np.concatenate([[0], np.cumsum(cases)])
    cum_controls = np.concatenate([[0], np.cumsum(controls)])
    q_cases = cum_cases[stops] - cum_cases[starts]
    q_controls = cum_controls[stops] - cum_controls[starts]
    inner_cut = np.minimum(cuts, len(edges) - 1)
    bounds = np.concatenate([[-np.inf], np.where(cuts < len(edges), edges[inner_cut], np.inf),
                             [np.inf]])
    with np.errstate(invalid="ignore", divide="ignore"):
        a, b = q_cases.astype(np.float64), q_controls.astype(np.float64)
        ratio = (a * b[0]) / (b * a[0])
        se = np.sqrt(1 / a + 1 / b + 1 / a[0] + 1 / b[0])
    empty = (q_cases == 0) | (q_controls == 0) | (q_cases[0] == 0) | (q_controls[0] == 0)
    ratio, se = np.where(empty, np.nan, ratio), np.where(empty, np.nan, se)
    lower, upper = ratio * np.exp(-Z_95 * se), ratio * np.exp(Z_95 * se)
    n1, n0 = float(cases.sum()), float(controls.sum())
    below = np.concatenate([[0], np.cumsum(controls)[:-1]]).astype(np.float64)
    pairs = n1 * n0
    auc = float((cases * (below + 0.5 * controls)).sum() / pairs) if pairs else math.nan
    bound = float(0.5 * (cases * controls).sum() / pairs) if pairs else math.nan
    return Distribution(count, mean, sd, result.display_edges, histogram, bounds, q_cases,
                        q_controls, ratio, lower, upper, auc, bound)


def _sd(count: float, total: float, squares: float) -> float:
    if count < 2:
        return math.nan
    return math.sqrt(max(squares - total * total / count, 0.0) / (count - 1))
