"""RenderSession state and FrameStream flow control."""

from __future__ import annotations

import functools
import io
import threading
import time

import numpy as np
import pytest
from PIL import Image

from rfmweb.errors import InputError
from rfmweb.session import FrameStream, RenderSession, link_cameras
from rfmweb.session.interaction import apply_drag, apply_wheel, drag_action
from rfmweb.session.stream import MIN_SCALE, shows_other_renderer

from .conftest import pixels_differ


def wait_for(cond, timeout=30.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def decode(frame) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(frame.data)).convert("RGB"))


@pytest.fixture
def session(small_ct):
    s = RenderSession(small_ct, renderer="raymarch", width=48, height=48)
    yield s
    s.close()


def test_setters_bump_the_version_and_notify(session):
    seen = []
    session.subscribe(lambda s, what: seen.append(what))
    v0 = session.version
    session.set_preset("CT-Muscle")
    session.orbit(10, 0)
    session.set_class(2, visible=False)
    session.set_renderer("vtk")
    assert session.version == v0 + 4 and seen == ["scene", "camera", "scene", "renderer"]
    session.set_camera(session.camera)  # no change, no notification
    assert session.version == v0 + 4
    with pytest.raises(InputError, match="unknown preset"):
        session.set_preset("nope")
    with pytest.raises(InputError, match="unknown renderer"):
        session.set_renderer("nope")
    with pytest.raises(InputError, match="opacity"):
        session.set_class(1, opacity=2.0)


def test_render_follows_the_state(session):
    a = session.render()
    session.orbit(60, 0)
    b = session.render()
    session.set_class(2, visible=False)
    c = session.render()
    assert a.shape == (48, 48, 3) and a.std() > 5
    assert pixels_differ(a, b) and pixels_differ(b, c)


def test_the_3d_view_shows_the_sequence_the_slices_show():
    """An MR case: the Sequence choice (FLAIR at first) is the 3-D render's too, not its first channel."""
    from rfmweb.data.cohort import cohort_case
    from rfmweb.render.fields import scalar_np
    case = cohort_case("val", 0, 1, resolution_mm=4.0)[0]
    s = RenderSession(case, width=64, height=64, renderer="compiled")
    assert s.slice_channel == case.channels.index("FLAIR")
    field = scalar_np(case.data, s.snapshot().scene.mix).ravel()     # FLAIR windowed, not T1n
    corr = [np.corrcoef(field, channel.ravel())[0, 1] for channel in case.data]
    assert int(np.argmax(corr)) == s.slice_channel and corr[s.slice_channel] > 0.95, corr
    flair, version = s.render(), s.version
    s.set_slice_channel("T2w")
    assert s.version > version and s.mix.settings[2].enabled and not s.mix.settings[3].enabled
    assert pixels_differ(flair, s.render(), threshold=1.0)     # 2.5 grey levels apart on average
    s.set_slice_channel("FLAIR")
    assert np.array_equal(s.render(), flair)


def test_a_preset_of_the_other_modality_is_drawn_with_a_warning(small_ct, caplog):
    """From Python, set_preset("MR-Default") on a CT was taken silently while the menus offer it disabled."""
    s = RenderSession(small_ct, width=32, height=32, renderer="compiled")
    with caplog.at_level("WARNING", logger="rfmweb.session.session"):
        s.set_preset("CT-Muscle")
        assert not caplog.records
        s.set_preset("MR-Default")
    assert s.preset_name == "MR-Default"
    assert "preset MR-Default is for MR; this volume is CT" in caplog.text


def test_mouse_mapping(session):
    assert drag_action("left") == "orbit" and drag_action("left", shift=True) == "pan"
    assert drag_action("middle") == "pan" and drag_action("right") == "zoom"
    assert drag_action("left", ctrl=True) == "zoom"
    cam = session.camera
    apply_drag(session, "left", 25, 0)
    assert session.camera.azimuth == pytest.approx((cam.azimuth - 10) % 360)
    apply_drag(session, "right", 0, -100)  # drag up: closer
    assert session.camera.distance < cam.distance
    d = session.camera.distance
    apply_wheel(session, 100)  # scroll down: further
    assert session.camera.distance > d
    with pytest.raises(InputError):
        apply_drag(session, "fourth", 1, 1)


def test_linked_cameras_move_together(small_ct):
    a = RenderSession(small_ct, renderer="raymarch", width=40, height=40)
    b = RenderSession(small_ct, renderer="raymarch", preset="CT-Muscle", width=60, height=30)
    unlink = link_cameras([a, b])
    a.orbit(30, 10)
    assert b.camera.azimuth == a.camera.azimuth and b.camera.elevation == a.camera.elevation
    assert (b.camera.width, b.camera.height) == (60, 30)
    b.zoom(0.5)
    assert a.camera.distance == b.camera.distance
    unlink()
    a.orbit(30, 0)
    assert b.camera.azimuth != a.camera.azimuth


def test_linked_views_resized_one_by_one_keep_the_zoom(small_ct):
    """A layout switch resizes linked views one after the other (row of tall panes <-> 2x2 grid of wide
    ones): each view's fit to its narrower side must not compound through the link (three panes
    turned 2.2x more zoomed each, 10x in all), and switching back restores the view."""
    views = [RenderSession(small_ct, renderer="raymarch", width=357, height=776) for _ in range(3)]
    unlink = link_cameras(views)
    before = views[0].camera.distance
    for v in views:
        v.resize(538, 356)
    assert [v.camera.distance for v in views] == pytest.approx([before * 357 / 776] * 3)
    for v in views:
        v.resize(357, 776)
    assert [v.camera.distance for v in views] == pytest.approx([before] * 3)
    unlink()


class Client:
    """A fake client: records frames, acknowledges on demand."""

    def __init__(self):
        self.frames = []
        self.lock = threading.Lock()

    def __call__(self, frame):
        with self.lock:
            self.frames.append(frame)


def test_bad_sizes_and_a_preset_name_for_a_tf_are_clear_errors(small_ct):
    """A width of 0 raised AttributeError, a negative one "camera distance must be > 0", and set_tf of a
    name broke the session for good."""
    from rfmweb.errors import InputError
    for w, h in ((0, 0), (-5, 64)):
        with pytest.raises(InputError, match=f"image size must be 1..8192 pixels, got {w}x{h}"):
            RenderSession(small_ct, width=w, height=h)
    s = RenderSession(small_ct, width=24, height=24)
    with pytest.raises(InputError, match="image size"):
        s.resize(-10, 20)
    with pytest.raises(InputError, match="set_tf takes a TransferFunction"):
        s.set_tf("CT-Bone")
    with pytest.raises(InputError, match=r"colour must be three sRGB values in \[0, 1\], got \(300, 0, 0\)"):
        s.set_class(1, color=(300, 0, 0))
    with pytest.raises(InputError, match="finite number > 0, got inf"):      # it drew a black frame
        s.zoom(float("inf"))
    assert s.render().shape == (24, 24, 3)
    s.close()


def test_encode_image_writes_the_format_asked_or_refuses():
    from rfmweb.errors import InputError
    from rfmweb.session.encode import encode_image
    img = np.zeros((4, 6, 3), np.uint8)
    assert encode_image(img, "PNG")[:4] == b"\x89PNG" and encode_image(img, "jpeg")[:2] == b"\xff\xd8"
    with pytest.raises(InputError, match="'jpeg' or 'png', got 'bmp'"):     # it wrote JPEG bytes
        encode_image(img, "bmp")
    with pytest.raises(InputError, match=r"\[H, W, 3\] uint8, got \[4, 6, 3\] float32"):
        encode_image(img.astype(np.float32), "png")


def test_stream_sends_interactive_then_idle_frame(session):
    client = Client()
    stream = FrameStream(session, client, idle_delay=0.1)
    try:
        stream.request()
        wait_for(lambda: len(client.frames) >= 1, what="first frame")
        stream.ack(client.frames[0].id)
        wait_for(lambda: len(client.frames) >= 2, what="idle frame")
        first, idle = client.frames[:2]
        assert first.kind == "interactive" and first.mime == "image/jpeg"
        assert idle.kind == "idle" and (idle.width, idle.height) == (48, 48)
        assert decode(idle).std() > 5
    finally:
        stream.close()


def test_the_first_frame_of_another_renderer_says_it_is_rendering(session):
    """Another renderer can take seconds to its first frame (the torch ray-marcher on a CPU: 20 s): the
    status says "first frame of the <renderer>…" (busy) around it, while the frames of a camera drag or a
    preset change stay quiet."""
    client, statuses = Client(), []
    stream = FrameStream(session, client, idle_delay=10.0, ack_timeout=60.0,
                         on_status=lambda busy, msg: statuses.append((busy, msg)))

    def busy_messages_of(change) -> list[str]:
        if client.frames:
            stream.ack(client.frames[-1].id)
        statuses.clear()
        n = len(client.frames)
        change()
        wait_for(lambda: len(client.frames) > n, what="the next frame")
        assert client.frames[-1].kind == "interactive"
        wait_for(lambda: not statuses or statuses[-1][0] is False, what="the status settled")
        return [msg for on, msg in statuses if on]

    try:
        assert busy_messages_of(stream.request) == ["first frame of the Ray-marcher (torch)…"]   # the first frame
        assert busy_messages_of(lambda: session.orbit(20, 0)) == []               # a drag: quiet
        assert busy_messages_of(lambda: session.set_preset("CT-Muscle")) == []
        assert client.frames[-1].renderer == "raymarch"
        assert busy_messages_of(lambda: session.set_renderer("compiled")) == \
            ["first frame of the Ray-marcher (compiled CPU)…"]
        assert statuses[-1][0] is False
        # each frame names its renderer; until the new one's first, the view shows another's (dimmed)
        assert client.frames[-1].renderer == "compiled" and shows_other_renderer(session, "raymarch")
        assert not shows_other_renderer(session, "compiled")
        session.set_view_mode("axial")
        assert not shows_other_renderer(session, "raymarch")           # a slice is a slice
        # a renderer's first frames start at the smallest scale (its cost here is unknown)
        first = [f for f in client.frames if f.renderer == "compiled"][0]
        assert (first.width, first.height) == (12, 12)
    finally:
        stream.close()


def test_a_vtk_view_drawn_by_the_ray_marcher_says_so_at_rest(small_ct):
    """Class colours are drawn by the ray-marcher in a VTK view: the status and the frames at rest say
    so (a compare of VTK and the ray-marcher showed SSIM 1.000 with nothing saying why)."""
    session = RenderSession(small_ct, renderer="vtk", width=32, height=32)
    session.set_class_colors(True)
    client, statuses = Client(), []
    stream = FrameStream(session, client, idle_delay=0.05, ack_timeout=0.2,
                         on_status=lambda busy, msg: statuses.append(msg))
    try:
        stream.request()
        wait_for(lambda: any(f.kind != "interactive" for f in client.frames), what="a frame at rest")
        rest = next(f for f in client.frames if f.kind != "interactive")
        assert rest.note.startswith("drawn by Ray-marcher"), rest.note
        assert any(msg.startswith("drawn by Ray-marcher") for msg in statuses), statuses
    finally:
        stream.close()
        session.close()


def test_a_scan_the_transfer_function_hides_entirely_says_so(small_ct):
    """An all-air scan, or a TF set for values the scan lacks, drew a black frame and said nothing."""
    from rfmweb.transfer import TransferFunction
    from rfmweb.volume import Volume

    air = Volume(np.full((16, 16, 16), -1000.0, np.float32), small_ct.affine, modality="CT", name="air")
    session = RenderSession(air, renderer="raymarch", width=24, height=24)
    try:
        assert session.render().max() == 0
        note = session.note(session.snapshot())
        assert note.startswith("nothing to draw") and "(-1000 to -1000 HU)" in note, note
        # a TF that shows air: the frame draws, the note goes
        session.set_tf(TransferFunction("air", color=((-1100.0, 1.0, 1.0, 1.0), (0.0, 1.0, 1.0, 1.0)),
                                        opacity=((-1100.0, 0.0), (-900.0, 0.5), (0.0, 0.5))))
        assert session.render().max() > 0 and session.note(session.snapshot()) == ""
        session.set_view_mode("axial", 8)
        assert session.note(session.snapshot()) == "", "a slice view draws the scan whatever the TF"
    finally:
        session.close()
    head = RenderSession(small_ct, renderer="raymarch", width=24, height=24)
    try:
        assert head.note(head.snapshot()) == ""
        head.set_tf(TransferFunction("metal", color=((4000.0, 1.0, 1.0, 1.0), (5000.0, 1.0, 1.0, 1.0)),
                                     opacity=((4000.0, 0.0), (5000.0, 1.0))))
        assert head.note(head.snapshot()).startswith("nothing to draw"), "a TF above the scan's values"
    finally:
        head.close()


def test_stream_keeps_at_most_two_frames_in_flight_and_merges_changes(session):
    client = Client()
    stream = FrameStream(session, client, idle_delay=10.0, ack_timeout=60.0)
    try:
        for _ in range(30):
            session.orbit(3, 0)
            time.sleep(0.005)
        wait_for(lambda: len(client.frames) >= 2, what="two frames")
        time.sleep(0.5)
        assert len(client.frames) == 2  # nothing more until acknowledged
        version = session.version
        stream.ack(client.frames[0].id)
        stream.ack(client.frames[1].id)
        wait_for(lambda: len(client.frames) >= 3, what="the merged frame")
        time.sleep(0.3)
        assert len(client.frames) == 3 and client.frames[2].version == version  # one frame for the burst
    finally:
        stream.close()


def test_lost_acknowledgements_expire(session):
    client = Client()
    stream = FrameStream(session, client, idle_delay=10.0, ack_timeout=0.2)
    try:
        for _ in range(3):
            session.orbit(5, 0)
            wait_for(lambda n=len(client.frames): len(client.frames) > n, what="frame despite missing acks")
    finally:
        stream.close()


def test_screenshot_is_a_full_size_png(session):
    stream = FrameStream(session, Client())
    try:
        png = stream.screenshot()
        img = Image.open(io.BytesIO(png))
        assert img.format == "PNG" and img.size == (48, 48)
    finally:
        stream.close()


def test_a_failing_render_does_not_kill_the_stream(session, monkeypatch):
    client, statuses = Client(), []
    stream = FrameStream(session, client, on_status=lambda busy, msg: statuses.append(msg))
    real = session.render
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("out of memory (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(session, "render", flaky)
    try:
        stream.request()
        wait_for(lambda: any("render failed" in m for m in statuses), what="failure status")
        session.orbit(5, 0)
        wait_for(lambda: len(client.frames) >= 1, what="frame after the failure")
    finally:
        stream.close()


def test_paused_stream_sends_nothing_until_resumed(session):
    client = Client()
    stream = FrameStream(session, client, paused=True)
    try:
        session.orbit(10, 0)
        time.sleep(0.4)
        assert client.frames == []
        assert Image.open(io.BytesIO(stream.screenshot())).size == (48, 48)  # screenshots still work
        stream.resume()
        wait_for(lambda: len(client.frames) >= 1, what="frame after resume")
    finally:
        stream.close()
    with pytest.raises(RuntimeError, match="closed"):
        stream.screenshot()


def test_an_ack_covers_earlier_frames(session):
    client = Client()
    stream = FrameStream(session, client, idle_delay=10.0, ack_timeout=60.0)
    try:
        session.orbit(5, 0)
        wait_for(lambda: len(client.frames) >= 1, what="frame 1")
        session.orbit(5, 0)
        wait_for(lambda: len(client.frames) >= 2, what="frame 2")
        session.orbit(5, 0)
        time.sleep(0.3)
        assert len(client.frames) == 2
        stream.ack(client.frames[1].id)  # the client skipped frame 1: one ack frees both
        wait_for(lambda: len(client.frames) >= 3, what="frame 3")
    finally:
        stream.close()


def test_a_scan_over_the_3d_budget_is_drawn_in_blocks_in_3d_and_whole_on_slices(small_ct, monkeypatch):
    """A 512 x 512 x 600 CT took 8 GiB a view (4 views overran 24 GB) and 23 s a frame: the 3-D
    renderers and picks draw it coarsened to MAX_3D_VOXELS, and the status line says so."""
    from rfmweb.session import session as session_module

    monkeypatch.setattr(session_module, "MAX_3D_VOXELS", 20_000)      # the 64 x 64 x 27 test CT: 110,592
    session = RenderSession(small_ct, renderer="compiled", width=48, height=48)
    try:
        image = session.render()
        assert image.std() > 0
        drawn = session.renderer()._marcher.prepare(session.scene_3d(session.snapshot().scene)).volume
        assert drawn.shape == (32, 32, 13) and drawn.spacing[0] == pytest.approx(2 * small_ct.spacing[0])
        assert session.note(session.snapshot()).startswith("3-D at 7.7×7.7×12 mm")
        assert session.point_at(24, 24) is not None                    # a 3-D pick, on the blocks
        session.set_view_mode("axial")
        assert session.render().std() > 0 and session.snapshot().scene.volume is small_ct   # every voxel
    finally:
        session.close()


def test_a_view_converges_while_the_link_is_full_and_sends_only_its_latest_frame(session):
    """On a slow link every one of the 16 converging frames (~57 KB each) waited for the one before to
    be acknowledged, two in flight. Refinement frames now go one at a time, its passes go on meanwhile,
    and only the latest is sent; a move's frame never waits for two of them."""
    from rfmweb.session.stream import CONVERGE_FRAMES

    client = Client()
    stream = FrameStream(session, client, idle_delay=0.05, ack_timeout=60.0)
    try:
        session.orbit(5, 0)
        wait_for(lambda: len(client.frames) >= 1, what="the interactive frame")
        wait_for(lambda: stream._pending is not None and stream._pending.spp == CONVERGE_FRAMES,
                 what="the converged frame, rendered while a frame is unacknowledged")
        assert [f.kind for f in client.frames] == ["interactive"]
        stream.ack(client.frames[-1].id)
        wait_for(lambda: len(client.frames) >= 2, what="the converged frame, sent")
        time.sleep(0.2)
        assert [f.spp for f in client.frames[1:]] == [CONVERGE_FRAMES]
        session.orbit(5, 0)                      # a move goes at once (one frame in flight: there is room)
        wait_for(lambda: len(client.frames) >= 3, what="the next move's frame")
        assert client.frames[2].kind == "interactive"
    finally:
        stream.close()


@pytest.mark.parametrize("marked", [False, True])
def test_frames_while_moving_take_the_sessions_step(small_ct, monkeypatch, marked):
    """A 3-D view's frames while moving step half a voxel (a voxel drew wood grain on steep presets); a
    segmentation panel's keep the voxel step (three panels per move, each ray through the whole brain)."""
    from rfmweb.session.segmentation import MarkedSession

    kind = functools.partial(MarkedSession, marks=lambda: (np.zeros((0, 3), int), np.zeros(0, np.uint8))) \
        if marked else RenderSession
    session = kind(small_ct, renderer="raymarch", width=48, height=48)
    client, seen = Client(), []
    real = session.renderer()

    class Recording:
        name = "raymarch"

        def render(self, scene, camera, quality, *, abort=None):
            seen.append(quality)
            return real.render(scene, camera, quality)

    monkeypatch.setattr(session, "renderer", lambda name=None: Recording())
    stream = FrameStream(session, client, idle_delay=30.0)
    try:
        stream.request()
        wait_for(lambda: len(client.frames) >= 1, what="interactive frame")
        assert client.frames[0].kind == "interactive"
        assert seen[0].step == (1.0 if marked else 0.5) and seen[0].scale == MIN_SCALE and not seen[0].cubic
    finally:
        stream.close()
        session.close()


def test_idle_frame_is_abandoned_when_the_state_moves_on(session, monkeypatch):
    """A new drag must not wait for a slow full-quality frame of a stale state."""
    client = Client()
    stream = FrameStream(session, client, idle_delay=0.05)
    real = session.renderer()
    started, aborted = threading.Event(), threading.Event()

    class Slow:
        name = "raymarch"

        def render(self, scene, camera, quality, *, abort=None):
            if abort is None:  # interactive frames are quick
                return real.render(scene, camera, quality)
            started.set()
            end = time.monotonic() + 30
            while time.monotonic() < end:
                if abort():
                    from rfmweb.render.scene import RenderAborted
                    aborted.set()
                    raise RenderAborted("stale")
                time.sleep(0.01)
            raise AssertionError("never aborted")

    monkeypatch.setattr(session, "renderer", lambda name=None: Slow())
    try:
        stream.request()
        wait_for(lambda: len(client.frames) >= 1, what="interactive frame")
        stream.ack(client.frames[0].id)
        assert started.wait(10)
        session.orbit(20, 0)
        wait_for(lambda: len(client.frames) >= 2, what="frame of the new state")
        assert aborted.is_set() and client.frames[1].kind == "interactive"
    finally:
        stream.close()


def test_held_refinement_stops_the_full_quality_frame_and_resumes_after(session, monkeypatch):
    """While a correction holds refinement, the full-quality frame under way stops and none starts
    (interactive frames still come); once the hold ends the view is refined."""
    from rfmweb.render.scene import RenderAborted

    client = Client()
    stream = FrameStream(session, client, idle_delay=0.05, ack_timeout=60.0)
    real = session.renderer()
    full = []                       # refinement_held at the start of each full-quality render
    stopped = threading.Event()

    class FirstSlow:
        name = "raymarch"

        def render(self, scene, camera, quality, *, abort=None):
            if abort is not None:
                full.append(session.refinement_held)
                end = time.monotonic() + 30
                while len(full) == 1 and time.monotonic() < end:   # the first waits to be stopped
                    if abort():
                        stopped.set()
                        raise RenderAborted("held")
                    time.sleep(0.01)
            return real.render(scene, camera, quality)

    monkeypatch.setattr(session, "renderer", lambda name=None: FirstSlow())
    try:
        stream.request()
        wait_for(lambda: len(client.frames) >= 1, what="interactive frame")
        stream.ack(client.frames[0].id)
        wait_for(lambda: len(full) == 1, what="full-quality frame under way")
        with session.hold_refinement():
            assert stopped.wait(10), "the full-quality frame under way went on"
            time.sleep(0.5)         # ten idle delays: no full-quality frame may start meanwhile
            assert full == [False] and len(client.frames) == 1
        wait_for(lambda: len(client.frames) >= 2, what="full-quality frame after the hold")
        assert client.frames[1].kind == "idle" and full == [False, False]
        stream.ack(client.frames[1].id)
        with session.hold_refinement():
            session.orbit(10, 0)
            wait_for(lambda: len(client.frames) >= 3, what="interactive frame while held")
            stream.ack(client.frames[2].id)
            time.sleep(0.5)
            assert client.frames[2].kind == "interactive" and len(full) == 2 and len(client.frames) == 3
        wait_for(lambda: len(client.frames) >= 4, what="full-quality frame after the second hold")
        assert client.frames[3].kind == "idle" and full == [False, False, False]
    finally:
        stream.close()


def test_cinematic_still_accumulates_while_the_camera_rests(session, monkeypatch):
    """Progressive frames with a growing sample count; a camera move stops them at once."""
    client = Client()

    class Progressive:
        name = "fake-pathtrace"

        def __init__(self):
            self.started = 0

        def render(self, scene, camera, quality, *, abort=None):
            return np.zeros((camera.height, camera.width, 3), np.uint8)

        def accumulate(self, scene, camera, spp_per_pass, passes, *, abort=None):
            self.started += 1
            for i in range(passes):
                if abort is not None and abort():
                    from rfmweb.render.scene import RenderAborted
                    raise RenderAborted("stale")
                time.sleep(0.01)
                yield np.full((camera.height, camera.width, 3), min(1.0, 0.1 * (i + 1))), spp_per_pass * (i + 1)

    fake = Progressive()
    real_renderer = session.renderer
    monkeypatch.setattr(session, "renderer", lambda name=None: fake if name == "pathtrace" else real_renderer(name))
    statuses = []
    stream = FrameStream(session, client, idle_delay=0.05, ack_timeout=60.0,
                         on_status=lambda busy, text: statuses.append((busy, text)))
    try:
        session.set_still_renderer("pathtrace")
        for _ in range(8):  # acknowledge as a browser would
            wait_for(lambda n=len(client.frames): len(client.frames) > n, what="next frame")
            stream.ack(client.frames[-1].id)
        kinds = [f.kind for f in client.frames]
        # turning it on changes nothing until its first pass: no low-resolution interactive frame replaces
        # the view meanwhile (one did, for the ~14 s Mitsuba takes to its first samples)
        assert kinds[:4] == ["progressive"] * 4, kinds
        spps = [f.spp for f in client.frames if f.kind == "progressive"]
        assert spps == sorted(spps) and spps[0] == 4 and spps[-1] >= 20
        # the first pass builds the scene (seconds with Mitsuba): the view says so while its last frame stays
        assert statuses.index((True, "cinematic still: tracing the first samples…")) < \
            statuses.index((False, "cinematic still (path traced)"))
        n = len(client.frames)
        session.orbit(10, 0)
        wait_for(lambda: any(f.kind == "interactive" for f in client.frames[n:]), what="interactive frame after the move")
        assert fake.started >= 1
    finally:
        stream.close()
    with pytest.raises(InputError, match="cannot accumulate"):
        session.set_still_renderer("splats")
