"""The policy every data-releasing API asks (Beacon, htsget, analyses): tiers, researcher status,
ControlledAccessGrants visas and their revocation, with every answer written to the audit log.

Implements :class:`genofed.access.policy.AccessPolicy`. Revocation is read from the governance
database on every request that relies on a visa, so a revoke (from the HTTP API or the CLI, in
any process) takes effect on the very next request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from genofed.access.audit import AuditLog
from genofed.access.policy import Action, Decision
from genofed.access.principal import Grant, Principal
from genofed.store.metadata import AccessTier, AlleleFrequencyRelease, DatasetMetadata

ANONYMOUS = "anonymous"

#: How much an action reveals: 0 boolean, 1 count, 2 records/files/analyses.
_LEVEL = {
    Action.BEACON_BOOLEAN: 0,
    Action.BEACON_COUNT: 1,
    Action.BEACON_RECORD: 2,
    Action.BEACON_FREQUENCIES: 0,
    Action.HTSGET_TICKET: 2,
    Action.HTSGET_DATA: 2,
    Action.ANALYSIS: 2,
}
#: The most each tier ever reveals, whoever asks.
_CEILING = {AccessTier.PUBLIC: 0, AccessTier.REGISTERED: 1, AccessTier.CONTROLLED: 2}


class GovernancePolicy:
    """`decide()` and `deny_unauthenticated()` as the access layer's one policy."""

    def __init__(self, audit: AuditLog, is_revoked: Callable[[str], bool], *,
                 clock: Callable[[], float] = time.time) -> None:
        """`is_revoked(jti)` answers from the governance database (e.g.
        :meth:`genofed.access.dac.Committee.is_revoked`)."""
        self.audit = audit
        self.is_revoked = is_revoked
        self.clock = clock

    def decide(self, principal: Principal | None, dataset: DatasetMetadata, action: Action, *,
               detail: str = "") -> Decision:
        """Judge and audit. Denials and record-level releases return only once their audit
        record is committed (AuditWriteError propagates: nothing may be released); allowed
        aggregate answers are committed in the background within 50 ms."""
        decision = self._judge(principal, dataset, Action(action))
        # Records, files and analyses are released only once their audit record is committed,
        # and so are denials. Boolean and count answers (hundreds a second on a busy Beacon) are
        # committed by the log's background writer within 50 ms instead of one commit each.
        aggregate = decision.allowed and _LEVEL[Action(action)] < 2
        self.audit.append(subject=principal.pseudonym if principal else ANONYMOUS,
                          dataset_id=dataset.id, action=str(action),
                          decision="allow" if decision.allowed else "deny",
                          reason=decision.reason, detail=detail, wait=not aggregate)
        return decision

    def refuse(self, principal: Principal | None, dataset: DatasetMetadata, action: Action,
               reason: str, *, detail: str = "") -> None:
        self.audit.append(subject=principal.pseudonym if principal else ANONYMOUS,
                          dataset_id=dataset.id, action=str(action), decision="deny",
                          reason=reason, detail=detail)

    def deny_unauthenticated(self, dataset_id: str | None, action: Action, reason: str) -> None:
        self.audit.append(subject=ANONYMOUS, dataset_id=dataset_id, action=str(action),
                          decision="deny", reason=f"unauthenticated: {reason}")

    def _judge(self, principal: Principal | None, dataset: DatasetMetadata,
               action: Action) -> Decision:
        tier = dataset.access_tier
        if action is Action.BEACON_FREQUENCIES:
            if dataset.allele_frequencies is AlleleFrequencyRelease.PUBLIC:
                return Decision(True, "the dataset publishes its allele frequencies to anyone")
            return Decision(False, "the dataset does not publish its allele frequencies")
        level = _LEVEL[action]
        if level > _CEILING[tier]:
            most = {0: "boolean answers", 1: "counts"}[_CEILING[tier]]
            return Decision(False, f"{tier.value}-tier dataset releases at most {most}")
        if level == 0:
            return Decision(True, f"{tier.value}-tier dataset answers booleans to anyone")
        if principal is None:
            return Decision(False, "anonymous caller: counts and records need a login")
        now = self.clock()
        if principal.expires <= now:
            return Decision(False, "the caller's token or passport has expired")
        if level == 1 and principal.researcher:
            return Decision(True, "counts for a holder of a ResearcherStatus visa")
        grant = principal.grant_for(dataset.id)
        if grant is None:
            problem = "no ControlledAccessGrants visa for this dataset"
        else:
            problem = self._grant_problem(grant, now) or ""
            if not problem:
                what = "counts" if level == 1 else "records, files and analyses"
                return Decision(True, f"{what} for a holder of a valid ControlledAccessGrants "
                                f"visa for this dataset ({_visa_name(grant)})")
        if level == 1:
            problem = f"counts need a ResearcherStatus visa, and {problem}"
        return Decision(False, problem + _ignored(principal))

    def _grant_problem(self, grant: Grant, now: float) -> str | None:
        if grant.expires <= now:
            return (f"the ControlledAccessGrants visa for this dataset has expired "
                    f"({_visa_name(grant)})")
        if grant.visa_id is not None and self.is_revoked(grant.visa_id):
            return (f"the ControlledAccessGrants visa for this dataset was revoked "
                    f"({_visa_name(grant)})")
        return None


def _visa_name(grant: Grant) -> str:
    return f"visa {grant.visa_id}" if grant.visa_id else "visa without jti"


def _ignored(principal: Principal) -> str:
    """Why the identity layer dropped visas, which often explains a deny."""
    if not principal.ignored_visas:
        return ""
    return "; visas ignored: " + "; ".join(principal.ignored_visas[:5])
