"""The Athena view of each metric, generated from its definition in metrics.yaml.

Like the Glue tables, the views follow the metric configuration, so a new
metric gets its view without hand-written SQL. ``sql/views/<metric>.sql`` are
this module's output, committed so Athena users can read and run them; a test
keeps them identical to it. Regenerate with::

    .venv/bin/python -m chalicelib.query.views

Each view applies the lake's consistency rule (sql/README.md): per (app_id,
window_start) the stage='final' rows when any exist, otherwise the merged
stage='partial' rows; final rows without events are tombstones and dropped.
Distinct counts merge the HyperLogLog registers (``<state>__registers``:
register * 256 + rank) and use the classic estimator with linear counting.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from chalicelib.processing import MetricDef, load_metrics, partials_schema
from chalicelib.processing.partials import read_description

HLL_ESTIMATE = """CAST(round(CASE WHEN {raw} <= 2.5e0 * 4096 AND {empty} > 0
                       THEN 4096 * ln(4096e0 / {empty})  -- linear counting for small sets
                       ELSE {raw} END) AS bigint)"""


def _n_column(state: str, measures: list[dict]) -> str:
    """Name of the exported value count of a numeric state, e.g. value_n for value_sum."""
    for measure in measures:
        if measure.get("state") == state and measure["func"] in ("sum", "avg"):
            for suffix in ("_sum", "_avg"):
                if measure["name"].endswith(suffix):
                    return measure["name"][: -len(suffix)] + "_n"
    return f"{state}_n"


def view_sql(metric: MetricDef) -> str:
    desc = read_description(partials_schema(metric))
    keys, numeric, sketches, measures = desc["keys"], desc["numeric"], desc["distinct"], desc["measures"]
    group = ", ".join(["app_id", "dt", "window_start", "window_end", *keys])
    states = [(state, part) for state, parts in numeric.items() for part in parts]
    null_of = {"sum": "0e0", "n": "0", "min": "CAST(NULL AS double)", "max": "CAST(NULL AS double)"}
    merge_of = {"sum": "sum", "n": "sum", "min": "min", "max": "max"}
    indent = "           "

    def lines(items: list[str]) -> str:
        return "".join(f",\n{indent}{item}" for item in items)

    measure_rows = [f"{s}__{p}" for s, p in states]
    register_rows = [null_of[p] for _, p in states]
    per_register = [f"{merge_of[p]}({s}__{p}) AS {s}__{p}" for s, p in states]
    merged = [f"{merge_of[p]}({s}__{p}) AS {s}__{p}" for s, p in states]
    for i, state in enumerate(sketches):
        merged += [f"4096 - count(hll_register) FILTER (WHERE hll_sketch = {i}) AS {state}__empty",
                   f"coalesce(sum(power(2e0, -hll_rank)) FILTER (WHERE hll_sketch = {i}), 0e0) AS {state}__inverse",
                   f"array_agg(hll_register * 256 + hll_rank ORDER BY hll_register) FILTER (WHERE hll_sketch = {i}) "
                   f"AS {state}__merged"]
    unnests = "".join(
        f"""
    UNION ALL
    SELECT {group},
           0, 0{lines(register_rows)},
           {i}, CAST(floor(r / 256) AS integer), CAST(r % 256 AS integer)
    FROM chosen CROSS JOIN UNNEST({state}__registers) AS u (r)"""
        for i, state in enumerate(sketches))

    outputs = []
    for m in measures:
        state, func, name = m.get("state"), m["func"], f'"{m["name"]}"'
        if func == "count":
            outputs.append(f"event_count AS {name}")
        elif func == "sum":
            outputs.append(f"CASE WHEN {state}__n > 0 THEN {state}__sum END AS {name}")
        elif func in ("min", "max"):
            outputs.append(f"{state}__{func} AS {name}")
        elif func == "avg":
            outputs.append(f"{state}__sum / nullif({state}__n, 0) AS {name}")
        else:  # distinct
            outputs.append(HLL_ESTIMATE.format(raw=f"{state}__raw", empty=f"{state}__empty") + f" AS {name}")
    outputs.append("late_count")
    outputs += [f"{s}__n AS {_n_column(s, measures)}" for s in numeric if "n" in numeric[s]]
    outputs += [f'{s}__merged AS "{m["name"]}_registers"' for m in measures if m["func"] == "distinct"
                for s in [m["state"]]]

    raw_estimates = "".join(f",\n           0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096 / "
                            f"({s}__empty + {s}__inverse) AS {s}__raw" for s in sketches)
    columns = ", ".join(["app_id", "dt", "window_start", "window_end (timestamp, UTC)", *keys,
                         *[m["name"] for m in measures], "late_count",
                         *[_n_column(s, measures) for s in numeric if "n" in numeric[s]],
                         *[f'{m["name"]}_registers' for m in measures if m["func"] == "distinct"]])
    header = "\n".join(f"-- {line}" for line in [
        f"view: {metric.name}  (generated from chalicelib/metrics.yaml by chalicelib/query/views.py)",
        *textwrap.wrap(metric.description or metric.name, 96),
        *textwrap.wrap(f"Window: size {metric.window.size_ms // 1000} s, slide {metric.window.slide_ms // 1000} s. "
                       f"Columns: {columns}.", 96),
        "Rule (sql/README.md): per (app_id, window_start) the final rows when any exist, else the merged",
        "partials. Filter on app_id, and on dt so that Athena reads only those partitions."])
    return f"""{header}
CREATE OR REPLACE VIEW {metric.name} AS
WITH ranked AS (
    SELECT r.*,
           max(CASE WHEN r.stage = 'final' THEN 1 ELSE 0 END)
               OVER (PARTITION BY r.app_id, r.dt, r.window_start) AS has_final
    FROM {metric.name}_rollup r
),
chosen AS (
    -- the consistency rule
    SELECT * FROM ranked
    WHERE ((has_final = 1 AND stage = 'final') OR (has_final = 0 AND stage = 'partial'))
      AND event_count > 0  -- a final row without events is a tombstone: the window was finalized empty
),
parts AS (
    -- each chosen row's measures, plus one row per non-empty register of each sketch
    SELECT {group},
           event_count, late_count{lines(measure_rows)},
           CAST(NULL AS integer) AS hll_sketch, CAST(NULL AS integer) AS hll_register,
           CAST(NULL AS integer) AS hll_rank
    FROM chosen{unnests}
),
per_register AS (
    -- union of the sketches: the highest rank of each register
    SELECT {group}, hll_sketch, hll_register,
           sum(event_count) AS event_count, sum(late_count) AS late_count{lines(per_register)},
           max(hll_rank) AS hll_rank
    FROM parts
    GROUP BY {group}, hll_sketch, hll_register
),
merged AS (
    SELECT {group},
           sum(event_count) AS event_count, sum(late_count) AS late_count{lines(merged)}
    FROM per_register
    GROUP BY {group}
),
estimated AS (
    -- classic HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank over the non-empty registers)
    SELECT merged.*{raw_estimates}
    FROM merged
)
SELECT app_id,
       dt,
       CAST(from_unixtime(window_start / 1000) AS timestamp) AS window_start,
       CAST(from_unixtime(window_end / 1000) AS timestamp) AS window_end{"".join(f",{chr(10)}       {k}" for k in keys)},
       {f",{chr(10)}       ".join(outputs)}
FROM estimated
"""


def write_views(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in load_metrics().metrics:
        path = directory / f"{metric.name}.sql"
        path.write_text(view_sql(metric))
        written.append(path)
    return written


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[2] / "sql" / "views"
    for path in write_views(root):
        print(path)
