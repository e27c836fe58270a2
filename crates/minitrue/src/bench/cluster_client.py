"""B7 client: runs each query over pgwire (psycopg 3) against one node holding all the data and
against node1 of a 3-node cluster, in one process; counts the bytes node1 received from its
peers; checks both answered the same rows. Prints the results as JSON.

Input (stdin, JSON): {"single": port, "cluster": port, "metrics": node1's /metrics URL,
"active": {port: nodes, ...} (waited for before timing), "warmup": n, "queries": [{"name",
"sql", "iterations"}]}. Runs against the two alternate, so both see the same machine.
Output (stdout, JSON): {"waited_s", "queries": [{"name", "single_ms": [...], "cluster_ms":
[...], "rows", "same", "bytes_per_query", "fragments_per_query"}]}
"""
import json
import math
import sys
import time
import urllib.request

import psycopg


def connect(port):
    return psycopg.connect(f"host=127.0.0.1 port={port} user=minitrue dbname=minitrue", autocommit=True)


def metric(url, name):
    with urllib.request.urlopen(url, timeout=30) as response:
        for line in response.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def run(connection, sql):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchall()


def timed_pair(first, second, sql, iterations, warmup):
    """Milliseconds of each run of `sql` on `first` and on `second`, alternating which goes
    first; and the rows each answered."""
    for _ in range(warmup):
        run(first, sql)
        run(second, sql)
    samples, rows = ([], []), [None, None]
    for i in range(iterations):
        for side in ((0, 1) if i % 2 == 0 else (1, 0)):
            start = time.perf_counter()
            rows[side] = run((first, second)[side], sql)
            samples[side].append((time.perf_counter() - start) * 1000.0)
    return samples[0], rows[0], samples[1], rows[1]


def same_value(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def same_rows(a, b):
    key = lambda row: tuple(str(v) if not isinstance(v, float) else "" for v in row)
    a, b = sorted(a, key=key), sorted(b, key=key)
    return len(a) == len(b) and all(
        len(x) == len(y) and all(same_value(u, v) for u, v in zip(x, y)) for x, y in zip(a, b)
    )


def main():
    spec = json.load(sys.stdin)
    single, cluster = connect(spec["single"]), connect(spec["cluster"])
    started = time.time()
    for port, nodes in spec["active"].items():
        with connect(int(port)) as connection:
            while True:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM system.nodes WHERE alive AND state = 'active'")
                    if cursor.fetchone()[0] == nodes:
                        break
                if time.time() - started > 1800:
                    sys.exit(f"the nodes behind port {port} did not turn active within 30 minutes")
                time.sleep(0.5)
    waited = time.time() - started
    out = []
    for query in spec["queries"]:
        warmup = spec["warmup"] if query["iterations"] > 3 else 1
        before = metric(spec["metrics"], "minitrue_cluster_fragment_bytes_received_total")
        fragments = metric(spec["metrics"], "minitrue_cluster_fragments_sent_total")
        single_ms, single_rows, cluster_ms, cluster_rows = timed_pair(
            single, cluster, query["sql"], query["iterations"], warmup)
        runs = warmup + query["iterations"]
        received = metric(spec["metrics"], "minitrue_cluster_fragment_bytes_received_total") - before
        fragments = metric(spec["metrics"], "minitrue_cluster_fragments_sent_total") - fragments
        out.append({
            "name": query["name"],
            "single_ms": single_ms,
            "cluster_ms": cluster_ms,
            "rows": len(cluster_rows),
            "same": same_rows(single_rows, cluster_rows),
            "bytes_per_query": received / runs,
            "fragments_per_query": fragments / runs,
        })
    json.dump({"waited_s": waited, "queries": out}, sys.stdout)


if __name__ == "__main__":
    main()
