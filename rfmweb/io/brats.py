"""BraTS-style case folders: four MRI modalities and an optional segmentation.

Layout (BraTS 2023 naming; the same layout our synthetic cohort writes)::

    BraTS-GLI-00001-000/
        BraTS-GLI-00001-000-t1n.nii.gz   # T1 native
        BraTS-GLI-00001-000-t1c.nii.gz   # T1 post-contrast
        BraTS-GLI-00001-000-t2w.nii.gz   # T2 weighted
        BraTS-GLI-00001-000-t2f.nii.gz   # T2-FLAIR
        BraTS-GLI-00001-000-seg.nii.gz   # optional: 1 = NCR, 2 = ED, 3 = ET

A ``-seg`` file in the BraTS 2017-2021 convention (4 = ET, no 3) is read as ET = 3, and that
release's file names (``BraTS2021_00000_t1``, ``_t1ce``, ``_t2``, ``_flair``, ``_seg``) are read too.
Regions used for evaluation: WT = {1, 2, 3}, TC = {1, 3}, ET = {3}.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import LabelClass, Volume
from .nifti import read_array, same_grid, save_array, stored_grid

#: File suffix -> channel name, in channel order.
MODALITY_SUFFIXES = {"t1n": "T1n", "t1c": "T1c", "t2w": "T2w", "t2f": "FLAIR"}

log = logging.getLogger(__name__)

BRATS_CLASSES = (
    LabelClass(0, "not tumour", (0.0, 0.0, 0.0)),       # the brain and all else (BraTS label 0)
    LabelClass(1, "NCR", (0.90, 0.20, 0.15), "tumour"),   # necrotic core
    LabelClass(2, "ED", (0.25, 0.75, 0.30), "tumour"),    # peritumoural edema
    LabelClass(3, "ET", (1.00, 0.85, 0.10), "tumour"),    # enhancing tumour
)

#: BraTS evaluation regions -> label values they contain.
BRATS_REGIONS = {"WT": (1, 2, 3), "TC": (1, 3), "ET": (3,)}


#: The BraTS 2017-2021 names of the same files (``BraTS2021_00000_t1ce.nii.gz``).
LEGACY_SUFFIXES = {"t1n": "t1", "t1c": "t1ce", "t2w": "t2", "t2f": "flair", "seg": "seg"}


def _candidates(folder: Path, suffix: str) -> list[Path]:
    patterns = (f"*-{suffix}", f"*_{LEGACY_SUFFIXES[suffix]}")
    return sorted({p for pattern in patterns for ext in (".nii.gz", ".nii") for p in folder.glob(pattern + ext)})


def _find(folder: Path, suffix: str) -> Path | None:
    hits = _candidates(folder, suffix)
    if len(hits) > 1:
        raise InputError(f"several files end in -{suffix} (or _{LEGACY_SUFFIXES[suffix]}): "
                         f"{[h.name for h in hits]}", folder)
    return hits[0] if hits else None


def is_case_folder(folder: Path) -> bool:
    """Whether ``folder`` is a BraTS-style case: it holds a T1n image (``*-t1n.nii[.gz]``, or the
    2017-2021 name ``*_t1.nii[.gz]``)."""
    return bool(_candidates(folder, "t1n"))


def case_files(folder: str | os.PathLike) -> list[Path]:
    """The image files :func:`load_brats_case` reads from ``folder`` (modalities, then ``-seg`` when there)."""
    folder = Path(folder)
    return [p for p in (_find(folder, s) for s in (*MODALITY_SUFFIXES, "seg")) if p is not None]


def load_brats_case(folder: str | os.PathLike, *, require_seg: bool = False, read_seg: bool = True) -> Volume:
    """Load a BraTS-style case folder as a 4-channel MR :class:`Volume`.

    Args:
        folder: the case folder (see the module docstring for the layout).
        require_seg: raise if the ``-seg`` file is missing (training/evaluation).
        read_seg: ``False``: the images alone, the ``-seg`` file left unread (segmenting a case needs
            no ground truth, and a broken one must not stop it).

    Returns:
        Volume with ``channels == ("T1n", "T1c", "T2w", "FLAIR")``, labels (if present) with
        the BraTS class table.

    Raises:
        InputError: missing modality, files on different grids, labels outside 0..3, ...
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("not a folder (expected a BraTS-style case folder)", folder)
    arrays, ref_path, ref_affine = [], None, None
    for suffix in MODALITY_SUFFIXES:
        path = _find(folder, suffix)
        if path is None:
            raise InputError(f"no *-{suffix}.nii.gz (or *_{LEGACY_SUFFIXES[suffix]}.nii.gz) file (a BraTS case needs "
                             "t1n, t1c, t2w and t2f)", folder)
        data, affine = read_array(path)
        if ref_path is None:
            ref_path, ref_affine = path, affine
        elif data.shape != arrays[0].shape or not same_grid(affine, ref_affine):
            raise InputError(f"{path.name} is not on the grid of {ref_path.name} "
                             f"({_grid_difference(data.shape, affine, arrays[0].shape, ref_affine)})", path)
        arrays.append(data)
    labels = None
    seg = _find(folder, "seg") if read_seg or require_seg else None
    if seg is not None:
        labels, seg_affine = read_array(seg, labels=True)
        if labels.shape != arrays[0].shape or not same_grid(seg_affine, ref_affine):
            raise InputError(f"segmentation is not on the grid of {ref_path.name} "
                             f"({_grid_difference(labels.shape, seg_affine, arrays[0].shape, ref_affine)})", seg)
        labels = _brats_2023_labels(labels, seg)
    elif require_seg:
        raise InputError("no *-seg.nii.gz file", folder)
    return Volume(np.stack(arrays), ref_affine, modality="MR", channels=tuple(MODALITY_SUFFIXES.values()),
                  labels=labels, classes=BRATS_CLASSES if labels is not None else (), name=folder.name,
                  source=stored_grid(ref_path))


def _brats_2023_labels(labels: np.ndarray, path: Path) -> np.ndarray:
    """``labels`` in the BraTS 2023 convention (1 NCR, 2 ED, 3 ET): the 2017-2021 one (4 = ET, no 3) is
    mapped 4 -> 3; any other value above 3 is an :class:`InputError` naming ``path``."""
    values = set(np.unique(labels).tolist())
    if 4 in values and values <= {0, 1, 2, 4}:
        log.info("the segmentation has BraTS 2017-2021 labels (4 = ET): read as ET = 3")
        return np.where(labels == 4, 3, labels).astype(labels.dtype)
    if max(values) > 3:
        raise InputError(f"BraTS labels must be 0..3 (1 NCR, 2 ED, 3 ET; or 0, 1, 2, 4 as in BraTS 2021), "
                         f"found {sorted(v for v in values if v > 3 or v == 3 and 4 in values)}", path)
    return labels


def save_brats_case(volume: Volume, folder: str | os.PathLike, case_id: str | None = None) -> Path:
    """Write a 4-channel MR volume (and its labels) as a BraTS-style case folder.

    Each file is written atomically. Returns the folder.
    """
    folder = Path(folder)
    case_id = case_id or folder.name
    if volume.data.shape[0] != len(MODALITY_SUFFIXES):
        raise InputError(f"a BraTS case needs 4 channels {tuple(MODALITY_SUFFIXES.values())}, "
                         f"got {volume.channels}")
    for c, suffix in enumerate(MODALITY_SUFFIXES):
        save_array(folder / f"{case_id}-{suffix}.nii.gz", volume.data[c], volume.affine)
    if volume.labels is not None:
        save_array(folder / f"{case_id}-seg.nii.gz", volume.labels.astype(np.uint8), volume.affine)
    return folder


def _grid_difference(shape, affine: np.ndarray, ref_shape, ref_affine: np.ndarray) -> str:
    """How two grids differ, for a message: their shapes, or how far their voxel-to-world matrices differ."""
    if tuple(shape) != tuple(ref_shape):
        return f"shapes {tuple(shape)} vs {tuple(ref_shape)}"
    gap = np.abs(affine - ref_affine).max()
    return f"same shape {tuple(shape)}, voxel-to-world matrices differ by up to {gap:.3g} mm"
