"""A node's analysis state on disk, shared by all its server processes (a round may reach any of
them): per job, what setup decided (who asked, which datasets and individuals, the job key, the
variant order); per dataset, the selections it has contributed (for the differencing check);
and the PCA scores a node keeps for later GWAS covariates.

    NODE_DIR/analysis/
        jobs/<job>/state.json          spec, researcher, grants, datasets, participants
        jobs/<job>/key                 the job key (0600), for variant tokens
        jobs/<job>/<dataset>.npz       selected genotype-store columns; the job's variant rows
        jobs/<job>/finished            once the job is over (a job id is set up once only)
        selections/<dataset>/<job>.npy hashed sample ids of every selection contributed
        scores/<job>/<dataset>.npz     PCA scores of this node's individuals (never leave)

Job ids are checked before they name a path. Nothing here is personal data in the clear:
sample ids are hashed; trait values are never stored, only recomputed from the store.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from genofed.errors import FederationError

_JOB = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{7,63}$")
_DATASET = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class JobStateError(FederationError):
    """A job this node has no (valid) state for."""


def _checked(job: str) -> str:
    if not _JOB.match(job):
        raise JobStateError(f"{job!r} is not a job id")
    return job


def _write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


class NodeAnalysisState:
    """The analysis directory of one node."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def job_dir(self, job: str) -> Path:
        return self.root / "jobs" / _checked(job)

    # -- per job ---------------------------------------------------------------------------------
    def save(self, job: str, state: dict[str, Any]) -> None:
        _write_atomically(self.job_dir(job) / "state.json", json.dumps(state).encode())

    def load(self, job: str) -> dict[str, Any]:
        path = self.job_dir(job) / "state.json"
        try:
            state: dict[str, Any] = json.loads(path.read_text())
        except FileNotFoundError:
            raise JobStateError(f"this node has not taken part in job {job!r} (no setup) or "
                                "has finished it") from None
        return state

    def save_key(self, job: str, key: bytes) -> None:
        _write_atomically(self.job_dir(job) / "key", key)

    def key(self, job: str) -> bytes:
        try:
            return (self.job_dir(job) / "key").read_bytes()
        except FileNotFoundError:
            raise JobStateError(f"job {job!r} has no job key at this node yet") from None

    def save_arrays(self, job: str, dataset: str, **arrays: np.ndarray) -> None:
        if not _DATASET.match(dataset):
            raise JobStateError(f"{dataset!r} is not a dataset id")
        path = self.job_dir(job) / f"{dataset}.npz"
        existing = self.arrays(job, dataset) if path.is_file() else {}
        buffer = io.BytesIO()
        savez: Any = np.savez
        savez(buffer, **{**existing, **arrays})
        _write_atomically(path, buffer.getvalue())

    def arrays(self, job: str, dataset: str) -> dict[str, np.ndarray]:
        path = self.job_dir(job) / f"{dataset}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                return {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise JobStateError(f"job {job!r} has no state for dataset {dataset!r}") from None

    def finish(self, job: str) -> None:
        """Drop the job's state, keeping a mark that the id was used (a job id is set up once:
        masks are derived from it, and must never cover two different cohorts)."""
        directory = self.job_dir(job)
        for path in directory.iterdir() if directory.is_dir() else []:
            if path.name != ".lock":
                path.unlink()
        _write_atomically(directory / "finished", b"")

    def used(self, job: str) -> bool:
        """Whether this node has set up (or finished) a job by this id."""
        directory = self.job_dir(job)
        return (directory / "state.json").is_file() or (directory / "finished").is_file()

    @contextlib.contextmanager
    def locked(self, job: str) -> Iterator[None]:
        """Exclusive use of the job's state across this node's server processes."""
        directory = self.job_dir(job)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / ".lock", "a+b") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    # -- selections contributed (the differencing check) ----------------------------------------
    @staticmethod
    def hash_each(sample_ids: list[str]) -> np.ndarray:
        """A 64-bit hash of each sample id, in order (the ids stay unreadable on disk)."""
        return np.fromiter(
            (int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8).digest(), "big")
             for s in sample_ids), dtype=np.uint64, count=len(sample_ids))

    @staticmethod
    def hashed(sample_ids: list[str]) -> np.ndarray:
        """The sorted hashes of sample ids: a selection, as sets compare."""
        return np.sort(NodeAnalysisState.hash_each(sample_ids))

    def record_selection(self, dataset: str, job: str, hashed: np.ndarray) -> None:
        buffer_path = self.root / "selections" / dataset / f"{_checked(job)}.npy"
        buffer = io.BytesIO()
        np.save(buffer, hashed, allow_pickle=False)
        _write_atomically(buffer_path, buffer.getvalue())

    def smallest_new_cell(self, dataset: str, hashed: np.ndarray, job: str) -> int | None:
        """How many individuals the smallest group has that `hashed` would newly set apart.

        Group the dataset's individuals by which of the earlier jobs (other than `job`) selected
        them: any sum, difference or other combination of those jobs' statistics is a
        combination of these groups' sums, so the finest thing they can reveal is a group's
        aggregate. A new selection splits some groups in two (those it takes part of) and sets
        apart the individuals no earlier job selected; the smallest such new piece is returned
        (None: it splits nothing, e.g. the same cohort again)."""
        directory = self.root / "selections" / dataset
        earlier = [np.load(path, allow_pickle=False)
                   for path in sorted(directory.glob("*.npy")) if path.stem != job] \
            if directory.is_dir() else []
        universe = np.unique(np.concatenate([hashed, *earlier]))
        membership = np.zeros((len(universe), len(earlier) + 1), dtype=bool)
        for column, selection in enumerate(earlier):
            membership[:, column] = np.isin(universe, selection, assume_unique=True)
        membership[:, -1] = np.isin(universe, hashed, assume_unique=True)
        before = _cells(membership[:, :-1])
        after = _cells(membership)
        # An individual is newly set apart when its group shrinks, or when no earlier job
        # selected it (its sum was not learnable before; now its group's is).
        split = (before[1][before[0]] != after[1][after[0]]) | ~membership[:, :-1].any(axis=1)
        if not split.any():
            return None
        return int(after[1][after[0][split]].min())

    # -- PCA scores kept for later jobs ----------------------------------------------------------
    def save_scores(self, job: str, dataset: str, sample_hashes: np.ndarray,
                    scores: np.ndarray) -> None:
        buffer = io.BytesIO()
        savez: Any = np.savez
        savez(buffer, samples=sample_hashes, scores=scores)
        _write_atomically(self.root / "scores" / _checked(job) / f"{dataset}.npz",
                          buffer.getvalue())

    def scores(self, job: str, dataset: str) -> tuple[np.ndarray, np.ndarray]:
        """(sample hashes, scores) of a PCA job's individuals of `dataset` at this node."""
        path = self.root / "scores" / _checked(job) / f"{dataset}.npz"
        try:
            with np.load(path, allow_pickle=False) as npz:
                return npz["samples"], npz["scores"]
        except FileNotFoundError:
            raise JobStateError(f"this node keeps no PCA scores of job {job!r} for dataset "
                                f"{dataset!r}: run the pca job over it first") from None


def _cells(membership: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(each row's group, each group's size) of rows with equal membership."""
    if membership.shape[1] == 0:
        return np.zeros(len(membership), dtype=np.int64), np.array([len(membership)])
    packed = np.packbits(membership, axis=1)
    _unique, inverse, counts = np.unique(packed, axis=0, return_inverse=True,
                                          return_counts=True)
    return inverse.reshape(-1), counts

