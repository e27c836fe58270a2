-- Question: in greenhouse-1 on Tuesday, how did temperature and humidity move together,
-- and how close was the air to condensing on the plants (the dew point)?
--
-- Each metric is its own series. Aggregates filtered by metric put them side by side per
-- hour (a pivot), which works even when the two are not sampled at the same instants
-- (temperature every 15 minutes, humidity hourly); a JOIN on time would need identical
-- timestamps. The dew point follows from both by the Magnus formula; when the air cools
-- to within a couple of degrees of it, water condenses.
WITH hourly AS (
    SELECT time_bucket('1 hour', time) AS hour,
           avg(value) FILTER (WHERE metric = 'temperature') AS temperature,
           avg(value) FILTER (WHERE metric = 'humidity') AS humidity
    FROM readings
    WHERE device_id = 'greenhouse-1' AND metric IN ('temperature', 'humidity')
      AND time >= '2026-03-03 06:00:00+00' AND time < '2026-03-03 19:00:00+00'
    GROUP BY hour
),
magnus AS (
    SELECT hour, temperature, humidity,
           ln(humidity / 100) + 17.62 * temperature / (243.12 + temperature) AS gamma
    FROM hourly
)
SELECT hour,
       round(temperature, 2) AS temperature,
       humidity,
       round(243.12 * gamma / (17.62 - gamma), 1) AS dew_point,
       round(temperature - 243.12 * gamma / (17.62 - gamma), 1) AS margin
FROM magnus
ORDER BY hour;
