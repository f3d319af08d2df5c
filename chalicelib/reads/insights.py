"""POST /v1/insights/funnel, /v1/insights/retention, GET /v1/insights/queries/{id}, GET /v1/event-types.

Requests are validated here and turned into the bound SQL of :mod:`chalicelib.reads.insight_sql`
(nothing of the request becomes SQL text except checked event types and attribute paths, and
values as literals); the app is always the key's. The engine (:mod:`chalicelib.reads.insight_engines`)
answers rows, shaped here into the documented answer, or a pending Athena query (202).

Funnel answer: ``{"steps": [{"event_type", "users", "conversion", "median_seconds_to_convert"}]}``
(conversion = users at the step / users at step 1, 0 when nobody started; the median is the lower
median, null when nobody reached the step), plus ``"breakdown": [{"value", "steps"}]`` when asked.
Retention answer: ``{"cohorts": [{"period_start", "users", "returned": [n_0, ..., n_{N-1}]}]}``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from chalicelib.http.errors import BadRequest, NotFound
from chalicelib.http.routes import json_response
from chalicelib.reads import insight_sql
from chalicelib.reads.insight_engines import Pending
from chalicelib.stream.instants import InvalidInstant, parse_instant

EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]{0,63}")
DURATION = re.compile(r"([1-9][0-9]{0,6})(s|m|h|d)")
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DAY_MS = 86_400_000
MAX_STEPS = 8
MAX_WHERE = 5
MAX_WITHIN_S = 31 * 86400
#: The longest [from, to) of an insight (Athena scans every day of it).
MAX_RANGE_DAYS = 92
MAX_PERIODS = {"day": 92, "week": 53}
FUNNEL_FIELDS = ("steps", "within", "from", "to", "breakdown")
RETENTION_FIELDS = ("start_event", "return_event", "period", "periods", "from", "to")


def _object(body: Any, fields: tuple[str, ...]) -> dict:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}; expected {', '.join(fields)}")
    return body


def _event_type(value: Any, name: str) -> str:
    if not isinstance(value, str) or not EVENT_TYPE.fullmatch(value):
        raise BadRequest(f"{name} must be an event type matching ^[a-z][a-z0-9_]{{0,63}}$")
    return value


def _range(body: dict) -> tuple[int, int]:
    try:
        start, end = parse_instant(body.get("from"), "from"), parse_instant(body.get("to"), "to")
    except InvalidInstant as exc:
        raise BadRequest(str(exc)) from None
    if end <= start:
        raise BadRequest("to must be after from")
    if end - start > MAX_RANGE_DAYS * DAY_MS:
        raise BadRequest(f"from..to may span at most {MAX_RANGE_DAYS} days")
    return start, end


def _where_value(value: Any, name: str) -> str:
    """A where value as json_extract_scalar renders it (strings, integers, booleans)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and abs(value) < 2 ** 53:
        return str(value)
    if isinstance(value, str) and len(value) <= 256 and "\x00" not in value:
        return value
    raise BadRequest(f"{name} must be a string (up to 256 characters), an integer or a boolean")


def _days(start_ms: int, end_ms: int) -> tuple[str, str]:
    day = lambda ms: datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d")  # noqa: E731
    return day(start_ms), day(end_ms)


class InsightsService:
    """``engine``: a DuckDbEngine or an AthenaEngine; ``event_types(app_id, from_dt, to_dt)`` lists types."""

    def __init__(self, engine, event_types: Callable[[str], list[str]] | None = None) -> None:
        self._engine, self._event_types = engine, event_types

    # -------------------------------------------------------------------------- funnel
    def funnel(self, app_id: str, body: Any) -> Any:
        body = _object(body, FUNNEL_FIELDS)
        steps = body.get("steps")
        if not isinstance(steps, list) or not 2 <= len(steps) <= MAX_STEPS:
            raise BadRequest(f"steps must be a list of 2 to {MAX_STEPS} steps")
        values: dict[str, tuple[Any, str]] = {}
        wheres, types = [], []
        for k, step in enumerate(steps, 1):
            if not isinstance(step, dict) or set(step) - {"event_type", "where"}:
                raise BadRequest(f"steps[{k - 1}] must be an object with event_type and an optional where")
            types.append(_event_type(step.get("event_type"), f"steps[{k - 1}].event_type"))
            values[f"step{k}"] = (types[-1], "string")
            where = step.get("where") or {}
            if not isinstance(where, dict) or len(where) > MAX_WHERE:
                raise BadRequest(f"steps[{k - 1}].where must be an object of at most {MAX_WHERE} "
                                 f"attribute path -> value equalities")
            for i, (path, value) in enumerate(sorted(where.items())):
                if not insight_sql.ATTRIBUTE_PATH.fullmatch(path):
                    raise BadRequest(f"steps[{k - 1}].where: {path[:80]!r} must be an attribute path "
                                     f"matching {insight_sql.ATTRIBUTE_PATH.pattern}")
                values[f"w{k}_{i}"] = (_where_value(value, f"steps[{k - 1}].where[{path}]"), "string")
            wheres.append(dict(sorted(where.items())))
            if k > 1 and (types[-1], wheres[-1]) == (types[-2], wheres[-2]):
                raise BadRequest(f"steps[{k - 2}] and steps[{k - 1}] are the same step")
        within = body.get("within", "1h")
        match = DURATION.fullmatch(within) if isinstance(within, str) else None
        within_s = int(match.group(1)) * UNIT_S[match.group(2)] if match else 0
        if not 0 < within_s <= MAX_WITHIN_S:
            raise BadRequest(f"within must be a duration like 30m, 1h or 7d, at most {MAX_WITHIN_S // 86400}d")
        breakdown = body.get("breakdown")
        if breakdown is not None and (not isinstance(breakdown, str)
                                      or not insight_sql.ATTRIBUTE_PATH.fullmatch(breakdown)):
            raise BadRequest(f"breakdown must be an attribute path matching {insight_sql.ATTRIBUTE_PATH.pattern}")
        start, end = _range(body)
        values.update({"app_id": (app_id, "string"), "from": (start, "timestamp"), "to": (end, "timestamp"),
                       "within_seconds": (within_s, "bigint")})
        sql = insight_sql.bind(insight_sql.funnel_sql(wheres, breakdown), values)
        shape = {"types": types, "breakdown": breakdown is not None}
        rows = self._engine.run(app_id, sql, _days(start, end + within_s * 1000), "funnel", shape)
        return accepted(rows) if isinstance(rows, Pending) else shape_funnel(rows, shape)

    # ------------------------------------------------------------------------ retention
    def retention(self, app_id: str, body: Any) -> Any:
        body = _object(body, RETENTION_FIELDS)
        start_event = _event_type(body.get("start_event"), "start_event")
        return_event = _event_type(body.get("return_event"), "return_event")
        period = body.get("period", "day")
        if period not in insight_sql.PERIODS:
            raise BadRequest("period must be day or week")
        periods = body.get("periods", 8)
        if isinstance(periods, bool) or not isinstance(periods, int) or not 1 <= periods <= MAX_PERIODS[period]:
            raise BadRequest(f"periods must be an integer from 1 to {MAX_PERIODS[period]} for {period}")
        start, end = _range(body)
        sql = insight_sql.bind(insight_sql.retention_sql(), {
            "app_id": (app_id, "string"), "from": (start, "timestamp"), "to": (end, "timestamp"),
            "start_event": (start_event, "string"), "return_event": (return_event, "string"),
            "period": (period, "string"), "periods": (periods, "bigint")})
        shape = {"periods": periods}
        last = end + periods * (7 if period == "week" else 1) * DAY_MS
        rows = self._engine.run(app_id, sql, _days(start, last), "retention", shape)
        return accepted(rows) if isinstance(rows, Pending) else shape_retention(rows, shape)

    # ---------------------------------------------------------------------- async polls
    def query(self, app_id: str, query_id: str) -> Any:
        """The answer of an insight that was still running (202); 404 for an unknown or another app's id."""
        lookup = getattr(self._engine, "lookup", None)
        found = lookup(app_id, query_id) if lookup is not None and re.fullmatch(r"[A-Za-z0-9-]{1,128}",
                                                                                  query_id) else None
        if found is None:
            raise NotFound(f"no insight query {query_id[:128]!r} of this app")
        kind, shape = found
        rows = self._engine.poll(query_id)
        if isinstance(rows, Pending):
            return accepted(rows)
        return shape_funnel(rows, shape) if kind == "funnel" else shape_retention(rows, shape)

    def event_types(self, app_id: str) -> dict:
        return {"event_types": sorted(self._event_types(app_id)) if self._event_types else []}


def contract_facts():
    """The limits enforced here, for the OpenAPI document."""
    from chalicelib.http.openapi_insights import InsightFacts
    return InsightFacts(max_steps=MAX_STEPS, max_where=MAX_WHERE, max_range_days=MAX_RANGE_DAYS,
                        max_within_days=MAX_WITHIN_S // 86400, max_periods=dict(MAX_PERIODS),
                        attribute_path=insight_sql.ATTRIBUTE_PATH.pattern, duration=DURATION.pattern)


def accepted(pending: Pending):
    """202: the insight still runs on Athena; poll the Location."""
    location = f"/v1/insights/queries/{pending.query_id}"
    return json_response({"query_id": pending.query_id, "status": "running", "location": location}, 202,
                         {"Location": location, "Retry-After": "2"})


def _steps(rows: list[Mapping], types: list[str]) -> list[dict]:
    by_step = {r["step"]: r for r in rows}
    first = by_step.get(1, {}).get("users", 0)
    out = []
    for k, event_type in enumerate(types, 1):
        row = by_step.get(k)
        users = int(row["users"]) if row else 0
        median = row["median_ms"] if row else None
        out.append({"event_type": event_type, "users": users,
                    "conversion": users / first if first else 0.0,
                    "median_seconds_to_convert": None if median is None else int(median) / 1000})
    return out


def shape_funnel(rows: list[Mapping], shape: Mapping) -> dict:
    overall = [r for r in rows if r["by_value"] == 0]
    answer: dict[str, Any] = {"steps": _steps(overall, shape["types"])}
    if shape["breakdown"]:
        values: dict[Any, list] = {}
        for r in rows:
            if r["by_value"] == 1:
                values.setdefault(r["breakdown"], []).append(r)
        answer["breakdown"] = [{"value": v, "steps": _steps(values[v], shape["types"])}
                               for v in sorted(values, key=lambda v: (v is None, v or ""))]
    return answer


def shape_retention(rows: list[Mapping], shape: Mapping) -> dict:
    cohorts: dict[str, list[int]] = {}
    for r in rows:
        returned = cohorts.setdefault(str(r["period_start"]), [0] * shape["periods"])
        returned[int(r["period_number"])] = int(r["users"])
    return {"cohorts": [{"period_start": f"{day}T00:00:00Z", "users": returned[0], "returned": returned}
                        for day, returned in sorted(cohorts.items())]}
