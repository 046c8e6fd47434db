"""The compare layout's difference view: heat map, SSIM and PSNR of two views, following both; a click
through the trame adapter places the crosshair; the app's difference switch."""

from __future__ import annotations

import numpy as np
import pytest

from rfmweb.session import RenderSession, link_cameras
from rfmweb.session import messages as m
from rfmweb.render.slices import WINDOW_PRESETS, window_range
from rfmweb.session.difference import DifferenceSession, difference_image

WINDOW_PRESETS_BONE = window_range(*WINDOW_PRESETS["bone"])

SIZE = 64


def test_difference_image_of_known_pictures():
    a = np.full((32, 32, 3), 100, np.uint8)
    heat, s, p = difference_image(a, a)
    assert not heat.any() and s == pytest.approx(1.0) and np.isinf(p)
    b = a.copy()
    b[8:16, 8:16] = 164  # 64 / 255 = 0.25 brighter: full heat (white) there, black elsewhere
    heat, s, p = difference_image(a, b)
    assert (heat[8:16, 8:16] == 255).all() and not heat[20:, 20:].any()
    assert s < 1.0
    assert p == pytest.approx(10 * np.log10(1 / ((64 / 255) ** 2 * 64 / 1024)), rel=1e-4)
    with pytest.raises(ValueError):
        difference_image(a, a[:16])


def test_difference_session_follows_both_views(small_ct):
    a = RenderSession(small_ct, renderer="vtk", preset="CT-Bone", width=SIZE, height=SIZE)
    b = RenderSession(small_ct, renderer="vtk", preset="CT-Bone", width=SIZE, height=SIZE)
    unlink = link_cameras([a, b])
    diff = DifferenceSession(a, b, width=SIZE, height=SIZE)
    try:
        same = diff.render()
        assert not same.any() and diff.figures[0] == pytest.approx(1.0)
        assert diff.note(diff.snapshot()).startswith("SSIM 1.000")
        version = diff.version
        b.set_preset("CT-Muscle")
        assert diff.version > version  # a change in either view renders the difference again
        heat = diff.render()
        assert heat.any() and diff.figures[0] < 0.99 and np.isfinite(diff.figures[1])
        # orbiting one view moves the other, not back: the difference view never drives the cameras
        a.orbit(40, 0)
        assert b.camera == a.camera.resized(SIZE, SIZE) and diff.render().shape == (SIZE, SIZE, 3)
        assert "slices" not in diff.note(diff.snapshot())
        # on slices both views show the same data: the pane says so beside its "∞"
        for s in (a, b):
            s.set_view_mode("axial")
        diff.render()
        assert diff.note(diff.snapshot()).endswith("slices: the same data in both views (renderers differ in 3-D)")
    finally:
        unlink()
        diff.close()


def test_the_difference_converges_with_the_views_it_compares(small_ct):
    """At rest each view shows the mean of jittered frames: the difference compares those, pass by pass,
    so its last figures score the two pictures the views end on (not two single noisy frames)."""
    a = RenderSession(small_ct, renderer="compiled", preset="CT-Bone", width=SIZE, height=SIZE)
    b = RenderSession(small_ct, renderer="compiled", preset="CT-Muscle", width=SIZE, height=SIZE)
    diff = DifferenceSession(a, b, width=SIZE, height=SIZE)
    try:
        snap = diff.snapshot()
        assert diff.progressive_renderer(snap) == "difference"
        passes = list(diff.progressive(snap, 1, 4))
        assert [n for _, n in passes] == [1, 2, 3, 4]
        ends = [list(s.progressive(s.snapshot(), 1, 4))[-1][0] for s in (a, b)]
        heat, ssim_end, psnr_end = difference_image(*ends)
        np.testing.assert_array_equal(passes[-1][0], heat)
        assert diff.figures == (ssim_end, psnr_end)
        first = difference_image(*(list(s.progressive(s.snapshot(), 1, 1))[0][0] for s in (a, b)))
        assert not np.array_equal(first[0], heat)          # the first pass differs from the converged one
        a.set_still_renderer("pathtrace")       # a cinematic still: it refines in the views' passes
        assert diff.still_renderer == "pathtrace" and diff.progressive_renderer(diff.snapshot()) == "difference"
        a.set_still_renderer(None)
        assert diff.still_renderer is None
        for s in (a, b):                                   # slice views do not refine: neither does it
            s.set_view_mode("axial")
        assert diff.progressive_renderer(diff.snapshot()) is None
    finally:
        diff.close()


def test_a_click_in_the_trame_view_places_the_crosshair(small_ct):
    from rfmweb.app.frames import FrameAdapter
    from rfmweb.session.controller import ViewController

    session = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    session.set_view_mode("axial")
    control = ViewController([session])
    adapter = FrameAdapter("v", 0, control, on_frame=lambda f: None, on_status=lambda busy, msg: None)
    adapter.session = session  # events only: no stream needed
    adapter._css_height = SIZE
    press = {"type": "LeftButtonPress", "x": 30, "y": 20, "buttonLeft": 1}
    adapter.on_interaction("t", press)
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease"})
    assert session.cursor is not None
    ijk = np.rint(session.slice_geometry().to_voxel([30], [SIZE - 20])[0])
    np.testing.assert_allclose(session.cursor, (small_ct.affine @ np.append(ijk, 1))[:3])
    # a drag is not a click; a shift-click pans, it does not move the cursor
    cursor = session.cursor
    adapter.on_interaction("t", {**press, "x": 10})
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease", "x": 40})
    adapter.on_interaction("t", {**press, "shiftKey": True})
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease", "shiftKey": True})
    assert session.cursor == cursor
    control.close()


def test_two_fingers_pinch_and_pan_and_never_click(small_ct):
    """A tablet: vtk.js turns the first finger into a left button, released when the second lands
    (a "click" that moved the cursor under the fingers); the page says "Touches" first. A pinch
    zooms (the 3-D camera; a slice's magnification), a two-finger drag pans."""
    from rfmweb.app.frames import FrameAdapter
    from rfmweb.session.controller import ViewController

    session = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    control = ViewController([session])
    adapter = FrameAdapter("v", 0, control, on_frame=lambda f: None, on_status=lambda busy, msg: None)
    adapter.session = session
    adapter._css_height = SIZE
    cam = session.camera
    finger = {"type": "LeftButtonPress", "x": 30, "y": 20, "buttonLeft": 1}
    for mode in ("3d", "axial"):
        session.set_view_mode(mode)
        adapter.on_interaction("t", finger)
        adapter.on_interaction("t", {"type": "Touches", "n": 2})
        adapter.on_interaction("t", {**finger, "type": "LeftButtonRelease"})
        adapter.on_interaction("t", {"type": "StartPinch", "factor": 1.0})
        zoom = session.slice_zoom if mode == "axial" else None
        for f in (1.2, 1.6, 2.0):
            adapter.on_interaction("t", {"type": "Pinch", "factor": f})
        adapter.on_interaction("t", {"type": "Touches", "n": 0})      # the page's word comes first, then
        adapter.on_interaction("t", {"type": "EndPinch"})             # vtk.js's press and release of the
        adapter.on_interaction("t", {**finger, "type": "LeftButtonPress"})     # finger lifted last
        adapter.on_interaction("t", {**finger, "type": "LeftButtonRelease"})
        assert session.cursor is None
        if mode == "3d":
            assert session.camera.distance == pytest.approx(cam.distance / 2, rel=1e-6)
            assert session.camera.azimuth == cam.azimuth
        else:
            assert session.slice_zoom == pytest.approx(2 * zoom, rel=1e-6)
    session.set_view_mode("3d")
    target = session.camera.target
    adapter.on_interaction("t", {"type": "Touches", "n": 2})
    for tx in (0.0, 10.0, 25.0):
        adapter.on_interaction("t", {"type": "Pan" if tx else "StartPan", "translation": [tx, 0.0]})
    adapter._flush()
    moved = np.linalg.norm(np.subtract(session.camera.target, target))
    assert moved == pytest.approx(25 * session.camera.mm_per_pixel, rel=1e-6)
    adapter.on_interaction("t", {"type": "Touches", "n": 0})
    adapter.on_interaction("t", {**finger, "type": "LeftButtonRelease"})   # vtk.js's last event of the lift
    session.set_view_mode("axial")                                   # a tap is still a click
    adapter.on_interaction("t", finger)
    adapter.on_interaction("t", {**finger, "type": "LeftButtonRelease"})
    assert session.cursor is not None
    control.close()


def test_one_finger_steps_slices_where_a_mouse_pans(small_ct):
    """A tablet had no way to step slices but the drawer's slider: a swipe panned. One finger dragged
    down a slice view now steps to lower slices (8 px a slice, as the wheel scrolled down); a mouse
    drag still pans, and a tap still places the cursor."""
    from rfmweb.app.frames import SWIPE_PX_PER_SLICE, FrameAdapter
    from rfmweb.session.controller import ViewController

    session = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    session.set_view_mode("axial")
    control = ViewController([session])
    adapter = FrameAdapter("v", 0, control, on_frame=lambda f: None, on_status=lambda busy, msg: None)
    adapter.session = session
    adapter._css_height = SIZE
    start = session.slice_indices["axial"]
    press = {"type": "LeftButtonPress", "x": 40, "y": 60, "buttonLeft": 1}
    for n in (2, 0):                      # a pinch whose lift's events came in another order: no tail
        adapter.on_interaction("t", {"type": "Touches", "n": n})
    adapter.on_interaction("t", {"type": "Touches", "n": 1})
    adapter.on_interaction("t", press)
    for y in (55, 50, 44, 39):                                   # trame-rca's y points up: the finger goes down
        adapter.on_interaction("t", {**press, "type": "MouseMove", "y": y})
    adapter.on_interaction("t", {"type": "Touches", "n": 0})     # the page's word, then trame-rca's last events
    adapter.on_interaction("t", {**press, "type": "MouseMove", "y": 36})
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease", "y": 36})
    assert session.slice_indices["axial"] == start - int(24 // SWIPE_PX_PER_SLICE)
    assert session.slice_pan == (0.0, 0.0) and session.cursor is None
    adapter.on_interaction("t", {"type": "Touches", "n": 1})     # a tap
    adapter.on_interaction("t", press)
    adapter.on_interaction("t", {"type": "Touches", "n": 0})
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease"})
    assert session.cursor is not None
    index = session.slice_indices["axial"]
    adapter.on_interaction("t", press)                           # the mouse: a drag pans
    adapter.on_interaction("t", {**press, "type": "MouseMove", "y": 30})
    adapter.on_interaction("t", {**press, "type": "LeftButtonRelease", "y": 30})
    adapter._flush()
    assert session.slice_indices["axial"] == index and session.slice_pan != (0.0, 0.0)
    control.close()


def test_the_app_shows_the_difference_only_beside_a_comparison(small_ct):
    from trame.app import get_server

    from rfmweb.app.server import build_app

    server = get_server("rfmweb-difference-test", client_type="vue3")
    _, app = build_app(small_ct, server=server, renderer="vtk")
    try:
        app.set_difference(True)  # no comparison yet: refused (logged), nothing attached
        assert app.views["view_c"].stream is None
        app.set_compare(True)
        app.set_difference(True)
        assert app.views["view_c"].session is app.difference and app.typed.data.difference
        png = app.views["view_c"].stream.screenshot()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert app.difference.figures is not None and -1 <= app.difference.figures[0] <= 1
        a, b = app.sessions["view_a"], app.sessions["view_b"]
        app.set_linked(False)
        a.orbit(45, 0)
        assert b.camera.azimuth != a.camera.azimuth
        app.set_linked(True)
        a.orbit(10, 0)
        assert b.camera.azimuth == a.camera.azimuth
    finally:
        app.close()


def test_linked_cameras_toggle(small_ct):
    from rfmweb.widgets import Compare

    w = Compare.renderers(small_ct, ["vtk", "vtk"], width=SIZE, height=SIZE)
    a, b = w.sessions
    try:
        a.orbit(30, 0)
        assert b.camera == a.camera
        w.set_linked(False)
        a.orbit(30, 0)
        assert b.camera != a.camera
        w.set_linked(True)
        b.orbit(-10, 5)
        assert a.camera == b.camera
    finally:
        w.close()


def test_a_flood_of_pointer_moves_is_merged_into_one_drag(small_ct):
    """Thousands of MouseMove events within one coalescing interval reach the controller as one drag
    with the summed deltas: a client flooding events costs one camera change per interval."""
    from rfmweb.app.frames import FrameAdapter
    from rfmweb.session.controller import ViewController

    session = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    control = ViewController([session])
    handled = []
    original = control.handle
    control.handle = lambda msg: (handled.append(msg), original(msg))
    adapter = FrameAdapter("v", 0, control, on_frame=lambda f: None, on_status=lambda busy, msg: None)
    adapter.session = session

    class Loop:  # a loop that never runs its callbacks: only the final release flushes
        def call_soon_threadsafe(self, *args):
            pass

    adapter.loop = Loop()
    start = session.camera
    adapter.on_interaction("t", {"type": "LeftButtonPress", "x": 0, "y": 0})
    adapter._last_flush = float("inf")  # as if a drag had just been handled: everything now merges
    for k in range(1, 2001):
        adapter.on_interaction("t", {"type": "MouseMove", "x": 0.05 * k, "y": 0})
    assert not [h for h in handled if isinstance(h, m.Drag)]
    adapter.on_interaction("t", {"type": "LeftButtonRelease", "x": 100, "y": 0})
    (drag,) = [h for h in handled if isinstance(h, m.Drag)]
    assert drag.dx == pytest.approx(100.0) and drag.dy == 0
    expected = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    expected.orbit(100.0, 0.0)
    assert session.camera == expected.camera != start
    control.close()


def test_four_up_planes_share_the_crosshair_with_the_main_view(small_ct):
    """Four views: the main (3-D) view and axial, coronal and sagittal ones; a click on one plane moves
    the others (and the 3-D cursor) there; each keeps its own plane; compare replaces the layout."""
    from trame.app import get_server

    from rfmweb.app.server import build_app

    _, app = build_app(small_ct, server=get_server("rfmweb-four-up-test", client_type="vue3"), renderer="vtk")
    try:
        main = app.sessions["view_a"]
        main.set_view_mode("axial")
        main.set_slice(main.slice_index - 1)          # a radiologist stepped one slice down, then turned Four on
        main.set_view_mode("coronal")
        main.set_slice(main.slice_index + 2)
        was = dict(main.slice_indices)
        app.set_four_up(True)
        axial, coronal, sagittal = (app.sessions[n] for n in ("view_d", "view_e", "view_f"))
        assert [s.mode for s in (axial, coronal, sagittal)] == ["axial", "coronal", "sagittal"]
        assert [s.slice_index for s in (axial, coronal, sagittal)] == [was[m] for m in ("axial", "coronal", "sagittal")]
        assert all(app.views[n].stream is not None for n in ("view_d", "view_e", "view_f"))
        axial.resize(SIZE, SIZE)
        view = app.views["view_d"]
        view._css_height = SIZE
        press = {"type": "LeftButtonPress", "x": 30, "y": 40}
        view.on_interaction("t", press)
        view.on_interaction("t", {**press, "type": "LeftButtonRelease"})
        ijk = np.rint(axial.slice_geometry().to_voxel([30], [SIZE - 40])[0]).astype(int)
        assert app.sessions["view_a"].cursor == axial.cursor is not None
        assert coronal.slice_index == ijk[1] and sagittal.slice_index == ijk[0] and axial.slice_index == ijk[2]
        assert coronal.mode == "coronal" and app.sessions["view_a"].mode == "3d"   # planes keep their own
        app.set_window_preset("bone")   # the grey window applies to every slice view
        assert coronal.window == axial.window is not None
        drag = {"type": "RightButtonPress", "x": 50, "y": 50}   # and so does a window/level drag on one
        view.on_interaction("t", drag)
        view.on_interaction("t", {"type": "MouseMove", "x": 80, "y": 30})
        view.on_interaction("t", {**drag, "type": "RightButtonRelease", "x": 80, "y": 30})
        assert axial.window != WINDOW_PRESETS_BONE
        np.testing.assert_allclose(coronal.window, axial.window)
        np.testing.assert_allclose(sagittal.window, axial.window)
        app.set_four_up(False)                        # the main view goes back to the plane it showed
        assert main.mode == "coronal" and app.views["view_d"].stream is None
        app.set_four_up(True)
        app.set_compare(True)
        assert app.views["view_d"].stream is None and not app.typed.data.four_up
    finally:
        app.close()
