"""The SQL of the funnel and retention insights: one definition, for every engine (pure text).

The text is Athena's dialect (Trino) restricted to what DuckDB reads the same way *without
translation* (``date_diff``, ``date_trunc``, ``INTERVAL '1' SECOND * n``, ``row_number()``,
``CAST(CAST(ts AS DATE) AS VARCHAR)`` for the ``dt`` bounds); the one function DuckDB lacks,
``json_extract_scalar``, is given to DuckDB as a macro by the local engine
(:mod:`chalicelib.reads.insight_engines`). So the API's local DuckDB path, Athena on AWS, and the
named queries ``sql/queries/funnel.sql`` / ``retention.sql`` (generated from here: a test keeps the
files equal to :func:`named_query_files`) run the same text.

Values are ``:name`` placeholders; :func:`bind` renders each as one literal (strings quoted with
``'`` doubled, integers checked, instants as ``TIMESTAMP 'YYYY-MM-DD HH:MM:SS.mmm'`` UTC). Attribute
paths (``where`` keys, ``breakdown``) become JSON paths inside the text, so they must match
:data:`ATTRIBUTE_PATH` (checked here again, whatever the caller did).

**Deduplicated events.** As the other named queries (``top_users``, ``daily_active_users``): of the
copies of one ``(app_id, event_id)`` read, the first received counts (``row_number() OVER
(PARTITION BY app_id, event_id ORDER BY received_at) = 1``). This is the duplicate rule of
``chalicelib/processing/duplicates.py`` for every copy arriving within 24 h of the first (client
retries); compaction applies the full rule to closed hours, after which a copy 24 h or more later
is a separate event_id row only if the rule kept it.

**Funnel.** Step k is matched by an event of ``:step<k>`` (and its ``where`` equalities on
attributes). A start is a step-1 event in ``[from, to)``; from it, step k is reached at the
earliest step-k event at or after the step k-1 event and at most ``within_seconds`` after the
start (greedy earliest: it reaches the most steps any path from that start can). A user counts
once (per breakdown value), at the most steps any of its starts reaches; the times to convert are
those of its earliest start among the ones reaching that many steps. Per step: ``users`` and
``median_ms``, the lower median (``numpy.quantile(..., method="lower")``: the value of 1-based
rank ceil(n / 2)) of the milliseconds from that start's step-1 event to its step-k event (0 for
step 1). With a breakdown, the value is the attribute of the start's step-1 event (null when
absent); rows with ``by_value = 0`` are the overall funnel.

**Retention.** A user's cohort is the UTC ``day`` or ISO ``week`` (Monday 00:00 UTC) of its first
``start_event`` in ``[from, to)``. ``period_number`` k counts the users of the cohort with a
``return_event`` in the k-th period after the cohort's (k = 1 .. periods - 1; return events are
read up to ``to + periods`` periods, i.e. after ``to`` too); k = 0 counts the cohort's users. Only
(cohort, k) pairs with at least one user are rows: the API fills the zeros.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Mapping

#: An attribute path of the request (``attributes.plan``, ``attributes.device.os``).
ATTRIBUTE_PATH = re.compile(r"attributes(\.[A-Za-z_][A-Za-z0-9_]{0,63}){1,4}")
PERIODS = ("day", "week")
_PLACEHOLDER = re.compile(r":([a-z][a-z0-9_]*)")
DEFAULT_NAMED_STEPS = 4


def json_path(attribute_path: str) -> str:
    """``attributes.a.b`` -> ``'$.a.b'`` (a literal: the path was checked against ATTRIBUTE_PATH)."""
    if not ATTRIBUTE_PATH.fullmatch(attribute_path):
        raise ValueError(f"attribute path {attribute_path[:80]!r} must match {ATTRIBUTE_PATH.pattern}")
    return "'$." + attribute_path.split(".", 1)[1] + "'"


def _deduped(columns: str, types: str, end: str, also: str = "") -> str:
    return f"""copies AS (
    SELECT {columns},
           row_number() OVER (PARTITION BY app_id, event_id ORDER BY received_at) AS copy_number
    FROM events
    WHERE app_id = :app_id
      AND dt BETWEEN CAST(CAST(:from AS DATE) AS VARCHAR) AND CAST(CAST({end} AS DATE) AS VARCHAR)
      AND event_time >= :from
      AND event_time < {end}
      AND event_type IN ({types}){also}
),
deduped AS (
    SELECT {columns.replace('app_id, ', '')} FROM copies WHERE copy_number = 1 AND user_id IS NOT NULL
)"""


def funnel_sql(wheres: list[Mapping[str, str]], breakdown: str | None = None) -> str:
    """The funnel of ``len(wheres)`` steps. Placeholders: app_id, from, to, within_seconds, step1..stepN,
    and ``w<k>_<i>`` for the i-th where value of step k (the keys of ``wheres[k-1]`` are attribute
    paths; their values are ignored here). Rows: by_value, breakdown, step, users, median_ms."""
    n = len(wheres)
    if n < 2:
        raise ValueError("a funnel has at least two steps")
    end = ":to + INTERVAL '1' SECOND * :within_seconds"
    types = ", ".join(f":step{k}" for k in range(1, n + 1))

    def match(k: int, alias: str) -> str:
        conditions = [f"{alias}.event_type = :step{k}"]
        conditions += [f"json_extract_scalar({alias}.attributes, {json_path(path)}) = :w{k}_{i}"
                       for i, path in enumerate(wheres[k - 1])]
        return " AND ".join(conditions)

    # The attributes (the widest column) are read and carried through the deduplication only when
    # a step filters on them or the funnel is broken down by one.
    attributes = ", attributes" if breakdown or any(wheres) else ""
    parts = [_deduped("app_id, user_id, event_type, event_time" + attributes, types, end)]
    value = f"json_extract_scalar(e.attributes, {json_path(breakdown)})" if breakdown else "CAST(NULL AS VARCHAR)"
    starts = (f"    SELECT e.user_id, 0 AS by_value, CAST(NULL AS VARCHAR) AS bd, e.event_time AS t1\n"
              f"    FROM deduped e WHERE {match(1, 'e')} AND e.event_time < :to")
    if breakdown:
        starts += (f"\n    UNION ALL\n    SELECT e.user_id, 1 AS by_value, {value} AS bd, e.event_time AS t1\n"
                   f"    FROM deduped e WHERE {match(1, 'e')} AND e.event_time < :to")
    parts.append(f"r1 AS (\n    SELECT DISTINCT user_id, by_value, bd, t1 FROM (\n{starts}\n    ) s\n)")
    for k in range(2, n + 1):
        kept = ", ".join(f"s.t{j}" for j in range(1, k))
        parts.append(f"""r{k} AS (
    SELECT s.user_id, s.by_value, s.bd, {kept}, min(e.event_time) AS t{k}
    FROM r{k - 1} s
    LEFT JOIN deduped e
      ON e.user_id = s.user_id AND {match(k, 'e')}
     AND e.event_time >= s.t{k - 1} AND e.event_time <= s.t1 + INTERVAL '1' SECOND * :within_seconds
    GROUP BY s.user_id, s.by_value, s.bd, {kept}
)""")
    reached = "CASE " + " ".join(f"WHEN t{k} IS NOT NULL THEN {k}" for k in range(n, 1, -1)) + " ELSE 1 END"
    times = ", ".join(f"t{k}" for k in range(1, n + 1))
    parts.append(f"""ranked AS (
    SELECT user_id, by_value, bd, {times}, {reached} AS reached FROM r{n}
),
best AS (
    SELECT user_id, by_value, bd, {times}, reached,
           max(reached) OVER (PARTITION BY user_id, by_value, bd) AS most
    FROM ranked
),
chosen AS (
    SELECT user_id, by_value, bd, {times}, reached,
           row_number() OVER (PARTITION BY user_id, by_value, bd ORDER BY t1) AS pick
    FROM best WHERE reached = most
)""")
    legs = ["    SELECT by_value, bd, 1 AS step, 0 AS ms FROM chosen WHERE pick = 1"]
    legs += [f"    SELECT by_value, bd, {k} AS step, date_diff('millisecond', t1, t{k}) AS ms "
             f"FROM chosen WHERE pick = 1 AND reached >= {k}" for k in range(2, n + 1)]
    parts.append("steps AS (\n" + "\n    UNION ALL\n".join(legs) + "\n)")
    parts.append("""ordered AS (
    SELECT by_value, bd, step, ms,
           row_number() OVER (PARTITION BY by_value, bd, step ORDER BY ms) AS rn,
           count(*) OVER (PARTITION BY by_value, bd, step) AS n
    FROM steps
)""")
    return ("WITH " + ",\n".join(parts) + """
SELECT by_value, bd AS breakdown, step, max(n) AS users, max(CASE WHEN 2 * rn = n OR 2 * rn - 1 = n THEN ms END) AS median_ms
FROM ordered
GROUP BY by_value, bd, step
ORDER BY by_value, breakdown, step""")


def retention_sql() -> str:
    """Retention. Placeholders: app_id, from, to, start_event, return_event, period ('day' | 'week'),
    periods. Rows: period_start ('YYYY-MM-DD'), period_number, users."""
    length = "CASE WHEN :period = 'week' THEN 7 ELSE 1 END"
    end = f":to + INTERVAL '1' DAY * ({length} * :periods)"
    # Start events count only before `to`: the ones after it are not read (return events are).
    also = "\n      AND (event_type = :return_event OR event_time < :to)"
    return "WITH " + _deduped("app_id, user_id, event_type, event_time", ":start_event, :return_event", end,
                              also) + f""",
cohorts AS (
    SELECT user_id, date_trunc(:period, min(event_time)) AS cohort
    FROM deduped
    WHERE event_type = :start_event AND event_time < :to
    GROUP BY user_id
),
returns AS (
    SELECT DISTINCT c.user_id, c.cohort,
           CAST(floor(date_diff('day', c.cohort, date_trunc(:period, e.event_time)) / ({length} * 1e0)) AS BIGINT)
               AS period_number
    FROM cohorts c
    JOIN deduped e ON e.user_id = c.user_id AND e.event_type = :return_event
    WHERE e.event_time >= c.cohort + INTERVAL '1' DAY * {length}
      AND e.event_time < c.cohort + INTERVAL '1' DAY * ({length} * :periods)
),
counted AS (
    SELECT cohort, 0 AS period_number, count(*) AS users FROM cohorts GROUP BY cohort
    UNION ALL
    SELECT cohort, period_number, count(*) AS users FROM returns GROUP BY cohort, period_number
)
SELECT CAST(CAST(cohort AS DATE) AS VARCHAR) AS period_start, period_number, users
FROM counted
ORDER BY period_start, period_number"""


# ------------------------------------------------------------------ binding
def render(value: object, kind: str) -> str:
    """One literal: ``string``, ``bigint`` or ``timestamp`` (epoch ms or an aware/naive-UTC datetime)."""
    if kind == "string":
        if not isinstance(value, str) or "\x00" in value:
            raise ValueError("expected a string without NUL characters")
        return "'" + value.replace("'", "''") + "'"
    if kind == "bigint":
        if isinstance(value, bool) or not isinstance(value, int) or not -2 ** 63 <= value < 2 ** 63:
            raise ValueError("expected a bigint")
        return str(value)
    if kind == "timestamp":
        if isinstance(value, int) and not isinstance(value, bool):
            value = datetime.fromtimestamp(value / 1000, timezone.utc)
        if not isinstance(value, datetime):
            raise ValueError("expected an instant")
        if value.tzinfo is not None:
            value = value.astimezone(timezone.utc).replace(tzinfo=None)
        return f"TIMESTAMP '{value.isoformat(sep=' ', timespec='milliseconds')}'"
    raise ValueError(f"unknown kind {kind!r}")


def bind(sql: str, values: Mapping[str, tuple[object, str]]) -> str:
    """Replace every ``:name`` of this module's SQL by ``render(*values[name])`` (all must be given).

    Only this module's text is bound: it has no ``:`` in literals, comments or identifiers."""
    missing = sorted(set(_PLACEHOLDER.findall(sql)) - set(values))
    if missing:
        raise ValueError(f"missing parameter(s): {', '.join(missing)}")
    rendered = {name: render(value, kind) for name, (value, kind) in values.items()}
    return _PLACEHOLDER.sub(lambda m: rendered[m.group(1)], sql)


# ------------------------------------------------------------------ the named query files
def named_query_files() -> dict[str, str]:
    """sql/queries/funnel.sql and retention.sql as they must read (a test compares them)."""
    steps = "\n".join(f"-- param: step{k} string" for k in range(1, DEFAULT_NAMED_STEPS + 1))
    funnel = f"""-- name: funnel
-- description: Users reaching each step of a {DEFAULT_NAMED_STEPS}-step funnel (steps in order, each at or after the
--   previous, all within within_seconds of a step-1 event in [from, to)), each user once at the most
--   steps any start reaches; the lower median milliseconds from step 1 to the step. Deduplicated raw
--   events. Generated by chalicelib/reads/insight_sql.py (POST /v1/insights/funnel runs the same SQL).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
-- param: within_seconds bigint default 3600
{steps}
""" + funnel_sql([{}] * DEFAULT_NAMED_STEPS) + "\n"
    retention = """-- name: retention
-- description: Retention cohorts: users by the UTC day or ISO week (Monday) of their first start_event
--   in [from, to), and how many had a return_event in each following period (return events after
--   `to` count). Deduplicated raw events. Generated by chalicelib/reads/insight_sql.py
--   (POST /v1/insights/retention runs the same SQL).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
-- param: start_event string
-- param: return_event string
-- param: period string default day
-- param: periods bigint default 8
""" + retention_sql() + "\n"
    return {"funnel": funnel, "retention": retention}
