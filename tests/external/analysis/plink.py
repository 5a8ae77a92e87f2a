"""Helpers for checking analyses against plink2: running it, reading its tables, the job's
variants from the pooled .pvar, each share's cohort, and comparing with its printed numbers.

plink2 prints 6 significant digits (`dtoa_g`), so a value computed here "equals" plink2's when
it is within half a unit of the 6th digit of the printed value plus a relative tolerance.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np

from genofed.analysis import data
from genofed.analysis.spec import CohortFilter
from genofed.store import NodeStore
from tests.analysis.fixtures import Share

Key = tuple[str, int, str, str]


def plink2(*args: str | Path, out: Path) -> Path:
    """Run plink2 (one thread, a modest workspace: the machine is shared); returns `out`."""
    result = subprocess.run(["plink2", "--threads", "1", "--memory", "1024",
                             *map(str, args), "--out", str(out)],
                            capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise AssertionError(f"plink2 {' '.join(map(str, args))} failed:\n{result.stdout}"
                             f"{result.stderr}")
    return out


def read_table(path: Path) -> dict[str, np.ndarray]:
    """A plink2 report (tab-separated, header starting with '#') as string columns."""
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    rows = [line.split("\t") for line in lines[1:]]
    return {name: np.array([row[i] for row in rows]) for i, name in enumerate(header)}


def pvar_keys(prefix: Path) -> list[Key]:
    """The job's variants, (contig, pos, ref, alt) in the pooled .pvar's order."""
    keys = []
    for line in Path(f"{prefix}.pvar").read_text().splitlines():
        if not line.startswith("#"):
            chrom, pos, _id, ref, alt = line.split("\t")[:5]
            keys.append((chrom, int(pos), ref, alt))
    return keys


def share_cohort(share: Share) -> data.Cohort:
    """Every individual of a share's dataset, as its node selects them."""
    return data.select(NodeStore.open(share.node).dataset(share.dataset), CohortFilter())


def half_unit(printed: np.ndarray) -> np.ndarray:
    """Half a unit in the 6th significant digit of each printed value (0 for 0)."""
    printed = np.abs(np.asarray(printed, dtype=np.float64))
    with np.errstate(divide="ignore"):
        exponent = np.floor(np.log10(np.where(printed > 0, printed, 1.0)))
    return np.where(printed > 0, 0.5 * 10.0 ** (exponent - 5), 0.0)


def printed_mismatches(ours: np.ndarray, printed: np.ndarray, *, rel: float = 1e-6,
                       absolute: float | np.ndarray = 0.0) -> np.ndarray:
    """Indices where `ours` is further from plink2's printed value than its rounding plus
    `rel` relative (plus `absolute`); NaN matches NaN ("nan"/"NA" in plink2's tables)."""
    ours = np.asarray(ours, dtype=np.float64)
    text = np.asarray(printed)
    y = np.array([np.nan if v in ("NA", "nan", "NaN") else float(v) for v in text]) \
        if text.dtype.kind in "US" else np.asarray(printed, dtype=np.float64)
    close = np.abs(ours - y) <= half_unit(y) * (1 + 1e-9) + rel * np.abs(y) + absolute
    both_nan = np.isnan(ours) & np.isnan(y)
    return np.flatnonzero(~(close | both_nan))
