"""Start ``rfmweb serve`` on a volume, open it in Debian's chromium, measure the drag round trip.

Usage::

    .venv/bin/python benchmarks/app_roundtrip.py [VOLUME] [--n 20] [--screenshot docs/app.png] [--four-up | --compare]

VOLUME defaults to the bundled CT phantom. The round trip is timed in the page, from the first
pointer move of a drag to the moment the new frame has finished loading; each sample starts from
rest (after the full-quality frame of the previous one). ``--four-up`` takes the screenshot in the
"Four views" layout after a click on the axial view (the crosshair placed there); ``--compare`` in the
"Ray-marcher | Render-FM" layout (a CT and the shipped Render-FM checkpoint), both views at rest.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "browser"))

from conftest import CHROMIUM, CHROMIUM_ARGS, free_port  # noqa: E402  (tests/browser/conftest.py)
from roundtrip import measure_roundtrip, wait_frame, wait_idle, wait_quiet  # noqa: E402
from serving import served  # noqa: E402

KEY = "benchmark-key-rfmweb"


def run_app_roundtrip(volume: str | None = None, n: int = 20, screenshot: Path | None = None,
                      renderer: str | None = None, preset: str = "CT-Bone", four_up: bool = False,
                      compare: bool = False, labels: str | None = None) -> list[float]:
    """Round-trip times (ms) of ``n`` drags in the app serving ``volume`` (default: the CT phantom)."""
    from playwright.sync_api import sync_playwright

    port = free_port()
    cmd = [sys.executable, "-m", "rfmweb", "serve", *([str(volume)] if volume else []), "--port", str(port),
           "--auth-key", KEY, "--preset", preset, *(["--renderer", renderer] if renderer else []),
           *(["--labels", labels] if labels else [])]
    url = f"http://127.0.0.1:{port}/?secret={KEY}"
    with served(cmd, url, timeout_s=120), sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page.set_default_timeout(120_000)
        page.goto(url)
        view = page.locator('img[data-rfm-view="view_a"]')
        wait_idle(page, view, after=wait_frame(page, view, timeout_ms=120_000))
        if four_up:
            page.locator(".rfm-four-up input").check()
            axial = page.locator('img[data-rfm-view="view_d"]')
            wait_frame(page, axial, timeout_ms=120_000)
            box = axial.bounding_box()
            page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.4)
            page.wait_for_function("() => window.trame.state.get('AppState__cursor').includes('mm')")
            page.wait_for_timeout(2000)  # the views re-render for the new crosshair; then each settles
            for name in ("view_a", "view_d", "view_e", "view_f"):
                wait_idle(page, page.locator(f'img[data-rfm-view="{name}"]'), timeout_ms=120_000)
        if compare:
            page.locator(".rfm-compare-renderfm").click()
            right = page.locator('img[data-rfm-view="view_b"]')
            wait_frame(page, right, kind="idle", timeout_ms=120_000)
            page.wait_for_function("() => /Render-FM: [\\d,]+ splats in/.test("
                                   "document.querySelector('.rfm-status-view_b')?.textContent || '')")
        if screenshot is not None:
            wait_quiet(page, view, quiet_ms=5000)   # converged, as a user sees it (a frame at rest can take ~2 s)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))
        times = measure_roundtrip(page, view, n=n)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("volume", nargs="?", help="volume for rfmweb serve (default: the CT phantom)")
    parser.add_argument("--labels", help="label map of the volume, for rfmweb serve --labels")
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--renderer", help="the main view's renderer (default: the app's own choice)")
    parser.add_argument("--preset", default="CT-Bone")
    parser.add_argument("--screenshot", type=Path, help="save a screenshot of the page here first")
    parser.add_argument("--four-up", action="store_true", help="the screenshot in the four-view layout")
    parser.add_argument("--compare", action="store_true", help="the screenshot in the Ray-marcher | Render-FM layout")
    args = parser.parse_args()
    times = sorted(run_app_roundtrip(args.volume, args.n, args.screenshot, args.renderer, args.preset,
                                     args.four_up, args.compare, args.labels))
    print(f"drag -> new frame displayed ({args.renderer or 'default renderer'}, {args.volume or 'sample:ct_phantom'}): "
          f"median {statistics.median(times):.0f} ms, p90 {times[int(0.9 * len(times))]:.0f} ms, "
          f"min {times[0]:.0f} ms over {len(times)} drags")


if __name__ == "__main__":
    main()
