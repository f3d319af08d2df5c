"""The ``sessions`` table (Parquet, Glue) and the per-hour fragments it is built from.

Files (one per app per day, rewritten; never one per hour):

* ``insights/session-fragments/app_id=<app>/dt=<day>.parquet``: the sessions *within* each hour of
  the day (:func:`chalicelib.processing.sessions.chain` of the hour's deduplicated events), with an
  ``hour`` column. Internal state, not in Glue.
* ``tables/sessions/app_id=<app>/dt=<day>/sessions.parquet``: the sessions that **start** in the day
  (the Glue table ``sessions``, partitions ``app_id`` injected and ``dt`` the UTC day of the start).

:meth:`SessionsTable.update` replaces one hour's fragments, then rewrites the session files of the
day before, the day and the day after from the fragments of five days (two more on each side): a
session that starts in one of those days and lasts less than 24 hours is computed from all of its
fragments, and whether it continues one that started earlier is known. Each file is a function
of the fragments only, so the files are the same whichever order the hours are processed in, and
re-processing an hour rewrites the same bytes. (A chain of activity longer than a day may be cut
where the five days end.)

S3 requests per update: 5 GETs (fragment days; a missing day answers 404) + 1 PUT (the hour's day
of fragments) + at most 3 PUTs (session days that have fragments).
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from chalicelib.lake import layout
from chalicelib.lake.s3io import get_bytes
from chalicelib.processing.sessions import FRAGMENT_SCHEMA, chain, events_as_fragments, session_id

TABLE_NAME = "sessions"
TABLE_PREFIX = "tables/sessions"
FRAGMENTS_PREFIX = "insights/session-fragments"
DAY_MS = 24 * layout.HOUR_MS
#: The table's columns (``app_id`` and ``dt`` are its partitions, in the path).
SCHEMA = pa.schema([
    pa.field("session_id", pa.string(), nullable=False), pa.field("user_id", pa.string(), nullable=False),
    pa.field("session_start", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("session_end", pa.timestamp("ms", tz="UTC"), nullable=False),
    pa.field("duration_ms", pa.int64(), nullable=False), pa.field("events", pa.int64(), nullable=False),
    pa.field("entry_event_type", pa.string()), pa.field("exit_event_type", pa.string()),
])
STORED_FRAGMENTS = pa.schema([pa.field("hour", pa.string(), nullable=False), *FRAGMENT_SCHEMA])


def fragments_key(app_id: str, dt: str) -> str:
    return f"{FRAGMENTS_PREFIX}/app_id={app_id}/dt={dt}.parquet"


def sessions_key(app_id: str, dt: str) -> str:
    return f"{TABLE_PREFIX}/app_id={app_id}/dt={dt}/sessions.parquet"


def shift(dt: str, days: int) -> str:
    return (date.fromisoformat(dt) + timedelta(days=days)).isoformat()


def to_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue()


class SessionsTable:
    """Writes and reads one app's sessions (see the module docstring)."""

    def __init__(self, s3, bucket: str) -> None:
        self._s3, self._bucket = s3, bucket

    def _read(self, key: str) -> pa.Table | None:
        body = get_bytes(self._s3, self._bucket, key)
        return None if body is None else pq.read_table(io.BytesIO(body))

    def _put(self, key: str, table: pa.Table) -> None:
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=to_bytes(table))

    def update(self, app_id: str, dt: str, hour: str, events: pa.Table, gap_ms: int) -> int:
        """Replace the hour's fragments with those of ``events`` (the app's deduplicated events of the
        hour: user_id, event_time, event_id, event_type) and rewrite the affected session days.
        Returns the number of sessions written."""
        days = {shift(dt, d): self._read(fragments_key(app_id, shift(dt, d))) for d in range(-2, 3)}
        hour_fragments = chain(events_as_fragments(events["user_id"], epoch_ms(events["event_time"]),
                                                   events["event_id"], events["event_type"]), gap_ms)
        mine = pa.table({"hour": pa.array([hour] * hour_fragments.num_rows, pa.string()),
                         **{n: hour_fragments[n] for n in FRAGMENT_SCHEMA.names}}, schema=STORED_FRAGMENTS)
        kept = days[dt].filter(pc.not_equal(days[dt]["hour"], hour)) if days[dt] is not None else None
        days[dt] = pa.concat_tables([t for t in (kept, mine) if t is not None]).sort_by(
            [("hour", "ascending"), ("user_id", "ascending"), ("start_ms", "ascending")])
        self._put(fragments_key(app_id, dt), days[dt])
        present = [t.select(FRAGMENT_SCHEMA.names).cast(FRAGMENT_SCHEMA) for t in days.values() if t is not None]
        sessions = chain(pa.concat_tables(present), gap_ms)
        written = 0
        for offset in (-1, 0, 1):
            day = shift(dt, offset)
            if days[day] is None:
                continue  # no fragment starts there: no session either
            start = layout.hour_start_ms(day, "00")
            rows = sessions.filter(pc.and_(pc.greater_equal(sessions["start_ms"], start),
                                           pc.less(sessions["start_ms"], start + DAY_MS)))
            self._put(sessions_key(app_id, day), as_table_rows(app_id, rows))
            written += rows.num_rows
        return written

    def read(self, app_id: str, start_ms: int, end_ms: int) -> pa.Table:
        """The app's sessions starting in [start_ms, end_ms) (one GET per day)."""
        first = date.fromisoformat(layout.dt_hour(start_ms)[0])
        last = date.fromisoformat(layout.dt_hour(max(start_ms, end_ms - 1))[0])
        parts = []
        for n in range((last - first).days + 1):
            table = self._read(sessions_key(app_id, (first + timedelta(days=n)).isoformat()))
            if table is not None:
                parts.append(table.cast(SCHEMA))
        if not parts:
            return SCHEMA.empty_table()
        rows = pa.concat_tables(parts)
        moment = rows["session_start"].cast(pa.int64())
        return rows.filter(pc.and_(pc.greater_equal(moment, start_ms), pc.less(moment, end_ms)))


def epoch_ms(column) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz))
    return column.cast(pa.int64())


def as_table_rows(app_id: str, sessions: pa.Table) -> pa.Table:
    """Chained sessions -> rows of the table, sorted by start and user."""
    sessions = sessions.sort_by([("start_ms", "ascending"), ("user_id", "ascending")])
    ids = [session_id(app_id, u, s, e) for u, s, e in zip(sessions["user_id"].to_pylist(),
                                                          sessions["start_ms"].to_pylist(),
                                                          sessions["entry_event_id"].to_pylist())]
    moment = pa.timestamp("ms", tz="UTC")
    return pa.table({"session_id": pa.array(ids, pa.string()), "user_id": sessions["user_id"],
                     "session_start": sessions["start_ms"].cast(moment), "session_end": sessions["end_ms"].cast(moment),
                     "duration_ms": pc.subtract(sessions["end_ms"], sessions["start_ms"]),
                     "events": sessions["events"], "entry_event_type": sessions["entry_event_type"],
                     "exit_event_type": sessions["exit_event_type"]}, schema=SCHEMA)
