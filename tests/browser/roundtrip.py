"""Frame helpers for the trame app in a Playwright page, and the drag round-trip measurement.

The app's page script writes, on each view's ``<img data-rfm-view=NAME>``, the frame it shows:
``data-frame-id``, ``data-frame-gen`` (stream generation), ``data-frame-version`` (the state version it
shows: every change bumps it), ``data-frame-kind`` (``interactive``, ``idle`` or ``progressive``) and
``data-shown-at`` (``performance.now()`` when the image finished loading). These helpers poll those
attributes (no fixed sleeps).

Used by tests/browser/test_app.py and benchmarks/bench_render.py::

    from roundtrip import measure_roundtrip
    times_ms = measure_roundtrip(page, page.locator('img[data-rfm-view="view_a"]'), n=20)
"""

from __future__ import annotations

import time

_FRAME = """el => ({id: Number(el.dataset.frameId || 0), gen: Number(el.dataset.frameGen || 0),
                   kind: el.dataset.frameKind || "", version: Number(el.dataset.frameVersion || 0),
                   w: Number(el.dataset.frameW || 0), shownAt: Number(el.dataset.shownAt || 0)})"""

# a frame newer than (gen, id), of a state newer than `version` (-1: any) and, if asked, of a given kind
# kind "rest": the full-quality frame after a change or the converging frames that refine it (a
# ray-marcher's view at rest is an idle frame followed by progressive ones: either may be showing)
_NEWER = """({el, gen, id, version, kind}) => {
  const g = Number(el.dataset.frameGen || 0), i = Number(el.dataset.frameId || 0);
  const newer = (g > gen || (g === gen && i > id)) && Number(el.dataset.frameVersion || 0) > version;
  const k = el.dataset.frameKind;
  return newer && (!kind || k === kind || (kind === "rest" && (k === "idle" || k === "progressive")));
}"""

# the time of the first pointer move with a button down after arming
_ARM = """() => {
  if (!window.__rfmRoundTrip) {
    window.__rfmRoundTrip = {t0: null};
    document.addEventListener("pointermove", (e) => {
      if (e.buttons && window.__rfmRoundTrip.t0 === null) window.__rfmRoundTrip.t0 = performance.now();
    }, {capture: true});
  }
  window.__rfmRoundTrip.t0 = null;
}"""


def frame_info(view) -> dict:
    """``{"id", "gen", "kind", "w", "shownAt"}`` of the frame a view's ``<img>`` shows (id 0: none yet)."""
    return view.evaluate(_FRAME)


def wait_frame(page, view, *, after: dict | None = None, kind: str | None = None, changed: bool = False,
               timeout_ms: float = 60_000) -> dict:
    """Wait until ``view`` shows a frame newer than ``after`` (a :func:`frame_info`) and of ``kind``;
    with ``changed``, one of a newer state than ``after``'s (a change made since then, not a frame
    still refining the old state)."""
    after = after or {"gen": 0, "id": 0, "version": 0}
    version = after["version"] if changed else -1
    handle = view.element_handle(timeout=timeout_ms)
    page.wait_for_function(_NEWER, arg={"el": handle, "gen": after["gen"], "id": after["id"], "version": version,
                                        "kind": kind}, timeout=timeout_ms)
    return frame_info(view)


def wait_idle(page, view, *, after: dict | None = None, changed: bool = False, timeout_ms: float = 60_000) -> dict:
    """Wait for the full-quality frame that follows the last change, or one refining it (newer than
    ``after``, if given; with ``changed``, of a newer state than ``after``'s)."""
    if after is None and frame_info(view)["kind"] in ("idle", "progressive"):
        return frame_info(view)
    return wait_frame(page, view, after=after, kind="rest", changed=changed, timeout_ms=timeout_ms)


def wait_quiet(page, view, *, quiet_ms: float = 1500, timeout_ms: float = 120_000) -> dict:
    """Wait until ``view`` shows a frame at rest and no newer one comes for ``quiet_ms``: VTK and the
    ray-marchers refine a view at rest frame by frame, so any frame after this one comes from a change."""
    deadline, last = time.monotonic() + timeout_ms / 1e3, frame_info(view)
    while time.monotonic() < deadline:
        page.wait_for_timeout(quiet_ms)
        now = frame_info(view)
        if now["id"] == last["id"] and now["gen"] == last["gen"] and now["kind"] in ("idle", "progressive"):
            return now
        last = now
    raise AssertionError(f"the view kept receiving frames for {timeout_ms / 1e3:.0f} s")


def measure_roundtrip(page, view, n: int = 20, *, step_px: float = 12.0, timeout_ms: float = 60_000) -> list[float]:
    """Browser round trip of a drag, ``n`` times: pointer move -> the frame it caused is displayed, in ms.

    Each sample starts from rest (the full-quality frame after the previous move is shown, so the
    server's worker is idle), moves the pointer ``step_px`` with the left button down (an orbit) and
    waits for the next frame to finish loading in the ``<img>``. Both ends are timed in the page
    (``performance.now()``): the browser's pointer event and the image's ``load`` event, so the
    number covers event throttling, the websocket both ways, the render, the JPEG encode and decode.

    Args:
        page: a Playwright page showing the app.
        view: the view's ``<img data-rfm-view=...>`` locator.
        n: samples.
        step_px: pointer movement per sample (alternating right/left, so the drag stays in the view).

    Returns:
        ``n`` round-trip times in milliseconds.
    """
    box = view.bounding_box()
    if box is None:
        raise RuntimeError("the view is not visible")
    x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    times = []
    try:
        for k in range(n):
            before = wait_idle(page, view, timeout_ms=timeout_ms)
            page.evaluate(_ARM)
            x += step_px if k % 2 == 0 else -step_px
            page.mouse.move(x, y)
            shown = wait_frame(page, view, after=before, timeout_ms=timeout_ms)
            t0 = page.evaluate("() => window.__rfmRoundTrip.t0")
            if t0 is None:
                raise RuntimeError("the page saw no pointer move")
            times.append(shown["shownAt"] - t0)
            wait_idle(page, view, after=shown, timeout_ms=timeout_ms)
    finally:
        page.mouse.up()
    return times
