#!/usr/bin/env bash
# Creates (once) the Python venv the tests and benchmarks use, with pinned packages from PyPI.
set -euo pipefail
VENV="$HOME/.cache/minitrue-venv"
REQ="$(cd "$(dirname "$0")" && pwd)/requirements.txt"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha"
want="$(sha256sum "$REQ" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REQ"
  echo "$want" > "$stamp"
fi
echo "$VENV/bin/python"
