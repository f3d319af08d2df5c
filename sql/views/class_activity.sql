-- view: class_activity  (generated from chalicelib/metrics.yaml by eventpipe/query/views.py)
-- Activity per character class and minute (events that carry one).
-- Window: size 60 s, slide 60 s. Columns: app_id, dt, window_start, window_end (timestamp, UTC),
-- character_class, count, value_sum, value_min, value_max, value_avg, users, late_count, value_n,
-- users_registers.
-- Rule (sql/README.md): per (app_id, window_start) the final rows when any exist, else the merged
-- partials. Filter on app_id, and on dt so that Athena reads only those partitions.
CREATE OR REPLACE VIEW class_activity AS
WITH ranked AS (
    SELECT r.*,
           max(CASE WHEN r.stage = 'final' THEN 1 ELSE 0 END)
               OVER (PARTITION BY r.app_id, r.dt, r.window_start) AS has_final
    FROM class_activity_rollup r
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
           attributes_value__sum,
           attributes_value__n,
           attributes_value__min,
           attributes_value__max,
           user_id__exact,
           CAST(NULL AS integer) AS sketch, CAST(NULL AS bigint) AS slot, CAST(NULL AS integer) AS hll_rank, CAST(NULL AS integer) AS hash_inexact
    FROM chosen
    UNION ALL
    SELECT app_id, dt, window_start, window_end, character_class,
           0, 0,
           0e0,
           0,
           CAST(NULL AS double),
           CAST(NULL AS double),
           CAST(NULL AS bigint),
           0, CAST(floor(r / 256) AS integer), CAST(r % 256 AS integer), CAST(NULL AS integer)
    FROM chosen CROSS JOIN UNNEST(user_id__registers) AS u (r)
    UNION ALL
    SELECT app_id, dt, window_start, window_end, character_class,
           0, 0,
           0e0,
           0,
           CAST(NULL AS double),
           CAST(NULL AS double),
           CAST(NULL AS bigint),
           1, r, CAST(NULL AS integer), CASE WHEN r IS NULL THEN 1 ELSE 0 END
    FROM chosen CROSS JOIN UNNEST(coalesce(user_id__hashes, ARRAY[CAST(NULL AS bigint)])) AS u (r)
),
per_slot AS (
    -- union of the sketches, slot by slot (HLL: highest rank per register; quantiles: sum of counts)
    SELECT app_id, dt, window_start, window_end, character_class, sketch, slot,
           sum(event_count) AS event_count, sum(late_count) AS late_count,
           sum(attributes_value__sum) AS attributes_value__sum,
           sum(attributes_value__n) AS attributes_value__n,
           min(attributes_value__min) AS attributes_value__min,
           max(attributes_value__max) AS attributes_value__max,
           CASE WHEN count(*) = 1 THEN max(user_id__exact) END AS user_id__exact,
           max(hll_rank) AS hll_rank,
           max(hash_inexact) AS hash_inexact
    FROM parts
    GROUP BY app_id, dt, window_start, window_end, character_class, sketch, slot
),
merged AS (
    SELECT app_id, dt, window_start, window_end, character_class,
           sum(event_count) AS event_count, sum(late_count) AS late_count,
           sum(attributes_value__sum) AS attributes_value__sum,
           sum(attributes_value__n) AS attributes_value__n,
           min(attributes_value__min) AS attributes_value__min,
           max(attributes_value__max) AS attributes_value__max,
           max(user_id__exact) AS user_id__exact,
           4096 - count(slot) FILTER (WHERE sketch = 0) AS user_id__empty,
           coalesce(sum(power(2e0, -hll_rank)) FILTER (WHERE sketch = 0), 0e0) AS user_id__inverse,
           array_agg(CASE WHEN sketch = 0 THEN CAST(slot * 256 + hll_rank AS integer) END ORDER BY slot) FILTER (WHERE sketch = 0) AS user_id__hll_merged,
           count(slot) FILTER (WHERE sketch = 1) AS user_id__union,
           coalesce(max(hash_inexact) FILTER (WHERE sketch = 1), 0) AS user_id__inexact
    FROM per_slot
    GROUP BY app_id, dt, window_start, window_end, character_class
),
estimated AS (
    -- estimates from the merged sketches (HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank))
    SELECT merged.*,
           0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096 / (user_id__empty + user_id__inverse) AS user_id__raw
    FROM merged
)
SELECT app_id,
       dt,
       CAST(from_unixtime(window_start / 1000) AS timestamp) AS window_start,
       CAST(from_unixtime(window_end / 1000) AS timestamp) AS window_end,
       character_class,
       event_count AS "count",
       CASE WHEN attributes_value__n > 0 THEN attributes_value__sum END AS "value_sum",
       attributes_value__min AS "value_min",
       attributes_value__max AS "value_max",
       attributes_value__sum / nullif(attributes_value__n, 0) AS "value_avg",
       CASE WHEN user_id__exact IS NOT NULL THEN user_id__exact  -- a final row: exact
            WHEN user_id__inexact = 0 AND user_id__union <= 4096 THEN user_id__union  -- every part an exact set
            ELSE CAST(round(CASE WHEN user_id__raw <= 2.5e0 * 4096 AND user_id__empty > 0
                       THEN 4096 * ln(4096e0 / user_id__empty)  -- linear counting for small sets
                       ELSE user_id__raw END) AS bigint) END AS "users",
       late_count,
       attributes_value__n AS "value_n",
       user_id__hll_merged AS "users_registers"
FROM estimated
