"""pgjdbc against a real node: JdbcCheck.java, compiled by javac here, runs a prepared query
with parameters and DatabaseMetaData.getTables/getColumns (scripts/test.sh installs Debian's
libpostgresql-jdbc-java; Java 17 is on the machine)."""
import pathlib
import shutil
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "python"))
import pgnode  # noqa: E402

JAR = pathlib.Path("/usr/share/java/postgresql.jar")


@pytest.fixture(scope="module")
def classes(tmp_path_factory):
    assert shutil.which("javac") and shutil.which("java"), "a JDK is needed (javac, java)"
    assert JAR.exists(), f"{JAR} is missing (scripts/test.sh installs libpostgresql-jdbc-java)"
    out = tmp_path_factory.mktemp("jdbc-classes")
    built = subprocess.run(["javac", "-d", str(out), "-cp", str(JAR), str(HERE / "JdbcCheck.java")],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    return out


def test_pgjdbc(classes, tmp_path):
    with pgnode.running_node(tmp_path) as port:
        run = subprocess.run(["java", "-cp", f"{JAR}:{classes}", "JdbcCheck",
                              f"jdbc:postgresql://127.0.0.1:{port}/minitrue"],
                             capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    lines = [line.split("\t") for line in run.stdout.splitlines()]
    facts = {}
    for line in lines:
        facts.setdefault(line[0], []).append(line[1:])

    assert facts["product"] == [["PostgreSQL", "16"]]
    # sensor_1 = 20 + k at 00:k; time >= 00:05 and value > 26.5 (then > 27.5).
    assert facts["row0"] == [[f"2024-01-01T00:0{k}:00Z", f"{20.0 + k}"] for k in range(7, 10)]
    assert facts["row1"] == [[f"2024-01-01T00:0{k}:00Z", f"{20.0 + k}"] for k in range(8, 10)]
    # humidity = 50 + k; k = 0, 1, 2 before 00:03.
    assert facts["count"] == [["3", "52.0"]]
    assert [t[1] for t in facts["table"]] == ["devices", "readings"]
    assert all(t[0] == "public" and t[2] == "TABLE" for t in facts["table"])
    # java.sql.Types: TIMESTAMP_WITH_TIMEZONE is reported by pgjdbc as TIMESTAMP (93);
    # VARCHAR 12 for text, DOUBLE 8.
    assert facts["column"] == [["time", "timestamptz", "93", "1"], ["device_id", "text", "12", "2"],
                               ["metric", "text", "12", "3"], ["value", "float8", "8", "4"]]


def test_pgjdbc_logs_in_with_scram_over_verified_tls(classes, tmp_path):
    """pgjdbc with a user and password (its bundled SCRAM client) and sslmode=verify-full
    against a node with users and --tls-required; a wrong password is refused."""
    with pgnode.secured_node(tmp_path, "analyst", "reader", "jdbc-pw") as (port, ca):
        def check(password):
            url = (f"jdbc:postgresql://127.0.0.1:{port}/minitrue?user=analyst&password={password}"
                   f"&sslmode=verify-full&sslrootcert={ca}")
            return subprocess.run(["java", "-cp", f"{JAR}:{classes}", "JdbcCheck", url],
                                  capture_output=True, text=True, timeout=300)
        good = check("jdbc-pw")
        assert good.returncode == 0, good.stdout + good.stderr
        assert "product\tPostgreSQL\t16" in good.stdout
        bad = check("wrong")
        assert bad.returncode != 0 and "password authentication failed" in bad.stdout + bad.stderr, bad.stderr
