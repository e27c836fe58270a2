"""B6 client: streams one SELECT to Python through every door and times it.

Input (stdin, JSON): {"pg_port", "flight_port", "parquet", "sql", "rounds"}
Output (stdout, JSON): {"results": [{"door", "rows", "arrow_bytes", "seconds": [...]}], "versions"}

Each door's result is fully materialised in Python: an Arrow table for Flight and DuckDB, one
Python tuple per row for psycopg (what `fetchall` users get). The row counts must agree.
"""
import json
import sys
import time

import adbc_driver_flightsql
import adbc_driver_flightsql.dbapi as flight_sql
import duckdb
import psycopg
import pyarrow as pa
import pyarrow.flight as flight


def main():
    spec = json.load(sys.stdin)
    sql, rounds = spec["sql"], spec["rounds"]
    adbc = flight_sql.connect(f"grpc://127.0.0.1:{spec['flight_port']}", autocommit=True)
    plain = flight.connect(f"grpc://127.0.0.1:{spec['flight_port']}")
    pg = psycopg.connect(f"host=127.0.0.1 port={spec['pg_port']} user=minitrue dbname=minitrue", autocommit=True)
    duck = duckdb.connect()
    duck.execute(f"CREATE VIEW readings AS SELECT * FROM read_parquet('{spec['parquet']}')")

    def adbc_run():
        with adbc.cursor() as cur:
            cur.execute(sql)
            table = cur.fetch_arrow_table()
        return table.num_rows, table.nbytes

    def plain_run():
        table = plain.do_get(flight.Ticket(sql.encode())).read_all()
        return table.num_rows, table.nbytes

    def pg_run():
        with pg.cursor() as cur:
            cur.execute(sql)
            return len(cur.fetchall()), None

    def duck_run():
        table = duck.execute(sql).fetch_arrow_table()
        return table.num_rows, table.nbytes

    doors = [
        ("Flight SQL → pyarrow (ADBC)", adbc_run, rounds),
        ("plain Flight DoGet → pyarrow", plain_run, rounds),
        # One round: row-by-row decoding into Python objects is slow; its best is its only.
        ("pgwire → psycopg 3", pg_run, 1),
        ("DuckDB → pyarrow (reference)", duck_run, rounds),
    ]
    results, arrow_bytes = [], None
    for door, run, n in doors:
        run()  # warm-up (connections, caches)
        seconds, rows = [], None
        for _ in range(n):
            started = time.perf_counter()
            rows, size = run()
            seconds.append(time.perf_counter() - started)
            arrow_bytes = arrow_bytes or size
        results.append({"door": door, "rows": rows, "seconds": seconds, "arrow_bytes": 0})
    for result in results:
        result["arrow_bytes"] = arrow_bytes
    counts = {r["rows"] for r in results}
    assert len(counts) == 1, f"row counts differ: {results}"
    versions = (f"pyarrow {pa.__version__}, adbc-driver-flightsql {adbc_driver_flightsql.__version__}, "
                f"psycopg {psycopg.__version__}, DuckDB {duckdb.__version__}")
    json.dump({"results": results, "versions": versions}, sys.stdout)


if __name__ == "__main__":
    main()
