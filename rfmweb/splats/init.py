"""Initial splats: Anatomy-Guided Priming (AGP) from a volume + TF, or random in a box.

AGP (Render-FM, DESIGN.md): a Gaussian exists only at half-resolution voxels that are foreground
(label > 0 when labels exist, class visible, TF opacity > ``eps``), with base values from the
voxel and the TF: position = the half-resolution voxel centre, colour = TF RGB (SH degree 0),
opacity = TF opacity accumulated across the voxel, scale = the voxel size. The direction block
is isotropic with standard deviation ``DIR_STD`` and ``mu_d = 0``; the view-independent opacity
factor it implies, ``exp(-lambda_opa / DIR_STD^2)``, is compensated in the opacity logit.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..render.fields import hide_voxels, scalar_np
from ..render.scene import Scene
from .model import Splats6D
from .slicing import LAMBDA_OPA

#: Direction-block standard deviation of new splats (unit-vector space).
DIR_STD = 2.0
SH_C0 = 0.28209479177387814


def _half_res(scene: Scene) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """``(scalar [X', Y', Z'], labels [X', Y', Z'] or None, affine)`` on the half-resolution grid
    (2x2x2 blocks; ``X' = floor(X / 2)``; labels by majority)."""
    vol = scene.volume
    scalar = scalar_np(vol.data, scene.effective_mix)
    scalar = hide_voxels(scalar, vol.labels, scene.classes.hidden, scene.tf)
    x, y, z = (s // 2 * 2 for s in vol.shape)
    t = torch.from_numpy(np.ascontiguousarray(scalar[:x, :y, :z]))[None, None]
    half = F.avg_pool3d(t, 2)[0, 0].numpy()
    labels = None
    if vol.labels is not None:
        lab = torch.from_numpy(vol.labels[:x, :y, :z].astype(np.int64))
        n = int(lab.max()) + 1
        counts = F.avg_pool3d(F.one_hot(lab, n).permute(3, 0, 1, 2)[None].float(), 2)[0]
        labels = counts.argmax(0).numpy()
    affine = vol.affine.copy()
    affine[:3, 3] = vol.affine[:3, :3] @ np.array([0.5, 0.5, 0.5]) + vol.affine[:3, 3]
    affine[:3, :3] = vol.affine[:3, :3] * 2.0
    return half, labels, affine


def agp_init(scene: Scene, *, eps: float = 0.01, max_splats: int | None = None, seed: int = 0,
             device=None) -> Splats6D:
    """AGP splats for ``scene`` (see the module docstring).

    Args:
        scene: volume + TF + classes (+ MR channel mix).
        eps: minimum TF opacity (per voxel) for a splat to exist.
        max_splats: keep at most this many (the most opaque first); ``None``: all.
        seed: unused by AGP itself (deterministic); kept for a uniform init signature.

    Returns:
        :class:`Splats6D` on ``device`` (float32), labelled with each voxel's class when the
        volume has labels.
    """
    if scene.volume is None:
        raise InputError("AGP needs a volume")
    scalar, labels, affine = _half_res(scene)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)                      # half-res voxel size, mm
    rgba = scene.tf.rgba_np(scalar)                                         # [X', Y', Z', 4]
    path_mm = float(np.mean(spacing))
    alpha = 1.0 - (1.0 - np.clip(rgba[..., 3], 0, 0.999)) ** (path_mm / scene.tf.unit_distance)
    keep = alpha > eps
    if labels is not None:
        keep &= labels > 0
        rgba_c, use = scene.classes.lookup(int(labels.max()))
        class_alpha = rgba_c[:, 3].numpy()[labels]
        keep &= class_alpha > 0
        alpha = alpha * class_alpha
        colour_use = use.numpy()[labels][..., None]
        rgba[..., :3] = rgba[..., :3] * (1 - colour_use) + rgba_c[:, :3].numpy()[labels] * colour_use
    idx = np.argwhere(keep)
    if max_splats is not None and len(idx) > max_splats:
        order = np.argsort(-alpha[keep], kind="stable")[:max_splats]
        idx = idx[np.sort(order)]
    if len(idx) == 0:
        raise InputError("AGP found no visible voxel: the transfer function and classes hide everything")
    sel = tuple(idx.T)
    means = (affine[:3, :3] @ idx.T.astype(np.float64) + affine[:3, 3:4]).T
    compensation = math.exp(-LAMBDA_OPA / DIR_STD ** 2)
    opacity = np.clip(alpha[sel] / compensation, 1e-4, 0.999)
    n = len(idx)
    log_diag = np.concatenate([np.log(0.5 * np.broadcast_to(spacing, (n, 3))),
                               np.full((n, 3), math.log(DIR_STD))], axis=1)
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0, :] = (rgba[sel][:, :3] - 0.5) / SH_C0
    tensor = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
    return Splats6D(tensor(means), torch.zeros(n, 3, device=device), tensor(log_diag),
                    torch.zeros(n, 15, device=device), tensor(np.log(opacity / (1 - opacity))), tensor(sh),
                    None if labels is None else tensor(labels[sel], torch.int64))


def random_init(bounds: np.ndarray, n: int, *, seed: int = 0, scale_mm: float | None = None,
                opacity: float = 0.1, device=None) -> Splats6D:
    """``n`` splats uniform in the box ``bounds [2, 3]`` (mm), grey, isotropic, low opacity."""
    if n < 1:
        raise InputError(f"need at least one splat, got {n}")
    bounds = np.asarray(bounds, dtype=np.float64)
    rng = np.random.default_rng(seed)
    means = rng.uniform(bounds[0], bounds[1], size=(n, 3))
    if scale_mm is None:  # about the spacing of n points filling the box
        scale_mm = float(np.prod(bounds[1] - bounds[0]) / n) ** (1 / 3) * 0.5
    log_diag = np.concatenate([np.full((n, 3), math.log(scale_mm)), np.full((n, 3), math.log(DIR_STD))], axis=1)
    sh = np.zeros((n, 4, 3), np.float32)
    logit = math.log(opacity / (1 - opacity))
    f = lambda a: torch.as_tensor(a, dtype=torch.float32, device=device)  # noqa: E731
    return Splats6D(f(means), torch.zeros(n, 3, device=device), f(log_diag), torch.zeros(n, 15, device=device),
                    torch.full((n,), logit, device=device), f(sh))
