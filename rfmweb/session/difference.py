"""The difference view of a comparison: where two views' pictures differ, with SSIM and PSNR.

:class:`DifferenceSession` is a view like any other (frame streams render it) whose picture is the
absolute difference of two sessions' frames, rendered from the same camera at the same size, as a
heat map (black: equal; red, yellow, white: more different), and whose note reads e.g.
``"SSIM 0.912 · PSNR 27.4 dB"``. It follows both sessions: any change in either renders it again.
While the camera rests it converges with them: it compares their progressive passes, so its last
figures score the pictures the two views end on, not single jittered frames.
Core code: no UI imports.
"""

from __future__ import annotations

import threading
from dataclasses import replace

import numpy as np

from ..metrics.image import MetricUnavailable, psnr, ssim
from ..render.scene import FULL, Quality
from .session import RenderSession, Snapshot

#: Heat-map stops: absolute difference (0..1 of the full range, after :data:`GAIN`) -> sRGB.
_STOPS = np.array([0.0, 0.33, 0.66, 1.0])
_COLORS = np.array([[0, 0, 0], [200, 30, 20], [255, 210, 40], [255, 255, 255]], dtype=np.float64)
#: Differences are amplified this many times before colouring (a 25% difference is white).
GAIN = 4.0


def difference_image(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(heat map [H, W, 3] uint8, SSIM, PSNR dB)`` of two ``[H, W, 3]`` uint8 images of one size.

    SSIM is NaN when an image is smaller than its 11 px window; PSNR is ``inf`` for equal images.
    """
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    diff = np.abs(a.astype(np.float32) - b.astype(np.float32)).mean(-1) / 255.0
    t = np.clip(diff * GAIN, 0.0, 1.0)
    heat = np.stack([np.interp(t, _STOPS, _COLORS[:, c]) for c in range(3)], -1)
    try:
        s = float(ssim(a, b)[0])
    except MetricUnavailable:
        s = float("nan")
    return (heat + 0.5).astype(np.uint8), s, float(psnr(a, b)[0])


class DifferenceSession(RenderSession):
    """A view showing ``|left - right|`` of two sessions (a compare layout's third pane).

    Its camera size decides the size both are rendered at (each from its own camera, resized); slice
    views compare slices. The last comparison's figures are :attr:`figures` ``(ssim, psnr)``.
    """

    draws_orientation = False      # a heat map: a marker would read as a difference

    def __init__(self, left: RenderSession, right: RenderSession, *, width: int = 512, height: int = 512) -> None:
        super().__init__(left.volume, splats=left.splats, renderer=left.renderer_name, width=width, height=height)
        self.pair = (left, right)
        self.figures: tuple[float, float] | None = None
        self._figures_lock = threading.Lock()
        # "pair", not the change's own name: camera and slice links must not copy this view's state back
        self._unsubscribe = [s.subscribe(lambda _s, _what: self._pair_changed()) for s in self.pair]

    def _pair_changed(self) -> None:
        # a cinematic still in the views: this view refines in the same passes (see FrameStream)
        self.still_renderer = next((s.still_renderer for s in self.pair if s.still_renderer), None)
        self._changed("pair")

    def _snap(self, session: RenderSession) -> Snapshot:
        snap = session.snapshot()
        return replace(snap, camera=snap.camera.in_viewport(self.camera.width, self.camera.height))

    def render(self, quality: Quality = FULL, snapshot: Snapshot | None = None, *, abort=None,
               wait: bool = True) -> np.ndarray:
        """``[H', W', 3]`` uint8 heat map of the two views' frames at ``quality`` (see the module)."""
        left, right = self.pair
        a = left.render(quality, self._snap(left), abort=abort, wait=wait)
        b = right.render(quality, self._snap(right), abort=abort, wait=wait)
        return self._compare(a, b)

    def _compare(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """The heat map of ``a`` and ``b`` (``[H, W, 3]`` uint8); keeps their figures."""
        if a.shape != b.shape:  # e.g. a slice view beside a 3-D one: nothing sensible to subtract
            b = np.zeros_like(a)
        heat, s, p = difference_image(a, b)
        with self._figures_lock:
            self.figures = (s, p)
        return heat

    def note(self, snapshot: Snapshot) -> str:
        with self._figures_lock:
            figures = self.figures
        if figures is None:
            return ""
        s, p = figures
        text = f"SSIM {s:.3f} · PSNR {'∞' if np.isinf(p) else f'{p:.1f}'} dB"
        if all(v.mode != "3d" for v in self.pair):   # a black pane and "∞" said nothing of why
            text += " · slices: the same data in both views (renderers differ in 3-D)"
        return text

    def progressive_renderer(self, snapshot: Snapshot) -> str | None:
        """``"difference"`` while either view refines at rest (its pictures converge: so do the heat map
        and its figures), else ``None``."""
        refining = any(s.progressive_renderer(self._snap(s)) is not None for s in self.pair)
        return "difference" if refining else None

    def progressive(self, snapshot: Snapshot, per_pass: int, passes: int, *, abort=None):
        """Heat maps of the two views' progressive passes, pass by pass, as the views themselves show
        them at rest (a view that does not refine keeps its full-quality frame; one that has converged,
        its last pass): an iterator of ``(heat [H', W', 3] uint8, passes so far)``."""
        def frames(session: RenderSession):
            snap = self._snap(session)
            images = session.progressive(snap, per_pass, passes, abort=abort)
            last = None
            for last, _ in images or ():
                yield last
            if last is None:
                last = session.render(FULL, snap, abort=abort)
            while True:
                yield last

        left, right = (frames(s) for s in self.pair)
        for n in range(1, passes + 1):
            yield self._compare(next(left), next(right)), n * per_pass

    def close(self) -> None:
        for u in self._unsubscribe:
            u()
        super().close()
