"""Volume reads of the fused Triton ray-marcher (:mod:`._triton_march`), as the torch twin makes them:
grid_sample's border-clamped coordinates (:func:`_grid_axis`), corner weights and summation order
(:func:`_trilinear`), ``GridSampler.cubic``'s B-spline as 8 of those reads (:func:`_scalar`), nearest
labels (:func:`_rint`: round half to even, which the interpreter's libdevice lacks) and the
trilinear blend of the 8 surrounding voxels' class styles (:func:`_classes`).
"""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def _rint(x):
    """Round half to even (``torch.round``), for ``|x| < 2**23``."""
    f = tl.floor(x)
    d = x - f
    odd = (f - 2.0 * tl.floor(0.5 * f)) != 0.0
    return tl.where((d > 0.5) | ((d == 0.5) & odd), f + 1.0, f)


@triton.jit
def _grid_axis(px, py, pz, cx, cy, cz, c0, n):
    """Continuous voxel index along an axis of ``n`` voxels of the world points ``(px, py, pz)`` mm, as
    ``GridSampler.normalized`` then grid_sample (``align_corners=True``, border padding) compute it:
    ``g = p . c + c0`` in [-1, 1], ``(g + 1) / 2 (n - 1)`` clamped to ``[0, n - 1]``."""
    g = ((px * cx + py * cy) + pz * cz) + c0
    top = n - 1.0
    return tl.minimum(tl.maximum((g + 1.0) * 0.5 * top, 0.0), top)


@triton.jit
def _cell(vi, vj, vk, nx, ny, nz):
    """The cell of clamped voxel positions in a ``[nx, ny, nz]`` volume: the flat offsets of its four
    ``(i, j)`` rows, its ``k0``, ``k1`` and the weights of the lower and upper corners per axis. At the
    last voxel the upper corner is clamped onto it (its weight is 0, where grid_sample drops it)."""
    fi = tl.floor(vi)
    fj = tl.floor(vj)
    fk = tl.floor(vk)
    i0 = fi.to(tl.int32)
    j0 = fj.to(tl.int32)
    k0 = fk.to(tl.int32)
    i1 = tl.minimum(i0 + 1, nx - 1)
    j1 = tl.minimum(j0 + 1, ny - 1)
    k1 = tl.minimum(k0 + 1, nz - 1)
    wi0, wi1 = (fi + 1.0) - vi, vi - fi
    wj0, wj1 = (fj + 1.0) - vj, vj - fj
    wk0, wk1 = (fk + 1.0) - vk, vk - fk
    r00 = (i0 * ny + j0) * nz
    r01 = (i0 * ny + j1) * nz
    r10 = (i1 * ny + j0) * nz
    r11 = (i1 * ny + j1) * nz
    return r00, r01, r10, r11, k0, k1, wi0, wi1, wj0, wj1, wk0, wk1


@triton.jit
def _trilinear(ptr, vi, vj, vk, nx, ny, nz, mask):
    """Trilinear value of the float32 volume ``ptr [nx, ny, nz]`` at clamped voxel positions: grid_sample's
    corner weights ``(w_k w_j) w_i`` and summation order, so the torch values are reproduced."""
    r00, r01, r10, r11, k0, k1, wi0, wi1, wj0, wj1, wk0, wk1 = _cell(vi, vj, vk, nx, ny, nz)
    acc = tl.load(ptr + r00 + k0, mask=mask, other=0.0) * ((wk0 * wj0) * wi0)
    acc += tl.load(ptr + r00 + k1, mask=mask, other=0.0) * ((wk1 * wj0) * wi0)
    acc += tl.load(ptr + r01 + k0, mask=mask, other=0.0) * ((wk0 * wj1) * wi0)
    acc += tl.load(ptr + r01 + k1, mask=mask, other=0.0) * ((wk1 * wj1) * wi0)
    acc += tl.load(ptr + r10 + k0, mask=mask, other=0.0) * ((wk0 * wj0) * wi1)
    acc += tl.load(ptr + r10 + k1, mask=mask, other=0.0) * ((wk1 * wj0) * wi1)
    acc += tl.load(ptr + r11 + k0, mask=mask, other=0.0) * ((wk0 * wj1) * wi1)
    acc += tl.load(ptr + r11 + k1, mask=mask, other=0.0) * ((wk1 * wj1) * wi1)
    return acc


@triton.jit
def _spline_axis(v, n):
    """The cubic B-spline along an axis of ``n`` voxels at clamped voxel coordinates ``v`` as two linear
    reads -> ``(g0, x0, x1)``: the first one's weight and both clamped coordinates, with
    ``GridSampler.cubic``'s operations (through grid_sample's normalised coordinates and back)."""
    top = n - 1.0
    i = tl.floor(v)
    f = v - i
    e = 1.0 - f
    w0 = e * e * e / 6.0
    w1 = (4.0 - 6.0 * f * f + 3.0 * (f * f * f)) / 6.0
    w3 = f * f * f / 6.0
    g0 = w0 + w1
    h0 = (i - 1.0) + w1 / g0
    h1 = (i + 1.0) + w3 / (1.0 - g0)
    x0 = tl.minimum(tl.maximum(((h0 * 2.0 / top - 1.0) + 1.0) * 0.5 * top, 0.0), top)
    x1 = tl.minimum(tl.maximum(((h1 * 2.0 / top - 1.0) + 1.0) * 0.5 * top, 0.0), top)
    return g0, x0, x1


@triton.jit
def _scalar(ptr, vi, vj, vk, nx, ny, nz, mask, CUBIC: tl.constexpr):
    """The intensity at clamped voxel positions: :func:`_trilinear` of ``ptr``, or (``CUBIC``) the cubic
    B-spline of the coefficients ``ptr``: 8 trilinear reads weighed as ``GridSampler.cubic`` does."""
    if CUBIC:
        gi, i0, i1 = _spline_axis(vi, nx)
        gj, j0, j1 = _spline_axis(vj, ny)
        gk, k0, k1 = _spline_axis(vk, nz)
        hi, hj, hk = 1.0 - gi, 1.0 - gj, 1.0 - gk
        acc = _trilinear(ptr, i0, j0, k0, nx, ny, nz, mask) * ((gk * gj) * gi)
        acc += _trilinear(ptr, i0, j0, k1, nx, ny, nz, mask) * ((hk * gj) * gi)
        acc += _trilinear(ptr, i0, j1, k0, nx, ny, nz, mask) * ((gk * hj) * gi)
        acc += _trilinear(ptr, i0, j1, k1, nx, ny, nz, mask) * ((hk * hj) * gi)
        acc += _trilinear(ptr, i1, j0, k0, nx, ny, nz, mask) * ((gk * gj) * hi)
        acc += _trilinear(ptr, i1, j0, k1, nx, ny, nz, mask) * ((hk * gj) * hi)
        acc += _trilinear(ptr, i1, j1, k0, nx, ny, nz, mask) * ((gk * hj) * hi)
        acc += _trilinear(ptr, i1, j1, k1, nx, ny, nz, mask) * ((hk * hj) * hi)
    else:
        acc = _trilinear(ptr, vi, vj, vk, nx, ny, nz, mask)
    return acc


@triton.jit
def _class_corner(labels_ptr, rgba_ptr, use_ptr, off, w, mask, a, u, r, g, b):
    """Adds the class style of the voxel at flat offset ``off`` with weight ``w`` to the blend
    ``(a, u, r, g, b)`` of :func:`_classes`."""
    lab = tl.load(labels_ptr + off, mask=mask, other=0).to(tl.int32)
    wa = w * tl.load(rgba_ptr + lab * 4 + 3, mask=mask, other=0.0)
    wu = wa * tl.load(use_ptr + lab, mask=mask, other=0.0)
    a += wa
    r += wu * tl.load(rgba_ptr + lab * 4, mask=mask, other=0.0)
    g += wu * tl.load(rgba_ptr + lab * 4 + 1, mask=mask, other=0.0)
    b += wu * tl.load(rgba_ptr + lab * 4 + 2, mask=mask, other=0.0)
    return a, u + wu, r, g, b


@triton.jit
def _classes(labels_ptr, rgba_ptr, use_ptr, vi, vj, vk, nx, ny, nz, mask):
    """Class styles (``rgba_ptr [L, 4]``, ``use_ptr [L]``) of the 8 voxels of ``labels_ptr [nx, ny, nz]``
    around clamped voxel positions, blended with :func:`_trilinear`'s weights
    (``ScalarField._blend_classes``) -> ``(a, u, r, g, b)``: class opacity, then the class-colour weight
    and the class colour premultiplied by it, both weighted by the voxels' opacities."""
    r00, r01, r10, r11, k0, k1, wi0, wi1, wj0, wj1, wk0, wk1 = _cell(vi, vj, vk, nx, ny, nz)
    a = vi * 0.0
    u, r, g, b = a, a, a, a
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r00 + k0, (wk0 * wj0) * wi0, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r00 + k1, (wk1 * wj0) * wi0, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r01 + k0, (wk0 * wj1) * wi0, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r01 + k1, (wk1 * wj1) * wi0, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r10 + k0, (wk0 * wj0) * wi1, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r10 + k1, (wk1 * wj0) * wi1, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r11 + k0, (wk0 * wj1) * wi1, mask, a, u, r, g, b)
    a, u, r, g, b = _class_corner(labels_ptr, rgba_ptr, use_ptr, r11 + k1, (wk1 * wj1) * wi1, mask, a, u, r, g, b)
    inv = tl.where(a > 0.0, 1.0 / tl.where(a > 0.0, a, 1.0), 0.0)
    return a, u * inv, r * inv, g * inv, b * inv
