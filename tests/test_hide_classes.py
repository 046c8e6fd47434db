"""Hiding a class fades it out of the scalar along the label map's smoothed outline
(:func:`rfmweb.render.fields.hide_voxels`), not along the voxel lattice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmweb.render.fields import (HIDE_FADE_MARGIN, HIDE_FADE_SIGMA, HiddenFade, hide_key, hide_voxels,
                                  marched_classes)
from rfmweb.transfer import ClassStyle, ClassTable, TransferFunction, preset

MUSCLE = preset("CT-Muscle")


def tilted_bone(slope: float = 0.25, shape=(40, 6, 16)):
    """Soft tissue (100 HU) over bone (1000 HU, label 2) below the plane ``z = 3 + slope x`` (voxels):
    a label map whose outline is a staircase with a step every ``1 / slope`` voxels."""
    x, _, z = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    bone = z < 3 + slope * x
    scalar = np.where(bone, 1000.0, 100.0).astype(np.float32)
    return torch.from_numpy(scalar), torch.from_numpy(np.where(bone, 2, 1).astype(np.int64))


def crossing_depths(scalar: torch.Tensor, level: float, xs: np.ndarray, y: int = 2) -> np.ndarray:
    """Per ``x`` (fractional voxels), the lowest ``z`` where the bilinear scalar in the plane ``y``
    rises through ``level`` (linear between voxel centres along z)."""
    plane = scalar[:, y, :].double().numpy()                                  # [X, Z]
    out = []
    for x in xs:
        i = int(np.floor(x))
        f = x - i
        column = (1 - f) * plane[i] + f * plane[min(i + 1, plane.shape[0] - 1)]
        k = int(np.argmax(column >= level))
        assert k > 0 and column[k - 1] < level
        out.append(k - 1 + (level - column[k - 1]) / (column[k] - column[k - 1]))
    return np.array(out)


def test_the_edge_left_by_a_hidden_class_follows_the_outline_not_the_lattice():
    """Moving hidden voxels to a transparent value put the surface beside them on the voxel lattice:
    a sawtooth of 1 voxel about the plane (RMS ~0.29 voxels). The fade keeps it within 0.1 voxel of
    the plane, at the plane's slope, with the bone's intensity nowhere left."""
    scalar, labels = tilted_bone()
    xs = np.arange(8.0, 32.0, 0.125)
    edge = MUSCLE.transparent_edge()
    level = edge + 0.5 * (100.0 - edge)

    def residual(field):
        depth = crossing_depths(field, level, xs)
        fit = np.polyfit(xs, depth, 1)
        return fit[0], float(np.sqrt(np.mean((depth - np.polyval(fit, xs)) ** 2)))

    moved = torch.where(labels == 2, torch.tensor(edge), scalar)            # the former way
    faded = hide_voxels(scalar, labels, (2,), MUSCLE)
    slope_moved, rms_moved = residual(moved)
    slope, rms = residual(faded)
    assert rms_moved > 0.2 and rms < 0.1, (rms_moved, rms)
    assert slope == pytest.approx(0.25, abs=0.02)
    assert float(faded.max()) <= 100.0 + 1e-4                               # no trace of the bone
    # deep in the bone: a margin below the transparent edge (1 % of the TF's span); far above it:
    # untouched, bit for bit
    x, _, z = np.meshgrid(*(np.arange(n) for n in scalar.shape), indexing="ij")
    reach = int(np.ceil(3 * HIDE_FADE_SIGMA)) + 1
    deep = torch.from_numpy(z < 3 + 0.25 * x - reach)
    far = torch.from_numpy(z >= 3 + 0.25 * x + reach)
    lo, hi = MUSCLE.x_range
    assert torch.allclose(faded[deep], torch.tensor(edge - HIDE_FADE_MARGIN * (hi - lo)))
    assert torch.equal(faded[far], scalar[far])


def test_the_faded_field_reads_through_the_cubic_spline_without_ringing():
    """The views at rest read the scalar through its interpolating cubic B-spline, which rings at a
    jump: voxels moved to -3024 HU beside 100 HU tissue overshot to ~600 HU (a bright rim). The fade
    is smooth: nothing above the tissue's 100 HU, and cells whose corners are all transparent stay so."""
    import torch.nn.functional as F
    from rfmweb.render.sampling import bspline_upsample
    scalar, labels = tilted_bone()
    faded = hide_voxels(scalar, labels, (2,), MUSCLE)
    spline = bspline_upsample(faded)                              # the spline at half the spacing
    assert float(spline.max()) < 101.0
    corners = F.max_pool3d(faded[None, None], 2, stride=1)[0, 0]   # each cell's brightest corner
    centres = spline[1::2, 1::2, 1::2]
    clear = corners < MUSCLE.transparent_edge()
    assert clear.sum() > 1000 and float(centres[clear].max()) < MUSCLE.transparent_edge()


def test_hiding_a_class_the_tf_does_not_show_changes_nothing():
    """Air hidden under CT-Muscle (transparent anyway): the scalar comes back as it was; numpy in,
    numpy out, with labels of any integer type."""
    scalar, labels = tilted_bone()
    scalar = torch.where(labels == 2, torch.tensor(-1000.0), scalar)
    out = hide_voxels(scalar.numpy(), labels.numpy().astype(np.uint16), (2,), MUSCLE)
    assert isinstance(out, np.ndarray) and np.array_equal(out, scalar.numpy())
    same = hide_voxels(scalar, labels, (), MUSCLE)
    assert same is scalar


def test_a_tf_nowhere_transparent_hides_through_the_class_table_alone():
    scalar, labels = tilted_bone()
    fog = TransferFunction("fog", color=((0.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)),
                           opacity=((-3000.0, 0.1), (3000.0, 0.2)))
    assert fog.transparent_value() is None and fog.transparent_edge() is None
    assert hide_voxels(scalar, labels, (2,), fog) is scalar
    table = ClassTable((ClassStyle(1, "soft", (1.0, 0.0, 0.0)), ClassStyle(2, "bone", (0.0, 1.0, 0.0), visible=False)))
    assert marched_classes(table, fog) is table
    rgba, _ = marched_classes(table, fog).lookup(2)
    assert rgba[2, 3] == 0.0


def test_transparent_edge_is_the_zero_point_beside_the_visible_range():
    assert MUSCLE.transparent_value() == -3024.0 and MUSCLE.transparent_edge() == pytest.approx(-155.407)
    assert preset("CT-Lung").transparent_edge() == -600.0
    falling = TransferFunction("falling", color=((0.0, 1.0, 1.0, 1.0), (1.0, 1.0, 1.0, 1.0)),
                               opacity=((0.0, 0.8), (10.0, 0.5), (20.0, 0.0), (30.0, 0.0)))
    assert falling.transparent_edge() == 20.0 and falling.transparent_value() == 20.0


def test_a_faded_class_keeps_opacity_one_and_the_tf_colour_in_the_marcher_table():
    """The scalar fades a hidden class out; the class table must not cut that fade back to the
    lattice (opacity 0 on the hidden voxels' corners). Solid tables keep hiding by label."""
    styles = (ClassStyle(1, "soft", (1.0, 0.0, 0.0), opacity=0.5), ClassStyle(2, "bone", (0.0, 1.0, 0.0), visible=False))
    coloured = ClassTable(styles, use_class_colors=True)
    marched = marched_classes(coloured, MUSCLE)
    assert marched.hidden_in_scalar and marched.hidden == (2,)
    rgba, use = marched.lookup(2)
    assert rgba[2].tolist() == [1.0, 1.0, 1.0, 1.0] and use[2] == 0.0
    assert rgba[1, 3] == 0.5 and use[1] == 1.0
    assert marched_classes(ClassTable(styles[1:]), MUSCLE).is_trivial            # hiding alone: nothing left to do
    assert not ClassTable(styles[1:]).is_trivial
    solid = marched_classes(ClassTable(styles, mode="solid"), MUSCLE)
    assert solid.lookup(2)[0][2, 3] == 0.0


def test_the_prepared_grid_changes_only_when_the_fade_would():
    """Dragging an opacity point up or down keeps the faded grid (only where the TF is 0 matters)."""
    taller = TransferFunction(MUSCLE.name, MUSCLE.color, tuple((x, min(1.0, a * 1.2)) for x, a in MUSCLE.opacity),
                              MUSCLE.gradient_opacity, MUSCLE.shading, MUSCLE.unit_distance)
    assert hide_key((2,), taller) == hide_key((2,), MUSCLE)
    assert hide_key((2,), MUSCLE.shifted(10.0)) != hide_key((2,), MUSCLE)
    assert hide_key((), MUSCLE) == hide_key((), MUSCLE.shifted(10.0))


def test_a_tf_drag_reuses_the_blurs_and_gives_the_same_field():
    """:class:`HiddenFade` keeps its Gaussian blurs while the hidden voxels the TF shows stay the same
    (a drag of CT-Muscle over a hidden bone) and makes them again when that set changes; every
    result equals a fresh :func:`hide_voxels`."""
    scalar, labels = tilted_bone()
    scalar = scalar.clone()
    scalar[labels == 2] += torch.linspace(0, 400, int((labels == 2).sum()))  # bone from 1000 to 1400 HU
    fade = HiddenFade()
    first = fade(scalar, labels, (2,), MUSCLE)
    blurs = fade._blurs.w
    for shift in (1.0, 5.0, 40.0):
        tf = MUSCLE.shifted(shift)
        assert torch.equal(fade(scalar, labels, (2,), tf), hide_voxels(scalar, labels, (2,), tf))
        assert fade._blurs.w is blurs                                     # every bone voxel still shown
    assert not torch.equal(fade(scalar, labels, (2,), MUSCLE.shifted(5.0)), first)
    # CT-Bone shows only part of this bone: another set of hidden voxels, blurred again
    bone = preset("CT-Bone").shifted(1216.0)                           # transparent below 1200 HU
    assert torch.equal(fade(scalar, labels, (2,), bone), hide_voxels(scalar, labels, (2,), bone))
    assert fade._blurs.w is not blurs
    # another scalar (a new scan, another mix) or label map: made again, never mixed up
    other = scalar * 0.5
    assert torch.equal(fade(other, labels, (2,), MUSCLE), hide_voxels(other, labels, (2,), MUSCLE))
