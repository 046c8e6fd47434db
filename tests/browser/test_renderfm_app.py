"""``rfmweb serve CT`` with a Render-FM checkpoint, in Debian's chromium: switching to Render-FM, and
the "Ray-marcher | Render-FM" compare layout.

One server for the module: the CLI in a subprocess on the 4x-downsampled head CT, with
``RFMWEB_RENDERFM_CHECKPOINT`` naming a temporary untrained model (it predicts exactly the AGP
splats: the shipped weights may not exist yet). The tests read the views' pixels and save
screenshots to ``tests/_artifacts`` (look at them). ``docs/renderfm_viewer.png``, the shipped model
on the full head CT, is taken by ``benchmarks/app_roundtrip.py --compare``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from PIL import Image

from conftest import free_port, is_blank, screenshot_array  # tests/browser/conftest.py (not a package)
from serving import ServerError, served
from roundtrip import frame_info, wait_frame, wait_idle
from tests.conftest import view_likeness  # the likeness measure the unit tests use

KEY = "renderfm-browser-key"
VIEWPORT = {"width": 1280, "height": 640}
TIMEOUT_MS = 90_000
#: tests.conftest.view_likeness (blurred luminance correlation over the lit box) of the view showing
#: Render-FM and the same view ray-marched (screenshots of the <img>, same camera). Measured: 0.845;
#: the same Render-FM view against the ray-marched one upside down: 0.730, against black: 0.
LIKENESS_MIN = 0.78


def _save(img: np.ndarray, path) -> None:
    Image.fromarray(img).save(path)


@pytest.fixture(scope="module")
def app(small_ct, tmp_path_factory):
    from rfmweb.io import save_volume
    from rfmweb.renderfm.model import RenderFM, RenderFMConfig, save_model

    folder = tmp_path_factory.mktemp("renderfm_app")
    save_volume(small_ct, folder / "ct.nii.gz", folder / "labels.nii.gz")
    ckpt = save_model(folder / "m.pt", RenderFM(RenderFMConfig(features=(4, 8), spacing_mm=4.0)))
    port = free_port()
    log = folder / "server.log"
    url = f"http://127.0.0.1:{port}/?secret={KEY}"
    cmd = ["env", f"RFMWEB_RENDERFM_CHECKPOINT={ckpt}", sys.executable, "-m", "rfmweb", "serve",
           str(folder / "ct.nii.gz"), "--labels", str(folder / "labels.nii.gz"), "--preset", "CT-Bone",
           "--port", str(port), "--auth-key", KEY]
    try:
        with served(cmd, url, log, timeout_s=120):
            yield url, log
    except ServerError as exc:
        pytest.fail(str(exc))
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def page(browser, app):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app[0])
    wait_frame(page, _view(page), timeout_ms=TIMEOUT_MS)
    yield page
    context.close()


def _view(page, name: str = "view_a"):
    return page.locator(f'img[data-rfm-view="{name}"]')


def _status(page, name: str = "view_a") -> str:
    return page.locator(f".rfm-status-{name}").inner_text()


def _wait_status(page, name: str, pattern: str) -> None:
    page.wait_for_function("([sel, re]) => new RegExp(re).test(document.querySelector(sel)?.textContent || '')",
                           arg=[f".rfm-status-{name}", pattern], timeout=TIMEOUT_MS)


def _drag(page, dx: float, name: str = "view_a") -> None:
    box = _view(page, name).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 6):
        page.mouse.move(x + dx * k / 5, y)
    page.mouse.up()


def test_server_says_render_fm_is_available(app, page):
    text = app[1].read_text()
    assert "Render-FM available" in text, text
    assert page.evaluate("() => window.trame.state.get('AppState__view_b__ViewState__renderer')") == "renderfm"


def test_switching_to_render_fm_shows_a_frame_like_the_ray_marched_one(page, artifacts):
    view = _view(page)
    before = wait_idle(page, view, timeout_ms=TIMEOUT_MS)
    assert page.evaluate("() => window.trame.state.get('AppState__view_a__ViewState__renderer')") != "renderfm"
    page.wait_for_timeout(1500)  # the ray-marcher converges while the camera rests
    before = frame_info(view)
    marched = screenshot_array(view)
    page.locator(".v-select", has_text="Renderer").first.click()
    page.locator(".v-overlay .v-list-item", has_text="Render-FM").click()
    after = wait_frame(page, view, after=before, kind="idle", changed=True, timeout_ms=TIMEOUT_MS)
    _wait_status(page, "view_a", r"Render-FM: [\d,]+ splats in [\d.]+ s")
    splats = screenshot_array(view)
    _save(marched, artifacts / "renderfm_app_raymarched.png")
    _save(splats, artifacts / "renderfm_app_renderfm.png")
    score = view_likeness(splats, marched)
    controls = {"upside down": round(view_likeness(splats, marched[::-1].copy()), 3),
                "black": round(view_likeness(splats, np.zeros_like(marched)), 3)}
    line = f"browser Render-FM vs ray-marched, likeness {score:.3f} (min {LIKENESS_MIN}); controls {controls}"
    print(line)
    (artifacts / "renderfm_app_ssim.txt").write_text(line + "\n")
    assert after["w"] > 200 and not is_blank(splats) and splats.mean() > 5, "the Render-FM frame is blank"
    assert score > LIKENESS_MIN, line
    assert all(score > c + 0.03 for c in controls.values()), line
    # orbiting draws splats at once: no new prediction, no "preparing" on the way
    _drag(page, 120)
    wait_idle(page, view, after=after, changed=True, timeout_ms=TIMEOUT_MS)
    assert "preparing" not in _status(page) and "splats in" in _status(page)


def test_a_preset_change_prepares_again_with_a_status_line(page, artifacts):
    view = _view(page)
    before = wait_idle(page, view, timeout_ms=TIMEOUT_MS)
    bone = screenshot_array(view)
    page.locator(".v-select", has_text="Preset").first.click()
    page.locator(".v-overlay .v-list-item", has_text="CT-Muscle").click()
    wait_frame(page, view, after=before, kind="idle", changed=True, timeout_ms=TIMEOUT_MS)
    _wait_status(page, "view_a", r"Render-FM: [\d,]+ splats in")
    muscle = screenshot_array(view)
    _save(muscle, artifacts / "renderfm_app_muscle.png")
    assert not is_blank(muscle) and float(np.abs(muscle.astype(np.float32) - bone).mean()) > 2


def test_ray_marcher_and_render_fm_side_by_side_with_linked_cameras(page, artifacts):
    page.locator(".v-select", has_text="Preset").first.click()  # the right view takes the left one's preset
    page.locator(".v-overlay .v-list-item", has_text="CT-Bone").click()
    page.locator("button", has_text="Reset view").click()
    page.locator(".rfm-compare-renderfm").click()
    right = _view(page, "view_b")
    info_b = wait_frame(page, right, kind="idle", timeout_ms=TIMEOUT_MS)
    _wait_status(page, "view_b", r"Render-FM: [\d,]+ splats in")
    state = page.evaluate("""() => [window.trame.state.get('AppState__view_a__ViewState__renderer'),
                                    window.trame.state.get('AppState__view_b__ViewState__renderer'),
                                    window.trame.state.get('AppState__compare')]""")
    assert state[1:] == ["renderfm", True] and state[0] in ("compiled", "raymarch"), state
    presets = page.evaluate("""() => [window.trame.state.get('AppState__view_a__ViewState__preset'),
                                      window.trame.state.get('AppState__view_b__ViewState__preset')]""")
    assert presets == ["CT-Bone", "CT-Bone"], presets
    info_a = wait_idle(page, _view(page), timeout_ms=TIMEOUT_MS)
    page.wait_for_timeout(1500)  # let the ray-marcher converge for the picture
    a, b = screenshot_array(_view(page)), screenshot_array(right)
    page.screenshot(path=str(artifacts / "renderfm_compare_page.png"))
    assert not is_blank(a) and not is_blank(b)
    # linked cameras: a drag in the ray-marched view turns the Render-FM view too
    info_a, info_b = frame_info(_view(page)), frame_info(right)
    _drag(page, 150)
    wait_idle(page, _view(page), after=info_a, changed=True, timeout_ms=TIMEOUT_MS)
    wait_frame(page, right, after=info_b, kind="idle", changed=True, timeout_ms=TIMEOUT_MS)
    b2 = screenshot_array(right)
    _save(b2, artifacts / "renderfm_compare_right_turned.png")
    assert float(np.abs(b2.astype(np.float32) - b).mean()) > 2, "the Render-FM view did not follow the camera"
