"""Sessions by inactivity gap (pure: arrays in, arrays out).

The rule: a user's events (of one app, duplicates removed, events without ``user_id`` left out),
ordered by ``(event_time, event_id)``, form one session as long as each event comes at most
``gap_ms`` after the previous one; an event more than ``gap_ms`` after the previous starts a new
session. So a late event that falls between two sessions, within ``gap_ms`` of both, makes them
one session (and a late event within ``gap_ms`` of one session only extends it).

A session: ``start`` = its first event's time, ``end`` = its last's, ``duration_ms`` = end - start,
``events``, ``entry_event_type`` / ``exit_event_type`` = the types of its first / last event
(ties in time ordered by ``event_id``), and a deterministic ``session_id``
(:func:`session_id`: of app, user, start and the first event's id).

Computed in two steps that give the same sessions as one pass over all events: :func:`chain` cuts
one hour's events into *fragments* (sessions within the hour), then :func:`chain` again joins the
fragments of many hours (a fragment that starts at most ``gap_ms`` after the previous one ended
continues its session). Fragments of different hours never overlap in time, so joining them by
the same rule is exact, and a fragment is recomputed whole when its hour is.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

DEFAULT_GAP_MS = 30 * 60_000
MIN_GAP_MS, MAX_GAP_MS = 60_000, 24 * 3_600_000

#: A fragment (and a session before its id): what :func:`chain` takes and gives.
FRAGMENT_SCHEMA = pa.schema([
    pa.field("user_id", pa.string(), nullable=False), pa.field("start_ms", pa.int64(), nullable=False),
    pa.field("end_ms", pa.int64(), nullable=False), pa.field("events", pa.int64(), nullable=False),
    pa.field("entry_event_id", pa.string()), pa.field("entry_event_type", pa.string()),
    pa.field("exit_event_type", pa.string()),
])


def events_as_fragments(user_id, event_time_ms, event_id, event_type) -> pa.Table:
    """Each event a one-event fragment (rows without a user left out)."""
    table = pa.table({"user_id": user_id, "start_ms": event_time_ms, "end_ms": event_time_ms,
                      "events": pa.array(np.ones(len(event_id), dtype=np.int64)),
                      "entry_event_id": event_id, "entry_event_type": event_type, "exit_event_type": event_type})
    table = table.filter(pc.is_valid(table["user_id"]))
    return table.cast(FRAGMENT_SCHEMA)


def chain(fragments: pa.Table, gap_ms: int) -> pa.Table:
    """Fragments joined by the gap rule: sorted by user, start, first event id; one row per session."""
    if fragments.num_rows == 0:
        return FRAGMENT_SCHEMA.empty_table()
    rows = fragments.sort_by([("user_id", "ascending"), ("start_ms", "ascending"), ("entry_event_id", "ascending")])
    users = rows["user_id"].to_numpy(zero_copy_only=False)
    start = rows["start_ms"].to_numpy()
    end = rows["end_ms"].to_numpy()
    # Within a user, starts ascend and fragments never overlap (events are one-event fragments;
    # fragments of different hours are disjoint), so the previous row's end is the session's end so far.
    new = np.ones(len(start), dtype=bool)
    new[1:] = (users[1:] != users[:-1]) | (start[1:] - end[:-1] > gap_ms)
    first = np.flatnonzero(new)
    last = np.append(first[1:] - 1, len(start) - 1)
    session_of = np.cumsum(new) - 1
    events = np.bincount(session_of, weights=rows["events"].to_numpy()).astype(np.int64)

    def take(name: str, at: np.ndarray) -> pa.ChunkedArray:
        return rows[name].take(pa.array(at))

    return pa.table({"user_id": take("user_id", first), "start_ms": take("start_ms", first),
                     "end_ms": take("end_ms", last), "events": pa.array(events, pa.int64()),
                     "entry_event_id": take("entry_event_id", first),
                     "entry_event_type": take("entry_event_type", first),
                     "exit_event_type": take("exit_event_type", last)}, schema=FRAGMENT_SCHEMA)


def session_id(app_id: str, user_id: str, start_ms: int, entry_event_id: str | None) -> str:
    """Deterministic: the same session (same first event) always gets the same id."""
    text = "\x1f".join((app_id, user_id, str(start_ms), entry_event_id or ""))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class SessionMetrics:
    sessions: int
    users: int
    events: int
    bounces: int
    #: sessions with one event / sessions (None without sessions)
    bounce_rate: float | None
    #: the median of the durations (the mean of the two middle ones for an even count), in seconds
    median_duration_s: float | None

    def to_dict(self) -> dict:
        return dict(vars(self))


def metrics(users: list[str], durations_ms: list[int], events: list[int]) -> SessionMetrics:
    n = len(durations_ms)
    bounces = sum(1 for e in events if e == 1)
    median = None
    if n:
        ordered = sorted(durations_ms)
        median = (ordered[(n - 1) // 2] + ordered[n // 2]) / 2 / 1000
    return SessionMetrics(n, len(set(users)), int(sum(events)), bounces, bounces / n if n else None, median)
