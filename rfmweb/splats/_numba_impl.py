"""Forward-only CPU rasteriser compiled with numba, for the viewer (backend ``"cpu"``).

The same maths as :mod:`rfmweb.splats._torch_impl` (and gsplat), in float32, in three passes:

1. ``_project`` (parallel over Gaussians): 2D mean, conic, opacity-aware radius and a record
   ``(mean, conic, opacity, radius, colour)`` per Gaussian;
2. a depth sort of packed ``depth bits << 32 | index`` keys (numpy's vectorised sort; ties by
   index, like the torch twin's stable sort), one parallel gather of the records in that order
   (``_gather``), then a stable counting sort into 16x16 tiles (``_bin_tiles``, parallel over
   bands of tile rows) that copies each record into every tile it touches: each tile's data is
   contiguous, so compositing streams through memory instead of waiting on it;
3. ``_composite`` (parallel over tiles): front to back; a Gaussian visits only the pixels of its
   box (no pixel outside it can reach alpha >= 1/255, see :mod:`._torch_impl`), cheap-rejects
   those whose quadratic form exceeds ``ln(255 o)`` before the exp, and a tile stops once all its
   pixels are saturated (T <= 1e-4).

Why numba rather than a C++ extension (``torch.utils.cpp_extension`` / pybind11):

- it installs from wheels (numba + llvmlite) on every platform we target: no compiler, no
  build step in CI, no ABI tie to the installed torch version;
- the kernel stays Python source beside its torch twin, so the two can be read and diffed
  line by line, yet LLVM compiles it to native float32 code and ``prange`` spreads the work
  over the cores (OpenMP or TBB threading layer, else numba's own workqueue);
- a C++ extension would gain little over the same LLVM-compiled loops, and its OpenMP pool
  would compete with torch's own.

The cost is a one-off JIT compile (a few seconds; cached on disk by ``cache=True``) and a
~40 MB dependency. numba is optional: without it the ``"cpu"`` backend is unavailable and
``"auto"`` falls back to the torch twin.
"""

from __future__ import annotations

import math

from .. import numba_cache  # noqa: F401  (before numba: where it keeps the compiled kernels)
import numba as nb
import numpy as np

from ._torch_impl import ALPHA_THRESHOLD, EPS2D, EXTEND, FAR_PLANE, MAX_ALPHA, NEAR_PLANE, T_THRESHOLD, TILE

_F = np.float32
_THR = _F(ALPHA_THRESHOLD)
_MAXA = _F(MAX_ALPHA)
_TTHR = _F(T_THRESHOLD)
_EXT = _F(EXTEND)
_HALF = _F(0.5)
_ONE = _F(1.0)
_ZERO = _F(0.0)
_TWO = _F(2.0)
_MARGIN = _F(0.3)

_LOW32 = np.uint64(0xFFFFFFFF)
_CULLED = np.uint64(0xFFFFFFFFFFFFFFFF)
_JIT = dict(cache=True, error_model="numpy", nogil=True)


@nb.njit(parallel=True, **_JIT)
def _project(means, covars, opac, colors, viewmat, K, width, height, eps2d, near, far,  # noqa: N803
             rec, keys, depths):
    """Project N Gaussians (``means [N, 3]``, ``covars [N, 3, 3]``, ``opac [N]``, ``colors [N, D]``).

    Writes ``rec [N, 8 + D]`` = (mean_x, mean_y, conic a, b, c, opacity, radius_x, radius_y, colour...),
    ``depths [N]`` (camera z, scratch) and ``keys [N]`` = ``depth bits << 32 | i`` for visible
    Gaussians, ``2^64 - 1`` for culled ones: visible depths are > 0, so their float32 bits sort like
    the numbers, and sorted keys give front-to-back order with ties by index.
    """
    n = means.shape[0]
    d = colors.shape[1]
    depth_bits = depths.view(np.uint32)
    r = viewmat[:3, :3]
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    w, h = _F(width), _F(height)
    tan_fovx, tan_fovy = _HALF * w / fx, _HALF * h / fy
    lim_x_pos, lim_x_neg = (w - cx) / fx + _MARGIN * tan_fovx, cx / fx + _MARGIN * tan_fovx
    lim_y_pos, lim_y_neg = (h - cy) / fy + _MARGIN * tan_fovy, cy / fy + _MARGIN * tan_fovy
    for i in nb.prange(n):
        keys[i] = _CULLED
        mx, my, mz = means[i, 0], means[i, 1], means[i, 2]
        x = r[0, 0] * mx + r[0, 1] * my + r[0, 2] * mz + viewmat[0, 3]
        y = r[1, 0] * mx + r[1, 1] * my + r[1, 2] * mz + viewmat[1, 3]
        z = r[2, 0] * mx + r[2, 1] * my + r[2, 2] * mz + viewmat[2, 3]
        if not (z > near and z < far):
            continue
        # covariance in camera space: Cc = R C R^T, as (R C) R^T (the torch twin's association)
        c00, c01, c02 = covars[i, 0, 0], covars[i, 0, 1], covars[i, 0, 2]
        c10, c11, c12 = covars[i, 1, 0], covars[i, 1, 1], covars[i, 1, 2]
        c20, c21, c22 = covars[i, 2, 0], covars[i, 2, 1], covars[i, 2, 2]
        a00 = r[0, 0] * c00 + r[0, 1] * c10 + r[0, 2] * c20
        a01 = r[0, 0] * c01 + r[0, 1] * c11 + r[0, 2] * c21
        a02 = r[0, 0] * c02 + r[0, 1] * c12 + r[0, 2] * c22
        a10 = r[1, 0] * c00 + r[1, 1] * c10 + r[1, 2] * c20
        a11 = r[1, 0] * c01 + r[1, 1] * c11 + r[1, 2] * c21
        a12 = r[1, 0] * c02 + r[1, 1] * c12 + r[1, 2] * c22
        a20 = r[2, 0] * c00 + r[2, 1] * c10 + r[2, 2] * c20
        a21 = r[2, 0] * c01 + r[2, 1] * c11 + r[2, 2] * c21
        a22 = r[2, 0] * c02 + r[2, 1] * c12 + r[2, 2] * c22
        cc00 = a00 * r[0, 0] + a01 * r[0, 1] + a02 * r[0, 2]
        cc01 = a00 * r[1, 0] + a01 * r[1, 1] + a02 * r[1, 2]
        cc02 = a00 * r[2, 0] + a01 * r[2, 1] + a02 * r[2, 2]
        cc10 = a10 * r[0, 0] + a11 * r[0, 1] + a12 * r[0, 2]
        cc11 = a10 * r[1, 0] + a11 * r[1, 1] + a12 * r[1, 2]
        cc12 = a10 * r[2, 0] + a11 * r[2, 1] + a12 * r[2, 2]
        cc20 = a20 * r[0, 0] + a21 * r[0, 1] + a22 * r[0, 2]
        cc21 = a20 * r[1, 0] + a21 * r[1, 1] + a22 * r[1, 2]
        cc22 = a20 * r[2, 0] + a21 * r[2, 1] + a22 * r[2, 2]
        rz = _ONE / z
        tx = z * min(lim_x_pos, max(-lim_x_neg, x * rz))
        ty = z * min(lim_y_pos, max(-lim_y_neg, y * rz))
        j00, j02 = fx * rz, -fx * tx * rz * rz
        j11, j12 = fy * rz, -fy * ty * rz * rz
        # cov2d = J Cc J^T with J = [[j00, 0, j02], [0, j11, j12]]
        u0 = j00 * cc00 + j02 * cc20
        u1 = j00 * cc01 + j02 * cc21
        u2 = j00 * cc02 + j02 * cc22
        v0 = j11 * cc10 + j12 * cc20
        v1 = j11 * cc11 + j12 * cc21
        v2 = j11 * cc12 + j12 * cc22
        ca = u0 * j00 + u2 * j02 + eps2d
        cb = _HALF * ((u1 * j11 + u2 * j12) + (v0 * j00 + v2 * j02))
        cc_ = v1 * j11 + v2 * j12 + eps2d
        det = ca * cc_ - cb * cb
        if not det > _ZERO:
            continue
        o = opac[i]
        if not o >= _THR:
            continue
        extend = min(_EXT, math.sqrt(_TWO * math.log(o / _THR)))
        rad_x = np.ceil(extend * math.sqrt(ca))
        rad_y = np.ceil(extend * math.sqrt(cc_))
        if rad_x <= _ZERO and rad_y <= _ZERO:
            continue
        m2x = fx * x * rz + cx
        m2y = fy * y * rz + cy
        if not (m2x + rad_x > _ZERO and m2x - rad_x < w and m2y + rad_y > _ZERO and m2y - rad_y < h):
            continue
        rec[i, 0] = m2x
        rec[i, 1] = m2y
        rec[i, 2] = cc_ / det
        rec[i, 3] = -cb / det
        rec[i, 4] = ca / det
        rec[i, 5] = o
        rec[i, 6] = rad_x
        rec[i, 7] = rad_y
        for c in range(d):
            rec[i, 8 + c] = colors[i, c]
        depths[i] = z
        keys[i] = (np.uint64(depth_bits[i]) << np.uint64(32)) | np.uint64(i)


@nb.njit(parallel=True, **_JIT)
def _gather(keys, n_visible, rec, tiles_x, tiles_y):
    """Records of the visible Gaussians in depth order (``keys`` sorted) and their tile boxes
    ``[x0, x1) x [y0, y1)``: the one pass that reads the records in random order."""
    srec = np.empty((n_visible, rec.shape[1]), dtype=_F)
    boxes = np.empty((n_visible, 4), dtype=np.int64)
    tile = _F(TILE)
    for k in nb.prange(n_visible):
        g = np.int64(keys[k] & _LOW32)
        for j in range(rec.shape[1]):
            srec[k, j] = rec[g, j]
        mx, my, rx, ry = srec[k, 0], srec[k, 1], srec[k, 6], srec[k, 7]
        boxes[k, 0] = min(max(np.int64(np.floor((mx - rx) / tile)), 0), tiles_x)
        boxes[k, 1] = min(max(np.int64(np.ceil((mx + rx) / tile)), 0), tiles_x)
        boxes[k, 2] = min(max(np.int64(np.floor((my - ry) / tile)), 0), tiles_y)
        boxes[k, 3] = min(max(np.int64(np.ceil((my + ry) / tile)), 0), tiles_y)
    return srec, boxes


@nb.njit(parallel=True, **_JIT)
def _bin_tiles(srec, boxes, tiles_x, tiles_y, n_bands):
    """Counting sort of depth-sorted records into tiles -> ``(offsets [T + 1], trec [M, 8 + D])``.

    Tile ``t`` owns rows ``offsets[t]:offsets[t + 1]`` of ``trec``: copies of the records of the
    Gaussians touching it, front to back (the sort is stable). Contiguous per-tile data lets
    compositing stream through memory. Bands of tile rows own disjoint tiles, so they count and
    fill in parallel without races.
    """
    n, width = srec.shape
    n_tiles = tiles_x * tiles_y
    rows = (tiles_y + n_bands - 1) // n_bands
    counts = np.zeros(n_tiles, dtype=np.int64)
    for b in nb.prange(n_bands):
        r0, r1 = b * rows, min(tiles_y, (b + 1) * rows)
        for g in range(n):
            for ty in range(max(boxes[g, 2], r0), min(boxes[g, 3], r1)):
                for tx in range(boxes[g, 0], boxes[g, 1]):
                    counts[ty * tiles_x + tx] += 1
    offsets = np.zeros(n_tiles + 1, dtype=np.int64)
    for t in range(n_tiles):
        offsets[t + 1] = offsets[t] + counts[t]
    trec = np.empty((offsets[-1], width), dtype=_F)
    for b in nb.prange(n_bands):
        r0, r1 = b * rows, min(tiles_y, (b + 1) * rows)
        fill = offsets[:-1].copy()
        for g in range(n):
            for ty in range(max(boxes[g, 2], r0), min(boxes[g, 3], r1)):
                for tx in range(boxes[g, 0], boxes[g, 1]):
                    t = ty * tiles_x + tx
                    k = fill[t]
                    for j in range(width):
                        trec[k, j] = srec[g, j]
                    fill[t] = k + 1
    return offsets, trec


@nb.njit(parallel=True, **_JIT)
def _composite(rec, offsets, width, height, tiles_x, bg, out_rgb, out_alpha):
    """Front-to-back compositing, one tile per task, from :func:`_bin_tiles`'s per-tile records
    ``rec [M, 8 + D]``; writes ``out_rgb [H, W, D]``, ``out_alpha [H, W]``.

    A Gaussian visits the pixels of its box whose centres lie within ``radius + 0.01`` px of its
    mean; the quadratic form is tested against ``ln(255 o)`` (plus a hair) before the exp, which
    only skips pixels whose alpha is certainly below 1/255.
    """
    n_tiles = offsets.shape[0] - 1
    d = rec.shape[1] - 8
    slack = _F(0.01)
    for t in nb.prange(n_tiles):
        x0, y0 = (t % tiles_x) * TILE, (t // tiles_x) * TILE
        xe, ye = min(x0 + TILE, width), min(y0 + TILE, height)
        n_pix = (xe - x0) * (ye - y0)
        trans = np.ones(TILE * TILE, dtype=_F)
        acc = np.zeros((TILE * TILE, d), dtype=_F)
        done = np.zeros(TILE * TILE, dtype=np.bool_)
        n_done = 0
        for k in range(offsets[t], offsets[t + 1]):
            mx, my, ca, cb, cc, o = rec[k, 0], rec[k, 1], rec[k, 2], rec[k, 3], rec[k, 4], rec[k, 5]
            reject = math.log(o / _THR) * _F(1.0001) + _F(1e-4)  # q/2 above this: alpha < 1/255
            rx, ry = rec[k, 6] + slack, rec[k, 7] + slack
            px0 = max(x0, np.int64(np.ceil(mx - rx - _HALF)))
            px1 = min(xe, np.int64(np.floor(mx + rx - _HALF)) + 1)
            py0 = max(y0, np.int64(np.ceil(my - ry - _HALF)))
            py1 = min(ye, np.int64(np.floor(my + ry - _HALF)) + 1)
            for py in range(py0, py1):
                dy = my - (_F(py) + _HALF)
                qy = cc * (dy * dy)
                row = (py - y0) * TILE - x0
                for px in range(px0, px1):
                    dx = mx - (_F(px) + _HALF)
                    sigma = _HALF * (ca * (dx * dx) + qy) + cb * dx * dy
                    if sigma > reject or sigma < _ZERO:
                        continue
                    li = row + px
                    if done[li]:
                        continue
                    alpha = min(_MAXA, o * math.exp(-sigma))
                    if alpha < _THR:
                        continue
                    t_next = trans[li] * (_ONE - alpha)
                    if t_next <= _TTHR:
                        done[li] = True
                        n_done += 1
                        continue
                    vis = alpha * trans[li]
                    for c in range(d):
                        acc[li, c] += rec[k, 8 + c] * vis
                    trans[li] = t_next
            if n_done == n_pix:
                break
        for py in range(y0, ye):
            for px in range(x0, xe):
                li = (py - y0) * TILE + (px - x0)
                for c in range(d):
                    out_rgb[py, px, c] = acc[li, c] + trans[li] * bg[c]
                out_alpha[py, px] = _ONE - trans[li]


def rasterize_numba(means: np.ndarray,  # [V, N, 3]
                    covars: np.ndarray,  # [V, N, 3, 3]
                    opacities: np.ndarray,  # [V, N]
                    colors: np.ndarray,  # [V, N, D]
                    viewmats: np.ndarray,  # [V, 4, 4]
                    Ks: np.ndarray,  # [V, 3, 3]  # noqa: N803
                    width: int, height: int,
                    backgrounds: np.ndarray | None = None,  # [V, D]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Forward rasterisation in float32: ``(rgb [V, H, W, D], alpha [V, H, W, 1])`` numpy arrays."""
    f = np.float32
    v, n = opacities.shape
    d = colors.shape[-1]
    tiles_x, tiles_y = -(-width // TILE), -(-height // TILE)
    rgb = np.empty((v, height, width, d), dtype=f)
    alpha = np.empty((v, height, width, 1), dtype=f)
    bgs = np.zeros((v, d), dtype=f) if backgrounds is None else np.ascontiguousarray(backgrounds, dtype=f)
    n_bands = max(1, min(tiles_y, nb.get_num_threads()))
    for i in range(v):
        rec = np.empty((n, 8 + d), dtype=f)
        keys = np.empty(n, dtype=np.uint64)
        depths = np.empty(n, dtype=f)
        _project(np.ascontiguousarray(means[i], dtype=f), np.ascontiguousarray(covars[i], dtype=f),
                 np.ascontiguousarray(opacities[i], dtype=f), np.ascontiguousarray(colors[i], dtype=f),
                 np.ascontiguousarray(viewmats[i], dtype=f), np.ascontiguousarray(Ks[i], dtype=f),
                 width, height, f(EPS2D), f(NEAR_PLANE), f(FAR_PLANE), rec, keys, depths)
        keys.sort()  # numpy's vectorised sort: front to back, ties by index, culled last
        n_visible = int(np.searchsorted(keys, _CULLED))
        srec, boxes = _gather(keys, n_visible, rec, tiles_x, tiles_y)
        offsets, trec = _bin_tiles(srec, boxes, tiles_x, tiles_y, n_bands)
        _composite(trec, offsets, width, height, tiles_x, bgs[i], rgb[i], alpha[i, :, :, 0])
    return rgb, alpha


def warm_up() -> float:
    """Compile (or load from the disk cache) all kernels on a tiny scene; returns seconds taken."""
    import time
    t0 = time.perf_counter()
    eye = np.eye(4, dtype=np.float32)[None]
    k = np.array([[[8, 0, 4], [0, 8, 4], [0, 0, 1]]], dtype=np.float32)
    rasterize_numba(np.array([[[0, 0, 5]]], np.float32), np.eye(3, dtype=np.float32)[None, None],
                    np.full((1, 1), 0.5, np.float32), np.ones((1, 1, 3), np.float32), eye, k, 8, 8)
    return time.perf_counter() - t0
