"""A MiniTrue node for Postgres client tests: started on free ports, loaded with known points
through SQL INSERT over psql, stopped with SIGTERM.

The points (all UTC): `sensor_1`/`temperature` = 20.0 + k and `sensor_2`/`humidity` =
50.0 + k at 2024-01-01 00:00 + k minutes, k = 0..9, plus `sensor_3`/`pressure` = 1013.25 at
2024-01-01 00:00:00.123456789 (nanoseconds). Tests compute what they expect from these."""
import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import time

REPO = pathlib.Path(__file__).resolve().parents[2]
MINITRUE_BIN = os.environ.get("MINITRUE_BIN", str(pathlib.Path.home() / ".cache/minitrue-target/debug/minitrue"))

BASE = "2024-01-01 00:00:00+00"
BASE_EPOCH = 1704067200
SERIES = {("sensor_1", "temperature"): 20.0, ("sensor_2", "humidity"): 50.0}
MINUTES = 10


def points():
    """(epoch seconds, device, metric, value) for the minute points."""
    out = []
    for (device, metric), start in SERIES.items():
        for k in range(MINUTES):
            out.append((BASE_EPOCH + 60 * k, device, metric, start + k))
    return out


def insert_sql():
    rows = [f"(to_timestamp({t}), '{d}', '{m}', {v})" for t, d, m, v in points()]
    rows.append("('2024-01-01T00:00:00.123456789Z', 'sensor_3', 'pressure', 1013.25)")
    return "INSERT INTO readings VALUES " + ", ".join(rows)


def wait_until(what, check, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def psql(port, *args, user="minitrue", database="minitrue", check=True):
    """Runs psql with `args` against the node; returns the CompletedProcess."""
    assert shutil.which("psql"), "psql is not installed (scripts/test.sh installs postgresql-client)"
    out = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", database, "-X", "-v", "ON_ERROR_STOP=1", *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, "PGCONNECT_TIMEOUT": "10"},
    )
    if check:
        assert out.returncode == 0, f"psql {args}: {out.stderr}"
    return out


def start_then_stop(args, ready):
    """Runs `args` (a `minitrue serve` command line) with `--ready-file ready` until the node
    is ready, checks it is still running, stops it with SIGTERM, and returns what it printed."""
    ready = pathlib.Path(ready)
    if ready.exists():
        ready.unlink()
    proc = subprocess.Popen([*args, "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_until("the node to be ready", lambda: ready.exists() or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate(timeout=60)[0]
    finally:
        if proc.poll() is None:
            proc.terminate()
    return proc.communicate(timeout=60)[0]


@contextlib.contextmanager
def running_node(data_dir, load=True, extra_args=()):
    """Starts `minitrue serve` on `data_dir` (with `extra_args`, e.g. `--simulate`), yields
    its Postgres port, stops it on exit. The addresses of all doors are in
    `data_dir/ready.json`."""
    data_dir = pathlib.Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    ready = data_dir / "ready.json"
    log = open(data_dir / "node.log", "w")
    node = subprocess.Popen(
        [MINITRUE_BIN, "serve", "--data-dir", str(data_dir / "data"), "--pg-port", "0", "--http-port", "0", "--mqtt-port", "0", "--flight-port", "0", "--gossip-port", "0", "--ready-file", str(ready), *extra_args],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        wait_until("the node to be ready", lambda: ready.exists() or node.poll() is not None)
        assert node.poll() is None, (data_dir / "node.log").read_text()
        port = int(json.loads(ready.read_text())["postgres"].rsplit(":", 1)[1])
        if load:
            out = psql(port, "-Atc", insert_sql())
            assert out.stdout.strip() == f"INSERT 0 {len(points()) + 1}", out.stdout
        yield port
    finally:
        node.send_signal(signal.SIGTERM)
        try:
            node.wait(timeout=60)
        except subprocess.TimeoutExpired:
            node.kill()
            node.wait()
        log.close()
    assert node.returncode == 0, (data_dir / "node.log").read_text()[-4000:]


@contextlib.contextmanager
def secured_node(workdir, user, role, password):
    """A node with one user (`role`, `password`) and --tls-required, its certificate signed
    by a CA made with openssl: yields (Postgres port, CA file)."""
    from certs import make_certificates
    workdir = pathlib.Path(workdir)
    ca, cert, key = make_certificates(workdir / "certs", f"{user}-tls")
    subprocess.run([MINITRUE_BIN, "user", "add", user, "--role", role, "--data-dir", str(workdir / "node" / "data")],
                   input=password + "\n", text=True, check=True, capture_output=True)
    extra = ["--tls-cert", str(cert), "--tls-key", str(key), "--tls-required"]
    with running_node(workdir / "node", load=False, extra_args=extra) as port:
        yield port, ca
