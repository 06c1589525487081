-- name: top_reject_reasons
-- purpose: Why input lines were rejected, most common first, with an example source and line.
-- param: since timestamp = -24h : rejects received after this time
SELECT reason,
       count(*) AS lines,
       min(source) AS example_source,
       min(line) AS example_line,
       max(observed_at) AS last_seen
FROM rejects
WHERE observed_at >= $since
GROUP BY reason
ORDER BY lines DESC, reason
