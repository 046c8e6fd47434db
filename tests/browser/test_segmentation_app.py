"""``rfmweb serve CASE --segment`` in Debian's chromium: ground truth | raw INR | denoised INR.

One server for the module (the CLI in a subprocess, a 2 mm synthetic BraTS case written by the test,
the shipped INR). The tests read the views' pixels and save screenshots to ``tests/_artifacts``
(look at them: a blank or black frame is a failure); ``docs/segmentation.png`` is refreshed from the
first one.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import free_port, is_blank, screenshot_array  # tests/browser/conftest.py (not a package)
from serving import ServerError, served
from roundtrip import frame_info, wait_frame, wait_idle

KEY = "segment-browser-key"
VIEWPORT = {"width": 1280, "height": 560}
TIMEOUT_MS = 90_000
VIEWS = ("view_a", "view_b", "view_c")
DOCS = Path(__file__).resolve().parents[2] / "docs"


def _differ(a: np.ndarray, b: np.ndarray, threshold: float = 1.0) -> bool:
    return a.shape != b.shape or float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > threshold


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    from rfmweb.data.cohort import cohort_case
    from rfmweb.io import save_brats_case
    volume, _ = cohort_case("val", 0, 2, resolution_mm=2.0)   # a large tumour, mostly edema
    return save_brats_case(volume, tmp_path_factory.mktemp("segment_case")), volume


@pytest.fixture(scope="module")
def app_url(case_dir, tmp_path_factory):
    folder, _ = case_dir
    port = free_port()
    log = tmp_path_factory.mktemp("segment_app") / "server.log"
    url = f"http://127.0.0.1:{port}/?secret={KEY}"
    cmd = [sys.executable, "-m", "rfmweb", "serve", str(folder), "--segment", "--port", str(port), "--auth-key", KEY]
    try:
        with served(cmd, url, log, timeout_s=120):
            yield url
    except ServerError as exc:
        pytest.fail(str(exc))
    assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture(scope="module")
def page(browser, app_url):
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    for name in VIEWS:
        wait_frame(page, _view(page, name), timeout_ms=TIMEOUT_MS)
    # the INR labels are in once Dice shows under the raw view's title
    page.wait_for_function("() => /Dice WT/.test(document.querySelector('.rfm-dice-view_b')?.textContent || '')")
    yield page
    context.close()


def _view(page, name: str):
    return page.locator(f'img[data-rfm-view="{name}"]')


def _settled_all(page, after: dict | None = None) -> tuple[dict, list[np.ndarray]]:
    """Wait for the full-quality frame of every view (of a newer state than ``after[name]``: a frame
    still refining the state before a change does not count); their pixels."""
    infos = {name: wait_idle(page, _view(page, name), after=(after or {}).get(name), changed=after is not None,
                             timeout_ms=TIMEOUT_MS) for name in VIEWS}
    return infos, [screenshot_array(_view(page, name)) for name in VIEWS]


def _select(page, css: str, option: str) -> None:
    """Pick ``option`` in the vuetify select with class ``css``."""
    page.locator(f"{css} .v-field").click()
    page.locator(".v-overlay-container .v-list-item", has_text=option).first.click()


def test_three_views_show_the_case_with_dice(page, artifacts):
    _, images = _settled_all(page)
    for name, img in zip(VIEWS, images):
        Image.fromarray(img).save(artifacts / f"segment_{name}.png")
        assert not is_blank(img) and img.mean() > 3, f"{name} is blank or black"
    titles = [page.locator(f".rfm-title-{n}").inner_text() for n in VIEWS]
    assert [t.splitlines()[0] for t in titles] == ["ground truth", "raw INR", "denoised INR"]
    for n in ("view_b", "view_c"):
        assert all(r in page.locator(f".rfm-dice-{n}").inner_text() for r in ("WT", "TC", "ET"))
    assert page.locator(".rfm-dice-view_a").get_attribute("title").endswith(" mL")   # the regions' volumes
    page.screenshot(path=str(artifacts / "segment_page.png"))


def test_axial_slice_differs_from_3d_and_all_views_follow(page, artifacts):
    before, three_d = _settled_all(page)
    _select(page, ".rfm-mode", "axial")
    after, axial = _settled_all(page, after=before)
    for name, a, b in zip(VIEWS, three_d, axial):
        Image.fromarray(b).save(artifacts / f"segment_axial_{name}.png")
        assert not is_blank(b), f"{name}'s axial slice is blank"
        assert _differ(a, b), f"{name} still shows the 3-D render"
    page.screenshot(path=str(artifacts / "segment_page_axial.png"))
    DOCS.mkdir(exist_ok=True)  # the picture the README shows: written atomically
    tmp = DOCS / "segmentation.png.tmp"
    shutil.copyfile(artifacts / "segment_page_axial.png", tmp)
    tmp.replace(DOCS / "segmentation.png")
    # the wheel on a slice view steps the slice of every view
    text = page.locator(".rfm-slice-text")
    start = text.inner_text()
    box = _view(page, "view_a").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, 300)
    page.wait_for_function("([el, s]) => el.textContent.trim() !== s", arg=[text.element_handle(), start.strip()])
    stepped_info, stepped = _settled_all(page, after=after)
    assert all(_differ(a, b, 0.2) for a, b in zip(axial, stepped)), "the wheel did not move every view"
    # the Sequence menu (FLAIR at first) shows another MR sequence in every view, then FLAIR again
    assert "FLAIR" in page.locator(".rfm-channel").inner_text()
    _select(page, ".rfm-channel", "T1c")
    _, t1c = _settled_all(page, after=stepped_info)
    Image.fromarray(t1c[0]).save(artifacts / "segment_axial_t1c.png")
    assert all(_differ(a, b) for a, b in zip(stepped, t1c)), "the sequence menu did not change every view"
    _select(page, ".rfm-channel", "FLAIR")
    page.wait_for_function("() => window.trame.state.get('AppState__slice_channel') === '3'")


def test_class_toggle_changes_all_three_views(page, artifacts):
    before, shown = _settled_all(page)
    page.locator(".rfm-class", has_text="ED").locator("input[type=checkbox]").click()
    after, hidden = _settled_all(page, after=before)
    Image.fromarray(np.concatenate(hidden, axis=1)).save(artifacts / "segment_ed_hidden.png")
    for name, a, b in zip(VIEWS, shown, hidden):
        assert _differ(a, b, 0.2), f"hiding ED did not change {name}"
    page.locator(".rfm-class", has_text="ED").locator("input[type=checkbox]").click()
    _settled_all(page, after=after)


def test_paint_stroke_and_apply_change_the_raw_view(page, case_dir, artifacts):
    _, volume = case_dir
    if page.locator(".rfm-mode input").input_value() != "axial":
        _select(page, ".rfm-mode", "axial")
    before, images = _settled_all(page)
    raw_before = images[1]
    page.locator(".rfm-tool input").check()
    # paint "not tumour" over the tumour in the raw view: the overlay's coloured pixels locate it
    r, g, b = (raw_before[..., i].astype(int) for i in range(3))
    ys, xs = np.nonzero((g - b > 25) | (r - b > 60))
    ys, xs = ys[(ys > 20) & (ys < raw_before.shape[0] - 20)], xs[(ys > 20) & (ys < raw_before.shape[0] - 20)]
    assert len(xs) > 20, "the raw view shows no tumour to correct"
    box = _view(page, "view_b").bounding_box()
    scale = box["width"] / raw_before.shape[1]
    order = np.argsort(xs)
    pts = [(box["x"] + xs[i] * scale, box["y"] + ys[i] * scale) for i in order[:: max(1, len(order) // 40)]]
    page.mouse.move(*pts[0])
    page.mouse.down()
    for p in pts[1:]:
        page.mouse.move(*p)
    page.mouse.up()
    page.wait_for_function("() => !/^0 /.test(document.querySelector('.rfm-marks')?.textContent || '0 ')")
    assert frame_info(_view(page, "view_b"))  # still streaming
    dice = page.locator(".rfm-dice-view_b")
    dice_before = dice.inner_text()
    t0 = time.monotonic()
    page.locator(".rfm-apply").click()
    # no download while it runs (it would be the labels from before the correction)
    page.wait_for_function("() => document.querySelector('.rfm-save-seg').disabled")
    # Dice against the ground truth follows the new labels
    page.wait_for_function("([el, s]) => el.textContent.trim() !== s", arg=[dice.element_handle(), dice_before.strip()])
    wait_idle(page, _view(page, "view_b"), after=frame_info(_view(page, "view_b")), timeout_ms=TIMEOUT_MS)
    seconds = time.monotonic() - t0
    # how it ended stays in the panel (the views' status lines move on to their frames' notes)
    assert page.locator(".rfm-correction-note").inner_text().startswith("corrected: ")
    page.screenshot(path=str(artifacts / "segment_corrected_page.png"))
    raw_after = screenshot_array(_view(page, "view_b"))
    Image.fromarray(np.concatenate([raw_before, raw_after], axis=1)).save(artifacts / "segment_corrected.png")
    assert not is_blank(raw_after) and _differ(raw_before, raw_after, 0.2), "the correction did not change the raw view"
    print(f"apply -> corrected raw frame shown in {seconds:.2f} s; {dice_before} -> {dice.inner_text()}")
    # the corrected segmentation downloads as NIfTI on the case's grid (the browser names no server path)
    import nibabel as nib
    with page.expect_download() as download:
        page.locator(".rfm-save-seg").click()
    assert download.value.suggested_filename == f"{case_dir[0].name}_denoised_inr.nii.gz"   # the case's own name
    saved = artifacts / "segment_corrected_labels.nii.gz"
    download.value.save_as(saved)
    labels = np.asarray(nib.load(str(saved)).dataobj)
    assert labels.shape == volume.shape and set(np.unique(labels)) <= {0, 1, 2, 3} and labels.any()
    import zipfile
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.locator(".rfm-save-seg-dcm").click()
    assert download.value.suggested_filename == f"{case_dir[0].name}_denoised_inr_dicom_seg.zip"
    bundle = artifacts / "segment_corrected_dicom_seg.zip"
    download.value.save_as(bundle)
    with zipfile.ZipFile(bundle) as archive:
        assert "segmentation.dcm" in archive.namelist() and len(archive.namelist()) > 1
    page.locator(".rfm-tool input").uncheck()


def test_pending_stroke_shows_in_the_slice_image_before_apply(page, artifacts):
    """A stroke painted on the brain shows in the page's slice image (drawn server-side) until Clear."""
    from rfmweb.session.slice_frame import ERASE_MARK_COLOR
    if page.locator(".rfm-mode input").input_value() != "axial":
        _select(page, ".rfm-mode", "axial")
    _, images = _settled_all(page)
    gt_before = images[0]
    page.locator(".rfm-tool input").check()
    _select(page, ".rfm-correct-label", "not tumour")
    ys, xs = np.nonzero(gt_before.mean(axis=2) > 40)  # the brain: bright pixels of the slice
    assert len(xs) > 100, "the slice shows no brain"
    cy, cx = float(np.median(ys)), float(np.median(xs))
    box = _view(page, "view_a").bounding_box()
    scale = box["width"] / gt_before.shape[1]
    after = frame_info(_view(page, "view_a"))
    page.mouse.move(box["x"] + (cx - 15) * scale, box["y"] + cy * scale)
    page.mouse.down()
    for dx in range(-12, 16, 3):
        page.mouse.move(box["x"] + (cx + dx) * scale, box["y"] + cy * scale)
    page.mouse.up()
    page.wait_for_function("() => /[1-9]/.test(document.querySelector('.rfm-marks')?.textContent || '')")
    wait_idle(page, _view(page, "view_a"), after=after, changed=True, timeout_ms=TIMEOUT_MS)
    gt_marked = screenshot_array(_view(page, "view_a"))
    Image.fromarray(np.concatenate([gt_before, gt_marked], axis=1)).save(artifacts / "segment_pending_stroke.png")
    mark = (np.abs(gt_marked.astype(int) - np.array(ERASE_MARK_COLOR)).max(axis=2) <= 12)
    assert mark.sum() >= 10, "the pending stroke is not visible in the slice image"
    my, mx = np.nonzero(mark)
    assert abs(np.median(my) - cy) < 12 and abs(np.median(mx) - cx) < 20, "the stroke shows away from where it went"
    page.locator(".rfm-clear-marks").click()
    page.wait_for_function("() => !/[1-9]/.test(document.querySelector('.rfm-marks')?.textContent || '')")
    page.locator(".rfm-tool input").uncheck()
