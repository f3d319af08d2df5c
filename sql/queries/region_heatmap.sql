-- name: region_heatmap
-- description: GPS activity per ~5 km geohash cell (precision 5) over the time range: pings,
--   distinct users (HyperLogLog over the union of every window's registers), the busiest minute's
--   users and the first and last active minute (view region_activity).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH windows AS (
    SELECT *
    FROM region_activity
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from
      AND window_start < :to
),
totals AS (
    SELECT geohash5,
           sum("count") AS pings,
           max(users) AS peak_minute_users,
           min(window_start) AS first_minute,
           max(window_start) AS last_minute
    FROM windows
    GROUP BY geohash5
),
registers AS (
    SELECT geohash5, CAST(floor(r / 256) AS integer) AS hll_register, max(r % 256) AS hll_rank
    FROM windows CROSS JOIN UNNEST(users_registers) AS u (r)
    GROUP BY geohash5, CAST(floor(r / 256) AS integer)
),
sketch AS (
    SELECT geohash5,
           4096 - count(*) AS empty_registers,
           0.7213e0 / (1e0 + 1.079e0 / 4096) * 4096 * 4096
               / (4096 - count(*) + sum(power(2e0, -hll_rank))) AS raw_estimate
    FROM registers
    GROUP BY geohash5
)
SELECT t.geohash5,
       t.pings,
       coalesce(CAST(round(CASE WHEN s.raw_estimate <= 2.5e0 * 4096 AND s.empty_registers > 0
                                THEN 4096 * ln(4096e0 / s.empty_registers)
                                ELSE s.raw_estimate END) AS bigint), 0) AS users,
       t.peak_minute_users,
       t.first_minute,
       t.last_minute
FROM totals t
LEFT JOIN sketch s ON s.geohash5 IS NOT DISTINCT FROM t.geohash5
ORDER BY t.pings DESC, t.geohash5
