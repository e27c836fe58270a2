"""The web UI's login and cross-origin requests in a real browser: runs
`frontend/e2e/security.test.mjs` (playwright-core driving Debian's Chromium) against a node with
a user and an open node, with a page served from another origin. The open node's data must
survive the other page's DELETE, which the node refuses (403) before it runs."""
import functools
import http.server
import json
import os
import pathlib
import shutil
import subprocess
import sys
import threading
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import pgnode  # noqa: E402
from mqttnode import node  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/minitrue-target"))
USER, PASSWORD = "ui-admin", "ui-pass-1"


def test_login_and_cross_origin_requests_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/test.sh installs it)"
    secured_dir = tmp_path / "secured"
    subprocess.run([pgnode.MINITRUE_BIN, "user", "add", USER, "--role", "admin", "--data-dir", str(secured_dir / "data")],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True)
    other = tmp_path / "other-site"
    other.mkdir()
    (other / "index.html").write_text("<!doctype html><title>another site</title><p>another site</p>")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(other))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with node(secured_dir) as secured, node(tmp_path / "open") as open_node:
            line = b"temperature,device_id=ui-victim value=1 1772618400"
            status, _ = open_node.http("POST", "/api/v2/write?precision=s", line)
            assert status == 204
            refused_before = open_node.metric("minitrue_http_queries_total", door="http")
            env = {
                **os.environ,
                "SECURED_URL": f"http://127.0.0.1:{secured.ports['http']}",
                "UI_USER": USER,
                "UI_PASSWORD": PASSWORD,
                "OPEN_URL": f"http://127.0.0.1:{open_node.ports['http']}",
                "OTHER_ORIGIN": f"http://127.0.0.1:{server.server_address[1]}/",
                "ARTIFACTS": str(TARGET / "ui-artifacts"),
                "CHROMIUM": chromium,
            }
            run = subprocess.run(["node", "--test", "--test-reporter=spec", "e2e/security.test.mjs"],
                                 cwd=FRONTEND, env=env, capture_output=True, text=True, timeout=300)
            print(run.stdout[-6000:], run.stderr[-3000:])
            assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
            rows = open_node.sql("SELECT count(*) FROM readings WHERE device_id = 'ui-victim'")
            assert rows == [["1"]], "the other page's DELETE did not run"
            # The refused requests never reached SQL.
            assert open_node.metric("minitrue_http_queries_total", door="http") == refused_before
    finally:
        server.shutdown()
