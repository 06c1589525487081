-- name: errors_by_service
-- purpose: Error and fatal lines per service in a time window, worst first.
-- param: since timestamp = -1h : start of the window
-- param: until timestamp = -0s : end of the window
SELECT service,
       count(*) AS errors,
       count(DISTINCT correlation_id) AS requests,
       min(timestamp) AS first_seen,
       max(timestamp) AS last_seen
FROM logs
WHERE level IN ('error', 'fatal')
  AND timestamp >= $since AND timestamp <= $until
GROUP BY service
ORDER BY errors DESC, service
