"""Helpers for the command line's output tests: a node with a committee and applications, a run
of the real command line on a terminal (a pseudo-terminal), and JSON from stdout."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from genofed.access.models import Application, ApplicationDataset, Visa
from tests.support import genofed

MEMBER = "https://login.example.org|dac-alice"
RESEARCHER = "https://login.example.org|researcher-1"
DATASET = "cli-cohort"
BOX = set("│┃━─┏┓┗┛┡┩╇┼┌┐└┘├┤┬┴")


def controlled_node(root: Path, vcf: Path) -> Path:
    """A node holding one controlled dataset (DUO general research use), with a committee
    member."""
    from genofed.config.node import init_node
    from genofed.ingest import ingest_dataset

    node = root / "node"
    init_node(node, node_id="cli-node", country="FI")
    metadata = root / "dataset.json"
    metadata.write_text(json.dumps({
        "id": DATASET, "name": "CLI cohort", "accessTier": "controlled",
        "dataUseConditions": {"duoDataUse": [{"id": "DUO:0000042"}]}}))
    ingest_dataset(node, DATASET, vcf, metadata=metadata, workers=1)
    genofed("access", "dac", "add", node, MEMBER, check=True)
    return node


def apply(node: Path, applicant: str = RESEARCHER) -> dict[str, Any]:
    """File an application through the command line; its JSON."""
    return as_json(genofed("access", "apply", node, "--applicant", applicant, "--dataset",
                           DATASET, "--purpose", "HMB", "--text", "Cardiac genetics",
                           "--days", "30", "--json", check=True))


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The one JSON document a command printed on stdout (the whole of stdout)."""
    return json.loads(result.stdout)


def insert_application(session: Any, application_id: str) -> None:
    """An application with a chosen id (ids are random: only so can two share a prefix)."""
    now = datetime.now(UTC)
    session.add(Application(
        id=application_id, applicant_issuer="https://login.example.org",
        applicant_subject="researcher-2", purpose_terms=["DUO:0000006"], purpose_diseases=[],
        commercial=False, purpose_text="Chosen id", duration_days=30, state="submitted",
        created_at=now, updated_at=now))
    session.flush()
    session.add(ApplicationDataset(application_id=application_id, dataset_id=DATASET,
                                   assessment="approve", reasons=[]))


def insert_visa(session: Any, jti: str, application_id: str, dataset_id: str) -> None:
    """A visa row with a chosen jti (not signed: only its id is looked at)."""
    now = int(datetime.now(UTC).timestamp())
    session.add(Visa(jti=jti, application_id=application_id, dataset_id=dataset_id,
                     subject_issuer="https://login.example.org", subject="researcher-2",
                     issued_at=now, expires_at=now + 86_400, token="not-a-jwt"))


def on_terminal(*args: str | Path, columns: int = 160, timeout: float = 120) -> str:
    """Run the command line with its stdout and stderr on a pseudo-terminal of `columns`
    columns; what it wrote there (ANSI styles removed, NO_COLOR set)."""
    controller, terminal = pty.openpty()
    env = {**os.environ, "COLUMNS": str(columns), "LINES": "50", "NO_COLOR": "1",
           "TERM": "dumb"}
    process = subprocess.Popen([sys.executable, "-m", "genofed", *map(str, args)],
                               stdin=subprocess.DEVNULL, stdout=terminal, stderr=terminal,
                               env=env)
    os.close(terminal)
    chunks: list[bytes] = []
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], timeout)
            if not ready:
                raise AssertionError(f"genofed {' '.join(map(str, args))}: no output for "
                                     f"{timeout} s")
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the terminal's other side closed (the process ended)
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(controller)
        returncode = process.wait(timeout=timeout)
    text = b"".join(chunks).decode("utf-8", errors="replace").replace("\r\n", "\n")
    assert returncode == 0, text
    return _without_escapes(text)


def _without_escapes(text: str) -> str:
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
