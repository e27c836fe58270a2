"""MiniTrue's data files are standard Parquet: pyarrow and DuckDB read every point back with
its exact value and timestamp, whatever layout the engine chose (decimal, float exceptions)."""
import csv
import datetime as dt
import glob
import os
import pathlib
import subprocess
import sys

import duckdb
import pyarrow.parquet as pq

from conftest import MINITRUE_BIN, SHARED


def expected_points(smartcity_csv, nab_csv):
    points = {}
    with open(smartcity_csv) as f:
        for row in csv.DictReader(f):
            points[(row["device_id"], row["metric"], int(row["time_ns"]))] = float(row["value"])
    device = pathlib.Path(nab_csv).stem
    with open(nab_csv) as f:
        for row in csv.DictReader(f):
            stamp = dt.datetime.strptime(row["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.timezone.utc)
            points[(device, "value", int(stamp.timestamp()) * 10**9)] = float(row["value"])
    return points


def import_into_minitrue(tmp_path):
    smartcity_csv = tmp_path / "smartcity.csv"
    with open(smartcity_csv, "w") as out:
        subprocess.run(
            [sys.executable, str(SHARED / "bench/smartcity.py"), "--devices", "4", "--seconds", "900", "--jitter-ms", "5"],
            stdout=out,
            check=True,
        )
    nab_csv = SHARED / "datasets/nab/machine_temperature_system_failure.csv"
    data_dir = tmp_path / "db"
    subprocess.run([MINITRUE_BIN, "import", "--data-dir", str(data_dir), str(smartcity_csv), str(nab_csv)], check=True)
    files = sorted(glob.glob(str(data_dir / "store/data/**/*.parquet"), recursive=True))
    return expected_points(smartcity_csv, nab_csv), files


def test_pyarrow_reads_every_point_exactly(tmp_path):
    expected, files = import_into_minitrue(tmp_path)
    layouts = {pathlib.Path(f).stem.split("-")[1] for f in files}
    assert "f" in layouts and any(l.startswith("d") for l in layouts), layouts
    seen = {}
    for path in files:
        table = pq.read_table(path)
        assert table.column_names == ["time", "device_id", "metric", "value"]
        times = table.column("time").cast("int64").to_pylist()
        unit = {"ms": 10**6, "us": 10**3, "ns": 1}[table.schema.field("time").type.unit]
        for t, d, m, v in zip(times, table.column("device_id").to_pylist(), table.column("metric").to_pylist(),
                              table.column("value").to_pylist()):
            key = (d, m, t * unit)
            assert key not in seen, f"duplicate {key}"
            seen[key] = float(v)  # Decimal -> float is correctly rounded
    assert seen == expected


def test_duckdb_reads_every_point_exactly(tmp_path):
    expected, files = import_into_minitrue(tmp_path)
    rows = duckdb.execute(
        "SELECT epoch_ns(time), device_id, metric, CAST(value AS DOUBLE) FROM read_parquet(?, union_by_name = true)",
        [files],
    ).fetchall()
    seen = {(d, m, t): v for t, d, m, v in rows}
    assert len(seen) == len(rows), "duplicate rows"
    assert seen == expected
