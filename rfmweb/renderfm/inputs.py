"""Render-FM's input builder: a scene (CT + labels + TF + classes) -> 6 channels on a working grid.

Channels, ``[6, X, Y, Z]`` float32 on a grid of about ``spacing_mm`` (isotropic target; the grid
keeps the volume's field of view, so the exact spacing is ``(n - 1) s / (n' - 1)`` per axis):

====  =====================================================================================
0     intensity: CT in HU / 1000, clipped to [-1.024, 3.071] (CT only: other modalities are refused)
1     foreground mask: label > 0 and class visible; without a label map, TF opacity > ``eps``
2-4   colour of the classified voxel (TF colour, or the class colour where the table says so)
5     opacity of the classified voxel accumulated over one working voxel (``1 - (1 - a)^(s / u)``,
      ``u`` the TF's unit distance)
====  =====================================================================================

Intensities are resampled trilinearly, labels by nearest neighbour, then classified
(:func:`rfmweb.splats.init.classify`) on the working grid: the same classification the AGP base
pools, so the network sees exactly what its base was made from. Everything runs in torch on the
requested device (the model's: the volume is copied there once, and only the channels, the
classified voxels and the labels on the working grid stay), on the CPU as on CUDA.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..render.scene import Scene
from ..splats.init import classify, volume_tensors
from ..transfer.function import MAX_OPACITY

log = logging.getLogger(__name__)

#: HU scale of the intensity channel and its clip range (HU).
HU_SCALE = 1000.0
HU_RANGE = (-1024.0, 3071.0)
N_CHANNELS = 6


@dataclass
class RenderFMInput:
    """What the network and the AGP base are built from, on the working grid.

    Attributes:
        tensor: ``[6, X, Y, Z]`` float32 channels (module docstring).
        rgba: ``[X, Y, Z, 4]`` float32 classified voxels, alpha per ``unit_distance`` mm (AGP's input).
        labels: ``[X, Y, Z]`` int64 labels on the working grid, or None.
        affine: ``[4, 4]`` voxel -> world (mm) of the working grid.
        unit_distance: the TF's unit distance, mm.
        mask_from: ``"labels"`` or ``"tf"`` (no label map).
        unlabelled: the share of the voxels the TF shows (opacity over a voxel > ``eps``) that the
            label mask leaves out (label 0): Render-FM draws none of them (0 without a label map).

    ``tensor``, ``rgba`` and ``labels`` live on the device the input was built on.
    """

    tensor: torch.Tensor
    rgba: torch.Tensor
    labels: torch.Tensor | None
    affine: np.ndarray
    unit_distance: float
    mask_from: str
    unlabelled: float = 0.0

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.tensor.shape[1:])

    @property
    def spacing(self) -> np.ndarray:
        """``[3]`` working-grid voxel size, mm."""
        return np.linalg.norm(self.affine[:3, :3], axis=0)


def working_grid(shape: tuple[int, int, int], affine: np.ndarray, spacing_mm: float | None
                 ) -> tuple[tuple[int, int, int], np.ndarray]:
    """``(shape', affine')`` of the grid spanning the same voxel centres at about ``spacing_mm``."""
    if spacing_mm is None:
        return tuple(shape), affine
    if not spacing_mm > 0:
        raise InputError(f"working spacing must be > 0 mm, got {spacing_mm}")
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    new = tuple(max(2, int(round((n - 1) * s / spacing_mm)) + 1) for n, s in zip(shape, spacing))
    scale = np.array([(n - 1) / (m - 1) for n, m in zip(shape, new)])
    out = affine.copy()
    out[:3, :3] = affine[:3, :3] * scale
    return new, out


def resample(scalar: torch.Tensor, labels: torch.Tensor | None, shape: tuple[int, int, int]
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``scalar [X, Y, Z]`` (trilinear) and ``labels [X, Y, Z]`` (nearest) on the ``shape`` grid that
    spans the same voxel centres (align-corners lattice, :func:`working_grid`), on their device."""
    if tuple(scalar.shape) == tuple(shape):
        return scalar, labels
    scalar = F.interpolate(scalar[None, None], size=shape, mode="trilinear", align_corners=True)[0, 0]
    if labels is not None:   # nearest voxel: index arithmetic on the host, 3 small vectors to the device
        for axis, (n, m) in enumerate(zip(labels.shape, shape)):
            idx = torch.from_numpy(np.rint(np.linspace(0, n - 1, m)).astype(np.int64)).to(labels.device)
            labels = labels.index_select(axis, idx)
    return scalar, labels


def unsuited(volume) -> str | None:
    """Why Render-FM cannot take ``volume`` (``None``: it can): it has seen only CT, in Hounsfield units."""
    return None if volume.modality == "CT" else f"trained on CT only; this volume is {volume.modality}"


def build_inputs(scene: Scene, spacing_mm: float | None = None, *, eps: float = 0.01, device=None
                 ) -> RenderFMInput:
    """The 6 input channels of ``scene`` on a working grid (see the module docstring), on ``device``.

    Args:
        scene: volume (CT in HU, optional labels) + TF + classes.
        spacing_mm: working spacing; ``None`` keeps the volume's grid.
        eps: opacity over one voxel above which a voxel is foreground when there is no label map.
        device: where to build (default: the CPU).

    Raises:
        InputError: no volume, or a volume that is not CT (the model has seen only Hounsfield units).
    """
    vol = scene.volume
    if vol is None:
        raise InputError("Render-FM needs a volume")
    if unsuited(vol) is not None:
        raise InputError(f"Render-FM is trained on CT only; {vol.name or 'this volume'} is {vol.modality} "
                         "(its intensities are not Hounsfield units)")
    shape, affine = working_grid(vol.shape, vol.affine, spacing_mm)
    scalar, labels = resample(*volume_tensors(scene, device), shape)
    labels = None if labels is None else labels.long()
    rgba = classify(scalar, labels, scene.tf, scene.classes)
    path = float(np.mean(np.linalg.norm(affine[:3, :3], axis=0)))
    alpha_voxel = 1.0 - (1.0 - rgba[..., 3].clamp(0.0, MAX_OPACITY)) ** (path / scene.tf.unit_distance)
    unlabelled = 0.0
    if labels is not None:
        mask, mask_from = (labels > 0) & (rgba[..., 3] > 0), "labels"
        shown = alpha_voxel > eps
        unlabelled = float((shown & (labels == 0)).sum()) / max(1, int(shown.sum()))
    else:
        mask, mask_from = alpha_voxel > eps, "tf"
        log.info("Render-FM input: no label map, so the foreground mask is the TF opacity > %g", eps)
    intensity = scalar.clamp(*HU_RANGE) / HU_SCALE
    channels = torch.stack([intensity, mask.float(), *rgba[..., :3].unbind(-1), alpha_voxel])
    return RenderFMInput(channels, rgba, labels, affine, float(scene.tf.unit_distance), mask_from, unlabelled)
