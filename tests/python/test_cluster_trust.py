"""Trust inside the cluster, with real processes: only nodes holding the cluster secret gossip
with the others, receive their data or call their peer-only Flight services; a gossip packet
replayed later is refused; even a node holding the secret cannot make another run a file scan
or a file sink as a query fragment.

The peer credential is made here the way docs/cluster-trust.md describes it (HKDF-SHA256 of
the secret, then HMAC-SHA256), so these tests also pin the format."""
import base64
import hashlib
import hmac
import json
import os
import socket
import subprocess
import threading
import time

import pyarrow as pa
import pyarrow.flight as flight
import pytest

from mqttnode import CLUSTER_SECRET, Node, wait_until
from pgnode import MINITRUE_BIN

FAST_GOSSIP = ("--gossip-interval-ms", "100")
FRAGMENT_TICKET_PREFIX = b"minitrue.fragment.v1\0"


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def peer_key(secret, cluster_id="minitrue"):
    prk = hmac.new(b"minitrue cluster secret v1", secret.strip().encode(), hashlib.sha256).digest()
    info = b"peer calls\0" + cluster_id.encode()
    return hmac.new(prk, info + b"\x01", hashlib.sha256).digest()


def peer_credential(secret, node="node9", issued_ms=None):
    issued_ms = int(time.time() * 1000) if issued_ms is None else issued_ms
    node_b64, nonce = b64(node.encode()), b64(os.urandom(16))
    signed = f"minitrue peer call v1\0{node_b64}\0{issued_ms}\0{nonce}".encode()
    tag = b64(hmac.new(peer_key(secret), signed, hashlib.sha256).digest())
    return f"v1.{node_b64}.{issued_ms}.{nonce}.{tag}"


def options(credential=None, token=None):
    headers = []
    if credential is not None:
        headers.append((b"minitrue-peer", credential.encode()))
    if token is not None:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    return flight.FlightCallOptions(headers=headers, timeout=30)


def view(node):
    return sorted(row[0] for row in node.sql("SELECT node_id FROM system.nodes"))


def write(node, device, count=20):
    t0 = 1_700_000_000
    lines = "".join(f"env,device_id={device} temperature={20 + i} {t0 + i}\n" for i in range(count))
    status, body = node.http("POST", "/api/v2/write?precision=s", lines.encode())
    assert status == 204, body


def test_a_node_with_the_wrong_secret_never_joins_and_receives_nothing(tmp_path):
    nodes = []
    try:
        nodes.append(Node(tmp_path / "node1", "--node-id", "node1", *FAST_GOSSIP, "--replication-factor", "3").start())
        seeds = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']}")
        nodes.append(Node(tmp_path / "node2", "--node-id", "node2", *seeds, *FAST_GOSSIP, "--replication-factor", "3").start())
        # Same cluster id, a secret of its own.
        stranger_secret = subprocess.run([MINITRUE_BIN, "cluster", "secret"], capture_output=True, text=True, check=True).stdout.strip()
        assert stranger_secret.startswith("mtcs_") and stranger_secret != CLUSTER_SECRET
        seeds_both = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']},127.0.0.1:{nodes[1].ports['gossip']}")
        stranger = Node(tmp_path / "node3", "--node-id", "node3", *seeds_both, *FAST_GOSSIP,
                        "--replication-factor", "3", secret=stranger_secret).start()
        nodes.append(stranger)
        active = "SELECT count(*) FROM system.nodes WHERE alive AND state = 'active'"
        for node in nodes[:2]:
            wait_until("node1 and node2 active together", lambda: node.scalar(active) == "2", 60)
        wait_until("the stranger's gossip refused", lambda: nodes[0].metric("minitrue_gossip_packets_refused_total", reason="forged") > 5, 30)
        write(nodes[0], "d1")
        write(nodes[1], "d2")
        time.sleep(2)
        for node in nodes[:2]:
            assert view(node) == ["node1", "node2"], "the stranger is never a member"
            # Each member was admitted once this run of it proved the secret.
            assert node.sql("SELECT bool_and(admitted >= started) FROM system.nodes") == [["t"]]
            assert node.scalar("SELECT count(*) FROM readings") == "40"
        assert view(stranger) == ["node3"]
        assert stranger.scalar("SELECT count(*) FROM readings") == "0", "the stranger received no data"
        assert stranger.metric("minitrue_peer_calls_accepted_total") == 0
    finally:
        for node in nodes:
            node.stop()


class UdpRelay(threading.Thread):
    """Forwards datagrams between one client and `target`, keeping a copy of the client's."""

    def __init__(self, target):
        super().__init__(daemon=True)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.target, self.client, self.captured, self.running = target, None, [], True

    @property
    def address(self):
        return "127.0.0.1:%d" % self.sock.getsockname()[1]

    def run(self):
        while self.running:
            try:
                data, sender = self.sock.recvfrom(65535)
            except socket.timeout:
                continue
            if sender == self.target:
                if self.client:
                    self.sock.sendto(data, self.client)
            else:
                self.client = sender
                self.captured.append(data)
                self.sock.sendto(data, self.target)

    def stop(self):
        self.running = False
        self.join()
        self.sock.close()


def test_a_captured_gossip_packet_replayed_later_is_refused(tmp_path):
    nodes, relay = [], None
    try:
        nodes.append(Node(tmp_path / "node1", "--node-id", "node1", *FAST_GOSSIP).start())
        gossip = ("127.0.0.1", nodes[0].ports["gossip"])
        relay = UdpRelay(gossip)
        relay.start()
        nodes.append(Node(tmp_path / "node2", "--node-id", "node2", "--seeds", relay.address, *FAST_GOSSIP).start())
        wait_until("node1 sees node2", lambda: view(nodes[0]) == ["node1", "node2"], 60)
        relay.stop()
        captured = list(relay.captured)
        assert captured and all(packet.startswith(b"MTG1") for packet in captured)
        # Sealed: nothing of the gossip state is readable on the wire.
        assert not any(b"node2" in packet or b"active" in packet for packet in captured)

        refused = lambda: sum(nodes[0].metric("minitrue_gossip_packets_refused_total", reason=r) for r in ("replayed", "stale"))
        before = refused()
        time.sleep(1)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as attacker:
            for packet in captured:
                attacker.sendto(packet, gossip)
        wait_until("every replayed packet refused", lambda: refused() - before >= len(captured), 10)
        assert refused() - before == len(captured)
        assert view(nodes[0]) == ["node1", "node2"]
    finally:
        if relay and relay.running:
            relay.stop()
        for node in nodes:
            node.stop()


def csv_scan_fragment(path):
    """A fragment ticket whose plan is DataFusion's CSV scan of `path` (protobuf made by hand,
    field numbers from datafusion-proto), as an attacker would write it."""
    def field(number, payload):
        return varint(number << 3 | 2) + varint(len(payload)) + payload

    def varint(value):
        out = b""
        while True:
            byte, value = value & 0x7F, value >> 7
            out += bytes([byte | (0x80 if value else 0)])
            if not value:
                return out

    partitioned_file = field(1, path.encode()) + bytes([2 << 3]) + varint(64)
    scan_conf = field(1, field(1, partitioned_file)) + field(8, b"file:///")
    csv_scan = field(1, scan_conf) + field(3, b",")
    plan = field(2, csv_scan)  # PhysicalPlanNode.csv_scan
    return FRAGMENT_TICKET_PREFIX + b"\0" + plan, plan, field


def csv_sink_fragment(path, field):
    """A fragment whose plan writes an empty input to the CSV file at `path`."""
    empty = field(3, b"")  # PhysicalPlanNode.empty
    sink_config = field(1, b"file:///") + field(3, path.encode()) + field(11, b"csv")
    csv_sink = field(1, empty) + field(2, field(1, sink_config))
    return FRAGMENT_TICKET_PREFIX + b"\0" + field(28, csv_sink)  # PhysicalPlanNode.csv_sink


def test_peer_only_flight_calls_need_the_cluster_secret_and_fragments_are_checked(tmp_path):
    node = Node(tmp_path / "node1", "--node-id", "node1", "--metrics-public").start()
    try:
        data_dir = tmp_path / "node1" / "data"
        token = subprocess.run([MINITRUE_BIN, "token", "create", "--name", "etl", "--role", "admin", "--data-dir", str(data_dir)],
                               capture_output=True, text=True, check=True).stdout.strip()
        client = flight.FlightClient(f"grpc://127.0.0.1:{node.ports['flight']}")
        batch = pa.record_batch(
            [pa.array([1_700_000_000_000_000_000], pa.timestamp("ns", tz="UTC")), pa.array(["d1"]), pa.array(["temperature"]), pa.array([1.0])],
            names=["time", "device_id", "metric", "value"])
        replica_write = flight.FlightDescriptor.for_path("minitrue", "replica-write", "[]")
        delete = flight.Action("minitrue.replica-delete", json.dumps({"requests": [], "counted": []}).encode())
        scan_ticket, _, field = csv_scan_fragment("/etc/hostname")

        def count():
            # The node has a token now, so SQL needs it too.
            sql = flight.Ticket(b"SELECT count(*) AS n FROM readings")
            return client.do_get(sql, options=options(token=token)).read_all().column("n")[0].as_py()

        def replica_write_with(call_options):
            writer, _ = client.do_put(replica_write, batch.schema, options=call_options)
            writer.write_batch(batch)
            writer.close()

        forged = peer_credential("mtcs_not-the-secret-of-this-cluster-at-all")
        for name, call_options in [("no credential", options()), ("an admin token", options(token=token)),
                                   ("a forged credential", options(credential=forged))]:
            with pytest.raises(flight.FlightUnauthenticatedError):
                replica_write_with(call_options)
            with pytest.raises(flight.FlightUnauthenticatedError):
                list(client.do_action(delete, options=call_options))
            with pytest.raises(flight.FlightUnauthenticatedError):
                client.do_get(flight.Ticket(scan_ticket), options=call_options).read_all()
        assert node.metric("minitrue_peer_calls_refused_total", reason="forged") >= 3
        assert node.metric("minitrue_peer_calls_refused_total", reason="missing") >= 6
        assert count() == 0

        # A node holding the secret gets through, once per credential...
        credential = peer_credential(CLUSTER_SECRET)
        replica_write_with(options(credential=credential))
        assert count() == 1
        with pytest.raises(flight.FlightUnauthenticatedError, match="used before"):
            list(client.do_action(delete, options=options(credential=credential)))
        stale = peer_credential(CLUSTER_SECRET, issued_ms=int(time.time() * 1000) - 120_000)
        with pytest.raises(flight.FlightUnauthenticatedError, match="too long ago"):
            list(client.do_action(delete, options=options(credential=stale)))

        # ...but cannot make the node read or write its files.
        with pytest.raises((flight.FlightError, pa.ArrowException), match="CsvScan is not an operator MiniTrue sends"):
            client.do_get(flight.Ticket(scan_ticket), options=options(credential=peer_credential(CLUSTER_SECRET))).read_all()
        target = tmp_path / "written-by-a-fragment.csv"
        sink_ticket = csv_sink_fragment(str(target), field)
        with pytest.raises((flight.FlightError, pa.ArrowException), match="CsvSink is not an operator MiniTrue sends"):
            client.do_get(flight.Ticket(sink_ticket), options=options(credential=peer_credential(CLUSTER_SECRET))).read_all()
        assert not target.exists()
    finally:
        node.stop()


def test_a_node_that_joins_others_or_listens_beyond_loopback_needs_a_secret(tmp_path):
    base = [MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "data"), "--pg-port", "0", "--http-port", "0",
            "--mqtt-port", "0", "--flight-port", "0", "--gossip-port", "0", "--ready-file", str(tmp_path / "ready.json")]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MINITRUE_CLUSTER_SECRET")}
    for extra in (["--seeds", "127.0.0.1:9"], ["--listen", "0.0.0.0", "--advertise-address", "10.1.2.3", "--insecure-no-auth"]):
        out = subprocess.run(base + extra, capture_output=True, text=True, timeout=60, env=env)
        assert out.returncode != 0 and "no cluster secret" in out.stderr and "minitrue cluster secret" in out.stderr, out.stderr
    # --insecure-cluster starts, and says what it gives up.
    from pgnode import start_then_stop
    log = start_then_stop(base[:-2] + ["--seeds", "127.0.0.1:9", "--insecure-cluster"], tmp_path / "ready.json")
    assert "--insecure-cluster: gossip and calls between nodes are not authenticated" in log
    # Secrets never show: not in --print-config, not in the ready file.
    secret_file = tmp_path / "cluster.secret"
    secret_file.write_text(CLUSTER_SECRET + "\n")
    secret_file.chmod(0o644)
    out = subprocess.run(base + ["--cluster-secret-file", str(secret_file)], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode != 0 and "chmod 600" in out.stderr, out.stderr
    secret_file.chmod(0o600)
    printed = subprocess.run(base + ["--cluster-secret-file", str(secret_file), "--print-config"], capture_output=True, text=True, timeout=60, env=env)
    assert CLUSTER_SECRET not in printed.stdout and f"(set, from {secret_file})" in printed.stdout, printed.stdout
    log = start_then_stop(base[:-2] + ["--cluster-secret-file", str(secret_file)], tmp_path / "ready.json")
    assert CLUSTER_SECRET not in log and CLUSTER_SECRET not in (tmp_path / "ready.json").read_text()
    both = subprocess.run(base + ["--cluster-secret-file", str(secret_file)], capture_output=True, text=True, timeout=60,
                          env={**env, "MINITRUE_CLUSTER_SECRET": CLUSTER_SECRET})
    assert both.returncode != 0 and "keep one" in both.stderr
