-- Question: warehouse-1's temperature of 85.0 °C on Thursday at 14:30 is a sensor glitch;
-- how do I remove it, and check that it is gone?
--
-- DELETE FROM readings takes the series (device_id = / IN, optionally metric) and a time
-- range; the points disappear from queries at once and from disk at the next compaction.
-- It does not take conditions on value (`AND value > 60` is refused rather than widened),
-- so find the bad times first (09_out_of_range.sql) and delete by time. (This example
-- writes: the test suite runs it on a node of its own.)
DELETE FROM readings
WHERE device_id = 'warehouse-1' AND metric = 'temperature'
  AND time >= '2026-03-05 14:30:00+00' AND time < '2026-03-05 14:45:00+00';

SELECT date_trunc('day', time) AS day, count(*) AS points, max(value) AS max, round(avg(value), 2) AS avg
FROM readings
WHERE device_id = 'warehouse-1' AND metric = 'temperature'
  AND time >= '2026-03-05 00:00:00+00' AND time < '2026-03-06 00:00:00+00'
GROUP BY day;
