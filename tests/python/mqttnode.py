"""Helpers for ingestion tests: a Mosquitto broker and a MiniTrue node on free ports, a paho
publisher that waits for the broker's acknowledgements, and psql/HTTP queries."""
import contextlib
import getpass
import json
import os
import pathlib
import signal
import socket
import subprocess
import time
import urllib.request

import paho.mqtt.client as mqtt

from pgnode import MINITRUE_BIN, psql, wait_until


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port):
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextlib.contextmanager
def mosquitto(tmp_path, users=None, tls=None):
    """A Mosquitto broker configured as the subscriber's module docs ask: a large in-flight
    window and no limit on the queue of a disconnected persistent session. With `users`
    ({name: password}) anonymous clients are refused. With `tls` ((ca, cert, key,
    require_client_certificate) paths and flag) it speaks MQTTS only."""
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    auth = "allow_anonymous true\n"
    # Running as root, Mosquitto drops to its own user, which cannot read a pytest tmp dir.
    run_as = f"user {getpass.getuser()}\n"
    if tls:
        ca, cert, key, require_client_certificate = tls
        auth += f"cafile {ca}\ncertfile {cert}\nkeyfile {key}\n"
        auth += f"require_certificate {'true' if require_client_certificate else 'false'}\n"
    if users:
        passwords = tmp_path / "mosquitto.passwd"
        passwords.write_text("")
        for user, password in users.items():
            subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
        auth = auth.replace("allow_anonymous true", f"allow_anonymous false\npassword_file {passwords}")
    conf.write_text(
        f"listener {port} 127.0.0.1\n{auth}{run_as}max_inflight_messages 1000\n"
        "max_queued_messages 0\nmessage_size_limit 0\n"
    )
    proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_until("mosquitto", lambda: port_open(port))
        yield port
    finally:
        proc.kill()
        proc.wait()


# The cluster secret the suite's nodes share (each test's cluster is on its own ports).
CLUSTER_SECRET = "mtcs_the-python-suite-shares-this-cluster-secret"


class Node:
    """`minitrue serve` on free ports; `ports` holds what its ready file announced. Nodes hold
    `secret` as their cluster secret (None: no secret)."""

    def __init__(self, workdir, *extra, secret=CLUSTER_SECRET):
        self.secret = secret
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.extra = list(extra)
        self.proc = None
        self.ports = {}
        self.starts = 0

    def start(self):
        ready = self.workdir / "ready.json"
        if ready.exists():
            ready.unlink()
        self.starts += 1
        log = open(self.workdir / f"node-{self.starts}.log", "w")
        args = [MINITRUE_BIN, "serve", "--data-dir", str(self.workdir / "data"), "--pg-port", "0",
                "--http-port", "0", "--ready-file", str(ready), *self.extra]
        for port in ("--mqtt-port", "--flight-port", "--gossip-port"):
            if port not in self.extra:
                args += [port, "0"]
        env = {k: v for k, v in os.environ.items() if k != "MINITRUE_CLUSTER_SECRET"}
        if self.secret is not None:
            env["MINITRUE_CLUSTER_SECRET"] = self.secret
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        wait_until("the node to be ready", lambda: ready.exists() or self.proc.poll() is not None, 120)
        assert self.proc.poll() is None, self.log()
        info = json.loads(ready.read_text())
        self.ports = {k: int(v.rsplit(":", 1)[1]) for k, v in info.items() if k in ("postgres", "http", "mqtt", "mqtts", "flight", "gossip")}
        return self

    def log(self):
        return "\n".join(p.read_text() for p in sorted(self.workdir.glob("node-*.log")))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
            assert self.proc.returncode == 0, self.log()

    def sql(self, query):
        """Rows of `query` as lists of strings (psql unaligned, tab-separated)."""
        out = psql(self.ports["postgres"], "-At", "-F", "\t", "-c", query)
        return [line.split("\t") for line in out.stdout.strip().splitlines() if line]

    def scalar(self, query):
        rows = self.sql(query)
        return rows[0][0] if rows else None

    def http(self, method, path, body=None, headers=None):
        """(status, body bytes) of an HTTP request to the node."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.ports['http']}{path}", data=body, method=method, headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def metric(self, name, **labels):
        """A sample from GET /metrics (0 when absent)."""
        status, body = self.http("GET", "/metrics")
        assert status == 200
        want = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in body.decode().splitlines():
            if line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            if key == (f"{name}{{{want}}}" if want else name):
                return float(value)
        return 0.0


@contextlib.contextmanager
def node(workdir, *extra):
    n = Node(workdir, *extra).start()
    try:
        yield n
    finally:
        n.stop()


# The points the query tests share: sensor_1/temperature one a minute for two hours from T0;
# sensor_2/temperature four points that sum to -2.5 only when summed exactly.
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z, in seconds
S1 = [(T0 + 60 * i, round(20.0 + 0.25 * (i % 17) - 0.1 * (i % 5), 3)) for i in range(120)]
S2 = [(T0 + 30, -4.5), (T0 + 90, 1e300), (T0 + 150, -1e300), (T0 + 210, 2.0)]


@contextlib.contextmanager
def sample_node(workdir):
    """A node holding S1 and S2, written through `POST /api/v1/write`."""
    with node(workdir) as n:
        points = [{"device_id": "sensor_1", "metric_name": "temperature", "timestamp": t, "value": v} for t, v in S1]
        points += [{"device_id": "sensor_2", "metric_name": "temperature", "timestamp": t, "value": v} for t, v in S2]
        status, body = n.http("POST", "/api/v1/write", json.dumps(points).encode(), {"Content-Type": "application/json"})
        assert status == 204, body
        yield n


class Publisher:
    """A paho-mqtt QoS 1 publisher: `publish` queues, `flush` waits for every PUBACK."""

    def __init__(self, port, client_id="pytest-publisher", auth=None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
        if auth:
            self.client.username_pw_set(*auth)
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.pending = []

    def publish(self, topic, payload, qos=1):
        if isinstance(payload, (dict, list)):
            payload = json.dumps(payload)
        self.pending.append(self.client.publish(topic, payload, qos=qos))

    def flush(self, timeout=60):
        deadline = time.time() + timeout
        for info in self.pending:
            info.wait_for_publish(max(0.1, deadline - time.time()))
            assert info.is_published(), "the broker did not acknowledge a message"
        self.pending.clear()

    def close(self):
        self.flush()
        self.client.loop_stop()
        self.client.disconnect()


class Watcher:
    """Collects messages of a topic filter (e.g. the dead-letter topic)."""

    def __init__(self, port, topic):
        self.messages = []
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watcher-{os.getpid()}-{time.time_ns()}")
        self.client.on_message = lambda _c, _u, message: self.messages.append((message.topic, message.payload))
        subscribed = []
        self.client.on_subscribe = lambda *_args: subscribed.append(True)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe(topic, qos=1)
        wait_until("the watcher's subscription", lambda: subscribed)

    def close(self):
        self.client.loop_stop()
        self.client.disconnect()
