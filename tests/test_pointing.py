"""Crosshair cursor, annotations and scene files: slice pixel <-> voxel maths, clicks that move linked
views, a 3-D pick on the ray-marcher's surface, labels that stay on the anatomy while orbiting, and
scene files that restore a view exactly or refuse cleanly (nothing changed)."""

from __future__ import annotations

import io
import json
import time

import numpy as np
import pytest
from PIL import Image

from rfmweb.errors import InputError
from rfmweb.render.pick import opacity_in_front, pick, project
from rfmweb.render.slices import slice_geometry
from rfmweb.session import RenderSession, link_points
from rfmweb.session import messages as m
from rfmweb.session.controller import ViewController
from rfmweb.session.pointing import ANNOTATION_COLOR, CURSOR_COLOR, HIDDEN_COLOR, MAX_TEXT
from rfmweb.session.scene_file import MAX_SCENE_BYTES, apply_scene, read_scene, save_scene, scene_to_dict

SIZE = 96


def _near(image: np.ndarray, uv, color, radius: int = 2) -> bool:
    """Some pixel within ``radius`` of ``uv`` (u right, v down) has ``color`` (+-40 per channel)."""
    u, v = int(round(uv[0])), int(round(uv[1]))
    patch = image[max(0, v - radius):v + radius + 1, max(0, u - radius):u + radius + 1].astype(int)
    return bool((np.abs(patch - np.array(color)).max(-1) <= 40).any())


@pytest.mark.parametrize("axis", ["axial", "coronal", "sagittal"])
@pytest.mark.parametrize("zoom, pan", [(1.0, (0.0, 0.0)), (2.5, (7.0, -4.0))])
def test_slice_pixels_and_voxels_invert(small_ct, axis, zoom, pan):
    geo = slice_geometry(small_ct, axis, 10, 120, 90, zoom=zoom, pan_mm=pan)
    rng = np.random.default_rng(0)
    uv = rng.uniform(0, 90, (50, 2))
    ijk = geo.to_voxel(uv[:, 0], uv[:, 1])
    np.testing.assert_allclose(geo.to_pixel(ijk), uv, atol=1e-9)


@pytest.fixture
def linked(small_ct):
    """Two views of ``small_ct`` sharing the cursor, the first on axial slice 12, and their controller."""
    a = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    b = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    unlink = link_points([a, b])
    control = ViewController([a, b])
    a.set_view_mode("axial", 12)
    yield a, b, control
    unlink()
    control.close()


def test_a_click_on_a_slice_moves_every_linked_view_and_draws_the_crosshair(small_ct, linked):
    a, b, control = linked
    b.set_view_mode("sagittal")
    control.handle(m.PointAt(0, 30.0, 60.0))
    geo = a.slice_geometry()
    ijk = np.rint(geo.to_voxel([30.0], [60.0])[0]).astype(int)
    want = (small_ct.affine @ np.append(ijk, 1.0))[:3]
    np.testing.assert_allclose(a.cursor, want)
    assert b.cursor == a.cursor
    # both views now show the planes through the clicked voxel
    assert a.slice_indices == b.slice_indices == {"sagittal": ijk[0], "coronal": ijk[1], "axial": 12}
    frame = b.render()
    (u, v), = b.slice_geometry().to_pixel(ijk)
    assert _near(frame, (u, 2), CURSOR_COLOR) and _near(frame, (2, v), CURSOR_COLOR), "no crosshair lines"
    # the readout of both views: where the cursor is and the intensity there (it went stale in the
    # linked view and dropped the HU)
    hu, label = float(small_ct.data[0][tuple(ijk)]), int(small_ct.labels[tuple(ijk)])
    name = "".join(f" · {c.name}" for c in small_ct.classes if c.index == label and label)   # the class last
    assert control.probes[0] == control.probes[1] == \
        "cursor ({:.1f}, {:.1f}, {:.1f}) mm RAS · {:.0f} HU".format(*want, hu) + name
    # a click off the volume leaves the cursor where it was
    a.zoom_slice(0.25)
    control.handle(m.PointAt(0, 1.0, 1.0))
    np.testing.assert_allclose(a.cursor, want)
    assert control.probes[0] == "nothing under the pointer"


def test_stepping_a_slice_moves_the_cursor_onto_it_in_every_linked_view(small_ct, linked):
    """As in 3D Slicer's four-up: the wheel on the axial view moves the axial line in the other planes."""
    a, b, control = linked
    b.set_view_mode("coronal")
    start = (small_ct.affine @ np.array([20.0, 25.0, 12.0, 1.0]))[:3]
    a.set_cursor(start)
    coronal_before = b.render()
    (u, v), = a.slice_geometry().to_pixel(np.array([[20.0, 25.0, 12.0]]))
    control.handle(m.Probe(0, u, v))     # the pointer rests there: its readout names slice 12
    assert control.probes[0].startswith("({:.1f}, {:.1f}, {:.1f}) mm RAS".format(*start))
    control.handle(m.Wheel(0, -100.0))   # one slice up
    control.handle(m.Wheel(0, -100.0))
    control.wait()
    want = (small_ct.affine @ np.array([20.0, 25.0, 14.0, 1.0]))[:3]
    assert control.probes[0].startswith("({:.1f}, {:.1f}, {:.1f}) mm RAS".format(*want))   # now slice 14
    assert a.slice_index == 14
    np.testing.assert_allclose(a.cursor, want)
    np.testing.assert_allclose(b.cursor, want)
    assert b.slice_indices["coronal"] == 25 and b.slice_index == 25   # the coronal plane stays
    # the coronal view's horizontal line moved up by two slices
    geo = b.slice_geometry()
    (_, v0), (_, v1) = geo.to_pixel(np.array([[20.0, 25.0, 12.0], [20.0, 25.0, 14.0]]))
    coronal = b.render()
    assert _near(coronal, (2, v1), CURSOR_COLOR) and not _near(coronal_before, (2, v1), CURSOR_COLOR, 0)
    assert _near(coronal_before, (2, v0), CURSOR_COLOR)
    # without a cursor, stepping a slice places none
    a.set_cursor(None)
    a.step_slice(-1)
    assert a.cursor is None and b.cursor is None and a.slice_index == 13


def test_readouts_follow_the_cursor_and_the_slice_under_a_resting_pointer(small_ct, linked):
    """Four views: stepping slices with the keys in one plane moved the cursor in every view, but the
    other views kept reading "cursor (old position) · old HU"; a hovering readout kept the previous
    plane's voxel after the plane changed."""
    a, b, control = linked
    b.set_view_mode("coronal")
    control.handle(m.PointAt(0, SIZE / 2, SIZE / 2))
    first = control.probes[1]
    assert first.startswith("cursor ") and control.probes[0] == first
    control.handle(m.Key(1, "ArrowUp"))                  # the coronal plane one slice on: the cursor moves
    for view in (0, 1):
        want = "cursor " + a.probe_point(a.cursor).text()
        assert control.probes[view] == want != first, view
    ijk = np.rint(np.linalg.solve(small_ct.affine, np.append(a.cursor, 1.0))[:3]).astype(int)
    assert f" · {small_ct.data[0][tuple(ijk)]:.0f} HU" in control.probes[0]
    control.handle(m.Probe(0, SIZE / 2 + 3, SIZE / 2 + 5))   # hovering: then the plane changes under it
    hover = control.probes[0]
    control.handle(m.SetMode(0, "sagittal"))
    assert control.probes[0] == a.probe(SIZE / 2 + 3, SIZE / 2 + 5).text() != hover


def test_the_cursor_readout_reads_the_sequence_shown(small_ct):
    """After FLAIR -> T1c the slice views kept reading FLAIR's value at the cursor (the 3-D view's changed)."""
    from rfmweb.volume import Volume

    mr = Volume(np.stack([small_ct.data[0] + 2000, small_ct.data[0] * 2 + 5000]), small_ct.affine, modality="MR",
                channels=("FLAIR", "T1c"), name="two sequences")
    s = RenderSession(mr, width=SIZE, height=SIZE)
    control = ViewController([s])
    try:
        s.set_view_mode("axial", 12)
        control.handle(m.PointAt(0, SIZE / 2, SIZE / 2))
        ijk = tuple(np.rint(np.linalg.solve(mr.affine, np.append(s.cursor, 1.0))[:3]).astype(int))
        assert control.probes[0].endswith(f" · {mr.data[0][ijk]:.0f}")
        control.handle(m.SetSliceChannel(0, 1))
        assert control.probes[0].endswith(f" · {mr.data[1][ijk]:.0f}") and mr.data[1][ijk] != mr.data[0][ijk]
    finally:
        control.close()
        s.close()


def test_the_3d_view_carries_an_orientation_marker(small_ct):
    """The 3-D view had no orientation cue: a front view and a view from above could not be told
    apart. Streamed 3-D frames now carry the patient axes, lettered, at the bottom right; the session's
    own images (``rfmweb render``) and the difference heat map do not."""
    from rfmweb.camera import OrbitCamera
    from rfmweb.session import FrameStream
    from rfmweb.session.difference import DifferenceSession
    from rfmweb.session.pointing import AXIS_COLORS, draw_orientation, orientation_ends

    def ends(azimuth, elevation):
        cam = OrbitCamera.framing(small_ct.bounds, azimuth=azimuth, elevation=elevation, width=64, height=64)
        return {letter: (v, near) for letter, _, v, near in orientation_ends(cam)}

    front = ends(0, 0)                      # facing the patient: their right on screen left, head up
    assert front["R"][0][0] < -0.99 and front["L"][0][0] > 0.99 and front["S"][0][1] < -0.99
    assert np.hypot(*front["A"][0]) < 0.01 and front["A"][1] and not front["P"][1]   # A points at us
    assert ends(180, 0)["R"][0][0] > 0.99                                         # from behind
    assert ends(90, 0)["A"][0][0] < -0.99                                         # from the patient's left
    assert ends(0, 89)["A"][0][1] > 0.99                       # orbited up over the head: the face below
    s = RenderSession(small_ct, renderer="compiled", preset="CT-Bone", width=216, height=216)
    plain = s.render()
    marked = draw_orientation(plain, s.camera)
    changed = np.abs(marked.astype(int) - plain).sum(-1) > 0
    ys, xs = np.nonzero(changed)
    assert changed.sum() > 100 and xs.min() > 216 * 0.7 and ys.min() > 216 * 0.7       # the corner only
    thumbnail = plain[:80, :80]
    assert draw_orientation(thumbnail, s.camera) is thumbnail                          # no room: none
    assert s.draws_orientation and not DifferenceSession(s, s, width=32, height=32).draws_orientation
    frames = []
    stream = FrameStream(s, frames.append, idle_delay=0.05)
    try:
        s.set_renderer("compiled")
        stream.request()
        deadline = time.monotonic() + 60
        while not any(f.kind == "idle" for f in frames) and time.monotonic() < deadline:
            if frames:
                stream.ack(frames[-1].id)
            time.sleep(0.05)
    finally:
        stream.close()
    idle = np.asarray(Image.open(io.BytesIO(next(f for f in frames if f.kind == "idle").data)).convert("RGB"))
    def blue(image):        # the S-I axis' colour: nowhere in a CT-Bone picture
        return int((np.abs(image[-60:, -60:].astype(int) - AXIS_COLORS[2]).sum(-1) < 90).sum())

    assert blue(idle) > 15 and blue(plain) == 0


def test_a_3d_click_lands_on_the_surface_the_ray_marcher_draws(small_ct):
    s = RenderSession(small_ct, renderer="raymarch", preset="CT-Bone", width=SIZE, height=SIZE)
    hit = pick(s.snapshot().scene, s.camera, SIZE / 2, SIZE / 2)
    assert hit is not None
    depth = s.renderer().depth(s.snapshot().scene, s.camera)
    # the ray-marcher's own depth map at the centre pixel: the same surface (one pixel's ray apart)
    assert hit.depth == pytest.approx(float(depth[SIZE // 2, SIZE // 2]), abs=2.0 * float(max(small_ct.spacing)))
    control = ViewController([s])
    control.handle(m.PointAt(0, SIZE / 2, SIZE / 2))
    control.wait()
    np.testing.assert_allclose(s.cursor, hit.point, atol=1e-6)
    lo, hi = small_ct.bounds
    assert np.all(np.asarray(s.cursor) >= lo - 1) and np.all(np.asarray(s.cursor) <= hi + 1)
    # a ray through empty space picks nothing
    assert pick(s.snapshot().scene, s.camera, 0.5, 0.5) is None
    control.close()


def test_an_annotation_stays_on_the_anatomy_while_orbiting(small_ct):
    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    point = np.asarray(small_ct.bounds).mean(0)
    s.add_annotation("centre", point)
    for _ in range(3):
        image = s.render()
        (uv,), (front,) = project(s.camera, point[None])
        # inside the head: drawn as a ring (the depth cue), centred on the point
        assert front and _near(image, uv, HIDDEN_COLOR, radius=4), f"the label's ring is not at {uv}"
        s.orbit(60, 10)
    # on a slice through it too, and not on a slice far away
    s.set_cursor(point)
    s.set_view_mode("axial")
    ijk = np.linalg.solve(small_ct.affine, np.append(point, 1.0))[:3]
    uv = s.slice_geometry().to_pixel(ijk)[0]
    assert _near(s.render(), uv, ANNOTATION_COLOR)
    s.set_slice(0)
    assert not _near(s.render(), uv, ANNOTATION_COLOR, radius=1)


def test_a_reduced_frame_draws_marks_at_their_size_on_screen_and_no_unreadable_label():
    """While the user dragged, a 480 px view's 120 px interactive frame carried its label at the 10 px
    minimum: magnified 4x by the page, a 40 px blur. Marks now keep their size on screen, and a label
    that would be under MIN_LABEL_PX is left out (the full frame after the drag has it)."""
    from rfmweb.camera import OrbitCamera
    from rfmweb.session.pointing import MIN_LABEL_PX, Annotation, draw_3d_points, label_px

    bounds = np.array([[-50.0, -50, -50], [50, 50, 50]])
    cam = OrbitCamera.framing(bounds, width=480, height=480)
    notes = [Annotation((0.0, 0.0, 0.0), "centre of the torso")]

    def pink(image):
        return int((np.abs(image.astype(int) - ANNOTATION_COLOR).sum(-1) < 60).sum())

    full = draw_3d_points(np.zeros((480, 480, 3), np.uint8), cam, 100.0, None, notes)
    small = draw_3d_points(np.zeros((120, 120, 3), np.uint8), cam, 100.0, None, notes)
    assert label_px(480, 480) * 120 / 480 < MIN_LABEL_PX
    dot = np.pi * (label_px(480, 480) * 0.35) ** 2                 # the dot's area on the full frame
    assert pink(full) > 3 * dot                                    # dot and label
    assert 0 < pink(small) * 16 < 2 * dot                          # the dot alone, its size on screen kept


def test_an_annotation_behind_the_surface_is_a_ring_with_a_dimmed_label(small_ct):
    """A point deep in the head drawn like one on its surface misled: hidden ones are rings."""
    s = RenderSession(small_ct, renderer="raymarch", preset="CT-Bone", width=SIZE, height=SIZE)
    snap = s.snapshot()
    hit = pick(snap.scene, s.camera, SIZE / 2, SIZE / 2)
    other = pick(snap.scene, s.camera, SIZE * 0.35, SIZE * 0.4)
    outside = s.camera.position + 0.2 * (hit.point - s.camera.position)   # in front of the volume
    behind = other.origin + (other.depth + 10.0) * other.direction        # 10 mm past the surface
    opacity = opacity_in_front(snap.scene, s.camera, np.array([hit.point, outside, behind]))
    assert opacity[0] < 0.2 and opacity[1] == 0.0 and opacity[2] > 0.9, opacity
    s.add_annotation("surface", hit.point)
    s.add_annotation("deep", behind)
    assert s.hidden_annotations(s.snapshot()) == [False, True]
    image = s.render()
    (uv_s, uv_d), _ = project(s.camera, np.array([hit.point, behind]))
    assert _near(image, uv_s, ANNOTATION_COLOR, radius=0), "a point on the surface is a filled dot"
    assert not _near(image, uv_d, ANNOTATION_COLOR, radius=1) and not _near(image, uv_d, HIDDEN_COLOR, radius=0)
    assert _near(image, uv_d, HIDDEN_COLOR, radius=4), "a hidden point is a ring around it"


def test_annotation_messages_and_limits(small_ct):
    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    control = ViewController([s])
    with pytest.raises(InputError, match="place the cursor first"):
        control.handle(m.Annotate(0, "no cursor yet"))
    for bad in ("", "   ", "x" * (MAX_TEXT + 1), "two\nlines"):
        with pytest.raises(m.MessageError):
            m.parse_client_message({"type": "annotate", "view": 0, "text": bad})
    s.set_cursor((0.0, 0.0, 0.0))
    control.handle(m.parse_client_message({"type": "annotate", "view": 0, "text": "origin"}))
    control.handle(m.Annotate(0, "again"))
    control.handle(m.RemoveAnnotation(0, 0))
    assert [a.text for a in s.annotations] == ["again"]
    control.handle(m.parse_client_message({"type": "unannotate", "view": 0}))
    assert s.annotations == () and s.cursor is None
    with pytest.raises(InputError):
        s.set_cursor((0.0, float("nan"), 0.0))
    control.close()


def _styled(small_ct) -> RenderSession:
    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    s.set_preset("CT-Muscle")
    s.set_class(2, visible=False)
    s.set_class(1, opacity=0.4, color=(0.2, 0.6, 1.0))
    s.set_class_colors(True)
    s.orbit(40, -15)
    s.zoom(0.8)
    s.set_cursor(np.asarray(small_ct.bounds).mean(0))
    s.add_annotation("middle")
    s.set_view_mode("coronal")
    s.set_window(400, 40)
    s.zoom_slice(1.5)
    s.set_label_overlay(True)
    s.measure_pixels((10.0, 12.0), (40.0, 30.0))         # a ruler on this coronal slice: saved with the scene
    return s


def test_a_scene_file_restores_the_view_exactly(small_ct, tmp_path):
    s = _styled(small_ct)
    path = save_scene(s, tmp_path / "lesson.json")
    text = path.read_text()
    assert "head_ct_small" not in text  # no file or patient name travels with a scene
    fresh = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    apply_scene(fresh, read_scene(path), path)
    assert scene_to_dict(fresh) == scene_to_dict(s)
    np.testing.assert_array_equal(fresh.render(), s.render())
    s.set_view_mode("3d")
    fresh.set_view_mode("3d")
    np.testing.assert_array_equal(fresh.render(), s.render())
    # through the controller, as a browser uploads it
    other = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    control = ViewController([other])
    control.handle(m.parse_client_message({"type": "load_scene", "view": 0, "text": text}))
    assert other.annotations == s.annotations and other.camera == s.camera
    assert other.ruler == s.ruler is not None
    control.close()
    # opened in a tall view, the scene shows across the view's width what it showed across its height
    tall = RenderSession(small_ct, renderer="vtk", width=SIZE // 2, height=SIZE)
    apply_scene(tall, read_scene(path), path)
    assert tall.camera.distance == pytest.approx(2 * s.camera.distance)
    assert (tall.camera.width, tall.camera.height) == (SIZE // 2, SIZE)


def _bad(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("name, edit, reason", [
    ("grid.json", lambda d: d["grid"].update(shape=[10, 10, 10]), "grid"),
    ("fields.json", lambda d: d.update(patient="x"), "unknown scene fields"),
    ("preset.json", lambda d: d.update(preset="CT-Nope"), "unknown preset"),
    ("class.json", lambda d: d["classes"]["styles"].append({"index": 99}), "class 99"),
    ("slice.json", lambda d: d["view"]["slices"].update(axial=9999), "slice index"),
    ("window.json", lambda d: d["view"].update(window=[5, 1]), "window"),
    ("note.json", lambda d: d["annotations"].append({"position": [0, 0], "text": "x"}), "annotation position"),
    ("ruler.json", lambda d: d.update(ruler=[[0, 0, 0]]), "'ruler' must be null or its two ends"),
    ("ruler_end.json", lambda d: d.update(ruler=[[0, 0, 0], [1, "x", 2]]), "ruler end"),
    ("camera.json", lambda d: d["camera"].update(distance=-1), "distance"),
    ("aspect.json", lambda d: d["camera"].update(aspect="wide"), "aspect"),
    ("format.json", lambda d: d.update(format="other/1"), "not a scene"),
])
def test_a_bad_scene_is_refused_and_changes_nothing(small_ct, tmp_path, name, edit, reason):
    data = scene_to_dict(_styled(small_ct))
    edit(data)
    path = _bad(tmp_path, name, json.dumps(data))
    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    before = scene_to_dict(s)
    with pytest.raises(InputError, match=reason) as err:
        apply_scene(s, read_scene(path) if name != "format.json" else json.loads(path.read_text()), path)
    assert str(path) in str(err.value)
    assert scene_to_dict(s) == before


def test_unreadable_scene_files(tmp_path):
    with pytest.raises(InputError, match="invalid JSON"):
        read_scene(_bad(tmp_path, "broken.json", "{not json"))
    with pytest.raises(InputError, match="too large"):
        read_scene(_bad(tmp_path, "big.json", " " * (MAX_SCENE_BYTES + 1)))
    with pytest.raises(InputError, match="no such scene file"):
        read_scene(tmp_path / "missing.json")
    with pytest.raises(InputError, match="nested too deeply"):      # was a RecursionError (a traceback)
        read_scene(_bad(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000))
    with pytest.raises(m.MessageError):
        m.parse_client_message({"type": "load_scene", "view": 0, "text": " " * (MAX_SCENE_BYTES + 1)})


def test_the_widget_replies_with_its_scene_and_loads_one(small_ct, tmp_path):
    from rfmweb.widgets import Viewer

    w = Viewer(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    sent = []
    w.send = lambda content, buffers=None: sent.append(content)
    try:
        w.set_cursor(np.asarray(small_ct.bounds).mean(0))
        w.annotate("middle")
        assert w.views[0]["annotations"] == ["middle"] and w.views[0]["cursor"].endswith("mm RAS")
        w._on_client_msg(w, {"type": "save_scene", "view": 0, "request": 7}, [])
        (reply,) = [c for c in sent if c["type"] == "scene"]
        assert reply["request"] == 7 and reply["filename"].endswith(".json")
        scene = json.loads(reply["text"])
        assert scene["annotations"][0]["text"] == "middle"
        w.clear_annotations()
        assert w.session.annotations == () and w.session.cursor is None
        w._on_client_msg(w, {"type": "load_scene", "view": 0, "text": reply["text"]}, [])
        assert [a.text for a in w.session.annotations] == ["middle"]
        # a bad upload: an error reply, the view unchanged
        w._on_client_msg(w, {"type": "load_scene", "view": 0, "text": "{\"format\": 1}"}, [])
        assert sent[-1]["type"] == "error" and "not a scene" in sent[-1]["message"]
        assert [a.text for a in w.session.annotations] == ["middle"]
        w.save_scene(tmp_path / "s.json")
        w.clear_annotations()
        w.load_scene(tmp_path / "s.json")
        assert [a.text for a in w.session.annotations] == ["middle"]
    finally:
        w.close()


def test_render_and_serve_start_from_a_scene_file(small_ct, tmp_path, capsys):
    """``rfmweb render --scene`` draws what the scene saved; ``serve --scene`` checks it against the
    volume before serving (a scene of another grid: one line, exit 2)."""
    from PIL import Image

    from rfmweb.app.cli import run_serve
    from rfmweb.cli import main
    from rfmweb.io import save_volume

    save_volume(small_ct, tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    from rfmweb.io import load_volume
    loaded = load_volume(tmp_path / "ct.nii.gz", tmp_path / "labels.nii.gz")
    s = RenderSession(loaded, renderer="vtk", width=SIZE, height=SIZE)
    s.set_preset("CT-Muscle")
    s.orbit(50, 10)
    s.set_view_mode("axial", 9)
    s.set_cursor(np.asarray(loaded.bounds).mean(0))
    s.add_annotation("here")
    scene = save_scene(s, tmp_path / "lesson.json")
    out = tmp_path / "still.png"
    assert main(["render", str(tmp_path / "ct.nii.gz"), "--labels", str(tmp_path / "labels.nii.gz"),
                 "--renderer", "vtk", "--size", str(SIZE), "--scene", str(scene), "--out", str(out)]) in (0, None)
    np.testing.assert_array_equal(np.asarray(Image.open(out).convert("RGB")), s.render())

    other = RenderSession(small_ct.with_labels(None, ()), width=SIZE, height=SIZE)  # drop nothing: same grid
    data = scene_to_dict(other)
    data["grid"]["shape"] = [5, 5, 5]
    bad = tmp_path / "other_grid.json"
    bad.write_text(json.dumps(data))
    import argparse
    args = argparse.Namespace(volume=str(tmp_path / "ct.nii.gz"), labels=None, splats=None, host="127.0.0.1", port=0,
                              auth_key=None, auth_key_file=None, renderer="vtk", preset=None, scene=str(bad))
    assert run_serve(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other_grid.json" in err[0] and "grid" in err[0]


def test_the_app_starts_from_a_scene(small_ct):
    from trame.app import get_server

    from rfmweb.app.server import build_app

    s = _styled(small_ct)
    scene = scene_to_dict(s)
    _, app = build_app(small_ct, server=get_server("rfmweb-scene-start-test", client_type="vue3"), renderer="vtk")
    try:
        app.start_from_scene(scene)
        a, b = app.sessions["view_a"], app.sessions["view_b"]
        assert a.preset_name == "CT-Muscle" and [n.text for n in a.annotations] == ["middle"]
        assert b.annotations == a.annotations
        assert (b.renderer_name, b.preset_name) != (a.renderer_name, a.preset_name)  # still a comparison
        assert app.typed.data.view_mode == "coronal" and app.typed.data.annotations == ["1. middle"]
        # the four-up planes take the scene's look but keep their own plane
        assert [app.sessions[n].mode for n in ("view_d", "view_e", "view_f")] == ["axial", "coronal", "sagittal"]
        assert app.sessions["view_d"].window == a.window
    finally:
        app.close()


def test_the_widget_four_up_shares_the_crosshair_and_keeps_its_planes(small_ct):
    from rfmweb.widgets import Compare

    w = Compare.four_up(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    try:
        three_d, axial, coronal, sagittal = w.sessions
        assert [s.mode for s in w.sessions] == ["3d", "axial", "coronal", "sagittal"]
        w._on_client_msg(w, {"type": "point", "view": 1, "x": 40, "y": 50}, [])
        assert three_d.cursor == axial.cursor == sagittal.cursor is not None
        assert coronal.mode == "coronal" and [v["title"] for v in w.views] == ["3-D", "axial", "coronal", "sagittal"]
        ijk = np.rint(axial.slice_geometry().to_voxel([40], [50])[0]).astype(int)
        assert (sagittal.slice_index, coronal.slice_index) == (ijk[0], ijk[1])
    finally:
        w.close()


def test_a_scene_loaded_onto_the_widget_four_up_keeps_each_plane(small_ct):
    from rfmweb.widgets import Compare

    w = Compare.four_up(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    try:
        w.load_scene(scene_to_dict(_styled(small_ct)))
        assert [s.mode for s in w.sessions] == ["coronal", "axial", "coronal", "sagittal"]
        assert all(s.annotations == w.sessions[0].annotations for s in w.sessions)
    finally:
        w.close()


def test_a_ruler_measures_in_the_slice_planes_true_millimetres(small_ct):
    """A radiologist measures on slices: a drag on a slice view is a ruler from its first to its last
    point, in mm of the plane (pixels are square, voxels need not be), drawn with its length on that
    slice and in 3-D, not on other slices; a click removes it (the message with no points)."""
    from rfmweb.session.pointing import RULER_COLOR, Ruler

    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    c = ViewController([s])
    s.set_view_mode("coronal")
    geo = s.slice_geometry()
    c.handle(m.Measure(0, [[10.0, 20.0], [10.0 + 30.0, 20.0 + 40.0]]))    # 50 px on the frame
    ruler = s.ruler
    assert ruler.length_mm == pytest.approx(50 * geo.mm_per_px, rel=1e-6) and ruler.text().endswith(" mm")
    ijk = np.linalg.solve(small_ct.affine, np.c_[[ruler.start, ruler.end], np.ones(2)].T).T[:, :3]
    assert np.allclose(ijk[:, 1], s.slice_index)                         # on the coronal plane shown

    def yellow(image):
        return int((np.abs(image.astype(int) - RULER_COLOR).sum(-1) < 60).sum())

    assert yellow(s.render()) > 40
    s.set_slice(max(s.slice_index - 5, 0))
    assert yellow(s.render()) == 0                                       # not on another slice
    s.set_view_mode("3d")
    assert yellow(s.render()) > 10
    c.handle(m.Measure(0, []))
    assert s.ruler is None
    with pytest.raises(InputError, match="measure on a slice view"):
        s.measure_pixels((0, 0), (5, 5))
    for bad in ([[0, 0]], [[0, 0], [1, float("nan")]], [[0, 0], [1, 2], [3, 4]], "x"):
        with pytest.raises(m.MessageError, match="two \\[u, v\\] pairs"):
            m.Measure(0, bad)
    with pytest.raises(InputError, match="ruler end"):
        Ruler((0, 0, 0), (0, float("inf"), 0))
    c.close()
    s.close()


def test_the_readout_line_says_the_same_in_every_front_end(small_ct):
    """The widget's 3-D readout was the bare cursor position while the app's and the slices' said its
    HU and structure; a 3-D view also blanked its click's readout when the app synced its state."""
    from rfmweb.session.controller import NOTHING_THERE, cursor_readout, shown_readout

    s = RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE)
    assert shown_readout(s, "(1.0, 2.0, 3.0) mm RAS · 40 HU") == ""          # a slice's hover: not in 3-D
    point = np.asarray(small_ct.bounds).mean(0) + [0.37, -0.41, 0.29]        # between voxel centres
    s.set_cursor(point)                                                        # from Python, no click
    text = shown_readout(s, "")
    assert text == cursor_readout(s) and text.startswith("cursor (") and " HU" in text
    # the cursor's own position, as the sidebar says it (was its nearest voxel's centre: two numbers)
    assert text.startswith("cursor ({:.1f}, {:.1f}, {:.1f}) mm RAS".format(*point)), text
    assert shown_readout(s, NOTHING_THERE) == NOTHING_THERE                    # a click on empty space
    s.set_view_mode("axial")
    assert shown_readout(s, "(1.0, 2.0, 3.0) mm RAS · 40 HU") == "(1.0, 2.0, 3.0) mm RAS · 40 HU"
    s.close()


def test_linked_views_share_the_ruler(small_ct):
    """Compared and segmentation views: a ruler drawn on one showed on it alone, and the difference
    pane counted it as a difference. Linked views now share it, as the crosshair."""
    a, b = (RenderSession(small_ct, renderer="vtk", width=SIZE, height=SIZE) for _ in range(2))
    unlink = link_points([a, b])
    a.set_view_mode("axial")
    a.measure_pixels((5.0, 5.0), (30.0, 25.0))
    assert b.ruler == a.ruler is not None
    b.measure(None)
    assert a.ruler is None
    unlink()
    a.measure((0, 0, 0), (10, 0, 0))
    assert b.ruler is None
    a.close()
    b.close()
