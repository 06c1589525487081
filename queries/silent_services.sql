-- name: silent_services
-- purpose: Services that logged during the lookback window but have been silent since a time.
-- param: since timestamp = -5m : silent from this time on
-- param: lookback timestamp = -24h : only services seen after this time count
SELECT service, max(timestamp) AS last_seen, count(*) AS lines_in_lookback
FROM logs
WHERE timestamp >= $lookback AND service IS NOT NULL
GROUP BY service
HAVING max(timestamp) < $since
ORDER BY last_seen
