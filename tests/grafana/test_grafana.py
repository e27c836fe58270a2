"""Grafana's PostgreSQL data source against a real node, through the Go drivers Grafana ships
(pgx for Grafana >= 12.4, lib/pq before), built from Debian packages (scripts/test.sh installs
golang-go, golang-github-jackc-pgx-v4-dev and golang-github-lib-pq-dev).

The SQL is Grafana's (grafana/grafana):
- the config page's probes and the query builder's listings are the strings of
  public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts;
- panel SQL is what pkg/tsdb/grafana-postgresql-datasource/macros.go expands the macros to,
  re-stated by `expand_macros` below (same formats: RFC 3339 with nanoseconds in UTC for
  $__timeFilter, `floor(extract(epoch from t)/s)*s` for $__timeGroup, `time_bucket('%.3fs',t)`
  with the TimescaleDB option, integer bounds for $__unixEpochFilter).
"""
import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
import pgnode  # noqa: E402
from pgnode import BASE_EPOCH  # noqa: E402

UTC = datetime.timezone.utc

# --- postgresMetaQuery.ts -------------------------------------------------------------------

VERSION = "SELECT current_setting('server_version_num')::int/100 as version"
TIMESCALEDB = "SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'"
SHOW_SCHEMAS = """SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name"""
SCHEMA_CONSTRAINT = """
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )"""
SHOW_TABLES = f"""SELECT
    CASE WHEN {SCHEMA_CONSTRAINT}
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN {SCHEMA_CONSTRAINT} THEN 0 ELSE 1 END, 1"""


def show_tables_in(schema):
    return f"""SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = '{schema}'
      ORDER BY 1"""


def get_schema(table):
    part = "'" + table.replace("'", "''") + "'"
    return f"""SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident({part}),1) = 2
        THEN quote_ident(table_schema) = (parse_ident({part}))[1]
          AND quote_ident(table_name) = (parse_ident({part}))[2]
        ELSE quote_ident(table_name) = {part}
          AND {SCHEMA_CONSTRAINT}
      END"""


# --- macros.go ------------------------------------------------------------------------------

def rfc3339nano(t):
    """Go's time.RFC3339Nano of a UTC time: fraction without trailing zeros, 'Z'."""
    nanos = t["ns"]
    base = datetime.datetime.fromtimestamp(nanos // 10**9, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    fraction = f"{nanos % 10**9:09d}".rstrip("0")
    return base + ("." + fraction if fraction else "") + "Z"


def go_seconds(seconds):
    """Go's %v of a float64 number of seconds."""
    return str(int(seconds)) if float(seconds).is_integer() else repr(float(seconds))


def parse_interval(text):
    number, unit = re.fullmatch(r"(\d+)([smhd])", text.strip("'")).groups()
    return int(number) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def expand_macros(sql, time_from, time_to, timescaledb=False):
    def evaluate(name, args):
        if name == "__timeFilter":
            return f"{args[0]} BETWEEN '{rfc3339nano(time_from)}' AND '{rfc3339nano(time_to)}'"
        if name == "__timeFrom":
            return f"'{rfc3339nano(time_from)}'"
        if name == "__timeTo":
            return f"'{rfc3339nano(time_to)}'"
        if name == "__timeEpoch":
            return f'extract(epoch from {args[0]}) as "time"'
        if name == "__timeGroup":
            seconds = parse_interval(args[1])
            if timescaledb:
                return f"time_bucket('{seconds:.3f}s',{args[0]})"
            return f"floor(extract(epoch from {args[0]})/{go_seconds(seconds)})*{go_seconds(seconds)}"
        if name == "__timeGroupAlias":
            return evaluate("__timeGroup", args) + ' AS "time"'
        if name == "__unixEpochFilter":
            low, high = time_from["ns"] // 10**9, time_to["ns"] // 10**9
            return f"{args[0]} >= {low} AND {args[0]} <= {high}"
        raise AssertionError(f"macro {name} not restated here")

    return re.sub(r"\$([_a-zA-Z0-9]+)\(([^)]*)\)",
                  lambda m: evaluate(m.group(1), [a.strip() for a in m.group(2).split(",")]), sql)


# --- the client -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def grafana_client(tmp_path_factory):
    go = shutil.which("go")
    assert go, "go is not installed (scripts/test.sh installs golang-go)"
    assert pathlib.Path("/usr/share/gocode/src/github.com/jackc/pgx/v4").is_dir(), \
        "golang-github-jackc-pgx-v4-dev is not installed"
    out = tmp_path_factory.mktemp("grafana-client") / "grafana_client"
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": "/usr/share/gocode",
           "GOCACHE": os.environ.get("GOCACHE", str(pathlib.Path.home() / ".cache/go-build")),
           "GOFLAGS": "", "CGO_ENABLED": "0"}
    built = subprocess.run([go, "build", "-o", str(out), str(HERE / "grafana_client.go")],
                           capture_output=True, text=True, env=env, timeout=600)
    assert built.returncode == 0, built.stderr
    return out


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    with pgnode.running_node(tmp_path_factory.mktemp("grafana")) as port:
        yield port


def run(client, driver, port, queries):
    if driver == "pgx":
        # Grafana's connection string; sslmode=prefer also exercises the SSLRequest refusal.
        dsn = f"user='grafana' password='' host='127.0.0.1' dbname='minitrue' port={port} sslmode='prefer'"
    else:
        dsn = f"user='grafana' password='' host='127.0.0.1' dbname='minitrue' port={port} sslmode='disable'"
    payload = json.dumps([{"name": name, "sql": sql} for name, sql in queries.items()])
    out = subprocess.run([str(client), "-driver", driver, "-dsn", dsn], input=payload,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ns(minutes=0, seconds=0, nanos=0):
    return {"ns": (BASE_EPOCH + 60 * minutes + seconds) * 10**9 + nanos}


def iso(epoch_seconds):
    return datetime.datetime.fromtimestamp(epoch_seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("driver", ["pgx", "pq"])
def test_grafana_data_source(grafana_client, port, driver):
    # Dashboard range: one nanosecond before 00:01 to 00:06:30.
    time_from, time_to = ns(minutes=1, nanos=-1), ns(minutes=6, seconds=30)
    panel = {
        "time_series": "SELECT $__timeGroupAlias(time, 2m), avg(value) AS \"temperature\" FROM readings "
                       "WHERE $__timeFilter(time) AND device_id = 'sensor_1' GROUP BY 1 ORDER BY 1",
        # With fill, Grafana runs the same SQL and fills missing buckets itself.
        "time_series_fill": "SELECT $__timeGroupAlias(time, '2m', 0), device_id AS metric, max(value) AS value "
                            "FROM readings WHERE $__timeFilter(time) GROUP BY 1, 2 ORDER BY 1, 2",
        "unix_epoch": "SELECT ts AS \"time\", value FROM (SELECT CAST(extract(epoch from time) AS BIGINT) AS ts, "
                      "value FROM readings WHERE device_id = 'sensor_2') AS r WHERE $__unixEpochFilter(ts) ORDER BY 1",
        "epoch_and_bounds": "SELECT $__timeEpoch(time), value FROM readings WHERE time >= $__timeFrom() "
                            "AND time <= $__timeTo() AND device_id = 'sensor_1' ORDER BY 1 LIMIT 2",
        "raw_table": "SELECT time, device_id, value FROM readings WHERE $__timeFilter(time) "
                     "AND device_id = 'sensor_2' ORDER BY time",
    }
    queries = {name: expand_macros(sql, time_from, time_to) for name, sql in panel.items()}
    queries["timescaledb"] = expand_macros(
        "SELECT $__timeGroupAlias(time, 2m), avg(value) AS value FROM readings WHERE $__timeFilter(time) "
        "AND device_id = 'sensor_1' GROUP BY 1 ORDER BY 1", time_from, time_to, timescaledb=True)
    assert "time_bucket('120.000s',time) AS \"time\"" in queries["timescaledb"]
    assert "BETWEEN '2024-01-01T00:00:59.999999999Z' AND '2024-01-01T00:06:30Z'" in queries["time_series"]
    queries.update({
        "version": VERSION, "timescaledb_probe": TIMESCALEDB, "schemas": SHOW_SCHEMAS,
        "tables_public": show_tables_in("public"),
        "columns": get_schema("readings"), "columns_qualified": get_schema("public.devices"),
    })

    out = run(grafana_client, driver, port, queries)
    assert out["ping"] == "ok", out["ping"]
    results = out["results"]
    for name, result in results.items():
        assert not result.get("error"), (name, result, queries[name])
        if driver == "pgx":
            # Grafana keeps only results whose command tag is SELECT n.
            assert result["tag"] == f"SELECT {len(result['rows'] or [])}", (name, result)

    # Points k = 1..6 fall in the range; 2-minute buckets start at 00:00, 00:02, 00:04, 00:06.
    buckets = {BASE_EPOCH + 120 * b: [k for k in range(1, 7) if k // 2 == b] for b in range(4)}
    series = results["time_series"]
    assert series["columns"] == ["time", "temperature"]
    assert [row[0] for row in series["rows"]] == [float(t) for t in buckets]
    assert [row[1] for row in series["rows"]] == [sum(20.0 + k for k in ks) / len(ks) for ks in buckets.values()]

    filled = results["time_series_fill"]
    assert filled["columns"] == ["time", "metric", "value"]
    expected = [[float(t), device, start + max(ks)] for t, ks in buckets.items()
                for (device, _), start in sorted(pgnode.SERIES.items())]
    assert filled["rows"] == expected

    epoch = results["unix_epoch"]
    low, high = time_from["ns"] // 10**9, time_to["ns"] // 10**9
    assert epoch["rows"] == [[t, v] for t, device, _, v in pgnode.points()
                             if device == "sensor_2" and low <= t <= high]

    bounds = results["epoch_and_bounds"]
    assert bounds["rows"] == [[float(BASE_EPOCH + 60), 21.0], [float(BASE_EPOCH + 120), 22.0]]

    raw = results["raw_table"]
    assert raw["types"][0].lower() == "timestamptz" and raw["types"][2].lower() == "float8"
    assert raw["rows"] == [[iso(BASE_EPOCH + 60 * k), "sensor_2", 50.0 + k] for k in range(1, 7)]

    bucketed = results["timescaledb"]
    assert [row[0] for row in bucketed["rows"]] == [iso(t) for t in buckets]
    assert [row[1] for row in bucketed["rows"]] == [sum(20.0 + k for k in ks) / len(ks) for ks in buckets.values()]

    # The config page: version 16.x as a number, and no TimescaleDB extension.
    assert results["version"]["rows"] == [[1600]] or results["version"]["rows"] == [["1600"]]
    assert results["timescaledb_probe"]["rows"] in (None, [])
    # The query builder: schemas, tables (search path first, unqualified), columns with types.
    assert results["schemas"]["rows"] == [["public"], ["system"]]
    assert results["tables_public"]["rows"] == [["devices"], ["readings"]]
    assert results["columns"]["rows"] == [["time", "timestamp with time zone"], ["device_id", "text"],
                                          ["metric", "text"], ["value", "double precision"]]
    assert results["columns_qualified"]["rows"] == [
        ["device_id", "text"], ["metric", "text"], ["first_time", "timestamp with time zone"],
        ["last_time", "timestamp with time zone"], ["last_value", "double precision"], ["points", "bigint"], ["tags", "text"]]


@pytest.mark.parametrize("driver", ["pgx"])
def test_grafana_table_listing_on_the_search_path(grafana_client, port, driver):
    results = run(grafana_client, driver, port, {"tables": SHOW_TABLES})["results"]
    assert not results["tables"].get("error"), results["tables"]["error"]
    tables = [row[0] for row in results["tables"]["rows"]]
    assert tables[:2] == ["devices", "readings"], tables
    assert "system.files" in tables[2:] and all(t.startswith("system.") for t in tables[2:]), tables


def test_grafana_drivers_log_in_with_a_password_over_tls(grafana_client, tmp_path):
    """Grafana's data source with a user and password and `sslmode=require` (what the data
    source's TLS/SSL Mode setting sends), against a node with users and TLS."""
    with pgnode.secured_node(tmp_path, "grafana", "reader", "reader-pw") as (port, ca):
        for driver in ("pgx", "pq"):
            dsn = (f"user='grafana' password='reader-pw' host='127.0.0.1' dbname='minitrue' port={port} "
                   f"sslmode='verify-full' sslrootcert='{ca}'")
            payload = json.dumps([{"name": "version", "sql": VERSION}])
            out = subprocess.run([str(grafana_client), "-driver", driver, "-dsn", dsn], input=payload,
                                 capture_output=True, text=True, timeout=120)
            assert out.returncode == 0, (driver, out.stderr)
            assert json.loads(out.stdout)["results"]["version"]["rows"] == [[1600]], out.stdout
            bad = dsn.replace("reader-pw", "wrong")
            out = subprocess.run([str(grafana_client), "-driver", driver, "-dsn", bad], input=payload,
                                 capture_output=True, text=True, timeout=120)
            # pgx fails the connection; lib/pq (lazy) reports it as the query's error.
            assert "password authentication failed" in out.stderr + out.stdout, (driver, out.stdout, out.stderr)
            assert "[[1600]]" not in out.stdout
            plain = dsn.replace("sslmode='verify-full'", "sslmode='disable'")
            out = subprocess.run([str(grafana_client), "-driver", driver, "-dsn", plain], input=payload,
                                 capture_output=True, text=True, timeout=120)
            assert "only TLS" in out.stderr + out.stdout, (driver, out.stdout, out.stderr)
            assert "[[1600]]" not in out.stdout
