-- Question: what temperature does each sensor stay under 50 %, 95 % and 99 % of the week?
--
-- percentile_cont is exact: it sorts the values of each group and interpolates between
-- neighbours, like PostgreSQL's. On large ranges approx_percentile_cont(value, 0.95)
-- gives an estimate from a t-digest in bounded memory.
SELECT device_id,
       count(*) AS points,
       round(percentile_cont(0.5) WITHIN GROUP (ORDER BY value), 2) AS p50,
       round(percentile_cont(0.95) WITHIN GROUP (ORDER BY value), 2) AS p95,
       round(percentile_cont(0.99) WITHIN GROUP (ORDER BY value), 2) AS p99,
       max(value) AS max
FROM readings
WHERE metric = 'temperature'
  AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
GROUP BY device_id
ORDER BY device_id;
