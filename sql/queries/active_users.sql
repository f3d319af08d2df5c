-- name: active_users
-- description: Distinct users active in the 5 minutes before each minute (view active_users_5m,
--   hopping 5-minute windows every minute; the row's minute is the window's end).
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
SELECT window_end AS minute,
       window_start,
       users
FROM active_users_5m
WHERE app_id = :app_id
  AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
  AND window_start >= :from
  AND window_start < :to
ORDER BY minute
