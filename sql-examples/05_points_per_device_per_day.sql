-- Question: how complete is each sensor's data, day by day?
--
-- A temperature reading every 15 minutes makes 96 a day; counting points per device and
-- day and dividing by 96 gives the share received. Days where a device sent nothing at
-- all have no row here (greenhouse-2's offline morning shows as 81 of 96; freezer-1 after
-- going silent on Saturday morning shows 28, then nothing on Sunday).
SELECT device_id,
       date_trunc('day', time) AS day,
       count(*) AS points,
       round(100.0 * count(*) / 96, 1) AS percent_received
FROM readings
WHERE metric = 'temperature'
  AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
GROUP BY device_id, day
ORDER BY device_id, day;
