-- name: bad_rows_by_reason
-- description: Rejected input of the app per consumer (aggregate, archive, search, ingest) and reason, with
--   the first and last day seen (table bad_rows; dt is the day the Kinesis record arrived). Only rows
--   that carry the event (event.app_id) belong to an app: undecodable records and lines have no app
--   and are visible to operators only (query bad_rows directly).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
SELECT consumer,
       reason,
       count(*) AS bad_rows,
       min(dt) AS first_day,
       max(dt) AS last_day
FROM bad_rows
WHERE event.app_id = :app_id
  AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
GROUP BY consumer, reason
ORDER BY bad_rows DESC, consumer, reason
