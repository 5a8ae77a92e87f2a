"""What the committee workflow shows of itself: identities, and read-only views of applications,
their events and visas (as the CLI prints them and the /access API returns them)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from genofed.access.duo import Outcome, Purpose
from genofed.access.models import Visa
from genofed.access.pseudonyms import pseudonym
from genofed.errors import GovernanceError


@dataclass(frozen=True)
class Identity:
    """A researcher or DAC member: the token issuer and subject."""

    issuer: str
    subject: str

    @classmethod
    def parse(cls, value: str) -> Identity:
        """'ISSUER|SUBJECT' (split at the first '|': subjects may contain one, URLs do not)."""
        issuer, sep, subject = value.partition("|")
        if not sep or not issuer.strip() or not subject.strip():
            raise GovernanceError(f"{value!r} is not an identity of the form ISSUER|SUBJECT, "
                                  "e.g. 'https://login.example.org|researcher-42'")
        return cls(issuer.strip(), subject.strip())

    def __str__(self) -> str:
        return f"{self.issuer}|{self.subject}"

    @property
    def pseudonym(self) -> str:
        """How the audit trail names this person (see :mod:`genofed.access.pseudonyms`)."""
        return pseudonym(self.issuer, self.subject)


@dataclass(frozen=True)
class DatasetRequest:
    dataset_id: str
    assessment: Outcome
    reasons: tuple[str, ...]


@dataclass(frozen=True)
class EventView:
    seq: int
    kind: str
    actor: str
    note: str
    at: datetime


@dataclass(frozen=True)
class VisaView:
    jti: str
    application_id: str
    dataset_id: str
    subject: Identity
    issued_at: int
    expires_at: int
    revoked_at: datetime | None
    token: str

    def to_dict(self) -> dict[str, Any]:
        return {"jti": self.jti, "applicationId": self.application_id,
                "datasetId": self.dataset_id, "issuedAt": self.issued_at,
                "expiresAt": self.expires_at,
                "revokedAt": self.revoked_at.isoformat() if self.revoked_at else None,
                "visa": self.token}


@dataclass(frozen=True)
class ApplicationView:
    id: str
    applicant: Identity
    purpose: Purpose
    text: str
    duration_days: int
    state: str
    created_at: datetime
    updated_at: datetime
    datasets: tuple[DatasetRequest, ...]
    events: tuple[EventView, ...]
    visas: tuple[VisaView, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "applicant": str(self.applicant),
            "state": self.state,
            "purpose": {"terms": list(self.purpose.terms), "diseases": list(self.purpose.diseases),
                        "commercial": self.purpose.commercial, "text": self.text},
            "durationDays": self.duration_days,
            "createdAt": self.created_at.isoformat(),
            "updatedAt": self.updated_at.isoformat(),
            "datasets": [{"datasetId": d.dataset_id, "assessment": d.assessment.value,
                          "reasons": list(d.reasons)} for d in self.datasets],
            "events": [{"seq": e.seq, "kind": e.kind, "actor": e.actor, "note": e.note,
                        "at": e.at.isoformat()} for e in self.events],
            "visas": [v.to_dict() for v in self.visas],
        }


def visa_view(visa: Visa) -> VisaView:
    return VisaView(jti=visa.jti, application_id=visa.application_id, dataset_id=visa.dataset_id,
                    subject=Identity(visa.subject_issuer, visa.subject), issued_at=visa.issued_at,
                    expires_at=visa.expires_at, revoked_at=visa.revoked_at, token=visa.token)
