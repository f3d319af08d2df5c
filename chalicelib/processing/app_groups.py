"""Partial files laid out by app: rows sorted by ``app_id``, whole apps per Parquet row group.

Why (issue 20, item 4): a partial file holds one Lambda batch of one metric and hour, and a batch
mixes every app that sent events in it. A reader of one app's open hours read each such file
whole, so its bytes (and decode time) grew with every other app's recent traffic (tenant-scaling
bench: p95 2.8-3.2x for 1 vs 1,001 apps).

The options, counted at 1,001 active apps, 10 shards, one batch per shard per second, 5 metrics
(36,000 batches an hour; S3 GET $0.0004/1k, PUT $0.005/1k):

* **Per-app partial files** (one object per app per batch per metric): up to 1,001 x 5 PUTs per
  batch instead of 5, about 180M PUTs an hour ($900/hour) where the batches mix the apps; only
  cheap when a batch holds few apps, and a batch of a busy shard never does. Rejected: the
  writer's cost must not grow with the number of apps in a batch.
* **Per-minute compaction of partials by app**: a scheduled job re-reads every partial (36,000
  GETs/hour, cheap) and writes one object per (app, metric, minute): 1,001 x 5 x 60 = 300k PUTs an
  hour ($1.50/hour, ~$1,100/month) plus a job, a schedule and a third reader rule (compacted,
  then not-yet-compacted partials, then finals) to keep exact under the finalizer's deletes.
  It would also bound the *listing* (see below), but it is a new moving part of its own.
* **App-sorted row groups read by range** (chosen): the same objects, keys and PUTs as before (one
  per batch per metric per hour: the finalizer lists and reads them whole, unchanged); inside,
  rows are sorted by app and cut into row groups of whole apps of at most ``ROWS_PER_GROUP`` rows,
  so each row group's ``app_id`` min/max statistics in the footer index the apps. One app's read
  makes one suffix GET per file (the last ``TAIL_BYTES``: the footer, or the whole file when it is
  small), then, only when the footer says the app has rows there and they were not in that tail,
  one ranged GET of the app's row groups. Extra cost: at most one more GET per file an app has
  rows in ($0.0004 per 1,000 files); no extra PUT.

Bound (what ``tests/integration/lake/test_open_hours_per_app.py`` holds): per partial file, a
one-app read fetches at most ``TAIL_BYTES`` + the app's row group, which holds its rows and fewer
than ``ROWS_PER_GROUP`` rows of other apps (none when the app has that many); requests per file <= 2 (3 for
a footer larger than the tail). What still grows with the other apps' traffic: the listing of
the open hours (one page per 1,000 files) and the footer GETs of files where the app is absent;
bounding those needs the compaction above (or per-app keys), a follow-up if open hours of 36,000
files each become the case.
"""

from __future__ import annotations

import io
from typing import Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

#: Most rows of a row group of several apps (an app is never split: a larger app has a group of its own).
ROWS_PER_GROUP = 1024
#: Bytes of a one-app read's first (suffix) GET of a partial file: its footer, whole small files.
TAIL_BYTES = 16 * 1024
APP_COLUMN = "app_id"


def _app_runs(table: pa.Table) -> Iterator[tuple[int, int]]:
    """(offset, length) of each app's rows in a table sorted by app."""
    runs = pc.value_counts(table[APP_COLUMN].combine_chunks())  # in order of first appearance
    offset = 0
    for count in runs.field("counts").to_pylist():
        yield offset, count
        offset += count


def row_groups(table: pa.Table, rows_per_group: int) -> list[tuple[int, int]]:
    """(offset, length) of the row groups of a table sorted by app: whole apps, at most
    ``rows_per_group`` rows unless one app alone has more (then that app alone)."""
    groups, start, end = [], 0, 0
    for offset, count in _app_runs(table):
        if end > start and end - start + count > rows_per_group:
            groups.append((start, end - start))
            start = offset
        end = offset + count
    if end > start:
        groups.append((start, end - start))
    return groups


def encode_by_app(table: pa.Table, rows_per_group: int = ROWS_PER_GROUP, compression: str = "zstd") -> bytes:
    """Parquet bytes of ``table`` (schema metadata kept), sorted by (app, window), in the row groups of
    :func:`row_groups`, with min/max statistics of ``app_id`` and ``window_start`` only (the footer
    stays small: about 0.7 KB per row group). Deterministic."""
    if table.num_rows:
        table = table.take(pc.sort_indices(table, [(APP_COLUMN, "ascending"), ("window_start", "ascending")]))
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, table.schema, compression=compression, use_dictionary=True,
                          write_statistics=[APP_COLUMN, "window_start"], store_schema=True) as writer:
        for start, length in row_groups(table, rows_per_group) if table.num_rows else [(0, 0)]:
            writer.write_table(table.slice(start, length), row_group_size=max(1, length))
    return sink.getvalue()


def groups_of_app(metadata: pq.FileMetaData, app_id: str) -> list[int]:
    """Row groups that may hold ``app_id``'s rows: by the ``app_id`` min/max statistics (a group
    without statistics may hold any app); works for files of any layout, sorted or not."""
    schema = metadata.schema.to_arrow_schema()
    column = schema.get_field_index(APP_COLUMN)
    out = []
    for i in range(metadata.num_row_groups):
        group = metadata.row_group(i)
        if group.num_rows == 0:
            continue
        stats = group.column(column).statistics
        if stats is None or not stats.has_min_max or stats.min <= app_id <= stats.max:
            out.append(i)
    return out


def group_span(metadata: pq.FileMetaData, groups: list[int]) -> tuple[int, int] | None:
    """[start, end) byte span of the column chunks of ``groups`` (None for no group)."""
    start, end = None, None
    for i in groups:
        group = metadata.row_group(i)
        for c in range(group.num_columns):
            chunk = group.column(c)
            first = chunk.dictionary_page_offset if chunk.has_dictionary_page and chunk.dictionary_page_offset \
                else chunk.data_page_offset
            start = first if start is None else min(start, first)
            last = first + chunk.total_compressed_size
            end = last if end is None else max(end, last)
    return None if start is None else (start, end)
