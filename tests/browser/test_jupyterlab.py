"""rfmweb.widgets in a real JupyterLab, driven by Debian's chromium through Playwright.

One JupyterLab server (kernel = this venv's python) and one notebook for the whole module: a Viewer
and a Compare of the real head CT. The tests look at the canvases' pixels and save screenshots to
``tests/_artifacts`` (look at them: a blank or black frame is a failure).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from conftest import free_port, is_blank, screenshot_array  # tests/browser/conftest.py (not a package)

HEAD_CT = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "head_ct"
TOKEN = "rfmweb-test-token"
FRAME_TIMEOUT_MS = 90_000

NOTEBOOK_CELLS = [
    f"""import torch
torch.set_num_threads(1)
from rfmweb.io import load_volume
from rfmweb.volume import LabelClass, Volume
from rfmweb.widgets import Compare, Viewer
ct = load_volume({str(HEAD_CT / "ct.nii.gz")!r}, {str(HEAD_CT / "labels.nii.gz")!r})
affine = ct.affine.copy()
affine[:3, :3] *= 2
classes = (LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "soft tissue", (0.85, 0.55, 0.45), "soft tissue"),
           LabelClass(2, "bone", (0.95, 0.9, 0.75), "skeleton"))
vol = Volume(ct.data[:, ::2, ::2, ::2], affine, modality="CT", labels=ct.labels[::2, ::2, ::2], classes=classes,
             name="head CT")""",
    """viewer = Viewer(vol, preset="CT-Bone", width=320, height=320)
viewer""",
    """compare = Compare.presets(vol, ["CT-Bone", "CT-Muscle"], width=256, height=256)
compare""",
]


def _pixels_differ(a: np.ndarray, b: np.ndarray, threshold: float = 2.0) -> bool:
    return a.shape != b.shape or float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > threshold


def _write_notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"cell{i}", "metadata": {}, "outputs": [],
              "source": src} for i, src in enumerate(NOTEBOOK_CELLS)]
    nb = {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3 (rfmweb venv)",
                                      "language": "python"}}}
    path.write_text(json.dumps(nb, indent=1))


def _isolated_env(base: Path) -> dict:
    """Jupyter dirs under ``base``; the ``python3`` kernelspec runs this interpreter (the venv's)."""
    prefix = base / "kernel-prefix"
    subprocess.run([sys.executable, "-m", "ipykernel", "install", "--prefix", str(prefix), "--name", "python3",
                    "--display-name", "Python 3 (rfmweb venv)"], check=True, capture_output=True)
    settings = base / "lab-settings"
    # render every cell (no virtual scrolling), no news pop-up: the page holds still for screenshots
    for plugin, values in {"@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
                           "@jupyterlab/apputils-extension/notification": {"fetchNews": "false",
                                                                           "checkForUpdates": False}}.items():
        target = settings / (plugin + ".jupyterlab-settings")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(values))
    env = dict(os.environ)
    env.update(JUPYTER_PATH=str(prefix / "share" / "jupyter"), JUPYTER_CONFIG_DIR=str(base / "config"),
               JUPYTER_DATA_DIR=str(base / "data"), JUPYTER_RUNTIME_DIR=str(base / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(settings), JUPYTERLAB_WORKSPACES_DIR=str(base / "workspaces"),
               IPYTHONDIR=str(base / "ipython"), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """A JupyterLab server on a free port: ``(base_url, log_path)``; stopped in the finalizer."""
    if not (HEAD_CT / "ct.nii.gz").exists():
        pytest.skip(f"head CT not found at {HEAD_CT}")
    base = tmp_path_factory.mktemp("jupyterlab")
    root = base / "root"
    root.mkdir()
    _write_notebook(root / "widgets.ipynb")
    port = free_port()
    log_path = base / "server.log"
    jupyter = Path(sys.executable).parent / "jupyter"
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen(
            [str(jupyter), "lab", "--no-browser", f"--port={port}", "--ip=127.0.0.1", f"--IdentityProvider.token={TOKEN}", "--allow-root",
             "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={root}"],
            env=_isolated_env(base), stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status?token={TOKEN}", timeout=2).read()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not start:\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield url, log_path
    finally:
        # the server and its kernel share a process group that we created
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


@pytest.fixture(scope="module")
def notebook(lab, browser):
    """The notebook opened in chromium with every cell run; yields the Playwright page."""
    url, log_path = lab
    context = browser.new_context(viewport={"width": 1400, "height": 1500}, accept_downloads=True)
    page = context.new_page()
    console: list[str] = []
    page.on("console", lambda msg: console.append(f"{msg.type}: {msg.text}"))
    page.on("pageerror", lambda err: console.append(f"pageerror: {err}"))
    try:
        page.goto(f"{url}/lab/tree/widgets.ipynb?token={TOKEN}", timeout=60_000)
        page.wait_for_function("""() => {
            const w = window.jupyterapp?.shell?.currentWidget;
            return w?.sessionContext?.session?.kernel?.status === 'idle' && w.content?.widgets?.length === 3;
        }""", timeout=60_000)
        page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
        page.wait_for_function("""() => {
            const c = [...document.querySelectorAll('.rfm-canvas')];
            return c.length === 3 && c.every((x) => ['idle', 'progressive'].includes(x.dataset.kind));
        }""", timeout=FRAME_TIMEOUT_MS)
    except Exception:
        page.screenshot(path=str(Path(__file__).resolve().parents[1] / "_artifacts" / "jupyterlab_failure.png"))
        raise AssertionError(f"widgets did not show frames.\nconsole: {console[-20:]}\n"
                             f"server log: {log_path.read_text()[-3000:]}")
    yield page
    context.close()
    ours = [line for line in console if "rfm" in line.lower() or line.startswith("pageerror")]
    assert not ours, f"the viewer logged errors in the page: {ours}"


def _canvas(page, i: int):
    return page.locator(".rfm-canvas").nth(i)


def _wait_new_idle_frame(page, i: int, after_id: int, quiet_ms: int = 600) -> None:
    """Wait until canvas ``i`` shows a full-quality (or converging) frame newer than ``after_id`` and no
    frame has come for ``quiet_ms`` (the final state, not one from a pause in the middle of a gesture)."""
    page.wait_for_function("""([i, after, quiet]) => {
        const c = document.querySelectorAll('.rfm-canvas')[i];
        window.__rfmSeen = window.__rfmSeen || {};
        const seen = window.__rfmSeen[i];
        if (!seen || seen.id !== c.dataset.frameId) {
            window.__rfmSeen[i] = {id: c.dataset.frameId, t: performance.now()};
            return false;
        }
        const rest = ['idle', 'progressive'].includes(c.dataset.kind);    // at rest: converging or converged
        return Number(c.dataset.frameId) > after && rest && performance.now() - seen.t > quiet;
    }""", arg=[i, after_id, quiet_ms], timeout=FRAME_TIMEOUT_MS, polling=50)


def _frame_id(page, i: int) -> int:
    return int(_canvas(page, i).get_attribute("data-frame-id"))


def _shot(locator, path: Path) -> np.ndarray:
    locator.scroll_into_view_if_needed()
    img = screenshot_array(locator)
    from PIL import Image
    Image.fromarray(img).save(path)
    return img


def test_viewer_shows_the_volume(notebook, artifacts):
    page = notebook
    img = _shot(_canvas(page, 0), artifacts / "jupyterlab_viewer.png")
    assert abs(img.shape[0] - 320) <= 1 and abs(img.shape[1] - 320) <= 1  # sub-pixel layout may add a row
    assert not is_blank(img), f"blank viewer canvas (std {img.std():.1f})"
    assert (img.reshape(-1, 3).max(axis=1) > 40).mean() > 0.05, "the head should cover part of the canvas"
    page.locator(".rfm-view").first.screenshot(path=str(artifacts / "jupyterlab_viewer_ui.png"))
    status = page.locator(".rfm-status-info").first.inner_text()
    # the settled view: its full-quality frame, or already a refinement of it (jittered frames averaged)
    assert ("full quality" in status or "refined" in status) and "ms" in status, status


def test_drag_rotates_the_view(notebook, artifacts):
    page = notebook
    canvas = _canvas(page, 0)
    canvas.scroll_into_view_if_needed()
    before = screenshot_array(canvas)
    last = _frame_id(page, 0)
    # log every frame the page draws (time, kind, size and render time from the status line)
    page.evaluate("""() => {
        const c = document.querySelectorAll('.rfm-canvas')[0];
        const info = document.querySelectorAll('.rfm-status-info')[0];
        window.__rfmFrames = [];
        new MutationObserver(() => window.__rfmFrames.push([performance.now(), c.dataset.kind, info.textContent]))
            .observe(c, {attributes: true, attributeFilter: ['data-frame-id']});
    }""")
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    t_down = page.evaluate("performance.now()")
    page.mouse.down()
    for k in range(1, 31):
        page.mouse.move(x + 4 * k, y + k * 0.5)
        page.wait_for_timeout(16)  # ~60 Hz pointer events
    page.mouse.up()
    t_up = page.evaluate("performance.now()")
    _wait_new_idle_frame(page, 0, last)
    frames = page.evaluate("window.__rfmFrames")
    during = [f for f in frames if f[1] == "interactive"]
    idle = [f for f in frames if f[1] == "idle"]
    timings = {"drag_ms": round(t_up - t_down), "interactive_frames": len(during),
               "interactive_fps": round(1000 * len(during) / max(1.0, t_up - t_down), 1),
               "interactive_status": [f[2] for f in during][-3:],
               "mouse_up_to_full_quality_ms": round(idle[-1][0] - t_up) if idle else None,
               "full_quality_status": idle[-1][2] if idle else None}
    (artifacts / "jupyterlab_timings.json").write_text(json.dumps(timings, indent=1))
    after = _shot(canvas, artifacts / "jupyterlab_viewer_dragged.png")
    assert not is_blank(after)
    assert _pixels_differ(before, after), "dragging should rotate the head"
    assert len(during) >= 2, f"interactive frames should follow the pointer: {timings}"
    # the wheel zooms
    last = _frame_id(page, 0)
    page.mouse.move(x, y)
    page.mouse.wheel(0, -400)
    _wait_new_idle_frame(page, 0, last)
    zoomed = _shot(canvas, artifacts / "jupyterlab_viewer_zoomed.png")
    assert _pixels_differ(after, zoomed), "the wheel should zoom"
    assert (zoomed.reshape(-1, 3).max(axis=1) > 40).mean() > (after.reshape(-1, 3).max(axis=1) > 40).mean()
    # a right-drag (zoom in 3-D, window/level on a slice) opens no JupyterLab cell menu over the canvas
    page.mouse.click(x, y, button="right")
    page.wait_for_timeout(300)
    assert page.locator(".lm-Menu").count() == 0, "JupyterLab's context menu opened over the widget"


def test_class_toggle_changes_the_view(notebook, artifacts):
    page = notebook
    canvas = _canvas(page, 0)
    before = screenshot_array(canvas)
    last = _frame_id(page, 0)
    bone = page.locator(".rfm-view").first.locator('.rfm-class[data-index="2"] input[type=checkbox]')
    assert bone.is_checked()
    bone.uncheck()
    _wait_new_idle_frame(page, 0, last)
    after = _shot(canvas, artifacts / "jupyterlab_viewer_no_bone.png")
    assert _pixels_differ(before, after, threshold=4.0), "hiding bone should change the CT-Bone rendering"
    skeleton = page.locator(".rfm-view").first.locator(".rfm-chip", has_text="skeleton").locator("input")
    assert not skeleton.is_checked()
    page.locator(".rfm-view").first.screenshot(path=str(artifacts / "jupyterlab_viewer_no_bone_ui.png"))


def test_screenshot_button_downloads_png(notebook):
    page = notebook
    with page.expect_download(timeout=60_000) as info:
        page.locator(".rfm-view").first.locator("button[title^='Save']").click()
    path = info.value.path()
    data = Path(path).read_bytes()
    assert data.startswith(b"\x89PNG") and info.value.suggested_filename.endswith(".png")


def test_compare_shows_two_presets(notebook, artifacts):
    page = notebook
    bone = _shot(_canvas(page, 1), artifacts / "jupyterlab_compare_bone.png")
    muscle = _shot(_canvas(page, 2), artifacts / "jupyterlab_compare_muscle.png")
    for img in (bone, muscle):
        assert abs(img.shape[0] - 256) <= 1 and abs(img.shape[1] - 256) <= 1 and not is_blank(img)
    assert _pixels_differ(bone, muscle, threshold=4.0), "CT-Bone and CT-Muscle should look different"
    titles = page.locator(".rfm-title").all_inner_texts()
    assert titles[1:] == ["CT-Bone", "CT-Muscle"]
    page.locator(".rfm-root").nth(1).screenshot(path=str(artifacts / "jupyterlab_compare_ui.png"))
    # the cameras are linked: orbiting the left view turns the right one as well
    last = _frame_id(page, 2)
    box = _canvas(page, 1).bounding_box()
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 9):
        page.mouse.move(x - 15 * k, y)
        page.wait_for_timeout(15)
    page.mouse.up()
    _wait_new_idle_frame(page, 2, last)
    turned = _shot(_canvas(page, 2), artifacts / "jupyterlab_compare_muscle_turned.png")
    assert _pixels_differ(muscle, turned)
