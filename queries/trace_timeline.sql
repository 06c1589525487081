-- name: trace_timeline
-- purpose: Every line of one request across all services, in time order. No time range needed.
-- param: id string : the correlation id (trace id, request id)
SELECT timestamp, service, level, message, span_id, host
FROM logs
WHERE correlation_id = $id
ORDER BY timestamp, service
