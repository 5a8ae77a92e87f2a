"""The one policy function every API that releases data calls (Beacon, htsget, analyses).

`AccessPolicy.decide(principal, dataset, action)` answers allow/deny with a reason and writes the
decision to the audit log. Tiers (dataset metadata `accessTier`):

========== ===============================================================================
public     boolean answers for anyone
registered counts for a caller holding a ResearcherStatus visa (boolean otherwise)
controlled records, files and analyses for a caller holding a valid, unrevoked
           ControlledAccessGrants visa whose value is the dataset id (counts as registered)
========== ===============================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from genofed.access.principal import Principal
from genofed.store.metadata import DatasetMetadata


class Action(StrEnum):
    """What a caller asks a dataset to release."""

    BEACON_BOOLEAN = "beacon.boolean"
    BEACON_COUNT = "beacon.count"
    BEACON_RECORD = "beacon.record"
    #: variants with their allele frequencies, where the dataset publishes them
    BEACON_FREQUENCIES = "beacon.frequencies"
    HTSGET_TICKET = "htsget.ticket"
    HTSGET_DATA = "htsget.data"
    ANALYSIS = "analysis"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    #: Short, human-readable, no personal data: goes to the audit log and error messages.
    reason: str


class AccessPolicy(Protocol):
    def decide(self, principal: Principal | None, dataset: DatasetMetadata, action: Action, *,
               detail: str = "") -> Decision:
        """Allow or deny `action` on `dataset` for `principal` (None = anonymous), and audit it.
        `detail` (e.g. the region of an htsget ticket) goes into the audit record."""
        ...

    def refuse(self, principal: Principal | None, dataset: DatasetMetadata, action: Action,
               reason: str, *, detail: str = "") -> None:
        """Audit a refusal decided outside the access rules (e.g. a dataset that releases files
        only encrypted, asked for them plain), as the deny it is."""
        ...

    def deny_unauthenticated(self, dataset_id: str | None, action: Action, reason: str) -> None:
        """Audit a request refused before a principal existed (bad token: alg none, expired,
        untrusted jku, ...)."""
        ...
