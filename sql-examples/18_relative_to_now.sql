-- Question: which sensors are silent right now, i.e. have not reported for 30 minutes?
--
-- now() is the statement's start time (UTC, the same for every row), so a dashboard query
-- reads "the last 30 minutes" as `time > now() - INTERVAL '30 minutes'`. Against the
-- seeded week, which lies in the past, every sensor is silent and nothing is recent;
-- on a live node this is the alerting query.
SELECT device_id, metric, last_time
FROM devices
WHERE last_time < now() - INTERVAL '30 minutes'
ORDER BY device_id, metric;

SELECT count(*) AS points_last_24_hours
FROM readings
WHERE time > now() - INTERVAL '24 hours';
