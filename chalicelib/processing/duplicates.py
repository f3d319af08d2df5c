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

import numpy as np
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
    """A boolean per row: True for the copies the rule keeps (see the module docstring).

    Vectorized: the copies of repeated ids are sorted by (app, id, arrival, position); a copy is kept
    when it starts its id's run, and an id whose copies all arrived within the window of its
    first copy keeps only that one. Only ids with copies 24 h or more apart (rare) walk their
    copies one by one. Memory stays a few arrays of ``n`` (no Python object per row): a unit
    consults every copy of its ids, itself included, so every id is repeated there."""
    n = len(event_ids)
    if n == 0:
        return pa.array([], pa.bool_())
    table = pa.table({"a": app_ids, "e": event_ids, "r": _ms(received_at),
                      "i": pa.array(np.arange(n, dtype=np.int64))})
    keep = np.ones(n, dtype=bool)
    counts = table.group_by(["a", "e"], use_threads=False).aggregate([("i", "count")])
    repeated = counts.filter(pc.greater(counts["i_count"], 1)).select(["a", "e"])
    del counts
    if repeated.num_rows == 0:
        return pa.array(keep)
    if repeated.num_rows < n // 4:  # a few repeated ids (a batch, a compaction): order their copies only
        table = table.join(repeated, ["a", "e"], join_type="inner")
    del repeated  # (in a unit every id is repeated: its rows and the copies read again, itself included)
    table = table.combine_chunks()
    candidates = table.take(pc.sort_indices(table, sort_keys=[("a", "ascending"), ("e", "ascending"),
                                                              ("r", "ascending"), ("i", "ascending")]))
    del table
    a, e = candidates["a"].combine_chunks(), candidates["e"].combine_chunks()
    starts = np.ones(len(e), dtype=bool)
    if len(e) > 1:
        same = pc.and_(pc.equal(e.slice(1), e.slice(0, len(e) - 1)), pc.equal(a.slice(1), a.slice(0, len(a) - 1)))
        starts[1:] = ~pc.fill_null(same, False).to_numpy(zero_copy_only=False)  # a null id is no one's copy
    arrivals = candidates["r"].to_numpy()
    rows = candidates["i"].to_numpy()
    run = np.cumsum(starts) - 1
    since_first = arrivals - arrivals[starts][run]
    keep[rows[~starts]] = False  # every later copy within the window of its id's first copy
    slow = np.unique(run[since_first >= window_ms])
    if slow.size:  # ids with copies 24 h or more after the first: the rule walks their copies in order
        in_slow = np.isin(run, slow)
        anchor, current = 0, -1
        for group, arrived, row in zip(run[in_slow].tolist(), arrivals[in_slow].tolist(), rows[in_slow].tolist()):
            if group != current:
                current, anchor = group, arrived
                keep[row] = True
            elif arrived - anchor < window_ms:
                keep[row] = False
            else:
                anchor = arrived
                keep[row] = True
    return pa.array(keep)


def first_copies(events: pa.Table, window_ms: int = DEDUPE_WINDOW_MS) -> pa.Table:
    """The rows of ``events`` the duplicate rule keeps, in their input order."""
    if events.num_rows == 0:
        return events
    return events.filter(kept_mask(events["app_id"], events["event_id"], events["received_at"], window_ms))
