"""Governance tables: applications and their event log, issued visas, the audit chain, and the
exposure ledger (membership evidence spent per individual, and the answers it was spent on).

Nothing here is rewritten in place except through a compare-and-set (an application's `state`,
a visa's `revoked_at`, the audit chain head); history lives in `application_events` and
`audit_records`, which are only ever appended to. The schema is created by the Alembic migrations
in :mod:`genofed.access.migrations`; a test checks they match these models.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: Stable constraint names, so migrations can refer to them on every backend.
NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend (SQLite has no time zones: store naive UTC)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: governance times must be timezone-aware UTC")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment: datetime = value
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class ApplicationState:
    """Where an application stands; only `submitted` can be decided."""

    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"
    RETURNED = "returned"


class Application(Base):
    __tablename__ = "applications"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    applicant_issuer: Mapped[str] = mapped_column(String(500))
    applicant_subject: Mapped[str] = mapped_column(String(255))
    #: DUO research-purpose / permission CURIEs describing the intended use.
    purpose_terms: Mapped[list[str]] = mapped_column(JSON)
    #: Disease CURIEs (MONDO) the research is about, for disease-specific (DS) datasets.
    purpose_diseases: Mapped[list[str]] = mapped_column(JSON)
    commercial: Mapped[bool] = mapped_column(Boolean)
    purpose_text: Mapped[str] = mapped_column(Text)
    duration_days: Mapped[int] = mapped_column(Integer)
    #: Changed only by `UPDATE ... WHERE state = <expected>`: the compare-and-set that makes two
    #: simultaneous decisions produce exactly one.
    state: Mapped[str] = mapped_column(String(16), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_applications_applicant", "applicant_issuer", "applicant_subject"),)


class ApplicationDataset(Base):
    """One dataset asked for, with the DUO matcher's pre-assessment at submission."""

    __tablename__ = "application_datasets"

    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), primary_key=True)
    dataset_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    assessment: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[str]] = mapped_column(JSON)


class ApplicationEvent(Base):
    """Append-only history of an application: submitted, approved, rejected, returned, ...

    `(application_id, seq)` is unique, so two writers can never both append event N."""

    __tablename__ = "application_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(24))
    #: "ISSUER|SUBJECT" of the researcher or DAC member who acted.
    actor: Mapped[str] = mapped_column(String(800))
    note: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (UniqueConstraint("application_id", "seq"),)


class Visa(Base):
    """A ControlledAccessGrants visa this node signed. Revocation sets `revoked_at` once."""

    __tablename__ = "visas"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    application_id: Mapped[str] = mapped_column(ForeignKey("applications.id"))
    dataset_id: Mapped[str] = mapped_column(String(128), index=True)
    subject_issuer: Mapped[str] = mapped_column(String(500))
    subject: Mapped[str] = mapped_column(String(255))
    #: Epoch seconds, as in the JWT (`iat`, `exp`).
    issued_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    revoked_by: Mapped[str | None] = mapped_column(String(800), nullable=True)
    #: The signed JWT, handed out as a passport visa.
    token: Mapped[str] = mapped_column(Text)

    __table_args__ = (
        # At most one visa per dataset per application, however many deciders race.
        UniqueConstraint("application_id", "dataset_id"),
        Index("ix_visas_subject", "subject_issuer", "subject"),
    )


class AuditRecord(Base):
    """One allow/deny decision on data, or one governance event (see
    :mod:`genofed.access.events` for how those fill the columns). `hash` = sha256(prev_hash +
    canonical JSON of the fields, seq included); `seal` = HMAC of `hash` under a key derived
    from the node's signing key."""

    __tablename__ = "audit_records"

    seq: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    #: ISO 8601 UTC with microseconds, kept as text so the hashed bytes never change.
    at: Mapped[str] = mapped_column(String(32))
    #: Pseudonym of the caller or of the person who acted (see :mod:`genofed.access.pseudonyms`),
    #: or "anonymous" / "operator"; never a name, e-mail or raw `sub`.
    subject: Mapped[str] = mapped_column(String(64))
    dataset_id: Mapped[str | None] = mapped_column(String(128), nullable=True)
    #: An `Action` (what data was asked for) or a `GovernanceEvent` value.
    action: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    seal: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """The chain's last record (one row, id 1), updated in the same transaction as each append:
    it is the writers' lock on PostgreSQL, and what shows a truncated or extended tail."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    hash: Mapped[str] = mapped_column(String(64))
    seal: Mapped[str] = mapped_column(String(64))


class ExposureSpent(Base):
    """Membership evidence (nats) that answers below record level have revealed about one
    individual, over all callers and all time (see :mod:`genofed.access.exposure`). Only ever
    increased."""

    __tablename__ = "exposure_spent"

    #: The individual's id in the node store (a study pseudonym, never a name).
    individual: Mapped[str] = mapped_column(String(255), primary_key=True)
    spent: Mapped[float] = mapped_column(Float)


class ReleasedAnswer(Base):
    """A count released below record level, by what was asked (a hash of dataset version, kind,
    alleles and selection): asked again, the same answer is given and nothing is spent."""

    __tablename__ = "released_answers"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer)


class QueryCount(Base):
    """Queries granted to one caller (a token's subject or an address) in one window of the
    node's query budget, over all its server processes (see :mod:`genofed.access.query_budget`)."""

    __tablename__ = "query_counts"

    caller: Mapped[str] = mapped_column(String(128), primary_key=True)
    #: Start of the window, in whole seconds since the epoch (a multiple of its length).
    window_start: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    granted: Mapped[int] = mapped_column(Integer)


class PortalSession(Base):
    """A browser session of the web portal, or a login under way (see
    :mod:`genofed.portal.sessions`). Kept here so that every server process of a node (or hub)
    shares them; the browser holds only a random token whose SHA-256 is `key`."""

    __tablename__ = "portal_sessions"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    #: "session" (logged in) or "login" (waiting for the issuer's redirect back).
    kind: Mapped[str] = mapped_column(String(16))
    #: The user as "ISSUER|SUBJECT" (empty while logging in).
    identity: Mapped[str] = mapped_column(String(512))
    #: What the session keeps: the user's name and access token, the CSRF token, the basket; or,
    #: while logging in, the PKCE verifier, nonce, browser binding and where to go afterwards.
    data: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[int] = mapped_column(BigInteger, index=True)
