r"""Volume reads of the compiled CPU ray-marcher (:mod:`._numba_march`), as the torch twin makes them:
world points to grid_sample's border-clamped voxel coordinates (:func:`_to_grid`), trilinear reads
with grid_sample's weights and summation order, bit for bit (:func:`_sample`, :func:`_sample3`),
the cubic B-spline of ``GridSampler.cubic`` (:func:`_cubic`, to float32 rounding), nearest labels
(:func:`_label_at`) and the trilinear blend of the 8 surrounding voxels' class styles
(:func:`_classes_at`).
"""

from __future__ import annotations

from .. import numba_cache  # noqa: F401  (before numba: where it keeps the compiled kernels)
import numba as nb
import numpy as np

# for every kernel of the compiled marcher (:mod:`._numba_march` too): error_model="numpy", no
# division-by-zero checks (IEEE results); hot helpers are inlined at numba IR level ("always"): LLVM
# would keep calls with a dozen array arguments in the sample loop
_JIT = dict(cache=True, error_model="numpy", nogil=True, fastmath=False)
_F = np.float32
_F0, _F1, _F2 = _F(0.0), _F(1.0), _F(2.0)


@nb.njit(inline="always", **_JIT)
def _to_grid(px, py, pz, lin, off, nx, ny, nz):
    """World point (float32 mm) -> border-clamped continuous voxel position ``(i, j, k)`` float32, bit for
    bit as ``GridSampler.normalized`` then ``grid_sample(align_corners=True, padding_mode="border")``:
    ``lin [3, 3]``, ``off [3]`` are the sampler's ``_norm_linear``, ``_norm_offset`` (output columns are
    grid_sample's ``(x, y, z) = (k, j, i)``)."""
    gx = ((px * lin[0, 0] + py * lin[1, 0]) + pz * lin[2, 0]) + off[0]
    gy = ((px * lin[0, 1] + py * lin[1, 1]) + pz * lin[2, 1]) + off[1]
    gz = ((px * lin[0, 2] + py * lin[1, 2]) + pz * lin[2, 2]) + off[2]
    k = min(_F(nz - 1), max((gx + _F1) / _F2 * _F(nz - 1), _F0))
    j = min(_F(ny - 1), max((gy + _F1) / _F2 * _F(ny - 1), _F0))
    i = min(_F(nx - 1), max((gz + _F1) / _F2 * _F(nx - 1), _F0))
    return i, j, k


@nb.njit(inline="always", **_JIT)
def _cell(x, n):
    """Cell of a clamped voxel coordinate on an axis of ``n >= 2`` voxels -> ``(lower index, weight of
    the lower, weight of the upper)`` in float32, grid_sample's weights (the lower index is kept below
    ``n - 1``: at ``x = n - 1`` the weights are then exactly 0 and 1, the same sum)."""
    i = min(int(x), n - 2)                  # x >= 0: truncation is floor (and no libm call)
    return i, _F(i + 1) - x, x - _F(i)


@nb.njit(inline="always", **_JIT)
def _trilinear(vol, i, j, k, wi0, wi1, wj0, wj1, wk0, wk1):
    """float32 trilinear value of ``vol [X, Y, Z]`` in the cell ``(i, j, k)``: grid_sample's corner
    weights and summation order, so the torch marcher's values are reproduced bit for bit."""
    acc = vol[i, j, k] * ((wk0 * wj0) * wi0)
    acc += vol[i, j, k + 1] * ((wk1 * wj0) * wi0)
    acc += vol[i, j + 1, k] * ((wk0 * wj1) * wi0)
    acc += vol[i, j + 1, k + 1] * ((wk1 * wj1) * wi0)
    acc += vol[i + 1, j, k] * ((wk0 * wj0) * wi1)
    acc += vol[i + 1, j, k + 1] * ((wk1 * wj0) * wi1)
    acc += vol[i + 1, j + 1, k] * ((wk0 * wj1) * wi1)
    acc += vol[i + 1, j + 1, k + 1] * ((wk1 * wj1) * wi1)
    return acc


@nb.njit(inline="always", **_JIT)
def _sample(vol, vi, vj, vk):
    """Trilinear ``vol [X, Y, Z]`` at a clamped voxel position (from :func:`_to_grid`)."""
    i, wi0, wi1 = _cell(vi, vol.shape[0])
    j, wj0, wj1 = _cell(vj, vol.shape[1])
    k, wk0, wk1 = _cell(vk, vol.shape[2])
    return _trilinear(vol, i, j, k, wi0, wi1, wj0, wj1, wk0, wk1)


@nb.njit(inline="always", **_JIT)
def _spline_axis(v, n):
    """The cubic B-spline along an axis of ``n >= 2`` voxels at a clamped voxel coordinate ``v``
    (float32) -> ``(indices, weights)``: the 4 coefficients it weighs, clamped to the axis (as
    ``GridSampler.cubic``'s reads are), and their float32 weights."""
    i = min(int(v), n - 1)                  # v >= 0: truncation is floor
    f = v - _F(i)
    e = _F1 - f
    w0 = e * e * e / _F(6.0)
    w1 = (_F(4.0) - _F(6.0) * f * f + _F(3.0) * (f * f * f)) / _F(6.0)
    w3 = f * f * f / _F(6.0)
    return (max(i - 1, 0), i, min(i + 1, n - 1), min(i + 2, n - 1)), (w0, w1, _F1 - w0 - w1 - w3, w3)


@nb.njit(inline="always", **_JIT)
def _cubic(coef, vi, vj, vk):
    """Cubic B-spline value of the coefficients ``coef [X, Y, Z]`` at a clamped voxel position: the
    value ``GridSampler.cubic`` reads in 8 trilinear reads, summed here over its 64 coefficients
    directly (3x faster on the CPU; equal within float32 rounding, ~1e-6 of the values)."""
    ii, wi = _spline_axis(vi, coef.shape[0])
    jj, wj = _spline_axis(vj, coef.shape[1])
    kk, wk = _spline_axis(vk, coef.shape[2])
    acc = _F0
    for a in range(4):
        for b in range(4):
            row = coef[ii[a], jj[b]]
            acc += (wi[a] * wj[b]) * (((row[kk[0]] * wk[0] + row[kk[1]] * wk[1]) + row[kk[2]] * wk[2])
                                      + row[kk[3]] * wk[3])
    return acc


@nb.njit(inline="always", **_JIT)
def _scalar(vol, cubic, vi, vj, vk):
    """The intensity at a clamped voxel position: trilinear in ``vol``, or (``cubic``) the B-spline of
    the coefficients ``vol``."""
    if cubic:
        return _cubic(vol, vi, vj, vk)
    return _sample(vol, vi, vj, vk)


@nb.njit(inline="always", **_JIT)
def _sample3(vec, vi, vj, vk):
    """Trilinear ``vec [X, Y, Z, 3]`` (interleaved: a corner's three components share a cache line) at a
    clamped voxel position -> ``(x, y, z)`` float64, each component with :func:`_trilinear`'s weights
    and summation order."""
    i, wi0, wi1 = _cell(vi, vec.shape[0])
    j, wj0, wj1 = _cell(vj, vec.shape[1])
    k, wk0, wk1 = _cell(vk, vec.shape[2])
    ax, ay, az = _F0, _F0, _F0
    for c in range(8):
        di, dj, dk = c >> 2, (c >> 1) & 1, c & 1
        w = ((wk1 if dk else wk0) * (wj1 if dj else wj0)) * (wi1 if di else wi0)
        ax += vec[i + di, j + dj, k + dk, 0] * w
        ay += vec[i + di, j + dj, k + dk, 1] * w
        az += vec[i + di, j + dj, k + dk, 2] * w
    return np.float64(ax), np.float64(ay), np.float64(az)


@nb.njit(inline="always", **_JIT)
def _label_at(px, py, pz, vox_lin, vox_off, labels, nx, ny, nz):
    """Label of the voxel nearest the float32 world point ``(px, py, pz)`` (``GridSampler.nearest_index``);
    ``labels [X * Y * Z]`` flat, ``vox_lin``, ``vox_off`` the world -> voxel map."""
    li = ((px * vox_lin[0, 0] + py * vox_lin[1, 0]) + pz * vox_lin[2, 0]) + vox_off[0]
    lj = ((px * vox_lin[0, 1] + py * vox_lin[1, 1]) + pz * vox_lin[2, 1]) + vox_off[1]
    lk = ((px * vox_lin[0, 2] + py * vox_lin[1, 2]) + pz * vox_lin[2, 2]) + vox_off[2]
    li = min(max(np.rint(li), _F0), _F(nx - 1))
    lj = min(max(np.rint(lj), _F0), _F(ny - 1))
    lk = min(max(np.rint(lk), _F0), _F(nz - 1))
    return labels[(int(li) * ny + int(lj)) * nz + int(lk)]


@nb.njit(inline="always", **_JIT)
def _classes_at(vi, vj, vk, labels, class_rgba, class_use, nx, ny, nz):
    """Class styles of the 8 voxels around a clamped voxel position blended with the trilinear weights
    (``ScalarField._blend_classes``) -> float32 ``(a, u, cr, cg, cb)``: class opacity, then the
    class-colour weight and the class colour premultiplied by it, both weighted by the voxels'
    opacities (a hidden class adds no colour); ``labels [X * Y * Z]`` flat."""
    i, wi0, wi1 = _cell(vi, nx)
    j, wj0, wj1 = _cell(vj, ny)
    k, wk0, wk1 = _cell(vk, nz)
    a, u, cr, cg, cb = _F0, _F0, _F0, _F0, _F0
    for c in range(8):
        di, dj, dk = c >> 2, (c >> 1) & 1, c & 1
        w = ((wk1 if dk else wk0) * (wj1 if dj else wj0)) * (wi1 if di else wi0)
        lab = labels[((i + di) * ny + j + dj) * nz + k + dk]
        wa = w * class_rgba[lab, 3]
        wu = wa * class_use[lab]
        a += wa
        u += wu
        cr += wu * class_rgba[lab, 0]
        cg += wu * class_rgba[lab, 1]
        cb += wu * class_rgba[lab, 2]
    if a > _F0:
        return a, u / a, cr / a, cg / a, cb / a
    return a, _F0, _F0, _F0, _F0
