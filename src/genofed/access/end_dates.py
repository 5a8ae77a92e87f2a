"""A committee's end date for an approval: when the visas it issues expire instead of the
requested duration after approval.

A date means through that day (UTC); a date and time is taken as given. The end must be in the
future and no later than the requested number of days, counted from the day of approval through
the last one (so a form may offer today + duration as the default date).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time

from genofed.errors import GovernanceError

#: Kind of the history event that records a committee's end date on approval.
END_DATE_EVENT = "end-date"


def parse_end_date(text: str) -> date | datetime:
    """An end date as sent: an ISO date ("2026-03-31") or date and time
    ("2026-03-31T12:00:00Z"; UTC when it names no zone)."""
    text = text.strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text)
    except ValueError:
        raise GovernanceError(f"end date {text!r} is not an ISO date such as 2026-03-31 (or a "
                              "date and time such as 2026-03-31T12:00:00Z)") from None


def access_end(end: date | datetime) -> datetime:
    """When access ends: a date means through that day (UTC), so its last second; a datetime is
    taken as given (UTC when naive)."""
    if isinstance(end, datetime):
        return end.replace(tzinfo=UTC) if end.tzinfo is None else end.astimezone(UTC)
    return datetime.combine(end, day_time(23, 59, 59), UTC)


def latest_access_end(approved: datetime, duration_days: int) -> datetime:
    """The latest end an approval on `approved` may set: the requested number of days counted
    from that day, through the last one (the end date a committee's form offers by default)."""
    return access_end(approved.astimezone(UTC).date() + timedelta(days=duration_days))


def checked_end(end: datetime, now: datetime, duration_days: int) -> datetime:
    """`end` if an approval at `now` may set it, else a refusal that says what may be chosen."""
    latest = latest_access_end(now, duration_days)
    if end <= now:
        raise GovernanceError(f"the end date {end.isoformat()} has passed: choose a date from "
                              f"{now.date().isoformat()} to {latest.date().isoformat()}")
    if end > latest:
        raise GovernanceError(
            f"the end date {end.isoformat()} is after {latest.date().isoformat()}, the last day "
            f"of the {duration_days} days the applicant asked for: choose that day or earlier")
    return end
