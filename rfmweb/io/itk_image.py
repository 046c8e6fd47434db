"""NRRD and MetaImage (3D Slicer's formats) through SimpleITK, and the ITK <-> RAS+ conversions.

ITK stores geometry in LPS (+x left, +y posterior, +z superior) as ``origin`` (mm), ``spacing``
(mm) and a ``direction`` matrix whose columns are the voxel axes; its arrays are indexed
``[z, y, x]``. :class:`~rfmweb.volume.Volume` wants ``[X, Y, Z]`` arrays and a RAS+ affine, so::

    affine_ras = diag(-1, -1, 1, 1) @ [[direction @ diag(spacing), origin], [0, 0, 0, 1]]

after which the voxel order is reoriented to the closest canonical (RAS+) one, as the NIfTI
reader does. Readers here are also used by :mod:`rfmweb.io.dicom` (SimpleITK decodes the series).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from nibabel import orientations

from ..errors import InputError
from ..volume import check_affine, check_labels, check_size
from .atomic import atomic_write

#: Suffixes read by :func:`read_array` (``.nhdr``/``.mhd`` are headers beside a raw data file).
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
#: Suffixes :func:`save_array` writes: single files only, so a write can be atomic.
ITK_WRITE_SUFFIXES = (".nrrd", ".mha")

#: RAS <-> LPS: negate x and y (its own inverse).
LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])

#: The identity orientation (each voxel axis kept, not flipped), in nibabel's ``ornt`` form.
IDENTITY_ORNT = np.array([[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]])


def to_canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Reorient ``data [X, Y, Z]`` to the closest canonical (RAS+) voxel order.

    Returns:
        ``(data [X', Y', Z'], affine [4, 4], ornt [3, 2])``: the reoriented array, its affine and
        the nibabel orientation that was applied (undo it with :func:`from_canonical`).
    """
    ornt = orientations.io_orientation(affine)
    out = orientations.apply_orientation(data, ornt)
    return np.ascontiguousarray(out), affine @ orientations.inv_ornt_aff(ornt, data.shape), ornt


def from_canonical(data: np.ndarray, ornt: np.ndarray) -> np.ndarray:
    """Undo :func:`to_canonical` on an array of the canonical grid (e.g. a label map)."""
    return np.ascontiguousarray(orientations.apply_orientation(data, orientations.ornt_transform(IDENTITY_ORNT, ornt)))


def image_to_ras(image) -> tuple[np.ndarray, np.ndarray]:
    """A 3-D scalar ``SimpleITK.Image`` -> ``(array [X, Y, Z], affine [4, 4] RAS mm)``, voxel order kept."""
    import SimpleITK as sitk

    lps = np.eye(4)
    direction = np.asarray(image.GetDirection(), dtype=np.float64).reshape(3, 3)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing())
    lps[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), LPS_TO_RAS @ lps


def error_summary(exc: Exception) -> str:
    """The one line of an ITK exception that says what went wrong (they span several lines)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    useful = [line for line in lines if "Description:" in line or "ERROR" in line.upper()]
    return (useful or lines or [type(exc).__name__])[-1].removeprefix("Description:").strip()


#: Header keys that name a detached voxel-data file (MetaImage ``ElementDataFile``, NRRD ``data file``).
_DATA_FILE_KEYS = ("elementdatafile", "data file", "datafile")


def check_data_files(path: Path) -> None:
    """Refuse a header whose voxel data lives outside its own folder.

    A ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` header may name the file holding its voxels; a hostile
    one could name ``/etc/passwd`` or ``../../secret`` and have it read (and shown) as an image. Only
    names of files in the header's own folder (or ``LOCAL``, ``LIST`` and patterns of such names)
    are accepted. Reads the text header only (up to the first blank line or 64 KiB).
    """
    with path.open("rb") as f:
        head = f.read(65536)
    text = head.split(b"\n\n", 1)[0].decode("latin-1", errors="replace")
    for line in text.splitlines():
        key, sep, value = line.partition("=" if "=" in line.split(":", 1)[0] else ":")
        if not sep or key.strip().lower() not in _DATA_FILE_KEYS:
            continue
        for name in value.split():
            if name.upper() in ("LOCAL", "LIST") or name.lstrip("+-").isdigit():
                continue          # inline data, a list that follows, or a pattern's numbers
            target = Path(name)
            if target.is_absolute() or ".." in target.parts or (path.parent / target).resolve().parent != path.parent.resolve():
                raise InputError(f"its header reads voxels from {name!r}, outside the header's folder; "
                                 "only data files beside the header are read", path)


def read_array(path: str | os.PathLike, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` image.

    The header is checked (3-D, one component, real-valued, a sane size) before any voxel is read.

    Args:
        path: the image (or header) file.
        labels: read as a label map (integers, validated), else as float32 intensities.

    Returns:
        ``(array [X, Y, Z], affine [4, 4])`` in RAS+ voxel order, world in mm.

    Raises:
        InputError: naming the file and the reason.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError("no such file" if not path.exists() else "expected a file", path)
    check_data_files(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError as exc:
        raise InputError(f"not a readable {path.suffix} image ({error_summary(exc)})", path) from None
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) != 3:
        raise InputError(f"expected a 3-D image, got {len(size)}-D size {size}", path)
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"expected one value per voxel, got {reader.GetNumberOfComponents()} components "
                         "(a colour image or a multi-layer segmentation); export a scalar label map", path)
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel:
        raise InputError(f"complex-valued voxels ({pixel}); save the magnitude as a real image", path)
    try:
        check_size(size)
        image = reader.Execute()
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    except RuntimeError as exc:
        raise InputError(f"could not read the voxel data, the file may be truncated or corrupt "
                         f"({error_summary(exc)})", path) from None
    data, affine = image_to_ras(image)
    try:
        check_affine(affine)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    data, affine, _ = to_canonical(data, affine)
    if labels:
        try:
            return check_labels(data, data.shape), affine
        except InputError as exc:
            raise InputError(exc.reason, path) from None
    data = data.astype(np.float32, copy=False)
    if not np.isfinite(data).all():
        raise InputError(f"contains {int((~np.isfinite(data)).sum())} NaN/Inf voxels", path)
    return data, affine


def save_array(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array [X, Y, Z]`` (dtype kept) with its RAS+ ``affine [4, 4]`` as ``.nrrd``/``.mha``, atomically.

    Raises:
        InputError: for another suffix, or an affine with sheared (non-orthogonal) voxel axes,
            which ITK's origin/spacing/direction cannot express.
    """
    import SimpleITK as sitk

    path = Path(path)
    if path.suffix.lower() not in ITK_WRITE_SUFFIXES:
        raise InputError(f"can write {' or '.join(ITK_WRITE_SUFFIXES)}, not {path.suffix or 'no suffix'}", path)
    lps = LPS_TO_RAS @ check_affine(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-5):
        raise InputError("the voxel axes are sheared (not orthogonal); NRRD/MetaImage cannot store that grid", path)
    image = sitk.GetImageFromArray(np.ascontiguousarray(np.asarray(array).transpose(2, 1, 0)))
    image.SetSpacing(spacing.tolist())
    image.SetDirection(direction.ravel().tolist())
    image.SetOrigin(lps[:3, 3].tolist())
    return atomic_write(path, lambda tmp: sitk.WriteImage(image, tmp, True))
