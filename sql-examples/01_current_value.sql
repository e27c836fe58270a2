-- Question: what is the current value of every sensor, and when did it last report?
--
-- The `devices` table answers from MiniTrue's last-value cache: one row per series
-- (device_id, metric), without scanning any points, so it stays instant however much
-- history is stored. The same answer from the points themselves, PostgreSQL's way
-- `SELECT DISTINCT ON (device_id, metric) device_id, metric, time, value FROM readings
-- ORDER BY device_id, metric, time DESC` or TimescaleDB's `last(value, time)` (see
-- 15_battery_forecast.sql), reads every point.
SELECT device_id, metric, last_time, last_value
FROM devices
ORDER BY device_id, metric;
