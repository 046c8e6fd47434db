"""Slice views: radiological orientation, true aspect, label overlay, pixel -> voxel mapping."""

from __future__ import annotations

import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.render.slices import render_slice, slice_geometry
from rfmweb.transfer import ClassTable
from rfmweb.volume import LabelClass, Volume

CLASSES = (LabelClass(0, "bg", (0, 0, 0)), LabelClass(1, "red", (1, 0, 0)), LabelClass(2, "green", (0, 1, 0)))


def marker_volume(spacing=(1.0, 1.0, 1.0)):
    """A 20x30x10 grid with a red voxel at the patient's right-anterior-superior corner region."""
    data = np.zeros((20, 30, 10), np.float32)
    labels = np.zeros((20, 30, 10), np.uint8)
    labels[16, 25, 8] = 1          # right (+x), anterior (+y), superior (+z)
    labels[2, 3, 1] = 2            # left, posterior, inferior
    data[16, 25, 8] = 100.0
    return Volume(data, np.diag([*spacing, 1.0]), modality="MR", labels=labels, classes=CLASSES)


def centroid(img, color):
    mask = (img[..., 0] > 200) if color == "red" else (img[..., 1] > 200)
    mask &= img.sum(-1) < 600
    vs, us = np.nonzero(mask)
    assert len(us), f"no {color} pixels"
    return us.mean() + 0.5, vs.mean() + 0.5


@pytest.mark.parametrize("axis, index, red_left, red_top", [
    ("axial", 8, True, True),      # right on screen left, anterior up
    ("coronal", 25, True, True),   # right on screen left, superior up
    ("sagittal", 16, True, True),  # anterior on screen left, superior up
])
def test_radiological_orientation(axis, index, red_left, red_top):
    vol = marker_volume()
    img, geo = render_slice(vol, axis, index, width=120, height=120, overlay=1.0)
    u, v = centroid(img, "red")
    assert (u < 60) == red_left and (v < 60) == red_top
    ijk = geo.to_voxel([u], [v])[0]
    np.testing.assert_allclose(ijk, [16, 25, 8], atol=0.5)


def test_true_aspect_and_letterbox():
    vol = marker_volume(spacing=(1.0, 1.0, 3.0))  # coronal: 20 mm wide, 30 mm tall
    img, geo = render_slice(vol, "coronal", 3, width=200, height=200, overlay=0.0, window=(-1, 1))
    assert geo.mm_per_px == pytest.approx(30 / 200)
    cols = np.nonzero(img.sum(axis=(0, 2)))[0]  # the data (grey 0.5) fills 20/30 of the width
    assert abs(len(cols) - 200 * 20 / 30) <= 2
    # round trip: the centre of pixel (u, v) maps into the voxel whose box contains it
    ijk = geo.to_voxel([100.0], [100.0])[0]
    assert ijk[1] == 3 and 0 <= ijk[0] <= 19 and 0 <= ijk[2] <= 9


def test_overlay_styles_and_hidden_classes():
    vol = marker_volume()
    table = ClassTable.from_classes(CLASSES)
    img, _ = render_slice(vol, "axial", 1, width=100, height=150, overlay=1.0)
    centroid(img, "green")
    hidden, _ = render_slice(vol, "axial", 1, width=100, height=150, overlay=1.0, classes=table.updated(2, visible=False))
    assert hidden[..., 1].max() < 200
    none, _ = render_slice(vol, "axial", 1, width=100, height=150, overlay=0.0)
    assert none[..., 1].max() < 200


def test_bad_arguments():
    vol = marker_volume()
    with pytest.raises(InputError, match="axis"):
        slice_geometry(vol, "oblique", 0, 64, 64)
    with pytest.raises(InputError, match="0..9"):
        slice_geometry(vol, "axial", 10, 64, 64)


def test_an_oblique_scan_says_so_on_its_slice_views():
    """An oblique scan's "axial" view is its tilted voxel plane: its letters are only the nearest
    directions, and the view said nothing of the tilt."""
    from rfmweb.session import RenderSession
    from rfmweb.session.slice_frame import LETTER_COLOR

    data = np.random.default_rng(0).normal(0, 50, (24, 24, 24)).astype(np.float32)
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    tilted = np.eye(4)
    tilted[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    corners = []
    for affine, deg in ((np.eye(4), 0.0), (tilted, 20.0)):
        vol = Volume(data, affine, modality="CT")
        assert vol.obliquity_deg == pytest.approx(deg, abs=1e-6)
        session = RenderSession(vol, renderer="vtk", width=160, height=160)
        session.set_view_mode("axial")
        frame = session.render()
        corner = frame[:24, :80].astype(int)
        corners.append(int((np.abs(corner - LETTER_COLOR).sum(-1) < 60).sum()))
        session.close()
    assert corners[0] > 10 and corners[1] > corners[0] + 20, corners   # the plane's name; then the tilt too


def test_a_slice_view_says_which_slice_it_shows_and_where():
    """The slider said "21 / 40" and nothing else; four-view panes had no plane name. The frame now
    names its plane (top left) and its slice's number and position along the patient axis in mm
    (bottom right), as a PACS does."""
    from rfmweb.session import RenderSession
    from rfmweb.session.slice_frame import slice_position

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = (-9.0, 4.0, -10.0)
    vol = Volume(np.zeros((10, 10, 20), np.float32), affine, modality="CT")
    assert slice_position(vol, "axial", 5) == "6/20 · S 0.0 mm"
    assert slice_position(vol, "axial", 2) == "3/20 · I 6.0 mm"
    assert slice_position(vol, "coronal", 0) == "1/10 · A 4.0 mm"
    assert slice_position(vol, "sagittal", 1) == "2/10 · L 7.0 mm"      # RAS: +x is the patient's right
    assert slice_position(vol, "sagittal", 9) == "10/10 · R 9.0 mm"
    session = RenderSession(vol, renderer="vtk", width=200, height=160)
    session.set_view_mode("axial", 5)
    frames = [session.render()]
    session.set_view_mode("axial", 2)
    frames.append(session.render())
    session.close()
    corner = [f[-24:, 110:].astype(int) for f in frames]         # bottom right: the position text, in white
    assert all((c.min(-1) > 200).sum() > 20 for c in corner) and (corner[0] != corner[1]).any()


def test_a_slice_view_prints_its_window_on_the_image():
    """The window was only in the side panel; a capture of the view lost it. PACS print it on the
    image: "W 400 L 50" at the top right, following window changes."""
    from rfmweb.session import RenderSession
    from rfmweb.session.slice_frame import window_caption

    assert window_caption((-150.0, 250.0), "CT") == "W 400 L 50"
    assert window_caption((0.0, 1.0), "MR") == "W 1 L 0.5" and window_caption(None, "CT") == ""
    vol = Volume(np.zeros((10, 10, 20), np.float32), np.diag([2.0, 2.0, 2.0, 1.0]), modality="CT")
    session = RenderSession(vol, renderer="vtk", width=240, height=160)
    session.set_view_mode("axial", 5)
    frames = []
    for preset in ("brain", "bone"):
        session.set_window_preset(preset)
        frames.append(session.render())
    session.close()
    corner = [f[:24, 150:].astype(int) for f in frames]           # top right: the window text, in yellow
    assert all(((c[..., 0] > 200) & (c[..., 2] < 120)).sum() > 20 for c in corner)
    assert (corner[0] != corner[1]).any()


def test_a_slice_of_a_multi_sequence_scan_names_its_sequence_on_the_image():
    """Which MR sequence a slice showed was only in the sidebar, so a capture lost it: the plane's
    name at the top left now carries it ("axial · FLAIR"); a one-sequence scan's does not."""
    from rfmweb.session import RenderSession

    data = np.random.default_rng(1).normal(100, 20, (20, 20, 10)).astype(np.float32)
    corners = {}
    for channels in (("FLAIR", "T1c"), ("T1",)):
        vol = Volume(np.stack([data] * len(channels)), np.eye(4), modality="MR", channels=channels)
        session = RenderSession(vol, renderer="vtk", width=240, height=160)
        session.set_view_mode("axial", 5)
        for channel in range(len(channels)):
            session.set_slice_channel(channel)
            corners[channels[channel]] = session.render()[:20, :120].astype(int)
        session.close()
    changed = [(np.abs(corners[name] - corners["T1"]).sum(-1) > 100).sum() for name in ("FLAIR", "T1c")]
    assert min(changed) > 20 and (corners["FLAIR"] != corners["T1c"]).any()


def test_a_magnified_slice_is_interpolated_bicubically():
    """PACS viewers magnify with a cubic kernel (sharper than bilinear, no blocks): one bright voxel
    drawn 24 px wide peaks at its centre and, half a voxel out, reads Keys' cubic weight 0.594
    (bilinear: 0.5); the ring beyond it dips below black and is clipped to 0."""
    data = np.zeros((9, 9, 9), np.float32)
    data[4, 4, 4] = 1.0
    vol = Volume(data, np.eye(4), modality="MR")
    size = 9 * 24
    image, geo = render_slice(vol, "axial", 4, width=size, height=size, window=(0.0, 1.0))
    assert geo.mm_per_px == pytest.approx(1 / 24)
    row = image[size // 2, :, 0].astype(float) / 255    # through the voxel's centre, left to right
    centre = size // 2
    assert row[centre] > 0.97
    half = (row[centre - 12] + row[centre + 11]) / 2     # half a voxel either side of the centre
    assert half == pytest.approx(0.594, abs=0.03)
    assert row.min() == 0.0 and np.isfinite(row).all()


def test_the_auto_window_leaves_a_masked_background_out_and_is_never_zero_wide():
    """A skull-stripped MR is mostly zeros: counted, the 99th percentile fell inside the brain (FLAIR's
    bright half blown out). A uniform volume's window was 0 wide ("W 0")."""
    from rfmweb.render.slices import default_window

    brain = np.zeros((64, 64, 40), np.float32)
    brain[16:48, 16:48, 10:30] = np.linspace(100, 200, 32 * 32 * 20).reshape(32, 32, 20)   # 12.5 %: the brain
    lo, hi = default_window(brain)
    assert 100 < lo < 103 and 197 < hi < 200
    assert default_window(np.full((8, 8, 8), 300.0, np.float32)) == (299.5, 300.5)
    ct = np.random.default_rng(0).normal(0, 100, (32, 32, 32)).astype(np.float32)       # no background: as before
    assert default_window(ct) == pytest.approx(tuple(np.percentile(ct, [1, 99])), rel=0.05)
