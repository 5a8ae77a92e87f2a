"""Alembic migrations of the governance database, run programmatically by
:func:`genofed.access.db.upgrade_to_head` (no alembic.ini needed)."""
