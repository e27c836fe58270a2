#!/usr/bin/env bash
# B1 + B2 at full scale, release build, with VictoriaMetrics (Debian package) measured beside.
# Writes the tables to stdout; copy them into docs/benchmarks.md with the date.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/minitrue-target}"
if ! command -v victoria-metrics >/dev/null 2>&1; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q victoria-metrics
fi
PY="$(scripts/python-env.sh)"
echo "## B1 Gorilla codec"
cargo bench -p minitrue-gorilla --bench codec 2>&1 | grep -E "ratio|M points/s|reference" || true
cargo run --release -p minitrue --quiet -- bench storage --scale full --python "$PY" --victoria-metrics "$(command -v victoria-metrics)"
