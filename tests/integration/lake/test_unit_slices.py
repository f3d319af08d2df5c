"""Finalization units: any split of an (app, hour) into slices gives the one-unit finals, row for row.

Events (with client re-sends: duplicates, some with shifted event times) go through the archive
consumer and the committer into the raw Iceberg table on moto; each slice reads its own pruned
range of the table (``RawTable.read_app_deduped``) and computes every metric
(``unit_rows.metric_rows``). The union of the slices' rows must equal the one-unit rows exactly:
counts, exact distinct counts, percentile sketches bucket for bucket, late counts.
"""

from __future__ import annotations

import random

import orjson
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, Phase, given, settings, strategies as st
from moto import mock_aws

from chalicelib.lake import layout
from chalicelib.lake.badrows import S3BadRowsSink
from chalicelib.lake.consumers import ArchiveService
from chalicelib.lake.final_rows import exact_distinct
from chalicelib.lake.raw_commit import StagedCommitter
from chalicelib.lake.state import StateStore
from chalicelib.lake.unit_inputs import ArchiveReader
from chalicelib.lake.unit_rows import metric_rows, unit_events
from chalicelib.lake.units import Unit
from chalicelib.processing import load_metrics
from chalicelib.runtime.clients import Clients
from chalicelib.runtime.settings import Settings
from eventpipe.local.bootstrap import bootstrap
from tests.factories.lake import T0, canonical_lines, lambda_batches, match_lines, raw_table_of

HOUR = layout.HOUR_MS


class Table:
    def __init__(self) -> None:
        self.clients = Clients(Settings())
        bootstrap(self.clients)
        s3, bucket = self.clients.s3, self.clients.settings.bucket
        self.metrics = load_metrics()
        state = StateStore(self.clients.dynamodb, self.clients.settings.state_table)
        self.archive = ArchiveService(s3, bucket, state, S3BadRowsSink(s3, bucket, "archive"))
        self.raw = raw_table_of(self.clients)
        self.committer = StagedCommitter(s3, bucket, self.raw, state)
        self.reader = ArchiveReader(s3, bucket, self.metrics, self.raw, state)


@pytest.fixture(scope="module")
def table():
    with mock_aws():
        yield Table()


def resent(lines: list[bytes], rng: random.Random, count: int) -> list[bytes]:
    """Client re-sends: the same event ids arriving later, some with shifted event times."""
    out = []
    for line in rng.sample(lines, min(count, len(lines))):
        event = orjson.loads(line)
        event["received_at"] += rng.randrange(1, 3_600_000)
        if rng.random() < 0.5:
            event["event_time"] += rng.randrange(-1_800_000, 1_800_000)
        out.append(orjson.dumps(event))
    return out


def finals(table: Table, app: str, slices: int, late: dict[str, pa.Table]) -> dict[str, list[dict]]:
    dt, hour = layout.dt_hour(T0)
    out: dict[str, list[pa.Table]] = {m.name: [] for m in table.metrics.metrics}
    for k in range(slices):
        unit = Unit(app, dt, hour, k, slices)
        events = unit_events(table.reader.raw_events(unit), table.metrics)
        for metric in table.metrics.metrics:
            out[metric.name].append(metric_rows(metric, events, unit.window_range, [late[metric.name]],
                                                [late[metric.name]]))
    keys = lambda m: ["window_start", *[k.name for k in m.keys]]  # noqa: E731
    return {m.name: pa.concat_tables(out[m.name]).sort_by([(c, "ascending") for c in keys(m)]).to_pylist()
            for m in table.metrics.metrics}


@settings(max_examples=6, deadline=None, derandomize=True, phases=(Phase.explicit, Phase.generate),
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000), count=st.integers(1, 300), resends=st.integers(0, 40),
       slices=st.integers(2, 7))
def test_any_split_of_an_app_hour_gives_the_one_unit_finals_row_for_row(table, seed, count, resends, slices):
    """Rule: slice k of n owns the windows starting in its part of the hour and reads every event
    of them, so the union of any n slices' finals equals the one-unit finals row for row."""
    app = f"prop-{seed}-{count}-{resends}-{slices}"
    rng = random.Random(seed)
    # Events from 10 minutes before the hour to 10 minutes after it: hopping windows cross both edges.
    lines = canonical_lines(count, seed=seed, start_ms=T0 - 600_000, app_id=app, duration_ms=HOUR + 1_200_000)
    lines += match_lines(max(1, count // 3), seed=seed + 1, start_ms=T0, app_id=app)
    lines += resent(lines, rng, resends)
    for batch in lambda_batches(lines, seed=seed):
        assert table.archive.handle(batch) == {"batchItemFailures": []}
    table.committer.run()
    dt, hour = layout.dt_hour(T0)
    whole = unit_events(table.reader.raw_events(Unit(app, dt, hour)), table.metrics)
    # Late counts carried over from partials: any per-row numbers (here random) must survive the split.
    late = {}
    for metric in table.metrics.metrics:
        rows = exact_distinct(whole, metric)
        late[metric.name] = rows.set_column(rows.schema.get_field_index("late_count"), "late_count",
                                            pa.array([rng.randrange(0, 5) for _ in range(rows.num_rows)],
                                                     rows.schema.field("late_count").type))
    one = finals(table, app, 1, late)
    assert sum(len(rows) for rows in one.values()) > 0
    assert finals(table, app, slices, late) == one


def test_a_slice_reads_only_its_range(table):
    """Rule: a slice's read is pruned to its event-time range (plus the longest window's overhang)."""
    app = "prop-range"
    lines = canonical_lines(400, seed=7, start_ms=T0, app_id=app, duration_ms=HOUR)
    for batch in lambda_batches(lines, seed=7):
        table.archive.handle(batch)
    table.committer.run()
    dt, hour = layout.dt_hour(T0)
    unit = Unit(app, dt, hour, 1, 4)
    start, end = unit.event_range(table.metrics)
    times = table.reader.raw_events(unit)["event_time"].cast(pa.int64()).to_pylist()
    assert times and all(start <= t < end for t in times)
    inside = sum(1 for line in lines if start <= orjson.loads(line)["event_time"] < end)
    assert len(times) == inside
