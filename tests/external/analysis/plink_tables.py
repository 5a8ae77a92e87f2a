"""Checking federated analyses against plink2 on the pooled cohort: running plink2, reading
its tables, each share's inputs built as its node builds them, and the rounds of a job run
in-process (the shares' statistics summed as secure aggregation would sum them)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from genofed.analysis import data
from genofed.analysis.spec import CohortFilter, Trait
from genofed.store import NodeStore
from tests.analysis.fixtures import SEIZURES, AnalysisCohort

Key = tuple[str, int, str, str]


def plink2(*args: str | Path) -> None:
    subprocess.run(["plink2", "--threads", "2", *map(str, args)], check=True,
                   capture_output=True, text=True)


def read_table(path: Path) -> list[dict[str, str]]:
    """A plink2 output table (header line starting with '#') as rows of named fields."""
    lines = path.read_text().splitlines()
    header = lines[0].lstrip("#").split("\t")
    return [dict(zip(header, line.split("\t"), strict=True)) for line in lines[1:]]


def pooled_variants(cohort: AnalysisCohort) -> tuple[list[str], list[Key]]:
    """The pooled fileset's variant ids and their (contig, pos, ref, alt) keys, in file order."""
    ids, keys = [], []
    for line in Path(f"{cohort.plink_prefix}.pvar").read_text().splitlines():
        if not line.startswith("#"):
            contig, pos, vid, ref, alt = line.split("\t")[:5]
            ids.append(vid)
            keys.append((contig, int(pos), ref, alt))
    return ids, keys


def alt_counts(cohort: AnalysisCohort, out: Path) -> dict[str, tuple[int, int]]:
    """Pooled (ALT count, called alleles) per variant id, from plink2 --freq counts."""
    plink2("--pfile", cohort.plink_prefix, "--freq", "counts", "--out", out)
    return {row["ID"]: (int(row["ALT_CTS"]), int(row["OBS_CT"]))
            for row in read_table(Path(f"{out}.acount"))}


@dataclass(frozen=True)
class NodeInputs:
    dosages: data.Dosages
    design: np.ndarray
    y: np.ndarray
    sample_ids: list[str]


def node_inputs(cohort: AnalysisCohort, keys: Sequence[Key]) -> list[NodeInputs]:
    """Each share's individuals, dosages of `keys` (held in memory across rounds, as a node
    would keep a running job's genotypes), design (intercept, sex, age) and seizure status."""
    nodes = []
    for share in cohort.shares:
        dataset = NodeStore.open(share.node).dataset(share.dataset)
        individuals = data.select(dataset, CohortFilter())
        dosages = data.dosages(individuals, data.site_rows(dataset, keys))
        design = np.column_stack([np.ones(len(individuals)), individuals.covariate("sex"),
                                  individuals.covariate("age")])
        nodes.append(NodeInputs(data.Dosages(dosages.dosage.persist(), dosages.held), design,
                                individuals.trait(Trait(hpo=SEIZURES)),
                                individuals.sample_ids))
    return nodes


class Solver(Protocol):
    def request(self) -> dict[str, np.ndarray] | None: ...

    def absorb(self, summed: dict[str, np.ndarray]) -> None: ...


def run_rounds(solver: Solver,
               statistics: Sequence[Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]]
               ) -> None:
    """Drive a solver to the end: every round, each node's statistics for the broadcast
    request, summed elementwise (the shapes must agree across nodes)."""
    while (request := solver.request()) is not None:
        parts = [node(request) for node in statistics]
        assert all(part.keys() == parts[0].keys() for part in parts)
        assert all(part[key].shape == parts[0][key].shape for part in parts for key in part)
        solver.absorb({key: np.sum([part[key] for part in parts], axis=0) for key in parts[0]})


def relative(ours: np.ndarray, theirs: np.ndarray) -> np.ndarray:
    return np.asarray(np.abs(ours - theirs) / np.abs(theirs))


def number(field: str) -> float:
    return float("nan") if field == "NA" else float(field)
