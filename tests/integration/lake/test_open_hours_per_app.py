"""One app's read of its open hours (partials) does not read the other apps' rows of the same files.

Rule (issue 20, item 4; chalicelib/processing/app_groups.py): the same Lambda batches, once with the
target app's events only and once mixed with 1,000 other apps' events (so the partial files have
the same keys in both lakes), read for the target app. Per partial file the mixed lake may cost at
most one more GET (the ranged GET of the app's row groups after the footer's suffix GET) and at
most ``TAIL_BYTES`` (the suffix holding the footer) plus ``ROWS_PER_GROUP`` rows' worth more bytes
(the other apps' rows sharing the target's row group), however much data the other apps put in
the files; the target's answer is the same.
"""

from __future__ import annotations

import functools
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from chalicelib.lake import layout
from chalicelib.lake.rollups import FileCache, read_windows_status
from chalicelib.processing.app_groups import ROWS_PER_GROUP, TAIL_BYTES
from chalicelib.stream import codec
from tests.conftest import kinesis_record
from tests.factories.lake import T0, canonical_lines
from tests.integration.lake.test_lake_processing import HOUR, Lake

BATCHES = 4
OTHERS = 1000
METRICS = ("event_counts", "active_users_5m")


def batches(lines_by_batch: list[list[bytes]]) -> list[list[dict]]:
    """One Lambda batch per list of lines (25 lines a record), sequence numbers fixed by position."""
    out = []
    for i, lines in enumerate(lines_by_batch):
        out.append([kinesis_record(codec.pack(lines[j:j + 25])[0].data, "shardId-000000000000", 1000 * i + j)
                    for j in range(0, len(lines), 25)])
    return out


class Traffic:
    """S3 requests and GetObject body bytes of a client."""

    def __init__(self, s3) -> None:
        self.requests, self.bytes = 0, 0
        s3.meta.events.register("before-call.s3", self._call)
        s3.meta.events.register("after-call.s3.GetObject", self._got)

    def _call(self, **_) -> None:
        self.requests += 1

    def _got(self, parsed, **_) -> None:
        self.bytes += parsed.get("ContentLength", 0) or 0


@functools.lru_cache(maxsize=2)
def read_target(with_others: bool) -> dict:
    target = canonical_lines(400, seed=1, app_id="aa-target")
    per_batch = [target[i::BATCHES] for i in range(BATCHES)]
    if with_others:
        others = [line for n in range(OTHERS) for line in canonical_lines(30, seed=100 + n, app_id=f"app-{n:04d}")]
        random.Random(5).shuffle(others)
        per_batch = [sorted(mine + others[i::BATCHES]) for i, mine in enumerate(per_batch)]
    with mock_aws():
        lake = Lake()
        for batch in batches(per_batch):
            lake.aggregation.handle(batch)
        out = {}
        for name in METRICS:
            metric = lake.metrics[name]
            files = lake.keys(layout.rollup_prefix(metric, "partial"))
            stored = [lake.s3.get_object(Bucket=lake.bucket, Key=key)["Body"].read() for key in files]
            rows_stored = sum(pq.read_metadata(pa.BufferReader(body)).num_rows for body in stored)
            traffic = Traffic(lake.s3)
            rows = read_windows_status(lake.s3, lake.bucket, metric, T0, T0 + HOUR, "aa-target", cache=FileCache()).rows
            out[name] = {"rows": rows.to_pylist(), "files": len(files), "stored": sum(map(len, stored)),
                         "bytes_per_row": sum(map(len, stored)) / rows_stored,
                         "requests": traffic.requests, "bytes": traffic.bytes}
        return out


@pytest.mark.parametrize("name", METRICS)
def test_one_apps_open_hours_cost_does_not_grow_with_other_apps_data(name):
    alone, crowded = read_target(False)[name], read_target(True)[name]
    assert crowded["rows"] == alone["rows"] and alone["rows"]
    assert crowded["files"] == alone["files"] >= BATCHES  # the same keys: a file per batch and hour
    # Per file: the suffix GET, plus the app's row group: its own rows (what the alone lake read) and
    # fewer than ROWS_PER_GROUP rows of other apps.
    bound = alone["bytes"] + crowded["files"] * (TAIL_BYTES + ROWS_PER_GROUP * crowded["bytes_per_row"])
    # The other apps' data is well over the bound: reading the files whole would fail the test.
    assert crowded["stored"] > 1.5 * bound, (crowded["stored"], bound)
    assert crowded["bytes"] <= bound, (crowded["bytes"], alone["bytes"])
    assert crowded["requests"] <= alone["requests"] + crowded["files"], (crowded["requests"], alone["requests"])
