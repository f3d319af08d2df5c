-- name: top_users
-- description: The users with the most events (raw events, duplicate event_ids removed), with the
--   number of event types and their first and last event time; ties by user_id.
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
-- param: limit bigint default 20
WITH copies AS (
    SELECT user_id, event_type, event_time,
           row_number() OVER (PARTITION BY app_id, event_id ORDER BY received_at) AS copy_number
    FROM events
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND event_time >= :from
      AND event_time < :to
)
SELECT user_id,
       count(*) AS event_count,
       count(DISTINCT event_type) AS event_types,
       min(event_time) AS first_event_time,
       max(event_time) AS last_event_time
FROM copies
WHERE copy_number = 1 AND user_id IS NOT NULL
GROUP BY user_id
ORDER BY event_count DESC, user_id
LIMIT :limit
