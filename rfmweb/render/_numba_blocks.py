r"""Empty-space skipping for the compiled ray-marcher (:mod:`._numba_march`): the volume cut into
blocks of :data:`BLOCK`\ :sup:`3` cells, each with the range of intensities its cells interpolate
(:func:`block_ranges`) and whether it holds a visible solid label (:func:`block_flags`), and where a
ray leaves a block (:func:`_exit`). A ray crosses a block whose range the TF leaves transparent in
one jump.
"""

from __future__ import annotations

import numba as nb
import numpy as np

#: cells per side of the blocks whose intensity range lets whole stretches of a ray be skipped
BLOCK = 8

_JIT = dict(cache=True, error_model="numpy", nogil=True, fastmath=False)


@nb.njit(**_JIT)
def _blocks(n):
    """Blocks along an axis of ``n`` voxels (``n - 1`` cells)."""
    return (n - 2) // BLOCK + 1


@nb.njit(**_JIT)
def _span(b, n):
    """First and last voxel (inclusive) block ``b`` reads along an axis of ``n`` voxels: its cells'
    voxels widened by one on each side."""
    return max(b * BLOCK - 1, 0), min(b * BLOCK + BLOCK + 1, n - 1)


@nb.njit(parallel=True, **_JIT)
def block_ranges(scalar):
    """``(min, max)`` of ``scalar [X, Y, Z]`` (float32) over each block of ``BLOCK ** 3`` cells ->
    two ``[BX, BY, BZ]`` float32 arrays. A block covers the voxels its cells interpolate, widened by one
    voxel on every side, so a point within a voxel of the block (the front end of a segment whose
    previous sample lay in it) reads only voxels it covers."""
    nx, ny, nz = scalar.shape
    bx, by, bz = _blocks(nx), _blocks(ny), _blocks(nz)
    lo = np.empty((bx, by, bz), dtype=np.float32)
    hi = np.empty((bx, by, bz), dtype=np.float32)
    for bi in nb.prange(bx):
        i0, i1 = _span(bi, nx)
        for bj in range(by):
            j0, j1 = _span(bj, ny)
            for bk in range(bz):
                k0, k1 = _span(bk, nz)
                mn, mx = scalar[i0, j0, k0], scalar[i0, j0, k0]
                for i in range(i0, i1 + 1):
                    for j in range(j0, j1 + 1):
                        for k in range(k0, k1 + 1):
                            mn = min(mn, scalar[i, j, k])
                            mx = max(mx, scalar[i, j, k])
                lo[bi, bj, bk] = mn
                hi[bi, bj, bk] = mx
    return lo, hi


@nb.njit(parallel=True, **_JIT)
def block_flags(labels, shape, flagged):
    """``[BX, BY, BZ]`` bool: blocks (as :func:`block_ranges`) holding a voxel whose label (flat
    ``labels [X * Y * Z]`` integers of a ``shape`` grid) is ``flagged [L]`` (visible solid classes)."""
    nx, ny, nz = shape
    bx, by, bz = _blocks(nx), _blocks(ny), _blocks(nz)
    out = np.zeros((bx, by, bz), dtype=np.bool_)
    for bi in nb.prange(bx):
        i0, i1 = _span(bi, nx)
        for bj in range(by):
            j0, j1 = _span(bj, ny)
            for bk in range(bz):
                k0, k1 = _span(bk, nz)
                for i in range(i0, i1 + 1):
                    for j in range(j0, j1 + 1):
                        for k in range(k0, k1 + 1):
                            if flagged[labels[(i * ny + j) * nz + k]]:
                                out[bi, bj, bk] = True
    return out


@nb.njit(inline="always", **_JIT)
def _exit(w, e, inv_e, b, last):
    """Ray parameter (mm) where the voxel coordinate ``w + t e`` (``inv_e = 1 / e``) leaves block ``b`` of
    an axis whose last block is ``last`` (``inf`` if never: the first and last blocks extend beyond
    the grid, as clamping does)."""
    if e > 0.0 and b < last:
        return ((b + 1) * BLOCK - w) * inv_e
    if e < 0.0 and b > 0:
        return (b * BLOCK - w) * inv_e
    return np.inf
