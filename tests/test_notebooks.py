"""The notebooks run top to bottom on a CPU (nbclient), end with live widgets, and their stills are real
pictures."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient
from PIL import Image

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_valid_as_stored(path):
    # the file itself, not nbformat's reading of it: nbformat fills in missing cell ids with a
    # warning today and will refuse them later
    nb = json.loads(path.read_text(encoding="utf-8"))
    missing = [i for i, cell in enumerate(nb["cells"]) if "id" not in cell]
    assert not missing, f"cells {missing} of {path.name} have no id"
    ids = [cell["id"] for cell in nb["cells"]]
    assert len(set(ids)) == len(ids), f"{path.name} repeats a cell id"
    nbformat.validate(nbformat.from_dict(nb))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, artifacts):
    nb = nbformat.read(path, as_version=4)
    closing = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and ".close()" in cell.source]
    assert not closing, f"cells {closing} close the widgets: after Run All the notebook would end with dead views"
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    stills = [out["data"]["image/png"] for cell in nb.cells if cell.cell_type == "code"
              for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]
    assert stills, "the notebook shows no still image"
    for i, data in enumerate(stills):
        img = np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))
        Image.fromarray(img).save(artifacts / f"notebook_{path.stem}_{i}.png")
        assert img.std() > 10, f"still {i} of {path.name} is blank"
