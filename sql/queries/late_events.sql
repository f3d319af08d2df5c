-- name: late_events
-- description: Windows that received events after the watermark had closed them (late_count > 0),
--   per metric and window, with the window's events where the metric counts them. Late events are
--   aggregated all the same; late_count counts arrivals (at least once), so a redelivered late
--   event can count twice.
-- param: app_id string
-- param: from timestamp default 2024-01-01T00:00:00Z
-- param: to timestamp default 2100-01-01T00:00:00Z
WITH late AS (
    SELECT 'event_counts' AS metric, window_start, window_end,
           sum(late_count) AS late_count, sum("count") AS event_count
    FROM event_counts
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from AND window_start < :to
    GROUP BY window_start, window_end
    UNION ALL
    SELECT 'class_activity', window_start, window_end, sum(late_count), sum("count")
    FROM class_activity
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from AND window_start < :to
    GROUP BY window_start, window_end
    UNION ALL
    SELECT 'region_activity', window_start, window_end, sum(late_count), sum("count")
    FROM region_activity
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from AND window_start < :to
    GROUP BY window_start, window_end
    UNION ALL
    SELECT 'active_users_5m', window_start, window_end, sum(late_count), CAST(NULL AS bigint)
    FROM active_users_5m
    WHERE app_id = :app_id
      AND dt BETWEEN date_format(:from, '%Y-%m-%d') AND date_format(:to, '%Y-%m-%d')
      AND window_start >= :from AND window_start < :to
    GROUP BY window_start, window_end
)
SELECT metric, window_start, window_end, late_count, event_count
FROM late
WHERE late_count > 0
ORDER BY metric, window_start
