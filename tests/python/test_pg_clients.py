"""Real Postgres clients against a real node: the wire protocol as a raw socket sees it, psql
(queries and backslash commands), psycopg 3, psycopg2, asyncpg, SQLAlchemy + pandas. Each
test loads nothing itself: the node fixture holds the points of pgnode.py, and every
assertion is computed from them."""
import asyncio
import datetime
import re
import socket
import struct

import pytest

import pgnode
from pgnode import BASE_EPOCH, MINUTES, psql

UTC = datetime.timezone.utc
T0 = datetime.datetime.fromtimestamp(BASE_EPOCH, UTC)


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    with pgnode.running_node(tmp_path_factory.mktemp("pg-clients")) as port:
        yield port


# ---------------------------------------------------------------- the wire, byte by byte

class Wire:
    """A minimal protocol-3 client: enough to see exactly what the server sends."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.buf = b""

    def send(self, tag, body=b""):
        self.sock.sendall(tag + struct.pack("!I", len(body) + 4) + body)

    def read_exact(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            assert chunk, "server closed the connection"
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def message(self):
        tag = self.read_exact(1)
        (length,) = struct.unpack("!I", self.read_exact(4))
        return tag, self.read_exact(length - 4)

    def until_ready(self):
        messages = []
        while True:
            tag, body = self.message()
            messages.append((tag, body))
            if tag == b"Z":
                return messages

    def query(self, sql):
        self.send(b"Q", sql.encode() + b"\0")
        return self.until_ready()


def cstrings(body):
    return body.split(b"\0")


def error_fields(body):
    return {f[:1].decode(): f[1:].decode() for f in body.split(b"\0") if f}


def test_wire_details(port):
    wire = Wire(port)
    # GSSENCRequest and SSLRequest are refused with 'N' and the same connection goes on.
    wire.sock.sendall(struct.pack("!II", 8, 80877104))
    assert wire.read_exact(1) == b"N"
    wire.sock.sendall(struct.pack("!II", 8, 80877103))
    assert wire.read_exact(1) == b"N"
    # Any user and database name, no password.
    params = b"user\0someone\0database\0not_a_database\0\0"
    wire.sock.sendall(struct.pack("!II", len(params) + 8, 196608) + params)
    startup = wire.until_ready()
    assert startup[0] == (b"R", struct.pack("!I", 0)), "AuthenticationOk first"
    status = dict(cstrings(body)[:2] for tag, body in startup if tag == b"S")
    status = {k.decode(): v.decode() for k, v in status.items()}
    major = int(status["server_version"].split(".")[0])
    assert major >= 14 and re.fullmatch(r"\d+\.\d+", status["server_version"]), status
    assert status["server_encoding"] == "UTF8" and status["client_encoding"] == "UTF8"
    assert status["DateStyle"] == "ISO, MDY"
    assert status["TimeZone"] == "UTC"
    assert status["integer_datetimes"] == "on"
    assert status["standard_conforming_strings"] == "on"

    # Empty and comment-only queries: EmptyQueryResponse ('I'), never an error.
    for empty in ["", ";", "-- ping", "/* nothing */", "  -- a\n -- b\n"]:
        tags = [tag for tag, _ in wire.query(empty)]
        assert tags == [b"I", b"Z"], (empty, tags)

    # Rows: RowDescription, DataRows, then the `SELECT n` command tag.
    messages = wire.query("SELECT time, value FROM readings WHERE device_id = 'sensor_1' ORDER BY time LIMIT 3")
    assert [tag for tag, _ in messages] == [b"T", b"D", b"D", b"D", b"C", b"Z"]
    assert messages[4][1] == b"SELECT 3\0"
    # Text timestamps as Postgres prints them: a space between date and time, no fraction
    # when it is zero, the UTC offset.
    first = messages[1][1]
    (columns,) = struct.unpack("!H", first[:2])
    (size,) = struct.unpack("!I", first[2:6])
    text = first[6:6 + size].decode()
    assert text == "2024-01-01 00:00:00+00", text

    # A bad query is an ErrorResponse with its SQLSTATE, then ReadyForQuery: the connection lives on.
    for sql, code in [("SELEC 1", "42601"), ("SELECT * FROM no_such_table", "42P01"),
                      ("SELECT no_such_column FROM readings", "42703"),
                      ("SELECT no_such_function(1)", "42883"), ("SELECT 1/0", "22012")]:
        messages = wire.query(sql)
        # An error found while running (not planning) may follow the RowDescription.
        assert [tag for tag, _ in messages if tag != b"T"] == [b"E", b"Z"], (sql, messages)
        fields = error_fields(messages[-2][1])
        assert fields["S"] == "ERROR" and fields["C"] == code, (sql, fields)
    assert wire.query("SELECT 41 + 1")[1][1].endswith(b"42")

    # RFC 3339 literals (T, Z, up to 9 fractional digits) compare with timestamptz.
    messages = wire.query(
        "SELECT count(*) FROM readings WHERE time >= '2024-01-01T00:03:00Z' "
        "AND time < '2024-01-01T00:05:00.000000001Z' AND device_id = 'sensor_1'")
    assert messages[1][1].endswith(b"3")  # 00:03, 00:04 and 00:05, one nanosecond inside
    messages = wire.query("SELECT value FROM readings WHERE time = '2024-01-01T00:00:00.123456789Z'")
    assert messages[1][1].endswith(b"1013.25")

    # asyncpg's pattern: Parse + Describe + Flush, then wait for the answer before Sync.
    wire.send(b"P", b"s1\0SELECT value FROM readings WHERE device_id = $1\0\0\0")
    wire.send(b"D", b"Ss1\0")
    wire.send(b"H")
    described = [wire.message()[0] for _ in range(3)]
    assert described == [b"1", b"t", b"T"], described
    wire.send(b"S")
    assert wire.message()[0] == b"Z"

    # Two result formats for three columns: neither one-for-all nor one-per-column. Postgres
    # refuses the Bind with 08P01; so do we, at Describe and at Execute, and the connection
    # goes on.
    wire.send(b"P", b"s3\0SELECT 1, 2, 3\0\0\0")
    bind = b"\0s3\0" + struct.pack("!hhhhh", 0, 0, 2, 0, 1)
    wire.send(b"B", bind)
    wire.send(b"D", b"P\0")
    wire.send(b"E", b"\0" + struct.pack("!i", 0))
    wire.send(b"S")
    messages = wire.until_ready()
    errors = [error_fields(body) for tag, body in messages if tag == b"E"]
    assert errors and errors[0]["C"] == "08P01", messages
    assert "2 result formats but query has 3 columns" in errors[0]["M"], errors
    assert wire.query("SELECT 41 + 1")[1][1].endswith(b"42")
    wire.send(b"X")


def test_timestamps_print_as_postgres_prints_them(port):
    """Fractions without trailing zeros, `timestamp` without an offset, `timestamptz` in the
    zone `SET TIME ZONE` chose (summer and winter offsets), back to UTC on `SET TIME ZONE UTC`."""
    sql = (
        "SELECT TIMESTAMPTZ '2024-01-01 00:00:00.5+00', TIMESTAMP '2024-01-01 10:00:00.123', "
        "TIMESTAMPTZ '2024-01-01 00:00:00.000001+00';"
        "SET TIME ZONE 'America/New_York';"
        "SELECT TIMESTAMPTZ '2024-07-01 12:00:00+00', TIMESTAMPTZ '2024-01-01 12:00:00+00';"
        "SET TIME ZONE 'Asia/Kolkata';"
        "SELECT time FROM readings WHERE device_id = 'sensor_1' ORDER BY time LIMIT 1;"
        "SET TIME ZONE 'UTC';"
        "SELECT time FROM readings WHERE device_id = 'sensor_1' ORDER BY time LIMIT 1;"
    )
    out = psql(port, "-At", "-c", sql).stdout.split("\n")
    assert out[:5] == [
        "2024-01-01 00:00:00.5+00|2024-01-01 10:00:00.123|2024-01-01 00:00:00.000001+00",
        "SET",
        "2024-07-01 08:00:00-04|2024-01-01 07:00:00-05",
        "SET",
        "2024-01-01 05:30:00+05:30",
    ], out
    assert out[5:7] == ["SET", "2024-01-01 00:00:00+00"], out


# ---------------------------------------------------------------- psql

def test_psql_queries_and_backslash_commands(port):
    out = psql(port, "-At", "-F", ",", "-c",
               "SELECT device_id, count(*), avg(value) FROM readings WHERE time >= '2024-01-01 00:00:00+00' "
               "AND time < '2024-01-01 00:05:00+00' GROUP BY device_id ORDER BY device_id")
    # Postgres writes a whole float8 without ".0".
    assert out.stdout.split() == ["sensor_1,5,22", "sensor_2,5,52", "sensor_3,1,1013.25"]

    tables = psql(port, "-c", r"\dt").stdout
    listed = re.findall(r"^\s*public\s*\|\s*(\w+)\s*\|\s*table", tables, re.M)
    assert listed == ["devices", "readings"], tables

    described = psql(port, "-c", r"\d readings").stdout
    columns = re.findall(r"^\s*(\w+)\s*\|\s*([a-z ]+?)\s*\|", described, re.M)
    assert columns == [("time", "timestamp with time zone"), ("device_id", "text"),
                       ("metric", "text"), ("value", "double precision")], described
    devices = psql(port, "-c", r"\d devices").stdout
    assert re.search(r"^\s*last_value\s*\|\s*double precision", devices, re.M), devices
    assert re.search(r"^\s*points\s*\|\s*bigint", devices, re.M), devices

    databases = psql(port, "-c", r"\l").stdout
    assert re.search(r"^\s*minitrue\s*\|", databases, re.M), databases
    schemas = psql(port, "-c", r"\dn").stdout
    assert re.findall(r"^\s*(public|system)\s*\|", schemas, re.M) == ["public", "system"], schemas

    expanded = psql(port, "-c", r"\x on", "-c",
                    "SELECT device_id, metric, points, last_value FROM devices WHERE device_id = 'sensor_2'").stdout
    assert "-[ RECORD 1 ]" in expanded, expanded
    assert re.search(r"^points\s*\|\s*10$", expanded, re.M), expanded
    assert re.search(r"^last_value\s*\|\s*59(\.0)?$", expanded, re.M), expanded

    timed = psql(port, "-c", r"\timing on", "-c", "SELECT count(*) FROM readings").stdout
    assert re.search(r"^\s*21$", timed, re.M), timed
    assert re.search(r"^Time: \d+[.,]\d+ ms", timed, re.M), timed

    bad = psql(port, "-v", "VERBOSITY=verbose", "-c", "SELECT nope FROM readings", check=False)
    assert bad.returncode != 0 and "42703" in bad.stderr, bad.stderr


# ---------------------------------------------------------------- psycopg 3

def test_psycopg3_text_binary_and_prepared(port):
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(host="127.0.0.1", port=port, user="minitrue", dbname="minitrue", autocommit=True) as conn:
        start = T0 + datetime.timedelta(minutes=2)
        # Text parameters.
        rows = conn.execute(
            "SELECT time, value FROM readings WHERE device_id = %s AND metric = %s AND time >= %s ORDER BY time",
            ["sensor_1", "temperature", start]).fetchall()
        assert rows == [(T0 + datetime.timedelta(minutes=k), 20.0 + k) for k in range(2, MINUTES)]
        assert rows[0][0].utcoffset() == datetime.timedelta(0)
        # Binary parameters and binary results.
        with conn.cursor(binary=True) as cur:
            cur.execute("SELECT count(*), sum(value) FROM readings WHERE value > %b AND device_id = %b",
                        [25.5, "sensor_1"])
            assert cur.fetchone() == (4, 26.0 + 27 + 28 + 29)
            cur.execute("SELECT time FROM readings WHERE device_id = %s ORDER BY time DESC LIMIT 1", ["sensor_2"])
            assert cur.fetchone()[0] == T0 + datetime.timedelta(minutes=MINUTES - 1)
        # Server-side prepared statements, reused with different parameters.
        for k in range(4):
            value = conn.execute("SELECT value FROM readings WHERE device_id = %s AND time = %s",
                                 ["sensor_2", T0 + datetime.timedelta(minutes=k)], prepare=True).fetchone()[0]
            assert value == 50.0 + k
        # Errors carry SQLSTATE classes; a failed transaction with prepared statements is
        # cleaned up (psycopg sends DEALLOCATE ALL) and the connection goes on.
        with pytest.raises(psycopg.errors.UndefinedTable):
            conn.execute("SELECT * FROM nowhere")
        with pytest.raises(psycopg.errors.UndefinedColumn):
            conn.execute("SELECT nothing FROM readings")
        with pytest.raises(psycopg.errors.SyntaxError):
            conn.execute("SELEC 1")
        assert conn.execute("DEALLOCATE ALL").statusmessage == "DEALLOCATE ALL"
        assert conn.execute("SELECT count(*) FROM readings WHERE device_id = %s", ["sensor_3"]).fetchone() == (1,)
        info = psycopg.pq.PGconn.parameter_status(conn.pgconn, b"server_version")
        assert info and int(info.split(b".")[0]) >= 14


def test_psycopg2(port):
    psycopg2 = pytest.importorskip("psycopg2")
    conn = psycopg2.connect(host="127.0.0.1", port=port, user="minitrue", dbname="minitrue")
    try:
        cur = conn.cursor()
        cur.execute("SELECT time, device_id, value FROM readings WHERE metric = %(metric)s AND value >= %(low)s "
                    "ORDER BY time", {"metric": "humidity", "low": 57})
        rows = cur.fetchall()
        assert [(t, d, v) for t, d, v in rows] == [
            (T0 + datetime.timedelta(minutes=k), "sensor_2", 50.0 + k) for k in range(7, MINUTES)]
        assert cur.description[0].type_code == 1184 and cur.description[2].type_code == 701
        cur.execute("SELECT count(*) FROM readings WHERE time BETWEEN %s AND %s",
                    (datetime.datetime(2024, 1, 1, 0, 1, tzinfo=UTC), datetime.datetime(2024, 1, 1, 0, 2, tzinfo=UTC)))
        assert cur.fetchone() == (4,)
        with pytest.raises(psycopg2.Error) as error:
            cur.execute("SELECT * FROM nowhere")
        assert error.value.pgcode == "42P01"
        conn.rollback()
        cur.execute("SELECT last_value, points FROM devices WHERE device_id = 'sensor_1'")
        assert cur.fetchone() == (29.0, 10)
    finally:
        conn.close()


# ---------------------------------------------------------------- asyncpg

def test_asyncpg_binary_protocol_and_introspection(port):
    asyncpg = pytest.importorskip("asyncpg")

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="whoever", database="minitrue")
        try:
            rows = await conn.fetch(
                "SELECT time, device_id, value FROM readings WHERE device_id = $1 AND time < $2 ORDER BY time",
                "sensor_1", T0 + datetime.timedelta(minutes=3))
            assert [(r["time"], r["device_id"], r["value"]) for r in rows] == [
                (T0 + datetime.timedelta(minutes=k), "sensor_1", 20.0 + k) for k in range(3)]
            statement = await conn.prepare(
                "SELECT device_id, count(*) AS n, max(value) AS top FROM readings "
                "WHERE time >= $1 AND value > $2 GROUP BY device_id ORDER BY device_id")
            assert [p.name for p in statement.get_parameters()] == ["timestamptz", "float8"]
            assert [(a.name, a.type.name) for a in statement.get_attributes()] == [
                ("device_id", "text"), ("n", "int8"), ("top", "float8")]
            assert [tuple(r) for r in await statement.fetch(T0 + datetime.timedelta(minutes=5), 25.0)] == [
                ("sensor_1", 4, 29.0), ("sensor_2", 5, 59.0)]
            assert [tuple(r) for r in await statement.fetch(T0, 1000.0)] == [("sensor_3", 1, 1013.25)]
            assert await conn.fetchval("SELECT avg(value) FROM readings WHERE metric = $1", "humidity") == 54.5
            with pytest.raises(asyncpg.exceptions.UndefinedTableError):
                await conn.fetch("SELECT * FROM nowhere")
            assert await conn.fetchval("SELECT count(*) FROM devices") == 3
        finally:
            await conn.close()

    asyncio.run(run())


# ---------------------------------------------------------------- SQLAlchemy + pandas

@pytest.mark.parametrize("driver", ["psycopg2", "psycopg"])
def test_sqlalchemy_and_pandas(port, driver):
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pandas = pytest.importorskip("pandas")
    engine = sqlalchemy.create_engine(f"postgresql+{driver}://minitrue@127.0.0.1:{port}/minitrue")
    try:
        with engine.connect() as conn:
            frame = pandas.read_sql(
                sqlalchemy.text("SELECT time, value FROM readings WHERE device_id = :device ORDER BY time"),
                conn, params={"device": "sensor_2"})
            assert list(frame["value"]) == [50.0 + k for k in range(MINUTES)]
            assert frame["time"].iloc[3] == pandas.Timestamp(T0 + datetime.timedelta(minutes=3))
            hourly = pandas.read_sql(
                "SELECT device_id, time_bucket('1 hour', time) AS hour, avg(value) AS mean FROM readings "
                "GROUP BY 1, 2 ORDER BY 1", conn)
            assert hourly.set_index("device_id")["mean"].to_dict() == {
                "sensor_1": 24.5, "sensor_2": 54.5, "sensor_3": 1013.25}
            inspector = sqlalchemy.inspect(conn)
            assert {"readings", "devices"} <= set(inspector.get_table_names())
            if driver == "psycopg2":
                assert_reflected_columns(inspector)
    finally:
        engine.dispose()


def assert_reflected_columns(inspector):
    columns = {c["name"]: type(c["type"]).__name__ for c in inspector.get_columns("readings")}
    assert columns == {"time": "TIMESTAMP", "device_id": "TEXT", "metric": "TEXT",
                       "value": "DOUBLE_PRECISION"}, columns


def test_sqlalchemy_psycopg3_column_reflection(port):
    """Its reflection query binds parameters inside projection subqueries (the
    `json_build_object(%(json_build_object_2)s, …)` one), beside typed ones after them."""
    sqlalchemy = pytest.importorskip("sqlalchemy")
    pytest.importorskip("psycopg")
    engine = sqlalchemy.create_engine(f"postgresql+psycopg://minitrue@127.0.0.1:{port}/minitrue")
    try:
        with engine.connect() as conn:
            assert_reflected_columns(sqlalchemy.inspect(conn))
    finally:
        engine.dispose()


def test_parameters_inside_projection_subqueries(port):
    """A bound value inside a subquery of the select list is used, and the values after it
    keep their own types."""
    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="minitrue", dbname="minitrue", autocommit=True) as conn:
        row = conn.execute("SELECT (SELECT %s::VARCHAR), %s::SMALLINT", ("a", 7)).fetchone()
        assert row == ("a", 7)
        row = conn.execute("SELECT (SELECT %s::SMALLINT) AS s, %s::VARCHAR", (3, "b")).fetchone()
        assert row == (3, "b")
        count = conn.execute(
            "SELECT (SELECT count(*) FROM readings WHERE device_id = %s) AS n, %s::INTEGER + 1",
            ("sensor_1", 41)).fetchone()
        assert count == (MINUTES, 42), count


# ---------------------------------------------------------------- CancelRequest

# Counts a hundred billion generated rows: minutes of work unless cancelled.
ENDLESS = "SELECT count(*) FROM generate_series(1, 100000000000) AS t(x) WHERE x % 7 = 3"


def test_psycopg_cancel_stops_a_running_query_and_the_connection_goes_on(port):
    import threading
    import time

    import psycopg

    with psycopg.connect(host="127.0.0.1", port=port, user="minitrue", dbname="minitrue", autocommit=True) as conn:
        timer = threading.Timer(1.0, conn.cancel)
        timer.start()
        started = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as raised:
            conn.execute(ENDLESS).fetchall()
        timer.join()
        assert time.monotonic() - started < 20
        assert raised.value.sqlstate == "57014"
        assert "canceling statement due to user request" in str(raised.value)
        # The same connection runs the next statement, and a late cancel does not hit it.
        conn.cancel()
        assert conn.execute("SELECT 41 + 1").fetchone()[0] == 42


def test_asyncpg_timeout_cancels_on_the_server(port):
    import time

    import asyncpg

    async def run():
        conn = await asyncpg.connect(host="127.0.0.1", port=port, user="minitrue", database="minitrue")
        try:
            started = time.monotonic()
            # asyncpg cancels the statement (a CancelRequest) when the timeout expires.
            with pytest.raises(asyncio.TimeoutError):
                await conn.fetchval(ENDLESS, timeout=1.0)
            assert time.monotonic() - started < 20
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()

    asyncio.run(run())


def test_psql_ctrl_c_cancels_the_query(port):
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(["psql", "-X", "-h", "127.0.0.1", "-p", str(port), "-U", "minitrue", "-d", "minitrue", "-c", ENDLESS],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert "Cancel request sent" in err, err
    assert "canceling statement due to user request" in err, err
