-- name: match_durations
-- description: Match duration per character class over the time range: matches, and p50, p90 and
--   p99 from the union of every 5-minute window's quantile sketch (within 1 % of the exact
--   quantiles, like the view's), plus the slowest window's p99 (view match_duration).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH windows AS (
    SELECT *
    FROM match_duration
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from
      AND window_start < :to
),
buckets AS (
    -- the union of the sketches: counts summed per slot (element = count * 8192 + slot)
    SELECT character_class, CAST(r % 8192 AS integer) AS slot, CAST(sum(floor(r / 8192)) AS bigint) AS n
    FROM windows CROSS JOIN UNNEST(duration_sketch) AS u (r)
    GROUP BY character_class, CAST(r % 8192 AS integer)
),
running AS (
    SELECT character_class, slot,
           CAST(sum(n) OVER (PARTITION BY character_class ORDER BY slot
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS bigint) AS through,
           CAST(sum(n) OVER (PARTITION BY character_class) AS bigint) AS total
    FROM buckets
),
picked AS (
    -- quantile q = num / den: the first slot whose running count exceeds floor(num * (total - 1) / den)
    SELECT character_class,
           max(total) AS matches,
           min(slot) FILTER (WHERE through > floor((1 * (total - 1)) / 2)) AS p50_slot,
           min(slot) FILTER (WHERE through > floor((9 * (total - 1)) / 10)) AS p90_slot,
           min(slot) FILTER (WHERE through > floor((99 * (total - 1)) / 100)) AS p99_slot
    FROM running
    GROUP BY character_class
),
slowest AS (
    SELECT character_class, max(duration_p99) AS slowest_window_p99, count(*) AS windows
    FROM windows
    GROUP BY character_class
)
-- a slot's value: 0 at slot 3110, else +/- 2 * gamma^k / (gamma + 1), gamma = 1.01 / 0.99 (sql/README.md)
SELECT p.character_class,
       p.matches,
       CASE WHEN p.p50_slot = 3110 THEN 0e0
            WHEN p.p50_slot > 3110 THEN 2e0 * power(1.02020202020202e0, p.p50_slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - p.p50_slot) / 2.02020202020202e0 END AS p50,
       CASE WHEN p.p90_slot = 3110 THEN 0e0
            WHEN p.p90_slot > 3110 THEN 2e0 * power(1.02020202020202e0, p.p90_slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - p.p90_slot) / 2.02020202020202e0 END AS p90,
       CASE WHEN p.p99_slot = 3110 THEN 0e0
            WHEN p.p99_slot > 3110 THEN 2e0 * power(1.02020202020202e0, p.p99_slot - 4147) / 2.02020202020202e0
            ELSE -2e0 * power(1.02020202020202e0, 2073 - p.p99_slot) / 2.02020202020202e0 END AS p99,
       s.slowest_window_p99,
       s.windows
FROM picked p
JOIN slowest s ON s.character_class IS NOT DISTINCT FROM p.character_class
ORDER BY p.matches DESC, p.character_class
