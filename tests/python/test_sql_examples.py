"""The SQL examples in `sql-examples/` as golden files: each `NN_name.sql` runs through real
psql over pgwire against a node loaded with `sql-examples/seed.py`, and what psql prints must
equal `NN_name.expected` byte for byte. A mismatch fails with a unified diff.

`MINITRUE_BLESS=1` rewrites the `.expected` files from what the node answers instead; review
the diff (`git diff sql-examples`) before committing it.

Read-only examples share one node. An example that writes (`INSERT`/`DELETE`) gets a freshly
seeded node of its own, so it changes nothing the others see and can run alone."""
import contextlib
import difflib
import importlib.util
import json
import os
import pathlib
import re
import shutil
import subprocess
import urllib.request

import pytest

import pgnode

EXAMPLES = pgnode.REPO / "sql-examples"
_spec = importlib.util.spec_from_file_location("sql_examples_seed", EXAMPLES / "seed.py")
seed = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(seed)

BLESS = os.environ.get("MINITRUE_BLESS") == "1"
SQL_FILES = sorted(EXAMPLES.glob("[0-9][0-9]_*.sql"))
WRITES = re.compile(r"^\s*(INSERT|DELETE)\b", re.IGNORECASE | re.MULTILINE)


def writes(path):
    return bool(WRITES.search(path.read_text()))


@contextlib.contextmanager
def seeded_node(data_dir):
    """A running node holding the seed; yields its Postgres port."""
    with pgnode.running_node(data_dir, load=False) as port:
        ready = json.loads((pathlib.Path(data_dir) / "ready.json").read_text())
        url = f"http://{ready['http']}/api/v2/write?precision=s"
        request = urllib.request.Request(url, data=seed.line_protocol().encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60) as response:
            assert response.status == 204, response.read()
        count = pgnode.psql(port, "-Atc", "SELECT count(*) FROM readings").stdout.strip()
        assert count == str(len(seed.points())), count
        yield port


@pytest.fixture(scope="module")
def shared_port(tmp_path_factory):
    with seeded_node(tmp_path_factory.mktemp("sql-examples")) as port:
        yield port


def run_example(port, path):
    """What `psql -f path` prints (stdout and stderr) against the node on `port`."""
    assert shutil.which("psql"), "psql is not installed (scripts/test.sh installs postgresql-client)"
    # A clean client environment: no ~/.psqlrc (-X), no PG* settings of the caller, one locale.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "LC_", "PSQL"))}
    env.update(LANG="C.UTF-8", LC_ALL="C.UTF-8", PGCONNECT_TIMEOUT="10")
    out = subprocess.run(
        ["psql", "-X", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(port), "-U", "minitrue",
         "-d", "minitrue", "-f", path.name],
        cwd=EXAMPLES, capture_output=True, text=True, timeout=60, env=env,
    )
    return out.stdout + out.stderr, out.returncode


@pytest.mark.parametrize("path", SQL_FILES, ids=[p.stem for p in SQL_FILES])
def test_example(path, request, tmp_path):
    with contextlib.ExitStack() as own_node:
        if writes(path):
            port = own_node.enter_context(seeded_node(tmp_path))
        else:
            port = request.getfixturevalue("shared_port")
        actual, returncode = run_example(port, path)
    expected_path = path.with_suffix(".expected")
    if BLESS:
        assert returncode == 0, f"{path.name} failed:\n{actual}"
        expected_path.write_text(actual)
        return
    assert expected_path.exists(), f"{expected_path.name} is missing: run with MINITRUE_BLESS=1 and review it"
    expected = expected_path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(
            expected.splitlines(keepends=True), actual.splitlines(keepends=True),
            fromfile=f"sql-examples/{expected_path.name}", tofile=f"psql -f {path.name}",
        ))
        pytest.fail(f"{path.name} answered differently from {expected_path.name}:\n{diff}", pytrace=False)
    assert returncode == 0, actual


def test_examples_are_complete():
    """Enough examples, each opening with its question, each with its expected output, and
    nothing expected without a query."""
    assert len(SQL_FILES) >= 15, [p.name for p in SQL_FILES]
    for path in SQL_FILES:
        assert path.read_text().startswith("--"), f"{path.name} must open with a comment stating its question"
    expected = {p.stem for p in EXAMPLES.glob("*.expected")}
    assert expected == {p.stem for p in SQL_FILES} or BLESS, expected ^ {p.stem for p in SQL_FILES}
