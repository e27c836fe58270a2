"""TLS on the doors, with certificates made by `openssl` as an operator would (a CA and a
server certificate for 127.0.0.1 and localhost): psql with sslmode=require and verify-full,
psycopg with SCRAM over TLS, HTTPS with the CA, pyarrow.flight and ADBC over grpc+tls, paho
over MQTTS; plaintext refused with --tls-required; a new certificate taken on SIGHUP without a
restart."""
import base64
import json
import os
import signal
import socket
import ssl
import subprocess
import time
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import paho.mqtt.client as mqtt
import pyarrow.flight as flight
import psycopg
import pytest

from mqttnode import Node, mosquitto, node
from certs import make_certificates, make_client_certificate
from pgnode import MINITRUE_BIN, psql, wait_until

USER, PASSWORD = "tls-admin", "tls-pass-1"


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory):
    work = tmp_path_factory.mktemp("tls")
    ca, cert, key = make_certificates(work / "first", "minitrue-first")
    live_cert, live_key = work / "node.pem", work / "node.key"
    live_cert.write_bytes(cert.read_bytes())
    live_key.write_bytes(key.read_bytes())
    subprocess.run([MINITRUE_BIN, "user", "add", USER, "--role", "admin", "--data-dir", str(work / "data")],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    token = subprocess.run([MINITRUE_BIN, "token", "create", "--name", "tls-reader", "--role", "reader",
                            "--data-dir", str(work / "data")], text=True, check=True, capture_output=True).stdout.strip()
    with node(work, "--tls-cert", str(live_cert), "--tls-key", str(live_key), "--tls-required", "--mqtts-port", "0") as n:
        n.work, n.ca, n.token = work, ca, token
        n.live = (live_cert, live_key)
        yield n


def psql_tls(n, sslmode, extra="", sql="SELECT 1"):
    dsn = f"host=127.0.0.1 port={n.ports['postgres']} user={USER} dbname=minitrue sslmode={sslmode} {extra}"
    return subprocess.run(["psql", dsn, "-X", "-Atc", sql], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PGPASSWORD": PASSWORD, "PGCONNECT_TIMEOUT": "10"})


def test_psql_over_tls_and_plaintext_refused(tls_node):
    n = tls_node
    out = psql_tls(n, "require", sql="SELECT ssl FROM (SELECT true AS ssl)")
    assert out.returncode == 0 and out.stdout.strip() == "t", out.stderr
    out = psql_tls(n, "verify-full", f"sslrootcert={n.ca}")
    assert out.returncode == 0 and out.stdout.strip() == "1", out.stderr
    out = psql_tls(n, "disable")
    assert out.returncode != 0 and "only TLS" in out.stderr, out.stderr
    with psycopg.connect(host="127.0.0.1", port=n.ports["postgres"], user=USER, password=PASSWORD, dbname="minitrue",
                         sslmode="verify-full", sslrootcert=str(n.ca)) as conn:
        assert conn.info.pgconn.ssl_in_use
        assert conn.execute("SELECT 2").fetchone()[0] == 2


def https(n, path, context, **kwargs):
    request = urllib.request.Request(f"https://127.0.0.1:{n.ports['http']}{path}", **kwargs)
    with urllib.request.urlopen(request, timeout=30, context=context) as response:
        return response.status, response.read(), response.headers


def test_https_with_the_ca_and_secure_cookies(tls_node):
    n = tls_node
    context = ssl.create_default_context(cafile=str(n.ca))
    status, _, _ = https(n, "/health", context)
    assert status == 200
    status, _, headers = https(n, "/api/v1/login", context, method="POST",
                               data=json.dumps({"user": USER, "password": PASSWORD}).encode(),
                               headers={"Content-Type": "application/json"})
    assert "Secure" in headers["Set-Cookie"] and "HttpOnly" in headers["Set-Cookie"]
    with pytest.raises(Exception):
        urllib.request.urlopen(f"http://127.0.0.1:{n.ports['http']}/health", timeout=10)


def test_mqtts_only_when_tls_is_required(tls_node):
    n = tls_node
    assert "mqtt" not in n.ports and "mqtts" in n.ports
    connected = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="tls-sensor")
    client.tls_set(ca_certs=str(n.ca))
    client.username_pw_set(USER, PASSWORD)
    client.on_connect = lambda _c, _u, _f, reason, _p: connected.append(reason)
    client.connect("127.0.0.1", n.ports["mqtts"])
    client.loop_start()
    try:
        wait_until("CONNACK over TLS", lambda: connected, 20)
        assert not connected[0].is_failure
        payload = json.dumps({"device_id": "tls_1", "metric_name": "temperature", "timestamp": 1700000000, "value": 4.5})
        client.publish("iot/sensors/temperature", payload, qos=1).wait_for_publish(30)
    finally:
        client.loop_stop()
        client.disconnect()
    wait_until("the point", lambda: psql_tls(n, "require", sql="SELECT value FROM readings WHERE device_id = 'tls_1'").stdout.strip() == "4.5")
    # A plaintext MQTT client on the MQTTS port fails its handshake, and is counted.
    with socket.create_connection(("127.0.0.1", n.ports["mqtts"]), timeout=10) as raw:
        raw.sendall(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00")
        raw.recv(64)  # the door's TLS alert, or nothing: the connection is closed either way
    login = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    context = ssl.create_default_context(cafile=str(n.ca))

    def refused():
        _, body, _ = https(n, "/metrics", context, headers={"Authorization": f"Basic {login}"})
        line = 'minitrue_mqtt_connections_refused_total{reason="tls_handshake"}'
        return next(float(l.split()[-1]) for l in body.decode().splitlines() if l.startswith(line))

    wait_until("the failed handshake counted", lambda: refused() >= 1, 20)


def test_pyarrow_flight_with_a_token_over_grpc_tls(tls_node):
    n = tls_node
    bearer = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {n.token}".encode())])
    with flight.connect(f"grpc+tls://127.0.0.1:{n.ports['flight']}", tls_root_certs=n.ca.read_bytes()) as client:
        table = client.do_get(flight.Ticket(b"SELECT 5 AS five"), bearer).read_all()
        assert table.to_pylist() == [{"five": 5}]
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(flight.Ticket(b"SELECT 1")).read_all()
    # A client that does not trust the CA, and one speaking plaintext to the TLS port, get nothing.
    with flight.connect(f"grpc+tls://127.0.0.1:{n.ports['flight']}") as client:
        with pytest.raises(flight.FlightUnavailableError):
            client.do_get(flight.Ticket(b"SELECT 1"), bearer).read_all()
    with flight.connect(f"grpc://127.0.0.1:{n.ports['flight']}") as client:
        with pytest.raises(flight.FlightUnavailableError):
            client.do_get(flight.Ticket(b"SELECT 1"), bearer).read_all()


def test_adbc_with_password_and_with_token_over_grpc_tls(tls_node):
    n = tls_node
    uri = f"grpc+tls://127.0.0.1:{n.ports['flight']}"
    roots = {adbc_driver_flightsql.DatabaseOptions.TLS_ROOT_CERTS.value: n.ca.read_text()}
    password = {adbc_driver_manager.DatabaseOptions.USERNAME.value: USER,
                adbc_driver_manager.DatabaseOptions.PASSWORD.value: PASSWORD}
    with flight_sql.connect(uri, db_kwargs={**roots, **password}, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 6 AS six")
        assert cursor.fetchall() == [(6,)]
    token = {adbc_driver_flightsql.DatabaseOptions.AUTHORIZATION_HEADER.value: f"Bearer {n.token}"}
    with flight_sql.connect(uri, db_kwargs={**roots, **token}, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 7 AS seven")
        assert cursor.fetchall() == [(7,)]
        # The token is a reader's: writing is refused.
        with pytest.raises(adbc_driver_manager.Error):
            cursor.execute("DELETE FROM readings WHERE device_id = 'x'")
    wrong = {**password, adbc_driver_manager.DatabaseOptions.PASSWORD.value: "wrong"}
    with pytest.raises(adbc_driver_manager.Error):
        with flight_sql.connect(uri, db_kwargs={**roots, **wrong}, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")


def test_a_new_certificate_is_taken_on_sighup(tls_node):
    n = tls_node
    before = ssl.get_server_certificate(("127.0.0.1", n.ports["http"]))
    ca, cert, key = make_certificates(n.work / "second", "minitrue-second")
    n.live[0].write_bytes(cert.read_bytes())
    n.live[1].write_bytes(key.read_bytes())
    n.proc.send_signal(signal.SIGHUP)
    wait_until("the new certificate", lambda: ssl.get_server_certificate(("127.0.0.1", n.ports["http"])) != before, 20)
    out = psql_tls(n, "verify-full", f"sslrootcert={ca}")
    assert out.returncode == 0, out.stderr
    assert "tls certificate reloaded" in n.log()


def test_cluster_nodes_call_each_other_over_tls_and_check_certificates(tmp_path):
    """Replica writes and query fragments travel over TLS between two nodes whose
    certificates one CA signed; a node told to trust another CA reaches no peer."""
    ca, cert, key = make_certificates(tmp_path / "certs", "cluster")
    other_ca, _, _ = make_certificates(tmp_path / "other", "stranger")
    tls = ("--tls-cert", str(cert), "--tls-key", str(key), "--tls-ca", str(ca), "--mqtts-port", "0")
    fast = ("--gossip-interval-ms", "100", "--replication-factor", "2")
    nodes = [Node(tmp_path / "n1", "--node-id", "n1", *fast, *tls).start()]
    try:
        seeds = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']}")
        nodes.append(Node(tmp_path / "n2", "--node-id", "n2", *fast, *seeds, *tls).start())
        for n in nodes:
            wait_until("both nodes active", lambda: n.sql("SELECT count(*) FROM system.nodes WHERE alive AND state = 'active'") == [["2"]], 60)
        rows = ", ".join(f"(to_timestamp({1700000000 + i}), 'tls_dev_{i % 5}', 'temperature', {i})" for i in range(50))
        out = psql(nodes[0].ports["postgres"], "-c", f"INSERT INTO readings VALUES {rows}", check=False)
        assert out.returncode == 0, out.stderr
        # Replication factor 2 on two nodes: each holds every point, sent over TLS.
        for n in nodes:
            assert n.scalar("SELECT count(*) FROM system.local_readings") == "50"
            assert n.scalar("SELECT sum(value) FROM readings") == str(sum(range(50)))

        # A third node trusting a different CA cannot write its replicas to the others.
        stranger = Node(tmp_path / "n3", "--node-id", "n3", *fast, *seeds, "--tls-cert", str(cert), "--tls-key", str(key), "--mqtts-port", "0",
                        "--tls-ca", str(other_ca), "--write-quorum", "2")
        nodes.append(stranger.start())
        # (It stays out of the ring: joining needs the hand-over it cannot fetch.)
        wait_until("the stranger sees the cluster", lambda: stranger.sql("SELECT count(*) FROM system.nodes WHERE alive") == [["3"]], 60)
        refused = [
            psql(stranger.ports["postgres"], "-c", f"INSERT INTO readings VALUES (now(), 'stranger_{i}', 'temperature', 1)", check=False)
            for i in range(8)
        ]
        assert all(out.returncode != 0 for out in refused), [out.stderr for out in refused]
        assert "invalid peer certificate: UnknownIssuer" in stranger.log()
    finally:
        for n in nodes:
            n.stop()


def publish_over_tls(url, *settings):
    return subprocess.run([MINITRUE_BIN, "publish", "--broker", url, *settings, "simulate", "--devices", "2",
                           "--interval", "0", "--count", "5", "--device-prefix", "mqtts_"],
                          capture_output=True, text=True, timeout=60)


def test_an_external_mqtts_broker_with_its_ca_and_a_client_certificate(tmp_path):
    """Mosquitto over TLS asking for client certificates: the node subscribes and
    `minitrue publish` publishes with --broker-ca, --broker-cert and --broker-key; without the
    CA or the client certificate the connection fails with a clear error, never a panic."""
    ca, cert, key = make_certificates(tmp_path / "broker", "broker")
    client_cert, client_key = make_client_certificate(tmp_path / "broker", "minitrue-node")
    with mosquitto(tmp_path, tls=(ca, cert, key, True)) as port:
        url = f"mqtts://127.0.0.1:{port}"
        client = ("--broker-ca", str(ca), "--broker-cert", str(client_cert), "--broker-key", str(client_key))
        with node(tmp_path / "node", "--broker", url, *client) as n:
            wait_until("the subscription", lambda: n.metric("minitrue_ingest_connections_total", door="mqtt") >= 1, 30)
            out = publish_over_tls(url, *client)
            assert out.returncode == 0, out.stderr
            wait_until("the points", lambda: n.scalar("SELECT count(*) FROM readings WHERE device_id LIKE 'mqtts_%'") == "10")

        untrusted = publish_over_tls(url)
        assert untrusted.returncode != 0 and "panicked" not in untrusted.stderr, untrusted.stderr
        assert "UnknownIssuer" in untrusted.stderr or "certificate" in untrusted.stderr.lower(), untrusted.stderr
        anonymous = publish_over_tls(url, "--broker-ca", str(ca))
        assert anonymous.returncode != 0 and "panicked" not in anonymous.stderr, anonymous.stderr
        half = publish_over_tls(url, "--broker-cert", str(client_cert))
        assert half.returncode != 0 and "go together" in half.stderr, half.stderr
        refused = subprocess.run([MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "bad"), "--broker", url,
                                  "--broker-ca", str(tmp_path / "missing.pem")], capture_output=True, text=True, timeout=60)
        assert refused.returncode != 0 and "missing.pem" in refused.stderr, refused.stderr
        # Broker TLS files without an external broker are a mistake, caught before anything starts.
        alone = subprocess.run([MINITRUE_BIN, "serve", "--data-dir", str(tmp_path / "alone"), "--broker-ca", str(ca)],
                               capture_output=True, text=True, timeout=60)
        assert alone.returncode != 0 and "need --broker" in alone.stderr, alone.stderr
        assert not (tmp_path / "alone" / "wal").exists(), "the storage was opened"
