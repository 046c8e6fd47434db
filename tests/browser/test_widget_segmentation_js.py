"""``viewer.js`` (the widget's page half) in chromium with a stand-in anywidget model: the slice and
correction controls of segmentation views, and the messages they send.

No kernel: the page loads the ES module from a local HTTP server, Python hands it the ``views`` state
and a real slice frame (rendered by :class:`rfmweb.session.RenderSession`), and the test reads what
the page sends back (``window.__sent``), which is what ``rfmweb.widgets`` would receive.
"""

from __future__ import annotations

import base64
import functools
import http.server
import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from conftest import is_blank, screenshot_array  # tests/browser/conftest.py (not a package)
from rfmweb.widgets.viewer import esm

JS = Path(__file__).resolve().parents[2] / "js"
SIZE = 240

PAGE = """<!doctype html><html><body style="background:#fff">
<link rel="stylesheet" href="./viewer.css"><div id="root"></div>
<script type="module">
import widget from "./viewer.js";
const listeners = {};
window.__sent = [];
window.__state = {};
const model = {
  get: (k) => window.__state[k],
  on: (name, fn) => { (listeners[name] = listeners[name] || []).push(fn); },
  off: () => {},
  send: (msg) => { if (window.__dead) throw new Error("Cannot send"); window.__sent.push(msg); },
};
window.__set = (state) => { Object.assign(window.__state, state);
  for (const k of Object.keys(state)) (listeners["change:" + k] || []).forEach((f) => f()); };
window.__frame = (meta, b64) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  (listeners["msg:custom"] || []).forEach((f) => f(meta, [bytes.buffer]));
};
window.__ready = new Promise((resolve) => { window.__start = () => {
  widget.render({ model, el: document.getElementById("root") }); resolve(); }; });
</script></body></html>"""


def _view_state(**over) -> dict:
    classes = [{"index": i, "name": n, "color": c, "opacity": 1.0, "visible": True, "group": "tumour" if i else ""}
               for i, n, c in ((0, "background", "#000000"), (1, "NCR", "#e63326"), (2, "ED", "#40bf4d"),
                               (3, "ET", "#ffd91a"))]
    state = {"title": "raw INR", "preset": "MR-Default", "renderer": "raymarch", "class_colors": True,
             "classes": classes, "groups": [{"name": "tumour", "visible": "all"}], "cinematic": False,
             "mode": "axial", "slice_index": 47, "slice_count": 95, "can_slice": True,
             "subtitle": "Dice WT 0.90 · TC 0.80 · ET 0.70", "correctable": True, "marks": 0,
             "channels": ["T1n", "T1c", "T2w", "FLAIR"], "slice_channel": 3,
             "brush_mm": 2.0, "window_preset": "auto", "auto_window": "auto: 1st-99th percentile", "window": "W 2.1 L 1.05",
             "status": "", "busy": False}
    state.update(over)
    return state


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("viewer_js")
    (root / "viewer.js").write_text(esm(), encoding="utf-8")  # the module the widget hands anywidget
    shutil.copyfile(JS / "viewer.css", root / "viewer.css")
    (root / "index.html").write_text(PAGE)
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    httpd.shutdown()


@pytest.fixture(scope="module")
def slice_png():
    """A real axial slice frame of a synthetic glioma case, as PNG bytes."""
    import io

    from PIL import Image

    from rfmweb.data.cohort import cohort_case
    from rfmweb.session import RenderSession
    volume, _ = cohort_case("val", 0, 1, resolution_mm=2.0)
    session = RenderSession(volume, width=SIZE, height=SIZE)
    session.set_view_mode("axial", 47)
    buf = io.BytesIO()
    Image.fromarray(session.render()).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def page(browser, served, slice_png):
    context = browser.new_context(viewport={"width": 900, "height": 700}, device_scale_factor=1)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(served)
    page.wait_for_function("() => window.__start !== undefined")
    page.evaluate("""(s) => { window.__set({views: [s], preset_options: [{name: "MR-Default", disabled: false, hint: ""},
        {name: "CT-Bone", disabled: true, hint: "for CT; this volume is MR"}], width: 240, height: 240,
        renderer_options: [{name: "raymarch", label: "Ray-marcher"}], arrangement: "below"}); window.__start(); }""",
                  _view_state())
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'ready')")
    meta = {"type": "frame", "view": 0, "id": 1, "mime": "image/png", "width": SIZE, "height": SIZE, "kind": "idle",
            "version": 1, "render_ms": 5, "encode_ms": 1}
    page.evaluate("([m, b]) => window.__frame(m, b)", [meta, base64.b64encode(slice_png).decode()])
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'ack' && m.id === 1)")
    yield page
    context.close()
    assert not errors, errors


def test_presets_of_another_modality_are_listed_disabled(page):
    options = page.evaluate("""() => [...document.querySelector('select[title="Transfer-function preset"]').options]
        .map((o) => [o.value, o.text, o.disabled, o.title])""")
    assert options == [["MR-Default", "MR-Default", False, ""],
                       ["CT-Bone", "CT-Bone (other modality)", True, "for CT; this volume is MR"]]


def test_buttons_with_words_keep_them_on_one_line_side_by_side(page):
    """In a narrow panel (JupyterLab's) "Save scene" and "Load scene" overlapped as "SaveLoad scenecene"
    and "Save labels" spilled out of its button: every such button now holds its text, none overlaps."""
    boxes = page.evaluate("""() => [...document.querySelectorAll('.rfm-btn')].filter((b) => b.textContent.length > 1
        && b.offsetParent !== null).map((b) => { const r = b.getBoundingClientRect();
        return {text: b.textContent, fits: b.scrollWidth <= b.clientWidth + 1 && r.height < 30,
                x0: r.left, x1: r.right, y0: r.top, y1: r.bottom}; })""")
    texts = {b["text"] for b in boxes}
    assert {"Save scene", "Load scene", "Save labels", "Add", "Clear", "Apply", "Undo"} <= texts, texts
    assert all(b["fits"] for b in boxes), [b for b in boxes if not b["fits"]]
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a["x1"] <= b["x0"] or b["x1"] <= a["x0"] or a["y1"] <= b["y0"] or b["y1"] <= a["y0"], (a, b)


def _sent(page, type_: str) -> list[dict]:
    return page.evaluate("(t) => window.__sent.filter((m) => m.type === t)", type_)


def test_slice_controls_show_the_state_and_send_intents(page, artifacts):
    canvas = page.locator(".rfm-canvas")
    img = screenshot_array(canvas)
    page.locator(".rfm-view").screenshot(path=str(artifacts / "widget_segmentation_ui.png"))
    assert not is_blank(img), "the slice frame was not drawn"
    assert page.locator(".rfm-mode").input_value() == "axial"
    assert page.locator(".rfm-slice-text").inner_text() == "48 / 95"
    assert page.locator(".rfm-subtitle").inner_text() == "Dice WT 0.90 · TC 0.80 · ET 0.70"
    assert page.locator(".rfm-slice-row").is_visible() and page.locator(".rfm-correct").is_visible()
    page.locator(".rfm-mode").select_option("coronal")
    assert _sent(page, "mode")[-1] == {"view": 0, "type": "mode", "mode": "coronal"}
    page.locator(".rfm-slice").fill("60")
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'slice' && m.index === 60)")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 50, box["y"] + 50)
    page.mouse.wheel(0, 120)
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'wheel' && m.dy > 0)")
    # keys on the focused view (arrows, PageUp/Down, + -, Home), not the others (Delete), nor with ctrl
    canvas.focus()
    for key in ("ArrowUp", "Delete", "Control+ArrowUp", "Home"):
        page.keyboard.press(key)
    page.wait_for_function("() => window.__sent.filter((m) => m.type === 'key').length >= 2")
    assert _sent(page, "key") == [{"view": 0, "type": "key", "key": "ArrowUp"}, {"view": 0, "type": "key", "key": "Home"}]
    # the labels' opacity slider works while the labels are shown (as in the web app)
    assert page.locator(".rfm-overlay-opacity").is_disabled()
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(label_overlay=True, overlay_opacity=0.5))
    assert page.locator(".rfm-overlay-opacity").is_enabled()
    # an MR case's slices offer its sequences (FLAIR first); a one-channel volume no Sequence menu
    assert page.locator(".rfm-channel").is_visible() and page.locator(".rfm-channel").input_value() == "3"
    page.locator(".rfm-channel").select_option(label="T1c")
    assert _sent(page, "channel")[-1] == {"view": 0, "type": "channel", "channel": 1}
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(channels=["intensity"], slice_channel=0))
    assert page.locator(".rfm-channel").is_hidden()
    # a 3-D view without a volume offers no slice modes; a non-segmentation view no correction tools
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(mode="3d", can_slice=False, correctable=False,
                                                                      subtitle=""))
    assert page.locator(".rfm-mode option").count() == 1
    assert not page.locator(".rfm-slice-row").is_visible() and not page.locator(".rfm-correct").is_visible()


def test_painting_sends_a_stroke_in_frame_pixels_and_apply_undo(page, artifacts):
    canvas = page.locator(".rfm-canvas")
    box = canvas.bounding_box()
    page.locator(".rfm-correct-tool").check()
    page.locator(".rfm-correct-label").select_option("3")
    x0, y0 = box["x"] + 60, box["y"] + 80
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 11):
        page.mouse.move(x0 + 8 * k, y0 + 2 * k)
    painted = screenshot_array(canvas)  # the stroke preview is drawn over the frame
    page.mouse.up()
    (stroke,) = _sent(page, "stroke")
    assert stroke["label"] == 3 and stroke["view"] == 0 and len(stroke["points"]) >= 10
    pts = np.asarray(stroke["points"])
    # canvas device pixels per CSS pixel (Python sizes the frames to the canvas: frame pixels)
    scale = canvas.evaluate("c => c.width") / box["width"]
    np.testing.assert_allclose(pts[0], [60 * scale, 80 * scale], atol=1.0)
    np.testing.assert_allclose(pts[-1], [(60 + 80) * scale, (80 + 20) * scale], atol=1.0)
    assert not _sent(page, "drag"), "a paint stroke must not orbit the camera"
    from PIL import Image
    Image.fromarray(painted).save(artifacts / "widget_segmentation_stroke.png")
    r, g, b = (painted[..., i].astype(int) for i in range(3))
    assert ((r > 150) & (g > 120) & (b < 110)).sum() > 50, "no yellow (ET) stroke preview on the canvas"
    # nothing marked, nothing applied: Apply and Undo are off
    assert page.locator(".rfm-apply").is_disabled() and page.locator(".rfm-undo").is_disabled()
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(marks=412))
    assert page.locator(".rfm-marks").inner_text() == "412 marked"
    page.locator(".rfm-apply").click()
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(marks=412, correcting=True))
    assert page.locator(".rfm-save-seg").is_disabled(), "a save while correcting gets the labels from before"
    page.evaluate("(s) => window.__set({views: [s]})",
                  _view_state(marks=0, can_undo=True, last_correction="corrected: 380 voxels changed, 40 steps"))
    assert page.locator(".rfm-apply").is_disabled() and not page.locator(".rfm-save-seg").is_disabled()
    assert page.locator(".rfm-correction-note").inner_text() == "corrected: 380 voxels changed, 40 steps"
    page.locator(".rfm-undo").click()
    assert [m["type"] for m in page.evaluate("() => window.__sent")][-2:] == ["apply_correction", "undo_correction"]
    # in 3-D mode a click (no drag) marks the surface under the pointer
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(mode="3d"))
    page.mouse.click(box["x"] + 120, box["y"] + 100)
    (mark,) = _sent(page, "mark")
    assert mark["label"] == 3 and abs(mark["x"] - 120 * scale) < 1 and abs(mark["y"] - 100 * scale) < 1
    json.dumps(mark)  # plain JSON, as the kernel receives it


def test_click_annotate_scene_and_label_downloads(page, tmp_path):
    """A click (no drag) sends a crosshair "point" in frame pixels; a label + Enter annotates; "Save
    scene" asks Python and downloads its reply; "Load scene" sends the chosen file's text; "Save
    labels" downloads the NIfTI bytes Python replies with."""
    canvas = page.locator(".rfm-canvas")
    box = canvas.bounding_box()
    scale = canvas.evaluate("c => c.width") / box["width"]
    page.mouse.click(box["x"] + 70, box["y"] + 90)
    (point,) = _sent(page, "point")
    assert abs(point["x"] - 70 * scale) < 1 and abs(point["y"] - 90 * scale) < 1
    assert not _sent(page, "drag")
    page.evaluate("(s) => window.__set({views: [s]})",
                  _view_state(cursor="(1.0, 2.0, 3.0) mm", annotations=["tumour rim"]))
    assert "tumour rim" in page.locator(".rfm-notes").inner_text()
    page.locator(".rfm-note-text").fill("  optic chiasm ")
    page.locator(".rfm-note-text").press("Enter")
    assert _sent(page, "annotate")[-1]["text"] == "optic chiasm"
    page.locator(".rfm-unannotate").click()
    assert _sent(page, "unannotate")

    page.locator(".rfm-scene-save").click()
    (ask,) = _sent(page, "save_scene")
    scene = {"format": "rfmweb-scene/1", "annotations": [{"position": [1, 2, 3], "text": "tumour rim"}]}
    with page.expect_download() as download:
        page.evaluate("(m) => window.__frame(m, '')", {"type": "scene", "view": 0, "request": ask["request"],
                                                        "filename": "case_scene.json", "text": json.dumps(scene)})
    assert download.value.suggested_filename == "case_scene.json"
    saved = tmp_path / "scene.json"
    download.value.save_as(saved)
    assert json.loads(saved.read_text()) == scene
    page.locator(".rfm-scene-file").set_input_files(str(saved))
    page.wait_for_function("() => window.__sent.some((m) => m.type === 'load_scene')")
    assert json.loads(_sent(page, "load_scene")[-1]["text"]) == scene

    page.locator(".rfm-save-seg").click()
    (ask,) = _sent(page, "save_segmentation")
    with page.expect_download() as download:
        page.evaluate("([m, b]) => window.__frame(m, b)", [{"type": "file", "view": 0, "request": ask["request"],
                       "filename": "segmentation_raw_inr.nii.gz", "mime": "application/gzip"},
                      base64.b64encode(b"\x1f\x8bfake").decode()])
    assert download.value.suggested_filename == "segmentation_raw_inr.nii.gz"


def test_a_small_view_beside_its_panel_scrolls_the_panel_and_keeps_its_width(page, artifacts):
    """In JupyterLab's narrow panes: the side panel cut off "Save scene" and drew the annotations over
    the status line (it did not scroll), and a long Dice subtitle widened the card past its canvas."""
    long_subtitle = "Dice WT 0.82 · TC 1.00 · ET 1.00 · " * 3
    page.evaluate("(s) => window.__set({arrangement: 'side', views: [s]})",
                  _view_state(subtitle=long_subtitle, annotations=["centre of the torso", "sternum"]))
    view = page.locator(".rfm-view")
    panel = page.locator(".rfm-panel")
    page.wait_for_function("() => document.querySelector('.rfm-root').className.includes('rfm-side')")
    canvas_w = page.locator(".rfm-stage").bounding_box()["width"]
    assert view.bounding_box()["width"] <= canvas_w + panel.bounding_box()["width"] + 4, "the subtitle widened the card"
    assert page.locator(".rfm-subtitle").get_attribute("title") == long_subtitle      # whole on hover
    panel.evaluate("(p) => { p.scrollTop = p.scrollHeight; }")
    save = page.locator(".rfm-scene-save").bounding_box()
    pbox, status = panel.bounding_box(), page.locator(".rfm-status").bounding_box()
    view.screenshot(path=str(artifacts / "widget_side_panel_scrolled.png"))
    assert pbox["y"] <= save["y"] and save["y"] + save["height"] <= pbox["y"] + pbox["height"] + 1, (save, pbox)
    assert pbox["y"] + pbox["height"] <= status["y"] + 1, "the panel runs over the status line"
    # right-drag is window/level: JupyterLab's cell menu stays shut over the widget
    assert page.locator(".rfm-root").get_attribute("data-jp-suppress-context-menu") is not None


def test_a_narrow_notebook_puts_the_panel_below_the_canvas(page, artifacts):
    """A notebook 700 px wide (the file browser open) shrank the canvas to 84 px beside a panel of fixed
    width, and at 480 px to nothing: the panel now goes below and the canvas keeps its width."""
    page.evaluate("(s) => window.__set({arrangement: 'side', width: 480, height: 480, views: [s]})", _view_state())
    for width in (1000, 700, 480):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        stage, panel = page.locator(".rfm-stage").bounding_box(), page.locator(".rfm-panel").bounding_box()
        if width == 1000:                                   # room for both: side by side
            assert stage["width"] == 480 and panel["x"] >= stage["x"] + stage["width"] - 1
        else:
            assert stage["width"] >= width - 40 or stage["width"] == 480, (width, stage)
            assert panel["y"] >= stage["y"] + stage["height"] - 1, (width, stage, panel)
    page.locator(".rfm-view").screenshot(path=str(artifacts / "widget_narrow.png"))


def test_a_dead_kernel_says_so_instead_of_throwing(page):
    """After "Restart Kernel" the widget looked alive, and every pointer move threw "Cannot send" into
    the page (21 errors from one drag). Now the view says the kernel is gone and stops sending."""
    page.evaluate("() => { window.__dead = true; }")
    canvas = page.locator(".rfm-canvas")
    box = canvas.bounding_box()
    page.mouse.move(box["x"] + 40, box["y"] + 40)
    page.mouse.down()
    for k in range(10):
        page.mouse.move(box["x"] + 40 + 5 * k, box["y"] + 40)
    page.mouse.up()
    page.locator(".rfm-mode").select_option("coronal")
    overlay = page.locator(".rfm-overlay")
    assert overlay.is_visible() and "run this cell again" in overlay.inner_text()
    assert "rfm-lost" in page.locator(".rfm-view").get_attribute("class")
    # (the fixture asserts that no page error was raised)


def test_panel_sections_follow_the_volume_and_a_stale_frame_dims(page):
    """A brain template without labels showed an empty 200 px "Anatomy" block and a "colour by class"
    box; the Sequence menu was hidden in 3-D though it chooses what the 3-D view shows; and the
    previous renderer's image was shown at full strength under the next renderer's name."""
    def shown(selector: str) -> bool:
        return page.evaluate("(s) => { const e = document.querySelector(s); return !!e && e.offsetParent !== null; }",
                             selector)

    anatomy = "//div[contains(@class, 'rfm-section') and text()='Anatomy']"
    assert page.locator(anatomy).is_visible() and shown(".rfm-classes")
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(classes=[], groups=[], mode="3d"))
    page.wait_for_function("() => document.querySelector('.rfm-classes').hidden")
    assert not page.locator(anatomy).is_visible() and not page.get_by_text("colour by class").is_visible()
    assert shown("select.rfm-channel")                      # the Sequence menu, in 3-D too
    assert not page.evaluate("() => document.querySelector('.rfm-canvas').classList.contains('rfm-stale')")
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(mode="3d", stale=True))
    page.wait_for_function("() => document.querySelector('.rfm-canvas').classList.contains('rfm-stale')")
    assert page.locator(anatomy).is_visible() and page.get_by_text("colour by class").is_visible()
    assert float(page.evaluate("() => getComputedStyle(document.querySelector('.rfm-canvas')).opacity")) < 0.5


def test_the_ruler_sends_its_two_ends_and_shows_its_length_while_dragged(page, artifacts):
    """With "measure" on, a left drag on a slice view is a ruler: drawn with its length (mm from the
    view's mm_per_px) while dragged, sent as its two ends in frame pixels on release; a click still
    places the crosshair; the correction tool and the ruler are one at a time; off, the ruler goes."""
    page.evaluate("(s) => window.__set({views: [s]})", _view_state(mm_per_px=0.5))
    canvas = page.locator(".rfm-canvas")
    box = canvas.bounding_box()
    scale = canvas.evaluate("c => c.width") / box["width"]
    page.locator(".rfm-correct-tool").check()
    page.locator(".rfm-measure").check()
    assert not page.locator(".rfm-correct-tool").is_checked()
    x0, y0 = box["x"] + 40, box["y"] + 60
    page.mouse.move(x0, y0)
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(x0 + 15 * k, y0)
    dragged = screenshot_array(canvas)
    page.mouse.up()
    (ruler,) = _sent(page, "measure")
    np.testing.assert_allclose(ruler["points"], [[40 * scale, 60 * scale], [160 * scale, 60 * scale]], atol=1.0)
    assert not _sent(page, "drag") and not _sent(page, "stroke")
    r, g, b = (dragged[..., i].astype(int) for i in range(3))
    assert ((r > 200) & (g > 170) & (b < 80)).sum() > 60, "no ruler drawn while dragging"
    from PIL import Image
    Image.fromarray(dragged).save(artifacts / "widget_ruler.png")
    page.mouse.click(box["x"] + 100, box["y"] + 100)
    assert _sent(page, "point") and len(_sent(page, "measure")) == 1
    page.locator(".rfm-measure").uncheck()
    assert _sent(page, "measure")[-1]["points"] == []


def test_a_long_readout_does_not_widen_the_view(page):
    """A slice readout ("(56.0, -18.0, 34.0) mm RAS · 868.6 ...") widened a Compare card from 320 to
    392 px and pushed the third view to a new row; the status line now cuts it."""
    width = page.evaluate("() => document.querySelector('.rfm-view').getBoundingClientRect().width")
    page.evaluate("(s) => window.__set({views: [s]})",
                  _view_state(probe="(56.0, -18.0, 34.0) mm RAS · 868.6 · label 2 · " + "x" * 200))
    page.wait_for_function("() => document.querySelector('.rfm-probe').textContent.length > 200")
    assert page.evaluate("() => document.querySelector('.rfm-view').getBoundingClientRect().width") == width
