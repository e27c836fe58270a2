"""The web UI in a real browser: starts a node with simulated sensors, seeds two series over
HTTP, and runs `frontend/e2e/ui.test.mjs` (playwright-core driving Debian's Chromium; the
test script installs both). Screenshots go to `$CARGO_TARGET_DIR/ui-artifacts`."""
import json
import os
import pathlib
import shutil
import subprocess
import sys
import urllib.request

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "python"))
import pgnode  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]
FRONTEND = REPO / "frontend"
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", pathlib.Path.home() / ".cache/minitrue-target"))
# 2026-03-04 10:00:00 UTC, one point a minute for an hour.
SEED_START = 1772618400


def seed_lines():
    lines = []
    for k in range(60):
        t = SEED_START + 60 * k
        lines.append(f"temperature,device_id=ui-seeded value={20 + 0.25 * k} {t}")
        lines.append(f"temperature,device_id=ui-doomed value={-5 - 0.5 * k} {t}")
    return "\n".join(lines)


def test_web_ui_in_chromium(tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is not installed (scripts/test.sh installs it)"
    assert (FRONTEND / "node_modules" / "playwright-core").exists(), "run `npm ci` in frontend/ first"
    with pgnode.running_node(tmp_path, load=False, extra_args=["--simulate"]) as pg_port:
        url = f"http://{json.loads((tmp_path / 'ready.json').read_text())['http']}"
        # Line protocol: the measurement is the metric, the device_id tag the device.
        request = urllib.request.Request(f"{url}/api/v2/write?precision=s", data=seed_lines().encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
        artifacts = TARGET / "ui-artifacts"
        env = {
            **os.environ,
            "MINITRUE_URL": url,
            "PG_PORT": str(pg_port),
            "ARTIFACTS": str(artifacts),
            "CHROMIUM": chromium,
        }
        run = subprocess.run(
            ["node", "--test", "--test-reporter=spec", "e2e/ui.test.mjs"],
            cwd=FRONTEND, env=env, capture_output=True, text=True, timeout=300,
        )
        print(run.stdout[-6000:], run.stderr[-3000:])
        assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
        for name in ["live", "query-builder", "sql-console", "delete-confirm", "devices", "cluster"]:
            assert (artifacts / f"{name}.png").stat().st_size > 0, name
