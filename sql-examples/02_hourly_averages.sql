-- Question: what was the average temperature of each device, hour by hour, on
-- Wednesday 2026-03-04?
--
-- time_bucket('1 hour', time) maps every reading to the start of its hour (TimescaleDB's
-- function; DataFusion's date_bin('1 hour', time) does the same). The FILTER clause turns
-- one aggregate into one column per device (a pivot), which reads better than 96 rows.
-- greenhouse-2 was offline from 09:15 to 12:45: hours without a single reading have no
-- average at all (an empty cell, i.e. NULL), not 0 -- see 14_downsample_gap_fill.sql.
SELECT time_bucket('1 hour', time) AS hour,
       round(avg(value) FILTER (WHERE device_id = 'greenhouse-1'), 2) AS greenhouse_1,
       round(avg(value) FILTER (WHERE device_id = 'greenhouse-2'), 2) AS greenhouse_2,
       round(avg(value) FILTER (WHERE device_id = 'warehouse-1'), 2) AS warehouse_1,
       round(avg(value) FILTER (WHERE device_id = 'freezer-1'), 2) AS freezer_1
FROM readings
WHERE metric = 'temperature'
  AND time >= '2026-03-04 00:00:00+00' AND time < '2026-03-05 00:00:00+00'
GROUP BY hour
ORDER BY hour;
