"""Arrow Flight SQL and plain Flight against a real node: ADBC (`adbc-driver-flightsql`) and
`pyarrow.flight` clients run queries, prepared statements, metadata calls, bulk writes, a bad
statement and a cancelled stream. Points go in over HTTP (or Flight itself); expected values are
computed here from those points and checked against psql's where both speak."""
import json
import math
import os
import time

import adbc_driver_flightsql.dbapi as flight_sql
import adbc_driver_manager
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from mqttnode import S1, S2, T0, sample_node


@pytest.fixture(scope="module")
def n(tmp_path_factory):
    with sample_node(tmp_path_factory.mktemp("flight")) as n:
        yield n


@pytest.fixture
def client(n):
    with flight.connect(f"grpc://127.0.0.1:{n.ports['flight']}") as c:
        yield c


@pytest.fixture
def adbc(n):
    with flight_sql.connect(f"grpc://127.0.0.1:{n.ports['flight']}", autocommit=True) as conn:
        yield conn


def readings_table(rows):
    """An Arrow table in readings' shape from (time s, device, metric, value) tuples."""
    return pa.table({
        "time": pa.array([t * 1_000_000_000 for t, _, _, _ in rows], pa.timestamp("ns", "UTC")),
        "device_id": [d for _, d, _, _ in rows],
        "metric": [m for _, _, m, _ in rows],
        "value": pa.array([v for _, _, _, v in rows], pa.float64()),
    })


def put(client, table, max_chunksize=None):
    """DoPut of `table` to the path `readings`; the node's acknowledgement, parsed."""
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("readings"), table.schema)
    writer.write_table(table, max_chunksize=max_chunksize)
    writer.done_writing()
    ack = reader.read()
    writer.close()  # raises the node's error, if the call failed
    return json.loads(ack.to_pybytes())


def test_plain_flight_ticket_is_just_sql(client):
    # The three-line script the README promises.
    table = client.do_get(flight.Ticket(b"SELECT time, value FROM readings WHERE device_id = 'sensor_1' ORDER BY time")).read_all()
    assert table.num_rows == len(S1)
    assert table.schema.field("time").type == pa.timestamp("ns", "UTC")
    assert [t.value // 1_000_000_000 for t in table.column("time")] == [t for t, _ in S1]
    assert table.column("value").to_pylist() == [v for _, v in S1]


def test_plain_flight_info_for_a_sql_command(client):
    info = client.get_flight_info(flight.FlightDescriptor.for_command("SELECT device_id, count(*) AS n FROM readings GROUP BY device_id ORDER BY device_id"))
    assert [f.name for f in info.schema] == ["device_id", "n"]
    table = client.do_get(info.endpoints[0].ticket).read_all()
    assert table.to_pydict() == {"device_id": ["sensor_1", "sensor_2"], "n": [len(S1), len(S2)]}


def test_adbc_query_matches_psql_and_exact_sums(n, adbc):
    with adbc.cursor() as cur:
        cur.execute("SELECT device_id, avg(value) AS mean, sum(value) AS total, count(*) AS n FROM readings GROUP BY device_id ORDER BY device_id")
        table = cur.fetch_arrow_table()
    rows = table.to_pylist()
    values = [v for _, v in S1]
    assert rows[0]["device_id"] == "sensor_1" and rows[0]["n"] == len(S1)
    assert rows[0]["mean"] == pytest.approx(math.fsum(values) / len(values), rel=1e-15)
    # 1e300 - 4.5 - 1e300 + 2 is -2.5 only when summed exactly.
    assert rows[1]["total"] == -2.5
    psql_rows = n.sql("SELECT device_id, count(*) FROM readings GROUP BY device_id ORDER BY device_id")
    assert [[r["device_id"], str(r["n"])] for r in rows] == psql_rows


def test_adbc_to_pandas_and_polars(adbc):
    import polars as pl
    with adbc.cursor() as cur:
        cur.execute("SELECT time, value FROM readings WHERE device_id = 'sensor_1' ORDER BY time")
        frame = cur.fetch_df()
    assert len(frame) == len(S1) and str(frame["time"].dt.tz) == "UTC"
    with adbc.cursor() as cur:
        cur.execute("SELECT time, value FROM readings WHERE device_id = 'sensor_1' ORDER BY time")
        polars_frame = pl.from_arrow(cur.fetch_arrow_table())
    assert polars_frame["value"].to_list() == [v for _, v in S1]


def test_adbc_prepared_statement_with_parameters(adbc):
    sql = "SELECT count(*) AS n, max(value) AS top FROM readings WHERE device_id = $1 AND time >= $2"
    since = pa.scalar(T0 + 60 * 100, pa.timestamp("s", "UTC"))
    with adbc.cursor() as cur:
        cur.execute(sql, parameters=("sensor_1", since.as_py()))
        first = cur.fetch_arrow_table().to_pylist()
        cur.execute(sql, parameters=("sensor_2", since.as_py()))
        second = cur.fetch_arrow_table().to_pylist()
    late = [v for t, v in S1 if t >= T0 + 60 * 100]
    assert first == [{"n": len(late), "top": max(late)}]
    assert second == [{"n": 0, "top": None}]


def test_adbc_metadata_calls(adbc):
    info = adbc.adbc_get_info()
    assert info["vendor_name"] == "MiniTrue"
    assert "table" in [t.lower() for t in adbc.adbc_get_table_types()]
    schema = adbc.adbc_get_table_schema("readings")
    assert schema.names == ["time", "device_id", "metric", "value"]
    assert schema.field("time").type == pa.timestamp("ns", "UTC")
    assert schema.field("value").type == pa.float64()
    objects = adbc.adbc_get_objects(depth="columns").read_all().to_pylist()
    catalogs = {c["catalog_name"]: c for c in objects}
    assert "minitrue" in catalogs
    schemas = {s["db_schema_name"]: s for s in catalogs["minitrue"]["catalog_db_schemas"]}
    assert {"public", "system"} <= set(schemas)
    tables = {t["table_name"]: t for t in schemas["public"]["db_schema_tables"]}
    assert {"readings", "devices"} <= set(tables)
    assert [c["column_name"] for c in tables["readings"]["table_columns"]] == ["time", "device_id", "metric", "value"]
    system_tables = {t["table_name"] for t in schemas["system"]["db_schema_tables"]}
    assert {"files", "series", "storage", "metrics"} <= system_tables


def test_do_put_round_trip(n, client):
    rows = [(T0 + i, "bulk_1", "pressure", 1000.0 + i / 8) for i in range(5000)]
    rows += [(T0 + i, "bulk_2", "pressure", -float(i)) for i in range(0, 5000, 5)]
    table = readings_table(rows)
    assert put(client, table, max_chunksize=1500) == {"rows_written": len(rows)}
    back = client.do_get(flight.Ticket(b"SELECT time, device_id, metric, value FROM readings WHERE device_id LIKE 'bulk_%' ORDER BY device_id, time")).read_all()
    assert back.to_pylist() == readings_table(sorted(rows, key=lambda r: (r[1], r[0]))).to_pylist()
    assert n.scalar("SELECT count(*) FROM readings WHERE metric = 'pressure'") == str(len(rows))


def test_adbc_ingest_appends_to_readings(adbc):
    import pandas as pd
    frame = pd.DataFrame({
        "time": pd.date_range("2026-01-02", periods=1000, freq="s", tz="UTC"),
        "device_id": "ingest_1",
        "metric": "humidity",
        "value": [40.0 + (i % 10) for i in range(1000)],
    })
    with adbc.cursor() as cur:
        written = cur.adbc_ingest("readings", pa.Table.from_pandas(frame, preserve_index=False), mode="append")
        assert written == 1000
        cur.execute("SELECT count(*) AS n, sum(value) AS total FROM readings WHERE device_id = 'ingest_1'")
        assert cur.fetch_arrow_table().to_pylist() == [{"n": 1000, "total": float(frame["value"].sum())}]
        with pytest.raises(adbc_driver_manager.Error, match="cannot be replaced|append"):
            cur.adbc_ingest("readings", pa.Table.from_pandas(frame, preserve_index=False), mode="replace")


def test_bad_writes_are_refused_with_the_reason(client):
    wrong = pa.table({"time": pa.array([0], pa.timestamp("s")), "device_id": ["x"], "value": [1.0]})
    with pytest.raises(pa.ArrowInvalid, match="no metric column"):
        put(client, wrong)
    nulls = pa.table({
        "time": pa.array([T0, T0 + 1], pa.timestamp("s", "UTC")),
        "device_id": ["null_1", "null_1"],
        "metric": ["m", "m"],
        "value": pa.array([1.0, None], pa.float64()),
    })
    with pytest.raises(pa.ArrowInvalid, match="value is NULL"):
        put(client, nulls)
    other = client.do_get(flight.Ticket(b"SELECT count(*) AS n FROM readings WHERE device_id = 'null_1'")).read_all()
    assert other.to_pylist() == [{"n": 0}]


def test_bad_sql_is_a_clear_error_and_the_connection_goes_on(client, adbc, n):
    errors_before = n.metric("minitrue_flight_call_errors_total", door="flight")
    with pytest.raises(pa.ArrowInvalid, match="(?i)no_such_table|not found"):
        client.do_get(flight.Ticket(b"SELECT * FROM no_such_table")).read_all()
    with pytest.raises(pa.ArrowInvalid, match="(?i)syntax|expected"):
        client.do_get(flight.Ticket(b"SELEKT 1")).read_all()
    with adbc.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="(?i)no_such_column"):
            cur.execute("SELECT no_such_column FROM readings")
        cur.execute("SELECT 41 + 1 AS answer")
        assert cur.fetch_arrow_table().to_pylist() == [{"answer": 42}]
    assert n.metric("minitrue_flight_call_errors_total", door="flight") >= errors_before + 3
    assert n.metric("minitrue_flight_calls_total", door="flight") > 0


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_bytes(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def test_a_cancelled_stream_stops_the_query(n, client):
    reader = client.do_get(flight.Ticket(b"SELECT x FROM generate_series(1, 100000000000) AS t(x)"))
    reader.read_chunk()
    reader.cancel()
    time.sleep(1)
    before = cpu_seconds(n.proc.pid)
    time.sleep(2)
    # A query still running would keep a core busy (2 s of CPU); an idle node uses almost none.
    assert cpu_seconds(n.proc.pid) - before < 0.5
    assert client.do_get(flight.Ticket(b"SELECT 1 AS one")).read_all().to_pylist() == [{"one": 1}]


def test_a_large_result_streams_in_bounded_memory(n, client):
    """A slow reader of a result far larger than memory allows: the node produces batches only
    as fast as gRPC sends them, so its memory stays flat instead of buffering the result."""
    rows = 200_000_000  # 200 M rows × 16 bytes = 3.2 GB if the node buffered them
    reader = client.do_get(flight.Ticket(f"SELECT x, x * 2 AS y FROM generate_series(1, {rows}) AS t(x)".encode()))
    reader.read_chunk()
    baseline = rss_bytes(n.proc.pid)
    read = 0
    for _ in range(20):
        chunk = reader.read_chunk()
        read += chunk.data.num_rows
        time.sleep(0.1)
    grown = rss_bytes(n.proc.pid) - baseline
    reader.cancel()
    assert read > 0
    assert grown < 256 << 20, f"the node grew by {grown >> 20} MiB while the client read {read} rows"
