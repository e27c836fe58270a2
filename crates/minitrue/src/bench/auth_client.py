"""B5 (b) auth client: query (b) over one kept connection, and connection setup, on an open
plaintext door and on a door requiring TLS and SCRAM, alternating between the two so that
drift on the machine hits both alike. Prints milliseconds as JSON.

Input (stdin, JSON): {"plain": dsn, "secured": dsn, "password", "sql", "iterations",
"connections", "warmup"}
Output (stdout, JSON): {"query_plain_ms", "query_secured_ms", "connect_plain_ms",
"connect_secured_ms", "rows", "tls", "versions"}
"""
import json
import socket
import ssl
import struct
import sys
import time

import psycopg


def connect(dsn, password=None):
    return psycopg.connect(dsn, password=password, autocommit=True)


def negotiated_tls(dsn):
    """The TLS version and cipher the door agrees on with this machine's OpenSSL (the library
    libpq uses too): an SSLRequest, then a handshake."""
    fields = dict(part.split("=", 1) for part in dsn.split())
    context = ssl.create_default_context(cafile=fields["sslrootcert"])
    with socket.create_connection((fields["host"], int(fields["port"])), timeout=30) as raw:
        raw.sendall(struct.pack("!ii", 8, 80877103))
        assert raw.recv(1) == b"S", "the door did not accept TLS"
        with context.wrap_socket(raw, server_hostname=fields["host"]) as tls:
            return f"{tls.version()} {tls.cipher()[0]}"


def main():
    spec = json.load(sys.stdin)
    doors = {"plain": (spec["plain"], None), "secured": (spec["secured"], spec["password"])}
    kept = {name: connect(dsn, password) for name, (dsn, password) in doors.items()}
    assert kept["secured"].info.pgconn.ssl_in_use, "the secured door must be over TLS"
    tls = negotiated_tls(spec["secured"])

    def query(name):
        with kept[name].cursor() as cursor:
            cursor.execute(spec["sql"])
            return len(cursor.fetchall())

    for _ in range(spec["warmup"]):
        for name in doors:
            query(name)
    query_ms = {name: [] for name in doors}
    rows = {}
    for _ in range(spec["iterations"]):
        for name in doors:
            start = time.perf_counter()
            rows[name] = query(name)
            query_ms[name].append((time.perf_counter() - start) * 1000.0)
    assert rows["plain"] == rows["secured"], rows

    connect_ms = {name: [] for name in doors}
    for _ in range(spec["connections"]):
        for name, (dsn, password) in doors.items():
            start = time.perf_counter()
            connect(dsn, password).close()
            connect_ms[name].append((time.perf_counter() - start) * 1000.0)
    for connection in kept.values():
        connection.close()
    json.dump({
        "query_plain_ms": query_ms["plain"],
        "query_secured_ms": query_ms["secured"],
        "connect_plain_ms": connect_ms["plain"],
        "connect_secured_ms": connect_ms["secured"],
        "rows": rows["plain"],
        "tls": tls,
        "versions": f"psycopg {psycopg.__version__}, libpq {psycopg.pq.version()}, {ssl.OPENSSL_VERSION}",
    }, sys.stdout)


if __name__ == "__main__":
    main()
