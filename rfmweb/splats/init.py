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

All of it is torch on the volume's device (:func:`volume_tensors` copies the volume once), so
Render-FM's input stage and AGP base run beside the network on CUDA, and on the CPU alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..render.scene import Scene
from ..transfer import ClassTable, TransferFunction
from ..transfer.function import MAX_OPACITY
from .model import Splats6D
from .slicing import LAMBDA_OPA, SH_C0

#: Direction-block standard deviation of new splats (unit-vector space).
DIR_STD = 2.0
#: The 8 voxels of a 2 x 2 x 2 block, as offsets from its first voxel ``2i``.
_CORNERS = torch.tensor([(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)])      # [8, 3]


def classify(scalar: torch.Tensor, labels: torch.Tensor | None, tf: TransferFunction, classes: ClassTable
             ) -> torch.Tensor:
    """Per-voxel RGBA ``[X, Y, Z, 4]`` float32 as the renderers classify it (gradient opacity aside).

    Colour is the TF colour (or the class colour where the table says so); alpha is the TF
    opacity per ``tf.unit_distance`` mm times the class opacity (0 for hidden classes); in
    ``"solid"`` mode labelled voxels take the class opacity as-is. The TF is evaluated exactly at its
    knots (no sampled lookup table), the class table is a lookup by label value; the result stays on
    ``scalar``'s device. The TF's two exact twins are used where each is fastest: on the CPU
    :meth:`TransferFunction.rgba_np` (``np.interp``: one pass per channel; torch's interpolation
    makes ~30 passes over the grid, 1.5-3x slower on 2 shared cores), elsewhere
    :meth:`TransferFunction.evaluate`; they agree within float32 rounding.

    Args:
        scalar: ``[X, Y, Z]`` float32, what the TF sees (HU for CT). labels: ``[X, Y, Z]`` ints or None.
    """
    if scalar.device.type == "cpu":
        rgba = torch.from_numpy(tf.rgba_np(scalar.numpy()))                                     # [X, Y, Z, 4]
    else:
        rgb, alpha = tf.evaluate(scalar)                                                       # [X, Y, Z, 3], [X, Y, Z]
        rgba = torch.cat([rgb, alpha[..., None]], dim=-1)
    if labels is not None and not classes.is_trivial:     # a trivial table changes nothing
        table, use = classes.lookup(int(labels.max()))
        per_voxel = torch.cat([table, use[:, None]], 1).to(scalar.device)[labels.long()]        # [X, Y, Z, 5]
        table, use = per_voxel[..., :4], per_voxel[..., 4:]
        rgba[..., :3] = rgba[..., :3] * (1 - use) + table[..., :3] * use
        if classes.mode == "solid":
            rgba[..., 3] = torch.where(use[..., 0] > 0, table[..., 3], rgba[..., 3])
        else:
            rgba[..., 3] *= table[..., 3]
    return rgba


@dataclass
class Primed:
    """The AGP base: one entry per kept half-resolution voxel (block), tensors on one device.

    Attributes:
        index: ``[N, 3]`` int64 half-resolution voxel indices (block ``i`` covers voxels ``2i, 2i+1``).
        means: ``[N, 3]`` float64 block centres, world mm (voxel position ``2i + 0.5``).
        alpha: ``[N]`` float32 opacity of the block seen through one block (mean half-res spacing), in [0, 1).
        rgb: ``[N, 3]`` float32 extinction-weighted colour of the block, [0, 1].
        labels: ``[N]`` int64 class of the block (extinction-weighted majority) or None.
        spacing: ``[3]`` half-resolution voxel size, mm (numpy).
        grid: ``(X', Y', Z')`` half-resolution grid, ``floor`` of the volume's halves.
    """

    index: torch.Tensor
    means: torch.Tensor
    alpha: torch.Tensor
    rgb: torch.Tensor
    labels: torch.Tensor | None
    spacing: np.ndarray
    grid: tuple[int, int, int]

    def __len__(self) -> int:
        return len(self.index)

    def subset(self, keep: torch.Tensor) -> "Primed":
        """The blocks selected by ``keep`` (``[N]`` bool or ``[M]`` indices)."""
        return Primed(self.index[keep], self.means[keep], self.alpha[keep], self.rgb[keep],
                      None if self.labels is None else self.labels[keep], self.spacing, self.grid)

    def __getstate__(self) -> dict:
        # Training samples carry a Primed from DataLoader workers by pickling; as tensors torch would
        # route them through shared memory, which containers often keep small (see renderfm.data).
        return {k: v.cpu().numpy() if isinstance(v, torch.Tensor) else v for k, v in self.__dict__.items()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update({k: torch.from_numpy(v) if k not in ("spacing", "grid") and v is not None else v
                              for k, v in state.items()})


def _flat(index: torch.Tensor, shape) -> torch.Tensor:
    """C-order flat index ``[...]`` of voxel indices ``[..., 3]`` in a grid of ``shape`` (leading 3 axes)."""
    return (index[..., 0] * shape[1] + index[..., 1]) * shape[2] + index[..., 2]


def prime(rgba: torch.Tensor, labels: torch.Tensor | None, affine: np.ndarray, unit_distance: float, *,
          eps: float = 0.01, all_voxels: bool = False) -> Primed:
    """Pool classified voxels ``rgba [X, Y, Z, 4]`` (alpha per ``unit_distance`` mm) into 2 x 2 x 2 blocks.

    With ``sigma_v = -ln(1 - a_v) / unit_distance`` (1/mm) the extinction of voxel ``v``, a block ``B``
    has extinction ``mean_B sigma_v``, opacity ``1 - exp(-mean_B sigma_v * h)`` (``h`` the mean
    half-resolution spacing), colour ``sum_B sigma_v c_v / sum_B sigma_v`` (the plain mean where the
    block is clear) and label the one of largest summed weight ``sigma_v + 1e-6`` (ties: the smaller
    label). Weights are summed in float64, where sums of 8 float32 values are exact, so a tie is a tie.
    Runs on ``rgba``'s device; only the blocks that pass the opacity test are gathered.

    Args:
        rgba: ``[X, Y, Z, 4]`` float32 (numpy accepted). labels: ``[X, Y, Z]`` ints or None.
        affine: the volume's 4x4 voxel -> world (mm).
        eps: a block is kept when its opacity exceeds ``eps`` (and its label is > 0).
        all_voxels: keep every block (the "AGP off" ablation: no priming, a splat per block).
    """
    rgba = torch.as_tensor(rgba, dtype=torch.float32).contiguous()
    if min(rgba.shape[:3]) < 2:
        raise InputError(f"AGP needs at least 2 voxels along every axis, got {tuple(rgba.shape[:3])}")
    ext = -torch.log1p(-rgba[..., 3].clamp(0, MAX_OPACITY)) / unit_distance             # [X, Y, Z] 1/mm
    ext_mean = F.avg_pool3d(ext[None, None], 2)[0, 0]               # [X', Y', Z'], a last odd voxel left out
    half_affine = affine.copy()
    half_affine[:3, 3] = affine[:3, :3] @ np.array([0.5, 0.5, 0.5]) + affine[:3, 3]
    half_affine[:3, :3] = affine[:3, :3] * 2.0
    spacing = np.linalg.norm(half_affine[:3, :3], axis=0)
    alpha = 1.0 - torch.exp(-ext_mean * float(np.mean(spacing)))                              # [X', Y', Z']
    idx = torch.nonzero(torch.ones_like(alpha, dtype=torch.bool) if all_voxels else alpha > eps)   # [M, 3]
    block = _flat(idx, alpha.shape)                                                            # [M]
    vox = _flat(2 * idx, rgba.shape)[:, None] + _flat(_CORNERS, rgba.shape).to(idx.device)     # [M, 8]
    e8, rgb8 = ext.flatten()[vox], rgba.reshape(-1, 4)[vox, :3]                                # [M, 8], [M, 8, 3]
    block_labels = None
    if labels is not None:
        lab8 = torch.as_tensor(labels, device=rgba.device).flatten()[vox].long()              # [M, 8]
        same = lab8[:, :, None] == lab8[:, None, :]                                             # [M, 8, 8]
        score = (same * (e8 + 1e-6)[:, None, :]).sum(-1, dtype=torch.float64)                 # [M, 8] per voxel's label
        top = score == score.max(-1, keepdim=True).values
        block_labels = torch.where(top, lab8, torch.iinfo(torch.int64).max).min(-1).values     # [M]
        if not all_voxels:
            fg = torch.nonzero(block_labels > 0)[:, 0]
            block, idx, e8, rgb8, block_labels = block[fg], idx[fg], e8[fg], rgb8[fg], block_labels[fg]
    mean_ext = ext_mean.flatten()[block][:, None]                                              # [N, 1]
    weighted = (rgb8 * e8[..., None]).sum(1) / 8
    rgb = torch.where(mean_ext > 1e-12, weighted / mean_ext.clamp_min(1e-12), rgb8.mean(1))    # [N, 3]
    a = torch.as_tensor(half_affine, dtype=torch.float64, device=idx.device)
    means = idx.double() @ a[:3, :3].T + a[:3, 3]
    return Primed(idx, means, alpha.flatten()[block], rgb, block_labels, spacing, tuple(int(n) for n in alpha.shape))


def volume_tensors(scene: Scene, device=None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The scene's volume on ``device``, copied once: ``(scalar [X, Y, Z] float32, labels [X, Y, Z] int32 or None)``.

    The scalar is what the TF sees: channel 0 (CT, HU) or the MR channels blended by the scene's mix.
    """
    vol, mix = scene.volume, scene.effective_mix
    data = torch.as_tensor(vol.data[:1] if mix is None else vol.data, dtype=torch.float32, device=device)
    scalar = data[0] if mix is None else mix.blend(data)
    labels = None if vol.labels is None else torch.as_tensor(vol.labels, device=device).int()   # uint16: few torch ops
    return scalar, labels


def splats_from_primed(primed: Primed, device=None) -> Splats6D:
    """The AGP splats of a :class:`Primed` base, float32 on ``device`` (default: the base's).

    Position = block centre, log-scales = ``log(h / 2)`` and ``log(DIR_STD)``, opacity logit of the
    block opacity divided by ``exp(-lambda_opa / DIR_STD^2)`` (clipped to [1e-4, 0.999]), SH degree 0
    = the block colour, everything else 0.
    """
    device = primed.means.device if device is None else torch.device(device)
    n = len(primed)
    compensation = math.exp(-LAMBDA_OPA / DIR_STD ** 2)
    opacity = (primed.alpha.to(device, torch.float64) / compensation).clamp(1e-4, 0.999)
    log_diag = np.concatenate([np.log(0.5 * primed.spacing), np.full(3, math.log(DIR_STD))])
    sh = torch.zeros(n, 4, 3, device=device)
    sh[:, 0, :] = (primed.rgb.to(device) - 0.5) / SH_C0
    return Splats6D(primed.means.to(device, torch.float32), torch.zeros(n, 3, device=device),
                    torch.as_tensor(log_diag, dtype=torch.float32, device=device).repeat(n, 1),
                    torch.zeros(n, 15, device=device), torch.log(opacity / (1 - opacity)).float(), sh,
                    None if primed.labels is None else primed.labels.to(device))


def agp_init(scene: Scene, *, eps: float = 0.01, max_splats: int | None = None, device=None,
             all_voxels: bool = False) -> Splats6D:
    """AGP splats for ``scene`` (see the module docstring), computed on ``device``.

    Args:
        scene: volume + TF + classes (+ MR channel mix).
        eps: minimum block opacity for a splat to exist.
        max_splats: keep at most this many (the most opaque first); ``None``: all.
        all_voxels: one splat per half-resolution voxel, visible or not (the "AGP off" ablation).

    Returns:
        :class:`Splats6D` on ``device`` (float32), labelled with each block's class when the
        volume has labels.
    """
    if scene.volume is None:
        raise InputError("AGP needs a volume")
    scalar, labels = volume_tensors(scene, device)
    primed = prime(classify(scalar, labels, scene.tf, scene.classes), labels, scene.volume.affine,
                   scene.tf.unit_distance, eps=eps, all_voxels=all_voxels)
    if len(primed) == 0:
        raise InputError("AGP found no visible voxel: the transfer function and classes hide everything")
    if max_splats is not None and len(primed) > max_splats:
        primed = primed.subset(torch.argsort(primed.alpha, descending=True, stable=True)[:max_splats].sort().values)
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
