"""The notebooks in notebooks/ run top to bottom against a live node, with the data they need
loaded by notebooks/load_sample_data.py over Flight. A notebook fails the test when any cell
raises (they assert what they show: row counts, round trips); plots must render."""
import os
import pathlib
import subprocess
import sys

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import REPO, SHARED
from mqttnode import node

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def flight_uri(tmp_path_factory):
    with node(tmp_path_factory.mktemp("notebooks")) as n:
        uri = f"grpc://127.0.0.1:{n.ports['flight']}"
        out = subprocess.run(
            [sys.executable, str(REPO / "notebooks" / "load_sample_data.py"), "--flight", uri, "--shared", str(SHARED)],
            check=True, capture_output=True, text=True,
        )
        assert "loaded 115200 smart-city points and 22695 NAB" in out.stdout, out.stdout + out.stderr
        yield uri


def test_there_are_three_notebooks():
    assert [p.name for p in NOTEBOOKS] == ["01_quickstart.ipynb", "02_smart_city_analysis.ipynb", "03_bulk_load.ipynb"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom(path, flight_uri, monkeypatch, tmp_path):
    monkeypatch.setenv("MINITRUE_FLIGHT", flight_uri)
    monkeypatch.setenv("MINITRUE_NAB_DIR", str(SHARED / "datasets" / "nab"))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    # Keep the executed notebook (with its plots) as a test artefact.
    nbformat.write(notebook, tmp_path / path.name)
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    plots = sum("plt.show()" in c.source for c in notebook.cells if c.cell_type == "code")
    assert len(images) == plots, f"{path.name}: {len(images)} images for {plots} plots"
