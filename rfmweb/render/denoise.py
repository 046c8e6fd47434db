"""Denoising of progressive path-traced images: an edge-avoiding a-trous wavelet filter steered by
each pixel's own Monte Carlo variance (the spatial filter of SVGF, Schied et al. 2017; Dammertz et
al. 2010).

The tracer renders in passes; :class:`PassStats` keeps the running mean and, from the spread of the
passes, each pixel's variance of that mean. :func:`atrous` then averages each pixel with neighbours
at growing distances (1, 2, 4 px: a 5x5 B3-spline kernel per level) whose luminance lies within a
few standard deviations of its own: noise (a difference the variance explains) is smoothed, edges
(a difference it does not) are kept. As samples accumulate the variance, and so the smoothing,
shrinks towards zero: the filtered image converges to the same limit as the raw one.

Measured on the head CT (CT-Bone, 512^2, ``benchmarks/bench_cinematic.py``): at 128 spp the SSIM to
a 4x-spp render goes from 0.948 (raw) to 0.973 (filtered), see BENCHMARKS.md.

:func:`atrous` is a numba kernel; :func:`atrous_reference` is its numpy twin (the tests' oracle).
"""

from __future__ import annotations

from .. import numba_cache  # noqa: F401  (before numba: where it keeps the compiled kernels)
import numba
import numpy as np

#: Rec. 709 luminance of linear RGB.
LUMA = np.array([0.2126, 0.7152, 0.0722], np.float32)
#: Levels of the filter (steps 1, 2, 4 px) and the edge-stopping width in standard deviations.
LEVELS = 3
SIGMA = 3.0
_B3 = np.array([1 / 16, 1 / 4, 3 / 8, 1 / 4, 1 / 16], np.float32)


class PassStats:
    """Running mean and per-pixel variance of the mean over progressive passes.

    Each pass is the mean of ``spp`` samples per pixel; with per-sample variance ``s^2`` a pass's
    luminance varies by ``s^2 / spp``, so ``s^2`` is estimated from the spp-weighted spread of the
    passes and the variance of the running mean is ``s^2 / total spp``.
    """

    def __init__(self) -> None:
        self.total = None   # [H, W, 3] float64: sum of spp * pass image
        self._l1 = None     # [H, W] float64: sum of spp * luminance
        self._l2 = None     # [H, W] float64: sum of spp * luminance^2
        self.spp = 0
        self.passes = 0

    def add(self, image: np.ndarray, spp: int) -> None:
        """One pass: ``image`` ``[H, W, 3]`` linear radiance, the mean of ``spp`` samples per pixel."""
        image = np.asarray(image, dtype=np.float64)
        lum = image @ LUMA.astype(np.float64)
        if self.total is None:
            self.total, self._l1, self._l2 = np.zeros_like(image), np.zeros_like(lum), np.zeros_like(lum)
        self.total += spp * image
        self._l1 += spp * lum
        self._l2 += spp * lum * lum
        self.spp += spp
        self.passes += 1

    @property
    def mean(self) -> np.ndarray:
        """``[H, W, 3]`` float32 mean radiance of every sample so far."""
        return (self.total / self.spp).astype(np.float32)

    def variance(self) -> np.ndarray | None:
        """``[H, W]`` float32 variance of :attr:`mean`'s luminance (``None`` before two passes)."""
        if self.passes < 2:
            return None
        spread = np.maximum(self._l2 - self._l1 * self._l1 / self.spp, 0.0)
        return (spread / (self.passes - 1) / self.spp).astype(np.float32)


@numba.njit(parallel=True, cache=True, fastmath=True)
def _level(color, lum, var, step, sigma, b3, out_color, out_var):  # pragma: no cover (compiled)
    h, w = lum.shape
    for y in numba.prange(h):
        for x in range(w):
            # the centre's variance blurred 3x3 (one noisy estimate would stop edges at random)
            vc, ws = 0.0, 0.0
            for dy in range(-1, 2):
                yy = min(max(y + dy, 0), h - 1)
                for dx in range(-1, 2):
                    xx = min(max(x + dx, 0), w - 1)
                    k = b3[dy + 2] * b3[dx + 2]
                    vc += k * var[yy, xx]
                    ws += k
            denom = sigma * np.sqrt(max(vc / ws, 0.0)) + 1e-6
            lp = lum[y, x]
            r = g = b = wsum = v = 0.0
            for i in range(5):
                yy = min(max(y + (i - 2) * step, 0), h - 1)
                for j in range(5):
                    xx = min(max(x + (j - 2) * step, 0), w - 1)
                    wgt = b3[i] * b3[j] * np.exp(-abs(lp - lum[yy, xx]) / denom)
                    r += wgt * color[yy, xx, 0]
                    g += wgt * color[yy, xx, 1]
                    b += wgt * color[yy, xx, 2]
                    v += wgt * wgt * var[yy, xx]
                    wsum += wgt
            out_color[y, x, 0] = r / wsum
            out_color[y, x, 1] = g / wsum
            out_color[y, x, 2] = b / wsum
            out_var[y, x] = v / (wsum * wsum)


def atrous(color: np.ndarray, variance: np.ndarray, *, levels: int = LEVELS, sigma: float = SIGMA) -> np.ndarray:
    """Filtered ``[H, W, 3]`` float32 linear radiance of ``color`` (``[H, W, 3]``) given each pixel's
    ``variance`` of its luminance (``[H, W]``, e.g. :meth:`PassStats.variance`)."""
    c = np.ascontiguousarray(color, dtype=np.float32)
    v = np.ascontiguousarray(variance, dtype=np.float32)
    if c.ndim != 3 or c.shape[2] != 3 or v.shape != c.shape[:2]:
        raise ValueError(f"expected color [H, W, 3] and variance [H, W], got {c.shape} and {v.shape}")
    for level in range(levels):
        out_c, out_v = np.empty_like(c), np.empty_like(v)
        _level(c, c @ LUMA, v, 1 << level, np.float32(sigma), _B3, out_c, out_v)
        c, v = out_c, out_v
    return c


def _shift(a: np.ndarray, dy: int, dx: int) -> np.ndarray:
    h, w = a.shape[:2]
    return a[np.clip(np.arange(h) + dy, 0, h - 1)][:, np.clip(np.arange(w) + dx, 0, w - 1)]


def atrous_reference(color: np.ndarray, variance: np.ndarray, *, levels: int = LEVELS,
                     sigma: float = SIGMA) -> np.ndarray:
    """:func:`atrous` in plain numpy (whole-image shifts; slow, the tests' oracle)."""
    c = np.asarray(color, dtype=np.float64)
    v = np.asarray(variance, dtype=np.float64)
    b3 = _B3.astype(np.float64)
    for level in range(levels):
        step = 1 << level
        lum = c @ LUMA.astype(np.float64)
        k3 = np.outer(b3[1:4], b3[1:4])
        vc = sum(k3[dy + 1, dx + 1] * _shift(v, dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / k3.sum()
        denom = sigma * np.sqrt(np.maximum(vc, 0.0)) + 1e-6
        acc, wsum, vacc = np.zeros_like(c), np.zeros_like(lum), np.zeros_like(v)
        for i in range(5):
            for j in range(5):
                cq = _shift(c, (i - 2) * step, (j - 2) * step)
                wgt = b3[i] * b3[j] * np.exp(-np.abs(lum - cq @ LUMA.astype(np.float64)) / denom)
                acc += wgt[..., None] * cq
                vacc += wgt * wgt * _shift(v, (i - 2) * step, (j - 2) * step)
                wsum += wgt
        c, v = acc / wsum[..., None], vacc / (wsum * wsum)
    return c.astype(np.float32)
