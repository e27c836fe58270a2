"""MQTT and HTTP ingestion end to end: a real Mosquitto (and the embedded broker), a paho-mqtt
publisher, the `minitrue publish` command (simulator, serial port through a socat
pseudo-terminal pair, CSV replay), and the results read back with psql."""
import gzip
import json
import random
import shutil
import subprocess
import threading
import time

import pytest

from mqttnode import Node, Publisher, Watcher, free_port, mosquitto, node, port_open
from pgnode import MINITRUE_BIN, wait_until

# Timestamps near now, so they sit inside the node's clock window (10 years back, 1 day ahead).
NOW_S = int(time.time()) - 3600


def rows(n, query):
    return n.sql(query)


def test_every_format_lands_with_its_values_and_timestamps(tmp_path):
    with mosquitto(tmp_path) as broker, node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}",
                                               "--topic-template", "site/{site}/{device_id}/{metric}") as n:
        pub = Publisher(broker)
        t = NOW_S
        before_ns = time.time_ns()
        # Seed JSON object, timestamp in seconds.
        pub.publish("iot/sensors/temperature", {"device_id": "d1", "metric_name": "temperature", "timestamp": t, "value": 21.5})
        # JSON arrays, timestamps in ms, a numeric string and a boolean value.
        pub.publish("iot/sensors/humidity", [
            {"device_id": "d1", "metric_name": "humidity", "timestamp": t * 1000 + 250, "value": 40.25},
            {"device_id": "d2", "metric_name": "humidity", "timestamp": t * 1000 + 500, "value": "41.5"},
        ])
        pub.publish("iot/sensors/motion", [{"device_id": "d2", "metric_name": "motion", "timestamp": t * 1000 + 750, "value": True}])
        # Microseconds, nanoseconds and RFC 3339 with nine fractional digits.
        pub.publish("iot/sensors/voltage", {"device_id": "d3", "metric_name": "voltage", "timestamp": t * 1_000_000 + 1, "value": 3.3})
        pub.publish("iot/sensors/voltage", {"device_id": "d4", "metric_name": "voltage", "timestamp": t * 1_000_000_000 + 7, "value": 3.4})
        iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + ".123456789Z"
        pub.publish("iot/sensors/voltage", {"device_id": "d5", "metric_name": "voltage", "timestamp": iso, "value": 3.5})
        # A bare number on iot/sensors/{metric}/{device_id}: the receive time is its timestamp.
        pub.publish("iot/sensors/pressure/d6", "1013.25")
        # InfluxDB line protocol (Telegraf's MQTT output), ns timestamps; extra tags become series tags.
        pub.publish("telegraf/ws1", f"weather,device_id=ws1,site=roof temperature=18.5,humidity=71i {t * 1_000_000_000}\n"
                                    f"weather,device_id=ws1,site=roof temperature=18.75 {(t + 1) * 1_000_000_000}")
        # A topic template carrying a tag.
        pub.publish("site/north/d7/co2", json.dumps({"timestamp": t, "value": 412}))
        pub.close()
        after_ns = time.time_ns()

        wait_until("12 points", lambda: n.scalar("SELECT count(*) FROM readings") == "12", 30)
        got = {(d, m, int(ns)): float(v) for d, m, ns, v in
               n.sql("SELECT device_id, metric, CAST(time AS BIGINT), value FROM readings WHERE device_id <> 'd6'")}
        s = 1_000_000_000
        assert got == {
            ("d1", "temperature", t * s): 21.5,
            ("d1", "humidity", t * s + 250_000_000): 40.25,
            ("d2", "humidity", t * s + 500_000_000): 41.5,
            ("d2", "motion", t * s + 750_000_000): 1.0,
            ("d3", "voltage", t * s + 1000): 3.3,
            ("d4", "voltage", t * s + 7): 3.4,
            ("d5", "voltage", t * s + 123_456_789): 3.5,
            ("ws1", "weather_temperature", t * s): 18.5,
            ("ws1", "weather_humidity", t * s): 71.0,
            ("ws1", "weather_temperature", (t + 1) * s): 18.75,
            ("d7", "co2", t * s): 412.0,
        }
        [(bare_ns, bare_value)] = n.sql("SELECT CAST(time AS BIGINT), value FROM readings WHERE device_id = 'd6' AND metric = 'pressure'")
        assert float(bare_value) == 1013.25
        assert before_ns - 1_000_000_000 <= int(bare_ns) <= after_ns + 5_000_000_000
        # Tags from the topic template and from line protocol, queryable through devices.
        tags = dict(n.sql("SELECT device_id || '/' || metric, tags FROM devices WHERE tags IS NOT NULL"))
        assert json.loads(tags["d7/co2"]) == {"site": "north"}
        assert json.loads(tags["ws1/weather_temperature"]) == {"site": "roof"}
        assert "d1/temperature" not in tags
        assert n.metric("minitrue_ingest_points_accepted_total", door="mqtt") == 12


def test_a_broker_with_passwords(tmp_path):
    """Credentials come from the broker URL; wrong ones are refused by the broker and the node
    keeps retrying (and serving SQL) instead of failing."""
    users = {"minitrue": "s3cret", "sensor": "pw"}
    with mosquitto(tmp_path, users) as broker:
        with node(tmp_path / "wrong", "--broker", f"mqtt://minitrue:nope@127.0.0.1:{broker}") as n:
            time.sleep(1.5)
            assert n.scalar("SELECT count(*) FROM readings") == "0"
            assert n.metric("minitrue_ingest_connections_total", door="mqtt") == 0
        with node(tmp_path / "node", "--broker", f"mqtt://minitrue:s3cret@127.0.0.1:{broker}") as n:
            wait_until("the subscription", lambda: n.metric("minitrue_ingest_connections_total", door="mqtt") == 1)
            time.sleep(0.3)
            pub = Publisher(broker, "authenticated-sensor", auth=("sensor", "pw"))
            pub.publish("iot/sensors/temperature/s1", "21.5")
            pub.close()
            wait_until("the point", lambda: n.scalar("SELECT value FROM readings") is not None)
            assert float(n.scalar("SELECT value FROM readings")) == 21.5


def test_bad_messages_are_counted_dead_lettered_and_lose_nothing_else(tmp_path):
    with mosquitto(tmp_path) as broker, node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}") as n:
        letters = Watcher(broker, "minitrue/dead-letter")
        pub = Publisher(broker)
        t = NOW_S
        good = lambda dev, i: {"device_id": dev, "metric_name": "temperature", "timestamp": t + i, "value": 20 + i}
        pub.publish("iot/sensors/temperature", '{"device_id":')                                   # malformed_json
        pub.publish("iot/sensors/temperature", {**good("b1", 0), "value": {"nested": 1}})         # wrong_type
        pub.publish("iot/sensors/temperature/b1", "NaN")                                           # non_finite_value
        pub.publish("iot/sensors/temperature", {**good("b1", 0), "timestamp": 631152000})          # 1990: out of range
        pub.publish("iot/sensors/temperature", "[" + ",".join(['{"device_id":"big","value":1}'] * 40000) + "]")  # > 1 MiB
        pub.publish("iot/sensors/temperature", [good("ok", 1), {**good("ok", 2), "value": "hot"}, good("ok", 3)])  # 2 good, 1 invalid_number
        pub.publish("iot/sensors/temperature", good("ok", 4))
        pub.close()

        wait_until("the good points", lambda: n.scalar("SELECT count(*) FROM readings") == "3", 30)
        assert [float(v) for [v] in n.sql("SELECT value FROM readings ORDER BY time")] == [21.0, 23.0, 24.0]
        expected = {"malformed_json": 1, "wrong_type": 1, "non_finite_value": 1, "timestamp_out_of_range": 1,
                    "payload_too_large": 1, "invalid_number": 1}
        wait_until("the rejection counters", lambda: all(
            n.metric("minitrue_ingest_rejections_total", door="mqtt", reason=r) == c for r, c in expected.items()), 30)
        # The same counters through SQL.
        via_sql = dict(n.sql("SELECT labels, value FROM system.metrics WHERE name = 'minitrue_ingest_rejections_total' AND value > 0"))
        assert {k.split('reason="')[1].rstrip('"'): float(v) for k, v in via_sql.items() if 'door="mqtt"' in k} == expected
        # One dead letter per bad message, with the reasons and the original payload.
        wait_until("six dead letters", lambda: len(letters.messages) == 6, 30)
        letters.close()
        reasons = sorted(r["reason"] for _, p in letters.messages for r in json.loads(p)["rejections"])
        assert reasons == sorted(expected)
        nan_letter = next(json.loads(p) for _, p in letters.messages if json.loads(p)["topic"] == "iot/sensors/temperature/b1")
        assert nan_letter["payload"] == "NaN"


def test_killed_nodes_lose_no_acknowledged_point_and_store_none_twice(tmp_path):
    """Points published at full speed while the node is SIGKILLed and restarted: at the end the
    stored set equals the published set exactly."""
    devices, per_device = 20, 1000
    expected = {(f"k{d}", (NOW_S - 2000 + i) * 1_000_000_000): d * 10_000 + i + 0.25
                for d in range(devices) for i in range(per_device)}
    with mosquitto(tmp_path) as broker:
        n = Node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}").start()
        done = threading.Event()

        def publish_all():
            pub = Publisher(broker, "kill-test-publisher")
            items = sorted(expected.items(), key=lambda kv: (kv[0][1], kv[0][0]))
            i = 0
            while i < len(items):
                # Mostly single-point messages, every tenth a batch of 50.
                size = 50 if (i // 50) % 10 == 9 else 1
                chunk = items[i:i + size]
                payload = [{"device_id": d, "metric_name": "kill", "timestamp": ns, "value": v} for (d, ns), v in chunk]
                pub.publish("iot/sensors/kill", payload[0] if size == 1 else payload)
                i += size
                if i % 2000 == 0:
                    pub.flush()
            pub.close()
            done.set()

        publisher = threading.Thread(target=publish_all)
        publisher.start()
        rng = random.Random(7)
        kills = 0
        try:
            while not done.is_set() or kills < 3:
                time.sleep(rng.uniform(0.3, 1.5))
                n.kill()
                kills += 1
                n.start()
            publisher.join()
            wait_until("every point", lambda: n.scalar("SELECT count(*) FROM readings") == str(len(expected)), 120)
            stored = {(d, int(ns)): float(v) for d, ns, v in n.sql("SELECT device_id, CAST(time AS BIGINT), value FROM readings")}
            assert stored == expected
            # Nothing was acknowledged to the broker twice into two rows (a series/time is one row).
            assert n.scalar("SELECT count(*) FROM (SELECT device_id, time FROM readings GROUP BY device_id, time HAVING count(*) > 1)") == "0"
        finally:
            n.stop()
        assert kills >= 3


def test_http_write_json_and_line_protocol(tmp_path):
    with node(tmp_path / "node") as n:
        t = NOW_S
        body = json.dumps([{"device_id": "h1", "metric_name": "temperature", "timestamp": t, "value": 19.5},
                           {"device_id": "h2", "metric_name": "temperature", "timestamp": t, "value": 20.5}]).encode()
        assert n.http("POST", "/api/v1/write", body, {"Content-Type": "application/json"}) == (204, b"")
        lines = f"env,device_id=h3,room=lab temperature=22.5,humidity=40 {t}\nenv,host=h4 temperature=23 {t}\n".encode()
        status, _ = n.http("POST", "/api/v2/write?org=x&bucket=y&precision=s", gzip.compress(lines), {"Content-Encoding": "gzip"})
        assert status == 204
        # Partial write: the good line is stored, the bad one reported.
        status, answer = n.http("POST", "/write?precision=ms", f"env,device_id=h5 temperature=1 {t * 1000}\nenv,device_id=h5 temperature=oops {t * 1000}\n".encode())
        assert status == 400
        answer = json.loads(answer)
        assert (answer["accepted"], answer["rejected"], answer["rejections"][0]["line"] if "line" in answer["rejections"][0] else answer["rejections"][0]["index"]) == (1, 1, 2)
        status, answer = n.http("POST", "/api/v2/write?precision=fortnights", lines)
        assert status == 400 and b"precision" in answer
        status, _ = n.http("POST", "/api/v2/write", b"\x1f\x8bnot really gzip", {"Content-Encoding": "gzip"})
        assert status == 400

        got = {(d, m): float(v) for d, m, v in n.sql("SELECT device_id, metric, value FROM readings")}
        assert got == {("h1", "temperature"): 19.5, ("h2", "temperature"): 20.5, ("h3", "env_temperature"): 22.5,
                       ("h3", "env_humidity"): 40.0, ("h4", "env_temperature"): 23.0, ("h5", "env_temperature"): 1.0}
        assert n.scalar("SELECT count(*) FROM readings WHERE time = to_timestamp(%d)" % t) == "6"
        assert json.loads(dict(n.sql("SELECT device_id, tags FROM devices WHERE device_id = 'h3' AND metric = 'env_humidity'"))["h3"]) == {"room": "lab"}
        assert n.metric("minitrue_ingest_points_accepted_total", door="http") == 6
        assert n.metric("minitrue_ingest_rejections_total", door="http", reason="malformed_line_protocol") == 1
        assert n.metric("minitrue_storage_points_written_total") == 6
        status, health = n.http("GET", "/health")
        assert status == 200 and json.loads(health)["status"] == "pass"
        assert n.http("HEAD", "/ping")[0] == 204


def test_readme_command_embedded_broker_with_simulated_sensors(tmp_path):
    """`minitrue serve --simulate`: no external broker; simulated sensors publish to the embedded
    one and psql sees them within seconds. Another client can publish to it too."""
    with node(tmp_path / "node", "--simulate") as n:
        wait_until("three simulated sensors", lambda: n.scalar(
            "SELECT count(DISTINCT device_id) FROM readings WHERE metric = 'temperature'") == "3", 30)
        first = int(n.scalar("SELECT count(*) FROM readings"))
        wait_until("more readings every second", lambda: int(n.scalar("SELECT count(*) FROM readings")) >= first + 3, 10)
        assert sorted(r[0] for r in n.sql("SELECT device_id FROM devices")) == ["sensor_1", "sensor_2", "sensor_3"]
        pub = Publisher(n.ports["mqtt"], "outside-sensor")
        pub.publish("iot/sensors/humidity/outside", "55.5")
        pub.close()
        wait_until("the outside point", lambda: n.scalar("SELECT value FROM readings WHERE device_id = 'outside'") == "55.5", 10)


def publish_command(broker, *args, timeout=60):
    out = subprocess.run([MINITRUE_BIN, "publish", "--broker", f"mqtt://127.0.0.1:{broker}", *args],
                         capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_publish_simulator_is_exact_and_deterministic(tmp_path):
    with mosquitto(tmp_path) as broker, node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}") as n:
        start_ms = NOW_S * 1000
        out = publish_command(broker, "simulate", "--devices", "5", "--metrics", "temperature,humidity", "--interval", "0",
                              "--count", "100", "--batch", "10", "--start-ms", str(start_ms))
        assert "published 1000 points in 100 messages; 100 messages acknowledged" in out
        wait_until("1000 points", lambda: n.scalar("SELECT count(*) FROM readings") == "1000", 30)
        assert n.sql("SELECT count(DISTINCT device_id), count(DISTINCT metric), min(CAST(time AS BIGINT)), max(CAST(time AS BIGINT)) FROM readings") == [
            ["5", "2", str(start_ms * 1_000_000), str((start_ms + 99_000) * 1_000_000)]]
        temperatures = [float(v) for [v] in n.sql("SELECT value FROM readings WHERE metric = 'temperature'")]
        assert all(10 < v < 35 for v in temperatures)


def test_publish_from_a_serial_port(tmp_path):
    """An Arduino printing lines, played by a socat pseudo-terminal pair."""
    assert shutil.which("socat"), "socat is not installed (scripts/test.sh installs it)"
    device, sensor_end = tmp_path / "ttyMINITRUE", tmp_path / "ttyARDUINO"
    socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={device}", f"pty,raw,echo=0,link={sensor_end}"],
                             stderr=subprocess.DEVNULL)
    try:
        wait_until("the pty pair", lambda: device.exists() and sensor_end.exists())
        with mosquitto(tmp_path) as broker, node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}") as n:
            reader = subprocess.Popen([MINITRUE_BIN, "publish", "--broker", f"mqtt://127.0.0.1:{broker}", "serial",
                                       "--port", str(device), "--baud", "115200", "--count", "4"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            time.sleep(1.0)  # the reader opens the port
            with open(sensor_end, "w") as arduino:
                for line in ["ard1,temperature,21.5", "this is not a reading", "ard1,temperature,abc",
                             '{"device_id":"ard1","metric_name":"humidity","value":40.5}',
                             "ard2, light , 300", "ard1,temperature,21.75"]:
                    arduino.write(line + "\r\n")
                    arduino.flush()
                    time.sleep(0.05)
            out, err = reader.communicate(timeout=30)
            assert reader.returncode == 0, err
            assert "published 4 points" in out
            wait_until("4 points", lambda: n.scalar("SELECT count(*) FROM readings") == "4", 30)
            assert sorted((d, m, float(v)) for d, m, v in n.sql("SELECT device_id, metric, value FROM readings")) == [
                ("ard1", "humidity", 40.5), ("ard1", "temperature", 21.5), ("ard1", "temperature", 21.75), ("ard2", "light", 300.0)]
    finally:
        socat.kill()
        socat.wait()


def test_publish_replays_a_csv_file(tmp_path):
    csv = tmp_path / "machine_temperature.csv"
    start = 1_388_534_400  # 2014-01-01 00:00:00 UTC, outside the clock window unless shifted
    csv.write_text("timestamp,value\n" + "".join(
        time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + 300 * i)) + f",{70 + i / 4}\n" for i in range(500)))
    with mosquitto(tmp_path) as broker, node(tmp_path / "node", "--broker", f"mqtt://127.0.0.1:{broker}") as n:
        before = time.time_ns()
        out = publish_command(broker, "csv", str(csv), "--device", "machine1", "--batch", "64")
        assert "published 500 points in 8 messages" in out
        wait_until("500 points", lambda: n.scalar("SELECT count(*) FROM readings") == "500", 30)
        [[metric, lo, hi, total]] = n.sql("SELECT metric, min(CAST(time AS BIGINT)), max(CAST(time AS BIGINT)), sum(value) FROM readings GROUP BY metric")
        assert metric == "machine_temperature"
        assert int(hi) - int(lo) == 499 * 300 * 1_000_000_000, "spacing kept"
        assert before - 5_000_000_000 <= int(hi) <= time.time_ns(), "shifted so the last row is now"
        assert float(total) == sum(70 + i / 4 for i in range(500))
