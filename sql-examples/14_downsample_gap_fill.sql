-- Question: downsample greenhouse-2's temperature on Wednesday morning to 30-minute
-- averages, with a row for every 30 minutes even while the sensor was offline.
--
-- GROUP BY time_bucket only produces buckets that hold readings. To get every bucket,
-- generate the series of bucket starts, LEFT JOIN the readings onto the bucket each falls
-- in, then aggregate: empty buckets come out with count 0 and a NULL average, honestly
-- showing the gap. (The series' conditions go into ON, not WHERE, or the empty buckets
-- would be filtered away again.) Where a chart needs a continuous line, "last observation
-- carried forward" fills them: last_value(...) IGNORE NULLS over the buckets so far repeats
-- the latest known average (a DataFusion extension; PostgreSQL would need a subquery).
SELECT bucket.start AS bucket,
       count(r.value) AS points,
       round(avg(r.value), 2) AS avg,
       last_value(round(avg(r.value), 2)) IGNORE NULLS OVER (ORDER BY bucket.start) AS avg_filled
FROM generate_series(TIMESTAMPTZ '2026-03-04 08:00:00+00', TIMESTAMPTZ '2026-03-04 14:30:00+00',
                     INTERVAL '30 minutes') AS bucket(start)
LEFT JOIN readings AS r
       ON r.device_id = 'greenhouse-2' AND r.metric = 'temperature'
      AND r.time >= '2026-03-04 08:00:00+00' AND r.time < '2026-03-04 15:00:00+00'
      AND time_bucket('30 minutes', r.time) = bucket.start
GROUP BY bucket.start
ORDER BY bucket;
