r"""Pure-torch twin of gsplat's 3DGS rasteriser (``rasterization(..., covars=, packed=False)``).

Same maths as gsplat's CUDA kernels (``ProjectionEWA3DGSFused.cu``, ``RasterizeToPixels3DGSFwd.cu``),
step by step, so it is both the CPU fallback and the test oracle; autograd gives the gradients.

Projection (per view, per Gaussian), OpenCV camera, pinhole ``K``:

- ``t = R mu + t_view``; culled unless ``near < t_z < far``;
- ``Sigma_c = R Sigma R^T``; ``Sigma_2d = J Sigma_c J^T + eps2d I`` (``eps2d = 0.3`` px^2, the
  "classic" / antialiasing-off mode: opacity is *not* rescaled by ``sqrt(det/det_blur)``), with the
  perspective Jacobian ``J = [[fx/z, 0, -fx x/z^2], [0, fy/z, -fy y/z^2]]`` where ``x/z, y/z`` are
  clamped to 1.3x the field of view (gsplat's guard for Gaussians far off screen);
- ``mean_2d = (fx x/z + cx, fy y/z + cy)``; conic = ``Sigma_2d^-1``; culled if ``det <= 0``;
- opacity-aware extent (gsplat >= 1.5): ``k = min(3.33, sqrt(2 ln(255 o)))`` and
  ``radius = ceil(k sqrt(diag Sigma_2d))`` px; culled if ``o < 1/255`` or the box misses the image.
  Because ``o e^{-q/2} >= 1/255`` implies ``q <= k^2``, every pixel a Gaussian can touch lies in
  its box: the 3.33-sigma cut never truncates a visible contribution, and tiling changes nothing.

Compositing (per pixel centre ``p = (u + 0.5, v + 0.5)``, Gaussians in ascending camera depth, ties
by index): ``alpha = min(0.99, o exp(-q/2))``, ``q = (p - m)^T conic (p - m)``; skipped if
``alpha < 1/255``; the pixel stops *before* a Gaussian that would take ``T`` to ``<= 1e-4``;
``C = sum alpha_i T_i c_i + T_final * background``; returned alpha is ``1 - T_final``.

Memory stays bounded: pixels are processed in 16x16 tiles, several tiles at a time, and each
tile's depth-sorted list in chunks, carrying ``T`` across chunks.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

TILE = 16
EPS2D = 0.3
NEAR_PLANE = 0.01
FAR_PLANE = 1e10
ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.99  # gsplat >= 1.6 (1.5.x clamps at 0.999; identical whenever opacities < 0.99)
T_THRESHOLD = 1e-4
EXTEND = 3.33


class Projected(NamedTuple):
    """2D Gaussians of V views (gsplat's ``fully_fused_projection`` outputs, ``packed=False``)."""

    radii: torch.Tensor  # [V, N, 2] int32, 0 = culled
    means2d: torch.Tensor  # [V, N, 2] px
    depths: torch.Tensor  # [V, N] camera z
    conics: torch.Tensor  # [V, N, 3] (a, b, c) of the inverse 2D covariance [[a, b], [b, c]]


def _fully_fused_projection(
    means: torch.Tensor,  # [V, N, 3]
    covars: torch.Tensor,  # [V, N, 3, 3]
    opacities: torch.Tensor,  # [V, N]
    viewmats: torch.Tensor,  # [V, 4, 4]
    Ks: torch.Tensor,  # [V, 3, 3]  # noqa: N803
    width: int,
    height: int,
    eps2d: float = EPS2D,
    near_plane: float = NEAR_PLANE,
    far_plane: float = FAR_PLANE,
) -> Projected:
    """Project 3D Gaussians to the image plane of each view (differentiable in means2d/conics)."""
    r, t = viewmats[:, None, :3, :3], viewmats[:, None, :3, 3]  # [V, 1, 3, 3], [V, 1, 3]
    means_c = (r @ means[..., None])[..., 0] + t  # [V, N, 3]
    covars_c = r @ covars @ r.transpose(-1, -2)  # [V, N, 3, 3]
    x, y, z = means_c.unbind(-1)  # [V, N]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [V, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy
    lim_x_pos, lim_x_neg = (width - cx) / fx + 0.3 * tan_fovx, cx / fx + 0.3 * tan_fovx
    lim_y_pos, lim_y_neg = (height - cy) / fy + 0.3 * tan_fovy, cy / fy + 0.3 * tan_fovy
    rz = 1.0 / torch.where(z != 0, z, torch.ones_like(z))  # z = 0 is culled; keep its gradients finite
    tx = z * torch.minimum(lim_x_pos, torch.maximum(-lim_x_neg, x * rz))
    ty = z * torch.minimum(lim_y_pos, torch.maximum(-lim_y_neg, y * rz))
    zero = torch.zeros_like(z)
    jac = torch.stack([fx * rz, zero, -fx * tx * rz * rz, zero, fy * rz, -fy * ty * rz * rz], -1)
    jac = jac.reshape(*z.shape, 2, 3)  # [V, N, 2, 3]
    cov2d = jac @ covars_c @ jac.transpose(-1, -2)  # [V, N, 2, 2]
    a = cov2d[..., 0, 0] + eps2d
    c = cov2d[..., 1, 1] + eps2d
    b = 0.5 * (cov2d[..., 0, 1] + cov2d[..., 1, 0])
    det = a * c - b * b
    det_safe = torch.where(det > 0, det, torch.ones_like(det))
    conics = torch.stack([c / det_safe, -b / det_safe, a / det_safe], -1)  # [V, N, 3]
    means2d = torch.stack([fx * x * rz + cx, fy * y * rz + cy], -1)  # [V, N, 2]

    with torch.no_grad():
        o = opacities.detach()
        extend = torch.sqrt(2.0 * torch.log(o.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD)).clamp(max=EXTEND)
        rad_x = torch.ceil(extend * torch.sqrt(a.detach().clamp_min(0)))
        rad_y = torch.ceil(extend * torch.sqrt(c.detach().clamp_min(0)))
        m2 = means2d.detach()
        valid = (z > near_plane) & (z < far_plane) & (det > 0) & (o >= ALPHA_THRESHOLD) \
            & ((rad_x > 0) | (rad_y > 0)) \
            & (m2[..., 0] + rad_x > 0) & (m2[..., 0] - rad_x < width) \
            & (m2[..., 1] + rad_y > 0) & (m2[..., 1] - rad_y < height) \
            & torch.isfinite(m2).all(-1)
        radii = torch.stack([rad_x, rad_y], -1).where(valid[..., None], 0).to(torch.int32)
    return Projected(radii, means2d, z, conics)


class TileBins(NamedTuple):
    """Gaussian ids per tile, front to back (gsplat's ``isect_tiles`` + ``isect_offset_encode``)."""

    offsets: torch.Tensor  # [V * n_tiles + 1] int64 start of each tile's list in flat_ids
    flat_ids: torch.Tensor  # [M] int64 index into the flattened [V * N] Gaussians
    tiles_x: int
    tiles_y: int
    tile: int


@torch.no_grad()
def _isect_tiles(radii: torch.Tensor,  # [V, N, 2]
                 means2d: torch.Tensor,  # [V, N, 2]
                 depths: torch.Tensor,  # [V, N]
                 width: int, height: int, tile: int = TILE) -> TileBins:
    """Bin Gaussians into the tiles their pixel box overlaps, each tile sorted by depth (stable)."""
    v, n = depths.shape
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    n_tiles = tiles_x * tiles_y
    device = depths.device
    m2, r = means2d.detach().reshape(-1, 2), radii.reshape(-1, 2).to(means2d.dtype)
    lo = torch.floor((m2 - r) / tile).long()
    hi = torch.ceil((m2 + r) / tile).long()
    x0, x1 = lo[:, 0].clamp(0, tiles_x), hi[:, 0].clamp(0, tiles_x)
    y0, y1 = lo[:, 1].clamp(0, tiles_y), hi[:, 1].clamp(0, tiles_y)
    counts = (x1 - x0) * (y1 - y0) * (radii.reshape(-1, 2) > 0).all(-1)
    # front-to-back order within each view; stable sorts keep ties in index order (like gsplat)
    view_of = torch.arange(v, device=device).repeat_interleave(n)
    order = torch.argsort(depths.detach().reshape(-1), stable=True)
    order = order[torch.argsort(view_of[order], stable=True)]
    order = order[counts[order] > 0]
    cnt = counts[order]
    total = int(cnt.sum())
    gid = order.repeat_interleave(cnt)  # [M]
    start = torch.cumsum(cnt, 0) - cnt
    local = torch.arange(total, device=device) - start.repeat_interleave(cnt)
    w = (x1 - x0)[gid]
    tile_id = (y0[gid] + local // w) * tiles_x + x0[gid] + local % w
    key = view_of[gid] * n_tiles + tile_id
    perm = torch.argsort(key, stable=True)
    flat_ids, key = gid[perm], key[perm]
    per_tile = torch.bincount(key, minlength=v * n_tiles)
    offsets = torch.zeros(v * n_tiles + 1, dtype=torch.int64, device=device)
    offsets[1:] = torch.cumsum(per_tile, 0)
    return TileBins(offsets, flat_ids, tiles_x, tiles_y, tile)


def _rasterize_to_pixels(
    means2d: torch.Tensor,  # [V, N, 2]
    conics: torch.Tensor,  # [V, N, 3]
    colors: torch.Tensor,  # [V, N, D]
    opacities: torch.Tensor,  # [V, N]
    width: int,
    height: int,
    bins: TileBins,
    backgrounds: torch.Tensor | None = None,  # [V, D]
    max_elems: int = 1 << 18,
    chunk: int = 256,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Composite tiles front to back. Returns ``(colors [V, H, W, D], alphas [V, H, W, 1])``.

    Tiles are grouped by list length (longest first) so padding stays small; a group of ``B``
    tiles with chunks of ``K`` Gaussians holds ``B * tile^2 * K <= max_elems`` pixel-Gaussian
    pairs. The quadratic form is separable over a tile's rows and columns:
    ``q/2 = a dx^2/2 + c dy^2/2 + b dx dy`` is built from ``[B, tile, K]`` pieces.
    """
    v, n, d = colors.shape
    tile = bins.tile
    dtype, device = means2d.dtype, means2d.device
    n_tiles_view = bins.tiles_x * bins.tiles_y
    means2d_f, conics_f = means2d.reshape(-1, 2), conics.reshape(-1, 3)
    colors_f, opac_f = colors.reshape(-1, d), opacities.reshape(-1)
    tile_len = bins.offsets[1:] - bins.offsets[:-1]  # [V * n_tiles]
    busy = torch.nonzero(tile_len > 0)[:, 0]
    busy = busy[torch.argsort(tile_len[busy], descending=True, stable=True)]
    centres = torch.arange(tile, dtype=dtype, device=device) + 0.5  # [tile] pixel centres in a tile
    zero = torch.zeros((), dtype=dtype, device=device)

    out_rgb, out_t, out_tiles = [], [], []
    p = tile * tile
    i = 0
    lens = tile_len[busy].tolist()
    while i < len(busy):
        k = min(lens[i], chunk)
        tiles = busy[i:i + max(1, max_elems // (p * k))]
        i += len(tiles)
        b = len(tiles)
        tlen, tstart = tile_len[tiles], bins.offsets[tiles]  # [B]
        local_tile = tiles % n_tiles_view
        xs = (local_tile % bins.tiles_x * tile).to(dtype)[:, None] + centres  # [B, tile]
        ys = (local_tile // bins.tiles_x * tile).to(dtype)[:, None] + centres  # [B, tile]
        rgb = torch.zeros(b, p, d, dtype=dtype, device=device)
        trans = torch.ones(b, p, dtype=dtype, device=device)
        done = torch.zeros(b, p, dtype=torch.bool, device=device)
        for k0 in range(0, int(tlen.max()), k):
            pos = k0 + torch.arange(k, device=device)  # [K]
            inside = pos[None, :] < tlen[:, None]  # [B, K]
            g = bins.flat_ids[torch.where(inside, tstart[:, None] + pos, 0)]  # [B, K]
            m, cn = means2d_f[g], conics_f[g]  # [B, K, 2], [B, K, 3]
            dx = m[:, None, :, 0] - xs[:, :, None]  # [B, tile(col), K]
            dy = m[:, None, :, 1] - ys[:, :, None]  # [B, tile(row), K]
            qa = 0.5 * cn[:, None, :, 0] * (dx * dx)  # [B, col, K]
            qc = 0.5 * cn[:, None, :, 2] * (dy * dy)  # [B, row, K]
            bdx = cn[:, None, :, 1] * dx  # [B, col, K]
            sigma = ((qa[:, None] + qc[:, :, None]) + bdx[:, None] * dy[:, :, None]).reshape(b, p, k)
            opac = torch.where(inside, opac_f[g], zero)[:, None, :]  # [B, 1, K]; padding never shows
            alpha = torch.clamp(opac * torch.exp(-sigma), max=MAX_ALPHA)  # [B, P, K]
            alpha = torch.where((sigma >= 0) & (alpha >= ALPHA_THRESHOLD), alpha, zero)
            one_minus = 1.0 - alpha
            cp = torch.cumprod(one_minus, dim=-1)  # [B, P, K]
            t0 = torch.where(done, zero, trans)[..., None]  # finished pixels take nothing more
            t_after = t0 * cp
            keep = t_after > T_THRESHOLD  # a prefix of the list: T only decreases
            t_before = t0 * torch.cat([torch.ones_like(cp[..., :1]), cp[..., :-1]], -1)
            weight = torch.where(keep, alpha * t_before, zero)
            rgb = rgb + torch.einsum("bpk,bkd->bpd", weight, colors_f[g])
            trans = trans * torch.where(keep, one_minus, 1.0).prod(-1)
            done = done | ~keep[..., -1]
            if bool(done.all()):
                break
        out_rgb.append(rgb)
        out_t.append(trans)
        out_tiles.append(tiles)

    return _assemble(out_tiles, out_rgb, out_t, bins, v, d, width, height, backgrounds, dtype, device)


def _assemble(out_tiles, out_rgb, out_t, bins: TileBins, v: int, d: int, width: int, height: int,
              backgrounds, dtype, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-tile results -> images, adding the background behind what is left of T."""
    tile, p = bins.tile, bins.tile * bins.tile
    n_tiles = v * bins.tiles_x * bins.tiles_y
    rgb_all = torch.zeros(n_tiles, p, d, dtype=dtype, device=device)
    t_all = torch.ones(n_tiles, p, dtype=dtype, device=device)
    if out_tiles:
        idx = torch.cat(out_tiles)
        rgb_all = rgb_all.index_copy(0, idx, torch.cat(out_rgb))
        t_all = t_all.index_copy(0, idx, torch.cat(out_t))
    shape = (v, bins.tiles_y, bins.tiles_x, tile, tile)
    size = (v, bins.tiles_y * tile, bins.tiles_x * tile)
    rgb_img = rgb_all.reshape(*shape, d).permute(0, 1, 3, 2, 4, 5).reshape(*size, d)[:, :height, :width]
    t_img = t_all.reshape(shape).permute(0, 1, 3, 2, 4).reshape(size)[:, :height, :width, None]
    if backgrounds is not None:
        rgb_img = rgb_img + t_img * backgrounds[:, None, None, :]
    return rgb_img, 1.0 - t_img


def rasterize_torch(
    means: torch.Tensor,  # [V, N, 3]
    covars: torch.Tensor,  # [V, N, 3, 3]
    opacities: torch.Tensor,  # [V, N]
    colors: torch.Tensor,  # [V, N, D]
    viewmats: torch.Tensor,  # [V, 4, 4]
    Ks: torch.Tensor,  # [V, 3, 3]  # noqa: N803
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,  # [V, D]
    tile: int = 8,
    max_elems: int = 1 << 18,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Differentiable twin of ``gsplat.rasterization`` (classic mode): ``([V, H, W, D], [V, H, W, 1])``.

    ``tile`` does not change the result (every visible pixel of a Gaussian lies in its box);
    8x8 tiles evaluate about half as many pixel-Gaussian pairs as gsplat's 16x16 on small splats.
    """
    proj = _fully_fused_projection(means, covars, opacities, viewmats, Ks, width, height)
    bins = _isect_tiles(proj.radii, proj.means2d, proj.depths, width, height, tile)
    return _rasterize_to_pixels(proj.means2d, proj.conics, colors, opacities, width, height, bins,
                                backgrounds, max_elems=max_elems)
