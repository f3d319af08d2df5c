"""The duplicate rule of the lake, stated once (pure: no I/O, no clock).

Clients retry: an SDK that timed out re-sends the same event (same ``event_id``)
seconds or hours later, and a re-sent batch can carry shifted event times (the
server corrects ``event_time`` by the client's ``sent_at`` again). As Segment
does, duplicates are decided **by arrival, not by event time**:

    Copies of one ``(app_id, event_id)`` are ordered by ``received_at`` (ties by
    their position in the input). The first copy is kept. A later copy is a
    duplicate when it arrived less than :data:`DEDUPE_WINDOW_MS` (24 h) after the
    last kept copy; a copy arriving 24 h or more after it is a new event (and the
    copies after it are compared with it).

So whether a copy survives depends only on the copies of its id, never on which
hour partition or batch they landed in: raw-table compaction and finalization
apply this one function and agree row for row.
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

#: Copies of an event that arrive within this long after the kept copy are duplicates.
DEDUPE_WINDOW_MS = 24 * 3_600_000


def _ms(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    if pa.types.is_timestamp(column.type):
        column = column.cast(pa.timestamp("ms", tz=column.type.tz)).cast(pa.int64())
    return column.cast(pa.int64())


def kept_mask(app_ids: pa.Array | pa.ChunkedArray, event_ids: pa.Array | pa.ChunkedArray,
              received_at: pa.Array | pa.ChunkedArray, window_ms: int = DEDUPE_WINDOW_MS) -> pa.Array:
    """A boolean per row: True for the copies the rule keeps (see the module docstring)."""
    n = len(event_ids)
    if n == 0:
        return pa.array([], pa.bool_())
    table = pa.table({"a": app_ids, "e": event_ids, "r": _ms(received_at),
                      "i": pa.array(range(n), pa.int64())})
    counts = table.group_by(["a", "e"], use_threads=False).aggregate([("i", "count")])
    repeated = counts.filter(pc.greater(counts["i_count"], 1)).select(["a", "e"])
    keep = [True] * n
    if repeated.num_rows == 0:
        return pa.array(keep, pa.bool_())
    # Only ids with more than one copy need ordering: usually a tiny share of the rows.
    candidates = table.join(repeated, ["a", "e"], join_type="inner")
    candidates = candidates.sort_by([("a", "ascending"), ("e", "ascending"), ("r", "ascending"), ("i", "ascending")])
    apps, ids = candidates["a"].to_pylist(), candidates["e"].to_pylist()
    arrivals, rows = candidates["r"].to_pylist(), candidates["i"].to_pylist()
    previous, anchor = None, 0
    for app, event_id, arrived, row in zip(apps, ids, arrivals, rows):
        if (app, event_id) != previous:
            previous, anchor = (app, event_id), arrived
        elif arrived - anchor < window_ms:
            keep[row] = False
        else:
            anchor = arrived
    return pa.array(keep, pa.bool_())


def first_copies(events: pa.Table, window_ms: int = DEDUPE_WINDOW_MS) -> pa.Table:
    """The rows of ``events`` the duplicate rule keeps, in their input order."""
    if events.num_rows == 0:
        return events
    return events.filter(kept_mask(events["app_id"], events["event_id"], events["received_at"], window_ms))
