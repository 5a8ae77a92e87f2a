"""The coordinator's jobs, kept so that a restarted coordinator carries on where it stopped.

    HUB_DIR/jobs.sqlite        one row per job: spec, owner, state, progress, participants
    HUB_DIR/jobs/<job>/        plan.pickle (the coordinator's solver state after its last round),
                               and the result files once the job is done

The plan is pickled by the coordinator itself into its own directory and read back only by it
(never anything received from a node or a researcher).
"""

from __future__ import annotations

import json
import os
import pickle
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from genofed.analysis.spec import JobSpec
from genofed.errors import FederationError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    owner TEXT NOT NULL,
    state TEXT NOT NULL,
    message TEXT NOT NULL DEFAULT '',
    progress TEXT NOT NULL DEFAULT '{}',
    participants TEXT NOT NULL DEFAULT '[]',
    files TEXT NOT NULL DEFAULT '[]',
    created REAL NOT NULL,
    updated REAL NOT NULL
)
"""


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class JobNotFoundError(FederationError):
    """No job by that id (or not one of the caller's)."""


@dataclass
class Job:
    id: str
    spec: JobSpec
    #: The submitting researcher's pseudonym (only they see the job).
    owner: str
    state: JobState
    message: str = ""
    progress: dict[str, Any] = field(default_factory=dict)
    participants: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    created: float = 0.0
    updated: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": self.spec.type.value, "state": self.state.value,
                "message": self.message, "progress": self.progress,
                "participants": self.participants, "files": self.files,
                "spec": json.loads(self.spec.to_json()),
                "created": _iso(self.created), "updated": _iso(self.updated)}


def _iso(moment: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))


class JobStore:
    """Thread-safe; one per coordinator process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        os.chmod(directory, 0o700)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(directory / "jobs.sqlite", check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def job_dir(self, job_id: str) -> Path:
        path = self.directory / "jobs" / job_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def create(self, spec: JobSpec, owner: str) -> Job:
        now = time.time()
        job = Job(secrets.token_hex(8), spec, owner, JobState.QUEUED, created=now, updated=now)
        with self._lock:
            self._db.execute("INSERT INTO jobs (id, spec, owner, state, created, updated) "
                             "VALUES (?, ?, ?, ?, ?, ?)",
                             (job.id, spec.to_json(), owner, job.state.value, now, now))
            self._db.commit()
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        with self._lock:
            row = self._db.execute("SELECT id, spec, owner, state, message, progress, "
                                   "participants, files, created, updated FROM jobs "
                                   "WHERE id = ?", (job_id,)).fetchone()
        if row is None or (owner is not None and row[2] != owner):
            raise JobNotFoundError(f"no job {job_id!r} of yours on this coordinator")
        return _job(row)

    def of(self, owner: str) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT id, spec, owner, state, message, progress, "
                                    "participants, files, created, updated FROM jobs "
                                    "WHERE owner = ? ORDER BY created DESC", (owner,)).fetchall()
        return [_job(r) for r in rows]

    def unfinished(self) -> list[Job]:
        with self._lock:
            rows = self._db.execute("SELECT id, spec, owner, state, message, progress, "
                                    "participants, files, created, updated FROM jobs "
                                    "WHERE state IN ('queued', 'running')").fetchall()
        return [_job(r) for r in rows]

    def update(self, job_id: str, *, state: JobState | None = None, message: str | None = None,
               progress: dict[str, Any] | None = None, participants: list[str] | None = None,
               files: list[str] | None = None) -> None:
        changes: dict[str, Any] = {"updated": time.time()}
        if state is not None:
            changes["state"] = state.value
        if message is not None:
            changes["message"] = message
        if progress is not None:
            changes["progress"] = json.dumps(progress)
        if participants is not None:
            changes["participants"] = json.dumps(participants)
        if files is not None:
            changes["files"] = json.dumps(files)
        assignments = ", ".join(f"{name} = ?" for name in changes)
        with self._lock:
            self._db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?",
                             (*changes.values(), job_id))
            self._db.commit()

    def save_plan(self, job_id: str, plan: object) -> None:
        path = self.job_dir(job_id) / "plan.pickle"
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(pickle.dumps(plan))
        os.replace(tmp, path)

    def load_plan(self, job_id: str) -> Any:
        path = self.job_dir(job_id) / "plan.pickle"
        if not path.is_file():
            return None
        return pickle.loads(path.read_bytes())


def _job(row: tuple[Any, ...]) -> Job:
    return Job(id=row[0], spec=JobSpec.model_validate_json(row[1]), owner=row[2],
               state=JobState(row[3]), message=row[4], progress=json.loads(row[5]),
               participants=json.loads(row[6]), files=json.loads(row[7]), created=row[8],
               updated=row[9])
