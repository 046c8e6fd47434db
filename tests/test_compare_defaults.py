"""The compare view starts on something else than the main view; layout screenshots are one PNG."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from rfmweb.session.encode import CAPTION_PX, side_by_side
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
    # captions: a band above the views with light text over each one, the views below it untouched
    views = [png((255, 0, 0), 120, 20), png((0, 0, 255), 120, 24)]
    out = np.asarray(Image.open(io.BytesIO(side_by_side(views, captions=["ground truth", "raw INR · Dice WT 0.91"]))))
    band = CAPTION_PX + 8
    assert out.shape == (band + 24, 244, 3)
    assert (out[band:band + 20, :120] == (255, 0, 0)).all() and (out[band:, 124:] == (0, 0, 255)).all()
    assert (out[:band, :120].max(axis=2) > 150).sum() > 20 and (out[:band, 124:].max(axis=2) > 150).sum() > 20
    with pytest.raises(ValueError, match="captions"):
        side_by_side(views, captions=["one"])
    # the font has no minus sign (U+2212): the difference pane's caption draws "-", not a box
    minus, hyphen = (np.asarray(Image.open(io.BytesIO(side_by_side(views, captions=[f"|left {c} right|", "x"]))))
                     for c in ("\u2212", "-"))
    assert (minus == hyphen).all()
