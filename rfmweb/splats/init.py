"""Initial splats: Anatomy-Guided Priming (AGP) from a volume + TF, or random in a box.

AGP (Render-FM, DESIGN.md): a Gaussian exists only at half-resolution voxels (2 x 2 x 2 blocks of
the volume) that are foreground (label > 0 when labels exist, class visible, opacity > ``eps``),
with base values from the block and the TF: position = the block centre, colour and opacity = the
block's classified RGBA, scale = the voxel size. The direction block is isotropic with standard
deviation ``DIR_STD`` and ``mu_d = 0``; the view-independent opacity factor it implies,
``exp(-lambda_opa / DIR_STD^2)``, is compensated in the opacity logit.

Classification comes before pooling (:func:`classify`, then :func:`prime`): every voxel gets its
own TF / class RGBA, and a block's extinction is the mean of its voxels' extinctions, its colour
their extinction-weighted mean. Applying the TF to 2 x 2 x 2-averaged HU instead (what this module
did before) turns a bone / air edge into soft-tissue-valued voxels: a fake soft-tissue shell
around every bone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..render.fields import scalar_np
from ..render.scene import Scene
from ..transfer import ClassTable, TransferFunction
from .model import Splats6D
from .slicing import LAMBDA_OPA

#: Direction-block standard deviation of new splats (unit-vector space).
DIR_STD = 2.0
SH_C0 = 0.28209479177387814
#: Largest per-voxel opacity before the log in the extinction (keeps it finite).
MAX_VOXEL_ALPHA = 0.999


def classify(scalar: np.ndarray, labels: np.ndarray | None, tf: TransferFunction, classes: ClassTable
             ) -> np.ndarray:
    """Per-voxel RGBA ``[X, Y, Z, 4]`` float32 as the renderers classify it (gradient opacity aside).

    Colour is the TF colour (or the class colour where the table says so); alpha is the TF
    opacity per ``tf.unit_distance`` mm times the class opacity (0 for hidden classes); in
    ``"solid"`` mode labelled voxels take the class opacity as-is.

    Args:
        scalar: ``[X, Y, Z]`` what the TF sees (HU for CT). labels: ``[X, Y, Z]`` ints or None.
    """
    rgba = tf.rgba_np(scalar)
    if labels is None:
        return rgba
    table, use = classes.lookup(int(labels.max()))
    table, use = table.numpy()[labels], use.numpy()[labels][..., None]          # [X, Y, Z, 4], [X, Y, Z, 1]
    rgba[..., :3] = rgba[..., :3] * (1 - use) + table[..., :3] * use
    if classes.mode == "solid":
        rgba[..., 3] = np.where(use[..., 0] > 0, table[..., 3], rgba[..., 3])
    else:
        rgba[..., 3] *= table[..., 3]
    return rgba


@dataclass
class Primed:
    """The AGP base: one entry per kept half-resolution voxel (block), numpy.

    Attributes:
        index: ``[N, 3]`` int64 half-resolution voxel indices (block ``i`` covers voxels ``2i, 2i+1``).
        means: ``[N, 3]`` block centres, world mm (voxel position ``2i + 0.5``).
        alpha: ``[N]`` opacity of the block seen through one block (mean half-res spacing), in [0, 1).
        rgb: ``[N, 3]`` extinction-weighted colour of the block, [0, 1].
        labels: ``[N]`` class of the block (extinction-weighted majority) or None.
        spacing: ``[3]`` half-resolution voxel size, mm.
        grid: ``(X', Y', Z')`` half-resolution grid, ``floor`` of the volume's halves.
    """

    index: np.ndarray
    means: np.ndarray
    alpha: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray | None
    spacing: np.ndarray
    grid: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.index)


def prime(rgba: np.ndarray, labels: np.ndarray | None, affine: np.ndarray, unit_distance: float, *,
          eps: float = 0.01, all_voxels: bool = False) -> Primed:
    """Pool classified voxels ``rgba [X, Y, Z, 4]`` (alpha per ``unit_distance`` mm) into 2 x 2 x 2 blocks.

    Args:
        labels: ``[X, Y, Z]`` ints or None; affine: the volume's 4x4 voxel -> world (mm).
        eps: a block is kept when its opacity exceeds ``eps`` (and its label is > 0).
        all_voxels: keep every block (the "AGP off" ablation: no priming, a splat per block).
    """
    x, y, z = (n // 2 * 2 for n in rgba.shape[:3])
    if min(x, y, z) < 2:
        raise InputError(f"AGP needs at least 2 voxels along every axis, got {rgba.shape[:3]}")
    r = torch.from_numpy(np.ascontiguousarray(rgba[:x, :y, :z], dtype=np.float32))
    ext = -torch.log1p(-r[..., 3].clamp(0, MAX_VOXEL_ALPHA)) / unit_distance                   # [X, Y, Z] 1/mm
    pool = lambda t: F.avg_pool3d(t[None], 2)[0]  # noqa: E731   [C, X, Y, Z] -> [C, X', Y', Z']
    ext_mean = pool(ext[None])[0]
    weighted = pool((r[..., :3] * ext[..., None]).permute(3, 0, 1, 2))
    plain = pool(r[..., :3].permute(3, 0, 1, 2))
    rgb = torch.where(ext_mean > 1e-12, weighted / ext_mean.clamp_min(1e-12), plain).permute(1, 2, 3, 0)
    half_affine = affine.copy()
    half_affine[:3, 3] = affine[:3, :3] @ np.array([0.5, 0.5, 0.5]) + affine[:3, 3]
    half_affine[:3, :3] = affine[:3, :3] * 2.0
    spacing = np.linalg.norm(half_affine[:3, :3], axis=0)
    alpha = 1.0 - torch.exp(-ext_mean * float(np.mean(spacing)))
    block_labels = None
    keep = torch.ones_like(alpha, dtype=torch.bool) if all_voxels else alpha > eps
    if labels is not None:
        lab = torch.from_numpy(labels[:x, :y, :z].astype(np.int64))
        weights = (ext + 1e-6)[None]
        counts = pool(F.one_hot(lab, int(lab.max()) + 1).permute(3, 0, 1, 2).float() * weights)
        block_labels = counts.argmax(0)
        if not all_voxels:
            keep &= block_labels > 0
    idx = torch.nonzero(keep).numpy()
    sel = tuple(idx.T)
    means = (half_affine[:3, :3] @ idx.T.astype(np.float64) + half_affine[:3, 3:4]).T
    return Primed(idx, means, alpha.numpy()[sel].astype(np.float64), rgb.numpy()[sel],
                  None if block_labels is None else block_labels.numpy()[sel], spacing,
                  tuple(int(n) for n in alpha.shape))


def scene_rgba(scene: Scene) -> np.ndarray:
    """:func:`classify` of a scene's volume, ``[X, Y, Z, 4]``."""
    vol = scene.volume
    return classify(scalar_np(vol.data, scene.effective_mix), vol.labels, scene.tf, scene.classes)


def splats_from_primed(primed: Primed, device=None) -> Splats6D:
    """The AGP splats of a :class:`Primed` base (float32 on ``device``), see the module docstring."""
    n = len(primed)
    compensation = math.exp(-LAMBDA_OPA / DIR_STD ** 2)
    opacity = np.clip(primed.alpha / compensation, 1e-4, 0.999)
    log_diag = np.concatenate([np.log(0.5 * np.broadcast_to(primed.spacing, (n, 3))),
                               np.full((n, 3), math.log(DIR_STD))], axis=1)
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0, :] = (primed.rgb - 0.5) / SH_C0
    tensor = lambda a, dt=torch.float32: torch.as_tensor(np.ascontiguousarray(a), dtype=dt, device=device)  # noqa: E731
    return Splats6D(tensor(primed.means), torch.zeros(n, 3, device=device), tensor(log_diag),
                    torch.zeros(n, 15, device=device), tensor(np.log(opacity / (1 - opacity))), tensor(sh),
                    None if primed.labels is None else tensor(primed.labels, torch.int64))


def agp_init(scene: Scene, *, eps: float = 0.01, max_splats: int | None = None, seed: int = 0,
             device=None, all_voxels: bool = False) -> Splats6D:
    """AGP splats for ``scene`` (see the module docstring).

    Args:
        scene: volume + TF + classes (+ MR channel mix).
        eps: minimum block opacity for a splat to exist.
        max_splats: keep at most this many (the most opaque first); ``None``: all.
        seed: unused by AGP itself (deterministic); kept for a uniform init signature.
        all_voxels: one splat per half-resolution voxel, visible or not (the "AGP off" ablation).

    Returns:
        :class:`Splats6D` on ``device`` (float32), labelled with each block's class when the
        volume has labels.
    """
    if scene.volume is None:
        raise InputError("AGP needs a volume")
    primed = prime(scene_rgba(scene), scene.volume.labels, scene.volume.affine, scene.tf.unit_distance, eps=eps,
                   all_voxels=all_voxels)
    if len(primed) == 0:
        raise InputError("AGP found no visible voxel: the transfer function and classes hide everything")
    if max_splats is not None and len(primed) > max_splats:
        order = np.sort(np.argsort(-primed.alpha, kind="stable")[:max_splats])
        primed = Primed(primed.index[order], primed.means[order], primed.alpha[order], primed.rgb[order],
                        None if primed.labels is None else primed.labels[order], primed.spacing, primed.grid)
    return splats_from_primed(primed, device)


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
