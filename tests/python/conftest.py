import os
import pathlib
import sys

sys.path.insert(0, os.path.dirname(__file__))

REPO = pathlib.Path(__file__).resolve().parents[2]
SHARED = pathlib.Path(os.environ.get("MINITRUE_SHARED", REPO.parent / "shared"))
MINITRUE_BIN = os.environ.get("MINITRUE_BIN", str(pathlib.Path.home() / ".cache/minitrue-target/debug/minitrue"))
if not os.path.exists(MINITRUE_BIN):
    raise RuntimeError(f"minitrue binary not found at {MINITRUE_BIN}: build it (cargo build -p minitrue) or set MINITRUE_BIN")
