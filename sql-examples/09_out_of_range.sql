-- Question: which readings are physically impossible, i.e. sensor glitches?
--
-- Each metric has its own plausible range: relative humidity lies between 0 and 100 %,
-- and these temperature sensors measure -40 to 60 °C. Listing what falls outside is the
-- first step of cleaning the data (21_delete_glitch.sql removes such a point).
SELECT device_id, metric, time, value
FROM readings
WHERE (metric = 'humidity' AND (value < 0 OR value > 100))
   OR (metric = 'temperature' AND (value < -40 OR value > 60))
ORDER BY device_id, metric, time;
