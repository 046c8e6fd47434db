"""The compare view starts on something else than the main view; layout screenshots are one PNG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from rfmweb.session.encode import side_by_side
from rfmweb.app.logic import compare_choice


def test_compare_pane_never_repeats_the_main_pair(small_ct):
    for renderer in ("compiled", "raymarch", "vtk"):
        for preset in ("CT-Bone", "CT-Muscle"):
            assert compare_choice(small_ct, renderer, preset) != (renderer, preset)


def test_side_by_side_keeps_both_views():
    def png(color, w, h):
        buf = io.BytesIO()
        Image.new("RGB", (w, h), color).save(buf, format="PNG")
        return buf.getvalue()

    out = np.asarray(Image.open(io.BytesIO(side_by_side([png((255, 0, 0), 30, 20), png((0, 0, 255), 40, 24)]))))
    assert out.shape == (24, 30 + 4 + 40, 3)
    assert (out[:20, :30] == (255, 0, 0)).all() and (out[:, 34:] == (0, 0, 255)).all()
