"""Training samples for the Neumours INR: voxels drawn across a cohort of cases.

One INR is trained for the whole cohort. Every coordinate of a batch draws its case uniformly at
random, then a voxel of that case: with probability ``foreground_ratio`` a tumour voxel (label > 0),
otherwise a brain voxel. The coordinates are normalised per case (the case's grid spans [-1, 1]^3),
and the patch head sees that case's z-scored modalities, so what generalises to an unseen case is
the patch head (local appearance) plus the coordinate branch's prior of where in a brain on the
common template grid tumour tends to be (BraTS volumes are co-registered to one atlas too).

Cases are held in memory as zero-padded normalised volumes cropped to the brain's bounding box
(float32; about 10 MB per 2 mm case, 19 MB uncropped), uint8 labels and int32 voxel indices;
patches at voxel centres are exact gathers, as
:func:`rfmweb.models.inr.gather_patches`. Batches are drawn on the device the model trains on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.brats import load_brats_case
from ..models.inr import normalise_modalities, pad_volume, patch_flat_offsets, training_frame
from ..volume import Volume
from .denoise import _bbox

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PreparedCase:
    """One training case, ready to sample.

    Attributes:
        name: case id.
        padded: ``[C, X', Y', Z']`` normalised modalities (float32), zero-padded by ``P // 2`` and
            cropped to the patches of the brain's bounding box: voxel ``v``'s patch starts at
            ``padded[:, v - origin]``.
        origin: ``(3,)`` the bounding box's first voxel.
        shape: ``(X, Y, Z)``, the whole case's grid; ``spacing``: its voxel size, mm.
        labels: ``[X * Y * Z]`` uint8 BraTS labels, flattened in C order.
        brain: ``[Nb]`` int32 flat indices of brain voxels.
        tumour: ``[Nt]`` int32 flat indices of tumour voxels (label > 0).
        offsets: ``[C * 27]`` cached patch offsets into ``padded``.
    """

    name: str
    padded: torch.Tensor
    origin: tuple[int, int, int]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    labels: torch.Tensor
    brain: torch.Tensor
    tumour: torch.Tensor
    offsets: torch.Tensor


def prepare_case(volume: Volume, patch_size: int = 3) -> PreparedCase:
    """Normalise a labelled 4-channel case, index its brain and tumour voxels and keep the padded
    modalities of the brain's bounding box only (draws come from brain and tumour voxels; about half
    of a BraTS-sized grid)."""
    if volume.labels is None:
        raise InputError("a training case needs a segmentation (labels)", volume.name or None)
    if volume.data.shape[0] != 4:
        raise InputError(f"a training case needs 4 modalities, got {volume.channels}", volume.name or None)
    norm, mask = normalise_modalities(volume.data)
    labels = volume.labels.astype(np.int64)
    if labels.max() > 3:
        raise InputError(f"labels must be 0..3, found {int(labels.max())}", volume.name or None)
    mask = mask | (labels > 0)
    if mask.size >= 2**31:
        raise InputError(f"a training case of {mask.size} voxels is too large (at most 2^31)", volume.name or None)
    box = _bbox(mask)
    if box is None:
        raise InputError("a training case needs brain voxels (all four modalities are zero)", volume.name or None)
    # the padded volume's patches of the box: voxel v's patch is padded[v : v + P]
    crop = tuple(slice(b.start, b.stop + patch_size - 1) for b in box)
    padded = pad_volume(torch.from_numpy(norm), patch_size)[(slice(None), *crop)].contiguous()
    return PreparedCase(name=volume.name, padded=padded, origin=tuple(b.start for b in box), shape=volume.shape,
                        spacing=volume.spacing,
                        labels=torch.from_numpy(labels.reshape(-1).astype(np.uint8)),
                        brain=torch.from_numpy(np.flatnonzero(mask).astype(np.int32)),
                        tumour=torch.from_numpy(np.flatnonzero(labels > 0).astype(np.int32)),
                        offsets=patch_flat_offsets(tuple(padded.shape), patch_size))


def _channels_last_offsets(padded_shape: tuple[int, ...], patch_size: int) -> torch.Tensor:
    """``[C * P^3]`` offsets, in :func:`~rfmweb.models.inr.patch_flat_offsets`' ``[C, dx, dy, dz]``
    order, into the padded volume ``[C, X', Y', Z']`` stored channels last (``[X', Y', Z', C]``)."""
    c, _, y, z = padded_shape
    r = torch.arange(patch_size)
    d = (r[:, None, None] * (y * z) + r[None, :, None] * z + r[None, None, :]).reshape(-1)
    return (torch.arange(c)[:, None] + d[None] * c).reshape(-1)


class CaseBank:
    """Draws ``(coords, patches, targets)`` batches across prepared cases, on one device.

    The cases are packed once into flat tensors on ``device`` (all padded volumes end to end, all
    label maps, and every case's tumour then brain voxel indices), so a draw is a handful of
    vectorised gathers with no Python loop over cases and no host synchronisation: on a GPU the
    whole batch is made where the model trains.

    Args:
        cases: the training cases.
        foreground_ratio: fraction of coordinates drawn from tumour voxels (the rest from the brain;
            a case without tumour gives brain voxels).
        patch_size: ``P`` of the patches.
        device: where the packed cases live and batches are drawn (default: the CPU).
    """

    def __init__(self, cases: list[PreparedCase], foreground_ratio: float = 0.1, patch_size: int = 3,
                 device: str | torch.device | None = None) -> None:
        if not cases:
            raise InputError("no training cases")
        if not 0.0 <= foreground_ratio <= 1.0:
            raise InputError(f"foreground ratio must lie in 0..1, got {foreground_ratio}")
        if len({c.offsets.numel() for c in cases}) != 1:
            raise InputError("training cases must have the same modalities")
        self.names = [c.name for c in cases]   # the packed tensors below are the bank's only copy
        self.foreground_ratio = float(foreground_ratio)
        self.patch_size = patch_size
        self.device = torch.device(device or "cpu")

        def starts(sizes: list[int]) -> torch.Tensor:
            return torch.tensor([0, *np.cumsum(sizes)[:-1].tolist()], dtype=torch.int64)

        vol_base = starts([c.padded.numel() for c in cases])
        lab_base = starts([c.labels.numel() for c in cases])
        pool_base = starts([c.tumour.numel() + c.brain.numel() for c in cases])
        as_device = dict(device=self.device)
        # channels last: a patch's C * P^3 values lie in P^2 runs of P * C floats (fewer cache lines);
        # filled case by case, so packing holds the cases and the bank, not a third channels-last copy
        volumes = torch.empty(int(sum(c.padded.numel() for c in cases)), dtype=torch.float32)
        for case, base in zip(cases, vol_base.tolist()):
            volumes[base:base + case.padded.numel()].view(*case.padded.shape[1:], -1).copy_(
                case.padded.permute(1, 2, 3, 0))
        self._volumes = volumes.to(**as_device)                                                  # [sum C*X'*Y'*Z']
        self._labels = torch.cat([c.labels for c in cases]).to(**as_device)                      # [sum X*Y*Z] uint8
        self._pools = torch.cat([t for c in cases for t in (c.tumour, c.brain)]).to(**as_device)  # [sum Nt + Nb] int32
        # per case: [n_cases, ...]
        self._offsets = (torch.stack([_channels_last_offsets(tuple(c.padded.shape), patch_size) for c in cases])
                         + vol_base[:, None]).to(**as_device)
        self._channels = int(cases[0].padded.shape[0])
        self._lab_base = lab_base.to(**as_device)
        self._n_tumour = torch.tensor([c.tumour.numel() for c in cases]).to(**as_device)
        self._n_brain = torch.tensor([c.brain.numel() for c in cases]).to(**as_device)
        self._tumour_start = pool_base.to(**as_device)
        self._shape = torch.tensor([c.shape for c in cases], dtype=torch.int64).to(**as_device)     # [n, 3]
        self._origin = torch.tensor([c.origin for c in cases], dtype=torch.int64).to(**as_device)   # [n, 3]
        self._padded_yz = torch.tensor([(c.padded.shape[2] * c.padded.shape[3], c.padded.shape[3]) for c in cases],
                                       dtype=torch.int64).to(**as_device)                        # [n, 2]
        boxes = [tuple(slice(o, o + n - patch_size + 1) for o, n in zip(c.origin, c.padded.shape[1:])) for c in cases]
        #: where the brains lie in the network's coordinates (saved with the model; ``None``: mixed grids)
        self.frame = training_frame([c.shape for c in cases], boxes, [c.spacing for c in cases])
        if self.frame is None:
            grids = sorted({tuple(c.shape) for c in cases})
            log.warning("the training cases lie on %d different grids (%s) or voxel sizes: the network's "
                        "coordinates (the grid's extent) then mean different places in different cases; resample them "
                        "to one grid", len(grids), ", ".join("x".join(map(str, g)) for g in grids[:3]))

    @classmethod
    def from_folders(cls, folders: list[str | os.PathLike], foreground_ratio: float = 0.1,
                     progress: bool = False, device: str | torch.device | None = None) -> "CaseBank":
        """Load BraTS-style case folders (each needs a ``-seg`` file)."""
        from tqdm.auto import tqdm

        cases = [prepare_case(load_brats_case(Path(f), require_seg=True))
                 for f in tqdm(folders, desc="load cases", unit="case", disable=not progress)]
        return cls(cases, foreground_ratio, device=device)

    def __len__(self) -> int:
        return len(self.names)

    def generator(self, seed: int) -> torch.Generator:
        """A random generator on the bank's device, seeded with ``seed``."""
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``n`` voxels with ``generator`` (on the bank's device: :meth:`generator`).

        Returns:
            on the bank's device: ``coords [n, 3]`` float32 in [-1, 1], ``patches [n, C * P^3]``
            float32, ``targets [n]`` int64 labels 0..3.
        """
        opts = dict(generator=generator, device=self.device)
        which = torch.randint(len(self.names), (n,), **opts)
        fg = torch.rand(n, **opts) < self.foreground_ratio
        u = torch.rand(n, dtype=torch.float64, **opts)
        n_tumour = self._n_tumour[which]
        use_fg = fg & (n_tumour > 0)
        size = torch.where(use_fg, n_tumour, self._n_brain[which])
        start = self._tumour_start[which] + torch.where(use_fg, 0, n_tumour)
        pick = torch.minimum((u * size).long(), size - 1)
        flat = self._pools[start + pick].long()                           # C-order index in the case
        shape = self._shape[which]                                        # [n, 3]
        y, z = shape[:, 1], shape[:, 2]
        vox = torch.stack([flat // (y * z), (flat // z) % y, flat % z], dim=1)
        coords = 2.0 * vox.float() / (shape - 1).clamp_min(1).float() - 1.0    # voxel_to_unit, per case
        yz = self._padded_yz[which]
        corner = vox - self._origin[which]                                # in the cropped padded volume
        anchor = (corner[:, 0] * yz[:, 0] + corner[:, 1] * yz[:, 1] + corner[:, 2]) * self._channels
        patches = self._volumes[anchor[:, None] + self._offsets[which]]
        targets = self._labels[self._lab_base[which] + flat].long()
        return coords, patches, targets
