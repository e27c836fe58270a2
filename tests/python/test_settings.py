"""`minitrue serve`'s settings as an operator gives them: a TOML file by section, overridden by
the environment, overridden by flags; component settings reach the running node."""
import json
import os
import subprocess
import urllib.error
import urllib.request

from mqttnode import Node
from pgnode import MINITRUE_BIN


def print_config(*args, env=None):
    out = subprocess.run([MINITRUE_BIN, "serve", *args, "--print-config"], capture_output=True, text=True, timeout=60,
                         env={**os.environ, **(env or {})})
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_file_then_environment_then_flags(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('[node]\nnode_id = "from-file"\n[network]\npg_port = 7001\nhttp_port = 7002\n'
                      '[wal]\nsync = "50ms"\n[storage]\nflush_age = "2m"\n')
    printed = print_config("--config", str(config), "--http-port", "7102", env={"MINITRUE_PG_PORT": "7201"})
    assert printed["node"]["node_id"] == "from-file"
    assert printed["network"]["pg_port"] == 7201, "environment over file"
    assert printed["network"]["http_port"] == 7102, "flag over file"
    assert printed["wal"]["sync"] == "50ms" and printed["storage"]["flush_age"] == "2m"
    # Every section is there, with the components' defaults.
    assert set(printed) == {"node", "network", "storage", "wal", "cluster", "mqtt", "ingest", "query", "security"}
    assert printed["wal"]["max_record_bytes"] == 64 << 20
    # A misspelt key is an error naming it, not a silently ignored setting.
    config.write_text("[wal]\nsynk = \"50ms\"\n")
    out = subprocess.run([MINITRUE_BIN, "serve", "--config", str(config), "--print-config"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "synk" in out.stderr, out.stderr


def test_component_settings_reach_the_running_node(tmp_path):
    config = tmp_path / "node.toml"
    config.write_text('[wal]\nsync = "20ms"\n[ingest]\nhttp_max_body_bytes = 2048\n')
    node = Node(tmp_path / "node", "--config", str(config)).start()
    try:
        # The HTTP body limit: a 4 KiB write is refused whole, a small one is taken.
        big = json.dumps([{"device_id": "d", "metric_name": "m", "timestamp": 1700000000 + i, "value": i} for i in range(80)]).encode()
        assert len(big) > 2048
        status, _ = node.http("POST", "/api/v1/write", big, {"Content-Type": "application/json"})
        assert status == 413, status
        small = json.dumps([{"device_id": "d", "metric_name": "m", "timestamp": 1700000000, "value": 1.5}]).encode()
        assert node.http("POST", "/api/v1/write", small, {"Content-Type": "application/json"})[0] == 204
        # A WAL that acknowledges before fdatasync says so at every start.
        assert "--wal-sync 20ms: writes are acknowledged before they are on disk" in node.log()
    finally:
        node.stop()
