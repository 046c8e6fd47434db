r"""Slice 6D Gaussians by the view direction into 3D Gaussians (6DGS), and evaluate their colour.

Split each covariance and mean as :math:`\Sigma = [[S_p, S_{pd}], [S_{dp}, S_d]]`,
:math:`\mu = (\mu_p, \mu_d)`. With :math:`d` the unit vector from the camera centre to the
Gaussian's position mean :math:`\mu_p` (DESIGN.md):

.. math::

    \mu_{cond} &= \mu_p + S_{pd} S_d^{-1} (d - \mu_d) \\
    \Sigma_{cond} &= S_p - S_{pd} S_d^{-1} S_{dp} \\
    \alpha_{cond} &= \mathrm{sigmoid}(a)\, \exp\!\big(-\lambda_{opa} (d - \mu_d)^T S_d^{-1} (d - \mu_d)\big),
    \quad \lambda_{opa} = 0.35

:math:`\Sigma_{cond}` does not depend on the view, so it is computed once
(:func:`conditional_parts`) and shared by all views. Colour is the degree-1 SH evaluated along
the same :math:`d` (:func:`eval_sh_deg1`). Everything is torch and differentiable.

Example::

    >>> parts = conditional_parts(splats)            # once per set of splats
    >>> g = slice_6d(splats, cams, parts=parts)     # cams: OrbitCamera(s) or [V, 3] centres
    >>> rgb, alpha = rasterize(g.means, g.covars, g.opacities, g.colors, viewmats, Ks, W, H)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from ..camera import OrbitCamera
from ..errors import InputError
from .model import Splats6D

LAMBDA_OPA = 0.35
SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199


class ConditionalParts(NamedTuple):
    """View-independent pieces of the slice, computed once per set of splats."""

    sd_inv: torch.Tensor  # [N, 3, 3]  S_d^-1
    gain: torch.Tensor  # [N, 3, 3]    S_pd S_d^-1
    covars: torch.Tensor  # [N, 3, 3]  Sigma_cond = S_p - S_pd S_d^-1 S_dp


@dataclass
class SlicedGaussians:
    """3D Gaussians of V views, ready for :func:`rfmweb.splats.rasterize`.

    Attributes:
        means: ``[V, N, 3]`` conditional means, world mm.
        covars: ``[N, 3, 3]`` conditional covariances (the same for every view), mm^2.
        opacities: ``[V, N]`` conditional opacities in [0, 1).
        colors: ``[V, N, 3]`` RGB (>= 0) seen along each view's direction.
        dirs: ``[V, N, 3]`` the unit directions ``d`` used.
        labels: ``[N]`` class labels carried over from the splats, or None.
    """

    means: torch.Tensor  # [V, N, 3]
    covars: torch.Tensor  # [N, 3, 3]
    opacities: torch.Tensor  # [V, N]
    colors: torch.Tensor  # [V, N, 3]
    dirs: torch.Tensor  # [V, N, 3]
    labels: torch.Tensor | None = None  # [N]

    def __len__(self) -> int:
        return self.means.shape[-2]

    @property
    def n_views(self) -> int:
        return self.means.shape[0]


def conditional_parts(splats: Splats6D) -> ConditionalParts:
    """``S_d^-1``, ``S_pd S_d^-1`` and ``Sigma_cond`` of every splat (differentiable)."""
    cov = splats.covariance()  # [N, 6, 6]
    s_p, s_pd, s_d = cov[:, :3, :3], cov[:, :3, 3:], cov[:, 3:, 3:]
    sd_inv = torch.linalg.inv(s_d)  # [N, 3, 3]; S_d is SPD and 3x3: a direct inverse is accurate
    sd_inv = 0.5 * (sd_inv + sd_inv.transpose(-1, -2))
    gain = s_pd @ sd_inv  # [N, 3, 3]
    cond = s_p - gain @ s_pd.transpose(-1, -2)
    return ConditionalParts(sd_inv, gain, 0.5 * (cond + cond.transpose(-1, -2)))


def view_directions(means: torch.Tensor,  # [N, 3]
                    views) -> torch.Tensor:
    """``[V, N, 3]`` unit vectors from each camera centre to each Gaussian.

    ``views`` is one of: an :class:`OrbitCamera` or a sequence of them; camera centres ``[3]`` or
    ``[V, 3]`` (mm); per-Gaussian directions ``[V, N, 3]`` (normalised here).
    """
    if isinstance(views, OrbitCamera):
        views = [views]
    if isinstance(views, Sequence) and len(views) > 0 and all(isinstance(v, OrbitCamera) for v in views):
        views = np.stack([v.position for v in views])
    t = torch.as_tensor(views, dtype=means.dtype, device=means.device)
    if t.ndim == 1:
        t = t[None]
    if t.ndim == 2 and t.shape[-1] == 3:
        d = means[None] - t[:, None, :]  # [V, N, 3]
    elif t.ndim == 3 and t.shape[1:] == means.shape:
        d = t
    else:
        raise InputError(f"views must be camera centres [3] or [V, 3], directions [V, {means.shape[0]}, 3] or "
                         f"OrbitCamera(s); got shape {tuple(t.shape)}")
    if not torch.isfinite(d).all():
        raise InputError("view directions / camera centres must be finite")
    # A Gaussian exactly at the camera centre has no direction; any unit vector will do there.
    return d * torch.rsqrt((d * d).sum(-1, keepdim=True).clamp_min(torch.finfo(d.dtype).tiny))


def eval_sh_deg1(sh: torch.Tensor,  # [..., N, 4, 3]
                 dirs: torch.Tensor,  # [..., N, 3]
                 ) -> torch.Tensor:
    """RGB of degree-1 SH along unit ``dirs`` (gsplat / INRIA convention), clamped >= 0.

    ``colour = C0 sh_0 - C1 y sh_1 + C1 z sh_2 - C1 x sh_3 + 0.5``.

    Args:
        sh: ``[..., N, 4, 3]`` coefficients. dirs: ``[..., N, 3]`` unit vectors.

    Returns:
        ``[..., N, 3]``.
    """
    x, y, z = dirs[..., 0:1], dirs[..., 1:2], dirs[..., 2:3]  # [..., N, 1]
    rgb = SH_C0 * sh[..., 0, :] - SH_C1 * y * sh[..., 1, :] + SH_C1 * z * sh[..., 2, :] - SH_C1 * x * sh[..., 3, :]
    return torch.clamp_min(rgb + 0.5, 0.0)


def slice_6d(splats: Splats6D, view_dirs_or_camera_centres, lambda_opa: float = LAMBDA_OPA, *,
             parts: ConditionalParts | None = None) -> SlicedGaussians:
    """Condition every 6D Gaussian on the direction it is seen along, for V views at once.

    Args:
        splats: N splats.
        view_dirs_or_camera_centres: camera centre(s) ``[3]``/``[V, 3]`` mm, an
            :class:`OrbitCamera` or a list of them, or directions ``[V, N, 3]``.
        lambda_opa: opacity fall-off with the direction Mahalanobis distance (DESIGN.md: 0.35).
        parts: :func:`conditional_parts` of ``splats``, to reuse across calls (the viewer).

    Returns:
        :class:`SlicedGaussians` with a leading view dimension V (V = 1 for a single centre).
    """
    if lambda_opa < 0:
        raise InputError(f"lambda_opa must be >= 0, got {lambda_opa}")
    if parts is None:
        parts = conditional_parts(splats)
    d = view_directions(splats.means, view_dirs_or_camera_centres)  # [V, N, 3]
    delta = d - splats.dir_means  # [V, N, 3]
    means = splats.means + torch.einsum("nij,vnj->vni", parts.gain, delta)  # [V, N, 3]
    maha = torch.einsum("vni,nij,vnj->vn", delta, parts.sd_inv, delta)  # [V, N]
    opacities = torch.sigmoid(splats.opacity_logits) * torch.exp(-lambda_opa * maha)
    colors = eval_sh_deg1(splats.sh, d)  # [V, N, 3]
    return SlicedGaussians(means, parts.covars, opacities, colors, d, splats.labels)
