"""The governance schema comes from the Alembic migrations, on SQLite and PostgreSQL: they build
exactly the models' schema, are applied once however many processes open the database at the
same time, and a database newer than the code is refused."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from genofed.access.db import (
    SCHEMA_REVISION,
    GovernanceDB,
    current_revision,
    database_url,
    head_revision,
)
from genofed.access.models import Base
from genofed.config.node import load_config
from genofed.errors import GovernanceDatabaseError

if TYPE_CHECKING:
    from conftest import PostgresServer


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no schema at all."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'blank.sqlite'}"
    server: PostgresServer = request.getfixturevalue("postgres_server")
    return server.url(server.create_database())


def test_migrations_build_the_models_schema(blank_url: str) -> None:
    db = GovernanceDB(blank_url)
    try:
        assert current_revision(db) == head_revision() == SCHEMA_REVISION
        with db.engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            assert compare_metadata(context, Base.metadata) == []
    finally:
        db.close()


def test_simultaneous_opens_migrate_once(blank_url: str) -> None:
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_database() -> None:
        barrier.wait()
        try:
            GovernanceDB(blank_url).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_database) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    db = GovernanceDB(blank_url)
    with db.read() as session:
        assert session.execute(text("SELECT count(*) FROM audit_head")).scalar() == 1
    db.close()


def test_a_database_from_a_newer_genofed_is_refused(blank_url: str) -> None:
    db = GovernanceDB(blank_url)
    with db.write() as session:
        session.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
    db.close()
    with pytest.raises(GovernanceDatabaseError, match=r"9999_future.*upgrade genofed"):
        GovernanceDB(blank_url)


def test_a_bad_url_is_explained() -> None:
    with pytest.raises(GovernanceDatabaseError, match="not a database URL"):
        GovernanceDB("no such thing")


def test_the_node_default_is_sqlite_in_the_node_directory(node: Path) -> None:
    from genofed.config.node import NodePaths

    config = load_config(node)
    assert database_url(config.access, NodePaths(node, config)) == \
        f"sqlite:///{node / 'governance.sqlite'}"
    db = GovernanceDB.for_node(node)
    with db.read() as session:
        assert session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    db.close()
