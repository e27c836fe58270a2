"""The cluster with real processes on 127.0.0.1.

Membership: three nodes join through one seed and each shows the same cluster
(`system.nodes`, `system.ring`, `GET /api/v1/cluster`); a node killed with SIGKILL is seen
dead, stays in the ring until `--dead-node-timeout`, then leaves it; restarted, it is back in
the ring under a new generation.

Writes: a point written through any node lands on exactly the owners of its series; with an
owner down it waits as a hint and reaches the owner when it is back; a write that cannot reach
its quorum is refused (HTTP 503, SQL error) instead of being acknowledged."""
import contextlib
import json
import time

import pytest

from mqttnode import Node, Publisher, mosquitto, wait_until
from pgnode import psql

NAMES = ["node1", "node2", "node3"]
# Gossip every 100 ms: failures are detected in about 2 s instead of 10.
FAST_GOSSIP = ("--gossip-interval-ms", "100")


def start_cluster(nodes, tmp_path, *extra):
    """Starts node1, then node2 and node3 with node1 as their seed, appending each to `nodes`
    as it starts (so the caller stops whatever did start); returns once every node sees all
    three live and active."""
    nodes.append(Node(tmp_path / "node1", "--node-id", "node1", *FAST_GOSSIP, *extra).start())
    seeds = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']}")
    for name in NAMES[1:]:
        nodes.append(Node(tmp_path / name, "--node-id", name, *seeds, *FAST_GOSSIP, *extra).start())
    for node in nodes:
        wait_until("every node sees three live active nodes", lambda: all_serving(node), 60)


def started(node, name):
    """When `name`'s current run started, as `node` sees it (seconds since 1970)."""
    return float(node.scalar(f"SELECT extract(epoch FROM started) FROM system.nodes WHERE node_id = '{name}'"))


def view(node):
    """node_id -> [state, alive, in_ring] as `node` sees the cluster."""
    rows = node.sql("SELECT node_id, state, alive, in_ring FROM system.nodes ORDER BY node_id")
    return {row[0]: row[1:] for row in rows}


def all_serving(node):
    return view(node) == {name: ["active", "t", "t"] for name in NAMES}


def test_three_nodes_share_one_view_of_members_and_ring(tmp_path):
    nodes = []
    try:
        start_cluster(nodes, tmp_path, "--replication-factor", "2", "--dead-node-timeout", "8")

        # Every node computes the same ring: 150 tokens per node, two distinct owners each.
        ring_sql = "SELECT range_start, range_end, replica, node_id FROM system.ring ORDER BY range_end, replica"
        rings = [node.sql(ring_sql) for node in nodes]
        assert rings[0] == rings[1] == rings[2]
        assert len(rings[0]) == 3 * 150 * 2
        owners = {}
        for start, end, replica, owner in rings[0]:
            owners.setdefault(end, []).append(owner)
        assert len(owners) == 450 and all(len(set(o)) == 2 for o in owners.values())
        primary, replica = nodes[0].sql("SELECT sum(primary_share), sum(replica_share) FROM system.nodes")[0]
        assert abs(float(primary) - 1) < 1e-9 and abs(float(replica) - 2) < 1e-9

        # Each node publishes the addresses it really listens on.
        for node, name in zip(nodes, NAMES):
            row = nodes[1].sql(
                "SELECT http_address, postgres_address, flight_address, gossip_address, local "
                f"FROM system.nodes WHERE node_id = '{name}'"
            )[0]
            want = [f"127.0.0.1:{node.ports[door]}" for door in ("http", "postgres", "flight", "gossip")]
            assert row == [*want, "t" if node is nodes[1] else "f"], (name, row)

        status, body = nodes[2].http("GET", "/api/v1/cluster")
        assert status == 200, body
        page = json.loads(body)
        assert page["node_id"] == "node3"
        assert [n["node_id"] for n in page["nodes"]] == NAMES
        for entry in page["nodes"]:
            assert entry["state"] == "active" and entry["alive"] is True
            assert entry["addresses"]["postgres"].startswith("127.0.0.1:")
            # Storage figures are the answering node's own; null for the others.
            assert (entry["points_written"] is None) == (entry["node_id"] != "node3"), entry
        assert abs(sum(n["ring_share"] for n in page["nodes"]) - 1) < 1e-9

        # SIGKILL: seen dead, still in the ring (its writes would become hints) …
        first_run = started(nodes[0], "node3")
        nodes[2].kill()
        wait_until("node3 seen dead", lambda: view(nodes[0])["node3"][1] == "f", 30)
        state, alive, in_ring = view(nodes[0])["node3"]
        assert (state, alive, in_ring) == ("active", "f", "t")
        assert float(nodes[0].scalar("SELECT down_seconds FROM system.nodes WHERE node_id = 'node3'")) >= 0
        # … until it has been dead for --dead-node-timeout: then the others own its ranges.
        wait_until("node3 out of the ring", lambda: view(nodes[0])["node3"][2] == "f", 60)
        assert nodes[0].sql("SELECT DISTINCT node_id FROM system.ring ORDER BY node_id") == [["node1"], ["node2"]]
        assert nodes[0].scalar("SELECT count(*) FROM system.ring") == str(2 * 150 * 2)

        # Restarted, it is back under a new generation (its start time), seen once.
        nodes[2].start()
        for node in nodes:
            wait_until("node3 back in every view", lambda: all_serving(node), 60)
        assert started(nodes[0], "node3") > first_run
        assert nodes[0].scalar("SELECT count(DISTINCT node_id) FROM system.ring") == "3"
    finally:
        for node in nodes:
            node.stop()


def test_nodes_of_another_cluster_id_stay_apart(tmp_path):
    first = Node(tmp_path / "a", "--node-id", "a", "--cluster-id", "east", *FAST_GOSSIP).start()
    other = None
    try:
        seeds = ("--seeds", f"127.0.0.1:{first.ports['gossip']}")
        other = Node(tmp_path / "b", "--node-id", "b", "--cluster-id", "west", *seeds, *FAST_GOSSIP).start()
        # Give gossip many rounds to (wrongly) merge them.
        time.sleep(2)
        assert list(view(first)) == ["a"] and list(view(other)) == ["b"]
    finally:
        first.stop()
        if other:
            other.stop()


T0 = 1_700_000_000
SERIES = [(f"sensor_{d:02}", metric) for d in range(12) for metric in ("temperature", "humidity")]


def write_points(node, first, count):
    """`count` points per series at T0 + first … through `node`'s HTTP door; returns the status."""
    points = [
        {"device_id": device, "metric_name": metric, "timestamp": T0 + first + k, "value": first + k}
        for device, metric in SERIES
        for k in range(count)
    ]
    status, body = node.http("POST", "/api/v1/write", json.dumps(points).encode(), {"Content-Type": "application/json"})
    return status, body


def holdings(node):
    """(device, metric) -> point count that `node` stores itself."""
    rows = node.sql("SELECT device_id, metric, count(*) FROM system.local_readings GROUP BY device_id, metric")
    return {(d, m): int(n) for d, m, n in rows}


def test_writes_reach_every_owner_and_missed_ones_wait_as_hints(tmp_path):
    nodes = []
    try:
        start_cluster(nodes, tmp_path, "--replication-factor", "2", "--write-quorum", "1")

        # Written through node1, each series lands on exactly its two owners, whole.
        assert write_points(nodes[0], 0, 10)[0] == 204
        held = [holdings(node) for node in nodes]
        for series in SERIES:
            counts = [h.get(series, 0) for h in held]
            assert sorted(counts) == [0, 10, 10], (series, counts)
        # Every node took a share (24 series over 3 nodes, 2 copies each).
        assert all(len(h) > 0 for h in held), [len(h) for h in held]
        # A series' tags travel with its points to both owners.
        status, _ = nodes[0].http("POST", "/api/v2/write?precision=s", f"env,device_id=tagged,room=lab temperature=21.5 {T0}\n".encode())
        assert status == 204
        # (`system.series` is what each node itself holds; `devices` is the cluster's.)
        tags = [node.scalar("SELECT tags FROM system.series WHERE device_id = 'tagged'") for node in nodes]
        assert sorted(t is not None for t in tags) == [False, True, True], tags
        assert all('"room":"lab"' in t for t in tags if t is not None), tags

        # node3 down: writes through node2 still succeed (quorum 1) and node3's share waits.
        nodes[2].kill()
        wait_until("node3 seen dead by node2", lambda: view(nodes[1])["node3"][1] == "f", 30)
        assert write_points(nodes[1], 10, 5)[0] == 204
        assert nodes[1].metric("minitrue_cluster_hints_stored_total") > 0

        # Back: the hints are delivered, and every owner holds every point.
        nodes[2].start()
        for node in nodes:
            wait_until("node3 back", lambda: all_serving(node), 60)

        def complete():
            held = [holdings(node) for node in nodes]
            return all(sorted(h.get(s, 0) for h in held) == [0, 15, 15] for s in SERIES)

        wait_until("hints delivered to node3", complete, 60)
        # node2 counts a hint once node3's acknowledgement is back, which can come a moment
        # after node3 already shows the points.
        wait_until("node2 counts its delivered hints", lambda: nodes[1].metric("minitrue_cluster_hints_delivered_total") > 0, 30)
    finally:
        for node in nodes:
            node.stop()


def test_a_write_that_misses_its_quorum_is_refused(tmp_path):
    nodes = []
    try:
        start_cluster(nodes, tmp_path, "--replication-factor", "3", "--write-quorum", "3")
        assert write_points(nodes[0], 0, 2)[0] == 204
        nodes[2].kill()
        wait_until("node3 seen dead", lambda: view(nodes[0])["node3"][1] == "f", 30)
        status, body = write_points(nodes[0], 2, 2)
        assert status == 503, (status, body)
        assert b"quorum" in body
        # SQL INSERT goes through the same path and fails the same way.
        out = psql(nodes[0].ports["postgres"], "-c", "INSERT INTO readings VALUES (now(), 'sensor_00', 'temperature', 1.0)", check=False)
        assert out.returncode != 0 and "quorum" in out.stderr, out.stderr
        assert nodes[0].metric("minitrue_cluster_quorum_failures_total") >= 2
    finally:
        for node in nodes:
            node.stop()


def test_an_ingest_only_node_routes_writes_and_holds_nothing(tmp_path):
    nodes = []
    try:
        nodes.append(Node(tmp_path / "node1", "--node-id", "node1", *FAST_GOSSIP, "--replication-factor", "2").start())
        seeds = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']}")
        nodes.append(Node(tmp_path / "node2", "--node-id", "node2", *seeds, *FAST_GOSSIP, "--replication-factor", "2").start())
        # No Flight door in ingest mode, so no replica can reach it: it only routes.
        router = Node(tmp_path / "router", "--node-id", "router", "--mode", "ingest", *seeds, *FAST_GOSSIP).start()
        nodes.append(router)
        want = {"node1": ["active", "t", "t"], "node2": ["active", "t", "t"], "router": ["active", "t", "f"]}
        for node in nodes[:2]:
            wait_until("the router seen, outside the ring", lambda: view(node) == want, 60)
        wait_until("the router's ring holds both owners", lambda: router.metric("minitrue_cluster_ring_nodes") == 2, 60)
        assert write_points(router, 0, 3)[0] == 204
        for node in nodes[:2]:
            assert holdings(node) == {series: 3 for series in SERIES}
    finally:
        for node in nodes:
            node.stop()


# Distributed reads: a data set published through Mosquitto, which every node subscribes to.
DEVICES = [f"sensor_{d:02}" for d in range(12)]
METRICS = ["temperature", "humidity", "pressure"]


def data_set():
    """(device, metric, seconds, value): 12 devices x 3 metrics x 120 points, one a minute."""
    return [
        (device, metric, T0 + 60 * i, round((d * 7 + m * 13 + i * 0.37) % 50 - 10.5, 3))
        for d, device in enumerate(DEVICES)
        for m, metric in enumerate(METRICS)
        for i in range(120)
    ]


# Every answer the cluster must give exactly as one node holding all the data.
GOLDEN = [
    "SELECT count(*), sum(value), avg(value), min(value), max(value) FROM readings",
    "SELECT device_id, metric, count(*), avg(value), min(time), max(time) FROM readings GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT time_bucket('10 minutes', time) AS b, metric, avg(value), count(*) FROM readings GROUP BY b, metric ORDER BY b, metric",
    "SELECT device_id, metric, first(value, time), last(value, time) FROM readings WHERE metric = 'humidity' GROUP BY 1, 2 ORDER BY 1, 2",
    "SELECT * FROM readings WHERE device_id = 'sensor_03' AND metric = 'humidity' ORDER BY time",
    "SELECT device_id, metric, time, value FROM readings ORDER BY value DESC, time, device_id, metric LIMIT 5",
    "SELECT count(*) FROM (SELECT * FROM readings LIMIT 7)",
    "SELECT count(DISTINCT device_id), count(DISTINCT metric) FROM readings",
    "SELECT avg(value), count(*) FROM readings WHERE value > 20 AND time >= to_timestamp(%d)" % (T0 + 1800),
    # The last-value cache, gathered from one owner of each range.
    "SELECT device_id, metric, first_time, last_time, last_value, points FROM devices ORDER BY 1, 2",
]


def answers(node):
    return [node.sql(query) for query in GOLDEN]


@pytest.mark.parametrize("rf", [2, 3])
def test_every_node_answers_every_query_with_the_single_node_answer(tmp_path, rf):
    points = data_set()
    with mosquitto(tmp_path) as broker:
        nodes = []
        reference = None
        try:
            start_cluster(nodes, tmp_path, "--replication-factor", str(rf), "--broker", f"mqtt://127.0.0.1:{broker}")
            publisher = Publisher(broker, client_id="cluster-publisher")
            for metric in METRICS:
                for device in DEVICES:
                    publisher.publish(f"iot/sensors/{metric}", [
                        {"device_id": d, "metric_name": m, "timestamp": t, "value": v}
                        for d, m, t, v in points if d == device and m == metric
                    ])
            publisher.close()

            reference = Node(tmp_path / "reference", "--node-id", "reference").start()
            body = [{"device_id": d, "metric_name": m, "timestamp": t, "value": v} for d, m, t, v in points]
            status, _ = reference.http("POST", "/api/v1/write", json.dumps(body).encode(), {"Content-Type": "application/json"})
            assert status == 204
            want = answers(reference)
            assert want[0][0][0] == str(len(points))

            for node in nodes:
                wait_until("every point visible", lambda: node.scalar("SELECT count(*) FROM readings") == str(len(points)), 60)
            for node in nodes:
                assert answers(node) == want
            # One shared subscription: each of the 36 messages was taken by one node only.
            taken = [node.metric("minitrue_ingest_messages_total", door="mqtt") for node in nodes]
            assert sum(taken) == len(DEVICES) * len(METRICS), taken
            if rf == 2:
                # Each node holds two thirds of the series; the rest comes from peers.
                held = [sum(holdings(node).values()) for node in nodes]
                assert all(0 < h < len(points) for h in held) and sum(held) == 2 * len(points), held
                plan = "\n".join(row[-1] for row in nodes[0].sql("EXPLAIN SELECT avg(value) FROM readings"))
                assert "DistributedExec" in plan and "mode=Partial" in plan, plan
                # An aggregate over every row moves a few partial rows, not the rows.
                before = nodes[0].metric("minitrue_cluster_fragment_bytes_received_total")
                rows_before = nodes[0].metric("minitrue_cluster_fragment_rows_received_total")
                assert nodes[0].sql(GOLDEN[0]) == want[0]
                moved = nodes[0].metric("minitrue_cluster_fragment_bytes_received_total") - before
                assert 0 < moved < 8192, moved
                # One partial row per peer and per partition it aggregated in.
                assert nodes[0].metric("minitrue_cluster_fragment_rows_received_total") - rows_before <= 8
            else:
                # RF 3 on three nodes: each node holds everything and answers alone.
                assert all(sum(holdings(node).values()) == len(points) for node in nodes)

            # DELETE through any node reaches every copy, and counts each point once.
            delete = f"DELETE FROM readings WHERE device_id IN ('sensor_05', 'sensor_06') AND time < to_timestamp({T0 + 1800})"
            expected_count = psql(reference.ports["postgres"], "-At", "-c", delete).stdout.strip()
            assert expected_count == "180", expected_count
            assert psql(nodes[1].ports["postgres"], "-At", "-c", delete).stdout.strip() == expected_count
            want = answers(reference)
            for node in nodes:
                assert answers(node) == want
                left = node.scalar(f"SELECT count(*) FROM system.local_readings WHERE device_id IN ('sensor_05', 'sensor_06') AND time < to_timestamp({T0 + 1800})")
                assert left == "0", (node.workdir, left)

            # SIGKILL node3: the others still answer exactly, at once (a failed peer is
            # replaced by another owner of its ranges) and once it is seen dead.
            nodes[2].kill()
            for node in nodes[:2]:
                assert answers(node) == want
            wait_until("node3 seen dead", lambda: view(nodes[0])["node3"][1] == "f", 30)
            for node in nodes[:2]:
                assert answers(node) == want
            # A delete while node3 is down is counted by the live owners and waits for node3
            # as a hint, after the writes it missed.
            delete = "DELETE FROM readings WHERE device_id = 'sensor_01' AND metric = 'humidity'"
            expected_count = psql(reference.ports["postgres"], "-At", "-c", delete).stdout.strip()
            assert expected_count == "120", expected_count
            assert psql(nodes[0].ports["postgres"], "-At", "-c", delete).stdout.strip() == expected_count
            assert nodes[0].metric("minitrue_cluster_delete_hints_stored_total") == 1
            want = answers(reference)
            for node in nodes[:2]:
                assert answers(node) == want
            # Back, node3 takes the hinted delete before it answers: no copy of the deleted
            # points is left anywhere, and every node answers as the reference does.
            nodes[2].start()
            for node in nodes:
                wait_until("node3 recovered", lambda: all_serving(node), 60)
            for node in nodes:
                assert node.scalar("SELECT count(*) FROM system.local_readings WHERE device_id = 'sensor_01' AND metric = 'humidity'") == "0"
                assert answers(node) == want
        finally:
            for node in nodes:
                node.stop()
            if reference:
                reference.stop()


def replica_checksums(node):
    """(device, metric) -> (points, sum of value in thousandths, first, last time) of what
    `node` stores itself: equal on two replicas exactly when they hold the same points."""
    rows = node.sql(
        "SELECT device_id, metric, count(*), sum(CAST(round(value * 1000) AS BIGINT)), min(time), max(time) "
        "FROM system.local_readings GROUP BY device_id, metric"
    )
    return {(d, m): tuple(rest) for d, m, *rest in rows}


def replica_disagreements(nodes, rf, series_count):
    """What keeps the replicas apart: empty when every series is held by exactly `rf` nodes,
    all with the same points."""
    held = [replica_checksums(node) for node in nodes]
    series = set().union(*held)
    problems = [] if len(series) == series_count else [f"{len(series)} series, not {series_count}"]
    for s in sorted(series):
        copies = {node.workdir.name: h[s] for node, h in zip(nodes, held) if s in h}
        if len(copies) != rf or len(set(copies.values())) != 1:
            problems.append((s, copies))
    return problems


def wait_for_replicas_to_agree(nodes, rf, series_count, seconds=90):
    try:
        wait_until("replicas converge", lambda: not replica_disagreements(nodes, rf, series_count), seconds)
    except AssertionError:
        raise AssertionError(f"replicas differ: {replica_disagreements(nodes, rf, series_count)}")


def publish_series(publisher, points, pairs):
    for device, metric in pairs:
        publisher.publish(f"iot/sensors/{metric}", [
            {"device_id": d, "metric_name": m, "timestamp": t, "value": v}
            for d, m, t, v in points if d == device and m == metric
        ])


PAIRS = [(device, metric) for metric in METRICS for device in DEVICES]


@contextlib.contextmanager
def cluster_on_mosquitto(tmp_path, client_id, *extra):
    """Three nodes subscribed to one Mosquitto (`extra` flags on each), and a publisher to it;
    yields (nodes, publisher) and stops them all."""
    with mosquitto(tmp_path) as broker:
        nodes = []
        try:
            start_cluster(nodes, tmp_path, *extra, "--broker", f"mqtt://127.0.0.1:{broker}")
            yield nodes, Publisher(broker, client_id=client_id)
        finally:
            for node in nodes:
                node.stop()


def post_points(node, points):
    """Writes (device, metric, seconds, value) points through `node`'s HTTP door."""
    body = [{"device_id": d, "metric_name": m, "timestamp": t, "value": v} for d, m, t, v in points]
    status, answer = node.http("POST", "/api/v1/write", json.dumps(body).encode(), {"Content-Type": "application/json"})
    assert status == 204, answer


def reference_answers(tmp_path, points):
    """The golden answers of one node holding `points` (a fresh one each call)."""
    workdir = tmp_path / "reference"
    while workdir.exists():
        workdir = workdir.with_name(workdir.name + "+")
    with_node = Node(workdir, "--node-id", "reference").start()
    try:
        post_points(with_node, points)
        return answers(with_node)
    finally:
        with_node.stop()


def test_a_node_killed_during_ingest_catches_up_and_replicas_converge(tmp_path):
    """SIGKILL during ingest: queries stay exact without it; back, hints and anti-entropy
    bring every replica to the same content (counts and checksums per replica)."""
    points = data_set()
    want = reference_answers(tmp_path, points)
    flags = ("--replication-factor", "2", "--write-quorum", "1")
    with cluster_on_mosquitto(tmp_path, "catch-up-publisher", *flags) as (nodes, publisher):
        publish_series(publisher, points, PAIRS[:12])
        publisher.flush()
        nodes[2].kill()
        # Ingest goes on while node3 is down, with queries running between the batches:
        # none fails (a range's other owner answers).
        for start in range(12, len(PAIRS), 6):
            publish_series(publisher, points, PAIRS[start:start + 6])
            for node in nodes[:2]:
                assert node.scalar("SELECT count(*) FROM readings") is not None
        publisher.close()
        for node in nodes[:2]:
            wait_until("every point visible without node3", lambda: node.scalar("SELECT count(*) FROM readings") == str(len(points)), 60)
            assert answers(node) == want
        assert nodes[0].metric("minitrue_cluster_hints_stored_total") > 0
        # Mosquitto kept handing node3's share of the shared subscription to its session;
        # node1, the smallest live node, took that session over and routed it.
        assert nodes[0].metric("minitrue_ingest_messages_total", door="mqtt-takeover") > 0

        nodes[2].start()
        for node in nodes:
            wait_until("node3 recovered", lambda: all_serving(node), 90)
        wait_for_replicas_to_agree(nodes, 2, len(PAIRS))
        for node in nodes:
            assert answers(node) == want


def test_a_node_that_lost_its_disk_is_rebuilt_by_repair(tmp_path):
    """No hint can help a node whose data directory is gone: anti-entropy copies every range
    it owns back from the other owners, and nothing else."""
    import shutil

    points = data_set()
    nodes = []
    try:
        start_cluster(nodes, tmp_path, "--replication-factor", "2", "--write-quorum", "2")
        post_points(nodes[0], points)
        before = [replica_checksums(node) for node in nodes]
        assert not replica_disagreements(nodes, 2, len(DEVICES) * len(METRICS))
        assert len(before[2]) > 0

        nodes[2].stop()
        shutil.rmtree(nodes[2].workdir / "data")
        nodes[2].start()
        assert view(nodes[2])["node3"][0] == "recovering", view(nodes[2])
        for node in nodes:
            wait_until("node3 recovered", lambda: all_serving(node), 90)
        # It holds exactly what it held before, and the others were not changed.
        assert [replica_checksums(node) for node in nodes] == before
        received = nodes[2].metric("minitrue_cluster_repair_points_received_total")
        assert received == sum(int(c[0]) for c in before[2].values()), received
        assert nodes[2].metric("minitrue_cluster_repair_points_sent_total") == 0
        # Repair compared every range it shares with each peer; those it lacked differed.
        assert nodes[2].metric("minitrue_cluster_repair_ranges_differing_total") > 0
        assert nodes[2].metric("minitrue_cluster_repair_pass_peers_done") == 2
        # Progress by range: every range shared with the two peers was compared.
        ranges = nodes[2].metric("minitrue_cluster_repair_pass_ranges")
        assert ranges > 0 and nodes[2].metric("minitrue_cluster_repair_pass_ranges_done") == ranges
    finally:
        for node in nodes:
            node.stop()


def test_every_node_mode_lets_each_owner_take_its_own_copy_from_the_broker(tmp_path):
    """`--mqtt-subscription every-node` (the seed's way): every node receives every message
    and keeps the points it owns; nothing is routed between nodes."""
    points = data_set()
    flags = ("--replication-factor", "2", "--mqtt-subscription", "every-node")
    with cluster_on_mosquitto(tmp_path, "every-node-publisher", *flags) as (nodes, publisher):
        publish_series(publisher, points, PAIRS)
        publisher.close()
        wait_for_replicas_to_agree(nodes, 2, len(PAIRS), 60)
        for node in nodes:
            assert node.metric("minitrue_ingest_messages_total", door="mqtt") == len(PAIRS)
            assert node.metric("minitrue_cluster_replica_batches_sent_total") == 0
            assert node.scalar("SELECT count(*) FROM readings") == str(len(points))


def test_a_fourth_node_joins_then_one_is_decommissioned_and_each_holds_exactly_its_ranges(tmp_path):
    """A 4th node joins a 3-node RF 2 cluster: it is `recovering` (reads avoid it) while repair
    copies it the ranges it now owns, then active; the others hand over and drop the series
    they no longer own. Then node2 is decommissioned while points keep arriving: it streams
    its ranges to the nodes that own them after it, leaves the ring and stops by itself.
    Queries stay exact throughout, and each node ends holding exactly its ranges (every
    series on exactly its 2 owners)."""
    points = data_set()
    want = reference_answers(tmp_path, points)
    series_count = len(DEVICES) * len(METRICS)
    nodes = []
    try:
        start_cluster(nodes, tmp_path, "--replication-factor", "2", "--write-quorum", "2")
        post_points(nodes[0], points)
        assert not replica_disagreements(nodes, 2, series_count)

        seeds = ("--seeds", f"127.0.0.1:{nodes[0].ports['gossip']}")
        nodes.append(Node(tmp_path / "node4", "--node-id", "node4", *seeds, *FAST_GOSSIP,
                          "--replication-factor", "2", "--write-quorum", "2").start())
        four = {name: ["active", "t", "t"] for name in [*NAMES, "node4"]}
        deadline = time.time() + 90
        while not all(view(node) == four for node in nodes):
            assert time.time() < deadline, [view(node) for node in nodes]
            # Exact while the node joins and its ranges move.
            assert answers(nodes[0]) == want
            time.sleep(0.2)
        wait_for_replicas_to_agree(nodes, 2, series_count)
        held = [sum(int(c[0]) for c in replica_checksums(node).values()) for node in nodes]
        assert sum(held) == 2 * len(points) and held[3] > 0, held
        # Only node4's ranges moved: what it pulled while recovering, what the others' repairs
        # after the ring change pushed to it and what old owners handed over before dropping
        # their copies add up to what it holds (a leaf both sides copied at the same moment
        # counts twice, hence the bound).
        pulled = nodes[3].metric("minitrue_cluster_repair_points_received_total")
        pushed = sum(node.metric("minitrue_cluster_repair_points_sent_total") for node in nodes[:3])
        handed = sum(node.metric("minitrue_cluster_points_handed_off_total") for node in nodes[:3])
        moved = pulled + pushed + handed
        assert held[3] <= moved <= 2 * held[3] and moved < len(points), (pulled, pushed, handed, held)
        assert sum(node.metric("minitrue_cluster_series_handed_off_total") for node in nodes[:3]) > 0
        for node in nodes:
            assert answers(node) == want

        decommission_one_while_points_arrive(tmp_path, nodes, points, held)
    finally:
        for node in nodes:
            node.stop()


def decommission_one_while_points_arrive(tmp_path, nodes, points, held):
    """Decommissions nodes[1] of the 4-node RF 2 cluster `nodes` (holding `points`, `held`
    points on each node) while a batch of new points is written through nodes[0] between
    queries, and checks the move."""
    leaving, staying = nodes[1], [nodes[0], *nodes[2:]]
    series_count = len(DEVICES) * len(METRICS)
    path = "/api/v1/cluster/decommission"
    status, body = leaving.http("POST", path)
    assert status == 202, body
    assert json.loads(body)["phase"] == "announcing"
    status, body = leaving.http("POST", path)
    assert status == 409 and b"already" in body, body
    for node in staying:
        wait_until("node2 seen leaving", lambda: view(node)["node2"][0] == "leaving", 30)
    status, body = nodes[2].http("POST", path)
    assert status == 409 and b"node2 is leaving; one node moves at a time" in body, body
    # A delete racing the stream could let moved points survive: refused until it has left.
    out = psql(nodes[0].ports["postgres"], "-c", "DELETE FROM readings WHERE device_id = 'sensor_01'", check=False)
    assert out.returncode != 0 and "node2 is leaving" in out.stderr, out.stderr

    written = list(points)
    phases, last = [], None
    minute = 0
    deadline = time.time() + 120
    while leaving.proc.poll() is None:
        assert time.time() < deadline, leaving.log()
        batch = [(d, m, T0 + 7200 + 60 * minute, float(minute)) for d in DEVICES for m in METRICS]
        post_points(nodes[0], batch)
        written += batch
        minute += 1
        # Exact while the ranges move: every acknowledged point is counted once.
        assert nodes[0].scalar("SELECT count(*) FROM readings") == str(len(written))
        try:
            status, body = leaving.http("GET", path)
        except OSError:
            continue  # it stopped meanwhile
        if status == 200:
            last = json.loads(body)
            if not phases or phases[-1] != last["phase"]:
                phases.append(last["phase"])
        time.sleep(0.2)
    assert leaving.proc.returncode == 0, leaving.log()
    assert phases[0] == "announcing" and phases[-1] == "left", phases
    assert set(phases) <= {"announcing", "streaming", "draining", "left"}, phases
    assert last["ranges_done"] == last["ranges_total"] and last["passes"] >= 2, last
    # Its ranges went to the three others; it sent at least everything it held (they held
    # none of it), and at most that plus what was written meanwhile.
    assert sorted(last["receivers"]) == ["node1", "node3", "node4"], last
    new_points = len(written) - len(points)
    assert held[1] <= last["points_sent"] <= held[1] + new_points, (last, held, new_points)

    # It does not come back with its stale data.
    assert (leaving.workdir / "data" / "DECOMMISSIONED").exists()
    with pytest.raises(AssertionError):
        leaving.start()
    assert "was decommissioned" in leaving.log()

    for node in staying:
        wait_until("node2 left every ring", lambda: view(node)["node2"][0::2] == ["left", "f"], 30)
    wait_for_replicas_to_agree(staying, 2, series_count)
    held_after = [sum(int(c[0]) for c in replica_checksums(node).values()) for node in staying]
    assert sum(held_after) == 2 * len(written), held_after
    want = reference_answers(tmp_path, written)
    for node in staying:
        got = answers(node)
        assert got == want, [(GOLDEN[i], [r for r in g if r not in w][:3], [r for r in w if r not in g][:3])
                             for i, (g, w) in enumerate(zip(got, want)) if g != w]


def test_a_node_decommissioned_during_mqtt_ingest_gives_up_its_share_of_the_subscription(tmp_path):
    """Three nodes share one Mosquitto subscription (RF 2). node3 is decommissioned while
    sensors keep publishing: it unsubscribes, stores what the broker had already sent it and
    leaves. Nothing waits in its broker session afterwards (Mosquitto would keep queuing a
    third of the messages there for a member that never comes back): every point published,
    during the move and after it, is stored exactly on the two remaining nodes."""
    points = data_set()
    with cluster_on_mosquitto(tmp_path, "decommission-publisher", "--replication-factor", "2") as (nodes, publisher):
        half = len(PAIRS) // 2
        publish_series(publisher, points, PAIRS[:half])
        status, body = nodes[2].http("POST", "/api/v1/cluster/decommission")
        assert status == 202, body
        # The rest spread over the move (announcing alone takes two settles, 4 s).
        for pair in PAIRS[half:]:
            publish_series(publisher, points, [pair])
            time.sleep(0.3)
        wait_until("node3 has left and stopped", lambda: nodes[2].proc.poll() is not None, 120)
        assert nodes[2].proc.returncode == 0, nodes[2].log()
        staying = nodes[:2]
        after = [(device, metric, T0 + 7200, 1.5) for device, metric in PAIRS]
        publish_series(publisher, after, PAIRS)
        publisher.close()
        everything = points + after
        for node in staying:
            wait_until("every point stored", lambda: node.scalar("SELECT count(*) FROM readings") == str(len(everything)), 60)
        wait_for_replicas_to_agree(staying, 2, len(PAIRS))
        want = reference_answers(tmp_path, everything)
        for node in staying:
            assert answers(node) == want
