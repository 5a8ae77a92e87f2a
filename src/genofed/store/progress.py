"""Progress of the ingests under way on a node, where a server can read it: one small JSON file
per dataset being written (`datasets/<id>/.ingest-progress.json`), replaced atomically as the
ingest goes and removed when it ends, whichever way it ends.

Ingest runs in its own process (the CLI, or a worker of the operator's scheduler); the server
reports these files on `/metrics`. A file left by an ingest that was killed is recognised as
stale: its writer's process is gone.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

PROGRESS_FILE = ".ingest-progress.json"
#: At most one write per this many seconds (the last step of a stage is always written).
_INTERVAL = 0.5


@dataclass(frozen=True)
class IngestProgress:
    dataset_id: str
    stage: str  # "parse" (units: bytes of input) or "write" (genotype chunks)
    done: int
    total: int
    started: float  # Unix time the ingest began
    updated: float


class ProgressFile:
    """The progress file of one dataset's ingest (the writer holds the dataset's lock)."""

    def __init__(self, dataset_root: Path) -> None:
        self.path = dataset_root / PROGRESS_FILE
        self.started = time.time()
        self._last = 0.0

    def report(self, stage: str, done: int, total: int) -> None:
        now = time.time()
        if now - self._last < _INTERVAL and done < total:
            return
        self._last = now
        body = {"stage": stage, "done": done, "total": total, "started": self.started,
                "updated": now, "pid": os.getpid()}
        tmp = self.path.with_name(f"{PROGRESS_FILE}.{os.getpid()}")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def ingests_under_way(datasets_dir: Path) -> list[IngestProgress]:
    """The ingests writing a dataset of this node now, by dataset id."""
    found = []
    for path in sorted(datasets_dir.glob(f"*/{PROGRESS_FILE}")):
        root = path.parent
        try:
            body = json.loads(path.read_text())
            if not _running(int(body["pid"])):
                continue  # left by an ingest that died
            found.append(IngestProgress(root.name, str(body["stage"]), int(body["done"]),
                                        int(body["total"]), float(body["started"]),
                                        float(body["updated"])))
        except (OSError, ValueError, KeyError, TypeError):
            continue  # replaced or removed while read
    return found


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
