"""notebooks/quickstart.ipynb runs from top to bottom (so it never rots)."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.torch
def test_quickstart_notebook_executes():
    pytest.importorskip("torch")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(ROOT / "notebooks")}})
    client.execute()  # raises CellExecutionError (with the cell's traceback) on any failure
    outputs = {i: "".join(o.get("text", "") for o in c.get("outputs", [])) for i, c in enumerate(nb.cells)
               if c.cell_type == "code"}
    text = "\n".join(outputs.values())
    assert "vs own dense" in text and "a100" in text.lower()      # the comparison table printed
    assert "peak live" in text                                     # the footprint summary printed
    last = nb.cells[-2]                                            # the memory plot is displayed
    assert any("image/png" in o.get("data", {}) for o in last.outputs)
