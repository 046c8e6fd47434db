"""3-D click marks of a correction: the INR's soft tumour field rendered along the clicked rays.

The objective and its window are described in :mod:`rfmweb.inr.correct` (module docstring);
:class:`~rfmweb.inr.correct.Corrector` adds the marks (``mark_ray``) and weighs the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..models.inr import NeumoursINR, extract_patches, to_unit
from ..render.raymarch import march
from ..volume import Volume

RAY_WINDOW = 2.25                         #: half the length (voxels) of a ray mark's window: 9 samples


@dataclass(frozen=True)
class RayMark:
    """A click on the 3-D view: the pixel ray (world mm), the depth where the rendered opacity first
    reached 0.5 (mm along the ray), the marked class and the voxel ``ijk`` at that depth."""

    origin: np.ndarray     # [3] mm
    direction: np.ndarray  # [3] unit
    depth: float           # mm
    label: int
    voxel: np.ndarray      # [3] int64


def ray_window(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(near, far)`` ``[R]`` of each ray mark's window, in voxels along the ray from the hit voxel's
    centre: ``[-1/2, 2 RAY_WINDOW - 1/2]`` for a tumour mark, ``[-RAY_WINDOW, RAY_WINDOW]`` for a
    not-tumour mark (see :mod:`rfmweb.inr.correct`)."""
    near = np.where(np.asarray(labels) > 0, -0.5, -RAY_WINDOW)
    return near, near + 2 * RAY_WINDOW


class SoftTumourField:
    """The INR as a ray-marcher field: ``(points [N, 3] mm, dirs [N, 3]) -> (rgb [N, 3], sigma [N] 1/mm)``.

    ``sigma = density * softplus(z)`` inside the brain (0 outside, background by construction),
    ``z = log(p_tumour / p_background)`` the INR's log-odds, ``rgb = (p_NCR, p_ED, p_ET) / p_tumour``;
    ``p`` is the INR's softmax at the point (coordinates and trilinear patches as in the model's
    input contract, :func:`~rfmweb.models.inr.extract_patches`). ``softplus(z) ~ p_tumour`` where the
    INR says background and grows like ``z`` in a confident tumour: unlike ``sigma ~ p_tumour``,
    which saturates, a marked ray gets gradients however confident the INR is (``-log(1 - O)`` is
    the sum of ``softplus(z) dt``). Differentiable in the model's weights.

    Args:
        model: the INR (its logits ``[N, 4]``).
        padded: ``[C, X + P - 1, Y + P - 1, Z + P - 1]`` normalised modalities, zero-padded by
            :func:`~rfmweb.models.inr.pad_volume` (patches of a point ``v`` are sampled at ``v + P // 2``
            in it, which equals sampling the unpadded volume with zeros outside).
        mask: ``[X, Y, Z]`` bool brain mask (tensor on the same device).
        affine: ``[4, 4]`` voxel-to-world matrix, mm.
        density: extinction per unit of ``softplus(z)``, 1/mm.
        frame: the case's network coordinates (:func:`~rfmweb.models.inr.case_frame`; ``None``: its grid's).

    Colour and extinction come back in the dtype of ``points`` (march in float64: ``1 - O`` of an
    opaque window, the not-tumour loss, is below float32's resolution).
    """

    def __init__(self, model: NeumoursINR, padded: torch.Tensor, mask: torch.Tensor, affine: np.ndarray,
                 density: float, frame: np.ndarray | None = None) -> None:
        self.model, self.padded, self.mask, self.density = model, padded, mask, float(density)
        self.frame = frame
        self.shape = tuple(int(s) for s in mask.shape)
        inv = torch.as_tensor(np.linalg.inv(affine), dtype=torch.float64, device=padded.device)
        self._lin, self._off = inv[:3, :3].T.contiguous(), inv[:3, 3].contiguous()
        self.radius = model.config.patch_size // 2

    def __call__(self, points: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # element-wise, not a matmul: bf16 autocast would round voxel positions to ~1 voxel
        vox = ((points.double()[:, :, None] * self._lin[None]).sum(1) + self._off).float()   # [N, 3]
        patches = extract_patches(self.padded, vox + self.radius, self.model.config.patch_size)
        logits = self.model(to_unit(vox, self.shape, self.frame), patches).float()            # [N, 4]
        near, size = torch.round(vox.detach()).long(), torch.tensor(self.shape, device=vox.device)
        inside = ((near >= 0) & (near < size)).all(1)
        near = torch.minimum(near.clamp_min(0), size - 1)
        inside = inside & self.mask[near[:, 0], near[:, 1], near[:, 2]]
        log_odds = torch.logsumexp(logits[:, 1:], dim=1) - logits[:, 0]      # log p_tumour / p_background
        rgb = torch.softmax(logits[:, 1:], dim=1)                             # p_class / p_tumour
        tumour = F.softplus(log_odds)
        sigma = self.density * tumour * inside.to(tumour.dtype)
        return rgb.to(points.dtype), sigma.to(points.dtype)


def pencils(rays: list[RayMark], volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The rays rendered for the ray marks: ``(origins [R, 3] mm, dirs [R, 3], hit distance [R] mm,
    labels [R])``, five per mark: the clicked ray moved sideways (by under a voxel) to pass through
    the hit voxel's centre, and four parallel rays half a voxel beside it."""
    s, out = min(volume.spacing), []
    for m in rays:
        centre = volume.affine[:3, :3] @ m.voxel + volume.affine[:3, 3]
        t = float((centre - m.origin) @ m.direction)
        side = np.linalg.svd(m.direction[None])[2][1:]           # [2, 3] unit vectors across the ray
        origins = centre - t * m.direction + 0.5 * s * np.concatenate([np.zeros((1, 3)), side, -side])
        out += [(o, m.direction, t, m.label) for o in origins]
    if not out:
        return np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0), np.zeros(0, np.int64)
    return tuple(np.array(v) for v in zip(*out))


def window_voxels(pens: tuple[np.ndarray, ...], volume: Volume) -> np.ndarray:
    """Flat indices (C order on ``volume``'s grid) of the voxels the ray marks' windows pass through;
    ``pens``: :func:`pencils` of the marks."""
    origins, dirs, depth, labels = pens
    near, _ = ray_window(labels)
    t = depth[:, None] + (near[:, None] + np.arange(0.0, 2 * RAY_WINDOW + 0.25, 0.25)) * min(volume.spacing)
    pts = (origins[:, None] + t[..., None] * dirs[:, None]).reshape(-1, 3)
    inv = np.linalg.inv(volume.affine)
    vox = np.rint(pts @ inv[:3, :3].T + inv[:3, 3]).astype(np.int64)
    vox = vox[((vox >= 0) & (vox < np.array(volume.shape))).all(1)]
    return np.unique(np.ravel_multi_index(vox.T, volume.shape))


def ray_loss(field: SoftTumourField, pens: tuple[np.ndarray, ...], volume: Volume) -> tuple[torch.Tensor, bool]:
    """Mean loss of the ray marks (``pens``: their :func:`pencils`) rendered through ``field``, and
    whether every ray objective is met.

    Marched in float64 (see :class:`SoftTumourField`)."""
    s, device = min(volume.spacing), field.padded.device
    origins, dirs, depth, labels = pens
    near, far = (torch.as_tensor(depth + w * s, device=device) for w in ray_window(labels))
    origins, dirs, labels = (torch.as_tensor(v, device=device) for v in (origins, dirs, labels))
    res = march(origins, dirs, near, far, field, 0.5 * s, early_stop=0.0)
    labels = labels.long()
    opacity = res.opacity.clamp(1e-15, 1 - 1e-15)
    tumour = labels > 0
    share = (res.rgb / opacity[:, None]).gather(1, (labels - 1).clamp_min(0)[:, None])[:, 0].clamp(1e-15, 1.0)
    loss = torch.where(tumour, -torch.log(opacity) - torch.log(share), -torch.log1p(-opacity))
    met = torch.where(tumour, (opacity > 0.9) & (share > 0.5), opacity < 0.02)
    return loss.mean().float(), bool(met.all())
