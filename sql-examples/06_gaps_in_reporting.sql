-- Question: when did sensors stop reporting for longer than their 15-minute interval,
-- and for how long?
--
-- lag(time) OVER (PARTITION BY device_id, metric ORDER BY time) is each reading's
-- predecessor in the same series; where the distance between the two exceeds the
-- expected interval, data is missing in between. The window runs over every reading of
-- the week; only the outer query filters, so the first reading after a gap still sees
-- the last one before it.
SELECT device_id, metric, previous_time AS silent_from, time AS back_at, time - previous_time AS gap
FROM (
    SELECT device_id, metric, time,
           lag(time) OVER (PARTITION BY device_id, metric ORDER BY time) AS previous_time
    FROM readings
    WHERE metric = 'temperature'
      AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
) AS consecutive
WHERE time - previous_time > INTERVAL '15 minutes'
ORDER BY device_id, metric, silent_from;
