-- Question: how much battery does each sensor use per day, and how many days are left?
--
-- first(value, time) and last(value, time) (TimescaleDB's bookend aggregates) take the
-- value at the earliest and latest time of each group, whatever order the rows come in;
-- min/max would be wrong for a battery that is swapped or recharges. time_bucket('1 week')
-- buckets start on Mondays (TimescaleDB's origin, 2000-01-03), so this is one row per
-- device for the week of 2026-03-02. freezer-1's battery is what made it go silent.
WITH week AS (
    SELECT device_id,
           time_bucket('1 week', time) AS week,
           first(value, time) AS first,
           last(value, time) AS last,
           (first(value, time) - last(value, time))
               / (extract(epoch FROM max(time) - min(time)) / 86400) AS used_per_day
    FROM readings
    WHERE metric = 'battery'
      AND time >= '2026-03-02 00:00:00+00' AND time < '2026-03-09 00:00:00+00'
    GROUP BY device_id, week
)
SELECT device_id, week, first, last,
       round(used_per_day, 2) AS used_per_day,
       round(last / used_per_day, 1) AS days_left
FROM week
ORDER BY days_left, device_id;
