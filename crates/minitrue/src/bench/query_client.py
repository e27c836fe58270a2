"""B5 client: runs each query against MiniTrue over pgwire (psycopg 3) and against DuckDB over
the same points in Parquet, in one process, and prints latencies as JSON.

Input (stdin, JSON): {"pg_ports": {"name": port}, "parquet": path, "queries": [{"name",
"minitrue", "duckdb", "iterations", "server"}], "warmup": n}
Output (stdout, JSON): {"queries": [{"name", "minitrue_ms": [...], "duckdb_ms": [...],
"minitrue_rows", "duckdb_rows"}], "duckdb_version": ...}
"""
import json
import sys
import time

import duckdb
import psycopg


def timed(run, iterations, warmup):
    for _ in range(warmup):
        run()
    samples = []
    rows = None
    for _ in range(iterations):
        start = time.perf_counter()
        rows = run()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples, rows


def main():
    spec = json.load(sys.stdin)
    duck = duckdb.connect()
    duck.execute(f"CREATE VIEW readings AS SELECT * FROM read_parquet('{spec['parquet']}')")
    # Warm DuckDB's view of the file (metadata, OS cache) like MiniTrue's open files.
    duck.execute("SELECT count(*) FROM readings").fetchall()
    connections = {
        name: psycopg.connect(f"host=127.0.0.1 port={port} user=minitrue dbname=minitrue", autocommit=True)
        for name, port in spec["pg_ports"].items()
    }
    out = []
    for query in spec["queries"]:
        connection = connections[query["server"]]

        def minitrue():
            with connection.cursor() as cursor:
                cursor.execute(query["minitrue"])
                return len(cursor.fetchall())

        def duck_run():
            return len(duck.execute(query["duckdb"]).fetchall())

        warmup = spec["warmup"] if query["iterations"] > 3 else 1
        minitrue_ms, minitrue_rows = timed(minitrue, query["iterations"], warmup)
        duckdb_ms, duckdb_rows = timed(duck_run, query["iterations"], warmup)
        out.append({
            "name": query["name"],
            "minitrue_ms": minitrue_ms,
            "duckdb_ms": duckdb_ms,
            "minitrue_rows": minitrue_rows,
            "duckdb_rows": duckdb_rows,
        })
    json.dump({"queries": out, "duckdb_version": duckdb.__version__}, sys.stdout)


if __name__ == "__main__":
    main()
