"""Instants: the one parser of client time stamps, and the one formatter.

Every time in the pipeline is integer epoch milliseconds (UTC). Clients and
callers send ISO-8601 strings with a zone (``2026-01-01T12:00:00Z``,
``...+09:00``) and, where a field allows it, epoch milliseconds. Each caller
maps :class:`InvalidInstant` to its own typed error (a per-event error, a
400, a search parameter error), so the rules and messages are the same
everywhere.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

#: The latest instant accepted from anyone (9998-12-31T00:00:00Z): keeps date arithmetic
#: (windows, daily indices, a day added to a range) inside Python's calendar.
MAX_INSTANT_MS = 253370764800000
_RANGE_TEXT = "1970..9998"


class InvalidInstant(ValueError):
    """A value that is not an accepted instant; the message names the field and the rule."""


def parse_instant(value: Any, field: str, *, allow_epoch_ms: bool = False) -> int:
    """Parse an ISO-8601 instant with a zone (or, if allowed, integer epoch ms) to epoch ms.

    Args:
        value: the value as sent (a string, or an int when ``allow_epoch_ms``).
        field: the name shown in the error message.
        allow_epoch_ms: also accept a JSON integer of epoch milliseconds.

    Returns:
        Epoch milliseconds in ``0..MAX_INSTANT_MS``.

    Raises:
        InvalidInstant: naming the field and what is wrong.
    """
    expected = "an ISO-8601 string with a time zone" + (" or epoch milliseconds" if allow_epoch_ms else "")
    if isinstance(value, bool):
        raise InvalidInstant(f"{field} must be {expected}, got a boolean")
    if isinstance(value, int) and allow_epoch_ms:
        if not 0 <= value <= MAX_INSTANT_MS:
            raise InvalidInstant(f"{field} {value} is out of range for epoch milliseconds ({_RANGE_TEXT})")
        return value
    if not isinstance(value, str):
        raise InvalidInstant(f"{field} must be {expected}, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        hint = " (send '+' as %2B in a URL)" if " " in value else ""
        raise InvalidInstant(f"{field} {value[:64]!r} is not an ISO-8601 timestamp "
                             f"(e.g. 2026-11-25T09:00:00Z){hint}") from None
    if parsed.tzinfo is None:
        raise InvalidInstant(f"{field} {value[:64]!r} has no time zone (add 'Z' or an offset such as +09:00)")
    try:
        ms = int(parsed.timestamp() * 1000)
    except (OverflowError, ValueError):
        ms = -1
    if not 0 <= ms <= MAX_INSTANT_MS:
        raise InvalidInstant(f"{field} {value[:64]!r} is outside {_RANGE_TEXT}")
    return ms


def ms_to_iso(ms: int) -> str:
    """Format epoch milliseconds as ISO-8601 UTC with millisecond precision (``...T12:00:00.000Z``)."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_date(ms: int) -> str:
    """The UTC calendar day of epoch milliseconds, ``YYYY-MM-DD``."""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d")
