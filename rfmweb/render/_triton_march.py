r"""The torch ray-marcher's forward pass as one Triton kernel: the GPU path of
:meth:`~rfmweb.render.dvr.RaymarchRenderer.render_tensor`.

:func:`march_triton` takes everything that depends on the volume and the scene from the torch
renderer itself (the prepared grid with hidden classes and shading gradient, the label normals, the
pre-integrated :class:`~rfmweb.render.fields.ScalarField` with its lookup and cumulative tables and
class tables, the visible box) and sets the rays up with the torch expressions of
:meth:`RaymarchRenderer.march <rfmweb.render.dvr.RaymarchRenderer.march>`; one launch then marches
every pixel ray: per sample ``t_i = t_0 + (i + u) dt`` (``t_i <= t_1``),

.. math::

    s_b = \mathrm{tri}(p_i), \; s_f = \mathrm{tri}(p_i - dt\,d), \quad
    (c, a) = \mathrm{preint}(s_f, s_b) \to \text{labels} \to \text{gradient opacity, shading}, \\
    \sigma = -\ln(1 - \min(a, a_{max})) / \ell_u, \quad \alpha = 1 - e^{-\sigma dt}, \quad
    C \mathrel{+}= T \alpha c, \; T \mathrel{*}= 1 - \alpha,

then ``C + T * background``: what the torch marcher computes in a dozen kernels per segment of 32
samples with every ``[rays, 32]`` intermediate in memory, here in registers, one ray per lane. At
rest (``quality.cubic``) ``tri`` is the cubic B-spline read of ``GridSampler.cubic`` instead.

Faithful to the torch twin (``tests/test_triton_march.py`` runs this kernel under
``TRITON_INTERPRET=1`` against it): grid_sample's border-clamped coordinates, corner weights and
summation order; the pre-integration in float64 on the float64 cumulative tables (differences of
large sums); float32 everywhere torch is float32; early termination with the torch marcher's exact
transmittance (it keeps multiplying alphas to the end of its 32-sample segment, which shows over a
non-black background). Where the interpreter has no libdevice, ``log1p`` and round-half-even are
written out (:func:`_log1p`, :func:`_rint`) and ``x ** p`` is ``exp2(p log2 x)``.

Empty space is crossed as the compiled CPU marcher crosses it (:mod:`.blocks`): a lane whose ray
is in a block of 8^3 cells whose intensity range the TF leaves transparent (and whose segment from
the previous block is transparent too) jumps to its first sample past that block, without reading
the volume. Elsewhere a segment whose intensities (the previous sample's and this one's, one
lookup-table entry of margin) span only TF-transparent entries has alpha 0, so the rest of the
sample is skipped. Lanes march their own sample indices; a tile runs until its last lane ends.

Before block skipping, on an H200 (Triton 3.6), a 512 x 512 CT-Bone frame of
``samples.load("ct_phantom", size=384)`` (307 x 230 x 384 voxels) took 4.1 ms in the kernel and
5.6 ms in all (set-up included), against 720 ms for the torch marcher on the same GPU
(CT-Soft-Tissue: 0.8 and 2.1 ms, 330 ms); the images agree to rounding but for a few pixels in
10^5, where a sample sits on the edge of a discrete choice (nearest solid label, early stop) that fused
multiply-adds round the other way.

Triton is imported only when this module is (on CUDA, or by that test). The kernel calls Triton's
builtins and the jit functions of this module and :mod:`._triton_sampling` (volume reads) only: the
library ones (``tl.max``, ``tl.cdiv``, ...) are compiled or interpreted as decided when Triton was
first imported, maybe before the interpreter was on.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from ..camera import OrbitCamera
from ..transfer.function import MAX_OPACITY
from . import blocks
from .dvr import RaymarchRenderer
from ._triton_sampling import _classes, _grid_axis, _rint, _scalar, _trilinear
from .fields import LUT_SIZE, ScalarField
from .raymarch import EARLY_STOP, SEGMENT
from .scene import FULL, Quality, Scene

#: pixel rows x columns of the tile one program marches: 32 lanes, one warp, so the per-sample "any
#: lane?" reductions are warp shuffles (the H200 frame of the module docstring: 4.1 ms; 8 x 8 tiles
#: 5.1, 8 x 16 5.9, 16 x 16 7.0)
TILE = (4, 8)

_MAX_OPACITY = tl.constexpr(MAX_OPACITY)
_EARLY_STOP = tl.constexpr(EARLY_STOP)


@triton.jit
def _log1p(x):
    """``log(1 + x)`` accurate for small ``|x|`` (Goldberg: ``log(y) x / (y - 1)`` with ``y = 1 + x``
    rounded cancels the rounding of ``y``); float32 or float64."""
    y = 1.0 + x
    d = y - 1.0
    return tl.where(d == 0.0, x, tl.log(y) * (x / tl.where(d == 0.0, 1.0, d)))


@triton.jit
def _lut_index(s, lut_lo, lut_scale, LUT_N: tl.constexpr):
    """Fractional lookup-table index (float32) of intensities ``s`` (``ScalarField._index``)."""
    return tl.minimum(tl.maximum((s - lut_lo) * lut_scale, 0.0), LUT_N - 1.0)


@triton.jit
def _entry(u, LUT_N: tl.constexpr):
    """``ScalarField._linear``'s ``(i0, w)`` at float64 indices ``u``: entries ``i0``, ``i0 + 1``, weight
    ``w`` on the latter (``i0`` is also kept >= 0, where torch would wrap a negative index around)."""
    i0 = tl.minimum(tl.maximum(tl.floor(u), 0.0), LUT_N - 2.0)
    return i0.to(tl.int32), u - i0


@triton.jit
def _cumulative(cum_ptr, u, mask, LUT_N: tl.constexpr):
    """The float64 tables ``(Sigma, K_r, K_g, K_b)`` (``cum_ptr [LUT_N, 4]``) read linearly at ``u``."""
    i0, w = _entry(u, LUT_N)
    p = cum_ptr + i0 * 4
    s = tl.load(p, mask=mask, other=0.0) * (1.0 - w) + tl.load(p + 4, mask=mask, other=0.0) * w
    r = tl.load(p + 1, mask=mask, other=0.0) * (1.0 - w) + tl.load(p + 5, mask=mask, other=0.0) * w
    g = tl.load(p + 2, mask=mask, other=0.0) * (1.0 - w) + tl.load(p + 6, mask=mask, other=0.0) * w
    b = tl.load(p + 3, mask=mask, other=0.0) * (1.0 - w) + tl.load(p + 7, mask=mask, other=0.0) * w
    return s, r, g, b


@triton.jit
def _lut(lut_ptr, u, mask, LUT_N: tl.constexpr):
    """TF RGBA (``lut_ptr [LUT_N, 4]`` float32) read linearly at float64 ``u``, in float64 (as torch
    promotes the float32 table times the float64 weight)."""
    i0, w = _entry(u, LUT_N)
    p = lut_ptr + i0 * 4
    r = tl.load(p, mask=mask, other=0.0).to(tl.float64) * (1.0 - w) + tl.load(p + 4, mask=mask, other=0.0) * w
    g = tl.load(p + 1, mask=mask, other=0.0).to(tl.float64) * (1.0 - w) + tl.load(p + 5, mask=mask, other=0.0) * w
    b = tl.load(p + 2, mask=mask, other=0.0).to(tl.float64) * (1.0 - w) + tl.load(p + 6, mask=mask, other=0.0) * w
    a = tl.load(p + 3, mask=mask, other=0.0).to(tl.float64) * (1.0 - w) + tl.load(p + 7, mask=mask, other=0.0) * w
    return r, g, b, a


@triton.jit
def _segment(uf, ub, mask, lut_ptr, cum_ptr, step, unit_distance, min_span,
             PIECES: tl.constexpr, LUT_N: tl.constexpr):
    r"""Pre-integrated TF ``(r, g, b, a)`` float64 of the segments from LUT index ``uf`` (front) to ``ub``
    (back), float32: ``ScalarField._segment_rgba``. The index runs linearly over ``PIECES`` pieces of
    ``step / PIECES`` mm; piece ``j`` from ``u_j`` to ``u_{j+1}`` has extinction
    ``(Sigma(u_{j+1}) - Sigma(u_j)) / (u_{j+1} - u_j)`` and colour ``dK / dSigma`` (the TF at the
    piece's middle when it spans at most ``min_span`` entries, or has no extinction), and the pieces
    are composited front to back: ``c = sum_j (T_j - T_{j+1}) c_j / (1 - T_m)``, ``T_j = exp(-tau_j)``.
    The alpha is that of ``unit_distance`` mm at the mean extinction."""
    f = uf.to(tl.float64)
    span_all = (ub - uf).to(tl.float64)                 # a float32 difference, as torch takes it
    span = span_all / PIECES
    wide = tl.abs(span) > min_span
    inv_span = 1.0 / tl.where(wide, span, 1.0)
    d_tau = step / PIECES
    m_wide = mask & wide
    cs0, er0, eg0, eb0 = _cumulative(cum_ptr, f, m_wide, LUT_N)
    u0 = f
    zero = tl.full(f.shape, 0.0, tl.float64)
    tau, before = zero, zero + 1.0
    acc_r, acc_g, acc_b = zero, zero, zero
    sum_r, sum_g, sum_b = zero, zero, zero
    for j in tl.static_range(PIECES):
        u1 = f + span_all * ((j + 1.0) / PIECES)
        cs1, er1, eg1, eb1 = _cumulative(cum_ptr, u1, m_wide, LUT_N)
        d_sigma = cs1 - cs0
        has = wide & (tl.abs(d_sigma) > 1e-12)
        # the TF at the piece's middle: only where the tables do not give the piece's colour
        lr, lg, lb, la = _lut(lut_ptr, 0.5 * (u1 + u0), mask & ~has, LUT_N)
        mid_sigma = -_log1p(-tl.minimum(tl.maximum(la, 0.0), _MAX_OPACITY)) / unit_distance
        sigma = tl.where(wide, d_sigma * inv_span, mid_sigma)
        inv_d = 1.0 / tl.where(has, d_sigma, 1.0)
        r = tl.where(has, (er1 - er0) * inv_d, lr)
        g = tl.where(has, (eg1 - eg0) * inv_d, lg)
        b = tl.where(has, (eb1 - eb0) * inv_d, lb)
        tau += sigma * d_tau
        after = tl.exp(-tau)
        acc_r += (before - after) * r
        acc_g += (before - after) * g
        acc_b += (before - after) * b
        sum_r += r
        sum_g += g
        sum_b += b
        before = after
        u0, cs0, er0, eg0, eb0 = u1, cs1, er1, eg1, eb1
    total = 1.0 - before
    seen = total > 1e-12
    inv_total = 1.0 / tl.where(seen, total, 1.0)
    alpha = 1.0 - tl.exp(-tau / step * unit_distance)
    return (tl.where(seen, acc_r * inv_total, sum_r / PIECES), tl.where(seen, acc_g * inv_total, sum_g / PIECES),
            tl.where(seen, acc_b * inv_total, sum_b / PIECES), alpha)


@triton.jit
def _interp(x, xp_ptr, fp_ptr, n):
    """Piecewise-linear ``fp`` over ``n >= 2`` knots ``xp`` at ``x``, clamped (``transfer.function.interp``)."""
    idx = tl.full(x.shape, 0, tl.int32)
    for q in range(n):                                  # searchsorted(right=True): knots <= x
        idx += (tl.load(xp_ptr + q) <= x).to(tl.int32)
    idx = tl.minimum(tl.maximum(idx, 1), n - 1)
    x0 = tl.load(xp_ptr + idx - 1)
    x1 = tl.load(xp_ptr + idx)
    w = tl.minimum(tl.maximum((x - x0) / tl.maximum(x1 - x0, 1e-12), 0.0), 1.0)
    return tl.load(fp_ptr + idx - 1) * (1.0 - w) + tl.load(fp_ptr + idx) * w


@triton.jit
def _lerp(start, end, w):
    """``torch.lerp`` (its two-sided formula: exact at ``w = 0`` and ``w = 1``)."""
    return tl.where(w < 0.5, start + w * (end - start), end - (end - start) * (1.0 - w))


@triton.jit
def _any(mask):
    """Whether any lane of the block is set: a max across the block's warps, by ``tl.max``'s own
    combine function (the interpreter reduces with that one in numpy, any other lane by lane)."""
    return tl.reduce(mask.to(tl.int32), 0, tl.standard._elementwise_max) > 0


@triton.jit
def _exit(w, e, inv_e, b, last, BLOCK: tl.constexpr):
    """Ray parameter (mm, float64) where the voxel coordinate ``w + t e`` (``inv_e = 1 / e``) leaves
    block ``b`` of an axis whose last block is ``last`` (``inf`` if never: the first and last blocks
    extend beyond the grid, as clamping does): ``_numba_blocks._exit``."""
    up = (e > 0.0) & (b < last)
    down = (e < 0.0) & (b > 0)
    edge = tl.where(up, (b + 1) * BLOCK, b * BLOCK).to(tl.float64)
    return tl.where(up | down, (edge - w) * inv_e, float("inf"))


#: Sizes are plain arguments, not specialised on (divisible by 16, equal to 1): every volume and image
#: shape then shares one compiled kernel per feature set (Render-FM training sees a new shape each scan).
_SIZES = ("height", "width", "nx", "ny", "nz", "n_go", "nbx", "nby", "nbz")


@triton.jit(do_not_specialize=_SIZES)
def _march_kernel(origins_ptr, dirs_ptr, t0_ptr, t1_ptr, jitter_ptr, out_ptr,              # rays, image
                  scalar_ptr, grad_ptr, normals_ptr, labels_ptr,                           # volume
                  lut_ptr, cum_ptr, class_rgba_ptr, class_use_ptr, geom_ptr, go_x_ptr, go_f_ptr,  # tables
                  block_lo_ptr, block_hi_ptr, key_ptr,                                     # empty space
                  height, width, nx, ny, nz, n_go, nbx, nby, nbz,
                  step, lut_lo, lut_scale, unit_distance, min_span, ambient, diffuse, specular, power,
                  bg_r, bg_g, bg_b,
                  TILE_H: tl.constexpr, TILE_W: tl.constexpr, PIECES: tl.constexpr, LUT_N: tl.constexpr,
                  SEGMENT: tl.constexpr, LABELS: tl.constexpr, GRAD: tl.constexpr, GRAD_OPACITY: tl.constexpr,
                  SHADE: tl.constexpr, NORMALS: tl.constexpr, SPECULAR: tl.constexpr,
                  EXACT_OPACITY: tl.constexpr, SKIP: tl.constexpr, BLOCK: tl.constexpr, CUBIC: tl.constexpr):
    """March the ``TILE_H x TILE_W`` pixel rays of tile ``program_id(0)`` (row-major tiles) and write their
    colour over the background. Each lane takes its own ray's samples (jumping over transparent
    blocks) while any lane of the tile is still marching.

    Args (contiguous tensors on one device, ``R = height * width`` row-major pixel rays):
        origins_ptr, dirs_ptr: ``[R, 3]`` float32 world rays, mm and unit directions.
        t0_ptr, t1_ptr, jitter_ptr: ``[R]`` float32 interval to march (mm) and sample offset ``u``.
        out_ptr: ``[R, 3]`` float32, written: the colour over ``(bg_r, bg_g, bg_b)``.
        scalar_ptr: ``[nx, ny, nz]`` float32 intensities, or their cubic B-spline coefficients (``CUBIC``);
            grad_ptr, normals_ptr: ``[3, nx, ny, nz]``
            float32 world gradient (intensity per mm) and label normals; labels_ptr: ``[nx, ny, nz]`` ints.
        lut_ptr: ``[LUT_N, 4]`` float32 TF RGBA; cum_ptr: ``[LUT_N, 4]`` float64 ``(Sigma, K_rgb)``.
        class_rgba_ptr, class_use_ptr: ``[L, 4]``, ``[L]`` float32 class styles by label.
        geom_ptr: ``[24]`` float32 world -> grid_sample ``[3, 3]`` then ``[3]``, world -> voxel likewise
            (row-vector maps ``p @ lin + off``: ``GridSampler._norm_*``, ``_vox_*``).
        go_x_ptr, go_f_ptr: ``[n_go]`` float32 gradient-opacity knots (intensity per mm) and factors.
        block_lo_ptr, block_hi_ptr: ``[nbx, nby, nbz]`` int32 LUT entries bracketing each block's
            intensities, key_ptr: ``[LUT_N + 1]`` float64 (:mod:`.blocks`: ``lut_ranges``, ``skip_key``).
        step: ``dt`` mm; lut_lo, lut_scale: intensity -> LUT index; unit_distance: mm of the TF's
            opacity; min_span: ``PREINT_MIN_SPAN`` entries; ambient .. power: Blinn-Phong coefficients.
        LABELS: 0 none, 1 modulating class table, 2 solid one; GRAD: read the gradient (shading or
            gradient opacity); EXACT_OPACITY: the torch marcher's transmittance after early termination;
            SKIP: cross TF-transparent blocks of ``BLOCK ** 3`` cells in one jump, as the compiled
            marcher does (``_numba_march._ray``), per lane; CUBIC: read the intensity through the
            cubic B-spline of the coefficients ``scalar_ptr`` (the block tables are theirs).
    """
    pid = tl.program_id(0)
    lane = tl.arange(0, TILE_H * TILE_W)
    tiles_w = (width + TILE_W - 1) // TILE_W
    row = (pid // tiles_w) * TILE_H + lane // TILE_W
    col = (pid % tiles_w) * TILE_W + lane % TILE_W
    ok = (row < height) & (col < width)
    ray = row * width + col
    ox = tl.load(origins_ptr + ray * 3, mask=ok, other=0.0)
    oy = tl.load(origins_ptr + ray * 3 + 1, mask=ok, other=0.0)
    oz = tl.load(origins_ptr + ray * 3 + 2, mask=ok, other=0.0)
    dx = tl.load(dirs_ptr + ray * 3, mask=ok, other=0.0)
    dy = tl.load(dirs_ptr + ray * 3 + 1, mask=ok, other=0.0)
    dz = tl.load(dirs_ptr + ray * 3 + 2, mask=ok, other=0.0)
    # first sample and number of samples, as _march_chunk: t_0 + u dt, then every dt up to t_1
    t_first = tl.load(t0_ptr + ray, mask=ok, other=0.0) + tl.load(jitter_ptr + ray, mask=ok, other=0.0) * step
    count = tl.floor(tl.div_rn(tl.load(t1_ptr + ray, mask=ok, other=0.0) - t_first, step)) + 1.0
    n_steps = tl.where(ok, tl.minimum(tl.maximum(count, 0.0), 1e9), 0.0).to(tl.int32)
    # world -> grid_sample voxel axes i, j, k (columns 2, 1, 0 of the normalised map), world -> voxel
    ax, ay, az, a0 = tl.load(geom_ptr + 2), tl.load(geom_ptr + 5), tl.load(geom_ptr + 8), tl.load(geom_ptr + 11)
    bx, by, bz, b0 = tl.load(geom_ptr + 1), tl.load(geom_ptr + 4), tl.load(geom_ptr + 7), tl.load(geom_ptr + 10)
    cx, cy, cz, c0 = tl.load(geom_ptr + 0), tl.load(geom_ptr + 3), tl.load(geom_ptr + 6), tl.load(geom_ptr + 9)
    # world -> voxel (nearest labels; where a ray leaves a block)
    lix, liy, liz, li0 = tl.load(geom_ptr + 12), tl.load(geom_ptr + 15), tl.load(geom_ptr + 18), tl.load(geom_ptr + 21)
    ljx, ljy, ljz, lj0 = tl.load(geom_ptr + 13), tl.load(geom_ptr + 16), tl.load(geom_ptr + 19), tl.load(geom_ptr + 22)
    lkx, lky, lkz, lk0 = tl.load(geom_ptr + 14), tl.load(geom_ptr + 17), tl.load(geom_ptr + 20), tl.load(geom_ptr + 23)
    nvox = nx * ny * nz

    zero = tl.full([TILE_H * TILE_W], 0.0, tl.float32)
    acc_r, acc_g, acc_b = zero, zero, zero
    trans = zero + 1.0
    u_prev = zero                                          # LUT index of the previous sample
    have_prev = n_steps < 0                                # ... if it was read (False)
    idx = tl.full([TILE_H * TILE_W], 0, tl.int32)          # sample index of each lane's ray
    live = n_steps > 0
    if SKIP:
        # the ray in voxel coordinates, float64 (only to find where it leaves a block)
        wi = (((ox.to(tl.float64) * lix) + oy.to(tl.float64) * liy) + oz.to(tl.float64) * liz) + li0
        wj = (((ox.to(tl.float64) * ljx) + oy.to(tl.float64) * ljy) + oz.to(tl.float64) * ljz) + lj0
        wk = (((ox.to(tl.float64) * lkx) + oy.to(tl.float64) * lky) + oz.to(tl.float64) * lkz) + lk0
        ei = (((dx.to(tl.float64) * lix) + dy.to(tl.float64) * liy) + dz.to(tl.float64) * liz)
        ej = (((dx.to(tl.float64) * ljx) + dy.to(tl.float64) * ljy) + dz.to(tl.float64) * ljz)
        ek = (((dx.to(tl.float64) * lkx) + dy.to(tl.float64) * lky) + dz.to(tl.float64) * lkz)
        inv_ei = 1.0 / tl.where(ei != 0.0, ei, 1.0)       # (unused where the ray is parallel to an axis)
        inv_ej = 1.0 / tl.where(ej != 0.0, ej, 1.0)
        inv_ek = 1.0 / tl.where(ek != 0.0, ek, 1.0)
        b_prev = idx - 1                                   # block of the previous sample (none)
        lo_prev, hi_prev = idx, idx                        # ... its LUT range
    while _any(live):
        t = t_first + idx.to(tl.float32) * step
        px, py, pz = ox + t * dx, oy + t * dy, oz + t * dz
        vi = _grid_axis(px, py, pz, ax, ay, az, a0, nx)
        vj = _grid_axis(px, py, pz, bx, by, bz, b0, ny)
        vk = _grid_axis(px, py, pz, cx, cy, cz, c0, nz)
        sampled = live
        if SKIP:
            # The segment runs from the previous sample to this one: when the TF has no extinction
            # over the two blocks' intensity ranges, alpha is 0 without reading the volume, and so it
            # is up to the last sample before the ray leaves this block (the rounding of where it
            # leaves is far below the one voxel the ranges are widened by): jump past it.
            bi = tl.minimum(vi.to(tl.int32), nx - 2) // BLOCK
            bj = tl.minimum(vj.to(tl.int32), ny - 2) // BLOCK
            bk = tl.minimum(vk.to(tl.int32), nz - 2) // BLOCK
            blk = (bi * nby + bj) * nbz + bk
            blo = tl.load(block_lo_ptr + blk, mask=live, other=0)
            bhi = tl.load(block_hi_ptr + blk, mask=live, other=0)
            clear = tl.load(key_ptr + blo, mask=live, other=0.0) == tl.load(key_ptr + bhi, mask=live, other=0.0)
            both = (tl.load(key_ptr + tl.minimum(blo, lo_prev), mask=live, other=0.0)
                    == tl.load(key_ptr + tl.maximum(bhi, hi_prev), mask=live, other=0.0))
            skip = live & (idx > 0) & clear & ((blk == b_prev) | both)
            b_prev = tl.where(live, blk, b_prev)
            lo_prev = tl.where(live, blo, lo_prev)
            hi_prev = tl.where(live, bhi, hi_prev)
            sampled = live & ~skip
            leave = skip & (trans >= _EARLY_STOP)
            jump = idx * 0
            if _any(leave):
                t_out = tl.minimum(tl.minimum(_exit(wi, ei, inv_ei, bi, nbx - 1, BLOCK),
                                              _exit(wj, ej, inv_ej, bj, nby - 1, BLOCK)),
                                   _exit(wk, ek, inv_ek, bk, nbz - 1, BLOCK))
                last = tl.minimum((t_out - t_first.to(tl.float64)) / step, n_steps.to(tl.float64))
                jump = tl.where(leave, tl.floor(last).to(tl.int32) + 1, 0)
        ub = _lut_index(_scalar(scalar_ptr, vi, vj, vk, nx, ny, nz, sampled, CUBIC), lut_lo, lut_scale, LUT_N)
        # The segment's front end is the previous sample's point up to float32 rounding: when the
        # TF has no extinction anywhere between their indices (one entry of margin), alpha is 0.
        lo = tl.maximum(tl.floor(tl.minimum(u_prev, ub)) - 1.0, 0.0).to(tl.int32)
        hi = tl.minimum(tl.ceil(tl.maximum(u_prev, ub)) + 1.0, LUT_N - 1.0).to(tl.int32)
        flat = tl.load(cum_ptr + lo * 4, mask=sampled, other=0.0) == tl.load(cum_ptr + hi * 4, mask=sampled, other=0.0)
        need = sampled & (~have_prev | ~flat)
        u_prev = ub
        have_prev = tl.where(live, sampled, have_prev)
        if LABELS == 2:
            # nearest voxel (GridSampler.nearest_index): a visible solid class shows whatever the TF says
            li = tl.minimum(tl.maximum(_rint(((px * lix + py * liy) + pz * liz) + li0), 0.0), nx - 1.0).to(tl.int32)
            lj = tl.minimum(tl.maximum(_rint(((px * ljx + py * ljy) + pz * ljz) + lj0), 0.0), ny - 1.0).to(tl.int32)
            lk = tl.minimum(tl.maximum(_rint(((px * lkx + py * lky) + pz * lkz) + lk0), 0.0), nz - 1.0).to(tl.int32)
            lab = tl.load(labels_ptr + (li * ny + lj) * nz + lk, mask=sampled, other=0).to(tl.int32)
            use = tl.load(class_use_ptr + lab, mask=sampled, other=0.0)
            class_a = tl.load(class_rgba_ptr + lab * 4 + 3, mask=sampled, other=0.0)
            need = sampled & tl.where(use > 0.0, class_a > 0.0, need & (class_a > 0.0))
        if LABELS == 1:
            # a modulating class table only scales and tints what the TF shows (read only where that
            # is something): the styles of the 8 voxels around the sample, blended
            class_a, use, kr, kg, kb = _classes(labels_ptr, class_rgba_ptr, class_use_ptr, vi, vj, vk,
                                                nx, ny, nz, need)
            need = need & (class_a > 0.0)
        if _any(need):
            # the exact front end p - dt d, as ScalarField reads it
            fx, fy, fz = px - step * dx, py - step * dy, pz - step * dz
            uf = _lut_index(_scalar(scalar_ptr, _grid_axis(fx, fy, fz, ax, ay, az, a0, nx),
                                    _grid_axis(fx, fy, fz, bx, by, bz, b0, ny),
                                    _grid_axis(fx, fy, fz, cx, cy, cz, c0, nz), nx, ny, nz, need, CUBIC),
                            lut_lo, lut_scale, LUT_N)
            r64, g64, b64, a64 = _segment(uf, ub, need, lut_ptr, cum_ptr, step, unit_distance, min_span,
                                          PIECES, LUT_N)
            r, g, b, alpha = r64.to(tl.float32), g64.to(tl.float32), b64.to(tl.float32), a64.to(tl.float32)
            if LABELS == 2:
                alpha = tl.where(use > 0.0, class_a, alpha * class_a)
                r = _lerp(r, tl.load(class_rgba_ptr + lab * 4, mask=need, other=0.0), use)
                g = _lerp(g, tl.load(class_rgba_ptr + lab * 4 + 1, mask=need, other=0.0), use)
                b = _lerp(b, tl.load(class_rgba_ptr + lab * 4 + 2, mask=need, other=0.0), use)
            if LABELS == 1:
                alpha = alpha * class_a
                r, g, b = r * (1.0 - use) + kr, g * (1.0 - use) + kg, b * (1.0 - use) + kb
            if GRAD:
                # the gradient only where something is visible (most samples of a CT are not)
                vis = need & (alpha > 0.0)
                gx = _trilinear(grad_ptr, vi, vj, vk, nx, ny, nz, vis)
                gy = _trilinear(grad_ptr + nvox, vi, vj, vk, nx, ny, nz, vis)
                gz = _trilinear(grad_ptr + 2 * nvox, vi, vj, vk, nx, ny, nz, vis)
                gmag = tl.sqrt_rn((gx * gx + gy * gy) + gz * gz)
                if GRAD_OPACITY:
                    alpha = alpha * _interp(gmag, go_x_ptr, go_f_ptr, n_go)
                if SHADE:
                    if NORMALS:
                        # solid labels are lit by the boundary of their own smoothed mask
                        own = use > 0.0
                        gx = tl.where(own, _trilinear(normals_ptr, vi, vj, vk, nx, ny, nz, vis & own), gx)
                        gy = tl.where(own, _trilinear(normals_ptr + nvox, vi, vj, vk, nx, ny, nz, vis & own), gy)
                        gz = tl.where(own, _trilinear(normals_ptr + 2 * nvox, vi, vj, vk, nx, ny, nz, vis & own), gz)
                        gmag = tl.sqrt_rn((gx * gx + gy * gy) + gz * gz)
                    # headlight Blinn-Phong, two-sided: c (ambient + diffuse |n.d|) + specular |n.d|^power
                    cos = tl.abs((gx * dx + gy * dy) + gz * dz) / tl.maximum(gmag, 1e-6)
                    cos = tl.where(gmag > 1e-6, cos, 0.0)
                    lit = ambient + diffuse * cos
                    r, g, b = r * lit, g * lit, b * lit
                    if SPECULAR:
                        spec = specular * tl.exp2(power * tl.log2(tl.maximum(cos, 1e-6)))
                        r, g, b = r + spec, g + spec, b + spec
            sigma = -_log1p(-tl.minimum(tl.maximum(alpha, 0.0), _MAX_OPACITY)) / unit_distance
            a = tl.where(need, 1.0 - tl.exp(-sigma * step), 0.0)
            # below the early stop the torch marcher zeroes the alpha: no colour (and see `live`)
            w = tl.where(trans >= _EARLY_STOP, trans * a, 0.0)
            acc_r += w * r
            acc_g += w * g
            acc_b += w * b
            trans = trans * (1.0 - a)
        idx += 1
        if SKIP:
            idx = tl.maximum(idx, jump)
        # A ray stops once transparent below the early stop; the torch marcher notices that only at
        # the end of its segments of SEGMENT samples and, meanwhile, keeps multiplying the
        # transmittance (except by the segment's last sample): that shows over a non-black background.
        low = trans < _EARLY_STOP
        if EXACT_OPACITY:
            low = low & (((idx % SEGMENT) == 0) | ((idx % SEGMENT) == SEGMENT - 1))
        live = live & (idx < n_steps) & ~low
    keep = 1.0 - (1.0 - trans)                              # render_tensor's 1 - opacity, in float32
    tl.store(out_ptr + ray * 3, acc_r + keep * bg_r, mask=ok)
    tl.store(out_ptr + ray * 3 + 1, acc_g + keep * bg_g, mask=ok)
    tl.store(out_ptr + ray * 3 + 2, acc_b + keep * bg_b, mask=ok)


@dataclass
class _Tables:
    """The kernel's volume- and scene-side arguments, from one pre-integrated field (no volume copies)."""

    prepared: weakref.ref         # the renderer's prepared volume they were made from
    key: tuple                    # (TF, class table, cubic)
    arrays: tuple                 # scalar, gradient, label normals, labels, LUT, cumulative tables, class
                                  # RGBA and use, geometry, gradient-opacity knots and factors, block tables
    sizes: tuple                  # nx, ny, nz, gradient-opacity knots, blocks along x, y, z
    numbers: tuple                # LUT map, unit distance, min span, shading
    flags: dict                   # the kernel's compile-time switches


#: per renderer and reconstruction (``{cubic: _Tables}``): the tables of the last scene it marched,
#: rebuilt when the volume, mix, hidden classes, TF or class table change, as
#: ``CompiledRaymarchRenderer`` does; not the step (the pre-integration tables do not depend on it)
#: and not when the camera stops (cubic) and moves again (trilinear): both are kept
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _tables(renderer: RaymarchRenderer, scene: Scene, step: float, cubic: bool) -> _Tables:
    """The kernel's view of ``renderer.field(scene, preintegrate=step, cubic=cubic)``, kept per renderer
    and reconstruction."""
    with renderer._lock:                         # one thread at a time builds a renderer's tables
        return _tables_locked(renderer, scene, step, cubic)


def _tables_locked(renderer: RaymarchRenderer, scene: Scene, step: float, cubic: bool) -> _Tables:
    p = renderer.prepare(scene)
    key = (scene.tf, scene.classes if p.labels is not None else None, cubic)
    kept = {c: t for c, t in _TABLES.get(renderer, {}).items() if t.prepared() is p and t.key[:2] == key[:2]}
    _TABLES[renderer] = kept
    if cubic in kept:
        return kept[cubic]
    field = renderer.field(scene, preintegrate=step, cubic=cubic)
    f32 = torch.float32
    sampler, tf, sh = field.sampler, field.tf, field.tf.shading
    scalar = (field.coefficients if cubic else sampler.grid[0]).detach().to(f32).contiguous()
    if 3 * scalar.numel() >= 2 ** 31:
        raise ValueError(f"volume of {sampler.shape} voxels: too large for the kernel's int32 offsets")

    def vol(x: torch.Tensor | None) -> torch.Tensor:
        return scalar if x is None else x.detach().to(f32).contiguous()         # scalar: never read
    labels, solid = field.labels, field.labels is not None and field._solid
    if labels is not None:
        class_rgba, class_use = field._class_rgba.to(f32).contiguous(), field._class_use.to(f32).contiguous()
    else:
        labels, class_rgba, class_use = scalar, scalar, scalar
    geom = torch.cat([sampler._norm_linear.reshape(-1), sampler._norm_offset, sampler._vox_linear.reshape(-1),
                      sampler._vox_offset]).to(f32)
    cum = torch.cat([field._cum_sigma[:, None], field._cum_emit], dim=1).to(torch.float64).contiguous()
    knots = list(tf.gradient_opacity)
    knots = knots * 2 if len(knots) == 1 else knots                     # a constant: two equal knots
    go = torch.tensor(knots, dtype=f32, device=renderer.device).T.contiguous()
    block_lo, block_hi, skip_key = blocks.field_blocks(field, blocks.block_ranges(scalar, cubic=cubic))
    tab = _Tables(
        prepared=weakref.ref(p), key=key,
        arrays=(scalar, vol(field.gradient), vol(field.label_normals), labels, field._lut.to(f32).contiguous(), cum,
                class_rgba, class_use, geom, go[0], go[1], block_lo, block_hi, skip_key),
        sizes=(*sampler.shape, len(knots), *block_lo.shape),
        numbers=(float(field._lut_lo), float(field._lut_scale),
                 float(tf.unit_distance), float(ScalarField.PREINT_MIN_SPAN), float(sh.ambient), float(sh.diffuse),
                 float(sh.specular), float(sh.power)),
        flags=dict(PIECES=int(ScalarField.PREINT_PIECES), LUT_N=LUT_SIZE, SEGMENT=SEGMENT,
                   LABELS=0 if field.labels is None else 2 if solid else 1, GRAD=field.gradient is not None,
                   GRAD_OPACITY=bool(field.use_grad_opacity), SHADE=bool(field.shade),
                   NORMALS=field.label_normals is not None, SPECULAR=bool(field.shade and sh.specular > 0),
                   CUBIC=cubic))
    kept[cubic] = tab
    return tab


@torch.no_grad()
def march_triton(renderer: RaymarchRenderer, scene: Scene, camera: OrbitCamera, quality: Quality = FULL,
                 frame: int = 0, *, tile: tuple[int, int] = TILE, skip: bool = True) -> torch.Tensor:
    """``[H', W', 3]`` float32 image of jittered frame ``frame`` over the scene's background: what
    ``renderer.render_tensor(scene, camera, quality, frame=frame)`` computes with the default
    pre-integrated field, in one kernel launch (forward only).

    Args:
        renderer: the torch renderer whose device (CUDA, or the CPU under ``TRITON_INTERPRET=1``),
            prepared volume, field tables and visible box are used; the kernel's tables are kept per
            renderer until the scene's volume, mix, hidden classes, TF or class table change.
        tile: pixel rows x columns per program (their product a power of two >= 32: one lane each).
        skip: cross TF-transparent blocks in one jump (the same image; off only to measure it).
    """
    cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
    h, w = cam.height, cam.width
    box = renderer._visible_box(scene, renderer.prepare(scene))
    if box is None:                                 # nothing visible: the background
        return torch.tensor(scene.background, dtype=torch.float32, device=renderer.device).expand(h, w, 3).clone()
    step = quality.step * min(scene.volume.spacing)
    tab = _tables(renderer, scene, step, quality.cubic)
    rays = renderer.rays(scene, cam, step, box, frame)
    out = torch.empty(h * w, 3, dtype=torch.float32, device=renderer.device)
    th, tw = tile
    _march_kernel[(triton.cdiv(h, th) * triton.cdiv(w, tw),)](
        *(x.contiguous() for x in rays), out, *tab.arrays, h, w, *tab.sizes, float(step), *tab.numbers,
        *(float(c) for c in scene.background), TILE_H=th, TILE_W=tw, EXACT_OPACITY=bool(any(scene.background)),
        SKIP=bool(skip), BLOCK=blocks.BLOCK,
        num_warps=max(1, th * tw // 32), **tab.flags)
    return out.reshape(h, w, 3)
