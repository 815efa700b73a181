"""Durations and time ranges as messages say them: "2 min 05 s", "between 19:53 and 20:10 CET".

One place for both, so a history line, a job's notice, a notification and an incident report
say the same length of time the same way. Times are shown in a person's timezone when it is
known (Slack's IANA name, e.g. "Europe/Berlin"), with its abbreviation; else in UTC.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import structlog

log = structlog.get_logger(__name__)


def duration(length: timedelta | float) -> str:
    """Say a duration: "3 seconds", "2 min 05 s", "1 h 02 min"."""
    seconds = length.total_seconds() if isinstance(length, timedelta) else float(length)
    whole = max(0, math.floor(seconds + 0.5))  # half up: 2.5 s is "3 seconds", not round()'s 2
    if whole == 0:
        return "less than a second"
    if whole < 60:
        return f"{whole} second{'s' if whole != 1 else ''}"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest:02d} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole // 60, 60)
    return f"{hours} h {rest:02d} min" if rest else f"{hours} h"


def zone(name: str | None) -> tzinfo:
    """Return the timezone an IANA name means; UTC when it is missing or unknown."""
    if not name:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        # A wrong name must not cost the message: it is said in UTC instead.
        log.info("unknown timezone, UTC used", tz=name[:64])
        return UTC


def _aware(at: datetime) -> datetime:
    # Naive datetimes in this codebase are UTC that lost its tzinfo.
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def _abbreviation(at: datetime) -> str:
    """Name a local time's zone: "CET", "UTC"; an offset for zones without a name: "UTC-03"."""
    name = at.tzname() or "UTC"
    return f"UTC{name}" if name[0] in "+-" else name


def _day(at: datetime, with_year: bool) -> str:
    return f"{at.day} {at:%b}" + (f" {at.year}" if with_year else "")


def time_range(start: datetime, end: datetime, tz: str | None = None) -> str:
    """Say when something happened: "at 19:53 UTC", "between 19:53 and 20:10 CET", or with dates.

    Times are in `tz` (an IANA name) when it is a known zone, else in UTC. Dates appear
    only when the two times fall on different days there; a change of daylight saving
    time within the range names both zones.
    """
    where = zone(tz)
    first, last = sorted((_aware(start).astimezone(where), _aware(end).astimezone(where)))
    zones = (_abbreviation(first), _abbreviation(last))
    if first.replace(second=0, microsecond=0) == last.replace(second=0, microsecond=0):
        return f"at {first:%H:%M} {zones[0]}"
    times = [f"{first:%H:%M}", f"{last:%H:%M}"]
    if first.date() != last.date():
        with_year = first.year != last.year
        times = [
            f"{times[0]} on {_day(first, with_year)}",
            f"{times[1]} on {_day(last, with_year)}",
        ]
    if zones[0] != zones[1]:
        return f"between {times[0]} {zones[0]} and {times[1]} {zones[1]}"
    return f"between {times[0]} and {times[1]} {zones[0]}"
