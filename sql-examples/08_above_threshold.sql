-- Question: when was the freezer warmer than -10 °C this week?
--
-- A plain filter on the value; the series (device_id and metric) and the time range are
-- pushed down to storage, so only freezer-1's temperature points of the week are read
-- (EXPLAIN shows it).
SELECT time, value
FROM readings
WHERE device_id = 'freezer-1' AND metric = 'temperature'
  AND value > -10
  AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
ORDER BY time;
