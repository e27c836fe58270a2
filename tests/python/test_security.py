"""Authentication and authorization on every door, with the real clients: psql, psycopg,
asyncpg, SQLAlchemy, curl-style HTTP (urllib), the `/ws/live` WebSocket, the InfluxDB Python
client, pyarrow.flight, ADBC and paho MQTT. Each check has its negative: no credentials, a wrong password, an unknown user, a
revoked token, a reader writing. Plus what holds for every role on every door: SQL never
reaches the server's files, `SET` never changes another client's settings, and a page on
another origin cannot use a node through a browser.

Users and tokens are made with the `minitrue user` / `minitrue token` commands against the
running node's data directory, as an operator would."""
import base64
import json
import os
import pathlib
import socket
import subprocess
import time
import urllib.request

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import paho.mqtt.client as mqtt
import psycopg
import pyarrow.flight as flight
import pytest

from mqttnode import CLUSTER_SECRET, node
from pgnode import MINITRUE_BIN, psql, start_then_stop, wait_until

ADMIN = ("root", "admin-pass-1")
WRITER = ("etl", "writer-pass-2")
READER = ("grafana", "reader-pass-3")


def minitrue(*args, stdin=None):
    out = subprocess.run([MINITRUE_BIN, *args], input=stdin, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return out


def add_user(data_dir, user, password, role):
    minitrue("user", "add", user, "--role", role, "--data-dir", str(data_dir), stdin=password + "\n")


def pg(n, *args, user=ADMIN[0], password=ADMIN[1], check=True):
    os.environ["PGPASSWORD"] = password
    try:
        return psql(n.ports["postgres"], *args, user=user, check=check)
    finally:
        del os.environ["PGPASSWORD"]


def basic(user, password):
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    """A node with an admin, a writer, a reader and two tokens."""
    work = tmp_path_factory.mktemp("secured")
    data = work / "data"
    for (user, password), role in [(ADMIN, "admin"), (WRITER, "writer"), (READER, "reader")]:
        add_user(data, user, password, role)
    tokens = {
        role: minitrue("token", "create", "--name", f"{role}-token", "--role", role, "--data-dir", str(data)).stdout.strip()
        for role in ("reader", "writer", "admin")
    }
    with node(work) as n:
        n.data_dir = data
        n.tokens = tokens
        yield n


# ------------------------------------------------------------------ Postgres wire protocol

def test_psql_logs_in_with_scram_and_roles_decide_what_runs(secured):
    n = secured
    out = pg(n, "-Atc", "INSERT INTO readings VALUES ('2024-01-01T00:00:00Z', 'sec_1', 'temperature', 1.5)", user=WRITER[0], password=WRITER[1])
    assert out.stdout.strip() == "INSERT 0 1"
    assert pg(n, "-Atc", "SELECT value FROM readings WHERE device_id = 'sec_1'", user=READER[0], password=READER[1]).stdout.strip() == "1.5"
    refused = pg(n, "-Atc", "INSERT INTO readings VALUES (now(), 'sec_1', 'temperature', 2)", user=READER[0], password=READER[1], check=False)
    assert refused.returncode != 0 and "permission denied" in refused.stderr and "writer role" in refused.stderr, refused.stderr
    for user, password in (READER, WRITER):
        out = pg(n, "-Atc", "DELETE FROM readings WHERE device_id = 'sec_1'", user=user, password=password, check=False)
        assert out.returncode != 0 and "permission denied" in out.stderr, out.stderr
        out = pg(n, "-Atc", "SELECT count(*) FROM system.files", user=user, password=password, check=False)
        assert out.returncode != 0 and "admin role" in out.stderr, out.stderr
    assert pg(n, "-Atc", "DELETE FROM readings WHERE device_id = 'sec_1'").stdout.strip() == "1"
    audit = [line for line in n.log().splitlines() if "privileged action" in line]
    assert any("DELETE FROM readings" in line and "user=root" in line and 'door="postgres"' in line for line in audit), audit


def test_wrong_passwords_and_unknown_users_get_the_same_answer(secured):
    n = secured
    wrong = pg(n, "-Atc", "SELECT 1", user=ADMIN[0], password="nope", check=False)
    unknown = pg(n, "-Atc", "SELECT 1", user="mallory", password="nope", check=False)
    for out, user in ((wrong, ADMIN[0]), (unknown, "mallory")):
        assert out.returncode != 0
        assert f'password authentication failed for user "{user}"' in out.stderr, out.stderr
    with pytest.raises(psycopg.OperationalError) as error:
        psycopg.connect(host="127.0.0.1", port=n.ports["postgres"], user="mallory", password="x", dbname="minitrue")
    assert error.value.sqlstate == "28P01" or "28P01" in str(error.value) or "password authentication failed" in str(error.value)
    log = n.log()
    assert "authentication failed" in log and "door=\"postgres\"" in log or "door=postgres" in log
    assert n.http("GET", "/metrics", headers={"Authorization": f"Bearer {n.tokens['admin']}"})[0] == 200


def test_psycopg_and_asyncpg_log_in_with_scram(secured):
    import asyncio
    import asyncpg

    n = secured
    with psycopg.connect(host="127.0.0.1", port=n.ports["postgres"], user=READER[0], password=READER[1], dbname="minitrue") as conn:
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM readings WHERE device_id = 'x'")

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=n.ports["postgres"], user=WRITER[0], password=WRITER[1], database="minitrue")
        try:
            return await conn.fetchval("SELECT 6 * 7")
        finally:
            await conn.close()

    assert asyncio.run(run()) == 42
    with pytest.raises(asyncpg.InvalidPasswordError):
        asyncio.run(asyncpg.connect(host="127.0.0.1", port=n.ports["postgres"], user=WRITER[0], password="bad", database="minitrue"))


def test_users_and_tokens_change_without_a_restart(secured):
    n = secured
    assert pg(n, "-Atc", "SELECT 1", user="newcomer", password="pw-1", check=False).returncode != 0
    add_user(n.data_dir, "newcomer", "pw-1", "reader")
    assert pg(n, "-Atc", "SELECT 1", user="newcomer", password="pw-1").stdout.strip() == "1"
    minitrue("user", "remove", "newcomer", "--data-dir", str(n.data_dir))
    assert pg(n, "-Atc", "SELECT 1", user="newcomer", password="pw-1", check=False).returncode != 0
    changes = [line for line in n.log().splitlines() if "credentials changed" in line]
    assert any("newcomer" in line for line in changes), "the node's audit log shows the user change"

    token = minitrue("token", "create", "--name", "short-lived", "--role", "reader", "--data-dir", str(n.data_dir)).stdout.strip()
    status, _ = n.http("POST", "/api/v1/sql", b"SELECT 1", {"Authorization": f"Bearer {token}"})
    assert status == 200
    listed = minitrue("token", "list", "--data-dir", str(n.data_dir)).stdout
    assert "short-lived\treader" in listed and token not in listed
    minitrue("token", "revoke", "short-lived", "--data-dir", str(n.data_dir))
    status, _ = n.http("POST", "/api/v1/sql", b"SELECT 1", {"Authorization": f"Bearer {token}"})
    assert status == 401
    users = json.loads((n.data_dir / "users.json").read_text())
    assert all(u["scram"].startswith("SCRAM-SHA-256$4096:") for u in users["users"])
    assert oct((n.data_dir / "users.json").stat().st_mode & 0o777) == "0o600"
    for _, password in (ADMIN, WRITER, READER):
        assert password not in (n.data_dir / "users.json").read_text()


# ------------------------------------------------------------------ HTTP

def test_http_needs_credentials_and_the_right_role(secured):
    n = secured
    assert n.http("GET", "/health")[0] == 200
    assert n.http("POST", "/api/v1/sql", b"SELECT 1")[0] == 401
    assert n.http("GET", "/metrics")[0] == 401
    assert n.http("GET", "/metrics", headers={"Authorization": f"Bearer {n.tokens['reader']}"})[0] == 403
    for headers in (
        {"Authorization": f"Bearer {n.tokens['reader']}"},
        {"Authorization": f"Token {n.tokens['reader']}"},
        basic(*READER),
    ):
        status, body = n.http("POST", "/api/v1/sql", b"SELECT 2 AS two", headers)
        assert status == 200 and json.loads(body)["rows"] == [[2]], body
    assert n.http("POST", "/api/v1/sql", b"SELECT 1", basic(READER[0], "wrong"))[0] == 401
    line = b"weather,device_id=http_1 temperature=3.5 1700000000000000000"
    assert n.http("POST", "/api/v2/write", line, {"Authorization": f"Token {n.tokens['reader']}"})[0] == 403
    assert n.http("POST", "/api/v2/write", line, {"Authorization": f"Token {n.tokens['writer']}"})[0] == 204
    # InfluxDB 1's query-string credentials, as Telegraf's influxdb output sends them.
    assert n.http("POST", f"/write?db=x&u={WRITER[0]}&p={WRITER[1]}", line)[0] == 204
    assert n.http("POST", f"/write?db=x&u={WRITER[0]}&p=nope", line)[0] == 401
    status, body = n.http("POST", "/api/v1/sql", b"DELETE FROM readings WHERE device_id = 'http_1'", {"Authorization": f"Bearer {n.tokens['writer']}"})
    assert status == 403 and b"admin" in body
    assert n.http("POST", "/api/v1/cluster/decommission", b"", {"Authorization": f"Bearer {n.tokens['writer']}"})[0] == 403


def test_influxdb_client_writes_with_a_token(secured):
    from influxdb_client import InfluxDBClient
    from influxdb_client.client.write_api import SYNCHRONOUS

    n = secured
    url = f"http://127.0.0.1:{n.ports['http']}"
    with InfluxDBClient(url=url, token=n.tokens["writer"], org="any") as client:
        client.write_api(write_options=SYNCHRONOUS).write(bucket="any", record="weather,device_id=influx_1 temperature=7.25 1700000000000000000")
    status, body = n.http("POST", "/api/v1/sql", b"SELECT value FROM readings WHERE device_id = 'influx_1'", {"Authorization": f"Bearer {n.tokens['reader']}"})
    assert json.loads(body)["rows"] == [[7.25]]
    with InfluxDBClient(url=url, token=n.tokens["reader"], org="any") as client:
        with pytest.raises(Exception) as error:
            client.write_api(write_options=SYNCHRONOUS).write(bucket="any", record="weather,device_id=influx_2 temperature=1 1700000000000000000")
    assert "403" in str(error.value)


def test_the_web_ui_logs_in_with_a_session_cookie(secured):
    n = secured
    status, _ = n.http("POST", "/api/v1/login", json.dumps({"user": READER[0], "password": "wrong"}).encode(), {"Content-Type": "application/json"})
    assert status == 401
    request = urllib.request.Request(f"http://127.0.0.1:{n.ports['http']}/api/v1/login", data=json.dumps({"user": READER[0], "password": READER[1]}).encode(), method="POST", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        cookie = response.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
    session = cookie.split(";")[0]
    status, body = n.http("GET", "/api/v1/whoami", headers={"Cookie": session})
    assert status == 200 and json.loads(body) == {"user": READER[0], "role": "reader", "auth_required": True}
    assert n.http("POST", "/api/v1/sql", b"SELECT 1", {"Cookie": session})[0] == 200
    assert n.http("POST", "/api/v1/logout", b"", {"Cookie": session})[0] == 204
    assert n.http("GET", "/api/v1/whoami", headers={"Cookie": session})[0] == 401


def websocket_upgrade(n, headers):
    """The status code a `/ws/live` upgrade request with `headers` is answered with."""
    lines = [f"GET /ws/live?device=d1 HTTP/1.1", f"Host: 127.0.0.1:{n.ports['http']}", "Upgrade: websocket",
             "Connection: Upgrade", f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}",
             "Sec-WebSocket-Version: 13", *[f"{k}: {v}" for k, v in headers.items()]]
    with socket.create_connection(("127.0.0.1", n.ports["http"]), timeout=10) as raw:
        raw.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(raw.recv(1024).split(b" ", 2)[1])


def test_the_live_websocket_needs_credentials_before_the_upgrade(secured):
    n = secured
    assert websocket_upgrade(n, {}) == 401
    assert websocket_upgrade(n, {"Authorization": "Bearer mt_not-a-real-token"}) == 401
    assert websocket_upgrade(n, {"Authorization": f"Bearer {n.tokens['reader']}"}) == 101
    request = urllib.request.Request(f"http://127.0.0.1:{n.ports['http']}/api/v1/login", method="POST",
                                     data=json.dumps({"user": READER[0], "password": READER[1]}).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        session = response.headers["Set-Cookie"].split(";")[0]
    assert websocket_upgrade(n, {"Cookie": session}) == 101


def test_sqlalchemy_logs_in_with_a_password(secured):
    import sqlalchemy
    n = secured
    url = f"postgresql+psycopg://{READER[0]}:{READER[1]}@127.0.0.1:{n.ports['postgres']}/minitrue"
    engine = sqlalchemy.create_engine(url)
    with engine.connect() as conn:
        assert conn.execute(sqlalchemy.text("SELECT 41 + 1")).scalar() == 42
    engine.dispose()
    wrong = sqlalchemy.create_engine(url.replace(READER[1], "wrong"))
    with pytest.raises(sqlalchemy.exc.OperationalError) as error:
        wrong.connect()
    assert "password authentication failed" in str(error.value)
    wrong.dispose()


# ------------------------------------------------------------------ Arrow Flight

def test_flight_basic_handshake_answers_a_bearer_token(secured):
    n = secured
    location = f"grpc://127.0.0.1:{n.ports['flight']}"
    with flight.connect(location) as client:
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.do_get(flight.Ticket(b"SELECT 1")).read_all()
        with pytest.raises(flight.FlightUnauthenticatedError):
            client.authenticate_basic_token(READER[0], "wrong")
        header = client.authenticate_basic_token(READER[0], READER[1])
        options = flight.FlightCallOptions(headers=[header])
        assert client.do_get(flight.Ticket(b"SELECT 3 AS three"), options).read_all().to_pylist() == [{"three": 3}]
        with pytest.raises(flight.FlightError) as error:
            client.do_get(flight.Ticket(b"DELETE FROM readings WHERE device_id = 'x'"), options).read_all()
        assert "admin" in str(error.value)
    with flight.connect(location) as client:
        options = flight.FlightCallOptions(headers=[(b"authorization", f"Bearer {n.tokens['reader']}".encode())])
        assert client.do_get(flight.Ticket(b"SELECT 4 AS four"), options).read_all().to_pylist() == [{"four": 4}]


def test_adbc_logs_in_with_username_and_password(secured):
    n = secured
    uri = f"grpc://127.0.0.1:{n.ports['flight']}"
    kwargs = {adbc_driver_manager.DatabaseOptions.USERNAME.value: WRITER[0], adbc_driver_manager.DatabaseOptions.PASSWORD.value: WRITER[1]}
    with flight_sql.connect(uri, db_kwargs=kwargs, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 5 AS five")
        assert cursor.fetchall() == [(5,)]
    bad = {**kwargs, adbc_driver_manager.DatabaseOptions.PASSWORD.value: "wrong"}
    with pytest.raises(adbc_driver_manager.Error):
        with flight_sql.connect(uri, db_kwargs=bad, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")
    with pytest.raises(adbc_driver_manager.Error):
        with flight_sql.connect(uri, autocommit=True) as conn, conn.cursor() as cursor:
            cursor.execute("SELECT 1")


# ------------------------------------------------------------------ MQTT (embedded broker)

def connect_code(port, auth=None):
    """The CONNACK reason paho got: 0 accepted, otherwise the refusal."""
    result = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"sec-{time.time_ns()}")
    client.on_connect = lambda _c, _u, _f, reason, _p: result.append(reason)
    if auth:
        client.username_pw_set(*auth)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        wait_until("a CONNACK", lambda: result, 20)
    finally:
        client.loop_stop()
        client.disconnect()
    return result[0]


def test_the_embedded_broker_admits_only_writers(secured):
    n = secured
    port = n.ports["mqtt"]
    assert connect_code(port).is_failure and "authoriz" in str(connect_code(port)).lower()
    assert connect_code(port, (WRITER[0], "wrong")).is_failure
    assert connect_code(port, READER).is_failure
    assert not connect_code(port, WRITER).is_failure

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="sec-writer")
    client.username_pw_set(*WRITER)
    client.connect("127.0.0.1", port)
    client.loop_start()
    info = client.publish("iot/sensors/temperature", json.dumps({"device_id": "mqtt_sec", "metric_name": "temperature", "timestamp": 1700000000, "value": 9.5}), qos=1)
    info.wait_for_publish(30)
    client.loop_stop()
    client.disconnect()
    wait_until("the point", lambda: pg(n, "-Atc", "SELECT value FROM readings WHERE device_id = 'mqtt_sec'").stdout.strip() == "9.5")
    status, body = n.http("GET", "/metrics", headers={"Authorization": f"Bearer {n.tokens['admin']}"})
    assert 'minitrue_mqtt_connections_refused_total{reason="not_authorized"}' in body.decode()


# ------------------------------------------------------------------ every role, every door

@pytest.fixture(scope="module")
def open_node(tmp_path_factory):
    with node(tmp_path_factory.mktemp("open")) as n:
        yield n


# Postgres' own spellings, for the Postgres door only.
PG_FILE_STATEMENTS = [
    "COPY (SELECT 1 AS a) TO '{out}/copy.csv' WITH (FORMAT csv)",
    "COPY readings FROM '{secret}'",
    "COPY readings TO '{out}/all.csv'",
]
FILE_STATEMENTS = [
    "COPY (SELECT 1 AS a) TO '{out}/copy.csv'",
    "COPY (SELECT 1 AS a) TO '{out}/copy.parquet' STORED AS PARQUET",
    "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '{secret}'",
    "CREATE TABLE t AS SELECT 1 AS a",
    "CREATE VIEW v AS SELECT 1 AS a",
]


def test_no_statement_reaches_the_servers_files_on_any_door(open_node, tmp_path):
    n = open_node
    secret = tmp_path / "secret.csv"
    secret.write_text("a\nthe secret\n")
    out = tmp_path / "out"
    for sql in PG_FILE_STATEMENTS:
        result = psql(n.ports["postgres"], "-Atc", sql.format(out=out, secret=secret), check=False)
        assert result.returncode != 0 and "not allowed" in result.stderr, (sql, result.stderr)
    for sql in [s.format(out=out, secret=secret) for s in FILE_STATEMENTS]:
        result = psql(n.ports["postgres"], "-Atc", sql, check=False)
        # DataFusion's own spellings (STORED AS) are not Postgres SQL: a syntax error there.
        refused = "not allowed" in result.stderr or ("STORED" in sql and "parser error" in result.stderr)
        assert result.returncode != 0 and refused, (sql, result.stderr)
        status, body = n.http("POST", "/api/v1/sql", sql.encode())
        assert status == 403 and b"not allowed" in body, (sql, body)
        with flight.connect(f"grpc://127.0.0.1:{n.ports['flight']}") as client:
            with pytest.raises(flight.FlightError) as error:
                client.do_get(flight.Ticket(sql.encode())).read_all()
            assert "not allowed" in str(error.value), sql
        with flight_sql.connect(f"grpc://127.0.0.1:{n.ports['flight']}", autocommit=True) as conn, conn.cursor() as cursor:
            with pytest.raises(adbc_driver_manager.Error) as error:
                cursor.execute(sql)
            assert "not allowed" in str(error.value), sql
    assert not out.exists(), "no file was written"
    assert "the secret" not in n.log()


def test_set_changes_only_the_issuing_connection(open_node):
    n = open_node
    refused = psql(n.ports["postgres"], "-Atc", "SET datafusion.execution.batch_size = 7", check=False)
    assert refused.returncode != 0 and "42501" in refused.stderr or "shared by every client" in refused.stderr
    for set_zone in ("SET TIME ZONE 'Asia/Tokyo'", "SET timezone = 'Asia/Tokyo'", "SET SESSION TIME ZONE 'Asia/Tokyo'"):
        out = psql(n.ports["postgres"], "-At", "-c", set_zone, "-c", "SELECT TIMESTAMPTZ '2024-01-01T00:00:00Z'")
        assert "2024-01-01 09:00:00+09" in out.stdout, (set_zone, out.stdout)
    # Another connection still sees UTC.
    out = psql(n.ports["postgres"], "-Atc", "SELECT TIMESTAMPTZ '2024-01-01T00:00:00Z'")
    assert out.stdout.strip() == "2024-01-01 00:00:00+00", out.stdout


def test_pages_of_other_origins_are_refused(open_node):
    n = open_node
    cases = [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Referer": "http://evil.example/page"},
        {"Host": f"evil.example:{n.ports['http']}"},
    ]
    for headers in cases:
        status, body = n.http("POST", "/api/v1/sql", b"DELETE FROM readings WHERE device_id = 'x'", {"Content-Type": "text/plain", **headers})
        assert status == 403, (headers, body)
    status, _ = n.http("POST", "/api/v1/sql", b"SELECT 1", {"Origin": f"http://127.0.0.1:{n.ports['http']}"})
    assert status == 200
    assert n.http("GET", "/", headers={"Origin": "http://evil.example"})[0] == 200, "the UI's page itself is static"


# ------------------------------------------------------------------ starting a node

def test_a_node_beyond_loopback_without_users_refuses_to_start(tmp_path):
    data = tmp_path / "data"
    # Beyond loopback a node also needs its cluster's secret (tests/python/test_cluster_trust.py).
    secret = tmp_path / "cluster.secret"
    secret.write_text(CLUSTER_SECRET)
    secret.chmod(0o600)
    args = [MINITRUE_BIN, "serve", "--data-dir", str(data), "--listen", "0.0.0.0", "--advertise-address", "127.0.0.1",
            "--pg-port", "0", "--http-port", "0", "--mqtt-port", "0", "--flight-port", "0", "--gossip-port", "0",
            "--cluster-secret-file", str(secret)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert out.returncode != 0
    assert "minitrue user add admin --role admin" in out.stderr, out.stderr
    ready = tmp_path / "ready.json"
    output = start_then_stop([*args, "--insecure-no-auth"], ready)
    assert "--insecure-no-auth" in output, output
    add_user(data, *ADMIN, "admin")
    output = start_then_stop(args, ready)
    assert "auth: clients authenticate" in output, output


def test_each_door_listens_where_it_is_told(tmp_path):
    data = tmp_path / "data"
    base = [MINITRUE_BIN, "serve", "--data-dir", str(data), "--pg-port", "0", "--http-port", "0", "--mqtt-port", "0",
            "--flight-port", "0", "--gossip-port", "0"]
    # MQTT facing the sensors' network, without users: refused, naming the door.
    out = subprocess.run([*base, "--mqtt-listen", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert out.returncode != 0 and "--mqtt-listen 0.0.0.0" in out.stderr, out.stderr
    add_user(data, *WRITER, "writer")
    ready = tmp_path / "ready.json"
    start_then_stop([*base, "--mqtt-listen", "0.0.0.0"], ready)
    addresses = json.loads(ready.read_text())
    assert addresses["mqtt"].startswith("0.0.0.0:"), addresses
    assert addresses["postgres"].startswith("127.0.0.1:") and addresses["http"].startswith("127.0.0.1:"), addresses


# ------------------------------------------------------------------ password guessing

def test_an_address_guessing_passwords_is_locked_out_on_every_door(tmp_path):
    """Ten wrong passwords in a row over psql lock 127.0.0.1 out for a while: then even the
    right password fails, over psql and HTTP Basic alike, with the plain failure message; a
    token still works (tokens are not guessable), and the refusals are counted."""
    data = tmp_path / "data"
    add_user(data, *ADMIN, "admin")
    token = minitrue("token", "create", "--name", "monitor", "--role", "admin", "--data-dir", str(data)).stdout.strip()
    with node(tmp_path) as n:
        for _ in range(10):
            out = pg(n, "-Atc", "SELECT 1", password="guess", check=False)
            assert "password authentication failed" in out.stderr, out.stderr
        out = pg(n, "-Atc", "SELECT 1", check=False)
        assert out.returncode != 0 and "password authentication failed" in out.stderr, out.stderr
        status, _ = n.http("POST", "/api/v1/sql", b"SELECT 1", basic(*ADMIN))
        assert status == 401
        bearer = {"Authorization": f"Bearer {token}"}
        status, body = n.http("GET", "/metrics", headers=bearer)
        assert status == 200
        throttled = sum(float(line.split()[-1]) for line in body.decode().splitlines()
                        if line.startswith("minitrue_auth_throttled_total{"))
        assert throttled == 2, body.decode()
        assert "this address is locked out" in n.log()
