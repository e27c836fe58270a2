#!/usr/bin/env bash
# The whole test suite: formatting, lints, unit/integration/property tests, benchmark smoke runs.
# This is the README's test command and what CI runs (.ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/minitrue-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
# shared/ (benchmark generator, data sets) sits beside the repository.
export MINITRUE_SHARED="${MINITRUE_SHARED:-$(cd .. && pwd)/shared}"

step() { printf '\n==> %s\n' "$*"; }

step "python venv for data generators ($HOME/.cache/minitrue-venv)"
scripts/python-env.sh >/dev/null
PY="$HOME/.cache/minitrue-venv/bin/python"
# The S3 tests (crates/storage/tests/s3.rs) run moto[server] from this venv.
export MINITRUE_PYTHON="$PY"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy -D warnings"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "web UI (frontend/): npm install from the lock, type check, vitest, build; the committed lock and frontend/dist must be what this produces"
# Not `npm ci`: the lock written here (npm 11, `omit-lockfile-registry-resolved`) lists the
# platform packages of rollup/esbuild only by version, and `npm ci` refuses it as out of sync.
# `npm install` installs the locked versions; the check below fails if it changed the lock.
(cd frontend && npm install --no-audit --no-fund --loglevel=error && npm test --silent && npm run build --silent)
if [ -n "$(git status --porcelain -- frontend/dist frontend/package-lock.json)" ]; then
  git status --short -- frontend/dist frontend/package-lock.json
  echo "frontend/dist or frontend/package-lock.json differs from what the sources build: commit them" >&2
  exit 1
fi

cargo build -p minitrue --quiet
export MINITRUE_BIN="$CARGO_TARGET_DIR/debug/minitrue"

step "system packages (Debian): VictoriaMetrics (B2 reference), Mosquitto, socat (serial-port tests), psql, Go + pgx/lib/pq (Grafana's drivers), pgjdbc, Chromium (web UI tests), openssl (test certificates)"
missing=()
command -v victoria-metrics >/dev/null 2>&1 || missing+=(victoria-metrics)
[ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
command -v mosquitto_pub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v socat >/dev/null 2>&1 || missing+=(socat)
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/jackc/pgx/v4 ] || missing+=(golang-github-jackc-pgx-v4-dev)
[ -d /usr/share/gocode/src/github.com/lib/pq ] || missing+=(golang-github-lib-pq-dev)
[ -f /usr/share/java/postgresql.jar ] || missing+=(libpostgresql-jdbc-java)
command -v javac >/dev/null 2>&1 || missing+=(default-jdk-headless)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null
fi

step "benchmark smoke runs (tiny scale, debug build: they prove the benches work, not speed)"
cargo test -p minitrue-gorilla --benches --quiet
"$MINITRUE_BIN" bench storage --scale tiny --python "$PY" --victoria-metrics "$(command -v victoria-metrics)" \
  --out "$CARGO_TARGET_DIR/bench-storage-smoke.md"
"$MINITRUE_BIN" bench ingest --scale tiny --mosquitto /usr/sbin/mosquitto --victoria-metrics "$(command -v victoria-metrics)" \
  --out "$CARGO_TARGET_DIR/bench-ingest-smoke.md"
"$MINITRUE_BIN" bench query --scale tiny --python "$PY" --out "$CARGO_TARGET_DIR/bench-query-smoke.md"
"$MINITRUE_BIN" bench stream --scale tiny --python "$PY" --out "$CARGO_TARGET_DIR/bench-stream-smoke.md"
"$MINITRUE_BIN" bench auth --scale tiny --python "$PY" --out "$CARGO_TARGET_DIR/bench-auth-smoke.md"
"$MINITRUE_BIN" bench cluster --scale tiny --python "$PY" --out "$CARGO_TARGET_DIR/bench-cluster-smoke.md"

step "fuzz targets, 20 s each (scripts/fuzz.sh runs them longer)"
fuzz_log="$CARGO_TARGET_DIR/fuzz-smoke.log"
if ! scripts/fuzz.sh 20 >"$fuzz_log" 2>&1; then
  tail -50 "$fuzz_log"; exit 1
fi
grep -E "^==> fuzz|^Done [0-9]+ runs" "$fuzz_log"

step "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --status-level fail --final-status-level fail
  cargo test --workspace --doc --quiet
else
  cargo test --workspace --no-fail-fast
fi

step "python tests: Parquet read by pyarrow and DuckDB; a node end to end with Mosquitto and psql; Postgres clients (psql, psycopg, asyncpg, SQLAlchemy, Grafana's Go drivers, pgjdbc); Flight SQL (ADBC, pyarrow.flight); the notebooks; the web UI in Chromium"
"$PY" -m pytest tests/python tests/grafana tests/jdbc tests/ui -q -p no:cacheprovider
