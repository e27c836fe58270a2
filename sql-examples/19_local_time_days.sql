-- Question: what were greenhouse-1's daily lowest and highest temperatures, by the
-- farm's local calendar (Europe/Berlin) rather than UTC?
--
-- `time AT TIME ZONE 'Europe/Berlin'` shows each instant on the Berlin wall clock (UTC+1
-- in March), and date_trunc('day', ...) then cuts at Berlin midnight, i.e. 23:00 UTC. The
-- week of UTC data therefore starts with a short local day (from 01:00) and ends with the
-- first hour of Monday 2026-03-09. time_bucket('1 day', time, 'Europe/Berlin') gives the
-- same days.
SELECT date_trunc('day', time AT TIME ZONE 'Europe/Berlin') AS local_day,
       count(*) AS points,
       min(value) AS min,
       max(value) AS max
FROM readings
WHERE device_id = 'greenhouse-1' AND metric = 'temperature'
  AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
GROUP BY local_day
ORDER BY local_day;
