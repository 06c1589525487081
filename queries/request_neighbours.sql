-- name: request_neighbours
-- purpose: Lines logged around a request's lines by the same service on the same host, other requests included: what else was going on.
-- param: id string : the correlation id
-- param: seconds float = 1.0 : how far before and after each of the request's lines
WITH request AS (
    SELECT service, host, timestamp FROM logs WHERE correlation_id = $id
)
SELECT DISTINCT l.timestamp, l.service, l.host, l.level, l.message, l.correlation_id,
       l.correlation_id = $id AS in_request
FROM logs l
JOIN request r
  ON l.service = r.service
 AND (l.host IS NOT DISTINCT FROM r.host)
 AND abs(date_part('epoch', l.timestamp) - date_part('epoch', r.timestamp)) <= $seconds
ORDER BY l.timestamp, l.service
