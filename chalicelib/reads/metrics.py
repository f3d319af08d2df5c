"""GET /v1/metrics and /v1/metrics/{name}: window results for the caller's app.

Answers are right at any moment: finalized windows come from the compacted
files, the others from merged partials (chalicelib/lake/rollups.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import pyarrow as pa
import pyarrow.compute as pc

from chalicelib.http.errors import BadRequest, NotFound
from chalicelib.lake.rollups import read_windows_status
from chalicelib.processing import MetricDef, MetricSet
from chalicelib.stream.instants import InvalidInstant, ms_to_iso, parse_instant

HOUR_MS = 3_600_000
FIXED_PARAMS = ("from", "to", "limit")


@dataclass(frozen=True)
class MetricsLimits:
    max_range_ms: int = 7 * 24 * HOUR_MS
    default_range_ms: int = HOUR_MS
    default_limit: int = 1000
    max_limit: int = 10_000
    #: How long a final file checked against S3 is trusted without a request, in an hour without
    #: partials (chalicelib/lake/rollups.py): below the finalizer's grace period; 0 checks each time.
    final_trust_s: float = 0.0


def describe_metric(metric: MetricDef) -> dict[str, Any]:
    return {
        "name": metric.name,
        "description": metric.description,
        "window": {"size_s": metric.window.size_ms // 1000, "slide_s": metric.window.slide_ms // 1000,
                   "type": "tumbling" if metric.window.is_tumbling else "hopping"},
        "key": ["app_id", *[k.name for k in metric.keys]],
        "measures": [{"name": m.name, "aggregate": m.expression} for m in metric.measures],
    }


def _time(params: Mapping[str, str], name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        return parse_instant(text, name)
    except InvalidInstant as exc:
        raise BadRequest(str(exc)) from None


def single_values(params: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters given once each (a list value holds the repeats of one name)."""
    out = {}
    for name, value in params.items():
        if isinstance(value, (list, tuple)):
            if len(value) != 1:
                raise BadRequest(f"give {name} at most once (several values: comma-separated)")
            value = value[0]
        out[name] = value
    return out


class MetricsService:
    def __init__(self, s3, bucket: str, metrics: MetricSet, clock_ms: Callable[[], int],
                 limits: MetricsLimits = MetricsLimits()) -> None:
        self._s3, self._bucket, self._metrics, self._clock_ms, self._limits = s3, bucket, metrics, clock_ms, limits

    @property
    def definitions(self) -> MetricSet:
        """The metrics served and their lateness settings."""
        return self._metrics

    def list_metrics(self) -> dict[str, Any]:
        return {"metrics": [describe_metric(m) for m in self._metrics.metrics]}

    def _metric(self, name: str) -> MetricDef:
        for metric in self._metrics.metrics:
            if metric.name == name:
                return metric
        known = ", ".join(m.name for m in self._metrics.metrics)
        raise NotFound(f"unknown metric {name[:64]!r}; known metrics: {known}")

    def query(self, app_id: str, name: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        metric = self._metric(name)
        params = single_values(params or {})
        key_names = [k.name for k in metric.keys]
        unknown = set(params) - set(FIXED_PARAMS) - set(key_names)
        if unknown:
            raise BadRequest(f"unknown parameter(s) {', '.join(sorted(unknown))}; allowed: "
                             f"{', '.join([*FIXED_PARAMS, *key_names])}")
        now = self._clock_ms()
        end = _time(params, "to")
        end = now if end is None else end
        start = _time(params, "from")
        start = end - self._limits.default_range_ms if start is None else start
        if start >= end:
            raise BadRequest("from must be before to")
        if end - start > self._limits.max_range_ms:
            raise BadRequest(f"the range is {(end - start) / HOUR_MS:.1f} h; the maximum is "
                             f"{self._limits.max_range_ms // HOUR_MS} h")
        limit = self._limit(params.get("limit"))
        result = read_windows_status(self._s3, self._bucket, metric, start, end, app_id,
                                     trust_s=self._limits.final_trust_s)
        rows = result.rows.append_column("__estimated", result.estimated)
        for key in key_names:
            if key in params:
                wanted = pa.array(params[key].split(","), pa.string())
                rows = rows.filter(pc.is_in(rows[key].cast(pa.string()), value_set=wanted))
        rows = rows.sort_by([("window_start", "ascending"), *[(k, "ascending") for k in key_names]])
        # Windows starting before this have ended and passed the allowed lateness.
        horizon = now - self._metrics.settings.allowed_lateness_ms - metric.window.size_ms
        open_from = result.first_open_window_ms
        finalized_until = min(x for x in (open_from, end, horizon) if x is not None)
        return {
            "metric": metric.name,
            "window": {"size_s": metric.window.size_ms // 1000, "slide_s": metric.window.slide_ms // 1000},
            "rows": self._rows(rows.slice(0, limit), key_names, metric),
            "truncated": rows.num_rows > limit,
            "finalized_until": ms_to_iso(max(finalized_until, 0)),
        }

    def _limit(self, text: str | None) -> int:
        if text is None:
            return self._limits.default_limit
        if not re.fullmatch(r"[0-9]{1,6}", text) or not 1 <= int(text) <= self._limits.max_limit:
            raise BadRequest(f"limit must be an integer from 1 to {self._limits.max_limit}")
        return int(text)

    @staticmethod
    def _rows(rows: pa.Table, key_names: list[str], metric: MetricDef) -> list[dict[str, Any]]:
        """Response rows, built column-wise (windows start on whole seconds)."""
        def iso(column) -> pa.Array:  # formatted once per distinct window (strftime is the costly part)
            starts = pc.unique(column)
            text = pc.strftime(starts.cast(pa.timestamp("ms", tz="UTC")), format="%Y-%m-%dT%H:%M:%SZ")
            return pc.take(text, pc.index_in(column, value_set=starts))

        columns = {"window_start": iso(rows["window_start"]), "window_end": iso(rows["window_end"])}
        for name in [*key_names, *[m.name for m in metric.measures], "late_count"]:
            columns[name] = rows[name]
        # Which values are estimates (a distinct count above 4,096 values not answered by a final row,
        # percentiles); "exact": none of the row's measures is.
        columns["exact"] = pc.equal(pc.list_value_length(rows["__estimated"]), 0)
        columns["estimated"] = rows["__estimated"]
        return pa.table(columns).to_pylist()
