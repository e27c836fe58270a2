"""scripts/run_cluster.sh: three nodes and the simulated sensors on one machine, in one
command; every node sees the three active, the readings reach all of them, and SIGTERM
stops everything cleanly."""
import os
import random
import signal
import subprocess
import pathlib

from pgnode import MINITRUE_BIN, psql, wait_until

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "scripts" / "run_cluster.sh"


def test_run_cluster_starts_three_nodes_and_the_publisher(tmp_path):
    offset = random.randrange(1000, 14000, 10)
    env = dict(os.environ, MINITRUE_BIN=MINITRUE_BIN, CLUSTER_DIR=str(tmp_path), PORT_OFFSET=str(offset), SENSORS="4")
    script = subprocess.Popen(["bash", str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    pg_ports = [5432 + n + offset for n in (1, 2, 3)]

    def query(port, sql):
        out = psql(port, "-At", "-c", sql, check=False)
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        for port in pg_ports:
            wait_until("three active nodes", lambda: query(port, "SELECT string_agg(node_id || ':' || state, ',' ORDER BY node_id) FROM system.nodes")
                       == "node1:active,node2:active,node3:active", 120)
        # Every node answers for the whole cluster: the same sensors, 4 x 2 series.
        for port in pg_ports:
            wait_until("every simulated series visible", lambda: query(port, "SELECT count(*) FROM (SELECT DISTINCT device_id, metric FROM readings)") == "8", 60)
        assert query(pg_ports[0], "SELECT DISTINCT replicas FROM (SELECT count(*) AS replicas FROM system.ring GROUP BY range_end)") == "2"
    finally:
        script.send_signal(signal.SIGTERM)
        output, _ = script.communicate(timeout=120)
    assert script.returncode == 0, output
    assert "stopping the cluster" in output, output
    for n in (1, 2, 3):
        assert (tmp_path / f"node{n}" / "node.log").stat().st_size > 0
