"""The audit trail: every allow and deny, and every governance event, append-only and
hash-chained, with no personal data.

What it holds: each decision to release or refuse data (`action` = an
:class:`genofed.access.policy.Action`, e.g. `beacon.count`) and each governance event (an
:class:`genofed.access.events.GovernanceEvent`, e.g. `application.approve`, `visa.sign`), one
chain for both, so an auditor reads one story. Subjects are pseudonyms
(:mod:`genofed.access.pseudonyms`), never names, e-mails or raw `sub`s.

Record N stores `hash = sha256(prev_hash + canonical JSON of its fields)`, where the fields
include its sequence number N, and `prev_hash` is record N-1's hash (64 zeros for record 1).
`seal = HMAC-SHA256(key, hash)` with a key derived from the node's signing key, so someone who
can write to the database but not read the node's keys cannot recompute a plausible chain. The
`audit_head` row (the last seq, hash and seal) is updated in the same transaction as every
append, which makes a truncated or extended tail visible too.

Appends are group-committed: callers hand their record over and wait; one of them writes
everything pending in one transaction under the chain lock (`BEGIN IMMEDIATE` on SQLite, a row
lock on the head on PostgreSQL), so hundreds of decisions per second cost a few commits, and a
decision is only acted on once its record is durable. A change of governance state instead
appends its records inside its own transaction (:meth:`AuditLog.append_in`), under the same
chain lock, so the change and its record commit together or not at all.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import ColumnElement, Connection, Row, func, insert, select, update
from sqlalchemy.orm import Session

from genofed.access.db import GovernanceDB
from genofed.access.models import AuditHead, AuditRecord
from genofed.errors import AuditWriteError

GENESIS = "0" * 64
_SEAL_INFO = b"genofed audit seal v1"
_HASHED_FIELDS = ("seq", "at", "subject", "dataset_id", "action", "decision", "reason", "detail")


log = logging.getLogger(__name__)


def seal_key_from_signing_key(path: Path) -> bytes:
    """The audit seal key, derived from (never equal to) the node's ES256 signing key."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise ValueError(f"{path}: not an EC private key")
    secret = key.private_numbers().private_value.to_bytes(32, "big")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(secret)


def format_at(moment: datetime) -> str:
    """A time as the trail writes it (`at`): ISO 8601 UTC with microseconds and a Z, e.g.
    2025-03-01T12:00:00.000000Z. Fixed width, so text order is time order (filters compare text)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _now() -> str:
    return format_at(datetime.now(UTC))


@dataclass(frozen=True)
class AuditEntry:
    """One record as stored (and exported)."""

    seq: int
    at: str
    subject: str
    dataset_id: str | None
    action: str
    decision: str
    reason: str
    detail: str
    prev_hash: str
    hash: str
    seal: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))


def chain_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    canonical = json.dumps({k: fields[k] for k in _HASHED_FIELDS}, sort_keys=True,
                           separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + canonical).encode("utf-8")).hexdigest()


def _seal(key: bytes | None, message: str) -> str:
    return hmac.new(key, message.encode(), hashlib.sha256).hexdigest() if key else ""


def _head_seal(key: bytes | None, seq: int, hash_: str) -> str:
    return _seal(key, f"head:{seq}:{hash_}")


@dataclass(frozen=True)
class NewRecord:
    """A record to append; the log adds its time, sequence number, hashes and seal."""

    subject: str
    dataset_id: str | None
    action: str
    decision: str
    reason: str
    detail: str = ""

    def fields(self) -> dict[str, Any]:
        return {"at": _now(), "subject": self.subject, "dataset_id": self.dataset_id,
                "action": self.action, "decision": self.decision, "reason": self.reason,
                "detail": self.detail}


#: How long a record appended with `wait=False` may sit in the queue.
BACKGROUND_DELAY = 0.05


@dataclass
class _Pending:
    ticket: int
    fields: dict[str, Any]


class AuditLog:
    """Appends records to the chain; share one per process (it is thread-safe)."""

    def __init__(self, db: GovernanceDB, seal_key: bytes | None = None, *,
                 max_batch: int = 2000) -> None:
        self.db = db
        self.seal_key = seal_key
        self.max_batch = max_batch
        self._cond = threading.Condition(threading.Lock())
        self._pending: list[_Pending] = []
        self._next_ticket = 1
        self._resolved_through = 0  # every ticket up to this one is written or failed
        self._failures: dict[int, BaseException] = {}
        self._writing = False
        self._unwaited: set[int] = set()
        self._flusher: threading.Thread | None = None
        #: Records appended by this process, by (action, decision): what /metrics reports.
        self.decisions: Counter[tuple[str, str]] = Counter()

    def append(self, *, subject: str, dataset_id: str | None, action: str, decision: str,
               reason: str, detail: str = "", wait: bool = True) -> None:
        """Record one decision; returns once it is committed (raises AuditWriteError if not).

        With `wait=False` the record is queued and a background writer commits it within
        :data:`BACKGROUND_DELAY` seconds, together with whatever else is queued: for high-rate,
        low-stakes records (aggregate answers) where one commit per query would cap a node's
        throughput. A crash can lose at most that window of such records."""
        fields = NewRecord(subject, dataset_id, action, decision, reason, detail).fields()
        with self._cond:
            self.decisions[action, decision] += 1
            ticket = self._next_ticket
            self._next_ticket += 1
            self._pending.append(_Pending(ticket, fields))
            if not wait:
                self._unwaited.add(ticket)
                self._start_flusher()
                return
            self._wait_for(ticket)
            failure = self._failures.pop(ticket, None)
        if failure is not None:
            raise AuditWriteError(f"audit record not written: {failure}") from failure

    def append_in(self, session: Session, records: Iterable[NewRecord]) -> None:
        """Append `records` inside the caller's write transaction (a session from
        `GovernanceDB.write()` on this log's database), so they commit with the caller's
        changes or not at all, and are durable once that transaction commits.

        The chain lock is taken here and held until the caller commits: call this last in the
        transaction, after every other lock it takes (PostgreSQL: rows locked first, the head
        last, in every writer; SQLite: the transaction already holds the database's write lock,
        taken by `BEGIN IMMEDIATE`), and commit promptly."""
        items = [record.fields() for record in records]
        if not items:
            return
        with self._cond:
            self.decisions.update((item["action"], item["decision"]) for item in items)
        session.flush()  # the caller's own inserts first, before the chain lock is taken
        self._chain(session.connection(), items)

    def _start_flusher(self) -> None:
        """With the lock held: the background writer of queued records (one per log)."""
        if self._flusher is None or not self._flusher.is_alive():
            self._flusher = threading.Thread(target=self._flush_forever, name="audit-writer",
                                             daemon=True)
            self._flusher.start()

    def _flush_forever(self) -> None:
        while True:
            time.sleep(BACKGROUND_DELAY)
            with self._cond:
                if self._pending:
                    self._wait_for(self._next_ticket - 1)
                for ticket in [t for t in self._unwaited if t <= self._resolved_through]:
                    self._unwaited.discard(ticket)
                    failure = self._failures.pop(ticket, None)
                    if failure is not None:
                        log.error("audit record not written: %s", failure)

    def flush(self) -> None:
        """Write anything still pending (appends already wait for their own records)."""
        with self._cond:
            self._wait_for(self._next_ticket - 1)

    def _wait_for(self, ticket: int) -> None:
        """With the lock held: until `ticket` is resolved, write batches or wait for the writer."""
        while self._resolved_through < ticket:
            if self._writing:
                self._cond.wait()
                continue
            batch = self._pending[:self.max_batch]
            if not batch:  # cannot happen: an unresolved ticket is pending or being written
                raise AuditWriteError("audit queue out of step")
            del self._pending[:len(batch)]
            self._writing = True
            self._cond.release()
            failure: BaseException | None = None
            try:
                self._write(batch)
            except Exception as exc:  # every waiter in the batch learns of it
                failure = exc
            finally:
                self._cond.acquire()
                self._writing = False
            if failure is not None:
                for item in batch:
                    self._failures[item.ticket] = failure
            self._resolved_through = batch[-1].ticket
            self._cond.notify_all()

    def _write(self, batch: list[_Pending]) -> None:
        with self.db.write_connection() as connection:
            self._chain(connection, [item.fields for item in batch])

    def _chain(self, connection: Connection, items: list[dict[str, Any]]) -> None:
        """Link `items` to the chain's head and insert them, in `connection`'s transaction."""
        seq, prev = self._lock_head(connection)
        rows = []
        for item in items:
            seq += 1
            fields = {**item, "seq": seq}
            digest = chain_hash(prev, fields)
            rows.append({**fields, "prev_hash": prev, "hash": digest,
                         "seal": _seal(self.seal_key, digest)})
            prev = digest
        connection.execute(insert(AuditRecord), rows)
        connection.execute(update(AuditHead).where(AuditHead.id == 1).values(
            seq=seq, hash=prev, seal=_head_seal(self.seal_key, seq, prev)))

    @staticmethod
    def _lock_head(connection: Connection) -> tuple[int, str]:
        query = select(AuditHead.seq, AuditHead.hash).where(AuditHead.id == 1)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()  # SQLite: BEGIN IMMEDIATE already serialises writers
        row = connection.execute(query).one()
        return int(row.seq), str(row.hash)


# -- reading, exporting, verifying ---------------------------------------------------------------

#: Plain rows, not ORM objects: verifying a long log is dominated by per-row overhead.
_RECORDS = select(*AuditRecord.__table__.columns)


def _entry(row: Row[Any]) -> AuditEntry:
    return AuditEntry(**row._mapping)


def entries(db: GovernanceDB, *where: ColumnElement[bool]) -> Iterator[AuditEntry]:
    """All records (or those matching every condition in `where`, evaluated by the database) in
    sequence order, streamed."""
    with db.read() as session, session.execute(
            _RECORDS.where(*where).order_by(AuditRecord.seq)
            .execution_options(yield_per=2000)) as rows:
        for row in rows:  # a reader that stops early still closes the server-side cursor
            yield _entry(row)


def export_jsonl(db: GovernanceDB, out: TextIO) -> int:
    """Write every record as one JSON object per line; returns how many."""
    count = 0
    for entry in entries(db):
        out.write(entry.to_json() + "\n")
        count += 1
    return count


@dataclass(frozen=True)
class AuditProblem:
    #: "edited", "deleted", "inserted", "reordered", or "forged" (consistent chain, bad seal).
    kind: str
    #: The record at fault, in the database's current numbering.
    seq: int
    #: One sentence for a person: which record(s), what happened to them, and how that shows,
    #: e.g. "record 8 was edited: its content no longer matches its hash". It names the kind in
    #: words, so print it alone rather than after `kind`.
    message: str


@dataclass(frozen=True)
class VerifyReport:
    records: int
    head_hash: str
    problem: AuditProblem | None

    @property
    def ok(self) -> bool:
        return self.problem is None


def _fields(entry: AuditEntry, seq: int | None = None) -> dict[str, Any]:
    fields = {name: getattr(entry, name) for name in _HASHED_FIELDS}
    if seq is not None:
        fields["seq"] = seq
    return fields


def _intact(entry: AuditEntry) -> bool:
    return entry.hash == chain_hash(entry.prev_hash, _fields(entry))


def verify(db: GovernanceDB, seal_key: bytes | None = None) -> VerifyReport:
    """Check the whole chain (streamed); report the first record that is wrong and how.

    Without `seal_key` only the hash chain is checked (anyone could have recomputed it)."""
    prev, expected, count = GENESIS, 1, 0
    with db.read() as session:
        head = session.execute(select(AuditHead.seq, AuditHead.hash, AuditHead.seal)
                               .where(AuditHead.id == 1)).first()
        head_seq, head_sealed = _trusted_head(head, seal_key)
        rows = session.execute(_RECORDS.order_by(AuditRecord.seq)
                               .execution_options(yield_per=2000))
        for row in rows:
            entry = _entry(row)
            count += 1
            sealed = seal_key is None or hmac.compare_digest(entry.seal,
                                                             _seal(seal_key, entry.hash))
            if entry.seq == expected and entry.prev_hash == prev and _intact(entry) and sealed:
                prev, expected = entry.hash, expected + 1
                continue
            rows.close()  # the stream stops here: free its server-side cursor first
            classifier = _Classifier(session, head_seq if head_sealed else None)
            return VerifyReport(count, prev, classifier.classify(entry, expected, prev, sealed))
    last = expected - 1
    if head is None:
        return VerifyReport(count, prev, AuditProblem(
            "deleted", last, f"the chain head (table audit_head) was deleted (the log has "
            f"{last} intact record(s))"))
    problem = None
    if head_seq > last:
        problem = AuditProblem("deleted", last + 1, f"record(s) {last + 1}..{head_seq} were "
                               f"deleted from the end of the log (the chain head says "
                               f"{head_seq})")
    elif head_seq < last:
        problem = AuditProblem("inserted", head_seq + 1, f"record(s) {head_seq + 1}..{last} were "
                               f"inserted after the last record the node wrote ({head_seq})")
    elif head.hash != prev:
        problem = AuditProblem("edited", last, f"record {last} was edited: its hash differs "
                               "from the one the chain head recorded")
    elif not head_sealed:
        problem = AuditProblem("forged", last, f"the chain head (at record {last}) was forged: "
                               "it is not sealed by this node's key")
    return VerifyReport(count, prev, problem)


def _trusted_head(head: Any, seal_key: bytes | None) -> tuple[int, bool]:
    """The head's seq, and whether the node's key vouches for it (the genesis head needs none)."""
    if head is None:
        return 0, False
    seq = int(head.seq)
    if seal_key is None or (seq == 0 and head.hash == GENESIS):
        return seq, True
    return seq, hmac.compare_digest(head.seal, _head_seal(seal_key, seq, head.hash))


class _Classifier:
    """Why a record breaks a chain that is valid up to it; looks around it in the table.
    `head_seq` is the last record the node itself wrote, when the head can be trusted."""

    def __init__(self, session: Session, head_seq: int | None) -> None:
        self.session = session
        self.head_seq = head_seq
        top = session.scalar(select(func.max(AuditRecord.seq))) or 0
        total = session.scalar(select(func.count()).select_from(AuditRecord)) or 0
        # Bound for the search of a moved record's original number.
        self.limit = int(top) + int(total)

    def _after(self, seq: int) -> AuditEntry | None:
        row = self.session.execute(_RECORDS.where(AuditRecord.seq > seq)
                                   .order_by(AuditRecord.seq).limit(1)).first()
        return _entry(row) if row is not None else None

    def _hash_later(self, digest: str, seq: int) -> bool:
        return self.session.scalar(select(func.count()).select_from(AuditRecord).where(
            AuditRecord.hash == digest, AuditRecord.seq > seq)) != 0

    def _written_as(self, entry: AuditEntry) -> int | None:
        """The sequence number the entry's hash was computed with, if its content is intact."""
        if _intact(entry):
            return entry.seq
        return next((n for n in range(1, self.limit + 1)
                     if entry.hash == chain_hash(entry.prev_hash, _fields(entry, n))), None)

    def classify(self, entry: AuditEntry, expected: int, prev: str,
                 sealed: bool) -> AuditProblem:
        seq = entry.seq
        following = self._after(seq)
        # The next record links past this one: it was never part of the chain.
        skipped = following is not None and following.prev_hash == prev
        origin = self._written_as(entry)
        if origin is None:
            if skipped:
                return AuditProblem("inserted", seq, f"record {seq} was inserted: it is not part "
                                    f"of the chain (the record after it links to record "
                                    f"{expected - 1})")
            return AuditProblem("edited", seq, f"record {seq} was edited: its content no longer "
                                "matches its hash")
        if origin < seq:
            return AuditProblem("inserted", origin, f"record(s) {origin}..{seq - 1} were "
                                f"inserted: record {seq} was written as record {origin}")
        if origin > seq:
            if self._hash_later(entry.prev_hash, seq):
                return AuditProblem("reordered", seq, f"record {seq} was reordered: it was "
                                    f"written as record {origin}")
            return AuditProblem("deleted", seq, f"record(s) {seq}..{origin - 1} (as first "
                                "written) were deleted and later records renumbered")
        # The record is intact at its own number.
        if seq > expected:
            return AuditProblem("deleted", expected, f"record(s) {expected}..{seq - 1} were "
                                "deleted")
        if entry.prev_hash != prev:
            if sealed:  # a genuine record: the one before it was changed and re-hashed
                return AuditProblem("edited", expected - 1, f"record {expected - 1} was edited "
                                    f"and re-hashed: record {seq} no longer links to it")
            return AuditProblem("forged", seq, f"record {seq} was forged: it does not link to "
                                f"record {expected - 1} and is not sealed by this node's key")
        # A consistent chain that the node's key did not seal.
        if self.head_seq is not None and seq > self.head_seq:
            return AuditProblem("inserted", seq, f"record {seq} was inserted after the last "
                                f"record the node wrote ({self.head_seq})")
        if skipped:
            return AuditProblem("inserted", seq, f"record {seq} was inserted: the record after "
                                f"it links to record {expected - 1}")
        if following is not None and following.prev_hash != entry.hash:
            return AuditProblem("edited", seq, f"record {seq} was edited and re-hashed: record "
                                f"{following.seq} no longer links to it")
        return AuditProblem("forged", seq, f"record {seq} was forged: it is not sealed by this "
                            "node's key, so the chain was recomputed from here on (records edited "
                            "or inserted)")
