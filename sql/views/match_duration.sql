-- view: match_duration  (generated from chalicelib/metrics.yaml by eventpipe/query/views.py)
-- Match duration percentiles per character class, every 5 minutes (the value of match_end).
-- Window: size 300 s, slide 300 s. Columns: app_id, dt, window_start, window_end (timestamp, UTC),
-- character_class, count, duration_p50, duration_p90, duration_p99, late_count, duration_sketch.
-- Rule (sql/README.md): per (app_id, window_start) the final rows when any exist, else the merged
-- partials. Filter on app_id, and on dt so that Athena reads only those partitions.
CREATE OR REPLACE VIEW match_duration AS
WITH ranked AS (
    SELECT r.*,
           max(CASE WHEN r.stage = 'final' THEN 1 ELSE 0 END)
               OVER (PARTITION BY r.app_id, r.dt, r.window_start) AS has_final
    FROM match_duration_rollup r
),
chosen AS (
    -- the consistency rule
    SELECT * FROM ranked
    WHERE ((has_final = 1 AND stage = 'final') OR (has_final = 0 AND stage = 'partial'))
      AND event_count > 0  -- a final row without events is a tombstone: the window was finalized empty
),
parts AS (
    -- each chosen row's scalar states, plus one row per non-empty slot of each sketch
    SELECT app_id, dt, window_start, window_end, character_class,
           event_count, late_count,
           CAST(NULL AS integer) AS sketch, CAST(NULL AS bigint) AS slot, CAST(NULL AS bigint) AS dds_count
    FROM chosen
    UNION ALL
    SELECT app_id, dt, window_start, window_end, character_class,
           0, 0,
           0, CAST(r % 8192 AS integer), CAST(floor(r / 8192) AS bigint)
    FROM chosen CROSS JOIN UNNEST(attributes_value__buckets) AS u (r)
),
per_slot AS (
    -- union of the sketches, slot by slot (HLL: highest rank per register; quantiles: sum of counts)
    SELECT app_id, dt, window_start, window_end, character_class, sketch, slot,
           sum(event_count) AS event_count, sum(late_count) AS late_count,
           CAST(sum(dds_count) AS bigint) AS dds_count
    FROM parts
    GROUP BY app_id, dt, window_start, window_end, character_class, sketch, slot
),
running AS (
    -- running sums over the slots of each sketch (quantiles)
    SELECT per_slot.*,
           CAST(sum(dds_count) OVER (PARTITION BY app_id, dt, window_start, window_end, character_class, sketch
                                   ORDER BY slot ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
                AS bigint) AS dds_through,
           CAST(sum(dds_count) OVER (PARTITION BY app_id, dt, window_start, window_end, character_class, sketch) AS bigint) AS dds_total
    FROM per_slot
),
merged AS (
    SELECT app_id, dt, window_start, window_end, character_class,
           sum(event_count) AS event_count, sum(late_count) AS late_count,
           array_agg(dds_count * 8192 + slot ORDER BY slot) FILTER (WHERE sketch = 0) AS attributes_value__ddsketch_merged,
           min(slot) FILTER (WHERE sketch = 0 AND dds_through > floor((1 * (dds_total - 1)) / 2)) AS duration_p50__slot,
           min(slot) FILTER (WHERE sketch = 0 AND dds_through > floor((9 * (dds_total - 1)) / 10)) AS duration_p90__slot,
           min(slot) FILTER (WHERE sketch = 0 AND dds_through > floor((99 * (dds_total - 1)) / 100)) AS duration_p99__slot
    FROM running
    GROUP BY app_id, dt, window_start, window_end, character_class
)
SELECT app_id,
       dt,
       CAST(from_unixtime(window_start / 1000) AS timestamp) AS window_start,
       CAST(from_unixtime(window_end / 1000) AS timestamp) AS window_end,
       character_class,
       event_count AS "count",
       CASE WHEN duration_p50__slot = 3110 THEN 0e0
            WHEN duration_p50__slot > 3110 THEN 2e0 * power(1.02020202020202e0, duration_p50__slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - duration_p50__slot) / 2.02020202020202e0 END AS "duration_p50",
       CASE WHEN duration_p90__slot = 3110 THEN 0e0
            WHEN duration_p90__slot > 3110 THEN 2e0 * power(1.02020202020202e0, duration_p90__slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - duration_p90__slot) / 2.02020202020202e0 END AS "duration_p90",
       CASE WHEN duration_p99__slot = 3110 THEN 0e0
            WHEN duration_p99__slot > 3110 THEN 2e0 * power(1.02020202020202e0, duration_p99__slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - duration_p99__slot) / 2.02020202020202e0 END AS "duration_p99",
       late_count,
       attributes_value__ddsketch_merged AS "duration_sketch"
FROM merged
