"""A node end to end: points published to a real Mosquitto reach `minitrue serve` and are
answered by real psql."""
import json
import shutil
import signal
import subprocess

import pytest

from conftest import MINITRUE_BIN
from mqttnode import mosquitto
from pgnode import wait_until


@pytest.fixture
def broker(tmp_path):
    with mosquitto(tmp_path) as port:
        yield port


def psql(port, sql):
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "minitrue", "-d", "minitrue", "-At", "-F", ",", "-c", sql],
        capture_output=True, text=True, timeout=30,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_mqtt_points_are_queryable_from_psql_and_survive_a_restart(tmp_path, broker):
    assert shutil.which("psql"), "psql is not installed (scripts/test.sh installs postgresql-client)"
    ready = tmp_path / "ready.json"
    args = [MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "data"), "--pg-port", "0", "--http-port", "0", "--flight-port", "0", "--gossip-port", "0",
            "--broker", f"mqtt://127.0.0.1:{broker}", "--ready-file", str(ready)]
    node = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_until("the node", ready.exists)
        pg_port = int(json.loads(ready.read_text())["postgres"].rsplit(":", 1)[1])
        for i in range(50):
            payload = json.dumps({"device_id": f"sensor_{i % 5}", "metric_name": "temperature",
                                  "timestamp": 1_700_000_000 + i, "value": 20 + i / 10})
            subprocess.run(["mosquitto_pub", "-p", str(broker), "-q", "1", "-t", "iot/sensors/temperature", "-m", payload], check=True)
        query = "SELECT count(*), round(avg(value), 4) FROM readings WHERE device_id = 'sensor_1' AND metric = 'temperature'"
        wait_until("10 points of sensor_1", lambda: psql(pg_port, query).startswith("10,"))
        assert psql(pg_port, query) == "10,22.35"  # i = 1, 6, …, 46 → 20 + 23.5/10
        # A bad query is an error, and the connection pool / server stays up.
        bad = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(pg_port), "-U", "minitrue", "-c", "SELEC 1"], capture_output=True, text=True)
        assert bad.returncode != 0 and "ERROR" in bad.stderr
        assert psql(pg_port, "SELECT count(*) FROM readings") == "50"
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
    assert node.returncode == 0, node.stderr.read()

    # Restart on the same data directory: everything is still there.
    ready.unlink()
    node = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("the restarted node", ready.exists)
        pg_port = int(json.loads(ready.read_text())["postgres"].rsplit(":", 1)[1])
        assert psql(pg_port, "SELECT count(*) FROM readings") == "50"
    finally:
        node.send_signal(signal.SIGTERM)
        node.wait(timeout=60)
