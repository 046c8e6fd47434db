"""The compare view starts on something else than the main view; layout screenshots are one PNG."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
from PIL import Image

from rfmweb.session.encode import CAPTION_PX, side_by_side
from rfmweb.app import layout
from rfmweb.app.layout import compare_choice


@pytest.mark.parametrize("installed, renderer, preset, modality, expected", [
    # Render-FM beside anything else on a CT: the comparison it was made for
    (("compiled", "vtk", "renderfm"), "compiled", "CT-Bone", "CT", ("renderfm", "CT-Bone")),
    (("compiled", "vtk", "renderfm"), "vtk", "CT-Muscle", "CT", ("renderfm", "CT-Muscle")),
    # Render-FM itself, or an MRI (no Render-FM): VTK beside a marcher, a marcher beside VTK
    (("compiled", "vtk", "renderfm"), "renderfm", "CT-Bone", "CT", ("vtk", "CT-Bone")),
    (("compiled", "vtk", "renderfm"), "compiled", "MR-Default", "MR", ("vtk", "MR-Default")),
    (("compiled", "vtk"), "raymarch", "CT-Bone", "CT", ("vtk", "CT-Bone")),
    (("compiled", "vtk"), "vtk", "CT-Bone", "CT", ("compiled", "CT-Bone")),
    # no second renderer: the same one with the modality's next preset
    (("compiled",), "compiled", "CT-Bone", "CT", ("compiled", "CT-Soft-Tissue")),
    (("compiled",), "compiled", "MR-Default", "MR", ("compiled", "MR-T2-Brain")),
])
def test_compare_pane_never_repeats_the_main_pair(small_ct, monkeypatch, installed, renderer, preset, modality,
                                                  expected):
    monkeypatch.setattr(layout, "renderer_names", lambda: list(installed))
    monkeypatch.setattr(layout, "marcher_renderer", lambda: "compiled")
    volume = dataclasses.replace(small_ct, modality=modality)
    assert compare_choice(volume, renderer, preset) == expected
    assert compare_choice(None, renderer, preset) == (renderer, preset)   # no volume yet: nothing to compare


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
