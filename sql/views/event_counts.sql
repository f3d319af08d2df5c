-- view: event_counts
-- Metric event_counts (chalicelib/metrics.yaml): events and distinct users per app, event type and
-- 1-minute window, read from the Glue table event_counts_rollup with the lake's consistency rule
-- (sql/README.md): for each (app_id, window_start) the stage='final' rows when any exist, otherwise
-- the stage='partial' rows merged (sums of counts, union of the HyperLogLog registers).
-- Columns: app_id, dt (partition day of window_start), window_start, window_end (timestamp, UTC),
--   event_type, "count", users (HLL estimate), late_count, users_registers (the merged registers,
--   register * 256 + rank, to merge distinct users across windows).
-- Filter on app_id, and on dt so that Athena reads only those partitions.
CREATE OR REPLACE VIEW event_counts AS
WITH ranked AS (
    SELECT r.*,
           max(CASE WHEN r.stage = 'final' THEN 1 ELSE 0 END)
               OVER (PARTITION BY r.app_id, r.dt, r.window_start) AS has_final
    FROM event_counts_rollup r
),
chosen AS (
    -- the consistency rule
    SELECT * FROM ranked
    WHERE ((has_final = 1 AND stage = 'final') OR (has_final = 0 AND stage = 'partial'))
      AND event_count > 0  -- a final row without events is a tombstone: the window was finalized empty
),
parts AS (
    -- each chosen row's measures, plus one row per non-empty register of its sketch
    SELECT app_id, dt, window_start, window_end, event_type,
           event_count, late_count,
           CAST(NULL AS integer) AS hll_register, CAST(NULL AS integer) AS hll_rank
    FROM chosen
    UNION ALL
    SELECT app_id, dt, window_start, window_end, event_type,
           0, 0,
           CAST(floor(r / 256) AS integer), CAST(r % 256 AS integer)
    FROM chosen CROSS JOIN UNNEST(user_id__registers) AS u (r)
),
per_register AS (
    -- union of the sketches: the highest rank of each register
    SELECT app_id, dt, window_start, window_end, event_type, hll_register,
           sum(event_count) AS event_count, sum(late_count) AS late_count, max(hll_rank) AS hll_rank
    FROM parts
    GROUP BY app_id, dt, window_start, window_end, event_type, hll_register
),
merged AS (
    SELECT app_id, dt, window_start, window_end, event_type,
           sum(event_count) AS event_count, sum(late_count) AS late_count,
           4096 - count(hll_register) AS empty_registers,
           coalesce(sum(power(2e0, -hll_rank)), 0e0) AS inverse_sum,
           array_agg(hll_register * 256 + hll_rank) FILTER (WHERE hll_register IS NOT NULL) AS users_registers
    FROM per_register
    GROUP BY app_id, dt, window_start, window_end, event_type
),
estimated AS (
    -- classic HyperLogLog, m = 4096: alpha * m^2 / (V + sum of 2^-rank over the non-empty registers)
    SELECT merged.*,
           0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096 / (empty_registers + inverse_sum) AS raw_estimate
    FROM merged
)
SELECT app_id,
       dt,
       CAST(from_unixtime(window_start / 1000) AS timestamp) AS window_start,
       CAST(from_unixtime(window_end / 1000) AS timestamp) AS window_end,
       event_type,
       event_count AS "count",
       CAST(round(CASE WHEN raw_estimate <= 2.5e0 * 4096 AND empty_registers > 0
                       THEN 4096 * ln(4096e0 / empty_registers)  -- linear counting for small sets
                       ELSE raw_estimate END) AS bigint) AS users,
       late_count,
       users_registers
FROM estimated
