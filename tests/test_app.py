"""The trame web app without a browser: argument checks, flow control, bad input, CLI errors (HTTP security:
test_server_security.py)."""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.io import save_volume

KEY = "test-key_for-rfmweb"


@pytest.fixture(scope="module")
def small_files(small_ct, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("app")
    save_volume(small_ct, folder / "ct.nii.gz", folder / "labels.nii.gz")
    return folder / "ct.nii.gz", folder / "labels.nii.gz"


# -- serve() argument checks (before anything is loaded or started) ------------------------------------
def test_serve_refuses_public_host_without_key(small_ct):
    from rfmweb.app.server import serve
    with pytest.raises(InputError, match="auth key"):
        serve(small_ct, host="0.0.0.0")
    with pytest.raises(InputError, match="auth key"):
        serve(small_ct, host="192.168.1.20", port=0)


@pytest.mark.parametrize("key", ["short", "12345678", "0x1234abcd", "has space in it", "Infinity", "semi;colon!"])
def test_bad_auth_keys_are_refused(small_ct, key):
    from rfmweb.app.server import serve
    with pytest.raises(InputError, match="auth-key"):
        serve(small_ct, host="0.0.0.0", auth_key=key)


def test_loopback_hosts_and_good_keys():
    import secrets

    from rfmweb.app.server import check_auth_key, is_loopback
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org") and not is_loopback("10.0.0.1")
    assert check_auth_key(KEY) and check_auth_key(secrets.token_urlsafe())


# -- the CLI ------------------------------------------------------------------------------------------------
def _serve_args(**kw) -> argparse.Namespace:
    args = dict(volume=None, labels=None, splats=None, host="127.0.0.1", port=0, auth_key=None, auth_key_file=None,
                renderer=None, preset=None, open=False)
    args.update(kw)
    return argparse.Namespace(**args)


def test_cli_missing_file_exits_2_with_one_line(tmp_path):
    missing = tmp_path / "nope.nii.gz"
    res = subprocess.run([sys.executable, "-m", "rfmweb", "serve", str(missing), "--port", "0"],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert str(missing) in lines[0] and "no such file" in lines[0]
    assert "Traceback" not in res.stderr


@pytest.mark.parametrize("case", ["corrupt", "labels_grid", "renderer", "preset", "public_host", "brats_labels",
                                  "reconnect"])
def test_cli_bad_input_exits_2(case, small_files, tmp_path, capsys):
    from rfmweb.app.cli import run_serve
    ct, labels = small_files
    if case == "corrupt":
        bad = tmp_path / "corrupt.nii.gz"
        bad.write_bytes(b"\x1f\x8b not really gzip")
        args, expect = _serve_args(volume=str(bad)), str(bad)
    elif case == "labels_grid":
        import nibabel as nib
        import numpy as np
        other = tmp_path / "labels_small.nii.gz"
        nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.uint8), np.eye(4)), other)
        args, expect = _serve_args(volume=str(ct), labels=str(other)), str(other)
    elif case == "renderer":
        args, expect = _serve_args(volume=str(ct), renderer="nope"), "unknown renderer 'nope'"
    elif case == "preset":
        args, expect = _serve_args(volume=str(ct), preset="CT-Nope"), "unknown preset 'CT-Nope'"
    elif case == "public_host":
        args, expect = _serve_args(volume=str(ct), host="0.0.0.0"), "auth key"
    elif case == "reconnect":
        args, expect = _serve_args(volume=str(ct), reconnect_s=0.0), "--reconnect-s must be"
    else:
        args, expect = _serve_args(volume=str(tmp_path), labels=str(labels)), str(tmp_path)
    assert run_serve(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and expect in err[0], err


def test_serve_parser_parses_the_documented_options():
    from rfmweb.app.cli import _run_or_exit, add_parser
    parser = argparse.ArgumentParser(prog="rfmweb")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "scan.nii.gz", "--labels", "l.nii.gz", "--host", "0.0.0.0", "--port", "9000",
                              "--auth-key", KEY, "--renderer", "vtk", "--preset", "CT-Muscle", "--reconnect-s", "90"])
    assert (args.volume, args.labels, args.host, args.port, args.auth_key, args.renderer, args.preset,
            args.reconnect_s) == ("scan.nii.gz", "l.nii.gz", "0.0.0.0", 9000, KEY, "vtk", "CT-Muscle", 90.0)
    assert parser.parse_args(["serve"]).reconnect_s == 60.0
    assert args.run is _run_or_exit
    assert parser.parse_args(["serve"]).volume is None


# -- the frame adapter: flow control and bad messages (no server) --------------------------------------------
def test_adapter_keeps_at_most_two_frames_in_flight(small_ct):
    from rfmweb.app.logic import FrameAdapter
    from rfmweb.session import RenderSession
    from rfmweb.session.controller import ViewController

    pushed: list[dict] = []

    class Streamer:
        def push_content(self, name, meta, content):
            assert name == "v" and content[:2] == b"\xff\xd8"  # a JPEG
            pushed.append(meta)

    # the server's event loop runs on its own thread (the test thread may already run one: Playwright's)
    loop = asyncio.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, daemon=True)
    loop_thread.start()
    session = RenderSession(small_ct, renderer="vtk", width=48, height=48)
    adapter = FrameAdapter("v", 0, ViewController([session]), on_frame=lambda f: None,
                           on_status=lambda busy, msg: None)
    adapter.loop = loop
    adapter.set_streamer(Streamer())

    def run_until(cond, timeout=10.0):
        end = time.monotonic() + timeout
        while not cond() and time.monotonic() < end:
            time.sleep(0.01)
        return cond()

    def drag(dx):
        adapter.on_interaction("test", {"type": "MouseMove", "x": 100 + dx, "y": 100, "buttonLeft": 1})

    try:
        adapter.attach(session)
        adapter.update_size("test", {"w": 48, "h": 48, "p": 1})
        adapter.on_interaction("test", {"type": "LeftButtonPress", "x": 100, "y": 100, "buttonLeft": 1})
        assert run_until(lambda: len(pushed) >= 1)
        drag(1)                 # a second frame while the first is unacknowledged (a refinement frame would wait)
        assert run_until(lambda: len(pushed) >= 2)
        for dx in range(2, 9):  # the state keeps changing, but nothing is acknowledged
            drag(dx)
            time.sleep(0.03)
        assert len(pushed) == 2, pushed
        last = pushed[-1]
        adapter.on_interaction("test", {"type": "FrameAck", "id": last["id"], "gen": last["gen"]})
        assert run_until(lambda: len(pushed) >= 3)  # acknowledging the latest frees both
        # bad messages are logged and ignored
        for bad in ({"type": "MouseMove", "x": "left", "y": 1}, {"type": "FrameAck"}, {"type": "Wheel",
                    "dy": "x"}, {"type": "Wheel", "dy": float("nan")}, {"type": "LeftButtonPress"}, {"no": "type"}):
            adapter.on_interaction("test", bad)
        adapter.update_size("test", {"w": "wide", "h": 10})
        adapter.update_size("test", {"w": -5, "h": float("nan")})
        adapter.on_interaction("test", {"type": "LeftButtonRelease"})
    finally:
        stream = adapter.detach()
        stream.close()
        session.close()
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(timeout=10)
        loop.close()


def test_serve_offers_the_splats_renderer_when_splats_are_loaded(small_ct):
    """A splat file served alone or beside its volume gets the renderers that can draw it."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.render import Scene
    from rfmweb.splats.init import agp_init
    from rfmweb.transfer import preset

    splats = agp_init(Scene(small_ct, preset("CT-Bone")), max_splats=500)
    for volume, expect in ((None, ["splats"]), (small_ct, ["raymarch", "vtk", "splats"])):
        server = get_server(f"rfmweb-splats-{volume is None}", client_type="vue3")
        _, controller = build_app(volume, splats=splats, server=server)
        try:
            names = [c.value for c in controller.typed.data.renderers]
            assert [n for n in names if n in ("raymarch", "vtk", "splats")] == expect
            assert controller.sessions["view_a"].render().std() > 5
        finally:
            controller.close()


def test_compared_views_are_titled_and_four_views_keep_the_3d_one(small_ct):
    """Side by side, each view's title names its renderer and preset; "Four views" turned on from a slice
    view brings the main view back to 3-D, and a slice mode is refused while the four views show."""
    from trame.app import get_server

    from rfmweb.app.server import build_app

    server = get_server("rfmweb-compare-titles", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="raymarch", preset="CT-Bone")
    try:
        d = controller.typed.data
        assert d.view_a.title == d.view_b.title == ""
        # presets of the other modality are listed disabled, saying why
        off = {c.value: c.subtitle for c in d.presets if c.disabled}
        assert off and all(n.startswith("MR-") for n in off) and off["MR-Angio"] == "for MR; this volume is CT"
        assert {c.value for c in d.presets if not c.disabled} >= {"CT-Bone", "CT-Muscle"}
        controller.set_compare(True)
        controller.set_preset("view_b", "CT-Muscle")
        assert d.view_a.title.endswith("· CT-Bone") and d.view_b.title.endswith("· CT-Muscle")
        controller.set_compare(False)
        assert d.view_a.title == ""
        controller.set_view_mode("axial")
        controller.set_four_up(True)
        assert controller.sessions["view_a"].mode == "3d" and d.view_mode == "3d"
        controller.set_view_mode("coronal")          # refused (logged), the menu snaps back
        assert controller.sessions["view_a"].mode == "3d" and d.view_mode == "3d"
        controller.set_four_up(False)
        controller.set_view_mode("coronal")
        assert controller.sessions["view_a"].mode == "coronal"
    finally:
        controller.close()


@pytest.fixture
def server_loop():
    """``(loop, its thread)``: the server's event loop on a thread of its own (the test thread may
    already run one: Playwright's)."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop, thread
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def test_a_pick_in_the_3d_view_reaches_the_planes_readouts_on_the_event_loop(small_ct, server_loop):
    """Four views: a click on the 3-D view picks on the controller's job thread; the planes' readouts
    were set there, where trame never sent them, and the page kept showing the previous cursor."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.session import messages as m

    server = get_server("rfmweb-pick-readouts", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="compiled", preset="CT-Bone")
    loop, loop_thread = server_loop
    set_on: list[tuple[str, str, str]] = []
    set_probe = controller._set_probe
    controller._set_probe = lambda view, text: (set_on.append((view, text, threading.current_thread().name)),
                                                set_probe(view, text))
    try:
        for view in controller.views.values():
            view.loop = loop
        controller.set_four_up(True)
        session = controller.sessions["view_a"]
        w, h = session.camera.width, session.camera.height
        controller.control.handle(m.PointAt(0, w / 2, h / 2))   # the 3-D view's centre: the skull
        controller.control.wait()
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)   # what was queued has run
        d = controller.typed.data
        texts = {name: getattr(d, name).probe for name in ("view_a", "view_d", "view_e", "view_f")}
        assert all(t.startswith("cursor (") and t == texts["view_a"] for t in texts.values()), texts
        assert {thread for *_, thread in set_on} == {loop_thread.name}
        controller.sync_state()        # as after the planes moved: the 3-D view keeps its click's readout
        assert d.view_a.probe == texts["view_a"]
    finally:
        controller.close()


def test_the_previous_renderers_image_is_dimmed_until_the_new_ones_first_frame(small_ct):
    """After a switch to a slow renderer, the view kept the previous renderer's picture for a minute
    under the new one's name; it is now marked stale (dimmed on the page) until a frame of the new one."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.session.encode import Frame

    server = get_server("rfmweb-stale-renderer", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="compiled", preset="CT-Bone")
    try:
        vs = controller.typed.data.view_a

        def frame(renderer):
            controller._on_frame("view_a", Frame(b"", "image/jpeg", 8, 8, "idle", 1, renderer=renderer))

        frame("compiled")
        assert vs.stale is False
        controller.set_renderer("view_a", "vtk")
        assert vs.stale is True
        frame("compiled")                   # one of the previous renderer, still in flight
        assert vs.stale is True
        frame("vtk")
        assert vs.stale is False
        controller.set_renderer("view_a", "vtk")   # the same one again: nothing to wait for
        assert vs.stale is False
    finally:
        controller.close()


def test_the_status_line_ends_on_the_last_frame_of_a_quick_move(small_ct, server_loop):
    """Interactive frames' status lines are shown at most 4 a second; the last one of a burst was
    dropped, and after a quick zoom the line described an older frame. It now shows when its turn comes."""
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.session.encode import Frame

    server = get_server("rfmweb-status-burst", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="compiled", preset="CT-Bone")
    loop, _ = server_loop
    try:
        for view in controller.views.values():
            stream = view.detach()      # the views' own renders post "rendering…" lines: they replaced the probe's
            if stream is not None:
                stream.close()
            view.loop = loop

        def shown(width):
            frame = Frame(b"", "image/jpeg", width, 40, "interactive", 1, render_ms=5.0, renderer="compiled")
            loop.call_soon_threadsafe(controller._on_frame, "view_a", frame)        # on the loop, as published
            asyncio.run_coroutine_threadsafe(asyncio.sleep(0), loop).result(timeout=10)

        shown(100)
        shown(120)                                   # within 0.25 s of the first: held back
        status = controller.typed.data.view_a
        assert "100×40" in status.status
        deadline = time.monotonic() + 5
        while "120×40" not in status.status and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "interactive 120×40" in status.status
    finally:
        controller.close()


def test_the_ruler_tool_measures_drags_on_slices_and_goes_when_turned_off(small_ct):
    """A radiologist expects a ruler: with Measure on, a left drag on a slice view measures from its
    start to its end (a click still places the crosshair; the 3-D view still orbits); off, it goes."""
    from trame.app import get_server

    from rfmweb.app.server import build_app

    server = get_server("rfmweb-ruler", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="compiled", preset="CT-Bone")
    try:
        controller.set_view_mode("axial")
        controller.typed.data.measure = True
        controller.set_measure(True)
        view = controller.views["view_a"]
        assert view.painter is not None and view.painter_3d is False
        mm_per_px = controller.sessions["view_a"].slice_geometry().mm_per_px
        view.painter("view_a", [[10.0, 20.0], [20.0, 25.0], [40.0, 60.0]], False)    # a drag: its two ends
        assert controller.sessions["view_a"].ruler.length_mm == pytest.approx(50 * mm_per_px)
        view.painter("view_a", [[30.0, 30.0]], True)                                   # a click: the crosshair
        assert controller.sessions["view_a"].cursor is not None
        assert controller.sessions["view_a"].ruler is not None
        controller.typed.data.measure = False
        controller.set_measure(False)
        assert view.painter is None and controller.sessions["view_a"].ruler is None
    finally:
        controller.close()


def test_a_scene_file_keeps_the_compare_layout(small_ct):
    """"Save scene" records the layout (compare, the right view's renderer and preset, linked cameras);
    loading it lays the page out again; a bad layout is refused before anything changes."""
    import json

    from trame.app import get_server

    from rfmweb.app.server import build_app

    server = get_server("rfmweb-scene-layout", client_type="vue3")
    _, controller = build_app(small_ct, server=server, renderer="raymarch", preset="CT-Bone")
    try:
        d = controller.typed.data
        controller.set_compare(True)
        controller.set_preset("view_b", "CT-Muscle")
        d.linked = False
        controller.set_linked(False)
        text = controller.scene_text()
        layout = json.loads(text)["layout"]
        assert layout == {"compare": True, "right": {"renderer": controller.sessions["view_b"].renderer_name,
                                                      "preset": "CT-Muscle"},
                          "linked": False, "difference": False, "four_up": False}
        controller.set_compare(False)
        controller.set_preset("view_b", "CT-Bone")
        d.linked = True
        controller.load_scene(text)
        assert d.compare and controller.views["view_b"].stream is not None
        assert controller.sessions["view_b"].preset_name == "CT-Muscle" and d.view_b.preset == "CT-Muscle"
        assert d.linked is False and controller._unlink is None
        bad = json.loads(text)
        bad["layout"]["compare"] = "yes"
        controller.set_compare(False)
        controller.load_scene(json.dumps(bad))          # refused (logged, shown): nothing changes
        assert not d.compare and d.alert.startswith("Scene not loaded: ") and "'compare'" in d.alert
    finally:
        controller.close()


# -- segmentation views: ground truth | raw INR | denoised INR (no server) ---------------------------------
@pytest.fixture(scope="module")
def brats_case():
    from rfmweb.data.cohort import cohort_case
    return cohort_case("val", 0, 1, resolution_mm=2.0)[0]


def test_serve_parser_takes_segment_and_model():
    from rfmweb.app.cli import add_parser
    parser = argparse.ArgumentParser(prog="rfmweb")
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["serve", "BraTS-GLI-00001-000", "--segment", "--model", "m.pt"])
    assert (args.volume, args.segment, args.model) == ("BraTS-GLI-00001-000", True, "m.pt")
    assert parser.parse_args(["serve"]).segment is False


def test_segment_refuses_a_ct_and_model_without_segment(small_files, capsys):
    from rfmweb.app.cli import run_serve
    ct, _ = small_files
    args = argparse.Namespace(volume=str(ct), labels=None, splats=None, host="127.0.0.1", port=0, auth_key=None,
                              renderer=None, preset=None, open=False, segment=True, model=None)
    assert run_serve(args) == 2
    assert "4-channel MR" in capsys.readouterr().err
    args.segment, args.model = False, "m.pt"
    assert run_serve(args) == 2
    assert "--segment" in capsys.readouterr().err


def test_app_shows_three_linked_segmentation_views_and_paints_corrections(brats_case):
    from trame.app import get_server

    from rfmweb.app.server import build_app
    from rfmweb.session import SegmentationViews

    seg = SegmentationViews(brats_case, width=64, height=64)
    seg.compute()
    server = get_server("rfmweb-segment-test", client_type="vue3")
    _, controller = build_app(None, server=server, segmentation=seg)
    try:
        d = controller.typed.data
        assert d.segment and d.compare and [c.value for c in d.modes] == ["3d", "axial", "coronal", "sagittal"]
        assert [getattr(d, v).title for v in ("view_a", "view_b", "view_c")] == ["ground truth", "raw INR",
                                                                                 "denoised INR"]
        assert d.view_a.subtitle == seg.caption(0) != "" and d.view_b.subtitle == seg.caption(1) and \
            "WT" in d.view_c.subtitle
        assert all(v.stream is not None for v in controller.views.values()), "all three views stream"
        controller.set_compare(False)  # the segmentation layout keeps its three views
        assert controller.views["view_b"].stream is not None
        # one view mode for all views, the slider's range follows the axis
        k = int(np.argmax(brats_case.labels.sum(axis=(0, 1))))
        controller.set_view_mode("axial")
        controller.set_slice(k)
        assert [(s.mode, s.slice_index) for s in seg.sessions] == [("axial", k)] * 3
        assert d.slice_max == brats_case.shape[2] - 1
        # the sequence menu: FLAIR at first; T1c in every view, on its own auto window
        assert [c.title for c in d.channels] == ["T1n", "T1c", "T2w", "FLAIR"] and d.slice_channel == "3"
        seg.sessions[0].set_window(0.3, 0.5)
        controller.set_slice_channel("1")
        assert [s.slice_channel for s in seg.sessions] == [1] * 3 and d.slice_channel == "1"
        assert seg.sessions[0].window is None and d.window_preset == "auto"
        controller.set_slice_channel("9")              # refused (logged); nothing changes
        assert [s.slice_channel for s in seg.sessions] == [1] * 3 and d.slice_channel == "1"
        controller.set_class_visible(2, False)
        assert not any(s.classes.style(2).visible for s in seg.sessions)
        controller.set_class_visible(2, True)
        # with the tool on, a left drag on a slice view is a stroke, not an orbit
        controller.set_tool(True)
        adapter, raw = controller.views["view_b"], seg.sessions[1]
        adapter.update_size("test", {"w": 64, "h": 64, "p": 1})
        camera = raw.camera
        lab = seg.labels(1)[:, :, k]
        geo = raw.slice_geometry()
        ii, jj = np.nonzero(lab)
        # voxel -> pixel: invert SliceGeometry.to_voxel for the axial plane (u from x, v from y)
        u = ((geo.shape[0] - 1 - ii) + 0.5) * geo.spacing[0] / geo.mm_per_px + geo.offset[0]
        v = ((geo.shape[1] - 1 - jj) + 0.5) * geo.spacing[1] / geo.mm_per_px + geo.offset[1]
        np.testing.assert_allclose(geo.to_voxel(u, v)[:, :2], np.stack([ii, jj], 1), atol=1e-6)
        events = [("LeftButtonPress", u[0], v[0])] + [("MouseMove", a, b) for a, b in zip(u[1:], v[1:])] + \
            [("LeftButtonRelease", u[-1], v[-1])]
        for kind, x, y in events:  # trame-rca positions: CSS pixels from the bottom-left
            adapter.on_interaction("test", {"type": kind, "x": float(x), "y": float(64 - y)})
        controller.control.wait(60)  # the marks are made on the correction thread
        assert raw.camera == camera and seg.n_marks >= len(ii)
        labels_before = seg.labels(1)
        controller._correct("apply")
        controller.control.wait(60)
        assert (seg.labels(1) != labels_before).sum() > 0
        assert (seg.labels(1)[:, :, k] > 0).sum() < (labels_before[:, :, k] > 0).sum()
        controller._correct("undo")
        controller.control.wait(60)
        np.testing.assert_array_equal(seg.labels(1), labels_before)
    finally:
        controller.close()
