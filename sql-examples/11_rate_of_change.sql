-- Question: how fast did the freezer warm up when its door was left open on Thursday
-- evening?
--
-- lag() gives the previous reading of the series: value - lag(value) is the change, and
-- dividing by the seconds between the two readings (extract(epoch FROM ...)) turns it into
-- a rate, here in °C per minute, that stays right even when a reading is missing.
SELECT time,
       value,
       round(value - lag(value) OVER w, 1) AS change,
       round((value - lag(value) OVER w)
             / ((extract(epoch FROM time) - extract(epoch FROM lag(time) OVER w)) / 60), 3) AS per_minute
FROM readings
WHERE device_id = 'freezer-1' AND metric = 'temperature'
  AND time >= '2026-03-05 19:30:00+00' AND time < '2026-03-05 22:00:00+00'
WINDOW w AS (ORDER BY time)
ORDER BY time;
