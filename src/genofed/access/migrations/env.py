"""Alembic environment: runs on the connection :func:`genofed.access.db.upgrade_to_head` passes
in `config.attributes["connection"]`, inside the transaction (and lock) it already holds."""

from __future__ import annotations

from alembic import context

from genofed.access.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("genofed migrations run through genofed.access.db.upgrade_to_head(), "
                       "which supplies the database connection")
# Batch mode lets later migrations ALTER tables on SQLite too (it rebuilds the table).
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
