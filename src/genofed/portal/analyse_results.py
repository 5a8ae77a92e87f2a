"""What a finished analysis shows in the portal, read from its result files (the bytes the hub's
API returned): facts, tables and Chart.js configurations (JSON only: the portal's CSP allows no
functions in pages), by job type.

- GWAS: a Manhattan plot (chromosomes end to end) and a QQ plot with the genomic inflation
  factor, thinned when large (every p <= 0.01 drawn, an even sample of the rest), and the top
  hits table; the job's own PNGs are the plots without JavaScript.
- PCA: eigenvalues as a chart and a table; PRS: the score's distribution, its summary per group
  and odds ratios per quantile.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

#: Rows of the top-hits table.
TOP_HITS = 20
#: Points drawn per plot at most; beyond it, points with p > THIN_ABOVE are thinned evenly (the
#: tail that matters, small p-values, is always drawn in full).
MAX_POINTS = 10_000
THIN_ABOVE = 1e-2
GENOME_WIDE = 5e-8
_COLOURS = ("#1f4e79", "#5b8fc7")
_LINE = "#a4161a"


@dataclass
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    #: Columns holding numbers (right-aligned).
    numeric: set[int] = field(default_factory=set)


@dataclass
class Chart:
    #: The id of its JSON data island.
    id: str
    #: The canvas's accessible name: what the chart shows, in words.
    label: str
    config: dict[str, Any]
    #: The job's own PNG of the same plot (shown without JavaScript), if it has one.
    png: str | None = None
    wide: bool = True


@dataclass
class Results:
    kind: str
    facts: list[tuple[str, str]] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    #: (file name, what it is), for download.
    downloads: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def has_file(self, name: str) -> bool:
        return any(name == file for file, _ in self.downloads)


def describe_file(name: str) -> str:
    if name.endswith("-meta.yaml"):
        return "metadata (YAML)"
    if name.endswith(".png"):
        return "plot (PNG)"
    if name.startswith("gwas-") and name.endswith(".tsv"):
        return "summary statistics (GWAS-SSF, tab-separated)"
    if name.endswith(".tsv"):
        return "table (tab-separated)"
    return "file"


#: The result files the page reads, by job type (others are only offered for download).
_READ = {"pca": ("pca-eigenvalues.tsv", "pca-meta.yaml"),
         "prs": ("prs-summary.tsv", "prs-distribution.tsv", "prs-quantiles.tsv",
                 "prs-meta.yaml")}


def wanted(kind: str, name: str) -> bool:
    """Whether the page reads a job's result file (tables and metadata; never the plots)."""
    if kind in ("gwas-linear", "gwas-logistic"):
        return name.startswith("gwas-") and name.endswith((".tsv", ".tsv-meta.yaml"))
    return name in _READ.get(kind, ())


def read_results(job: dict[str, Any], contents: dict[str, bytes]) -> Results:
    """What a finished job's files show, by job type (`contents`: the files read so far)."""
    kind = str(job.get("type"))
    files: list[str] = list(job.get("files", []))
    results = Results(kind, downloads=[(name, describe_file(name)) for name in files])
    if kind in ("gwas-linear", "gwas-logistic"):
        data = next((n for n in files if n.endswith(".tsv") and n in contents), None)
        if data is not None:
            meta = contents.get(data + "-meta.yaml")
            if meta is not None:
                results.facts = _gwas_facts(yaml.safe_load(meta) or {})
            _gwas(results, data, contents[data], binary=kind == "gwas-logistic")
    elif kind == "pca":
        _pca(results, contents)
    elif kind == "prs":
        _prs(results, contents)
    return results


# -- formatting ------------------------------------------------------------------------------
def human_bytes(count: int) -> str:
    """A size for people, in SI units (1 kB = 1000 B)."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1000
    return f"{size:,.1f} TB"


def _g(value: float, digits: int = 4) -> str:
    if math.isinf(value):  # the open ends of a distribution's first and last bins
        return "-inf" if value < 0 else "inf"
    return "NA" if math.isnan(value) else f"{value:.{digits}g}"


def _p(value: float) -> str:
    if not math.isfinite(value):
        return "NA"
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.2e}"


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def _tsv(content: bytes) -> list[list[str]]:
    """The rows of a small TSV table, without its header."""
    lines = content.decode("utf-8").splitlines()
    return [line.split("\t") for line in lines[1:] if line]


def _contig_key(contig: str) -> tuple[int, str]:
    bare = contig.removeprefix("chr")
    return (int(bare), "") if bare.isdigit() else (100, bare)


# -- GWAS -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class GwasTable:
    """A GWAS-SSF file's columns as the pages use them (pyarrow reads millions of rows fast)."""

    #: Per row: the index of its chromosome in `contigs`.
    contig_code: np.ndarray
    contigs: list[str]
    pos: np.ndarray
    p: np.ndarray
    #: The file itself, for the few rows shown in full.
    table: Any


def read_gwas_ssf(content: bytes) -> GwasTable:
    import pyarrow as pa
    from pyarrow import csv

    strings = {name: pa.string() for name in ("chromosome", "effect_allele", "other_allele")}
    table = csv.read_csv(io.BytesIO(content), parse_options=csv.ParseOptions(delimiter="\t"),
                         convert_options=csv.ConvertOptions(column_types=strings,
                                                            null_values=["NA"],
                                                            strings_can_be_null=False))
    encoded = table.column("chromosome").combine_chunks().dictionary_encode()

    def floats(name: str) -> np.ndarray:
        column = table.column(name).cast(pa.float64()).fill_null(math.nan)
        return np.asarray(column.to_numpy(), dtype=np.float64)

    return GwasTable(np.asarray(encoded.indices.to_numpy(zero_copy_only=False)),
                     [str(c) for c in encoded.dictionary.to_pylist()],
                     floats("base_pair_location"), floats("p_value"), table)


def thin(p: np.ndarray) -> tuple[np.ndarray, bool]:
    """Indices of the points to draw, and whether some were left out: all of them when few;
    else every p <= THIN_ABOVE and an even sample of the others, about MAX_POINTS in all."""
    everything = np.arange(len(p))
    if len(p) <= MAX_POINTS:
        return everything, False
    small = everything[p <= THIN_ABOVE]
    rest = everything[p > THIN_ABOVE]
    room = max(MAX_POINTS - len(small), MAX_POINTS // 10)
    if len(rest) > room:
        rest = rest[np.linspace(0, len(rest) - 1, room).round().astype(np.int64)]
    return np.sort(np.concatenate([small, rest])), True


def _points(x: np.ndarray, y: np.ndarray) -> list[dict[str, float]]:
    return [{"x": round(float(a), 4), "y": round(float(b), 4)}
            for a, b in zip(x.tolist(), y.tolist(), strict=True)]


def _gwas(results: Results, name: str, content: bytes, *, binary: bool) -> None:
    gwas = read_gwas_ssf(content)
    usable = np.flatnonzero(np.isfinite(gwas.p) & (gwas.p > 0))
    p = gwas.p[usable]
    logp = -np.log10(np.clip(p, 1e-300, 1.0))
    results.facts.append(("Variants with results", f"{len(gwas.p):,}"))
    stem = name.removesuffix(".tsv")
    # Manhattan: chromosomes in genomic order, laid end to end with a 1 Mb gap.
    order = sorted(range(len(gwas.contigs)), key=lambda c: _contig_key(gwas.contigs[c]))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    row_rank = rank[gwas.contig_code[usable]] if len(order) else np.zeros(0, dtype=np.int64)
    positions = gwas.pos[usable]
    ends = np.zeros(len(order))
    np.maximum.at(ends, row_rank, positions)
    offsets = np.concatenate([[0.0], np.cumsum(ends + 1e6)[:-1]])
    x = (offsets[row_rank] + positions) / 1e6
    keep, thinned = thin(p)
    datasets: list[dict[str, Any]] = []
    for r, code in enumerate(order):
        chosen = keep[row_rank[keep] == r]
        colour = _COLOURS[r % 2]
        datasets.append({"label": f"chromosome {gwas.contigs[code]}",
                         "backgroundColor": colour, "borderColor": colour, "pointRadius": 2,
                         "pointHoverRadius": 4, "data": _points(x[chosen], logp[chosen])})
    line = -math.log10(GENOME_WIDE)
    right = round(float(x.max(initial=0.0)), 4)
    datasets.append({"type": "line", "label": "genome-wide significance (p = 5e-8)",
                     "data": [{"x": 0, "y": round(line, 4)}, {"x": right, "y": round(line, 4)}],
                     "borderColor": _LINE, "borderDash": [6, 4], "borderWidth": 1,
                     "pointRadius": 0, "fill": False})
    axis = (f"position on chromosome {gwas.contigs[order[0]]} (Mb)" if len(order) == 1
            else "position (Mb; chromosomes end to end)")
    shown = f"{len(keep):,} of {len(p):,} variants, p above 0.01 thinned" if thinned \
        else f"{len(p):,} variants"
    results.charts.append(Chart(
        "manhattan-data", f"Manhattan plot: minus log10 p-value of each variant by genomic "
        f"position ({shown}); the top hits table lists the smallest p-values",
        scatter(datasets, axis, "-log10(p)", max(float(logp.max(initial=0.0)), line) * 1.05,
                legend=len(order) > 1), f"{stem}-manhattan.png"
        if results.has_file(f"{stem}-manhattan.png") else None))
    # QQ: observed against expected, from the smallest p-value up.
    ranked = np.sort(p)
    observed = -np.log10(np.clip(ranked, 1e-300, 1.0))
    expected = -np.log10((np.arange(1, len(ranked) + 1) - 0.5) / max(len(ranked), 1))
    keep_qq, _ = thin(ranked)
    peak = round(max(float(expected.max(initial=1.0)), float(observed.max(initial=1.0))), 4)
    lam = lambda_gc(p)
    if lam is not None:
        results.facts.append(("Genomic inflation (λGC)", f"{lam:.3f}"))
    results.charts.append(Chart(
        "qq-data", "QQ plot: observed against expected minus log10 p-values"
        + (f"; genomic inflation lambda {lam:.3f}" if lam is not None else ""), scatter([
            {"label": "variants", "backgroundColor": _COLOURS[0], "borderColor": _COLOURS[0],
             "pointRadius": 2, "data": _points(expected[keep_qq], observed[keep_qq])},
            {"type": "line", "label": "expected without association",
             "data": [{"x": 0, "y": 0}, {"x": peak, "y": peak}], "borderColor": _LINE,
             "borderWidth": 1, "pointRadius": 0, "fill": False}],
            "expected -log10(p)", "observed -log10(p)", peak * 1.05, legend=True),
        f"{stem}-qq.png" if results.has_file(f"{stem}-qq.png") else None, wide=False))
    results.tables.append(_top_hits(gwas, usable[np.argsort(p, kind="stable")[:TOP_HITS]],
                                    binary))


def _top_hits(gwas: GwasTable, rows: np.ndarray, binary: bool) -> Table:
    header = ["Variant", "Chromosome", "Position", "Other allele", "Effect allele", "Beta",
              "SE", "p", "n"]
    odds = binary and "odds_ratio" in gwas.table.column_names
    if odds:
        header.append("Odds ratio")
    shown = []
    for record in gwas.table.take(rows.astype(np.int64)).to_pylist():
        contig, pos = str(record["chromosome"]), int(record["base_pair_location"])
        other, effect = str(record["other_allele"]), str(record["effect_allele"])
        row = [f"{contig}-{pos}-{other}-{effect}", contig, f"{pos:,}", other, effect,
               _g(_number(record["beta"])), _g(_number(record["standard_error"])),
               _p(_number(record["p_value"])), f"{int(_number(record['n'])):,}"
               if math.isfinite(_number(record["n"])) else "NA"]
        if odds:
            row.append(_g(_number(record["odds_ratio"])))
        shown.append(row)
    return Table(f"Top hits: the {len(shown)} smallest p-values (effect allele = ALT)",
                 header, shown, numeric={2, 5, 6, 7, 8, 9})


def _number(value: object) -> float:
    return float(value) if isinstance(value, int | float) else math.nan


def lambda_gc(p: np.ndarray) -> float | None:
    """The genomic inflation factor: median chi-square (1 df) of the p-values over its
    expectation."""
    if len(p) == 0:
        return None
    from scipy.stats import chi2

    return float(chi2.isf(float(np.median(p)), 1) / chi2.ppf(0.5, 1))


def scatter(datasets: list[dict[str, Any]], x_title: str, y_title: str, y_max: float, *,
            legend: bool) -> dict[str, Any]:
    """A Chart.js scatter configuration over {x, y} points."""
    return {"type": "scatter", "data": {"datasets": datasets}, "options": {
        "animation": False, "responsive": True, "maintainAspectRatio": False,
        "parsing": False, "normalized": True,
        "scales": {"x": {"type": "linear", "title": {"display": True, "text": x_title}},
                   "y": {"type": "linear", "min": 0, "suggestedMax": round(y_max, 3),
                         "title": {"display": True, "text": y_title}}},
        "plugins": {"legend": {"display": legend}}}}


def _gwas_facts(meta: dict[str, Any]) -> list[tuple[str, str]]:
    facts = [("Trait", str(meta.get("trait", ""))),
             ("Individuals", f"{int(meta.get('sample_size', 0)):,}")]
    if "case_count" in meta:
        facts.append(("Cases / controls", f"{int(meta['case_count']):,} / "
                                          f"{int(meta.get('control_count', 0)):,}"))
    facts += [("Datasets", ", ".join(map(str, meta.get("datasets", []))) or "—"),
              ("Nodes", ", ".join(map(str, meta.get("nodes", []))) or "—"),
              ("Covariates", ", ".join(map(str, meta.get("covariates", []))) or "none"),
              ("Genome assembly", str(meta.get("genome_assembly", "")))]
    return facts


# -- PCA and PRS -------------------------------------------------------------------------------
def bar(labels: list[str], values: list[float], label: str, x_title: str,
        y_title: str) -> dict[str, Any]:
    """A Chart.js bar chart configuration."""
    return {"type": "bar", "data": {"labels": labels, "datasets": [{
        "label": label, "data": values, "backgroundColor": _COLOURS[1],
        "borderColor": _COLOURS[0], "borderWidth": 1}]}, "options": {
        "animation": False, "responsive": True, "maintainAspectRatio": False,
        "scales": {"x": {"title": {"display": True, "text": x_title}},
                   "y": {"beginAtZero": True, "title": {"display": True, "text": y_title}}},
        "plugins": {"legend": {"display": False}}}}


def _fact(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return _g(value)
    return str(value)


def _meta(contents: dict[str, bytes], name: str) -> dict[str, Any]:
    loaded = yaml.safe_load(contents.get(name, b"") or b"{}")
    return loaded if isinstance(loaded, dict) else {}


def _pca(results: Results, contents: dict[str, bytes]) -> None:
    meta = _meta(contents, "pca-meta.yaml")
    for key, label in (("individuals", "Individuals"), ("variants", "Variants used"),
                       ("components", "Components"), ("rounds", "Iteration rounds"),
                       ("converged", "Converged")):
        if key in meta:
            results.facts.append((label, _fact(meta[key])))
    if meta.get("nodes"):
        results.facts.append(("Nodes", ", ".join(map(str, meta["nodes"]))))
    results.notes.append("Each node keeps its own individuals' scores: choose this job under "
                         "“Principal components from” to use them as covariates pc1..pcN of "
                         "a later GWAS.")
    rows = _tsv(contents.get("pca-eigenvalues.tsv", b""))
    if not rows:
        return
    labels = [row[0] for row in rows]
    values = [_float(row[1]) for row in rows]
    results.charts.append(Chart(
        "pca-data", "Eigenvalue of each principal component: "
        + ", ".join(f"{label} {_g(v)}" for label, v in zip(labels, values, strict=True)),
        bar(labels, values, "eigenvalue", "principal component", "eigenvalue"),
        "pca-eigenvalues.png" if results.has_file("pca-eigenvalues.png") else None,
        wide=False))
    results.tables.append(Table("Eigenvalues", ["Component", "Eigenvalue"],
                                [[label, _g(v, 6)] for label, v
                                 in zip(labels, values, strict=True)], numeric={1}))


def _prs(results: Results, contents: dict[str, bytes]) -> None:
    meta = _meta(contents, "prs-meta.yaml")
    for key, label in (("individuals", "Individuals"), ("pgs_id", "PGS Catalog score"),
                       ("trait", "Trait"), ("auc", "AUC"),
                       ("suppressed_below", "Counts below this are hidden")):
        if key in meta:
            results.facts.append((label, _fact(meta[key])))
    if meta.get("nodes"):
        results.facts.append(("Nodes", ", ".join(map(str, meta["nodes"]))))
    rows = _tsv(contents.get("prs-summary.tsv", b""))
    if rows:
        results.tables.append(Table("Score by group", ["Group", "Individuals", "Mean", "SD"],
                                    [[r[0], r[1], _g(_float(r[2])), _g(_float(r[3]))]
                                     for r in rows], numeric={1, 2, 3}))
    everyone = [r for r in _tsv(contents.get("prs-distribution.tsv", b"")) if r[0] == "all"]
    if everyone:
        labels = [f"{_g(_float(r[1]), 3)} to {_g(_float(r[2]), 3)}" for r in everyone]
        counts = [float(r[3]) if r[3].isdigit() else 0.0 for r in everyone]
        results.charts.append(Chart(
            "prs-data", "Histogram of the polygenic score over everyone analysed (hidden "
            "counts drawn as zero); the table below has the same numbers",
            bar(labels, counts, "individuals", "score", "individuals"),
            "prs-histogram.png" if results.has_file("prs-histogram.png") else None))
        results.tables.append(Table(
            "Score distribution, everyone (NA: fewer than the count floor)",
            ["Score from", "Score to", "Individuals"],
            [[_g(_float(r[1])), _g(_float(r[2])), r[3]] for r in everyone], numeric={0, 1, 2}))
    rows = _tsv(contents.get("prs-quantiles.tsv", b""))
    if rows:
        results.tables.append(Table(
            "Odds ratio by score quantile", ["Quantile", "Score from", "Score to", "Cases",
                                              "Controls", "Odds ratio", "95% CI low",
                                              "95% CI high"],
            [[r[0], _g(_float(r[1])), _g(_float(r[2])), r[3], r[4],
              *(_g(_float(v)) for v in r[5:8])] for r in rows], numeric=set(range(8))))
