"""The trame web app in Debian's chromium (Playwright): frames, interaction, classes, clients, compare.

One server for the module: ``rfmweb.app.server.serve(shared=True)`` in a subprocess, with an auth key
(one state for every tab, so a second client sees the first one's changes; per-tab sessions are
tested in test_sessions.py), showing the real head CT downsampled 4x with named classes (soft tissue, bone) so group toggles appear too. Tests
read the frames' pixels and save screenshots to ``tests/_artifacts`` (look at them: a blank or black
frame is a failure). Waits poll the frame attributes the page script writes (see roundtrip.py).
"""

from __future__ import annotations

import statistics
import sys
import time

import numpy as np
import pytest
from PIL import Image

from conftest import free_port, is_blank, screenshot_array  # tests/browser/conftest.py (not a package)
from serving import ServerError, served
from roundtrip import measure_roundtrip, wait_frame, wait_idle, wait_quiet

KEY = "browser-test-key"
VIEWPORT = {"width": 1000, "height": 640}
TIMEOUT_MS = 60_000

SERVER = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")  # wslink's (dis)connects too
from rfmweb.io import load_volume
from rfmweb.volume import LabelClass, Volume
from rfmweb.app.server import serve
ct = load_volume(sys.argv[1], sys.argv[2])
classes = (LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "soft tissue", (0.85, 0.55, 0.45), "soft tissue"),
           LabelClass(2, "bone", (0.95, 0.9, 0.75), "skeleton"))
vol = Volume(ct.data, ct.affine, modality="CT", labels=ct.labels, classes=classes, name="head CT (small)")
serve(vol, port=int(sys.argv[3]), auth_key=sys.argv[4], renderer="vtk", preset="CT-Bone", shared=True)
"""


def _differ(a: np.ndarray, b: np.ndarray, threshold: float = 2.0) -> bool:
    return a.shape != b.shape or float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > threshold


def _save(img: np.ndarray, path) -> None:
    Image.fromarray(img).save(path)


@pytest.fixture(scope="module")
def app_url(small_ct, tmp_path_factory):
    from rfmweb.io import save_volume
    folder = tmp_path_factory.mktemp("app_browser")
    save_volume(small_ct, folder / "ct.nii.gz", folder / "labels.nii.gz")
    port = free_port()
    log = folder / "server.log"
    url = f"http://127.0.0.1:{port}/?secret={KEY}"
    cmd = [sys.executable, "-c", SERVER, str(folder / "ct.nii.gz"), str(folder / "labels.nii.gz"), str(port), KEY]
    try:
        with served(cmd, url, log, timeout_s=90):
            yield url
    except ServerError as exc:
        pytest.fail(str(exc))
    assert "Traceback" not in log.read_text(), log.read_text()


def _open(browser, url):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return context, page


@pytest.fixture(scope="module")
def page(browser, app_url):
    context, page = _open(browser, app_url)
    wait_frame(page, _view(page))
    yield page
    context.close()


def _view(page, name: str = "view_a"):
    return page.locator(f'img[data-rfm-view="{name}"]')


def _settled(page, name: str = "view_a", after: dict | None = None, changed: bool = False) -> tuple[dict, np.ndarray]:
    """Wait for the full-quality frame (after ``after``; with ``changed``, of a state newer than its:
    a change was made since), then for the view to converge (VTK refines a 3-D view at rest frame by
    frame, and the first frame at rest may still show the state before a change), and return the
    last frame with its pixels."""
    view = _view(page, name)
    wait_idle(page, view, after=after, changed=changed, timeout_ms=TIMEOUT_MS)
    info = wait_quiet(page, view, timeout_ms=2 * TIMEOUT_MS)
    return info, screenshot_array(view)


def _drag(page, dx: float, name: str = "view_a") -> None:
    box = _view(page, name).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x + dx * k / 5, y + dx * k / 20)
    page.mouse.up()


def test_view_shows_the_volume(page, artifacts):
    info, img = _settled(page)
    _save(img, artifacts / "app_view.png")
    page.screenshot(path=str(artifacts / "app_page.png"))
    assert not is_blank(img), "the view is blank"
    assert img.mean() > 5, "the view is black"
    assert info["kind"] in ("idle", "progressive") and info["w"] > 200  # at rest, at the view's size
    assert page.title() == "head CT (small) · rfmweb"          # the tab says what it shows (it said "Trame")


def test_drag_changes_the_frame(page, artifacts):
    before, a = _settled(page)
    _drag(page, 150)
    _, b = _settled(page, after=before, changed=True)
    _save(b, artifacts / "app_after_drag.png")
    assert not is_blank(b)
    assert _differ(a, b), "a drag did not change the frame"


def test_arrow_keys_on_a_focused_view_orbit_it(page):
    """The views could not be worked from the keyboard (trame-rca sends no keys)."""
    page.locator(".rfm-area-view_a").focus()
    page.keyboard.press("Home")                     # earlier tests moved the camera
    before, a = _settled(page)
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")
    turned, b = _settled(page, after=before, changed=True)
    assert _differ(a, b), "the arrow keys did not orbit the view"
    page.keyboard.press("Home")
    _, back = _settled(page, after=turned, changed=True)
    assert not _differ(a, back), "Home did not bring the camera back"
    # the keyboard's focus shows (a ring over the frame), and the view has a name and a role
    area = page.locator(".rfm-area-view_a")
    ring = "(e) => getComputedStyle(e, '::after').borderTopWidth"
    page.locator("body").click(position={"x": 2, "y": 2})
    assert area.evaluate(ring) != "2px"
    area.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")                      # focused from the keyboard: :focus-visible
    assert area.evaluate(ring) == "2px"
    assert area.get_attribute("role") == "application" and area.get_attribute("aria-label")
    assert page.locator(".v-app-bar-nav-icon").get_attribute("aria-label") == "controls"
    area.evaluate("(e) => e.blur()")                # the next tests' screenshots: no ring


def test_class_and_group_toggles_change_the_frame(page, artifacts):
    bone = page.locator(".rfm-class", has_text="bone").locator("input[type=checkbox]")
    # a class name cut to fit the sidebar shows whole on hover
    assert page.locator(".rfm-class", has_text="bone").locator("[title]").first.get_attribute("title") == "bone"
    # the background class (air) is not listed beside the others, as in the widget
    assert page.locator(".rfm-class").count() == 2 and page.locator(".rfm-class", has_text="background").count() == 0
    skeleton = page.locator(".rfm-group", has_text="skeleton").locator("input[type=checkbox]")
    assert bone.is_checked() and skeleton.is_checked()
    # a screen reader names each class's controls (they were read as "checkbox", "slider")
    row = page.locator(".rfm-class", has_text="bone")
    assert bone.get_attribute("aria-label") == "show bone"
    assert row.locator(".v-slider-thumb").get_attribute("aria-label") == "bone opacity"
    assert page.locator(".rfm-placeholder").first.get_attribute("aria-hidden") == "true"
    before, shown = _settled(page)
    bone.click()
    after, hidden = _settled(page, after=before, changed=True)
    _save(hidden, artifacts / "app_bone_hidden.png")
    assert _differ(shown, hidden), "hiding the bone class did not change the frame"
    page.wait_for_function("el => !el.checked", arg=skeleton.element_handle())  # the group follows its class
    skeleton.click()  # the group toggle shows the bone again
    _, back = _settled(page, after=after, changed=True)
    assert bone.is_checked()
    assert not _differ(shown, back), "showing the group again did not restore the frame"


def test_arrow_keys_on_a_class_opacity_slider_take_every_step(page):
    """Key presses faster than the server's answer each moved the slider from the value it last heard,
    so steps were lost (six presses moved it two or three steps). A step is 0.01 (opacity per mm)."""
    thumb = page.locator(".rfm-class", has_text="bone").locator(".v-slider-thumb")
    thumb.focus()
    for _ in range(6):
        page.keyboard.press("ArrowLeft")
    page.wait_for_function("""() => {
      const bone = (window.trame.state.get('AppState__classes') || []).find(c => c.name === 'bone');
      return bone && Math.abs(bone.opacity - 0.94) < 1e-6; }""", timeout=TIMEOUT_MS)
    for _ in range(6):
        page.keyboard.press("ArrowRight")
    page.wait_for_function("""() => window.trame.state.get('AppState__classes').find(c => c.name === 'bone')
      .opacity === 1""", timeout=TIMEOUT_MS)


def test_second_client_gets_frames_and_sees_changes(browser, app_url, page, artifacts):
    context, other = _open(browser, app_url)
    try:
        wait_frame(other, _view(other))
        assert "the first tab drives" in other.locator(".rfm-shared").inner_text()  # says it follows
        # both views converged first, so every frame after the drag shows the changed state
        quiet, img = _settled(other)
        assert not is_blank(img), "the second client's view is blank"
        _settled(page)
        _drag(page, -120)  # the first client changes the shared camera
        _, changed = _settled(other, after=quiet, changed=True)
        _, mine = _settled(page)
        _save(changed, artifacts / "app_second_client.png")
        assert _differ(img, changed), "the second client did not see the first client's change"
        assert not _differ(mine, changed), "the two clients show different pictures of one state"
    finally:
        context.close()
    before, _ = _settled(page)  # the first client keeps streaming after the other one left
    _drag(page, 60)
    wait_idle(page, _view(page), after=before)


def test_compare_layout_shows_two_views(page, artifacts):
    page.locator(".rfm-compare input").check()
    right = _view(page, "view_b")
    wait_frame(page, right)
    page.locator(".v-select", has_text="Preset (right view)").click()
    page.locator(".v-overlay .v-list-item", has_text="CT-Muscle").click()
    page.wait_for_function("() => window.trame.state.get('AppState__view_b__ViewState__preset') === 'CT-Muscle'")
    # the outcome itself is polled: both views at full quality, showing different pictures
    deadline = time.monotonic() + TIMEOUT_MS / 1e3
    while True:
        info_a, a = _settled(page, "view_a")
        info_b, b = _settled(page, "view_b")
        if _differ(a, b) or time.monotonic() > deadline:
            break
        page.wait_for_timeout(100)
    page.screenshot(path=str(artifacts / "app_compare_page.png"))
    _save(a, artifacts / "app_compare_left.png")
    _save(b, artifacts / "app_compare_right.png")
    assert not is_blank(a) and not is_blank(b), "a compare view is blank"
    assert _differ(a, b), "the two presets look the same"
    # linked cameras: a drag in the left view turns the right one too
    _drag(page, 100)
    _, a2 = _settled(page, "view_a", after=info_a, changed=True)
    _, b2 = _settled(page, "view_b", after=info_b, changed=True)
    assert _differ(a, a2) and _differ(b, b2), "the cameras are not linked"
    page.locator(".rfm-compare input").uncheck()
    right.wait_for(state="detached")


def test_cinematic_still_adds_samples_while_the_camera_rests(page, artifacts):
    from rfmweb.render.pathtrace import mitsuba_available
    if not mitsuba_available():
        pytest.skip("Mitsuba 3 is not installed (pip install rfmweb[photoreal])")
    before, still = _settled(page)
    page.locator(".rfm-cinematic input").check()
    view = _view(page)
    first = wait_frame(page, view, after=before, kind="progressive")
    later = wait_frame(page, view, after=first, kind="progressive")
    status = page.locator("text=/cinematic still, \\d+ spp/").first
    status.wait_for()
    traced = screenshot_array(view)
    _save(traced, artifacts / "app_cinematic.png")
    assert not is_blank(traced) and _differ(still, traced), "the path-traced still looks like the VTK frame"
    assert later["id"] > first["id"]
    page.locator(".rfm-cinematic input").uncheck()
    page.wait_for_function("() => window.trame.state.get('AppState__cinematic') === false")


def test_bad_messages_do_not_break_the_server(page):
    before, _ = _settled(page)
    page.evaluate("""() => {
      const s = window.trame.client.getConnection().getSession();
      const bad = [["view_a", "x", {type: "MouseMove", x: "left"}], ["nope", "x", {type: "FrameAck"}],
                   ["view_a", "x", {type: "FrameAck", id: "x"}], ["view_a", "x", null]];
      for (const args of bad) s.call("trame.rca.event", args).catch(() => {});
      s.call("trame.rca.size", ["view_a", "x", {w: "wide", h: -1, p: "?"}]).catch(() => {});
      window.trame.trigger("rfm_screenshot", ["../../etc/passwd"]).catch(() => {});
      window.trame.trigger("rfm_screenshot", [1, 2, 3, 4]).catch(() => {});
      window.trame.state.set("AppState__view_a__ViewState__renderer", "no-such-renderer");
      window.trame.state.set("AppState__view_a__ViewState__preset", {evil: true});
      window.trame.state.set("AppState__classes", "evil");
      // RPCs for the server, not a page: they stopped it, or made it drop every frame
      s.call("trame.rca.drop", ["view_a", -1]).catch(() => {});
      s.call("trame.lifecycle.update", ["server_exited"]).catch(() => {});
      s.call("application.exit", []).catch(() => {});
    }""")
    # the server puts the real values back and still renders
    page.wait_for_function("() => window.trame.state.get('AppState__view_a__ViewState__renderer') === 'vtk'")
    page.wait_for_function("() => window.trame.state.get('AppState__view_a__ViewState__preset') === 'CT-Bone'")
    page.wait_for_function("() => window.trame.state.get('AppState__classes').length === 3")
    page.evaluate("""() => window.trame.state.set("AppState__classes",
        [{index: 2, opacity: "x"}, {index: "y", opacity: 2}, {index: 2, opacity: 7}, {index: 99, opacity: 0}])""")
    page.wait_for_function("""() => { const c = window.trame.state.get('AppState__classes');
        return c.length === 3 && c[2].opacity === 1 && c[2].name === 'bone'; }""")
    _drag(page, 40)
    _, img = _settled(page, after=before)
    assert not is_blank(img)


def test_screenshot_download_is_a_png(page, artifacts):
    with page.expect_download() as download:
        page.locator(".rfm-screenshot").click()
    path = artifacts / "app_screenshot_download.png"
    download.value.save_as(path)
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 200 and not is_blank(img)


def test_roundtrip(page, artifacts):
    times = measure_roundtrip(page, _view(page), n=6)
    line = (f"browser drag round trip (ms): median {statistics.median(times):.0f}, min {min(times):.0f}, "
            f"max {max(times):.0f}, all {[round(t) for t in times]}")
    print(line)
    (artifacts / "app_roundtrip.txt").write_text(line + "\n")
    # each drag step displayed a frame that came after its pointer move (how fast is a benchmark's business)
    assert len(times) == 6 and all(t > 0 for t in times), times


def test_ctrl_drag_on_a_slice_sets_the_window_and_the_hu_readout_shows(page, artifacts):
    """Slice tools: a ctrl-drag changes the grey window (the slice image changes, "custom" W/L shows),
    and hovering the slice shows the HU and mm position under the pointer in the status line."""
    _settled(page)  # from rest, as a user picks a menu entry (the drags before have all been answered)
    page.evaluate("() => window.trame.state.set('AppState__view_mode', 'axial')")
    page.wait_for_function("() => window.trame.state.get('AppState__window_text').includes('HU')")
    deadline = time.monotonic() + TIMEOUT_MS / 1e3
    before, axial = _settled(page)
    view = _view(page)
    box = view.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.keyboard.down("Control")
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x + 30 * k, y + 20 * k)
    page.mouse.up()
    page.keyboard.up("Control")
    page.wait_for_function("() => window.trame.state.get('AppState__window_preset') === 'custom'")
    while True:
        after, windowed = _settled(page, after=before)
        if _differ(axial, windowed) or time.monotonic() > deadline:
            break
        before = after
    _save(axial, artifacts / "app_axial.png")
    _save(windowed, artifacts / "app_axial_windowed.png")
    assert not is_blank(windowed) and _differ(axial, windowed), "a ctrl-drag did not change the slice image"
    page.mouse.move(x + 3, y + 3)
    page.mouse.move(x, y)
    readout = page.locator(".rfm-probe-view_a")
    readout.wait_for(state="visible")
    assert "HU" in readout.inner_text() and "mm" in readout.inner_text()
    page.screenshot(path=str(artifacts / "app_slice_tools_page.png"))
    # the wheel: a slice per notch, whatever the size of the event; a trackpad's small deltas add up
    # (trame-rca's spin made ten 2 px events ten slices, and a 3-notch event one)
    index = "() => window.trame.state.get('AppState__slice_index')"
    start = page.evaluate(index)
    for _ in range(10):
        page.mouse.wheel(0, 2)
        page.wait_for_timeout(30)
    page.mouse.wheel(0, -300)
    page.wait_for_function(f"() => ({index})() !== {start}")
    page.wait_for_timeout(300)
    assert page.evaluate(index) == start + 3
    page.evaluate("() => window.trame.state.set('AppState__view_mode', '3d')")


def test_compare_starts_on_another_renderer_without_broken_images(page, artifacts):
    """Compare on: the right pane's renderer or preset differs from the left's, and until its first
    frame it shows the "rendering…" placeholder, never a broken image."""
    state = "() => [window.trame.state.get('AppState__view_a__ViewState__renderer'), " \
            "window.trame.state.get('AppState__view_a__ViewState__preset'), " \
            "window.trame.state.get('AppState__view_b__ViewState__renderer'), " \
            "window.trame.state.get('AppState__view_b__ViewState__preset')]"
    a_renderer, a_preset, b_renderer, b_preset = page.evaluate(state)
    assert (a_renderer, a_preset) != (b_renderer, b_preset)
    page.locator(".rfm-compare input").check()
    right = _view(page, "view_b")
    right.wait_for(state="attached")
    # an <img> is hidden (no frame yet: the placeholder shows), loading a frame (complete is false
    # until it is decoded; the browser keeps the last one meanwhile), or shows a decoded frame: broken
    # is a visible one whose load ended without a picture
    broken = "() => [...document.querySelectorAll('img[data-rfm-view]')].some((img) => " \
             "getComputedStyle(img).visibility !== 'hidden' && img.complete && img.naturalWidth === 0)"
    assert not page.evaluate(broken), "a broken image shows before the first frame"
    assert page.locator(".rfm-placeholder-view_b").count() == 1
    wait_frame(page, right)
    assert not page.evaluate(broken)
    page.screenshot(path=str(artifacts / "app_compare_start.png"))
    page.locator(".rfm-compare input").uncheck()
    right.wait_for(state="detached")


def test_click_crosshair_annotation_and_a_scene_file_round_trip(page, artifacts, tmp_path):
    """A click on a slice places the crosshair (the frame changes, the cursor position shows), a typed
    label annotates it, "Save scene" downloads a JSON with both, and "Load scene" of that file restores
    them (and the slice image) after they were cleared."""
    s = "window.trame.state"
    page.evaluate(f"() => {s}.set('AppState__view_mode', 'axial')")
    page.wait_for_function(f"() => {s}.get('AppState__window_text').includes('HU')")
    before, axial = _settled(page)
    box = _view(page).bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.4)
    page.wait_for_function(f"() => {s}.get('AppState__cursor').includes('mm')")
    _, marked = _settled(page, after=before, changed=True)
    assert _differ(axial, marked, threshold=0.05), "the crosshair is not drawn"
    page.locator(".rfm-note-text input").fill("landmark one")
    page.locator(".rfm-annotate").click()
    page.wait_for_function(f"() => {s}.get('AppState__annotations').length === 1")
    info, annotated = _settled(page)
    _save(annotated, artifacts / "app_crosshair_annotation.png")
    with page.expect_download() as download:
        page.locator(".rfm-scene-save").click()
    path = tmp_path / "scene.json"
    download.value.save_as(path)
    import json
    scene = json.loads(path.read_text())
    assert scene["view"]["mode"] == "axial" and scene["cursor"] is not None
    assert [a["text"] for a in scene["annotations"]] == ["landmark one"]

    page.locator(".rfm-unannotate").click()
    page.wait_for_function(f"() => {s}.get('AppState__annotations').length === 0 && !{s}.get('AppState__cursor')")
    page.evaluate(f"() => {s}.set('AppState__view_mode', '3d')")
    page.wait_for_function(f"() => {s}.get('AppState__view_mode') === '3d'")
    page.locator(".rfm-scene-file").set_input_files(str(path))
    page.wait_for_function(f"() => {s}.get('AppState__annotations').length === 1 && "
                           f"{s}.get('AppState__view_mode') === 'axial'")
    deadline = time.monotonic() + TIMEOUT_MS / 1e3
    while True:  # the restored slice: the same picture as when it was saved
        info, restored = _settled(page, after=info)
        if not _differ(annotated, restored, threshold=1.0) or time.monotonic() > deadline:
            break
    _save(restored, artifacts / "app_scene_restored.png")
    assert not _differ(annotated, restored, threshold=1.0), "the loaded scene does not show what was saved"
    # a scene that cannot load says why, whole, until closed (a status line cut the reason short)
    scene["layout"] = {"compare": "yes"}
    bad = tmp_path / "bad_scene.json"
    bad.write_text(json.dumps(scene))
    page.locator(".rfm-scene-file").set_input_files(str(bad))
    alert = page.locator(".rfm-alert-text")
    alert.wait_for(state="visible")
    assert alert.inner_text().startswith("Scene not loaded: ") and "compare" in alert.inner_text()
    page.screenshot(path=str(artifacts / "app_scene_refused.png"))
    page.locator(".rfm-alert-close").click()
    alert.wait_for(state="hidden")
    page.locator(".rfm-unannotate").click()
    page.evaluate(f"() => {s}.set('AppState__view_mode', '3d')")
    # the drawer's slice tools vanish in 3-D: let the layout settle before the next test clicks
    page.wait_for_function(f"() => {s}.get('AppState__annotations').length === 0 && "
                           f"{s}.get('AppState__view_mode') === '3d' && !document.querySelector('.rfm-window')")


def test_difference_view_shows_where_the_compared_views_differ(page, artifacts):
    """Compare on, then "Difference": a third pane shows |left - right| (not blank: the two sides use
    different renderers or presets) with SSIM and PSNR under its title."""
    page.locator(".rfm-compare input").check()
    wait_frame(page, _view(page, "view_b"))
    page.locator(".rfm-difference input").check()
    third = _view(page, "view_c")
    wait_frame(page, third)
    page.wait_for_function("() => (window.trame.state.get('AppState__view_c__ViewState__subtitle') || '')"
                           ".includes('SSIM')")
    _, heat = _settled(page, "view_c")
    subtitle = page.locator(".rfm-dice-view_c").inner_text()
    page.screenshot(path=str(artifacts / "app_difference_page.png"))
    _save(heat, artifacts / "app_difference.png")
    ssim = float(subtitle.split("SSIM")[1].split()[0])
    assert 0 < ssim < 1 and "PSNR" in subtitle
    assert heat.max() > 60, "the two sides differ, the heat map shows nothing"
    # in a narrow window three panes' titles wrapped, and the header cut them mid-line: one line each now
    page.set_viewport_size({"width": 800, "height": 600})
    try:
        for name in ("view_a", "view_b", "view_c"):
            for part in (f".rfm-view-title-{name}", f".rfm-dice-{name}"):
                box = page.locator(part).evaluate("(e) => [e.scrollHeight, e.getBoundingClientRect().height, "
                                                  "e.title]")
                assert box[0] <= 24 and box[1] <= 24, (part, box)
        assert " · " in page.locator(".rfm-view-title-view_a").get_attribute("title")  # whole on hover
    finally:
        page.set_viewport_size(VIEWPORT)
    page.locator(".rfm-difference input").uncheck()
    page.locator(".rfm-compare input").uncheck()


def test_four_views_follow_a_click_on_one_plane(page, artifacts):
    """"Four views": 3-D | axial | coronal | sagittal in a 2x2 grid; a click on the axial view moves
    the crosshair there, and the coronal and sagittal views change to the planes through it. Turned on
    from a slice view, the main view goes back to 3-D (it is the 3-D one of the four)."""
    page.evaluate("() => window.trame.state.set('AppState__view_mode', 'axial')")
    page.wait_for_function("() => window.trame.state.get('AppState__view_mode') === 'axial'")
    page.locator(".rfm-four-up input").check()
    page.wait_for_function("() => window.trame.state.get('AppState__view_mode') === '3d'")
    assert page.locator(".rfm-mode input").is_disabled(), "the View menu stays usable beside the four views"
    # the planes' window, its readout and the labels overlay stay at hand (they were hidden: 3-D mode)
    page.locator(".rfm-window").wait_for(state="visible")
    assert "HU" in page.locator(".rfm-window-text").inner_text()
    assert page.locator(".rfm-slice").count() == 0, "the slice slider is the single slice view's"
    planes = {name: _view(page, name) for name in ("view_d", "view_e", "view_f")}
    for view in planes.values():
        wait_frame(page, view)
    before = {name: _settled(page, name) for name in planes}
    box = planes["view_d"].bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.45)
    page.wait_for_function("() => window.trame.state.get('AppState__cursor').includes('mm')")
    for name in ("view_e", "view_f"):
        deadline = time.monotonic() + TIMEOUT_MS / 1e3
        info, img = before[name]
        while True:
            info, after = _settled(page, name, after=info)
            if _differ(before[name][1], after, threshold=0.5) or time.monotonic() > deadline:
                break
        assert _differ(before[name][1], after, threshold=0.5), f"{name} did not move to the clicked point"
    page.screenshot(path=str(artifacts / "app_four_up.png"))
    page.locator(".rfm-unannotate").click()
    page.locator(".rfm-four-up input").uncheck()
    page.wait_for_function("() => !document.querySelector('img[data-rfm-view=\"view_d\"]')")


def test_a_narrow_window_gets_the_drawer_over_the_views(browser, app_url, artifacts):
    """At 700 px (a tablet upright) a drawer of 320 px beside the view left it a strip: there the drawer
    starts closed, the view takes the width, and the menu button slides the drawer over the view."""
    context = browser.new_context(viewport={"width": 700, "height": 600})
    try:
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(app_url)
        view = _view(page)
        wait_frame(page, view)
        page.wait_for_function("() => window.trame.state.get('main_drawer') === false")
        drawer = page.locator(".v-navigation-drawer")
        assert view.bounding_box()["width"] > 600
        right = "() => document.querySelector('.v-navigation-drawer').getBoundingClientRect().right"
        page.wait_for_function(f"() => ({right})() <= 0")        # slid out of the window
        page.locator(".v-app-bar-nav-icon").click()
        page.wait_for_function(f"() => ({right})() === 320")     # slid in
        box = drawer.bounding_box()
        assert box["x"] == 0 and box["width"] == 320
        assert view.bounding_box()["width"] > 600, "the drawer slides over the view, it does not squeeze it"
        page.screenshot(path=str(artifacts / "app_narrow_drawer.png"))
    finally:
        context.close()
