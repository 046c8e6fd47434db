"""The CUDA backend: one call to ``gsplat.rasterization`` for V views with per-view Gaussians.

gsplat (>= 1.5.3) takes leading batch dimensions: ``means [..., N, 3]``, ``covars [..., N, 3, 3]``,
``opacities [..., N]``, ``colors [..., N, D]`` with ``viewmats [..., C, 4, 4]`` and
``Ks [..., C, 3, 3]``. Our sliced Gaussians differ per view, so the views are the batch
dimension and each batch entry has one camera (``C = 1``). With ``covars=`` given, gsplat
ignores ``quats``/``scales`` (passed as None) and keeps the upper triangle of each 3x3 matrix.

gsplat is imported here only, and this module only when ``torch.cuda.is_available()``: on a CPU
machine with nvcc present, ``import gsplat`` may try to JIT-build its kernels and fail.
"""

from __future__ import annotations

import torch

from ._torch_impl import EPS2D, FAR_PLANE, NEAR_PLANE


def rasterize_gsplat(
    means: torch.Tensor,  # [V, N, 3]
    covars: torch.Tensor,  # [V, N, 3, 3]
    opacities: torch.Tensor,  # [V, N]
    colors: torch.Tensor,  # [V, N, D]
    viewmats: torch.Tensor,  # [V, 4, 4]
    Ks: torch.Tensor,  # [V, 3, 3]  # noqa: N803
    width: int,
    height: int,
    backgrounds: torch.Tensor | None = None,  # [V, D]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(rgb [V, H, W, D], alpha [V, H, W, 1])``, differentiable through gsplat's CUDA kernels."""
    import gsplat  # lazily: CUDA only

    rgb, alpha, _meta = gsplat.rasterization(
        means, None, None, opacities, colors,
        viewmats[:, None], Ks[:, None], width, height,
        near_plane=NEAR_PLANE, far_plane=FAR_PLANE, eps2d=EPS2D,
        sh_degree=None, packed=False, tile_size=16,
        backgrounds=None if backgrounds is None else backgrounds[:, None],
        render_mode="RGB", rasterize_mode="classic", covars=covars,
    )
    return rgb[:, 0], alpha[:, 0]
