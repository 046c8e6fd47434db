"""The shared controller: one scripted message sequence through each front end's controller gives the
same session state and the same frames; window/level maths; the label overlay toggle; probes."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rfmweb.render.slices import WINDOW_PRESETS, drag_window, render_slice, window_grey, window_range
from rfmweb.session import RenderSession
from rfmweb.session import messages as m
from rfmweb.session.controller import ViewController, window_readout
from rfmweb.volume import LabelClass, Volume

SIZE = 64
SCRIPT = [m.SetPreset(0, "CT-Muscle"), m.SetClass(0, 2, visible=False), m.SetClass(0, 1, opacity=0.5),
          m.SetClassColors(0, True), m.Drag(0, "left", 30, -10), m.Wheel(0, -120), m.Key(0, "ArrowUp"),
          m.SetMode(0, "axial"), m.Key(0, "PageUp"),
          m.SetSlice(0, 5), m.SetWindow(0, preset="bone"), m.Drag(0, "right", 12, -8),
          m.Drag(0, "left", 5, 3, shift=True), m.Wheel(0, -240, ctrl=True), m.SetLabelOverlay(0, True, 0.6),
          m.PointAt(0, 20, 24), m.Annotate(0, "left orbit"), m.SetMode(0, "coronal")]


def _state(s: RenderSession) -> tuple:
    return (s.preset_name, s.renderer_name, s.classes, s.camera, s.mode, s.slice_index, s.window, s.slice_zoom,
            s.slice_pan, s.label_overlay, s.overlay, s.cursor, s.annotations, dict(s.slice_indices))


def test_both_front_ends_give_the_same_state_and_frames(small_ct):
    """The trame app's and the widget's controllers, fed the same messages (the widget's as page JSON)."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.widgets import Viewer

    server = get_server("rfmweb-controller-test", client_type="vue3")
    _, app = build_app(small_ct, server=server, renderer="vtk")
    widget = Viewer(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    a, w = app.sessions["view_a"], widget.session
    try:
        a.resize(SIZE, SIZE)
        for msg in SCRIPT:
            app.control.handle(msg)
            content = {"type": msg.tag(), **{k: v for k, v in msg.__dict__.items() if v is not None}}
            widget._on_client_msg(widget, content, [])
        assert _state(a) == _state(w)
        assert a.mode == "coronal" and a.window is not None and a.slice_zoom > 1 and a.label_overlay
        assert a.cursor is not None and [n.text for n in a.annotations] == ["left orbit"]
        np.testing.assert_array_equal(a.render(), w.render())
    finally:
        app.close()
        widget.close()


def test_window_level_maths():
    assert window_range(400, 50) == (-150, 250)
    lo, hi = window_range(*WINDOW_PRESETS["brain"])  # W80 L40: 0..80 HU
    assert (lo, hi) == (0, 80)
    np.testing.assert_allclose(window_grey([-1000, 0, 40, 60, 80, 3000], lo, hi), [0, 0, 0.5, 0.75, 1, 1])
    # right widens, down raises the level; each pixel moves 1 % of the width (0.8 HU on a brain window),
    # the width it has at that pixel
    lo2, hi2 = drag_window(lo, hi, dx=0, dy=20, span=4000)
    assert hi2 - lo2 == pytest.approx(80) and (lo2 + hi2) / 2 == pytest.approx(40 + 16)
    lo2, hi2 = drag_window(lo, hi, dx=40, dy=0, span=4000)
    assert hi2 - lo2 == pytest.approx(80 * math.exp(0.4))
    # at most span/400 (a bone window W2000 moves 10 HU, not 20), at least span/40000
    lo3, hi3 = drag_window(*window_range(2000, 500), dx=10, dy=-10, span=4000)
    assert hi3 - lo3 == pytest.approx(2100) and (lo3 + hi3) / 2 == pytest.approx(400)
    lo4, hi4 = drag_window(*window_range(1, 0), dx=90, dy=0, span=4000)
    assert hi4 - lo4 == pytest.approx(1 + 9)                      # 0.1 HU a pixel up to W10
    lo4, hi4 = drag_window(*window_range(1, 0), dx=-100, dy=0, span=4000)
    assert hi4 - lo4 == pytest.approx(0.1)                        # no narrower than the finest step
    # a drag ends where it ends however the front end split it (each message compounded 1 % of the
    # width per pixel: 100 px in 10 messages made W80 -> 207, in one -> 160)
    for dx, dy in ((100, 0), (0, 100), (-300, 0), (600, 0), (80, 80), (-700, -40)):
        for start in (window_range(80, 40), window_range(3000, 500), window_range(2, 0)):
            whole, parts = drag_window(*start, dx, dy, span=4000), start
            for _ in range(10):
                parts = drag_window(*parts, dx / 10, dy / 10, span=4000)
            np.testing.assert_allclose(parts, whole, rtol=1e-9, atol=1e-6 if dx * dy == 0 else 0.02 * abs(dy))
    with pytest.raises(Exception, match="width"):
        window_range(0, 10)


def _hu_slab() -> Volume:
    """A 16^3 CT: HU = 100 * x - 400 (x = 0..15), a labelled cube in the middle."""
    data = (np.arange(16, dtype=np.float32)[:, None, None] * 100 - 400) * np.ones((1, 16, 16), np.float32)
    labels = np.zeros((16, 16, 16), np.uint8)
    labels[6:10, 6:10, 6:10] = 1
    return Volume(data, np.eye(4), modality="CT", labels=labels,
                  classes=(LabelClass(0, "bg", (0, 0, 0)), LabelClass(1, "red", (1, 0, 0))))


def test_a_known_hu_maps_to_the_expected_grey_and_the_overlay_toggles():
    vol = _hu_slab()
    s = RenderSession(vol, renderer="vtk", width=SIZE, height=SIZE)
    c = ViewController([s])
    c.handle(m.SetMode(0, "axial", 8))
    c.handle(m.SetWindow(0, width=400, level=200))  # 0..400 HU
    snap = s.snapshot()
    img, geo = render_slice(vol, "axial", 8, width=SIZE, height=SIZE, window=snap.slice_window, overlay=snap.overlay)
    # the pixel column over voxel x = 6 (200 HU, the level) is mid grey; x = 2 (-200 HU) black; x = 12 white
    for x, grey in ((6, 128), (2, 0), (12, 255)):
        u = int(round(((15 - x) + 0.5) / geo.mm_per_px + geo.offset[0]))  # the voxel centre: a pixel edge
        assert abs(img[SIZE // 2, u - 1:u + 1, 0].mean() - grey) <= 2, (x, img[SIZE // 2, u - 1:u + 1])
    assert (img[..., 0] == img[..., 2]).all(), "greyscale by default: no overlay colour"
    c.handle(m.SetLabelOverlay(0, True, 1.0))
    red = s.render()
    assert ((red[..., 0] > 200) & (red[..., 1] < 60)).sum() > 20, "the overlay draws the labelled cube in red"
    assert window_readout(s) == ("custom", "W 400 L 200 HU")
    c.handle(m.SetWindow(0, preset="bone"))
    assert window_readout(s)[0] == "bone"


def test_probe_reports_hu_and_mm_and_slice_zoom_pan(small_ct):
    vol = _hu_slab()
    s = RenderSession(vol, renderer="vtk", width=SIZE, height=SIZE)
    seen = []
    c = ViewController([s], on_probe=lambda i, text: seen.append(text))
    c.handle(m.SetMode(0, "axial", 8))
    geo = s.slice_geometry()
    u = ((15 - 6) + 0.5) / geo.mm_per_px + geo.offset[0]
    c.handle(m.Probe(0, u, SIZE / 2))
    assert seen and seen[-1].endswith("200 HU · red") and "mm" in seen[-1]   # the labelled cube's class
    c.handle(m.Probe(0, u + 4 / geo.mm_per_px, SIZE / 2))                  # x = 2: outside the cube
    assert seen[-1].endswith(" -200 HU")
    c.handle(m.Probe(0, 0.5, 0.5 + SIZE * 10))  # off the volume: the readout clears
    assert seen[-1] == ""
    c.handle(m.Wheel(0, -200, ctrl=True))
    assert s.slice_zoom > 1 and s.slice_geometry().mm_per_px < geo.mm_per_px
    c.handle(m.Drag(0, "middle", 10, 0))
    assert s.slice_pan[0] > 0
    c.handle(m.Wheel(0, 120))
    assert s.slice_index == 7, "the plain wheel steps slices"
    c.handle(m.ResetCamera(0))
    assert s.slice_zoom == 1 and s.slice_pan == (0.0, 0.0)


def test_the_wheel_steps_a_slice_per_notch_and_zooms_about_the_pointer():
    """Each wheel message stepped one slice whatever its delta: ten 2 px events of a trackpad flick went
    ten slices (30 mm), a 3-notch event one. Ctrl + wheel zoomed about the view's centre."""
    vol = _hu_slab()
    s = RenderSession(vol, renderer="vtk", width=SIZE, height=SIZE)
    c = ViewController([s])
    c.handle(m.SetMode(0, "axial", 8))
    for dy, index in ((2.0,) * 10, 8), ((-300.0,), 11), ((53.0, 53.0, 120.0), 8), ((-30.0,) * 7, 10), \
            ((30.0, -30.0, 30.0, -30.0), 10):
        for d in dy:
            c.handle(m.Wheel(0, d))
        assert s.slice_index == index, dy
    geo = s.slice_geometry()
    c.handle(m.Probe(0, 20.0, 30.0))                     # the pointer rests there
    under = geo.to_voxel([20.0], [30.0])[0]
    c.handle(m.Wheel(0, -300, ctrl=True))
    zoomed = s.slice_geometry()
    assert zoomed.zoom > 1.5
    np.testing.assert_allclose(zoomed.to_voxel([20.0], [30.0])[0], under, atol=1e-6)
    assert c.probes[0] == s.probe(20.0, 30.0).text()


def test_keys_on_a_focused_view_orbit_zoom_step_slices_and_reset():
    """The views could not be worked from the keyboard: both front ends now send the keys of
    :data:`~rfmweb.session.interaction.KEYS`, one list in three places."""
    import re
    from pathlib import Path

    from rfmweb.app.ui import CLIENT_SCRIPT
    from rfmweb.session.interaction import KEY_ORBIT_PX, KEYS, apply_drag

    vol = _hu_slab()
    s, twin = (RenderSession(vol, renderer="vtk", width=SIZE, height=SIZE) for _ in range(2))
    c = ViewController([s])
    home = s.camera
    c.handle(m.Key(0, "ArrowLeft"))
    apply_drag(twin, "left", -KEY_ORBIT_PX, 0)
    assert s.camera == twin.camera != home, "an arrow is a drag of KEY_ORBIT_PX"
    c.handle(m.Key(0, "+"))
    assert s.camera.distance < twin.camera.distance
    c.handle(m.Key(0, "Home"))
    assert s.camera == home
    c.handle(m.SetMode(0, "axial", 8))
    for key, index in (("ArrowUp", 9), ("PageUp", 10), ("ArrowDown", 9), ("ArrowLeft", 9)):
        c.handle(m.Key(0, key))
        assert s.slice_index == index, key
    zoom = s.slice_zoom
    c.handle(m.Key(0, "="))
    assert s.slice_zoom > zoom and s.slice_index == 9, "+ zooms a slice view; it steps no slice"
    with pytest.raises(m.MessageError, match="'key' must be one of"):
        m.parse_client_message({"type": "key", "view": 0, "key": "Delete"})
    lists = [re.search(pattern, text).group(1) for pattern, text in (
        (r"const KEYS = \[([^\]]*)\]", CLIENT_SCRIPT),
        (r"const VIEW_KEYS = \[([^\]]*)\]", (Path(__file__).parents[1] / "js" / "viewer.js").read_text()))]
    assert all(tuple(re.findall(r'"([^"]+)"', found)) == KEYS for found in lists)
