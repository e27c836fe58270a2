#!/usr/bin/env bash
# A three-node MiniTrue cluster on this machine, with simulated sensors (the seed's
# run_cluster.sh). node1 runs the embedded MQTT broker; node2 and node3 join through node1's
# gossip port and subscribe to the same broker; `minitrue publish simulate` feeds it. As in
# the seed, every node receives every message and keeps what it owns (every-node mode: the
# embedded broker is not meant for shared subscriptions). The nodes share a cluster secret,
# made on the first run in $CLUSTER_DIR/cluster.secret (readable by its owner only): only
# nodes holding it can gossip with them or call them.
# Ctrl-C (or SIGTERM) stops everything cleanly.
#
#   scripts/run_cluster.sh                 # build (release) and run
#   psql -h 127.0.0.1 -p 5433 -U minitrue minitrue -c "SELECT * FROM system.nodes"
#
# Settings (environment): MINITRUE_BIN (a built binary; default: cargo build --release),
# CLUSTER_DIR (data directories and logs; default ./data/cluster), REPLICATION_FACTOR
# (default 2), SENSORS (default 10), PORT_OFFSET (added to every port below; default 0).
# Ports of node N (1-3): HTTP 8080+N, Postgres 5432+N, Flight 50051+N, gossip 9000+N (UDP);
# the broker is node1's, on 1883.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -z "${MINITRUE_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/minitrue-target}"
  cargo build --release -p minitrue
  MINITRUE_BIN="$CARGO_TARGET_DIR/release/minitrue"
fi
CLUSTER_DIR="${CLUSTER_DIR:-./data/cluster}"
RF="${REPLICATION_FACTOR:-2}"
SENSORS="${SENSORS:-10}"
OFFSET="${PORT_OFFSET:-0}"
MQTT_PORT=$((1883 + OFFSET))
SEED="127.0.0.1:$((9001 + OFFSET))"
mkdir -p "$CLUSTER_DIR"
SECRET_FILE="$CLUSTER_DIR/cluster.secret"
if [ ! -s "$SECRET_FILE" ]; then
  (umask 077 && "$MINITRUE_BIN" cluster secret >"$SECRET_FILE.new" && mv "$SECRET_FILE.new" "$SECRET_FILE")
fi
# The file is the cluster's secret here; one from the environment would conflict with it.
unset MINITRUE_CLUSTER_SECRET

pids=()
stop_all() {
  trap - INT TERM EXIT
  echo "stopping the cluster"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait || true
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

start_node() {
  local n=$1; shift
  local dir="$CLUSTER_DIR/node$n"
  mkdir -p "$dir"
  rm -f "$dir/ready.json"
  "$MINITRUE_BIN" serve --node-id "node$n" --data-dir "$dir/data" \
    --http-port $((8080 + n + OFFSET)) --pg-port $((5432 + n + OFFSET)) \
    --flight-port $((50051 + n + OFFSET)) --gossip-port $((9000 + n + OFFSET)) \
    --replication-factor "$RF" --mqtt-subscription every-node \
    --cluster-secret-file "$SECRET_FILE" \
    --ready-file "$dir/ready.json" "$@" >"$dir/node.log" 2>&1 &
  pids+=($!)
  local waited=0
  until [ -f "$dir/ready.json" ]; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null; then
      echo "node$n did not start; its log:" >&2
      cat "$dir/node.log" >&2
      exit 1
    fi
    sleep 0.2
    waited=$((waited + 1))
    [ "$waited" -lt 600 ] || { echo "node$n not ready after 120 s" >&2; exit 1; }
  done
  echo "node$n: psql -h 127.0.0.1 -p $((5432 + n + OFFSET)) -U minitrue minitrue   (log: $dir/node.log)"
}

start_node 1 --mqtt-port "$MQTT_PORT"
start_node 2 --seeds "$SEED" --broker "mqtt://127.0.0.1:$MQTT_PORT"
start_node 3 --seeds "$SEED" --broker "mqtt://127.0.0.1:$MQTT_PORT"

"$MINITRUE_BIN" publish --broker "mqtt://127.0.0.1:$MQTT_PORT" --client-id minitrue-cluster-publisher \
  simulate --devices "$SENSORS" --metrics temperature,humidity >"$CLUSTER_DIR/publisher.log" 2>&1 &
pids+=($!)
echo "publisher: $SENSORS simulated sensors (temperature, humidity) every second (log: $CLUSTER_DIR/publisher.log)"
echo "cluster running; Ctrl-C stops it"
wait -n "${pids[@]}" || true
echo "a process of the cluster ended; see the logs in $CLUSTER_DIR" >&2
exit 1
