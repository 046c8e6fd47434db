r"""Passes over a whole volume for the compiled CPU path, each parallel over the volume's first axis:

- the shading gradient (:func:`shading_gradient`, the twin of
  :func:`~rfmweb.render.fields.shading_gradient`'s torch ops): the scalar blurred by a separable
  Gaussian with replicated edges, then central differences (one-sided at the border, as
  ``torch.gradient``) mapped to world axes; equal to the torch ops within float32 rounding;
- the per-block ranges of empty-space skipping (:func:`block_min_max`, the twin of
  :func:`~rfmweb.render.blocks.block_ranges`' max-pools, exactly);
- the interleaved ``[X, Y, Z, 3]`` layout of a vector field that the compiled marcher reads (:func:`interleave`).

What a TF drag with a hidden class (a new faded grid per frame) and opening a scan wait for: 2-4x
faster than the torch ops on 2 cores (BENCHMARKS.md, "Editing the TF").
"""

from __future__ import annotations

from .. import numba_cache  # noqa: F401  (before numba: where it keeps the compiled kernels)
import numba as nb
import numpy as np

from .blocks import BLOCK as _B

_JIT = dict(cache=True, error_model="numpy", nogil=True, fastmath=False)


@nb.njit(parallel=True, **_JIT)
def _blur_yz(vol, ky, kz, out):
    """``out[i] = vol[i]`` blurred along axes 1 and 2 by the odd kernels ``ky``, ``kz`` (edges replicated;
    the loops over the last axis run without clamping in the interior, so they vectorise)."""
    nx, ny, nz = vol.shape
    ry, rz = len(ky) // 2, len(kz) // 2
    for i in nb.prange(nx):
        row = np.empty(nz, dtype=np.float32)
        for j in range(ny):
            row[:] = np.float32(0.0)
            for a in range(-ry, ry + 1):
                src, w = min(max(j + a, 0), ny - 1), ky[a + ry]
                for k in range(nz):
                    row[k] += w * vol[i, src, k]
            for k in range(min(rz, nz)):                       # the edges, clamped
                out[i, j, k] = _tap(row, kz, k, nz)
            for k in range(max(nz - rz, rz), nz):
                out[i, j, k] = _tap(row, kz, k, nz)
            for k in range(rz, nz - rz):
                out[i, j, k] = np.float32(0.0)
            for a in range(-rz, rz + 1):
                w = kz[a + rz]
                for k in range(rz, nz - rz):
                    out[i, j, k] += w * row[k + a]


@nb.njit(inline="always", **_JIT)
def _tap(row, kern, k, n):
    """``row`` blurred by ``kern`` at ``k``, indices clamped to ``0 .. n - 1``."""
    r = len(kern) // 2
    acc = np.float32(0.0)
    for a in range(-r, r + 1):
        acc += kern[a + r] * row[min(max(k + a, 0), n - 1)]
    return acc


@nb.njit(parallel=True, **_JIT)
def _blur_x(vol, kx, out):
    """``out`` = ``vol`` blurred along axis 0 by the odd kernel ``kx`` (edges replicated)."""
    nx, ny, nz = vol.shape
    rx = len(kx) // 2
    for i in nb.prange(nx):
        for j in range(ny):
            for k in range(nz):
                out[i, j, k] = np.float32(0.0)
        for a in range(-rx, rx + 1):
            src = min(max(i + a, 0), nx - 1)
            w = kx[a + rx]
            for j in range(ny):
                for k in range(nz):
                    out[i, j, k] += w * vol[src, j, k]


@nb.njit(parallel=True, **_JIT)
def _world_gradient(b, inv_t, out):
    """``out [3, X, Y, Z]``: the voxel-axis central differences of ``b`` (one-sided at the border, as
    torch.gradient) mapped by ``inv_t [3, 3]``."""
    nx, ny, nz = b.shape
    for i in nb.prange(nx):
        i0, i1 = max(i - 1, 0), min(i + 1, nx - 1)
        hx = np.float32(1.0) if i == 0 or i == nx - 1 else np.float32(0.5)
        gz = np.empty(nz, dtype=np.float32)
        for j in range(ny):
            j0, j1 = max(j - 1, 0), min(j + 1, ny - 1)
            hy = np.float32(1.0) if j == 0 or j == ny - 1 else np.float32(0.5)
            for k in range(1, nz - 1):
                gz[k] = np.float32(0.5) * (b[i, j, k + 1] - b[i, j, k - 1])
            if nz > 1:
                gz[0], gz[nz - 1] = b[i, j, 1] - b[i, j, 0], b[i, j, nz - 1] - b[i, j, nz - 2]
            else:
                gz[0] = np.float32(0.0)
            for k in range(nz):
                gx = hx * (b[i1, j, k] - b[i0, j, k])
                gy = hy * (b[i, j1, k] - b[i, j0, k])
                out[0, i, j, k] = inv_t[0, 0] * gx + inv_t[0, 1] * gy + inv_t[0, 2] * gz[k]
                out[1, i, j, k] = inv_t[1, 0] * gx + inv_t[1, 1] * gy + inv_t[1, 2] * gz[k]
                out[2, i, j, k] = inv_t[2, 0] * gx + inv_t[2, 1] * gy + inv_t[2, 2] * gz[k]


def shading_gradient(scalar: np.ndarray, kernels: tuple[np.ndarray, np.ndarray, np.ndarray],
                     inv_t: np.ndarray, out: np.ndarray) -> None:
    """Fill ``out [3, X, Y, Z]`` float32 with the world gradient of ``scalar [X, Y, Z]`` float32 blurred
    by the odd per-axis ``kernels`` (``[1]``: no blur on that axis); ``inv_t [3, 3]`` maps voxel-axis
    differences to world mm (the inverse-transpose of the affine's linear part)."""
    tmp = np.empty_like(scalar)
    _blur_yz(scalar, kernels[1], kernels[2], tmp)
    blurred = np.empty_like(scalar)
    _blur_x(tmp, kernels[0], blurred)
    _world_gradient(blurred, inv_t, out)


@nb.njit(parallel=True, **_JIT)
def block_min_max(scalar, reach, lo, hi):
    """``lo``, ``hi [BX, BY, BZ]`` = min and max of ``scalar [X, Y, Z]`` over each block's voxels
    ``max(b B - reach, 0) .. min(b B + B + reach, n - 1)`` per axis (``B``: :data:`.blocks.BLOCK`)."""
    nx, ny, nz = scalar.shape
    nbx, nby, nbz = lo.shape
    for flat in nb.prange(nbx * nby):
        bx, by = flat // nby, flat % nby
        for bz in range(nbz):
            mn, mx = np.inf, -np.inf
            for i in range(max(bx * _B - reach, 0), min(bx * _B + _B + reach, nx - 1) + 1):
                for j in range(max(by * _B - reach, 0), min(by * _B + _B + reach, ny - 1) + 1):
                    for k in range(max(bz * _B - reach, 0), min(bz * _B + _B + reach, nz - 1) + 1):
                        v = scalar[i, j, k]
                        mn = min(mn, v)
                        mx = max(mx, v)
            lo[bx, by, bz], hi[bx, by, bz] = mn, mx


@nb.njit(parallel=True, **_JIT)
def interleave(vectors, out):
    """``out [X, Y, Z, 3]`` = ``vectors [3, X, Y, Z]`` with the components last."""
    _, nx, ny, nz = vectors.shape
    for i in nb.prange(nx):
        for j in range(ny):
            for k in range(nz):
                for c in range(3):
                    out[i, j, k, c] = vectors[c, i, j, k]
