"""Training samples for the Neumours INR: voxels drawn across a cohort of cases.

One INR is trained for the whole cohort. Every coordinate of a batch draws its case uniformly at
random, then a voxel of that case: with probability ``foreground_ratio`` a tumour voxel (label > 0),
otherwise a brain voxel. The coordinates are normalised per case (the case's grid spans [-1, 1]^3),
and the patch head sees that case's z-scored modalities, so what generalises to an unseen case is
the patch head (local appearance) plus the coordinate branch's prior of where in a brain on the
common template grid tumour tends to be (BraTS volumes are co-registered to one atlas too).

Cases are held in memory as zero-padded normalised volumes (about 19 MB per 2 mm case and 150 MB
per 1 mm case in float32); patches at voxel centres are exact gathers (:func:`gather_patches`).
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
from ..models.inr import gather_patches, normalise_modalities, pad_volume, patch_flat_offsets, voxel_to_unit
from ..volume import Volume

log = logging.getLogger(__name__)


@dataclass(eq=False)
class PreparedCase:
    """One training case, ready to sample.

    Attributes:
        name: case id.
        padded: ``[C, X + 2, Y + 2, Z + 2]`` normalised modalities, zero-padded (float32).
        shape: ``(X, Y, Z)``.
        labels: ``[X * Y * Z]`` int64 BraTS labels, flattened in C order.
        brain: ``[Nb]`` int64 flat indices of brain voxels.
        tumour: ``[Nt]`` int64 flat indices of tumour voxels (label > 0).
        offsets: ``[C * 27]`` cached patch offsets into ``padded``.
    """

    name: str
    padded: torch.Tensor
    shape: tuple[int, int, int]
    labels: torch.Tensor
    brain: torch.Tensor
    tumour: torch.Tensor
    offsets: torch.Tensor


def prepare_case(volume: Volume, patch_size: int = 3) -> PreparedCase:
    """Normalise a labelled 4-channel case and index its brain and tumour voxels."""
    if volume.labels is None:
        raise InputError("a training case needs a segmentation (labels)", volume.name or None)
    if volume.data.shape[0] != 4:
        raise InputError(f"a training case needs 4 modalities, got {volume.channels}", volume.name or None)
    norm, mask = normalise_modalities(volume.data)
    labels = volume.labels.astype(np.int64)
    if labels.max() > 3:
        raise InputError(f"labels must be 0..3, found {int(labels.max())}", volume.name or None)
    mask = mask | (labels > 0)
    padded = pad_volume(torch.from_numpy(norm), patch_size).contiguous()
    return PreparedCase(name=volume.name, padded=padded, shape=volume.shape,
                        labels=torch.from_numpy(labels.reshape(-1)),
                        brain=torch.from_numpy(np.flatnonzero(mask)),
                        tumour=torch.from_numpy(np.flatnonzero(labels > 0)),
                        offsets=patch_flat_offsets(tuple(padded.shape), patch_size))


class CaseBank:
    """Draws ``(coords, patches, targets)`` batches across prepared cases.

    Args:
        cases: the training cases.
        foreground_ratio: fraction of coordinates drawn from tumour voxels (the rest from the brain;
            a case without tumour gives brain voxels).
        patch_size: ``P`` of the patches.
    """

    def __init__(self, cases: list[PreparedCase], foreground_ratio: float = 0.1, patch_size: int = 3) -> None:
        if not cases:
            raise InputError("no training cases")
        if not 0.0 <= foreground_ratio <= 1.0:
            raise InputError(f"foreground ratio must lie in 0..1, got {foreground_ratio}")
        self.cases = cases
        self.foreground_ratio = float(foreground_ratio)
        self.patch_size = patch_size

    @classmethod
    def from_folders(cls, folders: list[str | os.PathLike], foreground_ratio: float = 0.1,
                     progress: bool = False) -> "CaseBank":
        """Load BraTS-style case folders (each needs a ``-seg`` file)."""
        from tqdm.auto import tqdm

        cases = [prepare_case(load_brats_case(Path(f), require_seg=True))
                 for f in tqdm(folders, desc="load cases", unit="case", disable=not progress)]
        return cls(cases, foreground_ratio)

    def __len__(self) -> int:
        return len(self.cases)

    def sample(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draw ``n`` voxels.

        Returns:
            ``coords [n, 3]`` float32 in [-1, 1], ``patches [n, C * P^3]`` float32,
            ``targets [n]`` int64 labels 0..3.
        """
        which = torch.randint(len(self.cases), (n,), generator=generator)
        fg = torch.rand(n, generator=generator) < self.foreground_ratio
        u = torch.rand(n, generator=generator, dtype=torch.float64)
        coords = torch.empty(n, 3)
        patches = torch.empty(n, self.cases[0].offsets.numel())
        targets = torch.empty(n, dtype=torch.int64)
        for c, case in enumerate(self.cases):
            rows = torch.nonzero(which == c).squeeze(1)
            if rows.numel() == 0:
                continue
            use_fg = fg[rows] & (case.tumour.numel() > 0)
            pool_fg, pool_bg = case.tumour, case.brain
            flat = torch.empty(rows.numel(), dtype=torch.int64)
            for pool, sel in ((pool_fg, use_fg), (pool_bg, ~use_fg)):
                if sel.any():
                    pick = (u[rows[sel]] * pool.numel()).long().clamp_(max=pool.numel() - 1)
                    flat[sel] = pool[pick]
            x, y, z = case.shape
            vox = torch.stack([flat // (y * z), (flat // z) % y, flat % z], dim=1)
            coords[rows] = voxel_to_unit(vox.float(), case.shape)
            patches[rows] = gather_patches(case.padded, vox, self.patch_size, case.offsets)
            targets[rows] = case.labels[flat]
        return coords, patches, targets
