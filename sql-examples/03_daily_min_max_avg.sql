-- Question: per device and day, what were the lowest, highest and average temperatures?
--
-- date_trunc('day', time) cuts at midnight UTC (so does time_bucket('1 day', time)).
-- Rounding the average keeps the report readable; min and max are actual readings.
SELECT device_id,
       date_trunc('day', time) AS day,
       min(value) AS min,
       max(value) AS max,
       round(avg(value), 2) AS avg
FROM readings
WHERE metric = 'temperature'
  AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
GROUP BY device_id, day
ORDER BY device_id, day;
