"""Queries over HTTP against a real node: the seed's `POST /query` and `POST /api/v1/sql`
(JSON, CSV and Arrow IPC answers). Points go in through `POST /api/v1/write`; every expected
value is computed here from those points, and SQL answers are checked against psql's."""
import csv
import io
import json
import math
import statistics

import pyarrow as pa
import pyarrow.ipc
import pytest

from mqttnode import S1, S2, T0, node, sample_node

@pytest.fixture(scope="module")
def n(tmp_path_factory):
    with sample_node(tmp_path_factory.mktemp("http-query")) as n:
        yield n


def query(n, **request):
    status, body = n.http("POST", "/query", json.dumps(request).encode(), {"Content-Type": "application/json"})
    return status, json.loads(body)


def sql(n, text, fmt=None, accept=None, as_json_body=False):
    path = "/api/v1/sql" + (f"?format={fmt}" if fmt else "")
    headers = {"Accept": accept} if accept else {}
    if as_json_body:
        headers["Content-Type"] = "application/json"
        body = json.dumps({"sql": text}).encode()
    else:
        headers["Content-Type"] = "text/plain"
        body = text.encode()
    return n.http("POST", path, body, headers)


@pytest.mark.parametrize("operation,expected", [
    ("avg", lambda vs: math.fsum(vs) / len(vs)),
    ("sum", math.fsum),
    ("min", min),
    ("max", max),
    ("count", len),
])
def test_query_every_operation_over_all_time(n, operation, expected):
    status, answer = query(n, device_id="sensor_1", metric_name="temperature", operation=operation, start_time=0, end_time=0)
    assert status == 200, answer
    values = [v for _, v in S1]
    assert answer["device_id"] == "sensor_1"
    assert answer["metric_name"] == "temperature"
    assert answer["operation"] == operation
    assert answer["count"] == len(values)
    assert answer["result"] == pytest.approx(expected(values), rel=1e-15)
    assert isinstance(answer["duration_ns"], int) and answer["duration_ns"] > 0


def test_query_time_range_is_inclusive_and_takes_seconds_or_milliseconds(n):
    start, end = T0 + 60 * 10, T0 + 60 * 19
    inside = [v for t, v in S1 if start <= t <= end]
    assert len(inside) == 10
    for scale in (1, 1000):
        status, answer = query(n, device_id="sensor_1", metric_name="temperature", operation="max",
                               start_time=start * scale, end_time=end * scale)
        assert status == 200, answer
        assert answer["count"] == 10 and answer["result"] == max(inside)
    # Only a start: everything from there to now.
    status, answer = query(n, device_id="sensor_1", metric_name="temperature", operation="count", start_time=T0 + 60 * 100)
    assert answer["count"] == 20 and answer["result"] == 20


def test_query_exact_sum_where_floats_cancel(n):
    # 1e300 + -4.5 + -1e300 + 2.0 is -2.5 exactly; adding in order in f64 gives 0.0 or 2.0.
    status, answer = query(n, device_id="sensor_2", metric_name="temperature", operation="sum", start_time=0, end_time=0)
    assert status == 200 and answer["result"] == -2.5 and answer["count"] == 4


def test_query_with_no_points_answers_null_and_zero(n):
    status, answer = query(n, device_id="nobody", metric_name="temperature", operation="avg", start_time=0, end_time=0)
    assert status == 200
    assert answer["result"] is None and answer["count"] == 0


def test_query_bad_requests_get_clear_errors_and_are_counted(n):
    before = n.metric("minitrue_http_query_errors_total", door="http")
    status, answer = query(n, device_id="sensor_1", metric_name="temperature", operation="median")
    assert status == 400 and "median" in answer["message"] and "avg, sum, min, max, count" in answer["message"]
    status, answer = query(n, metric_name="temperature", operation="avg")
    assert status == 400 and "device_id" in answer["message"]
    status, body = n.http("POST", "/query", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and b"request body" in body
    # A quote in a name is a value, not SQL.
    status, answer = query(n, device_id="x' OR '1'='1", metric_name="temperature", operation="count")
    assert status == 200 and answer["count"] == 0
    assert n.metric("minitrue_http_query_errors_total", door="http") == before + 3


SQL = ("SELECT device_id, time, value FROM readings WHERE metric = 'temperature' "
       "AND time < to_timestamp({}) ORDER BY device_id, time").format(T0 + 60 * 3)
EXPECTED = sorted([("sensor_1", t, v) for t, v in S1 if t < T0 + 180] + [("sensor_2", t, v) for t, v in S2 if t < T0 + 180])


def rfc3339(t):
    import datetime
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def test_sql_json_has_columns_with_postgres_types_and_rows_as_arrays(n):
    for as_json_body in (False, True):
        status, body = sql(n, SQL, as_json_body=as_json_body)
        assert status == 200, body
        answer = json.loads(body)
        assert answer["columns"] == [
            {"name": "device_id", "type": "text"},
            {"name": "time", "type": "timestamptz"},
            {"name": "value", "type": "float8"},
        ]
        assert answer["rows"] == [[d, rfc3339(t), v] for d, t, v in EXPECTED]
        assert answer["row_count"] == len(EXPECTED)
        assert answer["duration_ns"] > 0
        assert "error" not in answer


def test_sql_csv_and_arrow_carry_the_same_rows(n):
    for kwargs in ({"fmt": "csv"}, {"accept": "text/csv"}):
        status, body = sql(n, SQL, **kwargs)
        assert status == 200, body
        rows = list(csv.reader(io.StringIO(body.decode())))
        assert rows[0] == ["device_id", "time", "value"]
        assert [(d, t, float(v)) for d, t, v in rows[1:]] == [(d, rfc3339(t), v) for d, t, v in EXPECTED]
    for kwargs in ({"fmt": "arrow"}, {"accept": "application/vnd.apache.arrow.stream"}):
        status, body = sql(n, SQL, **kwargs)
        assert status == 200, body
        table = pa.ipc.open_stream(body).read_all()
        assert table.column_names == ["device_id", "time", "value"]
        assert pa.types.is_timestamp(table.schema.field("time").type)
        got = [(d, int(t.timestamp()), v) for d, t, v in zip(*(table.column(i).to_pylist() for i in range(3)))]
        assert got == EXPECTED


def test_sql_aggregates_match_psql(n):
    text = "SELECT device_id, count(*) AS n, avg(value) AS mean FROM readings GROUP BY device_id ORDER BY device_id"
    status, body = sql(n, text)
    assert status == 200, body
    answer = json.loads(body)
    via_psql = n.sql(text)
    assert [[d, str(c), repr(m)] for d, c, m in answer["rows"]] == [[d, c, repr(float(m))] for d, c, m in via_psql]
    s1 = [v for _, v in S1]
    assert answer["rows"][0][1] == len(s1) and answer["rows"][0][2] == pytest.approx(statistics.fmean(s1), rel=1e-15)


def test_sql_insert_goes_through_the_write_path(n):
    status, body = sql(n, f"INSERT INTO readings VALUES (to_timestamp({T0}), 'sensor_9', 'humidity', 55.5)")
    assert status == 200, body
    assert json.loads(body)["rows"] == [[1]]
    status, body = sql(n, "SELECT value FROM readings WHERE device_id = 'sensor_9'")
    assert json.loads(body)["rows"] == [[55.5]]


def test_sql_errors_are_clear_and_the_node_stays_up(n):
    status, body = sql(n, "SELEC 1")
    assert status == 400 and b"SELEC" in body
    status, body = sql(n, "SELECT nope FROM readings")
    assert status == 400 and b"nope" in body
    status, body = sql(n, "CREATE TABLE t (a int)")
    assert status == 403 and b"CREATE TABLE is not allowed" in body
    status, body = sql(n, "SET datafusion.execution.batch_size = 10")
    assert status == 403 and b"shared by every client" in body
    status, body = sql(n, "SET TIME ZONE 'UTC'")
    assert status == 400 and b"not implemented" in body
    status, body = sql(n, "   ")
    assert status == 400 and b"no SQL statement" in body
    status, body = sql(n, "SELECT 1", fmt="xml")
    assert status == 400 and b"json, csv, arrow" in body
    status, body = sql(n, "SELECT 1 AS one")
    assert status == 200 and json.loads(body)["rows"] == [[1]]
    assert n.metric("minitrue_http_queries_total", door="http") >= 8


def test_query_routes_on_an_ingest_only_node_answer_503(tmp_path):
    with node(tmp_path, "--mode", "ingest") as ingest_only:
        status, body = sql(ingest_only, "SELECT 1")
        assert status == 503 and b"ingest mode" in body
