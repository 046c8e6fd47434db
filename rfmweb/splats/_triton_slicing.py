r"""6DGS slicing fused into one Triton kernel: the GPU path of :func:`rfmweb.splats.slicing.slice_6d`.

One program handles ``BLOCK`` splats of one view: the direction from the camera centre, the
conditional mean (Schur complement gain, precomputed once per set of splats by
:func:`~rfmweb.splats.slicing.conditional_parts`), the conditional opacity and the degree-1 SH
colour, in registers: one read of each splat's 40 floats and one write of its 10 outputs, where the
torch twin launches a dozen kernels and materialises every intermediate ``[V, N, 3]`` tensor.

The torch function is the oracle: ``tests/test_triton_kernels.py`` runs this kernel under
``TRITON_INTERPRET=1`` on the CPU against it. Triton is imported only when this module is (on CUDA,
or by that test).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .slicing import SH_C0, SH_C1, ConditionalParts, SlicedGaussians

BLOCK = 256


@triton.jit
def _slice_kernel(means_ptr, dir_means_ptr, gain_ptr, sd_inv_ptr, logits_ptr, sh_ptr, centres_ptr,  # inputs
                  out_means_ptr, out_opac_ptr, out_rgb_ptr, out_dirs_ptr,                             # outputs
                  n, lambda_opa, sh_c0, sh_c1, tiny, BLOCK: tl.constexpr):
    view = tl.program_id(1)
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    ok = i < n
    cx = tl.load(centres_ptr + view * 3)
    cy = tl.load(centres_ptr + view * 3 + 1)
    cz = tl.load(centres_ptr + view * 3 + 2)
    px = tl.load(means_ptr + i * 3, mask=ok, other=0.0)
    py = tl.load(means_ptr + i * 3 + 1, mask=ok, other=0.0)
    pz = tl.load(means_ptr + i * 3 + 2, mask=ok, other=0.0)
    # unit direction from the camera centre to the splat (any unit vector at the centre itself)
    dx, dy, dz = px - cx, py - cy, pz - cz
    inv = 1.0 / tl.sqrt(tl.maximum(dx * dx + dy * dy + dz * dz, tiny))
    dx, dy, dz = dx * inv, dy * inv, dz * inv
    ex = dx - tl.load(dir_means_ptr + i * 3, mask=ok, other=0.0)
    ey = dy - tl.load(dir_means_ptr + i * 3 + 1, mask=ok, other=0.0)
    ez = dz - tl.load(dir_means_ptr + i * 3 + 2, mask=ok, other=0.0)
    # mu_cond = mu_p + (S_pd S_d^-1) delta, row-major 3x3
    g = gain_ptr + i * 9
    mx = px + tl.load(g, mask=ok, other=0.0) * ex + tl.load(g + 1, mask=ok, other=0.0) * ey \
        + tl.load(g + 2, mask=ok, other=0.0) * ez
    my = py + tl.load(g + 3, mask=ok, other=0.0) * ex + tl.load(g + 4, mask=ok, other=0.0) * ey \
        + tl.load(g + 5, mask=ok, other=0.0) * ez
    mz = pz + tl.load(g + 6, mask=ok, other=0.0) * ex + tl.load(g + 7, mask=ok, other=0.0) * ey \
        + tl.load(g + 8, mask=ok, other=0.0) * ez
    # Mahalanobis distance of the direction: delta^T S_d^-1 delta
    s = sd_inv_ptr + i * 9
    sx = tl.load(s, mask=ok, other=0.0) * ex + tl.load(s + 1, mask=ok, other=0.0) * ey \
        + tl.load(s + 2, mask=ok, other=0.0) * ez
    sy = tl.load(s + 3, mask=ok, other=0.0) * ex + tl.load(s + 4, mask=ok, other=0.0) * ey \
        + tl.load(s + 5, mask=ok, other=0.0) * ez
    sz = tl.load(s + 6, mask=ok, other=0.0) * ex + tl.load(s + 7, mask=ok, other=0.0) * ey \
        + tl.load(s + 8, mask=ok, other=0.0) * ez
    maha = ex * sx + ey * sy + ez * sz
    logit = tl.load(logits_ptr + i, mask=ok, other=0.0)
    opac = tl.exp(-lambda_opa * maha) / (1.0 + tl.exp(-logit))
    out = view * n + i
    tl.store(out_means_ptr + out * 3, mx, mask=ok)
    tl.store(out_means_ptr + out * 3 + 1, my, mask=ok)
    tl.store(out_means_ptr + out * 3 + 2, mz, mask=ok)
    tl.store(out_dirs_ptr + out * 3, dx, mask=ok)
    tl.store(out_dirs_ptr + out * 3 + 1, dy, mask=ok)
    tl.store(out_dirs_ptr + out * 3 + 2, dz, mask=ok)
    tl.store(out_opac_ptr + out, opac, mask=ok)
    # degree-1 SH, [N, 4, 3] coefficients: C0 sh0 - C1 y sh1 + C1 z sh2 - C1 x sh3 + 0.5, clamped >= 0
    for c in tl.static_range(3):
        h = sh_ptr + i * 12 + c
        rgb = sh_c0 * tl.load(h, mask=ok, other=0.0) - sh_c1 * dy * tl.load(h + 3, mask=ok, other=0.0) \
            + sh_c1 * dz * tl.load(h + 6, mask=ok, other=0.0) - sh_c1 * dx * tl.load(h + 9, mask=ok, other=0.0) + 0.5
        tl.store(out_rgb_ptr + out * 3 + c, tl.maximum(rgb, 0.0), mask=ok)


def slice_6d_fused(means: torch.Tensor,  # [N, 3]
                   dir_means: torch.Tensor,  # [N, 3]
                   opacity_logits: torch.Tensor,  # [N]
                   sh: torch.Tensor,  # [N, 4, 3]
                   parts: ConditionalParts,
                   centres: torch.Tensor,  # [V, 3]
                   lambda_opa: float,
                   labels: torch.Tensor | None = None,  # [N]
                   ) -> SlicedGaussians:
    """:func:`~rfmweb.splats.slicing.slice_6d` for camera centres ``[V, 3]`` (mm), forward only.

    All tensors on one device (CUDA, or the CPU under ``TRITON_INTERPRET=1``), float32.
    """
    n, v = means.shape[0], centres.shape[0]
    dev, f32 = means.device, torch.float32

    def flat(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(f32).contiguous()
    out_means = torch.empty(v, n, 3, dtype=f32, device=dev)
    out_dirs = torch.empty(v, n, 3, dtype=f32, device=dev)
    out_opac = torch.empty(v, n, dtype=f32, device=dev)
    out_rgb = torch.empty(v, n, 3, dtype=f32, device=dev)
    if n:
        _slice_kernel[(triton.cdiv(n, BLOCK), v)](
            flat(means), flat(dir_means), flat(parts.gain), flat(parts.sd_inv), flat(opacity_logits), flat(sh),
            flat(centres), out_means, out_opac, out_rgb, out_dirs, n, float(lambda_opa), SH_C0, SH_C1,
            float(torch.finfo(f32).tiny), BLOCK=BLOCK)
    return SlicedGaussians(out_means, flat(parts.covars), out_opac, out_rgb, out_dirs, labels)
