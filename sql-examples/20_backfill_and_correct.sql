-- Question: a technician read greenhouse-2's missed 15:30 value off its display on Friday;
-- how do I add it, and how do I correct it afterwards?
--
-- INSERT INTO readings adds points (time, device_id, metric, value). There is one point per
-- series and time: writing the same (device_id, metric, time) again replaces the value,
-- so a correction is simply another INSERT. (This example writes: the test suite runs it
-- on a node of its own.)
INSERT INTO readings VALUES ('2026-03-06 15:30:00+00', 'greenhouse-2', 'temperature', 27.9);
INSERT INTO readings VALUES ('2026-03-06 15:30:00+00', 'greenhouse-2', 'temperature', 27.4);

SELECT time, value
FROM readings
WHERE device_id = 'greenhouse-2' AND metric = 'temperature'
  AND time >= '2026-03-06 15:00:00+00' AND time <= '2026-03-06 16:00:00+00'
ORDER BY time;
