-- name: daily_active_users
-- description: Distinct users and events per UTC day, exact, from the raw events with duplicate
--   event_ids (client retries) removed: the first received copy of each (app_id, event_id) counts.
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH copies AS (
    SELECT dt, user_id,
           row_number() OVER (PARTITION BY app_id, event_id ORDER BY received_at) AS copy_number
    FROM events
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND event_time >= :from
      AND event_time < :to
)
SELECT dt AS event_date,
       count(DISTINCT user_id) AS active_users,
       count(*) AS event_count
FROM copies
WHERE copy_number = 1
GROUP BY dt
ORDER BY event_date
