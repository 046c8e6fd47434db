"""Single-file volumes by suffix: NIfTI (nibabel), NRRD and MetaImage (SimpleITK), and their label maps."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import LabelClass, Volume, generic_classes
from . import itk_image, nifti
from .label_table import SIDECAR_SUFFIXES, classes_from_table, read_label_table, sidecar_table

log = logging.getLogger(__name__)

#: Suffixes of single-file volumes and label maps.
VOLUME_SUFFIXES = nifti.NIFTI_SUFFIXES + itk_image.ITK_SUFFIXES


def read_array(path: str | os.PathLike, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read a NIfTI, NRRD or MetaImage file by its suffix (anything else is tried as NIfTI).

    Returns:
        ``(array [X, Y, Z], affine [4, 4])`` in RAS+ voxel order, world in mm; float32
        intensities, or a validated uint16 label map when ``labels``.
    """
    if str(path).lower().endswith(itk_image.ITK_SUFFIXES):
        return itk_image.read_array(path, labels=labels)
    return nifti.read_array(path, labels=labels)


def load_volume(path: str | os.PathLike, labels: str | os.PathLike | None = None, *,
                modality: str = "auto", classes: tuple[LabelClass, ...] | None = None,
                name: str | None = None) -> Volume:
    """Load a volume file, optionally with a label map on the same grid.

    Args:
        path: intensity image (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd); CT is expected in HU.
        labels: label map (any of those formats), integer, same grid as ``path``.
        modality: ``"CT"``, ``"MR"`` or ``"auto"`` (CT when air-like values below -500 exist).
        classes: class table for the labels; default: the names and colours of the label table beside
            the label map (``seg.nii.gz`` -> ``seg.tsv`` or ``seg.ctbl``; :mod:`rfmweb.io.label_table`),
            else one generic class per label value present.
        name: display name; default: the file name without suffix.

    Raises:
        InputError: naming the file and the reason (missing, corrupt, truncated, NaN/Inf,
            wrong dimensionality, bad spacing, absurd size, label map not integer or on another grid).

    Example:
        >>> vol = load_volume("ct.nii.gz", "labels.nii.gz")  # doctest: +SKIP
        >>> vol.shape, vol.spacing  # doctest: +SKIP
        ((256, 256, 108), (0.957, 0.957, 1.5))
    """
    path = Path(path)
    data, affine = read_array(path)
    if modality == "auto":
        modality = nifti.guess_modality(data)
    stem = nifti.file_stem(path, VOLUME_SUFFIXES)
    try:
        grid = nifti.stored_grid(path) if path.name.lower().endswith(nifti.NIFTI_SUFFIXES) else None
        volume = Volume(data, affine, modality=modality, name=name or stem, source=grid)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    return volume if labels is None else attach_labels(volume, labels, path, classes)


def attach_labels(volume: Volume, labels: str | os.PathLike, source: str | os.PathLike,
                  classes: tuple[LabelClass, ...] | None = None) -> Volume:
    """``volume`` with the label map read from ``labels``, which must lie on its grid.

    Args:
        volume: the image the labels belong to.
        labels: a label map file (any of :data:`VOLUME_SUFFIXES`).
        source: the file or folder ``volume`` came from, named in errors.
        classes: class table; default: from the label table beside ``labels`` (:func:`load_volume`),
            else one generic class per label value present.

    Raises:
        InputError: naming the label file when it is unreadable or on another grid, or the label table
            beside it when that is malformed.
    """
    labels = Path(labels)
    lab, lab_affine = read_array(labels, labels=True)
    if lab.shape != volume.shape:
        raise InputError(f"the label map is not on the grid of {source}: shape {lab.shape} vs {volume.shape}",
                         labels)
    if not nifti.same_grid(volume.affine, lab_affine):
        raise InputError(f"the label map is not on the grid of {source}: their voxel-to-world matrices "
                         f"differ by up to {np.abs(volume.affine - lab_affine).max():.3g} mm", labels)
    if classes is None and (table := sidecar_table(labels)) is not None:
        log.info("class names and colours from the label table beside the label map (%s)", table.suffix)
        classes = classes_from_table(lab, read_label_table(table), table)
    elif classes is None:
        # file names are not logged: a file's name may be a patient's
        log.info("the label map has no label table beside it (its name with %s): its classes are called "
                 "'label N'", " or ".join(SIDECAR_SUFFIXES))
    return volume.with_labels(lab, classes or generic_classes(lab))
