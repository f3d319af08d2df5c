"""The duplicate rule (chalicelib/processing/duplicates.py) against a plain reading of it.

Rule: copies of one (app_id, event_id) are taken in order of received_at, then position; the
first is kept; a later copy is dropped when it arrived less than 24 h after the last kept copy,
and kept (a new event) otherwise. A row without an id is no one's copy. The vectorized mask must
agree with this row for row, whether few ids are repeated (a batch) or every one (a unit reads
each row again with its copies), and whatever the chunking.
"""

from __future__ import annotations

import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from chalicelib.processing.duplicates import DEDUPE_WINDOW_MS, kept_mask

H = 3_600_000


def reference(apps: list, ids: list, arrivals: list) -> list[bool]:
    keep = [True] * len(ids)
    order = sorted(range(len(ids)), key=lambda i: (arrivals[i], i))
    anchors: dict[tuple, int] = {}
    for i in order:
        if apps[i] is None or ids[i] is None:
            continue
        key = (apps[i], ids[i])
        if key in anchors and arrivals[i] - anchors[key] < DEDUPE_WINDOW_MS:
            keep[i] = False
        else:
            anchors[key] = arrivals[i]
    return keep


ARRIVALS = st.one_of(st.sampled_from([0, 1, 23 * H, 24 * H - 1, 24 * H, 24 * H + 1, 48 * H, 49 * H]),
                     st.integers(0, 100 * H))
ROWS = st.lists(st.tuples(st.sampled_from(["a", "b", None]), st.sampled_from(["1", "2", "3", "4", "5", None]),
                          ARRIVALS), max_size=60)


@settings(max_examples=400, deadline=None)
@given(ROWS, st.booleans(), st.integers(1, 7))
def test_the_mask_is_the_rule_row_for_row(rows, read_twice, chunk):
    if read_twice:  # as a unit consults them: the rows, then every copy of them read again
        rows = rows + rows
    apps, ids, arrivals = (list(c) for c in zip(*rows)) if rows else ([], [], [])

    def chunked(values, type_):
        return pa.chunked_array([pa.array(values[i:i + chunk], type_) for i in range(0, len(values), chunk)]
                                or [pa.array([], type_)], type_)
    got = kept_mask(chunked(apps, pa.string()), chunked(ids, pa.string()), chunked(arrivals, pa.int64()))
    assert got.to_pylist() == reference(apps, ids, arrivals)


def test_timestamps_are_compared_in_milliseconds():
    arrivals = pa.array([0, (24 * H - 1) * 1000, 24 * H * 1000], pa.timestamp("us", tz="UTC"))
    got = kept_mask(pa.array(["a"] * 3), pa.array(["x"] * 3), arrivals)
    assert got.to_pylist() == [True, False, True]
