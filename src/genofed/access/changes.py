"""An operator's change to the node's settings, recorded in the audit trail before it is made
(write-ahead, see :func:`genofed.access.events.recorded`): trust, network membership, file
delivery. The committee's own changes are recorded by the committee (:mod:`.dac`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from genofed.access.events import OPERATOR, GovernanceEvent, format_detail, recorded
from genofed.access.governance import Governance


@contextmanager
def audited_change(node_dir: Path, event: GovernanceEvent, *, dataset_id: str | None = None,
                   **detail: object) -> Iterator[None]:
    """Record `event` (by the operator) in the node's audit trail, then run the block that
    makes the change; a failed change is recorded as not applied. `detail`: identifiers, URLs,
    codes and counts only (see :func:`genofed.access.events.format_detail`)."""
    governance = Governance.open(node_dir)
    try:
        with recorded(governance.audit, event, actor=OPERATOR, dataset_id=dataset_id,
                      detail=format_detail(**detail)):
            yield
    finally:
        governance.close()
