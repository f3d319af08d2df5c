-- name: sessions
-- description: Session metrics of the sessions that start in [from, to) (the sessions table, written at
--   finalization: inactivity gap per app, default 30 min): sessions, users, events, bounces (sessions
--   of one event), bounce_rate and the exact median duration in seconds (the mean of the two middle
--   durations for an even count), as GET /v1/sessions answers them.
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH picked AS (
    SELECT user_id, duration_ms, events,
           row_number() OVER (ORDER BY duration_ms, session_id) AS position,
           count(*) OVER () AS total
    FROM sessions
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND session_start >= :from
      AND session_start < :to
)
SELECT count(*) AS sessions,
       count(DISTINCT user_id) AS users,
       coalesce(sum(events), 0) AS events,
       count_if(events = 1) AS bounces,
       CASE WHEN count(*) = 0 THEN NULL ELSE count_if(events = 1) * 1e0 / count(*) END AS bounce_rate,
       avg(CASE WHEN position = CAST(floor((total + 1) / 2e0) AS bigint)
                  OR position = CAST(floor(total / 2e0) AS bigint) + 1
                THEN duration_ms END) / 1000e0 AS median_duration_s
FROM picked
