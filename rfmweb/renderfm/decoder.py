r"""Render-FM's decoder: 37 network channels per half-resolution voxel -> residuals on the AGP base -> splats.

Channel layout (ours; the paper's is not public, DESIGN.md), for a kept block with base values from
:class:`rfmweb.splats.init.Primed` (centre ``c``, half-resolution spacing ``h``, colour, opacity):

=========  ======  =====================================================================================
channels   count   splat parameter
=========  ======  =====================================================================================
0-2        3       position ``c + max_offset * s * tanh(raw)``: offset bounded to ``max_offset`` working
                   voxels ``s = h / 2`` (default 1 voxel) per axis
3-8        6       Cholesky log-diagonal ``base + b tanh(raw / b)`` (``b = max_log_scale``): scales relative
                   to the base (``h / 2`` in position, ``DIR_STD`` in direction), within a factor ``e^b``;
                   below the base the position scales use ``m tanh(raw / m)`` (``m = min_log_scale``)
                   so they stay above ``e^-m h / 2``: splats narrower than ~0.4 of their lattice
                   spacing ``h`` let it show through as a grid of dots when the view is large
9-23       15      raw strictly-lower Cholesky entries (``l = 2 sigmoid(raw) - 1``; 0 = axis-aligned)
24         1       opacity logit residual, added to the base logit (TF opacity of the block, compensated
                   for the direction block)
25-36      12      SH residual ``[4 coefficients x RGB]`` (row-major: coefficient, then channel), added to
                   the base (degree 0 = the block's TF / class colour, degree 1 = 0)
=========  ======  =====================================================================================

The direction mean is 0 (Render-FM). An all-zero network output gives exactly the AGP splats
(:func:`rfmweb.splats.init.splats_from_primed`), which is how an untrained model starts (its
last layer is initialised to zero).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from ..errors import InputError
from ..splats.init import Primed, splats_from_primed
from ..splats.model import Splats6D

N_OUT = 37
OFFSET, LOG_SCALE, CHOL_LOWER, OPACITY, SH = slice(0, 3), slice(3, 9), slice(9, 24), slice(24, 25), slice(25, 37)


@dataclass
class Base:
    """The AGP base of one scan as tensors: ``splats`` (the AGP splats), ``index`` ``[N, 3]`` of
    their half-resolution voxels and ``voxel_mm`` ``[3]`` the working spacing (``h / 2``)."""

    splats: Splats6D
    index: torch.Tensor
    voxel_mm: torch.Tensor

    @classmethod
    def from_primed(cls, primed: Primed, device=None) -> "Base":
        return cls(splats_from_primed(primed, device),
                   torch.as_tensor(primed.index, dtype=torch.long, device=device),
                   torch.as_tensor(primed.spacing / 2.0, dtype=torch.float32, device=device))

    def to(self, device) -> "Base":
        return Base(self.splats.to(device), self.index.to(device), self.voxel_mm.to(device))


def gather(raw: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``[37, X', Y', Z']`` network output -> ``[N, 37]`` at half-resolution voxels ``index [N, 3]``."""
    if raw.ndim != 4 or raw.shape[0] != N_OUT:
        raise InputError(f"decoder input must have shape [37, X', Y', Z'], got {tuple(raw.shape)}")
    return raw[:, index[:, 0], index[:, 1], index[:, 2]].transpose(0, 1)


def decode(raw: torch.Tensor, base: Base, *, max_offset: float = 1.0, max_log_scale: float = 2.0,
           min_log_scale: float | None = None, min_sliced_width: float | None = None) -> Splats6D:
    """Splats from the network output ``raw [37, X', Y', Z']`` (or already gathered ``[N, 37]``).

    Differentiable in ``raw``; float32 splats on ``raw``'s device (see the module docstring).
    ``min_log_scale``: the bound below the base of the position scales (None: ``max_log_scale``).
    ``min_sliced_width``: the narrowest a splat may be in any view, a fraction of its lattice spacing
    ``h`` (:func:`floor_sliced_width`; None: no floor).
    """
    r = gather(raw, base.index) if raw.ndim == 4 else raw
    if r.shape != (len(base.splats), N_OUT):
        raise InputError(f"decoder: expected [{len(base.splats)}, 37] values, got {tuple(r.shape)}")
    r = r.float()
    b = base.splats
    b_ = max_log_scale
    log_scale = b_ * torch.tanh(r[:, LOG_SCALE] / b_)
    if min_log_scale is not None:
        m, pos = float(min_log_scale), r[:, LOG_SCALE][:, :3]
        shrink = m * torch.tanh(pos.clamp_max(0.0) / m)             # slope 1 at 0, as above: smooth
        log_scale = torch.cat([torch.where(pos < 0, shrink, log_scale[:, :3]), log_scale[:, 3:]], dim=1)
    splats = Splats6D(means=b.means + max_offset * base.voxel_mm * torch.tanh(r[:, OFFSET]),
                      dir_means=b.dir_means,
                      chol_log_diag=b.chol_log_diag + log_scale,
                      chol_lower=b.chol_lower + r[:, CHOL_LOWER],
                      opacity_logits=b.opacity_logits + r[:, OPACITY][:, 0],
                      sh=b.sh + r[:, SH].reshape(-1, 4, 3),
                      labels=b.labels)
    if min_sliced_width is None:
        return splats
    return floor_sliced_width(splats, min_sliced_width * 2.0 * float(base.voxel_mm.min()))


def floor_sliced_width(splats: Splats6D, sigma_mm: float) -> Splats6D:
    r"""``splats`` made at least ``sigma_mm`` wide (standard deviation, any axis) in every view.

    Slicing by the view direction narrows a splat's position block: :math:`\Sigma_{cond} = S_p -
    S_{pd} S_d^{-1} S_{dp}` (the same in every view). The position scales' floor (``min_log_scale``)
    bounds :math:`S_p` only, and a trained model correlates position with direction until the slices
    stand 0.26-0.32 of their lattice spacing wide on the head CT: the lattice then shows through as
    stripes and dots in views of 500 px or closer. This adds :math:`\epsilon^2 I` to :math:`S_p`,
    :math:`\epsilon^2 = \max(0, \sigma^2 - \lambda_{min}(\Sigma_{cond}))`, so
    :math:`\Sigma_{cond}` grows by the same and its narrowest axis reaches ``sigma_mm``; the
    opacity is scaled by :math:`\sqrt{\det \Sigma_{cond} / \det \Sigma_{cond}'}` so each slice keeps
    its mass (as Mip-Splatting's 3-D filter). Means, directions and colours are unchanged.
    Differentiable (``epsilon`` is held constant); a splat already wide enough is unchanged, and so
    is one whose widened covariance the parametrisation cannot hold (its Cholesky factor would break
    the bound ``|l| < 1`` of :mod:`rfmweb.splats.model`; none of the shipped model's splats on the
    head CT).
    """
    from ..splats.model import raw_from_cholesky
    from ..splats.slicing import conditional_parts

    cond = conditional_parts(splats).covars                                  # [N, 3, 3] mm^2
    eps2 = (sigma_mm ** 2 - torch.linalg.eigvalsh(cond.detach())[:, 0]).clamp_min(0.0)   # [N]
    if not bool((eps2 > 0).any()):
        return splats
    add = eps2[:, None, None] * torch.eye(3, dtype=cond.dtype, device=cond.device)
    cov = splats.covariance()
    cov = torch.cat([torch.cat([cov[:, :3, :3] + add, cov[:, :3, 3:]], 2), cov[:, 3:]], 1)
    log_diag, lower, exact = raw_from_cholesky(torch.linalg.cholesky(cov))
    keep = torch.sqrt(torch.linalg.det(cond) / torch.linalg.det(cond + add))  # [N] <= 1
    opacity = (torch.sigmoid(splats.opacity_logits) * keep).clamp(1e-6, 1 - 1e-6)
    use = (exact & (eps2 > 0))[:, None]
    return replace(splats, chol_log_diag=torch.where(use, log_diag, splats.chol_log_diag),
                   chol_lower=torch.where(use, lower, splats.chol_lower),
                   opacity_logits=torch.where(use[:, 0], torch.logit(opacity), splats.opacity_logits))
