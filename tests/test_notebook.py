"""A real notebook, executed by a Jupyter kernel, shows results as HTML."""

from __future__ import annotations

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel", reason="a Jupyter kernel comes with the test extra: ipykernel")

CELLS = [
    "import numpy as np, gradverify\n"
    "from layers_under_test import broken, reference\n"
    "x = np.array([[1.0, -2.0, 0.5], [-0.3, 3.0, -1.5]])",
    "gradverify.check(reference.Relu(), {'x': x})",
    "gradverify.check(broken.ReluNoMask(), {'x': x})",
]


def test_a_notebook_shows_status_hint_and_heat_map_in_its_cells():
    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    passing, failing = (notebook.cells[i].outputs[0]["data"] for i in (1, 2))
    assert "gv-pass'>PASS</span>" in passing["text/html"] and "<svg" not in passing["text/html"]
    assert passing["text/plain"].startswith("<CheckResult Relu.backward: PASS")
    html = failing["text/html"]
    assert "gv-fail'>FAIL</span>" in html
    assert "hint: analytic is non-zero only where numeric is 0: a missing mask" in html
    assert "class='gradverify-heatmap'" in html and "dx: error ÷ tolerance" in html
    assert "\n" not in failing["text/plain"]  # the plain repr is one short line
