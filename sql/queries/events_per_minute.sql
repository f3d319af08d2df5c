-- name: events_per_minute
-- description: Events, distinct users and late events per minute and event type (view event_counts:
--   finalized windows are exact and deduplicated; windows not finalized yet are merged partials,
--   which can still count client retries twice).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
SELECT window_start AS minute,
       event_type,
       "count",
       users,
       late_count
FROM event_counts
WHERE app_id = :app_id
  AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
  AND window_start >= :from
  AND window_start < :to
ORDER BY minute, event_type
