"""TLS on the doors, with certificates made by `openssl` as an operator would (a CA and a
server certificate for 127.0.0.1 and localhost): psql with sslmode=require and verify-full,
psycopg with SCRAM over TLS, HTTPS with the CA, paho over MQTTS; plaintext refused with
--tls-required; a new certificate taken on SIGHUP without a restart."""
import json
import os
import signal
import ssl
import subprocess
import time
import urllib.request

import paho.mqtt.client as mqtt
import psycopg
import pytest

from mqttnode import node
from certs import make_certificates
from pgnode import MINITRUE_BIN, wait_until

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
    with node(work, "--tls-cert", str(live_cert), "--tls-key", str(live_key), "--tls-required", "--mqtts-port", "0") as n:
        n.work, n.ca = work, ca
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
