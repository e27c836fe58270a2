"""The data set the SQL examples run against: one week (Monday 2026-03-02 00:00 UTC to Sunday
2026-03-08 23:45 UTC) of four sensors at two sites, as InfluxDB line protocol.

Deterministic (no clock, no random module): running it twice prints the same bytes. Load it
into a node listening on the default ports with

    python3 sql-examples/seed.py | curl --data-binary @- 'http://localhost:8080/api/v2/write?precision=s'

| device_id    | tags                        | temperature (°C) | humidity (%) | battery (%)   |
|--------------|-----------------------------|------------------|--------------|---------------|
| greenhouse-1 | site=farm,  zone=greenhouse | every 15 min     | hourly       | every 3 hours |
| greenhouse-2 | site=farm,  zone=greenhouse | every 15 min     | hourly       | every 3 hours |
| warehouse-1  | site=depot, zone=storage    | every 15 min     | hourly       | every 3 hours |
| freezer-1    | site=depot, zone=cold-room  | every 15 min     | -            | every 3 hours |

What the examples look for in it:
* greenhouse-2 is offline on Wednesday 2026-03-04 from 09:15 to 12:45 (no temperature
  09:15..12:45, no humidity 10:00..12:00, no battery 12:00) and misses one temperature
  reading on Friday 2026-03-06 at 15:30.
* warehouse-1 reports a glitch: temperature 85.0 on Thursday 2026-03-05 at 14:30, and
  humidity 104.5 % on Friday 2026-03-06 at 03:00.
* freezer-1's door is left open on Thursday 2026-03-05 from 20:00: -12, -7, -4.5, -9, -15 °C,
  then back to normal. Its battery runs down (30 % on Monday, 0.4 % at its last report) and
  it goes silent after Saturday 2026-03-07 06:45 (its last temperature reading).
* Values have one decimal, like a typical sensor's resolution.
"""
import datetime
import math
import sys

START = datetime.datetime(2026, 3, 2, tzinfo=datetime.timezone.utc)
START_EPOCH = int(START.timestamp())
DAYS = 7
TEMPERATURE_STEP = 15 * 60
HUMIDITY_STEP = 60 * 60
BATTERY_STEP = 3 * 60 * 60

TAGS = {
    "greenhouse-1": {"site": "farm", "zone": "greenhouse"},
    "greenhouse-2": {"site": "farm", "zone": "greenhouse"},
    "warehouse-1": {"site": "depot", "zone": "storage"},
    "freezer-1": {"site": "depot", "zone": "cold-room"},
}

# Monday..Sunday: some days are sunnier than others in the greenhouses.
GREENHOUSE_DAY_OFFSET = [0.0, 1.2, -0.8, 2.1, 0.6, -1.5, 0.9]


def epoch(text):
    """Seconds since 1970 of a UTC time written `YYYY-MM-DD HH:MM`."""
    parsed = datetime.datetime.strptime(text, "%Y-%m-%d %H:%M").replace(tzinfo=datetime.timezone.utc)
    return int(parsed.timestamp())


GREENHOUSE_2_OFFLINE = (epoch("2026-03-04 09:15"), epoch("2026-03-04 12:45"))
GREENHOUSE_2_MISSED = epoch("2026-03-06 15:30")
WAREHOUSE_TEMPERATURE_GLITCH = (epoch("2026-03-05 14:30"), 85.0)
WAREHOUSE_HUMIDITY_GLITCH = (epoch("2026-03-06 03:00"), 104.5)
FREEZER_DOOR_OPEN = {
    epoch("2026-03-05 20:00"): -12.0,
    epoch("2026-03-05 20:15"): -7.0,
    epoch("2026-03-05 20:30"): -4.5,
    epoch("2026-03-05 20:45"): -9.0,
    epoch("2026-03-05 21:00"): -15.0,
}
FREEZER_LAST = epoch("2026-03-07 06:45")
# Battery: percent at the start of the week and percent used per hour.
BATTERY = {
    "greenhouse-1": (87.0, 0.02),
    "greenhouse-2": (64.0, 0.025),
    "warehouse-1": (95.0, 0.015),
    "freezer-1": (30.0, 0.235),
}


def noise(series, k):
    """A deterministic number in [-1, 1) for reading `k` of series number `series`."""
    x = (k * 2654435761 + series * 40503 + 12345) % 4294967296
    x = (x ^ (x >> 13)) * 1274126177 % 4294967296
    return x / 2147483648.0 - 1.0


def one_decimal(x):
    return float(f"{x:.1f}")


def wave(t, peak_hour):
    """A daily sine, 1 at `peak_hour` UTC and -1 twelve hours later."""
    hour = (t % 86400) / 3600
    return math.cos(2 * math.pi * (hour - peak_hour) / 24)


def temperature(device, t, k):
    day = (t - START_EPOCH) // 86400
    if device.startswith("greenhouse"):
        sunny = 0.8 if device == "greenhouse-2" else 0.0
        series = 1 if device == "greenhouse-1" else 2
        return 21.0 + GREENHOUSE_DAY_OFFSET[day] + sunny + 5.0 * wave(t, 15) + 0.3 * noise(series, k)
    if device == "warehouse-1":
        if t == WAREHOUSE_TEMPERATURE_GLITCH[0]:
            return WAREHOUSE_TEMPERATURE_GLITCH[1]
        return 14.0 + 1.5 * wave(t, 16) + 0.2 * noise(3, k)
    if t in FREEZER_DOOR_OPEN:
        return FREEZER_DOOR_OPEN[t]
    return -18.5 + 0.4 * noise(4, k)


def humidity(device, t, k):
    if device == "warehouse-1":
        if t == WAREHOUSE_HUMIDITY_GLITCH[0]:
            return WAREHOUSE_HUMIDITY_GLITCH[1]
        return 45.0 + 2.0 * noise(13, k)
    series = 11 if device == "greenhouse-1" else 12
    return 70.0 - 8.0 * wave(t, 15) + 1.5 * noise(series, k)


def battery(device, t):
    start, per_hour = BATTERY[device]
    return start - per_hour * (t - START_EPOCH) / 3600


def reports(device, t):
    """False when `device` sent nothing at `t` (offline, missed, silent)."""
    if device == "greenhouse-2":
        return not (GREENHOUSE_2_OFFLINE[0] <= t <= GREENHOUSE_2_OFFLINE[1] or t == GREENHOUSE_2_MISSED)
    if device == "freezer-1":
        return t <= FREEZER_LAST
    return True


def points():
    """Every point: (epoch seconds, device_id, metric, value), sorted by series then time."""
    out = []
    end = START_EPOCH + DAYS * 86400
    for device in TAGS:
        for k, t in enumerate(range(START_EPOCH, end, TEMPERATURE_STEP)):
            if reports(device, t):
                out.append((t, device, "temperature", one_decimal(temperature(device, t, k))))
        if device != "freezer-1":
            for k, t in enumerate(range(START_EPOCH, end, HUMIDITY_STEP)):
                if reports(device, t):
                    out.append((t, device, "humidity", one_decimal(humidity(device, t, k))))
        for t in range(START_EPOCH, end, BATTERY_STEP):
            if reports(device, t):
                out.append((t, device, "battery", one_decimal(battery(device, t))))
    return out


def line_protocol():
    lines = []
    for t, device, metric, value in points():
        tags = "".join(f",{key}={val}" for key, val in sorted(TAGS[device].items()))
        lines.append(f"{metric},device_id={device}{tags} value={value:.1f} {t}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(line_protocol())
