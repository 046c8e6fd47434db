"""Transfer functions, Slicer presets, class tables and ParaView JSON."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from rfmweb.errors import InputError
from rfmweb.render.fields import ScalarField
from rfmweb.transfer import (PRESETS, ClassStyle, ClassTable, TransferFunction, load_paraview_json, preset,
                             preset_for, preset_unsuited, save_paraview_json)
from rfmweb.volume import LabelClass, Volume

SLICER_NAMES = ["CT-Bone", "CT-Soft-Tissue", "CT-Muscle", "CT-AAA", "CT-Lung", "CT-Cardiac", "MR-Default",
                "MR-T2-Brain"]


def test_evaluate_matches_numpy_interp():
    tf = preset("CT-Muscle")
    x = torch.linspace(-3500, 3500, 2001, dtype=torch.float64)
    rgb, a = tf.evaluate(x)
    xs = [p[0] for p in tf.color]
    for c in range(3):
        np.testing.assert_allclose(rgb[:, c].numpy(), np.interp(x.numpy(), xs, [p[c + 1] for p in tf.color]),
                                   atol=1e-12)
    np.testing.assert_allclose(a.numpy(), np.interp(x.numpy(), *zip(*tf.opacity)), atol=1e-12)
    np.testing.assert_allclose(tf.rgba_np(x.numpy())[:, 3], a.numpy(), atol=1e-6)


def test_lookup_table_is_close_to_exact():
    tf = preset("CT-Bone")
    field = ScalarField(torch.zeros(1, 2, 2, 2), np.eye(4), tf, shade=False, value_range=(-1024.0, 3071.0))
    x = torch.linspace(-1024, 3071, 10007)
    exact_rgb, exact_a = tf.evaluate(x)
    rgba = field.lookup(x)
    assert (rgba[:, 3] - exact_a).abs().max() < 1e-3
    assert (rgba[:, :3] - exact_rgb).abs().max() < 1e-3


def test_evaluate_on_cuda_matches_cpu():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    tf = preset("CT-AAA")
    x = torch.linspace(-1000, 1000, 1000)
    rgb_c, a_c = tf.evaluate(x.cuda())
    rgb, a = tf.evaluate(x)
    torch.testing.assert_close(rgb_c.cpu(), rgb)
    torch.testing.assert_close(a_c.cpu(), a)


def test_slicer_presets_present_with_their_meaning():
    for name in SLICER_NAMES:
        assert name in PRESETS
    bone = preset("CT-Bone")
    _, a = bone.evaluate(torch.tensor([-500.0, -16.4458, 641.385, 1500.0], dtype=torch.float64))
    assert a[0] == 0 and a[1] == 0 and a[2] == pytest.approx(0.715686) and a[3] > 0.7
    lung = preset("CT-Lung")  # air and soft tissue transparent, lung parenchyma visible
    _, a = lung.evaluate(torch.tensor([-900.0, -500.0, 40.0], dtype=torch.float64))
    assert a[0] == 0 and a[1] == pytest.approx(0.15) and a[2] == 0
    with pytest.raises(InputError, match="unknown preset 'CT-Nope'"):
        preset("CT-Nope")


def test_mr_presets_are_stretched_to_the_blended_range():
    mr = Volume(np.zeros((4, 4, 4)), np.eye(4), modality="MR")
    ct = Volume(np.zeros((4, 4, 4)), np.eye(4), modality="CT")
    assert preset_for("MR-Default", mr).x_range == pytest.approx((0.0, 1.0))
    assert preset_for("CT-Bone", ct) == preset("CT-Bone")
    # every MR preset shows part of the blend (MR-Angio's raw threshold ~150 lay above all of it)
    for name in ("MR-Default", "MR-T2-Brain", "MR-Angio", "MR-Glass"):
        _, a = preset_for(name, mr).evaluate(torch.linspace(0, 1, 101, dtype=torch.float64))
        assert float(a.max()) > 0, name
    assert preset_unsuited("CT-Bone", mr) == "for CT; this volume is MR" and preset_unsuited("MR-Glass", mr) is None


def test_transfer_function_validation():
    with pytest.raises(InputError, match="non-decreasing"):
        TransferFunction("bad", color=[(1, 0, 0, 0), (0, 1, 1, 1)], opacity=[(0, 0)])
    with pytest.raises(InputError, match=r"\[0, 1\]"):
        TransferFunction("bad", color=[(0, 2, 0, 0)], opacity=[(0, 0)])
    with pytest.raises(InputError, match="4-tuples"):
        TransferFunction("bad", color=[(0, 1, 1)], opacity=[(0, 0)])


def test_rescale_shift_and_visible_intervals():
    tf = TransferFunction("t", color=[(0, 0, 0, 0), (10, 1, 1, 1)], opacity=[(0, 0), (4, 0), (6, 1), (8, 0), (10, 0)])
    assert tf.rescaled(100, 200).x_range == (100, 200)
    assert tf.shifted(5).opacity[2] == (11, 1)
    assert tf.visible_intervals() == ((4, 8),)
    assert tf.visible_intervals(0.5) == ((5, 7),)
    assert TransferFunction("z", color=[(0, 0, 0, 0)], opacity=[(0, 0)]).visible_intervals() == ()
    two = TransferFunction("two", color=[(0, 0, 0, 0)], opacity=[(0, 0.2), (2, 0.2), (3, 0), (5, 0), (6, 0.4)])
    assert two.visible_intervals(0.1) == ((-math.inf, 2.5), (5.25, math.inf))


def test_visible_voxels_by_intervals_match_the_interpolated_opacity():
    """``tf_visible`` compares against the TF's visible intervals; it agrees with interpolating the
    opacity everywhere but within a rounding of the crossings."""
    from rfmweb.render.fields import tf_visible
    from rfmweb.transfer.function import interp
    x = torch.linspace(-3100.0, 3100.0, 400_001, dtype=torch.float64)
    rng = np.random.default_rng(3)
    ramps = [TransferFunction("r", color=[(0, 0, 0, 0)], opacity=list(zip(np.sort(rng.uniform(-3000, 3000, 6)),
                                                                          rng.choice([0.0, 0.3, 1.0], 6))))
             for _ in range(20)]
    for tf in [*PRESETS.values(), *ramps]:
        pts = torch.tensor(tf.opacity, dtype=x.dtype)
        alpha = interp(x, pts[:, 0].contiguous(), pts[:, 1:])[..., 0]
        for eps in (0.0, 1e-3):
            differ = tf_visible(x, tf, eps) != (alpha > eps)
            assert bool(((alpha[differ] - eps).abs() < 1e-9).all()), tf.opacity


def test_class_table():
    classes = (LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "spine", (1, 1, 0.8), "skeleton"),
               LabelClass(2, "liver", (0.5, 0.2, 0.1), "organs"), LabelClass(3, "ribs", (1, 1, 0.9), "skeleton"))
    table = ClassTable.from_classes(classes)
    assert table.is_trivial and table.groups == {"skeleton", "organs"}
    hidden = table.set_group_visible("skeleton", False)
    rgba, use = hidden.lookup(5)
    assert rgba[:, 3].tolist() == [1, 0, 1, 0, 1, 1]  # labels 4, 5 unknown: untouched
    assert use.sum() == 0
    rgba, use = table.updated(2, opacity=0.25).__class__(table.styles, use_class_colors=True).lookup(3)
    assert use.tolist() == [0, 1, 1, 1]
    assert rgba[2, :3].tolist() == pytest.approx([0.5, 0.2, 0.1])
    with pytest.raises(InputError, match="no class in group 'vessels'"):
        table.set_group_visible("vessels", True)
    with pytest.raises(InputError, match="opacity"):
        ClassTable((ClassStyle(1, "x", (0, 0, 0), opacity=1.5),))
    with pytest.raises(InputError, match="no class with label 9"):
        table.updated(9, visible=False)


def test_paraview_round_trip(tmp_path):
    tf = preset("CT-Cardiac")
    path = save_paraview_json(tf, tmp_path / "cardiac.json")
    data = json.loads(path.read_text())
    assert isinstance(data, list) and data[0]["Name"] == "CT-Cardiac"
    assert len(data[0]["RGBPoints"]) == 4 * len(tf.color) and len(data[0]["Points"]) == 4 * len(tf.opacity)
    back = load_paraview_json(path)
    assert back.color == tf.color and back.opacity == tf.opacity


def test_paraview_real_format_with_midpoint_sharpness_and_trailing_commas(tmp_path):
    # ParaView writes trailing commas and per-node midpoint/sharpness
    text = """[ { "ColorSpace" : "RGB", "Name" : "OkuboWeiss",
        "Points" : [0.0, 1.0, 0.5, 0.0,  1.0, 0.0, 0.5, 1.0,  2.0, 1.0, 0.5, 0.0],
        "RGBPoints" : [0.0, 0.258823, 0.0, 1.0,  1.0, 0.0, 0.913725, 0.0,  2.0, 0.98039, 0.48235, 0.0], }, ]"""
    (tmp_path / "ow.json").write_text(text)
    tf = load_paraview_json(tmp_path / "ow.json")
    _, a = tf.evaluate(torch.tensor([0.0, 0.5, 1.2, 1.5, 1.8, 2.0], dtype=torch.float64))
    assert a[0] == 1.0 and a[1] == pytest.approx(0.5)      # linear segment
    assert a[2] == pytest.approx(0.0, abs=0.04) and a[4] == pytest.approx(1.0, abs=0.04)  # sharpness 1: a step
    assert a[5] == 1.0


@pytest.mark.parametrize("content, reason", [
    ("{not json", "not valid JSON"),
    ('[{"Name": "cat", "IndexedColors": [1, 0, 0]}]', "no colour map with 'RGBPoints'"),
    ('[{"Name": "x", "RGBPoints": [0, 1, 1]}]', "groups of 4"),
])
def test_paraview_bad_files(tmp_path, content, reason):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError, match=reason) as err:
        load_paraview_json(path)
    assert str(path) in str(err.value)
