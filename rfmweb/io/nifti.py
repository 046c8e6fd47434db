"""NIfTI reading and writing with nibabel, validated at the edge.

Readers follow nnU-Net's contract: an array plus the geometry, checked before anything large is
allocated, reoriented to the closest canonical (RAS+) voxel order. Every failure is an
:class:`~rfmweb.errors.InputError` naming the file.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from ..volume import LabelClass, Volume, check_affine, check_labels, check_size

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def _open(path: Path) -> nib.Nifti1Image:
    """Open the header of a NIfTI file (lazy: no voxel data is read here)."""
    if not path.exists():
        raise InputError("no such file", path)
    if path.is_dir():
        raise InputError("is a folder, expected a .nii or .nii.gz file", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})", path) from None
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"expected a NIfTI image, got {type(img).__name__}", path)
    return img


def _raw_header(path: Path, header_class) -> nib.Nifti1Header:
    """The header as written in the file (nibabel repairs ``sizeof_hdr`` and bad voxel sizes when loading)."""
    with nib.openers.ImageOpener(str(path)) as f:
        return header_class.from_fileobj(f, check=False)


def _check_header(img: nib.Nifti1Image, path: Path) -> tuple[int, ...]:
    """Format, type, shape and geometry checks from the header alone; returns the 3-D shape."""
    raw = _raw_header(path, type(img.header))
    expected = type(img.header).sizeof_hdr
    if int(raw["sizeof_hdr"]) != expected:
        raise InputError(f"header field sizeof_hdr is {int(raw['sizeof_hdr'])} where a valid NIfTI-"
                         f"{1 if expected == 348 else 2} header has {expected}: corrupt or not NIfTI", path)
    dtype = img.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"complex-valued voxels ({dtype}); save the magnitude (or the real part) as a "
                         "real-valued NIfTI", path)
    if not np.issubdtype(dtype, np.number):
        raise InputError(f"voxels must be real numbers, the header says {dtype} (an RGB image?)", path)
    shape = tuple(int(s) for s in img.shape)
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3:
        raise InputError(f"expected a 3-D image, got {len(shape)}-D shape {tuple(img.shape)}", path)
    try:
        check_size(shape)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    zooms = np.asarray(raw["pixdim"][1:4], dtype=np.float64)
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise InputError(f"voxel spacing must be finite and > 0 mm, header says {tuple(zooms.tolist())}", path)
    try:
        check_affine(img.affine)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    return shape


def _read(img: nib.Nifti1Image, path: Path, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Reorient to RAS+ and read the voxels; returns (array [X, Y, Z], affine [4, 4])."""
    try:
        canonical = nib.as_closest_canonical(img)
        data = np.asanyarray(canonical.dataobj)
    except Exception as exc:  # truncated gzip -> EOFError/zlib.error/OSError, bad scaling -> ValueError
        raise InputError(f"could not read the voxel data, the file may be truncated or corrupt "
                         f"({type(exc).__name__}: {exc})", path) from None
    if data.ndim == 4:
        data = data[..., 0]
    if dtype is not None:
        data = data.astype(dtype, copy=False)
    return data, np.asarray(canonical.affine, dtype=np.float64)


def guess_modality(data: np.ndarray) -> str:
    """CT when air-like negative values are present (HU), else MR."""
    return "CT" if float(np.percentile(data[:: max(1, data.shape[0] // 32)], 1)) < -500 else "MR"


def read_array(path: str | os.PathLike, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one NIfTI file.

    Args:
        path: a .nii or .nii.gz file.
        labels: read as a label map (integers, validated), else as float32 intensities.

    Returns:
        ``(array [X, Y, Z], affine [4, 4])`` in RAS+ voxel order.
    """
    path = Path(path)
    img = _open(path)
    _check_header(img, path)
    data, affine = _read(img, path, None if labels else np.float32)
    if labels:
        try:
            data = check_labels(data, data.shape)
        except InputError as exc:
            raise InputError(exc.reason, path) from None
    elif not np.isfinite(data).all():
        raise InputError(f"contains {int((~np.isfinite(data)).sum())} NaN/Inf voxels", path)
    return data, affine


def same_grid(affine_a: np.ndarray, affine_b: np.ndarray, tol_mm: float = 1e-3) -> bool:
    """Whether two voxel-to-world matrices describe the same grid (to ``tol_mm``)."""
    return bool(np.allclose(affine_a, affine_b, atol=tol_mm, rtol=0))


def generic_classes(labels: np.ndarray) -> tuple[LabelClass, ...]:
    """One class per label value present, with distinct colours (a qualitative palette)."""
    palette = [(0.89, 0.10, 0.11), (0.22, 0.49, 0.72), (0.30, 0.69, 0.29), (0.60, 0.31, 0.64),
               (1.00, 0.50, 0.00), (1.00, 1.00, 0.20), (0.65, 0.34, 0.16), (0.97, 0.51, 0.75)]
    values = np.unique(labels)
    return tuple(LabelClass(int(v), "background" if v == 0 else f"label {int(v)}",
                            (0.0, 0.0, 0.0) if v == 0 else palette[(int(v) - 1) % len(palette)])
                 for v in values)


def save_array(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array [X, Y, Z]`` as NIfTI atomically (dtype kept; gzip if the name ends .gz)."""
    img = nib.Nifti1Image(np.asarray(array), np.asarray(affine, dtype=np.float64))
    img.header.set_xyzt_units("mm")
    return atomic_write(path, lambda tmp: nib.save(img, tmp))


def save_volume(volume: Volume, path: str | os.PathLike, labels_path: str | os.PathLike | None = None,
                channel: int = 0) -> None:
    """Write one channel of ``volume`` (and its labels, if a path is given) as NIfTI.

    CT is written as int16 HU when the values are integral and fit, else float32.
    """
    data = volume.data[channel]
    if volume.modality == "CT" and np.array_equal(data, np.round(data)) and data.min() >= -32768 and data.max() <= 32767:
        data = data.astype(np.int16)
    save_array(path, data, volume.affine)
    if labels_path is not None:
        if volume.labels is None:
            raise InputError("volume has no label map to save", labels_path)
        lab = volume.labels
        save_array(labels_path, lab.astype(np.uint8 if lab.max() < 256 else np.uint16), volume.affine)
