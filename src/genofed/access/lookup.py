"""Applications and visas named by a unique prefix of their id, as an operator types them.

Ids are long (an application id is 32 hex digits, a visa's jti a 36-character UUID) and people
copy the first few characters from a listing, as they do with git commits. A prefix names the
one application (or visa) whose id starts with it; a prefix that several ids start with is
refused naming them, so a committee member never decides or revokes the wrong one. Matching is
done by the database (`LIKE 'prefix%'`, the prefix's `%`, `_` and escape character escaped) and
compared case-sensitively on every backend (SQLite's LIKE ignores ASCII case, PostgreSQL's does
not); at most a few candidates are ever read.
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import InstrumentedAttribute

from genofed.access.db import GovernanceDB
from genofed.access.models import Application, Visa
from genofed.errors import AmbiguousIdError, ApplicationNotFoundError

__all__ = ["MIN_PREFIX", "application_id", "visa_jti"]

#: A shorter prefix is too likely to name some other application than the one meant.
MIN_PREFIX = 4
#: How many candidates an ambiguous prefix names.
SHOWN = 5


def application_id(db: GovernanceDB, prefix: str) -> str:
    """The id of the one application whose id is or starts with `prefix`.

    ApplicationNotFoundError if none does (or the prefix is shorter than :data:`MIN_PREFIX` and
    not a whole id); AmbiguousIdError naming the candidates if several do."""
    return _unique(db, Application.id, prefix, what="application",
                   listing="genofed access list NODE_DIR")


def visa_jti(db: GovernanceDB, prefix: str) -> str:
    """The jti of the one visa of this node whose jti is or starts with `prefix` (see
    :func:`application_id`)."""
    return _unique(db, Visa.jti, prefix, what="visa",
                   listing="genofed access show NODE_DIR APPLICATION_ID")


def _unique(db: GovernanceDB, column: InstrumentedAttribute[str], prefix: str, *, what: str,
            listing: str) -> str:
    prefix = prefix.strip()
    with db.read() as session:
        if prefix and session.scalar(select(column).where(column == prefix)) is not None:
            return prefix
        if len(prefix) < MIN_PREFIX:
            raise ApplicationNotFoundError(
                f"no {what} {prefix!r}",
                hint=f"give the whole id or at least its first {MIN_PREFIX} characters; "
                     f"`{listing}` shows them")
        found = list(session.scalars(
            select(column)
            .where(column.startswith(prefix, autoescape=True),
                   func.substr(column, 1, len(prefix)) == prefix)
            .order_by(column).limit(SHOWN + 1)))
    if not found:
        raise ApplicationNotFoundError(f"no {what} {prefix!r} (no {what} id starts with it)",
                                       hint=f"`{listing}` shows the ids")
    if len(found) > 1:
        more = ", ..." if len(found) > SHOWN else ""
        how_many = f"more than {SHOWN}" if more else str(len(found))
        raise AmbiguousIdError(
            f"{what} id prefix {prefix!r} is ambiguous: {how_many} {what} ids start with it "
            f"({', '.join(found[:SHOWN])}{more})",
            hint=f"give more characters of the {what} id")
    return found[0]
