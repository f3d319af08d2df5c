"""Partial files laid out by app (chalicelib/processing/app_groups.py).

Rules: the file holds the same rows (sorted by app, window); no app is split across row groups; a
row group of several apps holds at most ``rows_per_group`` rows; ``groups_of_app`` finds exactly
the group of an app present and none for an app outside every group's app range; the bytes
are deterministic.
"""

from __future__ import annotations

import random

import pyarrow as pa
import pyarrow.parquet as pq

from chalicelib.processing.app_groups import encode_by_app, groups_of_app, row_groups


def table(seed: int = 1) -> pa.Table:
    rng = random.Random(seed)
    sizes = {f"app-{i:03d}": rng.choice([1, 3, 10, 40]) for i in range(60)} | {"big": 150}
    rows = [(app, 60_000 * rng.randrange(60), rng.randrange(100)) for app, n in sizes.items() for _ in range(n)]
    rng.shuffle(rows)
    return pa.table({"app_id": [r[0] for r in rows], "window_start": pa.array([r[1] for r in rows], pa.int64()),
                     "event_count": pa.array([r[2] for r in rows], pa.int64())})


def test_row_groups_hold_whole_apps_and_at_most_the_limit_unless_one_app_alone():
    data = encode_by_app(table(), rows_per_group=50)
    meta = pq.read_metadata(pa.BufferReader(data))
    seen: dict[str, int] = {}
    for i in range(meta.num_row_groups):
        apps = set(pq.ParquetFile(pa.BufferReader(data)).read_row_group(i)["app_id"].to_pylist())
        assert meta.row_group(i).num_rows <= 50 or len(apps) == 1
        for app in apps:
            assert app not in seen, f"{app} split over row groups {seen[app]} and {i}"
            seen[app] = i
    for app, group in seen.items():
        assert groups_of_app(meta, app) == [group]
    assert groups_of_app(meta, "absent-app") == [] and groups_of_app(meta, "zzz") == []
    assert meta.num_row_groups > 5


def test_the_file_holds_the_same_rows_sorted_by_app_and_is_deterministic():
    original = table()
    data = encode_by_app(original, rows_per_group=50)
    back = pq.read_table(pa.BufferReader(data))
    key = lambda r: (r["app_id"], r["window_start"], r["event_count"])  # noqa: E731
    assert sorted(back.to_pylist(), key=key) == sorted(original.to_pylist(), key=key)
    assert back["app_id"].to_pylist() == sorted(back["app_id"].to_pylist())
    assert encode_by_app(original, rows_per_group=50) == data


def test_row_groups_of_an_empty_table_is_empty():
    assert row_groups(table().slice(0, 0), 10) == []
    assert pq.read_table(pa.BufferReader(encode_by_app(table().slice(0, 0)))).num_rows == 0
