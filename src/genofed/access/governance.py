"""A node's governance, assembled: database, audit log, committee, visa signer and policy.

`Governance.open(node_dir)` is what `create_app` and the `genofed access` / `genofed audit`
commands use; the parts can also be built one by one (as the tests do) from a database URL.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from genofed.access.audit import AuditLog, seal_key_from_signing_key
from genofed.access.dac import Committee, DatasetLookup
from genofed.access.db import GovernanceDB, database_url
from genofed.access.enforcement import GovernancePolicy
from genofed.access.visas import VisaSigner
from genofed.config.live import LiveConfig
from genofed.config.node import NodeConfig, NodePaths, load_config
from genofed.store.metadata import DatasetMetadata


class ConfiguredMembers:
    """`access.dac_members` from node.toml as it is now (so `genofed access dac add` counts
    without a restart; an edit that breaks the file leaves the last valid list in force)."""

    def __init__(self, live: LiveConfig) -> None:
        self._live = live

    def __call__(self) -> Collection[str]:
        return tuple(self._live.current().access.dac_members)


@dataclass
class Governance:
    db: GovernanceDB
    audit: AuditLog
    signer: VisaSigner
    committee: Committee
    policy: GovernancePolicy

    @classmethod
    def open(cls, node_dir: Path, *, config: NodeConfig | None = None,
             datasets: DatasetLookup | None = None,
             live: LiveConfig | None = None) -> Governance:
        """The node's governance; `datasets` defaults to the node store's published metadata,
        and committee members follow node.toml (`live`, made here when not given)."""
        config = config or load_config(node_dir)
        live = live or LiveConfig(node_dir, config)
        paths = NodePaths(node_dir, config)
        db = GovernanceDB(database_url(config.access, paths))
        signer = VisaSigner.for_node(paths.signing_key, config)
        audit = AuditLog(db, seal_key_from_signing_key(paths.signing_key))
        committee = Committee(db, signer, members=ConfiguredMembers(live),
                              datasets=datasets or _store_lookup(node_dir, config), audit=audit)
        return cls(db, audit, signer, committee, GovernancePolicy(audit, committee.is_revoked))

    def close(self) -> None:
        self.audit.flush()
        self.db.close()


def _store_lookup(node_dir: Path, config: NodeConfig) -> DatasetLookup:
    from genofed.store.node import NodeStore

    store = NodeStore(node_dir, config)

    def lookup(dataset_id: str) -> DatasetMetadata:
        return store.dataset(dataset_id).metadata  # UnknownDatasetError is a KeyError

    return lookup
