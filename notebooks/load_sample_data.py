#!/usr/bin/env python3
"""Loads the data the notebooks use into a running MiniTrue node, over Arrow Flight (DoPut).

* a smart-city day: 20 devices x 4 metrics, one reading a minute (from shared/bench/smartcity.py,
  deterministic: the same data every time), 115,200 points;
* the NAB machine-temperature series (an industrial machine's temperature sensor, 22,695
  readings from Dec 2013 to Feb 2014, with labelled failure windows), as device
  `machine_temperature`, metric `temperature`.

    python notebooks/load_sample_data.py [--flight grpc://localhost:50051] [--shared ../shared]

Loading twice stores nothing twice: a point written again at the same time replaces itself.
"""
import argparse
import io
import json
import os
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.compute as pc
import pyarrow.flight as flight

REPO = pathlib.Path(__file__).resolve().parents[1]


def put(client, table):
    """Writes `table` (time, device_id, metric, value) into readings; returns the rows written."""
    writer, reader = client.do_put(flight.FlightDescriptor.for_path("readings"), table.schema)
    writer.write_table(table, max_chunksize=65536)
    writer.done_writing()
    ack = reader.read()
    writer.close()  # raises the node's error, if the write failed
    return json.loads(ack.to_pybytes())["rows_written"]


def smart_city(shared):
    out = subprocess.run(
        [sys.executable, str(shared / "bench" / "smartcity.py"), "--devices", "20", "--hours", "24",
         "--interval-ms", "60000", "--format", "csv"],
        check=True, capture_output=True,
    ).stdout
    table = pacsv.read_csv(io.BytesIO(out))
    return pa.table({
        "time": pc.cast(table["time_ns"], pa.timestamp("ns", "UTC")),
        "device_id": table["device_id"],
        "metric": table["metric"],
        "value": pc.cast(table["value"], pa.float64()),
    })


def nab_machine_temperature(shared):
    table = pacsv.read_csv(
        shared / "datasets" / "nab" / "machine_temperature_system_failure.csv",
        convert_options=pacsv.ConvertOptions(column_types={"timestamp": pa.timestamp("s")}),
    )
    n = table.num_rows
    return pa.table({
        # NAB timestamps are UTC wall-clock times.
        "time": pc.cast(pc.cast(table["timestamp"], pa.timestamp("ns")), pa.timestamp("ns", "UTC")),
        "device_id": pa.array(["machine_temperature"] * n),
        "metric": pa.array(["temperature"] * n),
        "value": pc.cast(table["value"], pa.float64()),
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--flight", default=os.environ.get("MINITRUE_FLIGHT", "grpc://localhost:50051"))
    ap.add_argument("--shared", type=pathlib.Path, default=pathlib.Path(os.environ.get("MINITRUE_SHARED", REPO.parent / "shared")))
    a = ap.parse_args()
    with flight.connect(a.flight) as client:
        city = put(client, smart_city(a.shared))
        nab = put(client, nab_machine_temperature(a.shared))
    print(f"loaded {city} smart-city points and {nab} NAB machine-temperature points into {a.flight}")


if __name__ == "__main__":
    main()
