"""NIfTI reading and writing with nibabel, validated at the edge.

Readers follow nnU-Net's contract: an array plus the geometry, checked before anything large is
allocated, reoriented to the closest canonical (RAS+) voxel order. Every failure is an
:class:`~rfmweb.errors.InputError` naming the file.
"""

from __future__ import annotations

import gzip
import logging
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import InputError
from .atomic import atomic_write
from ..volume import Volume, check_affine, check_labels, check_perpendicular, check_size

log = logging.getLogger(__name__)

NIFTI_SUFFIXES = (".nii", ".nii.gz")


#: deflate expands data at most about 1032-fold, so a ``.gz`` file of n bytes unpacks to at most this times n.
MAX_GZIP_RATIO = 1032
#: A gzip stream may run this far past the voxels its header declares (padding) before it is refused.
GZIP_SLACK_BYTES = 16 << 20
#: Header extensions (between the header and the voxels) beyond this size are refused as corrupt.
MAX_EXTENSION_BYTES = 16 << 20
#: sizeof_hdr -> (header class, NIfTI version).
_HEADERS = {348: (nib.Nifti1Header, 1), 540: (nib.Nifti2Header, 2)}
_GZIP_MAGIC = b"\x1f\x8b"


def _open_raw(path: Path, gz: bool):
    return gzip.open(path, "rb") if gz else open(path, "rb")


def _gzip_error(exc: Exception) -> str:
    return f"could not read the voxel data, the gzip stream is truncated or corrupt ({type(exc).__name__}: {exc})"


def _read_head(path: Path) -> tuple[bytes, bool]:
    """The first bytes of the (decompressed) file and whether it is gzip-compressed."""
    if not path.exists():
        hint = " (sample names, DICOM series and BraTS case folders: rfmweb.io.open_volume)" \
            if str(path).startswith("sample:") else ""
        raise InputError(f"no such file{hint}", path)
    if path.is_dir():
        raise InputError("is a folder, expected a .nii or .nii.gz file (a DICOM series or a BraTS case folder "
                         "opens as the scan itself: `rfmweb serve FOLDER`, or rfmweb.io.open_volume)", path)
    if not path.is_file():
        raise InputError("not a regular file, expected a .nii or .nii.gz file", path)
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    with path.open("rb") as f:
        gz = f.read(2) == _GZIP_MAGIC
    if path.name.lower().endswith(".gz") and not gz:
        raise InputError("not a readable NIfTI file: named .gz but not gzip-compressed", path)
    try:
        with _open_raw(path, gz) as f:
            head = f.read(max(_HEADERS) + 4)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(_gzip_error(exc), path) from None
    if not head:
        raise InputError("file is empty (an empty gzip stream)", path)
    return head, gz


def _parse_header(head: bytes, path: Path) -> tuple[np.void, int, str]:
    """The raw header record, its size (348 or 540 bytes) and byte order, from the file's first bytes."""
    if len(head) < 4:
        raise InputError(f"not a readable NIfTI file: {len(head)} bytes, shorter than a NIfTI header (truncated?)", path)
    for order in "<>":
        size = struct.unpack(order + "i", head[:4])[0]
        if size in _HEADERS:
            break
    else:
        raise InputError(f"not a readable NIfTI file: header field sizeof_hdr is {struct.unpack('<i', head[:4])[0]} "
                         "where a NIfTI-1 header has 348 and a NIfTI-2 header 540 (corrupt, or not NIfTI)", path)
    if len(head) < size:
        raise InputError(f"truncated or corrupt: the file ends inside the NIfTI header ({len(head)} of {size} "
                         "bytes)", path)
    header_class = _HEADERS[size][0]
    hdr = np.frombuffer(head[:size], header_class.template_dtype.newbyteorder(order))[0]
    magic = bytes(hdr["magic"]).rstrip(b"\0")
    if magic[:3] not in (b"n+1", b"n+2"):
        raise InputError(f"not a readable NIfTI file: magic {magic[:8]!r} is not a single-file NIfTI's "
                         "(an Analyze or .hdr/.img pair?)", path)
    return hdr, size, order


def _check_raw_header(head: bytes, path: Path, gz: bool) -> int:
    """Refuse a corrupt or absurd header from its raw fields, before nibabel reads (or allocates) anything
    (nibabel would repair some fields, e.g. zero voxel sizes, and read on).

    Returns:
        The byte offset where the voxel data ends: the least the (unpacked) file must hold.
    """
    hdr, size, order = _parse_header(head, path)
    dim = [int(d) for d in hdr["dim"]]
    if not 1 <= dim[0] <= 7:
        raise InputError(f"header field dim[0] is {dim[0]}: the number of dimensions must be 1 to 7 (corrupt header)",
                         path)
    shape = tuple(dim[1: dim[0] + 1])
    if min(shape) < 0:
        raise InputError(f"header dimensions {shape} include a negative size (corrupt header)", path)
    code = int(hdr["datatype"])
    try:
        dtype, label = np.dtype(nib.nifti1.data_type_codes.dtype[code]), nib.nifti1.data_type_codes.label[code]
    except KeyError:
        raise InputError(f"header field datatype is {code}, not a NIfTI data type (corrupt header)", path) from None
    if dtype.itemsize == 0:
        raise InputError(f"header field datatype is {code} ({label}), a data type this viewer cannot read", path)
    if int(hdr["bitpix"]) != 8 * dtype.itemsize:
        raise InputError(f"header fields disagree: datatype {label} has {8 * dtype.itemsize} bits per voxel but "
                         f"bitpix says {int(hdr['bitpix'])} (corrupt header)", path)
    offset = float(hdr["vox_offset"])
    if not np.isfinite(offset) or offset < size + 4:
        raise InputError(f"header field vox_offset is {offset:g}: the voxel data must start after the {size + 4}-byte "
                         "header (corrupt header)", path)
    try:
        check_size(shape)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    zooms = np.asarray(hdr["pixdim"][1:4], dtype=np.float64)
    if not np.isfinite(zooms).all() or (zooms <= 0).any():
        raise InputError(f"voxel spacing must be finite and > 0 mm, header says {tuple(zooms.tolist())}", path)
    needed = int(offset) + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    stored = path.stat().st_size
    if needed > stored * (MAX_GZIP_RATIO if gz else 1) + (1024 if gz else 0):
        raise InputError(f"truncated or corrupt: its header declares {needed:,} bytes of data but the "
                         f"{'gzip ' if gz else ''}file holds {'at most ' if gz else ''}"
                         f"{stored * (MAX_GZIP_RATIO if gz else 1):,}", path)
    slope, inter = float(hdr["scl_slope"]), float(hdr["scl_inter"])
    if np.isinf(slope) or (np.isfinite(slope) and slope != 0 and not np.isfinite(inter)):
        raise InputError(f"header scaling is not finite (scl_slope {slope:g}, scl_inter {inter:g}): corrupt header",
                         path)
    if int(hdr["qform_code"]) > 0 >= int(hdr["sform_code"]):
        bcd = np.array([hdr["quatern_b"], hdr["quatern_c"], hdr["quatern_d"]], np.float64)
        if 1 - bcd @ bcd < -_HEADERS[size][0].quaternion_threshold:
            raise InputError(f"header field qform holds an invalid rotation (quaternion b, c, d = "
                             f"{', '.join(f'{v:g}' for v in bcd)}, whose squares sum past 1): corrupt header", path)
    if len(head) > size and head[size] and offset > size + 4:
        _check_extensions(path, gz, size, int(offset), order)
    return needed


def _check_extensions(path: Path, gz: bool, start: int, end: int, order: str) -> None:
    """Refuse header extensions whose sizes run past the voxel data (nibabel would read that much)."""
    start += 4
    if end - start > MAX_EXTENSION_BYTES:
        raise InputError(f"header extensions span {end - start:,} bytes, more than the {MAX_EXTENSION_BYTES:,} "
                         "accepted (corrupt header)", path)
    try:
        with _open_raw(path, gz) as f:
            f.seek(start)
            ext = f.read(end - start)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(_gzip_error(exc), path) from None
    pos = 0
    while len(ext) - pos >= 16:
        esize = struct.unpack(order + "i", ext[pos: pos + 4])[0]
        if esize < 16 or pos + esize > len(ext):
            raise InputError(f"a header extension claims {esize:,} bytes where {len(ext) - pos:,} remain before the "
                             "voxel data (corrupt header)", path)
        pos += esize


def _check_gzip_stream(path: Path, needed: int) -> None:
    """Inflate the whole stream once, in chunks (nothing kept): it must hold ``needed`` bytes and end with a
    valid checksum; nibabel stops reading at the voxels' end, so it checks neither."""
    total = 0
    try:
        with gzip.open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                total += len(chunk)
                if total > needed + GZIP_SLACK_BYTES:
                    raise InputError(f"the gzip stream unpacks to more than {needed + GZIP_SLACK_BYTES:,} bytes where "
                                     f"its header declares {needed:,} (corrupt, or a decompression bomb)", path)
    except (OSError, EOFError, zlib.error) as exc:
        raise InputError(_gzip_error(exc), path) from None
    if total < needed:
        raise InputError(f"truncated or corrupt: its header declares {needed:,} bytes of data but the gzip stream "
                         f"holds {total:,}", path)


def _open(path: Path) -> nib.Nifti1Image:
    """Check the raw header (and a gzip stream end to end), then open the image lazily (no voxels read)."""
    head, gz = _read_head(path)
    needed = _check_raw_header(head, path, gz)
    if gz:
        _check_gzip_stream(path, needed)
    nib_log = nib.imageglobals.logger       # logs the header repairs it makes; ours are errors instead
    disabled, nib_log.disabled = nib_log.disabled, True
    try:
        img = nib.load(str(path))
    except Exception as exc:  # nibabel raises many types for corrupt headers
        raise InputError(f"not a readable NIfTI file ({type(exc).__name__}: {exc})", path) from None
    finally:
        nib_log.disabled = disabled
    if not isinstance(img, (nib.Nifti1Image, nib.Nifti2Image)):
        raise InputError(f"expected a NIfTI image, got {type(img).__name__}", path)
    return img


def _check_header(img: nib.Nifti1Image, path: Path) -> tuple[int, ...]:
    """Type, shape and geometry checks on the opened image; returns the 3-D shape."""
    dtype = img.get_data_dtype()
    if np.issubdtype(dtype, np.complexfloating):
        raise InputError(f"complex-valued voxels ({dtype}); save the magnitude (or the real part) as a "
                         "real-valued NIfTI", path)
    if not np.issubdtype(dtype, np.number):
        raise InputError(f"voxels must be real numbers, the header says {dtype} (an RGB image?)", path)
    shape = tuple(int(s) for s in img.shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise InputError(f"expected a 3-D image, got {len(shape)}-D shape {tuple(img.shape)}", path)
    try:
        affine = check_affine(_affine_mm(img))
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    if int(img.header["sform_code"]) == 0 and int(img.header["qform_code"]) == 0:
        # nibabel would fall back to a guess (Analyze's, x mirrored): a wrong side shown with confidence
        raise InputError("the header gives no orientation (qform_code and sform_code are both 0), so left "
                         "and right cannot be told apart; write the scan again with its orientation (e.g. "
                         "dcm2niix from the DICOM, or set the sform in nibabel / 3D Slicer)", path)
    try:
        check_perpendicular(affine)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    disagreement = _forms_disagree(img, shape)
    if disagreement:
        # not the file's name: it may be a patient's
        log.warning("a NIfTI header's sform and qform place the scan differently (%s): rfmweb uses the sform, "
                    "as nibabel does; ITK-based tools (3D Slicer, ITK-SNAP) may use the qform and show "
                    "another side. Check the laterality against a landmark", disagreement)
    return shape


def _forms_disagree(img: nib.Nifti1Image, shape: tuple[int, ...]) -> str | None:
    """How the header's two transforms, both set (codes > 0), disagree: ``"left and right mirrored"``
    (opposite handedness), ``"up to N mm apart"`` (a corner of the grid more than a voxel apart), or
    ``None``."""
    hdr = img.header
    if int(hdr["sform_code"]) <= 0 or int(hdr["qform_code"]) <= 0:
        return None
    try:
        q, s = (_affine_mm(img, a) for a in (img.get_qform(), img.get_sform()))
    except Exception:   # an invalid quaternion: _check_raw_header has said what it could
        return None
    if np.sign(np.linalg.det(q[:3, :3])) != np.sign(np.linalg.det(s[:3, :3])):
        return "left and right mirrored"
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape[:3]], [1], indexing="ij")).reshape(4, -1)
    apart = float(np.linalg.norm((q - s) @ corners, axis=0).max())
    voxel = float(np.linalg.norm(s[:3, :3], axis=0).min())
    return f"up to {apart:.1f} mm apart" if apart > voxel else None


#: mm per unit of the NIfTI header's spatial units (``xyzt_units``; "unknown" is read as mm).
_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 1e-3, "unknown": 1.0}


def _affine_mm(img: nib.Nifti1Image, affine: np.ndarray | None = None) -> np.ndarray:
    """``affine`` (default: the image's) with world coordinates in mm, whatever spatial unit the
    header names (a scan saved in metres drew 0.001 mm voxels, one in microns was refused as absurd)."""
    out = np.array(img.affine if affine is None else affine, dtype=np.float64)
    out[:3] *= _MM_PER_UNIT.get(img.header.get_xyzt_units()[0], 1.0)
    return out


def _read(img: nib.Nifti1Image, path: Path, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """Reorient to RAS+ and read the voxels; returns (array [X, Y, Z], affine [4, 4])."""
    try:
        canonical = nib.as_closest_canonical(img)
        with np.errstate(over="ignore", invalid="ignore"):     # overflow to Inf is refused by the caller
            data = np.asanyarray(canonical.dataobj)
    except Exception as exc:  # truncated gzip -> EOFError/zlib.error/OSError, bad scaling -> ValueError
        raise InputError(f"could not read the voxel data, the file may be truncated or corrupt "
                         f"({type(exc).__name__}: {exc})", path) from None
    data = data.reshape(data.shape[:3])          # drop trailing length-1 axes
    if dtype is not None:
        with np.errstate(over="ignore", invalid="ignore"):
            data = data.astype(dtype, copy=False)
    return data, _affine_mm(img, canonical.affine)


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


@dataclass(frozen=True, eq=False)
class StoredGrid:
    """How a NIfTI file stores its voxels: volumes are read in RAS+ voxel order (:func:`read_array`), and
    a label map written on the grid of such a volume goes back to the file's order, so that tools that
    read labels voxel by voxel beside the image (BraTS evaluation, nnU-Net, ITK-SNAP) find them in place.
    A :class:`~rfmweb.volume.Volume`'s ``source`` (:func:`stored_grid`).

    Attributes:
        affine: ``[4, 4]`` the file's voxel -> world matrix, mm.
        ornt: ``[3, 2]`` nibabel orientation of the file's axes relative to RAS+ (``io_orientation``).
        ras_affine: ``[4, 4]`` the grid as read (RAS+ voxel order), mm.
    """

    affine: np.ndarray
    ornt: np.ndarray
    ras_affine: np.ndarray

    def restore(self, array: np.ndarray) -> np.ndarray:
        """``array [X, Y, Z]`` in RAS+ voxel order (the grid as read) -> the file's voxel order."""
        ras = nib.orientations.axcodes2ornt(("R", "A", "S"))
        return np.ascontiguousarray(nib.orientations.apply_orientation(
            array, nib.orientations.ornt_transform(ras, self.ornt)))


def stored_grid(path: str | os.PathLike) -> StoredGrid:
    """The :class:`StoredGrid` of NIfTI file ``path`` (its header only)."""
    img = _open(Path(path))
    ornt = nib.orientations.io_orientation(img.affine)
    ras = img.affine @ nib.orientations.inv_ornt_aff(ornt, img.shape[:3])
    return StoredGrid(_affine_mm(img), ornt, _affine_mm(img, ras))


def file_stem(path: str | os.PathLike, suffixes: tuple[str, ...]) -> str:
    """``path``'s file name without ``.gz`` and then without its suffix when that is one of ``suffixes``
    (``ct.nii.gz`` -> ``ct``)."""
    name = Path(path).name.removesuffix(".gz")
    suffix = Path(name).suffix
    return name[: -len(suffix)] if suffix and suffix.lower() in suffixes else name


def same_grid(affine_a: np.ndarray, affine_b: np.ndarray, tol_mm: float = 1e-3) -> bool:
    """Whether two voxel-to-world matrices describe the same grid (to ``tol_mm``)."""
    return bool(np.allclose(affine_a, affine_b, atol=tol_mm, rtol=0))


def save_array(path: str | os.PathLike, array: np.ndarray, affine: np.ndarray) -> Path:
    """Write ``array [X, Y, Z]`` as NIfTI atomically (dtype kept; gzip if the name ends .gz).

    Raises:
        InputError: ``path`` does not end in ``.nii`` or ``.nii.gz`` (naming the file).
    """
    if not str(path).lower().endswith(NIFTI_SUFFIXES):
        raise InputError("volumes are written as NIfTI: give a name ending in .nii or .nii.gz "
                         "(rfmweb.io.save_segmentation also writes .nrrd, .mha and DICOM SEG)", path)
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
