"""Result files in the field's formats: GWAS summary statistics as GWAS-SSF (the GWAS Catalog's
format, with its `-meta.yaml`), Manhattan and QQ plots as PNG, tables as TSV.

GWAS-SSF columns, in the order the format fixes: chromosome, base_pair_location, effect_allele
(the ALT allele), other_allele, beta, standard_error, effect_allele_frequency, p_value, then n
and, for a binary trait, odds_ratio with its 95% interval. Rows are sorted by chromosome and
position; p-values are written in full precision (a tiny p-value must not become 0).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import yaml

GWAS_SSF_VERSION = "GWAS-SSF v1.0"
NA = "NA"


def _number(value: float, digits: int = 10) -> str:
    return NA if value is None or not math.isfinite(value) else f"{value:.{digits}g}"


def _contig_order(contig: str) -> tuple[int, str]:
    bare = contig.removeprefix("chr")
    return (int(bare), "") if bare.isdigit() else (100, bare)


def genomic_order(contig: Sequence[str], pos: np.ndarray, ref: Sequence[str],
                  alt: Sequence[str]) -> list[int]:
    """Row indices sorted by chromosome, position and alleles (a job's own variant order
    follows its keyed tokens, different in every job: files are written in this one)."""
    return sorted(range(len(pos)), key=lambda i: (_contig_order(contig[i]), int(pos[i]),
                                                  ref[i], alt[i]))


def write_gwas_ssf(path: Path, *, contig: Sequence[str], pos: np.ndarray, ref: Sequence[str],
                   alt: Sequence[str], beta: np.ndarray, se: np.ndarray, freq: np.ndarray,
                   p: np.ndarray, n: np.ndarray, odds_ratio: bool = False) -> int:
    """Write the summary statistics; returns the number of rows."""
    order = genomic_order(contig, pos, ref, alt)
    columns = ["chromosome", "base_pair_location", "effect_allele", "other_allele", "beta",
               "standard_error", "effect_allele_frequency", "p_value", "n"]
    if odds_ratio:
        columns += ["odds_ratio", "ci_lower", "ci_upper"]
    lines = ["\t".join(columns)]
    for i in order:
        row = [contig[i].removeprefix("chr"), str(int(pos[i])), alt[i], ref[i],
               _number(beta[i]), _number(se[i]), _number(freq[i]), _p_value(p[i]),
               str(int(n[i]))]
        if odds_ratio:
            low, high = beta[i] - 1.959963984540054 * se[i], beta[i] + 1.959963984540054 * se[i]
            row += [_number(math.exp(beta[i]) if math.isfinite(beta[i]) else math.nan),
                    _number(math.exp(low) if math.isfinite(low) else math.nan),
                    _number(math.exp(high) if math.isfinite(high) else math.nan)]
        lines.append("\t".join(row))
    path.write_text("\n".join(lines) + "\n")
    return len(order)


def _p_value(p: float) -> str:
    if p is None or not math.isfinite(p):
        return NA
    return f"{p:.10g}"


def write_gwas_meta(data_file: Path, *, trait: str, trait_description: str,
                    datasets: Sequence[str], covariates: Sequence[str], sample_size: int,
                    cases: int | None, assembly: str, analysis: str,
                    extra: dict[str, Any]) -> Path:
    """`<data file>-meta.yaml` as GWAS-SSF names it, with genofed's own keys beside the
    format's (the pooled datasets under `datasets`, the covariates, the trait, what was
    dropped)."""
    digest = hashlib.md5(data_file.read_bytes(), usedforsecurity=False).hexdigest()
    meta: dict[str, Any] = {
        "date_metadata_last_modified": datetime.now(UTC).date().isoformat(),
        "file_type": GWAS_SSF_VERSION,
        "data_file_name": data_file.name,
        "data_file_md5sum": digest,
        "is_harmonised": False,
        "is_sorted": True,
        "genome_assembly": assembly,
        "coordinate_system": "1-based",
        "trait_description": [trait_description],
        "sample_size": sample_size,
        "analysis_software": "genofed federated analysis (" + analysis + ")",
        "effect_allele": "the ALT allele",
        "datasets": list(datasets),
        "covariates": list(covariates),
        "trait": trait,
    }
    if cases is not None:
        meta["case_count"] = cases
        meta["control_count"] = sample_size - cases
    meta.update(extra)
    path = data_file.with_name(data_file.name + "-meta.yaml")
    path.write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


def manhattan_and_qq(prefix: Path, *, contig: Sequence[str], pos: np.ndarray, p: np.ndarray,
                     title: str) -> list[Path]:
    """`<prefix>-manhattan.png` and `<prefix>-qq.png`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = np.isfinite(p) & (p > 0)
    logp = -np.log10(np.clip(p[finite], 1e-300, 1.0))
    positions = pos[finite].astype(float)
    chroms = [contig[int(i)] for i in np.flatnonzero(finite)]
    order = sorted(set(chroms), key=_contig_order)
    offsets, start = {}, 0.0
    for name in order:
        offsets[name] = start
        start += max((positions[i] for i, c in enumerate(chroms) if c == name), default=0) + 1e6
    x = np.array([offsets[c] + positions[i] for i, c in enumerate(chroms)])
    colours = np.array([order.index(c) % 2 for c in chroms])
    manhattan = prefix.with_name(prefix.name + "-manhattan.png")
    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    axes.scatter(x, logp, s=4, c=np.where(colours == 0, "#1f4e79", "#6fa8dc"))
    axes.axhline(-math.log10(5e-8), color="#c00000", linewidth=0.8, linestyle="--")
    axes.set_xlabel("position" if len(order) == 1 else "chromosome")
    axes.set_ylabel("-log10(p)")
    axes.set_title(f"{title}: Manhattan")
    if len(order) > 1:
        axes.set_xticks([offsets[c] for c in order], [c for c in order])
    figure.tight_layout()
    figure.savefig(manhattan)
    plt.close(figure)
    qq = prefix.with_name(prefix.name + "-qq.png")
    figure, axes = plt.subplots(figsize=(5, 5), dpi=100)
    observed = np.sort(logp)[::-1]
    expected = -np.log10((np.arange(1, len(observed) + 1) - 0.5) / max(len(observed), 1))
    axes.scatter(expected, observed, s=4, color="#1f4e79")
    top = float(max(expected.max(initial=1.0), observed.max(initial=1.0)))
    axes.plot([0, top], [0, top], color="#c00000", linewidth=0.8)
    median = float(np.median(p[finite])) if finite.any() else math.nan
    lam = _chi2_isf(median) / 0.4549364231195724 if math.isfinite(median) else math.nan
    axes.set_title(f"{title}: QQ (lambda_GC {lam:.3f})")
    axes.set_xlabel("expected -log10(p)")
    axes.set_ylabel("observed -log10(p)")
    figure.tight_layout()
    figure.savefig(qq)
    plt.close(figure)
    return [manhattan, qq]


def _chi2_isf(p: float) -> float:
    """The 1-df chi-square statistic whose upper tail is `p`."""
    from scipy.stats import chi2

    return float(chi2.isf(p, 1))


def write_table(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """Tab-separated, floats with 10 significant digits, NaN as NA, open ends as -inf/inf."""
    lines = ["\t".join(header)]
    for row in rows:
        lines.append("\t".join(_cell(v) for v in row))
    path.write_text("\n".join(lines) + "\n")


def _cell(value: object) -> str:
    if isinstance(value, float):
        return ("inf" if value > 0 else "-inf") if math.isinf(value) else _number(value)
    return str(value)


def write_yaml(path: Path, document: dict[str, Any]) -> None:
    path.write_text(yaml.safe_dump(document, sort_keys=False))


def histogram_plot(path: Path, edges: np.ndarray, counts: np.ndarray, *, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    axes.stairs(counts, edges, fill=True, color="#6fa8dc", edgecolor="#1f4e79")
    axes.set_xlabel("score")
    axes.set_ylabel("individuals")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def scree_plot(path: Path, eigenvalues: np.ndarray) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6, 4), dpi=100)
    components = np.arange(1, len(eigenvalues) + 1)
    axes.plot(components, eigenvalues, marker="o", color="#1f4e79")
    axes.set_xticks(components)
    axes.set_xlabel("principal component")
    axes.set_ylabel("eigenvalue")
    axes.set_title("PCA: eigenvalues")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path
