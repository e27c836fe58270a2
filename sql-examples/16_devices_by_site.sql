-- Question: which sensors are installed where, what does each measure, and since when?
--
-- `devices` has one row per series, with the tags it arrived with (here from the line
-- protocol's site and zone tags) as a JSON object in text. regexp_match pulls one tag
-- out; `tags LIKE '%"site":"farm"%'` would filter on one.
SELECT regexp_match(tags, '"site":"([^"]*)"')[1] AS site,
       regexp_match(tags, '"zone":"([^"]*)"')[1] AS zone,
       device_id,
       string_agg(metric, ', ' ORDER BY metric) AS metrics,
       min(first_time) AS since,
       sum(points) AS points
FROM devices
GROUP BY site, zone, device_id
ORDER BY site, zone, device_id;
