"""Daily index names: ``<prefix>-YYYY.MM.DD`` in UTC, by ``event_time``.

Pure logic. The prefix is a parameter (default ``events``) so that several
environments, tests or benchmarks can share one cluster without colliding.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta, timezone

DEFAULT_PREFIX = "events"
DAY_MS = 86_400_000
_EPOCH = date(1970, 1, 1)
_PREFIX_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it is a valid index-name prefix, else raise ValueError."""
    if not _PREFIX_RE.fullmatch(prefix):
        raise ValueError(f"index prefix {prefix!r} must match ^[a-z0-9][a-z0-9_-]{{0,63}}$")
    return prefix


def index_pattern(prefix: str = DEFAULT_PREFIX) -> str:
    """The wildcard pattern of all daily indices, e.g. ``events-*``."""
    return f"{check_prefix(prefix)}-*"


def day_of(epoch_ms: int) -> date:
    """The UTC calendar day holding ``epoch_ms`` (negative values are before 1970)."""
    return _EPOCH + timedelta(days=epoch_ms // DAY_MS)


def day_start_ms(day: date) -> int:
    return (day - _EPOCH).days * DAY_MS


def index_for_day(day: date, prefix: str = DEFAULT_PREFIX) -> str:
    return f"{prefix}-{day.year:04d}.{day.month:02d}.{day.day:02d}"


def index_for(event_time_ms: int, prefix: str = DEFAULT_PREFIX) -> str:
    """The daily index that holds an event, e.g. ``events-2026.11.25``."""
    return index_for_day(day_of(event_time_ms), prefix)


def parse_index_day(name: str, prefix: str = DEFAULT_PREFIX) -> date | None:
    """The day of a daily index name, or None for any other name (or an impossible date)."""
    match = re.fullmatch(re.escape(prefix) + r"-(\d{4})\.(\d{2})\.(\d{2})", name)
    if not match:
        return None
    try:
        return date(int(match[1]), int(match[2]), int(match[3]))
    except ValueError:  # e.g. events-2026.02.30
        return None


def days_covering(from_ms: int, to_ms: int) -> list[date]:
    """The UTC days that intersect the half-open interval ``[from_ms, to_ms)``, oldest first."""
    if to_ms <= from_ms:
        return []
    first, last = day_of(from_ms), day_of(to_ms - 1)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def indices_covering(from_ms: int, to_ms: int, prefix: str = DEFAULT_PREFIX) -> list[str]:
    """Concrete daily index names for ``[from_ms, to_ms)``, newest first."""
    return [index_for_day(d, prefix) for d in reversed(days_covering(from_ms, to_ms))]


def iso_date(epoch_ms: int) -> str:
    """``YYYY-MM-DD`` (UTC) of an epoch-ms instant; used for ``dt=`` partitions."""
    return day_of(epoch_ms).isoformat()


def ms_from_datetime(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime (exact, no float rounding)."""
    if value.tzinfo is None:
        raise ValueError("datetime has no time zone")
    delta = value.astimezone(timezone.utc) - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return delta.days * DAY_MS + delta.seconds * 1000 + delta.microseconds // 1000
