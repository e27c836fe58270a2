-- Question: what is the 1-hour moving average of warehouse-1's temperature around
-- Thursday's glitch, and how far does one bad reading drag it?
--
-- A window frame over time, RANGE BETWEEN INTERVAL '45 minutes' PRECEDING AND CURRENT ROW,
-- averages each reading with those of the 45 minutes before it: the hour of readings that
-- ends with it (4 readings at 15-minute intervals), however many actually arrived, so it
-- stays right across gaps, unlike a frame counting rows (ROWS BETWEEN 3 PRECEDING ...).
-- The glitch of 85.0 °C at 14:30 lifts every hourly average that contains it.
SELECT time,
       value,
       round(avg(value) OVER (ORDER BY time RANGE BETWEEN INTERVAL '45 minutes' PRECEDING AND CURRENT ROW), 2)
           AS avg_1h
FROM readings
WHERE device_id = 'warehouse-1' AND metric = 'temperature'
  AND time >= '2026-03-05 13:00:00+00' AND time < '2026-03-05 16:00:00+00'
ORDER BY time;
