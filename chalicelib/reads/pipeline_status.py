"""GET /v1/pipeline: the pipeline's own figures, as Flink's job view shows them.

Every key sees its app's figures: events accepted into the windows, late events,
bad rows by reason and how far finalization lags (``finalized_until``). An
operator's key (an app marked operator in the apps table) also sees the
stream-wide figures: per consumer and shard the records behind the tip, the age
of the oldest unprocessed record, records delivered, retries, records sent to
the on-failure destination, every app's bad rows. Rates (events per second in
and out) are the difference of two answers: each carries ``generated_at_ms``
and monotonically growing counts.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Callable, Mapping, Sequence

from chalicelib.http.errors import BadRequest
from chalicelib.lake import layout
from chalicelib.lake.progress import count_bad_rows, count_dead_letters, finalized_hours
from chalicelib.reads.metrics import MetricsService, single_values
from chalicelib.reads.stream_lag import StreamLag
from chalicelib.stream.instants import iso_date, ms_to_iso, parse_instant, InvalidInstant
from chalicelib.stream.badrows import TOO_LATE

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: The metric whose ``count`` is every accepted event of an app (no filter), and whose late_count counts late ones.
ACCEPTED_METRIC = "event_counts"
PARAMS = ("from", "to")
#: The longest from..to (as for the metrics): every day of it is listed in bad-rows/ per consumer.
MAX_RANGE_MS = 7 * DAY_MS


def _days(start_ms: int, end_ms: int) -> list[str]:
    """The UTC days touched by [start, end) (bad rows are partitioned by their record's arrival day)."""
    first, last = start_ms // DAY_MS, (max(end_ms, start_ms + 1) - 1) // DAY_MS
    return [iso_date(d * DAY_MS) for d in range(first, last + 1)]


class PipelineService:
    """Assembles the figures from the sources the pipeline already records.

    Args:
        s3: an S3 client (bad rows, on-failure records, manifests).
        bucket: the lake bucket.
        metrics_service: answers the metric queries (accepted and late events, finalized_until).
        lag: reads the stream's lag (:class:`~chalicelib.reads.stream_lag.CheckpointLag` or ``CloudWatchLag``).
        consumers: the Kinesis consumers of the pipeline configuration.
        is_operator: app id -> whether it may see the stream-wide figures.
        clock_ms: the wall clock (epoch ms).
    """

    def __init__(self, s3, bucket: str, metrics_service: MetricsService, lag, consumers: Sequence[str],
                 is_operator: Callable[[str], bool], clock_ms: Callable[[], int],
                 suppressed: Callable[[str, list[str]], dict[str, int]] | None = None) -> None:
        self._s3, self._bucket, self._metrics, self._lag = s3, bucket, metrics_service, lag
        #: app, days -> events refused by suppression per day (chalicelib/lake/regulations.py).
        self._suppressed = suppressed
        self._consumers, self._is_operator, self._clock_ms = tuple(consumers), is_operator, clock_ms

    def _range(self, params: Mapping[str, str], now: int) -> tuple[int, int]:
        unknown = set(params) - set(PARAMS)
        if unknown:
            raise BadRequest(f"unknown parameter(s) {', '.join(sorted(unknown))}; allowed: {', '.join(PARAMS)}")
        try:
            end = parse_instant(params["to"], "to") if "to" in params else now
            start = parse_instant(params["from"], "from") if "from" in params else end - HOUR_MS
        except InvalidInstant as exc:
            raise BadRequest(str(exc)) from None
        if start >= end:
            raise BadRequest("from must be before to")
        if end - start > MAX_RANGE_MS:
            raise BadRequest(f"the range is {(end - start) / HOUR_MS:.1f} h; the maximum is "
                             f"{MAX_RANGE_MS // HOUR_MS} h")
        return start, end

    def report(self, app_id: str, params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The figures ``app_id`` may see, for ``from``..``to`` (default the last hour)."""
        now = self._clock_ms()
        start, end = self._range(single_values(params or {}), now)
        window = {"from": ms_to_iso(start), "to": ms_to_iso(end)}
        operator = self._is_operator(app_id)
        days = _days(start, end)
        own_bad = count_bad_rows(self._s3, self._bucket, days, app_id)
        app = {**self._accepted(app_id, window), "bad_rows": own_bad.by_consumer,
               "bad_rows_truncated": own_bad.truncated}
        app["suppressed"] = sum(self._suppressed(app_id, days).values()) if self._suppressed else 0
        app["rejected"] = sum(n for reasons in own_bad.by_consumer.values() for n in reasons.values())
        app["late_events"] = (app.pop("late_count") or 0) + sum(
            reasons.get(TOO_LATE, 0) for reasons in own_bad.by_consumer.values())
        body: dict[str, Any] = {
            "app_id": app_id, "operator": operator, "generated_at": ms_to_iso(now), "generated_at_ms": now,
            "range": window, "app": app, "lateness": self._lateness(),
            "finalization": self._finalization(app_id, window, now), "stream": None}
        if operator:
            body["stream"] = self._stream(days)
        return body

    def _lateness(self) -> dict[str, float]:
        """The rules behind ``late_events`` (metrics.yaml ``settings``), for the reader of the figures."""
        settings = self._metrics.definitions.settings
        return {"allowed_s": settings.allowed_lateness_ms / 1000, "max_s": settings.max_lateness_ms / 1000}

    def _accepted(self, app_id: str, window: dict[str, str]) -> dict[str, Any]:
        try:
            result = self._metrics.query(app_id, ACCEPTED_METRIC, {**window, "limit": "10000"})
        except BadRequest:
            return {"accepted": None, "late_count": None, "accepted_truncated": False}
        rows = result["rows"]
        return {"accepted": sum(r.get("count") or 0 for r in rows),
                "late_count": sum(r.get("late_count") or 0 for r in rows), "accepted_truncated": result["truncated"]}

    def _finalization(self, app_id: str, window: dict[str, str], now: int) -> list[dict[str, Any]]:
        """Per metric: ``finalized_until`` as the metrics API answers it (windows before it are final:
        compacted, or without events of the app), and from the finalizer's manifests of the current
        definition when it last wrote one and up to which hour it compacted (both None until then)."""
        definitions = self._metrics.definitions.metrics
        done = finalized_hours(self._s3, self._bucket,
                               {m.name: layout.rollup_prefix(m, "final") for m in definitions})
        out = []
        for metric in definitions:
            until = self._metrics.query(app_id, metric.name, {**window, "limit": "1"})["finalized_until"]
            until_ms = parse_instant(until, "finalized_until")
            hours = done[metric.name]
            out.append({"metric": metric.name, "finalized_until": until, "lag_s": max(0, now - until_ms) / 1000,
                        "last_finalized_at": None if hours.last_ms is None else ms_to_iso(hours.last_ms),
                        "compacted_until": None if hours.until_ms is None else ms_to_iso(hours.until_ms)})
        return out

    def _stream(self, days: list[str]) -> dict[str, Any]:
        lag: StreamLag = self._lag.read(self._consumers)
        dead = count_dead_letters(self._s3, self._bucket)
        every_bad = count_bad_rows(self._s3, self._bucket, days, None)
        rows = []
        for row in lag.rows:
            item = asdict(row)
            if item["dead_lettered"] is None:  # the source does not count them: the on-failure records do
                item["dead_lettered"] = sum(n for (function, shard), n in dead.records.items()
                                            if function.endswith(row.consumer)
                                            and (row.shard_id == "*" or shard == row.shard_id))
            item["oldest_unprocessed_age_ms"] = item.pop("iterator_age_ms")
            rows.append(item)
        return {
            "source": lag.source, "shards": list(lag.shards), "consumers": rows,
            "caught_up": all(r["behind"] == 0 for r in rows) if lag.source == "checkpoints" else None,
            "incoming_records_per_s": lag.incoming_records_per_s,
            "dead_letters": {"batches": dead.batches, "records": sum(dead.records.values()),
                             "truncated": dead.truncated},
            "bad_rows": every_bad.by_consumer, "bad_rows_unattributed": every_bad.unattributed,
            "bad_rows_truncated": every_bad.truncated,
        }
