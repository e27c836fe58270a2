"""`/ws/live` against a real node: a flood of writes reaches a WebSocket client thinned to its
`max_rate`, while `matched` still counts every point; filters hold; bad parameters are refused
before the upgrade. The client is a minimal RFC 6455 reader on a plain socket (no extra
package)."""
import base64
import json
import os
import pathlib
import socket
import struct
import threading
import time
import urllib.error
import urllib.request

import pgnode


class LiveClient:
    """Reads the server's JSON text frames from `/ws/live?query`."""

    def __init__(self, address, query):
        host, port = address.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            f"GET /ws/live?{query} HTTP/1.1\r\nHost: {address}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += self.sock.recv(1)
        self.status = int(head.split(b" ")[1])
        self.buffer = b""

    def _read(self, n):
        while len(self.buffer) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError("the node closed the stream")
            self.buffer += chunk
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def message(self):
        first, second = self._read(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read(8))
        payload = self._read(length)
        assert first & 0x0F == 1, f"opcode {first & 0x0F}"  # text, unfragmented
        return json.loads(payload)

    def close(self):
        self.sock.close()


def post(url, body):
    request = urllib.request.Request(url, data=body.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        raise AssertionError(error.read().decode()) from error


def test_a_write_flood_is_thinned_to_max_rate_and_fully_counted(tmp_path):
    with pgnode.running_node(tmp_path, load=False):
        http = json.loads((pathlib.Path(tmp_path) / "ready.json").read_text())["http"]
        flood = LiveClient(http, "max_rate=100")
        only_b = LiveClient(http, "device=dev_b&metric=temperature&max_rate=5000")
        assert flood.status == 101 and only_b.status == 101
        assert flood.message() == {"type": "hello", "interval_ms": 250, "max_rate": 100}
        assert only_b.message()["type"] == "hello"

        batches, per_batch = 20, 10_000
        started = time.monotonic()
        for b in range(batches):
            lines = "\n".join(
                f"temperature,device_id=dev_{'ab'[i % 2]}{i % 500} value={i}.5 {1_700_000_000 + b * per_batch + i}"
                for i in range(per_batch))
            assert post(f"http://{http}/api/v2/write?precision=s", lines) == 204
        # Exactly dev_b's own points, so the filtered client must see none of the others.
        post(f"http://{http}/api/v2/write?precision=s", "temperature,device_id=dev_b value=7 1790000000")

        written = batches * per_batch + 1
        matched = sent = 0
        deadline = time.monotonic() + 30
        while matched < written and time.monotonic() < deadline:
            message = flood.message()
            assert message["type"] == "points" and message["missed_writes"] == 0, message
            matched += message["matched"]
            sent += len(message["points"])
            assert len(message["points"]) <= 25, "at most max_rate / 4 points a tick"
            assert message["dropped"] == message["matched"] - len(message["points"])
        elapsed = time.monotonic() - started
        assert matched == written
        # One tick's worth per 250 ms, plus the tick that was due when the flood began.
        assert sent <= 25 * (elapsed / 0.25 + 2), (sent, elapsed)

        seen = []
        while not any(p[0] == "dev_b" for p in seen):
            seen += only_b.message()["points"]
        assert {p[0] for p in seen} == {"dev_b"} and seen[-1][2] == 1_790_000_000_000, seen[-1]
        flood.close()
        only_b.close()

        # Counted in /metrics.
        with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert "minitrue_live_connections_total 2" in metrics
        dropped = [line for line in metrics.splitlines() if line.startswith("minitrue_live_points_dropped_total")]
        assert dropped and float(dropped[0].split()[-1]) > 0, dropped


def test_bad_parameters_are_refused_before_the_upgrade(tmp_path):
    with pgnode.running_node(tmp_path, load=False):
        http = json.loads((pathlib.Path(tmp_path) / "ready.json").read_text())["http"]
        for query in ["max_rate=0", "max_rate=5001", "max_rate=lots"]:
            client = LiveClient(http, query)
            assert client.status == 400, (query, client.status)
            client.close()
        # A plain GET (no upgrade) is not a WebSocket.
        try:
            urllib.request.urlopen(f"http://{http}/ws/live", timeout=10)
            raise AssertionError("a plain GET was accepted")
        except urllib.error.HTTPError as error:
            assert error.code in (400, 426), error.code
