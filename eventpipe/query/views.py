"""The Athena view of each metric, generated from its definition in metrics.yaml.

Like the Glue tables, the views follow the metric configuration, so a new
metric gets its view without hand-written SQL. ``sql/views/<metric>.sql`` are
this module's output, committed so Athena users can read and run them; a test
keeps them identical to it. Regenerate with::

    .venv/bin/python -m eventpipe.query.views

Each view applies the lake's consistency rule (sql/README.md): per (app_id,
window_start) the stage='final' rows when any exist, otherwise the merged
stage='partial' rows; final rows without events are tombstones and dropped.
The measures' SQL comes from the measure registry: distinct counts merge the
HyperLogLog registers (``<state>__registers``: register * 256 + rank) and use
the classic estimator with linear counting; percentiles merge the quantile
sketches (``<state>__buckets``: count * 8192 + slot) and walk their running
counts (sql/README.md).
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

from chalicelib.processing import MetricDef, load_metrics, partials_schema
from chalicelib.processing.measures import MEASURES, ScalarState, SketchState
from chalicelib.processing.partials import measure_specs, read_description, states_of


def view_sql(metric: MetricDef) -> str:
    """The ``CREATE OR REPLACE VIEW`` statement of a metric (Athena SQL).

    Every piece of SQL that depends on a measure comes from the measure
    registry (chalicelib/processing/measures/): scalar states are merged
    with their aggregate; each sketch state is unnested into ``(sketch,
    slot, value)`` rows, merged per slot, and aggregated per group.
    """
    desc = read_description(partials_schema(metric))
    keys, measures, states = desc["keys"], measure_specs(desc), states_of(desc)
    group = ", ".join(["app_id", "dt", "window_start", "window_end", *keys])
    scalars = [(p, s) for p, s in states if issubclass(s, ScalarState)]
    # each sketch state, and the SQL sketches derived from it (HLL registers + exact hash sets)
    sketches = [(p, k) for p, s in states if issubclass(s, SketchState) for k in (s, *s.sql_derived)]
    sketch_index = {(p, s.suffix): i for i, (p, s) in enumerate(sketches)}
    value_columns = list(dict.fromkeys(s.sql_value for _, s in sketches))  # [(column, type)] per sketch kind
    slot_merges = list(dict.fromkeys(f"{s.sql_slot_merge} AS {s.sql_value[0]}" for _, s in sketches))
    windows = list(dict.fromkeys(w for _, s in sketches for w in s.sql_window))
    indent = "           "

    def lines(items: list[str]) -> str:
        return "".join(f",\n{indent}{item}" for item in items)

    state_rows = [s.column(p) for p, s in scalars]
    identity_rows = [s.sql_identity for _, s in scalars]
    merged_scalars = [f"{s.sql_merge}({s.column(p)}) AS {s.column(p)}" for p, s in scalars]
    row_scalars = [s.sql_first_merge(p) for p, s in scalars]  # the first merge, of the chosen rows
    merged = merged_scalars + [agg for i, (p, s) in enumerate(sketches) for agg in s.sql_merged(i, p)]
    merged += [agg for m in measures for agg in MEASURES[m.func].sql_merged(m, sketch_index)]
    no_slot = "CAST(NULL AS integer) AS sketch, CAST(NULL AS bigint) AS slot" + "".join(
        f", CAST(NULL AS {kind}) AS {column}" for column, kind in value_columns)

    def unnest(i: int, prefix: str, state) -> str:  # noqa: ANN001 - a SketchState kind
        slot, value = state.sql_unnest("r")
        values = ", ".join(value if (column, kind) == state.sql_value else f"CAST(NULL AS {kind})"
                           for column, kind in value_columns)
        return f"""
    UNION ALL
    SELECT {group},
           0, 0{lines(identity_rows)},
           {i}, {slot}, {values}
    FROM chosen CROSS JOIN UNNEST({state.sql_unnest_source(prefix)}) AS u (r)"""

    unnests = "".join(unnest(i, p, s) for i, (p, s) in enumerate(sketches))
    source = "per_slot"
    running = ""
    if windows:
        partition = f"{group}, sketch"
        running = f"""
running AS (
    -- running sums over the slots of each sketch (quantiles)
    SELECT per_slot.*{lines([w.format(partition=partition) for w in windows])}
    FROM per_slot
),"""
        source = "running"
    estimates = [e for p, s in sketches for e in s.sql_estimated(p)]
    estimated = f""",
estimated AS (
    -- estimates from the merged sketches (HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank))
    SELECT merged.*{lines(estimates)}
    FROM merged
)""" if estimates else ""
    outputs = [f'{MEASURES[m.func].sql_result(m)} AS "{m.name}"' for m in measures]
    outputs.append("late_count")
    exports = [e for p, s in states for e in s.sql_exports(p, measures)]
    exports += [e for m in measures for e in MEASURES[m.func].sql_exports(m)]
    outputs += [f'{expression} AS "{name}"' for expression, name in exports]

    columns = ", ".join(["app_id", "dt", "window_start", "window_end (timestamp, UTC)", *keys,
                         *[m.name for m in measures], "late_count", *[name for _, name in exports]])
    header = "\n".join(f"-- {line}" for line in [
        f"view: {metric.name}  (generated from chalicelib/metrics.yaml by eventpipe/query/views.py)",
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
    -- each chosen row's scalar states, plus one row per non-empty slot of each sketch
    SELECT {group},
           event_count, late_count{lines(state_rows)},
           {no_slot}
    FROM chosen{unnests}
),
per_slot AS (
    -- union of the sketches, slot by slot (HLL: highest rank per register; quantiles: sum of counts)
    SELECT {group}, sketch, slot,
           sum(event_count) AS event_count, sum(late_count) AS late_count{lines(row_scalars + slot_merges)}
    FROM parts
    GROUP BY {group}, sketch, slot
),{running}
merged AS (
    SELECT {group},
           sum(event_count) AS event_count, sum(late_count) AS late_count{lines(merged)}
    FROM {source}
    GROUP BY {group}
){estimated}
SELECT app_id,
       dt,
       CAST(from_unixtime(window_start / 1000) AS timestamp) AS window_start,
       CAST(from_unixtime(window_end / 1000) AS timestamp) AS window_end{"".join(f",{chr(10)}       {k}" for k in keys)},
       {f",{chr(10)}       ".join(outputs)}
FROM {"estimated" if estimates else "merged"}
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
