"""rfmweb.widgets without a browser: the widgets are driven through the same message handler the page
uses (``_handle_custom_msg``), and a stand-in page records what Python sends (frames are real JPEGs
of the real head CT)."""

from __future__ import annotations

import io
import logging
import threading
import time

import numpy as np
import pytest
from PIL import Image

from rfmweb.backend import default_device
from rfmweb.errors import InputError
from rfmweb.session import RenderSession
from rfmweb.session.encode import CAPTION_PX
from rfmweb.session.messages import MessageError, parse_client_message
from rfmweb.volume import LabelClass, Volume
from rfmweb.widgets import Compare, Viewer

from .conftest import pixels_differ

SIZE = 96


class Page:
    """Stands in for ``viewer.js``: records what Python sends, answers through the widget's handler.

    Like the page, it acknowledges a frame after "drawing" it (here: when a test waits for frames),
    unless ``auto_ack`` is off. It records the most frames ever unacknowledged per view.
    """

    def __init__(self, widget, *, auto_ack: bool = True) -> None:
        self.widget = widget
        self.auto_ack = auto_ack
        self.frames: list[tuple[dict, bytes]] = []
        self.replies: list[tuple[dict, list]] = []
        self.unacked: dict[int, set[int]] = {}
        self.max_unacked = 0
        self.cond = threading.Condition()
        widget.send = self._receive  # what the render threads and the handler call

    def _receive(self, content: dict, buffers=None) -> None:
        with self.cond:
            if content["type"] == "frame":
                assert len(buffers) == 1 and isinstance(buffers[0], bytes), "a frame is one binary buffer"
                self.frames.append((content, buffers[0]))
                out = self.unacked.setdefault(content["view"], set())
                out.add(content["id"])
                self.max_unacked = max(self.max_unacked, len(out))
            else:
                self.replies.append((content, list(buffers or [])))
            self.cond.notify_all()

    def send(self, msg: dict) -> None:
        if msg.get("type") == "ack":
            with self.cond:
                self.unacked.get(msg["view"], set()).discard(msg["id"])
        self.widget._handle_custom_msg(msg, [])

    def ack_all(self) -> None:
        with self.cond:
            pending = [(v, i) for v, ids in self.unacked.items() for i in sorted(ids)]
        for v, i in pending:
            self.send({"type": "ack", "view": v, "id": i})

    def ready(self, view: int = 0, size: int = SIZE, ratio: float = 1.0) -> None:
        self.send({"type": "ready", "view": view, "width": size, "height": size, "ratio": ratio})

    def wait_frame(self, view: int = 0, *, after: int = -1, kind: str | None = "idle", min_version: int = 0,
                   timeout: float = 30.0):
        """The first frame of ``view`` at index > ``after`` in ``self.frames``, of ``kind`` and showing
        session state ``min_version`` or later: ``(index, meta, [H, W, 3] uint8)``."""
        deadline = time.monotonic() + timeout
        while True:
            if self.auto_ack:
                self.ack_all()
            with self.cond:
                for n, (meta, data) in enumerate(self.frames):
                    if n > after and meta["view"] == view and (kind is None or meta["kind"] == kind) \
                            and meta["version"] >= min_version:
                        return n, meta, decode(data)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {kind or ''} frame of view {view} after #{after} in {timeout} s; "
                                         f"got {[(m['view'], m['kind']) for m, _ in self.frames]}")
                self.cond.wait(min(left, 0.05))

    def wait_reply(self, type_: str, timeout: float = 30.0) -> tuple[dict, list]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for content, buffers in self.replies:
                    if content["type"] == type_:
                        return content, buffers
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {type_!r} reply in {timeout} s; got {self.replies}")
                self.cond.wait(left)

    def latest_index(self) -> int:
        with self.cond:
            return len(self.frames) - 1


def decode(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def assert_not_blank(img: np.ndarray) -> None:
    assert float(img.std()) > 3.0, f"blank frame (std {img.std():.2f})"


@pytest.fixture(scope="module")
def grouped_ct(small_ct) -> Volume:
    """The small head CT with its two threshold classes put into anatomical groups."""
    classes = (LabelClass(0, "background", (0.0, 0.0, 0.0)),
               LabelClass(1, "soft tissue", (0.9, 0.6, 0.5), group="soft tissue"),
               LabelClass(2, "bone", (0.95, 0.92, 0.8), group="skeleton"))
    return Volume(small_ct.data, small_ct.affine, modality="CT", labels=small_ct.labels, classes=classes,
                  name="head")


@pytest.fixture
def viewer(grouped_ct):
    w = Viewer(grouped_ct, preset="CT-Bone", width=SIZE, height=SIZE)
    yield w
    w.close()


def test_frames_are_jpeg_of_the_volume(viewer):
    page = Page(viewer)
    statuses = []
    viewer.observe(lambda change: statuses.append((change["new"][0]["busy"], change["new"][0]["status"])), "views")
    page.ready()
    n, meta, img = page.wait_frame(kind=None)
    assert meta["mime"] == "image/jpeg" and meta["kind"] == "interactive"
    n, meta, img = page.wait_frame(after=n, kind="idle")
    assert img.shape == (SIZE, SIZE, 3) and (meta["width"], meta["height"]) == (SIZE, SIZE)
    assert_not_blank(img)
    state = viewer.views[0]
    assert state["preset"] == "CT-Bone" and state["title"] == "head"
    assert [g["name"] for g in state["groups"]] == ["soft tissue", "skeleton"]
    assert {"name": "vtk", "label": "VTK ray caster", "disabled": False, "hint": ""} in viewer.renderer_options
    # the torch marcher takes seconds per frame on a CPU: its menu entry says so there (its view titles do not)
    slow = " · slow on a CPU" if default_device().type == "cpu" else ""
    assert {"name": "raymarch", "label": "Ray-marcher (torch)" + slow, "disabled": False,
            "hint": ""} in viewer.renderer_options
    assert {"name": "CT-Muscle", "disabled": False, "hint": ""} in viewer.preset_options
    assert {"name": "MR-Default", "disabled": True, "hint": "for MR; this volume is CT"} in viewer.preset_options
    # the render thread reports the slow full-quality render through the synced state
    assert (True, "rendering full quality…") in statuses and statuses[-1] == (False, "")


def test_the_previous_renderers_image_is_dimmed_until_the_new_ones_first_frame(viewer):
    page = Page(viewer)
    stale = []
    page.ready()
    n, _, _ = page.wait_frame(kind="idle")
    assert viewer.views[0]["stale"] is False
    viewer.observe(lambda change: stale.append(change["new"][0]["stale"]), "views")
    other = "vtk" if viewer.session.renderer_name != "vtk" else "compiled"
    page.send({"type": "renderer", "view": 0, "name": other})
    page.wait_frame(after=n, min_version=viewer.session.version)
    wait = time.monotonic() + 10
    while viewer.views[0]["stale"] and time.monotonic() < wait:
        time.sleep(0.01)
    assert stale[0] is True and viewer.views[0]["stale"] is False, stale


def test_drag_changes_camera_and_frame(viewer):
    page = Page(viewer)
    page.ready()
    n, _, before = page.wait_frame()
    azimuth = viewer.session.camera.azimuth
    page.send({"type": "drag", "view": 0, "button": "left", "dx": 60, "dy": 0, "shift": False, "ctrl": False})
    assert viewer.session.camera.azimuth != azimuth
    n, _, after = page.wait_frame(after=n, min_version=viewer.session.version)
    assert pixels_differ(before, after)
    # shift + left pans (target moves), right zooms (distance changes), the wheel zooms
    target, distance = viewer.session.camera.target, viewer.session.camera.distance
    page.send({"type": "drag", "view": 0, "button": "left", "dx": 10, "dy": 5, "shift": True})
    assert viewer.session.camera.target != target
    page.send({"type": "drag", "view": 0, "button": "right", "dx": 0, "dy": -40})
    assert viewer.session.camera.distance < distance
    distance = viewer.session.camera.distance
    page.send({"type": "wheel", "view": 0, "dy": 120})
    assert viewer.session.camera.distance > distance


@pytest.mark.parametrize("ratio", [1.0, 2.0])
def test_a_pan_follows_the_pointer_on_a_canvas_shrunk_by_its_page(viewer, ratio):
    """The page lays the canvas out at 48 CSS px (its set width is 96): a pan drag of 30 CSS px moves
    the scene by 30 CSS px = 30 x ratio device pixels of the frame, not by the set width's share."""
    page = Page(viewer)
    page.ready(size=round(48 * ratio), ratio=ratio)
    cam = viewer.session.camera
    assert cam.width == round(48 * ratio)
    page.send({"type": "drag", "view": 0, "button": "middle", "dx": 30, "dy": 0})
    moved = np.linalg.norm(np.subtract(viewer.session.camera.target, cam.target))
    assert moved == pytest.approx(30 * ratio * cam.mm_per_pixel, rel=1e-6)
    page.send({"type": "resize", "view": 0, "width": 96, "height": 96, "ratio": 1.0})
    cam = viewer.session.camera
    page.send({"type": "drag", "view": 0, "button": "middle", "dx": 30, "dy": 0})
    moved = np.linalg.norm(np.subtract(viewer.session.camera.target, cam.target))
    assert moved == pytest.approx(30 * cam.mm_per_pixel, rel=1e-6)
    with pytest.raises(MessageError, match="ratio"):
        parse_client_message({"type": "resize", "view": 0, "width": 96, "height": 96, "ratio": 0})


def test_at_most_two_frames_unacknowledged(viewer):
    page = Page(viewer, auto_ack=False)
    viewer.stream.ack_timeout = 60.0  # only real acknowledgements may free the stream here
    page.ready()
    for k in range(8):  # a burst of gestures: the stream merges them and stops at two in flight
        page.send({"type": "wheel", "view": 0, "dy": 10 + k})
        time.sleep(0.02)
    deadline = time.monotonic() + 20
    while len(page.frames) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(page.frames) == 2
    time.sleep(0.3)  # long enough for several 96 px renders: none may be sent
    assert len(page.frames) == 2 and page.max_unacked == 2
    page.send({"type": "ack", "view": 0, "id": page.frames[0][0]["id"]})
    page.wait_frame(after=1, kind=None, timeout=20)  # the ack freed one slot
    page.auto_ack = True
    for k in range(10):
        last = page.latest_index()
        page.send({"type": "drag", "view": 0, "button": "left", "dx": 5, "dy": 1})
        page.wait_frame(after=last, kind=None)
    page.wait_frame(min_version=viewer.session.version)
    assert page.max_unacked <= 2


def test_class_and_group_toggles_change_the_image(viewer):
    page = Page(viewer)
    page.ready()
    n, _, shown = page.wait_frame()
    page.send({"type": "class", "view": 0, "index": 2, "visible": False})
    assert viewer.views[0]["classes"][2]["visible"] is False
    assert viewer.views[0]["groups"][1] == {"name": "skeleton", "visible": "none"}
    n, _, hidden = page.wait_frame(after=n, min_version=viewer.session.version)
    assert pixels_differ(shown, hidden, threshold=5.0)
    page.send({"type": "group", "view": 0, "group": "skeleton", "visible": True})
    n, _, back = page.wait_frame(after=n, min_version=viewer.session.version)
    assert not pixels_differ(shown, back, threshold=1.0)
    # a colour picked shows at once: class colours turn on with it (the swatch changed, the view did not)
    assert viewer.views[0]["class_colors"] is False
    page.send({"type": "class", "view": 0, "index": 2, "color": "#00ff00", "opacity": 0.5})
    n, _, green = page.wait_frame(after=n, min_version=viewer.session.version)
    assert viewer.views[0]["class_colors"] and viewer.views[0]["classes"][2]["color"] == "#00ff00"
    def green_over_red(image: np.ndarray) -> float:
        return float(image[..., 1].mean() - image[..., 0].mean())

    assert green_over_red(green) > green_over_red(shown) + 10, "bone coloured green by its class"


def test_python_api_drives_state_and_frames(viewer, tmp_path):
    page = Page(viewer)
    page.ready()
    n, _, bone = page.wait_frame()
    viewer.set_preset("CT-Muscle")
    assert viewer.views[0]["preset"] == "CT-Muscle"
    n, _, muscle = page.wait_frame(after=n, min_version=viewer.session.version)
    assert pixels_differ(bone, muscle)
    viewer.set_class_visible("Bone", False)
    viewer.set_group_visible("soft tissue", False)
    assert [c["visible"] for c in viewer.views[0]["classes"]] == [True, False, False]
    with pytest.raises(InputError, match="no class named"):
        viewer.set_class_visible("liver", False)
    # a bad argument from Python is an InputError in Python's words, not the page protocol's
    with pytest.raises(InputError, match=r"^'opacity' must lie in \[0, 1\], got 1.5"):
        viewer.set_class_opacity(2, 1.5)
    with pytest.raises(InputError, match="on must be True or False, got 'yes'"):
        viewer.set_class_colors("yes")             # it switched class colours on
    assert viewer.views[0]["class_colors"] is False
    viewer.set_class_color("Bone", (0.0, 0.0, 1.0))          # from Python too, by name, as (r, g, b) or hex
    assert viewer.views[0]["class_colors"] is True and viewer.views[0]["classes"][2]["color"] == "#0000ff"
    viewer.set_class_color(2, "#ff8000")
    assert viewer.views[0]["classes"][2]["color"] == "#ff8000"
    for bad in ((1.0, 0.5), (0.0, 2.0, 0.0), "red"):
        with pytest.raises(InputError, match="colour|color"):
            viewer.set_class_color(2, bad)
    viewer.set_class_colors(False)
    viewer.set_class_visible(2, True)
    viewer.look_from(90, 30)                                   # degrees: the patient's left, from above
    cam = viewer.session.camera
    assert (cam.azimuth, cam.elevation) == (90.0, 30.0) and cam.distance == viewer.session.home_camera().distance
    with pytest.raises(InputError, match="elevation must lie in -90..90"):
        viewer.look_from(0, 120)
    viewer.reset_camera()
    assert viewer.session.camera == viewer.session.home_camera()
    png = viewer.screenshot(tmp_path / "shot.png")
    assert png.startswith(b"\x89PNG") and (tmp_path / "shot.png").read_bytes() == png
    assert decode(png).shape == (SIZE, SIZE, 3)


def test_screenshot_and_resize_messages(viewer):
    page = Page(viewer)
    page.ready()
    page.send({"type": "resize", "view": 0, "width": 120, "height": 80})
    n, meta, img = page.wait_frame()
    while (meta["width"], meta["height"]) != (120, 80):
        n, meta, img = page.wait_frame(after=n)
    assert img.shape == (80, 120, 3)
    page.send({"type": "screenshot", "view": 0, "request": 7})
    reply, buffers = page.wait_reply("screenshot")
    assert reply["request"] == 7 and reply["filename"].endswith(".png") and reply["mime"] == "image/png"
    shot = decode(buffers[0])
    assert shot.shape == (80, 120, 3)
    assert_not_blank(shot)


def test_bad_messages_are_logged_not_raised(viewer, caplog):
    page = Page(viewer)
    page.ready()
    n, _, _ = page.wait_frame()
    bad = [None, [1, 2], "drag", {}, {"type": "nope", "view": 0}, {"type": "drag", "view": 0},
           {"type": "drag", "view": 0, "button": "fourth", "dx": 1, "dy": 1},
           {"type": "wheel", "view": 0, "dy": "a lot"}, {"type": "wheel", "view": 0, "dy": float("nan")},
           {"type": "wheel", "view": 9, "dy": 1}, {"type": "ack", "view": 0, "id": 1.5},
           {"type": "resize", "view": 0, "width": -5, "height": 10},
           {"type": "preset", "view": 0, "name": "CT-Nonsense"}, {"type": "class", "view": 0, "index": 42},
           {"type": "class", "view": 0, "index": 1, "opacity": 3}, {"type": "class", "view": 0, "index": 1, "color": "red"},
           {"type": "group", "view": 0, "group": "vessels", "visible": True}]
    with caplog.at_level(logging.WARNING, logger="rfmweb.widgets.viewer"):
        for msg in bad:
            viewer._handle_custom_msg(msg, [])
    assert len([r for r in caplog.records if "ignored message" in r.getMessage()]) == len(bad)
    errors = [c for c, _ in page.replies if c["type"] == "error"]
    assert len(errors) == len(bad) and "CT-Nonsense" in errors[12]["message"]
    page.send({"type": "wheel", "view": 0, "dy": -50})  # still alive and well
    page.wait_frame(after=n)


def test_compare_links_cameras_and_keeps_own_state(small_ct):
    cmp = Compare.presets(small_ct, ["CT-Bone", "CT-Muscle"], width=SIZE, height=SIZE)
    try:
        page = Page(cmp)
        page.ready(0)
        page.ready(1)
        _, _, bone = page.wait_frame(0)
        n, _, muscle = page.wait_frame(1)
        assert_not_blank(bone)
        assert_not_blank(muscle)
        assert pixels_differ(bone, muscle)
        assert [v["title"] for v in cmp.views] == ["CT-Bone", "CT-Muscle"]
        assert {"name": "CT-Bone", "disabled": False, "hint": ""} in cmp.preset_options
        assert len(cmp.renderer_options) >= 2
        a, b = cmp.sessions
        page.send({"type": "drag", "view": 0, "button": "left", "dx": 80, "dy": 20})
        assert b.camera == a.camera
        page.send({"type": "wheel", "view": 1, "dy": -200})
        assert a.camera.distance == b.camera.distance
        page.wait_frame(0, after=n, min_version=a.version)
        page.wait_frame(1, after=n, min_version=b.version)
        page.send({"type": "class", "view": 1, "index": 2, "visible": False})
        assert a.classes.style(2).visible and not b.classes.style(2).visible
        cmp.set_preset("CT-AAA", view=0)
        assert [v["preset"] for v in cmp.views] == ["CT-AAA", "CT-Muscle"]
        shot = decode(cmp.screenshot())                     # the views side by side under their titles
        assert shot.shape == (CAPTION_PX + 8 + SIZE, 2 * SIZE + 4, 3)
    finally:
        cmp.close()


def test_compare_renderers(small_ct):
    cmp = Compare.renderers(small_ct, ["raymarch", "vtk"], preset="CT-Muscle", width=64, height=64, link=False)
    try:
        assert [v["renderer"] for v in cmp.views] == ["raymarch", "vtk"]
        assert [v["title"] for v in cmp.views] == ["Ray-marcher (torch)", "VTK ray caster"]
        page = Page(cmp)
        page.send({"type": "renderer", "view": 0, "name": "vtk"})
        page.send({"type": "drag", "view": 0, "button": "left", "dx": 30, "dy": 0})
        a, b = cmp.sessions
        assert a.renderer_name == "vtk" and a.camera != b.camera  # not linked
    finally:
        cmp.close()


def test_constructor_errors_and_shared_sessions(small_ct):
    session = RenderSession(small_ct, width=SIZE, height=SIZE)
    with pytest.raises(InputError, match="two or more"):
        Compare([small_ct])
    with pytest.raises(InputError, match=r"Volume or RenderSession, got ndarray; wrap it .*Volume\(array, affine\)"):
        Viewer(np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match=r"got str; load the file first: rfmweb.load_volume\(path\)"):
        Viewer("scan.nii.gz")
    with pytest.raises(InputError, match="a Volume needs its affine"):
        Volume(np.zeros((4, 4, 4)))
    with pytest.raises(InputError, match="unknown preset"):
        Viewer(session, preset="CT-Nonsense")
    w = Viewer(session, preset="CT-Muscle")
    assert w.session is session and session.preset_name == "CT-Muscle"
    session.set_preset("CT-Bone")  # changes made on the session show up in the widget's state
    assert w.views[0]["preset"] == "CT-Bone"
    w.close()
    assert session.render().shape == (SIZE, SIZE, 3)  # a session the widget did not create stays usable


def test_cinematic_still_streams_progressive_path_traced_frames(viewer):
    from rfmweb.render.pathtrace import mitsuba_available
    if not mitsuba_available():
        pytest.skip("Mitsuba 3 is not installed (pip install rfmweb[photoreal])")
    page = Page(viewer)
    page.ready()
    n, _, _ = page.wait_frame(kind=None)
    page.send({"type": "cinematic", "view": 0, "on": True})
    assert viewer.session.still_renderer == "pathtrace" and viewer.views[0]["cinematic"] is True
    n, first, img = page.wait_frame(after=n, kind="progressive", timeout=120)
    n, second, _ = page.wait_frame(after=n, kind="progressive", timeout=120)
    assert 0 < first["spp"] < second["spp"] and second["version"] == first["version"]
    assert_not_blank(img)
    page.send({"type": "cinematic", "view": 0, "on": False})
    assert viewer.session.still_renderer is None and viewer.views[0]["cinematic"] is False


@pytest.fixture(scope="module")
def brats_case() -> Volume:
    """A 2 mm synthetic glioma case (4 modalities, BraTS labels)."""
    from rfmweb.data.cohort import cohort_case
    return cohort_case("val", 0, 1, resolution_mm=2.0)[0]


def test_compare_segmentations_slices_toggles_and_dice(brats_case):
    cmp = Compare.segmentations(brats_case, width=SIZE, height=SIZE, wait=True)
    try:
        page = Page(cmp)
        for i in range(3):
            page.ready(i)
        frames_3d = [page.wait_frame(i)[2] for i in range(3)]
        for img in frames_3d:
            assert_not_blank(img)
        assert [v["title"] for v in cmp.views] == ["ground truth", "raw INR", "denoised INR"]
        scores = cmp.dice()
        assert cmp.views[0]["subtitle"].split("\n")[1].startswith("WT ") and cmp.views[0]["subtitle"].endswith(" mL")   # volumes
        assert cmp.views[1]["subtitle"].startswith("Dice " + " · ".join(f"{k} {v:.3f}" for k, v in scores["raw INR"].items()))
        assert all(v["correctable"] and v["mode"] == "3d" for v in cmp.views)
        gt, raw, den = cmp.sessions
        assert raw.volume.data is brats_case.data and raw.volume.labels is not brats_case.labels
        # a view switched to axial: every view follows (linked), a slice frame unlike the 3-D one
        k = int(np.argmax(brats_case.labels.sum(axis=(0, 1))))
        n = page.latest_index()
        page.send({"type": "mode", "view": 1, "mode": "axial", "index": k})
        assert [(s.mode, s.slice_index) for s in cmp.sessions] == [("axial", k)] * 3
        assert [v["slice_count"] for v in cmp.views] == [brats_case.shape[2]] * 3
        _, _, axial = page.wait_frame(1, after=n, min_version=raw.version)
        assert_not_blank(axial)
        assert pixels_differ(axial, frames_3d[1])
        # the wheel steps slices on a slice view (down: one slice lower), linked views follow
        page.send({"type": "wheel", "view": 0, "dy": 120})
        assert [s.slice_index for s in cmp.sessions] == [k - 1] * 3
        page.send({"type": "slice", "view": 2, "index": k})
        assert cmp.views[0]["slice_index"] == k
        before = [page.wait_frame(i, after=n, min_version=s.version)[2] for i, s in enumerate(cmp.sessions)]
        # the Sequence menu: slices start on FLAIR; another sequence from the page or Python, in every view
        assert [(v["channels"], v["slice_channel"]) for v in cmp.views] == [(["T1n", "T1c", "T2w", "FLAIR"], 3)] * 3
        n = page.latest_index()
        page.send({"type": "channel", "view": 1, "channel": 1})
        assert [v["slice_channel"] for v in cmp.views] == [1] * 3
        _, _, t1c = page.wait_frame(1, after=n, min_version=raw.version)
        assert pixels_differ(t1c, before[1], threshold=0.3), "T1c slice looks like the FLAIR one"
        cmp.set_slice_channel("FLAIR")
        assert [s.slice_channel for s in cmp.sessions] == [3] * 3
        with pytest.raises(InputError, match="no channel 'T2'"):
            cmp.set_slice_channel("T2")
        # a class toggle from Python applies to all three views
        n = page.latest_index()
        cmp.set_class_visible("ED", False)
        assert not any(s.classes.style(2).visible for s in cmp.sessions)
        for i, s in enumerate(cmp.sessions):
            _, _, img = page.wait_frame(i, after=n, min_version=s.version)
            assert pixels_differ(img, before[i], threshold=0.3), f"view {i} did not change"
        cmp.set_view_mode("3d")
        assert all(s.mode == "3d" for s in cmp.sessions)
    finally:
        cmp.close()


def test_segmentation_messages_are_validated(brats_case, small_ct):
    cmp = Compare.presets(small_ct, ["CT-Bone", "CT-Muscle"], width=SIZE, height=SIZE)
    try:
        page = Page(cmp)
        page.send({"type": "stroke", "view": 0, "points": [[10, 10]], "label": 1})
        assert "not segmentation views" in page.wait_reply("error")[0]["message"]
        with pytest.raises(InputError, match="segmentation"):
            cmp.apply_correction()
        page.replies.clear()
        bad = [{"type": "mode", "view": 0, "mode": "oblique"}, {"type": "slice", "view": 0, "index": 2},
               {"type": "stroke", "view": 0, "points": [[1, "a"]], "label": 1},
               {"type": "stroke", "view": 0, "points": [], "label": 1},
               {"type": "stroke", "view": 0, "points": [[1, 2]], "label": 9},
               {"type": "mark", "view": 0, "x": 1, "y": 2, "label": -1}]
        for msg in bad:
            page.send(msg)
        assert len([c for c, _ in page.replies if c["type"] == "error"]) == len(bad)
        page.send({"type": "mode", "view": 0, "mode": "coronal"})  # slices of a CT work too
        assert [s.mode for s in cmp.sessions] == ["coronal", "coronal"]
    finally:
        cmp.close()


def test_paint_apply_and_undo_messages_correct_the_raw_view(brats_case, forced_precision):
    pytest.importorskip("rfmweb.inr.correct")
    cmp = Compare.segmentations(brats_case, width=SIZE, height=SIZE, wait=True)
    try:
        page = Page(cmp)
        for i in range(3):
            page.ready(i)
        seg, raw = cmp.segmentation, cmp.sessions[1]
        k = int(np.argmax((seg.labels(1) > 0).sum(axis=(0, 1))))
        page.send({"type": "mode", "view": 0, "mode": "axial", "index": k})
        n, _, before = page.wait_frame(1, min_version=raw.version)
        labels, dice_before = seg.labels(1), cmp.views[1]["subtitle"]
        geo = raw.slice_geometry()
        ii, jj = np.nonzero(labels[:, :, k])
        u = ((geo.shape[0] - 1 - ii) + 0.5) * geo.spacing[0] / geo.mm_per_px + geo.offset[0]
        v = ((geo.shape[1] - 1 - jj) + 0.5) * geo.spacing[1] / geo.mm_per_px + geo.offset[1]
        page.send({"type": "stroke", "view": 1, "points": [[float(a), float(b)] for a, b in zip(u, v)], "label": 0,
                   "radius": 1.0})
        cmp.control.wait(60)  # strokes are handled on the correction thread
        assert cmp.views[1]["marks"] >= len(ii) and "marked" in cmp.views[1]["status"]
        page.send({"type": "apply_correction", "view": 1})
        cmp.control.wait(120)
        _, _, after = page.wait_frame(1, after=n, min_version=raw.version)
        assert (seg.labels(1)[:, :, k] > 0).sum() < len(ii) // 2
        assert pixels_differ(before, after, threshold=0.2), "the raw view's frame did not change"
        assert cmp.views[1]["subtitle"].startswith("Dice WT") and cmp.views[1]["subtitle"] != dice_before
        page.send({"type": "undo_correction", "view": 1})
        cmp.control.wait(60)
        np.testing.assert_array_equal(seg.labels(1), labels)
        # the undone stroke's marks are pending again; clear_marks drops them
        assert cmp.views[1]["marks"] > 0
        cmp.clear_marks()
        assert seg.n_marks == 0 and cmp.views[1]["marks"] == 0
    finally:
        cmp.close()
