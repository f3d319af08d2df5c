-- name: class_activity
-- description: Per character class over the time range: events, distinct users (HyperLogLog over
--   the union of every window's registers), sum/min/max/average of attributes.value, the busiest
--   minute's users and the number of active minutes (view class_activity).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH windows AS (
    SELECT *
    FROM class_activity
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from
      AND window_start < :to
),
totals AS (
    SELECT character_class,
           sum("count") AS event_count,
           sum(value_sum) AS value_sum,
           sum(value_n) AS value_n,
           min(value_min) AS value_min,
           max(value_max) AS value_max,
           max(users) AS peak_minute_users,
           count(*) AS active_minutes
    FROM windows
    GROUP BY character_class
),
registers AS (
    SELECT character_class, CAST(floor(r / 256) AS integer) AS hll_register, max(r % 256) AS hll_rank
    FROM windows CROSS JOIN UNNEST(users_registers) AS u (r)
    GROUP BY character_class, CAST(floor(r / 256) AS integer)
),
sketch AS (
    SELECT character_class,
           4096 - count(*) AS empty_registers,
           0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096
               / (4096 - count(*) + sum(power(2e0, -hll_rank))) AS raw_estimate
    FROM registers
    GROUP BY character_class
)
SELECT t.character_class,
       t.event_count,
       coalesce(CAST(round(CASE WHEN s.raw_estimate <= 2.5e0 * 4096 AND s.empty_registers > 0
                                THEN 4096 * ln(4096e0 / s.empty_registers)
                                ELSE s.raw_estimate END) AS bigint), 0) AS users,
       t.value_sum,
       t.value_min,
       t.value_max,
       t.value_sum / nullif(t.value_n, 0) AS value_avg,
       t.peak_minute_users,
       t.active_minutes
FROM totals t
LEFT JOIN sketch s ON s.character_class IS NOT DISTINCT FROM t.character_class
ORDER BY t.event_count DESC, t.character_class
