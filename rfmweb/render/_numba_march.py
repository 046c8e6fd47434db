r"""Forward-only CPU ray-marcher compiled with numba: the twin of the torch marcher.

:func:`march_tiles` computes, for every pixel ray of a band of image rows, what
:func:`~rfmweb.render.raymarch.march` computes with a pre-integrated
:class:`~rfmweb.render.fields.ScalarField` (see :class:`~rfmweb.render.compiled.CompiledRaymarchRenderer`
for how the inputs come from the torch renderer's own tables): the same samples ``t_i = t_near + i dt``
(:func:`ray_lattice`; ``t_near`` holds the jitter), the same pre-integrated TF, labels, gradient opacity
and headlight shading, the same extinction ``sigma = -ln(1 - min(a, MAX_OPACITY)) / unit_distance`` and
front-to-back compositing over the background. The torch marcher is the oracle, and its sampling is
float32: a sample point one float32 rounding away reads a shading gradient that differs by 1% where the
gradient field is steep (skull edges), enough for 2e-3 in a pixel. So the sample points, grid
coordinates, trilinear weights and sums, and LUT indices are computed with torch's float32 operations
in torch's order, bit for bit; the rest (pre-integration, shading, compositing) in float64. Two
shortcuts make it differ by about 2e-4 at most (measured on the head CT; tests hold it to 1e-3): the
front end of a segment, ``p - step d``, is the previous sample's point up to float32 rounding, so its
intensity is reused when it was read; and a segment of optical depth below :data:`THIN` is
pre-integrated in one piece instead of ``pieces`` (its pieces would weigh alike).

Why it is fast where the torch marcher is not (on a CPU): a ray is one sequential loop that stops at
its first opaque sample; blocks of :data:`BLOCK`\ :sup:`3` cells whose intensity range the TF leaves
transparent are crossed in one jump (:func:`.blocks.block_ranges`), and elsewhere a sample whose segment spans
only transparent intensities is rejected after one trilinear read, before the second read of its front
end, pre-integration, labels, gradients or shading. Volume arrays are zero-copy views of the torch
renderer's. The volume reads are in :mod:`._numba_sampling`. With a cubic reconstruction (``REST``
and ``REFERENCE`` quality) the intensities are the B-spline that ``GridSampler.cubic`` reads, summed
over the 64 coefficients directly (equal to float32 rounding, not bit for bit), and the per-block
ranges are the coefficients' (``block_ranges(cubic=True)``).

Early termination, exactly as the torch marcher: it processes samples in segments of
:data:`SEGMENT` and zeroes the alpha of every sample whose transmittance before it is below
:data:`EARLY_STOP`, but keeps multiplying the transmittance by the unmasked alphas up to the last
sample of the segment. The colour is unaffected (those samples have zero weight), the opacity is
not: with a non-black background (``exact_opacity``) the loop keeps computing alphas to the end of
the segment; over black it stops at once.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from ..transfer.function import MAX_OPACITY
from ._numba_blocks import BLOCK, _blocks, _exit
from ._numba_sampling import _F, _F0, _F1, _JIT, _classes_at, _label_at, _sample3, _scalar, _to_grid
from .fields import LUT_SIZE
from .raymarch import EARLY_STOP, SEGMENT

#: pixels per side of the tiles the threads take one at a time
TILE = 8
#: optical depth below which a segment is pre-integrated in one piece (:func:`_segment_rgba`)
THIN = 0.1


@nb.njit(inline="always", **_JIT)
def _lut_index(s, lo, scale):
    """Fractional lookup-table index (float32) of the float32 intensity ``s`` (``ScalarField._index``;
    ``lo``, ``scale`` float32, as torch applies Python scalars to a float32 tensor)."""
    return min(max((s - lo) * scale, _F0), _F(LUT_SIZE - 1))


@nb.njit(inline="always", **_JIT)
def _lerp_entry(u):
    """``(i0, w)`` of ``ScalarField._linear`` (float64): entries ``i0`` and ``i0 + 1``, weight ``w`` on the latter."""
    i0 = min(int(u), LUT_SIZE - 2)          # u >= 0
    return i0, u - i0


@nb.njit(inline="always", **_JIT)
def _lerp4(table, u):
    """Row ``u`` (fractional, float64) of ``table [n, 4]``, linear between rows -> 4 float64."""
    i0, w = _lerp_entry(u)
    v = 1.0 - w
    return (table[i0, 0] * v + table[i0 + 1, 0] * w, table[i0, 1] * v + table[i0 + 1, 1] * w,
            table[i0, 2] * v + table[i0 + 1, 2] * w, table[i0, 3] * v + table[i0 + 1, 3] * w)


@nb.njit(inline="always", **_JIT)
def _exp_neg(x):
    """``exp(-x)`` for ``x >= 0``: below 1/64 (the optical depth of a piece of a segment through soft
    tissue) by its degree-4 Taylor polynomial, error < 1e-11, evaluated with a short dependency chain;
    else libm's ``exp``."""
    if x < 0.015625:
        x2 = x * x
        return (1.0 - x) + x2 * ((0.5 - x * (1 / 6)) + x2 * (1 / 24))
    return math.exp(-x)


@nb.njit(inline="always", **_JIT)
def _log1m(x):
    """``log(1 - x)`` for ``0 <= x < 1``: below 1/64 by its degree-5 Taylor polynomial (error < 3e-12),
    else libm's ``log1p``."""
    if x < 0.015625:
        x2 = x * x
        return -(x + x2 * ((0.5 + x * (1 / 3)) + x2 * (0.25 + x * 0.2)))
    return math.log1p(-x)


@nb.njit(inline="always", **_JIT)
def _segment_rgba(uf, ub, pieces, step, lut, cum, unit_distance, min_span, thin_scale):
    """Pre-integrated TF of a segment of ``step`` mm from LUT index ``uf`` (front) to ``ub`` (back),
    both float32: ``ScalarField._segment_rgba`` -> float64 ``(r, g, b, tau, trans)``, its colour, optical
    depth and transmittance ``exp(-tau)``; the TF alpha is ``1 - exp(-tau unit_distance / step)``.
    ``thin_scale``: the factor a class puts on this alpha (1 without one), which scales the optical
    depth the :data:`THIN` test sees: a faint class seen through a dense TF is thin.

    ``cum [n, 4]``: the cumulative tables ``(Sigma, K_r, K_g, K_b)`` of :func:`preintegration_tables`.
    The segment is cut into ``pieces`` composited front to back (the colour of the piece where the
    light stops counts most), one piece when its optical depth is below :data:`THIN`; a piece
    narrower than ``min_span`` entries reads the TF at its middle.
    Colours the torch field gives to pieces or segments without extinction (below 1e-12) are not
    computed: they are weighted by their opacity, so they add nothing to an image.
    """
    f = np.float64(uf)
    span_all = np.float64(ub - uf)          # a float32 difference, as in torch
    span = span_all / pieces
    wide = abs(span) > min_span
    if wide:
        # an optically thin segment: its pieces would weigh alike, so one piece gives the same colour
        i0, w = _lerp_entry(f)
        sa = cum[i0, 0] * (1.0 - w) + cum[i0 + 1, 0] * w
        i0, w = _lerp_entry(np.float64(ub))
        sb = cum[i0, 0] * (1.0 - w) + cum[i0 + 1, 0] * w
        if abs((sb - sa) * step / span_all) * thin_scale < THIN:
            pieces = 1
            span = span_all
    d_tau = step / pieces
    depth, frac = d_tau / span, 1.0 / pieces       # optical depth of a piece per unit of Sigma
    u0 = f
    s0, e0, e1, e2 = _lerp4(cum, u0) if wide else (0.0, 0.0, 0.0, 0.0)
    tau = 0.0
    before = 1.0
    cr, cg, cb = 0.0, 0.0, 0.0              # sum of piece weight * piece colour
    for j in range(1, pieces + 1):
        u1 = f + span_all * (j * frac)
        if wide:
            s1, k0, k1, k2 = _lerp4(cum, u1)
            d_sigma = s1 - s0
            r_, g_, b_ = k0 - e0, k1 - e1, k2 - e2
            s0, e0, e1, e2 = s1, k0, k1, k2
            if not abs(d_sigma) > 1e-12:
                continue
            x = d_sigma * depth
            inv = 1.0 / d_sigma
            r_, g_, b_ = r_ * inv, g_ * inv, b_ * inv
        else:
            r_, g_, b_, a = _lerp4(lut, 0.5 * (u1 + u0))
            u0 = u1
            if not a > 0.0:
                continue
            x = -math.log1p(-min(a, MAX_OPACITY)) / unit_distance * d_tau
        tau += x
        after = before * _exp_neg(x)
        w = before - after
        cr += w * r_
        cg += w * g_
        cb += w * b_
        before = after
    total = 1.0 - before
    if total > 1e-12:
        inv = 1.0 / total
        return cr * inv, cg * inv, cb * inv, tau, before
    return 0.0, 0.0, 0.0, tau, before


@nb.njit(**_JIT)
def _interp(x, xp, fp):
    """Piecewise-linear ``fp`` over knots ``xp`` at ``x``, clamped (:func:`rfmweb.transfer.function.interp`)."""
    p = xp.shape[0]
    if p == 1:
        return fp[0]
    idx = 0
    while idx < p and xp[idx] <= x:        # searchsorted(right=True)
        idx += 1
    idx = min(max(idx, 1), p - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    w = min(max((x - x0) / max(x1 - x0, 1e-12), 0.0), 1.0)
    return fp[idx - 1] * (1.0 - w) + fp[idx] * w


@nb.njit(**_JIT)
def _slab(o, d, lo, hi):
    """float32 ray-box intersection of :func:`~rfmweb.render.raymarch.ray_aabb` (same operations) for one
    ray ``o + t d`` (3-tuples) and the box ``[lo, hi]`` (``[3]`` arrays) -> ``(t_near >= 0, t_far)``."""
    t_near, t_far = _F(-np.inf), _F(np.inf)
    for c in range(3):
        inv = _F1 / (d[c] if abs(d[c]) >= _F(1e-12) else _F(1e-12))
        a, b = (lo[c] - o[c]) * inv, (hi[c] - o[c]) * inv
        t_near = max(t_near, min(a, b))
        t_far = min(t_far, max(a, b))
    return max(t_near, _F0), t_far


@nb.njit(**_JIT)
def _affine3(x, lin, off):
    """float32 ``lin @ x + off`` (``[3, 3]``, ``[3]``) of the 3-vector ``x`` as torch's ``x @ lin.T + off``:
    products summed in index order (exact when ``lin`` is diagonal)."""
    return (((x[0] * lin[0, 0] + x[1] * lin[0, 1]) + x[2] * lin[0, 2]) + off[0],
            ((x[0] * lin[1, 0] + x[1] * lin[1, 1]) + x[2] * lin[1, 2]) + off[1],
            ((x[0] * lin[2, 0] + x[1] * lin[2, 1]) + x[2] * lin[2, 2]) + off[2])


@nb.njit(parallel=True, **_JIT)
def ray_lattice(origins, dirs, inv_lin, inv_off, lo, hi, grid_hi, step, jitter):
    """Where the torch marcher samples each ray: ``(t_near [R] float32, n_steps [R] int64)``, the first
    sample (mm along the ray) and the number of samples, by the float32 operations of
    :meth:`RaymarchRenderer.march` and :func:`~rfmweb.render.raymarch.march` (bit for bit, the
    world -> voxel product being exact for the usual diagonal affine).

    Args:
        origins, dirs: ``[R, 3]`` float32 world rays. inv_lin ``[3, 3]``, inv_off ``[3]``: float32
            world -> voxel affine. lo, hi: ``[3]`` float32 visible box (voxels); grid_hi: ``[3]`` float32
            last voxel. step: sample spacing (mm). jitter: ``[R]`` float64 offsets in [0, 1).
    """
    n = origins.shape[0]
    t_near = np.empty(n, dtype=np.float32)
    n_steps = np.empty(n, dtype=np.int64)
    step32 = _F(step)
    no_shift = np.zeros(3, dtype=np.float32)
    for r in nb.prange(n):
        o = _affine3(origins[r], inv_lin, inv_off)
        d = _affine3(dirs[r], inv_lin, no_shift)    # + 0: exact, as the torch product has no shift
        t0, t1 = _slab(o, d, lo, hi)
        g0, _ = _slab(o, d, no_shift, grid_hi)
        # start on the sample lattice of the whole grid, so skipping never moves the samples
        t0 = g0 + np.floor(max(t0 - g0, _F0) / step32) * step32
        tn = t0 + _F(jitter[r]) * step32
        t_near[r] = tn
        n_steps[r] = int(max(np.floor((t1 - tn) / step32) + _F1, _F0))
    return t_near, n_steps


@nb.njit(inline="always", **_JIT)
def _power(x, p, ip):
    """``x ** p`` for ``x`` in (0, 1]; by squaring when ``p`` is the integer ``ip >= 0`` (presets use
    10: a few products instead of a ``pow`` call; ``ip < 0``: not an integer)."""
    if ip < 0:
        return x ** p
    out = 1.0
    while ip > 0:
        if ip & 1:
            out *= x
        x *= x
        ip >>= 1
    return out


@nb.njit(inline="always", **_JIT)
def _shade(r, g, b, gx, gy, gz, use, vi, vj, vk, dx, dy, dz, light):
    """Headlight Blinn-Phong (``ScalarField.__call__``) of a visible sample of colour ``(r, g, b)`` and
    intensity gradient ``(gx, gy, gz)`` at voxel position ``(vi, vj, vk)``, seen along ``(dx, dy, dz)``
    -> ``(r, g, b)``. ``use`` is the class-colour weight of its label: solid labels are lit by the
    normals of their own mask instead."""
    ambient, diffuse, specular, power, ipower, normals, use_normals = light[5:]
    if use_normals and use > 0:
        gx, gy, gz = _sample3(normals, vi, vj, vk)
    gmag = math.sqrt(gx * gx + gy * gy + gz * gz)
    cos = abs(gx * dx + gy * dy + gz * dz) / gmag if gmag > 1e-6 else 0.0
    lit = ambient + diffuse * cos
    spec = specular * _power(max(cos, 1e-6), power, ipower) if specular > 0 else 0.0
    return r * lit + spec, g * lit + spec, b * lit + spec


@nb.njit(**_JIT)
def _ray(o, d, tn, n, step, exact_opacity, scalar, cubic, geometry, blocks, tf, classes, light):
    """March one ray -> ``(r, g, b, transmittance)`` (colour premultiplied, over black).

    ``o``, ``d``: float32 ``[3]`` origin and unit direction; ``tn``: float32 first sample (mm); ``n``:
    samples; the tuples as in :func:`march_tiles`.
    """
    norm_lin, norm_off, vox_lin, vox_off = geometry
    block_lo, block_hi, cum_key = blocks
    lut, cum, lut_lo, lut_scale, unit_distance, min_span, pieces = tf
    labels, class_rgba, class_use, class_a, has_labels, solid = classes
    gradient, grad_x, grad_f, use_grad_opacity, shade = light[:5]
    use_normals = light[11]
    # the largest optical depth of a sample: its alpha is capped at MAX_OPACITY
    tau_cap = -math.log1p(-MAX_OPACITY) / unit_distance * step
    a_cap = 1.0 - math.exp(-tau_cap)
    nx, ny, nz = scalar.shape
    step32 = _F(step)
    ox, oy, oz = o[0], o[1], o[2]
    dx, dy, dz = d[0], d[1], d[2]
    sx, sy, sz = step32 * dx, step32 * dy, step32 * dz
    # the ray in voxel coordinates, float64 (only to find where it leaves a block)
    wi = vox_lin[0, 0] * ox + vox_lin[1, 0] * oy + vox_lin[2, 0] * oz + vox_off[0]
    wj = vox_lin[0, 1] * ox + vox_lin[1, 1] * oy + vox_lin[2, 1] * oz + vox_off[1]
    wk = vox_lin[0, 2] * ox + vox_lin[1, 2] * oy + vox_lin[2, 2] * oz + vox_off[2]
    ei = vox_lin[0, 0] * dx + vox_lin[1, 0] * dy + vox_lin[2, 0] * dz
    ej = vox_lin[0, 1] * dx + vox_lin[1, 1] * dy + vox_lin[2, 1] * dz
    ek = vox_lin[0, 2] * dx + vox_lin[1, 2] * dy + vox_lin[2, 2] * dz
    inv_ei, inv_ej, inv_ek = 1.0 / ei, 1.0 / ej, 1.0 / ek   # inf on an axis the ray is parallel to
    last_i, last_j, last_k = _blocks(nx) - 1, _blocks(ny) - 1, _blocks(nz) - 1
    inv_step = 1.0 / step
    cr, cg, cb, trans = 0.0, 0.0, 0.0, 1.0
    u_prev = _F0                    # LUT index of the intensity at the previous sample
    have_prev = False               # ... if it was computed
    b_prev = (-1, -1, -1)           # block of the previous sample
    b_clear = False                 # ... TF-transparent
    i = 0
    while i < n:
        k = i % SEGMENT
        if trans < EARLY_STOP and (not exact_opacity or k == 0 or k == SEGMENT - 1):
            break                   # finished (the last sample of a segment is masked)
        # the sample point in float32, as the torch marcher computes it
        t = tn + _F(i) * step32
        first = i == 0
        i += 1
        px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
        vi, vj, vk = _to_grid(px, py, pz, norm_lin, norm_off, nx, ny, nz)
        b = (min(int(vi), nx - 2) // BLOCK, min(int(vj), ny - 2) // BLOCK, min(int(vk), nz - 2) // BLOCK)
        if b != b_prev:
            b_clear = cum_key[block_lo[b]] == cum_key[block_hi[b]]
        if not first and b_clear:
            # The segment runs from the previous sample (its front end is that point up to float32
            # rounding) to this one: its intensities lie in the two blocks' ranges, so no
            # extinction over their union means alpha 0, without reading the volume.
            if b == b_prev or (cum_key[min(block_lo[b], block_lo[b_prev])]
                               == cum_key[max(block_hi[b], block_hi[b_prev])]):
                b_prev = b
                have_prev = False
                if trans >= EARLY_STOP:
                    # The samples up to the last one before the ray leaves this transparent block are
                    # transparent too (the rounding of where it leaves is far below the one voxel the
                    # block ranges are widened by): go on from the first one after it.
                    t_out = min(_exit(wi, ei, inv_ei, b[0], last_i), _exit(wj, ej, inv_ej, b[1], last_j),
                                _exit(wk, ek, inv_ek, b[2], last_k))
                    last = (t_out - tn) * inv_step  # inf when the ray never leaves it
                    i = n if last >= n else max(i, int(last) + 1)
                continue
        b_prev = b
        s = _scalar(scalar, cubic, vi, vj, vk)
        ub = _lut_index(s, lut_lo, lut_scale)
        lab, use = 0, 0.0
        if solid:               # a visible solid class shows whatever the TF says: look first
            lab = _label_at(px, py, pz, vox_lin, vox_off, labels, nx, ny, nz)
            use = class_use[lab]
        if have_prev and not use > 0.0:
            # the same test on the two samples' own intensities, with one entry of margin for the
            # float32 rounding of the exact front end (~1e-3 entries)
            lo = max(int(min(u_prev, ub)) - 1, 0)      # indices >= 0: truncation is floor,
            hi = min(int(max(u_prev, ub)) + 2, LUT_SIZE - 1)   # and floor + 1 >= ceil
            if cum[lo, 0] == cum[hi, 0]:
                u_prev = ub
                continue
        # the front end p - step d is the previous sample up to float32 rounding: its intensity when
        # it was read, else read there as ScalarField does
        uf = u_prev
        if not have_prev:
            fi, fj, fk = _to_grid(px - sx, py - sy, pz - sz, norm_lin, norm_off, nx, ny, nz)
            uf = _lut_index(_scalar(scalar, cubic, fi, fj, fk), lut_lo, lut_scale)
        u_prev = ub
        have_prev = True
        ca, kr, kg, kb = _F1, _F0, _F0, _F0     # class opacity, colour (premultiplied by use)
        if has_labels and not solid:
            ca, use, kr, kg, kb = _classes_at(vi, vj, vk, labels, class_rgba, class_use, nx, ny, nz)
        elif solid:
            ca = class_rgba[lab, 3]
        if solid and use >= 1.0 and not use_grad_opacity:
            # a visible solid class in its own colour and opacity, whatever the TF says there
            a = class_a[lab]
            if not a > 0.0:
                continue
            r_, g_, b_ = class_rgba[lab, 0], class_rgba[lab, 1], class_rgba[lab, 2]
            if shade:
                gx, gy, gz = 0.0, 0.0, 0.0  # lit by the class's own normals when it has them
                if not use_normals:
                    gx, gy, gz = _sample3(gradient, vi, vj, vk)
                r_, g_, b_ = _shade(r_, g_, b_, gx, gy, gz, use, vi, vj, vk, dx, dy, dz, light)
        else:
            thin_scale = ca if has_labels and not (solid and use > 0) else 1.0
            r_, g_, b_, tau, seg_trans = _segment_rgba(uf, ub, pieces, step, lut, cum, unit_distance,
                                                       min_span, thin_scale)
            if not (has_labels or use_grad_opacity):
                # The sample's alpha is the segment's own: sigma = -ln(1 - alpha) / unit_distance = tau / dt,
                # so 1 - exp(-sigma dt) is its transmittance, already known (below the opacity cap).
                if not tau > 0.0:
                    continue
                a = 1.0 - seg_trans if tau <= tau_cap else a_cap
                if shade:
                    gx, gy, gz = _sample3(gradient, vi, vj, vk)
                    r_, g_, b_ = _shade(r_, g_, b_, gx, gy, gz, 0.0, vi, vj, vk, dx, dy, dz, light)
            else:
                alpha = 1.0 - _exp_neg(tau / step * unit_distance)
                if solid:
                    alpha = ca if use > 0 else alpha * ca
                    r_ += use * (class_rgba[lab, 0] - r_)
                    g_ += use * (class_rgba[lab, 1] - g_)
                    b_ += use * (class_rgba[lab, 2] - b_)
                elif has_labels:        # the blend of the 8 voxels' classes
                    alpha *= ca
                    r_ = r_ * (1.0 - use) + kr
                    g_ = g_ * (1.0 - use) + kg
                    b_ = b_ * (1.0 - use) + kb
                if not alpha > 0.0:
                    continue
                if use_grad_opacity or shade:
                    gx, gy, gz = 0.0, 0.0, 0.0
                    if use_grad_opacity or not (use_normals and use > 0):
                        gx, gy, gz = _sample3(gradient, vi, vj, vk)
                    if use_grad_opacity:
                        alpha *= _interp(math.sqrt(gx * gx + gy * gy + gz * gz), grad_x, grad_f)
                    if shade:
                        r_, g_, b_ = _shade(r_, g_, b_, gx, gy, gz, use, vi, vj, vk, dx, dy, dz, light)
                a = 1.0 - _exp_neg(-_log1m(min(max(alpha, 0.0), MAX_OPACITY)) / unit_distance * step)
        if trans >= EARLY_STOP:     # below it the torch marcher zeroes the alpha
            w = trans * a
            cr += w * r_
            cg += w * g_
            cb += w * b_
        trans *= 1.0 - a
    return cr, cg, cb, trans


@nb.njit(parallel=True, **_JIT)
def march_tiles(out, row0, row1, origins, dirs, t_near, n_steps, step, bg, exact_opacity,
                scalar, cubic, geometry, blocks, tf, classes, light):
    """March the pixel rays of image rows ``row0 <= y < row1`` and write their colour over ``bg``.

    The rows are cut into :data:`TILE` x :data:`TILE` pixel tiles, one ``prange`` iteration each: call
    it under ``numba.parallel_chunksize(1)`` to hand them to the threads one at a time (tiles cost
    anything from nothing to full rays, and a thread that shares its core with another process must
    not hold the others up at the end).

    Args:
        out: ``[H, W, 3]`` float64, written for the band: composited colour over ``bg``.
        origins, dirs: ``[H * W, 3]`` float32 world rays (mm; unit directions), row-major pixels.
        t_near: ``[H * W]`` float32 first sample (mm along the ray, jitter included).
        n_steps: ``[H * W]`` int64 samples per ray (0: the ray misses the visible box).
        step: sample spacing ``dt`` (mm). bg: ``[3]`` float64 background. exact_opacity: reproduce the
            torch marcher's transmittance after early termination (needed when ``bg`` is not black).
        scalar: ``[X, Y, Z]`` float32 intensities (hidden classes already faded out), or
            their cubic B-spline coefficients when ``cubic``; the block tables bound what it reads.
        geometry: ``(norm_lin [3, 3], norm_off [3], vox_lin [3, 3], vox_off [3])`` float32 world ->
            grid_sample / voxel maps of the field's ``GridSampler`` (row-vector form, ``p @ lin + off``).
        blocks: ``(block_lo, block_hi, cum_key)``: ``[BX, BY, BZ]`` int32 LUT entries bracketing each
            block's intensities (:func:`.blocks.lut_ranges`) and ``[n + 1]`` float64 ``cum_sigma`` then
            ``inf``: entries ``lo..hi`` are TF-transparent when ``cum_key[lo] == cum_key[hi]`` (a block
            with ``hi = n`` is never skipped: it holds a visible solid label).
        tf: ``(lut [n, 4], cum [n, 4], lut_lo, lut_scale, unit_distance, min_span, pieces)``: float64
            TF table and pre-integration tables ``(Sigma, K_r, K_g, K_b)``, the float32 intensity ->
            index map, the TF's opacity unit (mm), ``ScalarField.PREINT_MIN_SPAN`` and ``PREINT_PIECES``.
        classes: ``(labels [X * Y * Z], class_rgba [L, 4], class_use [L], class_a [L], has_labels, solid)``:
            labels uint8, int16 or int64; ``class_a``: a class's opacity over one ``step`` (its alpha per
            ``unit_distance``, capped at ``MAX_OPACITY``).
        light: ``(gradient [X, Y, Z, 3] float32, grad_x [P], grad_f [P], use_grad_opacity, shade,
            ambient, diffuse, specular, power, ipower, label_normals [X, Y, Z, 3] float32,
            use_label_normals)``; ``ipower``: ``power`` as an integer, or -1.
    """
    width = out.shape[1]
    tiles_x = (width + TILE - 1) // TILE
    n_tiles = tiles_x * ((row1 - row0 + TILE - 1) // TILE)
    for tile in nb.prange(n_tiles):
        y0, x0 = row0 + (tile // tiles_x) * TILE, (tile % tiles_x) * TILE
        for row in range(y0, min(y0 + TILE, row1)):
            for col in range(x0, min(x0 + TILE, width)):
                r = row * width + col
                cr, cg, cb, trans = 0.0, 0.0, 0.0, 1.0
                if n_steps[r] > 0:
                    cr, cg, cb, trans = _ray(origins[r], dirs[r], t_near[r], n_steps[r], step, exact_opacity,
                                             scalar, cubic, geometry, blocks, tf, classes, light)
                out[row, col, 0] = cr + trans * bg[0]
                out[row, col, 1] = cg + trans * bg[1]
                out[row, col, 2] = cb + trans * bg[2]
