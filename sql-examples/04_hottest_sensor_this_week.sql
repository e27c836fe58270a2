-- Question: which sensor got hottest this week, how hot, and when?
--
-- Ranking with row_number() per device keeps the time of each device's maximum (a plain
-- max(value) would lose it); ties go to the earliest reading. Readings outside what the
-- sensor can physically measure are left out first: warehouse-1 reported a glitch of
-- 85.0 °C on Thursday that would otherwise "win" (09_out_of_range.sql finds such values).
SELECT device_id, value AS max_temperature, time AS at
FROM (
    SELECT device_id, value, time,
           row_number() OVER (PARTITION BY device_id ORDER BY value DESC, time) AS rank
    FROM readings
    WHERE metric = 'temperature'
      AND value BETWEEN -40 AND 60
      AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
) AS ranked
WHERE rank = 1
ORDER BY max_temperature DESC, device_id;
