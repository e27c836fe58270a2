-- Question: on Saturday 2026-03-07 at 12:00, which devices had not reported for more
-- than 30 minutes?
--
-- The last reading at or before the moment, per device, compared with the moment. A
-- device that never reported before it would have no row at all; list devices from the
-- `devices` table and LEFT JOIN if those matter too. For "right now", compare the
-- devices table's last_time with now() instead (18_relative_to_now.sql).
SELECT device_id,
       max(time) AS last_seen,
       TIMESTAMPTZ '2026-03-07 12:00:00+00' - max(time) AS silent_for
FROM readings
WHERE time <= '2026-03-07 12:00:00+00'
GROUP BY device_id
HAVING max(time) < TIMESTAMPTZ '2026-03-07 12:00:00+00' - INTERVAL '30 minutes'
ORDER BY device_id;
