"""The governance database: an engine and sessions for a node, migrated to the newest schema on
open.

SQLite (the embedded default, `NODE_DIR/governance.sqlite`) runs in WAL mode with a busy timeout,
and write transactions start with `BEGIN IMMEDIATE`: a writer takes the write lock before it
reads, so two writers queue up instead of one failing when it upgrades a read lock. PostgreSQL
(`access.database_url = "postgresql+psycopg://..."`) runs at READ COMMITTED, where the
compare-and-set updates of :mod:`genofed.access.dac` wait on the row lock and re-check.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Engine, create_engine, event, inspect, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.orm import Session, sessionmaker

from genofed.config.node import AccessSettings, NodeConfig, NodePaths, load_config
from genofed.errors import GovernanceDatabaseError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
#: The newest migration's revision. Opening an up-to-date database compares against this and
#: never imports Alembic (a third of a second on every command); a test checks it is the head.
SCHEMA_REVISION = "0004"
#: Key of the PostgreSQL advisory lock held while migrating (two processes may open at once).
_MIGRATION_LOCK = 0x67656E6F  # "geno"
_WRITE = "genofed_write"
_SQLITE_BUSY_MS = 30_000


def database_url(settings: AccessSettings, paths: NodePaths) -> str:
    """`access.database_url`, or the node's embedded SQLite file when that is empty."""
    return settings.database_url or f"sqlite:///{paths.governance_db}"


class GovernanceDB:
    """Engine and session factories for one governance database. Thread-safe; share one per
    process and `close()` it at shutdown."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise GovernanceDatabaseError(
                f"access.database_url {url!r} is not a database URL; use e.g. "
                "'postgresql+psycopg://user@host/db', or leave it empty for SQLite") from None
        self.url = url
        self.dialect = parsed.get_backend_name()
        self.engine = _create_engine(url, self.dialect)
        # Same pool, different begin statement (see _begin): one engine for reads, one for writes.
        self._write_engine = self.engine.execution_options(**{_WRITE: True})
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        if migrate:
            try:
                upgrade_to_head(self)
            except BaseException:
                self.engine.dispose()  # a refused database keeps no connection open
                raise

    @classmethod
    def for_node(cls, root: Path, config: NodeConfig | None = None) -> GovernanceDB:
        config = config or load_config(root)
        return cls(database_url(config.access, NodePaths(root, config)))

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A session for reading (rolled back at the end)."""
        with self._reader() as session:
            try:
                yield session
            finally:
                session.rollback()

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits when the block ends normally and rolls back otherwise."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """A Core connection in a write transaction (for migrations and bulk appends)."""
        with self._write_engine.begin() as connection:
            yield connection

    def close(self) -> None:
        self.engine.dispose()


def _create_engine(url: str, dialect: str) -> Engine:
    if dialect != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    engine = create_engine(url, connect_args={"timeout": _SQLITE_BUSY_MS / 1000,
                                              "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, say when transactions begin (see _begin).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in (f"busy_timeout={_SQLITE_BUSY_MS}", "foreign_keys=ON",
                       "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        _enter_wal(cursor)
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(_WRITE, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enter_wal(cursor: Any) -> None:
    """Switch the database to WAL mode (a no-op once any connection did: the mode is stored in
    the file). Switching takes an exclusive lock, and SQLite answers "database is locked" at once
    instead of calling the busy handler when another connection is opening the same new file,
    so the switch is retried here for as long as the busy timeout allows."""
    deadline = time.monotonic() + _SQLITE_BUSY_MS / 1000
    delay = 0.001
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.05)


def _alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The newest revision among the shipped migration scripts."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None, "no governance migrations shipped"
    return head


def current_revision(db: GovernanceDB) -> str | None:
    """The schema revision recorded in the database (None for an empty database)."""
    with db.engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return None
        version = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
        return str(version) if version is not None else None


def upgrade_to_head(db: GovernanceDB) -> None:
    """Bring the schema to the newest revision; a no-op (one read) when it already is."""
    current = current_revision(db)
    if current == SCHEMA_REVISION:
        return
    from alembic import command
    from alembic.script import ScriptDirectory

    known = {s.revision for s in ScriptDirectory.from_config(_alembic_config()).walk_revisions()}
    if current is not None and current not in known:
        raise GovernanceDatabaseError(
            f"governance database {db.engine.url.render_as_string(hide_password=True)} is at "
            f"schema revision {current!r}, which this genofed does not know (newest: "
            f"{SCHEMA_REVISION!r}); upgrade genofed")
    with db.write_connection() as connection:
        if db.is_postgresql:
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                               {"key": _MIGRATION_LOCK})
        # Another process may have migrated while we waited for the lock: alembic re-reads the
        # version inside this transaction and applies only what is missing.
        command.upgrade(_alembic_config(connection), "head")


def insert_new(session: Session, model: type[Any], rows: list[dict[str, Any]],
               keys: list[Any]) -> None:
    """Insert the `rows` whose `keys` are not in the table yet, leaving existing ones as they
    are (ON CONFLICT DO NOTHING, in SQLite's or PostgreSQL's dialect)."""
    if not rows:
        return
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    session.execute(insert(model).on_conflict_do_nothing(index_elements=keys), rows)
