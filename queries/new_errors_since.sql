-- name: new_errors_since
-- purpose: Error messages never seen before a time: what started failing.
-- param: since timestamp = -1h : messages first seen at or after this time
SELECT service, message, min(timestamp) AS first_seen, count(*) AS occurrences,
       count(DISTINCT correlation_id) AS requests
FROM logs
WHERE level IN ('error', 'fatal')
GROUP BY service, message
HAVING min(timestamp) >= $since
ORDER BY first_seen, service
