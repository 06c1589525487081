-- name: slowest_requests
-- purpose: Requests with the longest time from first to last line, across services, in a window.
-- param: since timestamp = -1h : requests that started after this time
-- param: limit int = 20 : how many
SELECT correlation_id,
       max(timestamp) - min(timestamp) AS duration,
       min(timestamp) AS started,
       count(*) AS lines,
       count(DISTINCT service) AS services,
       sum(CASE WHEN level IN ('error', 'fatal') THEN 1 ELSE 0 END) AS errors
FROM logs
WHERE correlation_id IS NOT NULL AND timestamp >= $since
GROUP BY correlation_id
ORDER BY duration DESC, correlation_id
LIMIT $limit
