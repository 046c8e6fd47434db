"""NRRD and MetaImage (3D Slicer's formats) through SimpleITK, and the ITK <-> RAS+ conversions.

ITK stores geometry in LPS (+x left, +y posterior, +z superior) as ``origin`` (mm), ``spacing``
(mm) and a ``direction`` matrix whose columns are the voxel axes; its arrays are indexed
``[z, y, x]``. :class:`~rfmweb.volume.Volume` wants ``[X, Y, Z]`` arrays and a RAS+ affine, so::

    affine_ras = diag(-1, -1, 1, 1) @ [[direction @ diag(spacing), origin], [0, 0, 0, 1]]

after which the voxel order is reoriented to the closest canonical (RAS+) one, as the NIfTI
reader does. Readers here are also used by :mod:`rfmweb.io.dicom` (SimpleITK decodes the series).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
from nibabel import orientations

from ..errors import InputError
from ..volume import check_affine, check_labels, check_size
from .atomic import atomic_write
from .nifti import MAX_GZIP_RATIO

log = logging.getLogger(__name__)

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


@contextlib.contextmanager
def captured_stderr():
    """Capture what C++ libraries (ITK, MetaIO, NrrdIO, GDCM, libjpeg) print on file descriptor 2 meanwhile.

    Yields a list that receives the printed lines (stripped) when the block ends; they are logged at
    DEBUG instead of reaching the terminal, so a refused file stays one line. Process-wide while it
    runs: another thread's stderr output in that window is logged the same way.
    """
    said: list[str] = []
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 2)
            try:
                yield said
            finally:
                os.dup2(saved, 2)
                tmp.seek(0)
                said += [line.strip() for line in tmp.read(1 << 16).decode(errors="replace").splitlines()
                         if line.strip()]
    finally:
        os.close(saved)
    if said:
        log.debug("image library said: %s", " | ".join(said))


_POINTER = re.compile(r"^(itk::|ITK |sitk::)?ERROR:\s*(\w+\(0x[0-9a-f]+\):\s*)?", re.IGNORECASE)


def error_summary(exc: Exception, said: list[str] | None = None) -> str:
    """One line saying what went wrong, from an ITK exception (several lines) and what the library printed.

    NrrdIO explains itself in ``[nrrd]`` lines (the deepest two are kept); MetaIO prints its reason
    on stderr (``said``) and raises a vaguer one; otherwise the exception's description is used.
    File paths are dropped: the caller names the file.
    """
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    nrrd = [line.split(": ", 1)[-1] for line in lines if line.startswith("[nrrd]")]
    nrrd = [line for line in nrrd if not line.startswith("trouble") and not line.endswith(":")]
    if nrrd:
        return ": ".join(nrrd[-2:])
    useful = [line for line in lines if "Description:" in line or "ERROR" in line.upper()]
    if said and not any("Unknown exception" in line for line in useful):
        return "; ".join(said[:2])
    line = (useful or lines or [type(exc).__name__])[-1].removeprefix("Description:").strip()
    return _POINTER.sub("", line)


#: Header keys that name a detached voxel-data file (MetaImage ``ElementDataFile``, NRRD ``data file``).
_DATA_FILE_KEYS = ("elementdatafile", "data file", "datafile")


#: NRRD ``space`` values that fix left and right (the NRRD spec's anatomical spaces and their short names).
NRRD_SPACES = frozenset({"right-anterior-superior", "left-anterior-superior", "left-posterior-superior",
                         "ras", "las", "lps", "scanner-xyz", "right-anterior-superior-time",
                         "left-anterior-superior-time", "left-posterior-superior-time", "rast", "last", "lpst",
                         "scanner-xyz-time"})


def header_fields(path: Path) -> dict[str, str]:
    """The text header of a NRRD or MetaImage file as ``{lower-case key: value}`` (first 64 KiB only;
    the header ends at a blank line (NRRD) or after ``ElementDataFile`` (MetaImage))."""
    with path.open("rb") as f:
        head = f.read(65536)
    text = head.split(b"\n\n", 1)[0].decode("latin-1", errors="replace")
    fields: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=" if "=" in line.split(":", 1)[0] else ":")
        if sep and key.strip() and not key.startswith("#"):
            fields.setdefault(key.strip().lower(), value.strip())
        if key.strip().lower() == "elementdatafile":
            break
    return fields


def check_data_files(path: Path, fields: dict[str, str] | None = None) -> list[Path] | None:
    """Refuse a header whose voxel data lives outside its own folder, or is missing.

    A ``.mha``/``.mhd``/``.nrrd``/``.nhdr`` header may name the file holding its voxels; a hostile
    one could name ``/etc/passwd`` or ``../../secret`` and have it read (and shown) as an image. Only
    names of files in the header's own folder (or ``LOCAL``, ``LIST`` and patterns of such names)
    are accepted.

    Returns:
        The detached data files, ``[]`` when the voxels follow the header, ``None`` when they are
        named by a list or pattern (not checked further).
    """
    fields = header_fields(path) if fields is None else fields
    files: list[Path] = []
    for key in _DATA_FILE_KEYS:
        names = fields.get(key, "").split()
        for name in names:
            if name.upper() in ("LOCAL", "LIST") or name.lstrip("+-").isdigit():
                continue          # inline data, a list that follows, or a pattern's numbers
            target = Path(name)
            if target.is_absolute() or ".." in target.parts or (path.parent / target).resolve().parent != path.parent.resolve():
                raise InputError(f"its header reads voxels from {name!r}, outside the header's folder; "
                                 "only data files beside the header are read", path)
        if not names or names[0].upper() == "LOCAL":
            continue
        if len(names) != 1 or names[0].upper() == "LIST" or "%" in names[0]:
            return None
        data = path.parent / names[0]
        if not data.is_file():
            raise InputError(f"its voxel data file {names[0]!r} is missing (expected beside the header)", path)
        files.append(data)
    return files


def _check_extent(path: Path, fields: dict[str, str], files: list[Path] | None, values: int, itemsize: int) -> None:
    """Refuse a header declaring more voxel bytes than its file(s) can hold, before ITK allocates them."""
    if files is None:
        return
    encoding = fields.get("encoding", "raw").lower()
    compressed = encoding in ("gz", "gzip") or fields.get("compresseddata", "").lower() == "true"
    if encoding in ("bz2", "bzip2"):
        return                    # no useful bound on bzip2's ratio
    needed = values * {"txt": 1, "text": 1, "ascii": 1, "hex": 2 * itemsize}.get(encoding, itemsize)
    stored = sum(f.stat().st_size for f in files) if files else path.stat().st_size
    skip = 0
    for key in ("byte skip", "line skip", "headersize"):
        try:
            skip += max(0, int(fields.get(key, "0")))
        except ValueError:
            raise InputError(f"header field {key!r} is {fields[key]!r}, not a number", path) from None
    if needed > max(0, stored - skip) * (MAX_GZIP_RATIO if compressed else 1):
        raise InputError(f"truncated or corrupt: its header declares {needed:,} bytes of voxel data but the file "
                         f"holds {max(0, stored - skip):,}{' compressed' if compressed else ''}", path)
    if compressed and fields.get("compresseddata", "").lower() == "true":
        _check_zlib(path, files, needed)


def _check_zlib(path: Path, files: list[Path], needed: int) -> None:
    """MetaIO reads a short or corrupt zlib stream without complaint (zeros follow): inflate it once,
    in chunks, and refuse one that does not hold ``needed`` bytes."""
    if files:
        data = files[0].read_bytes()
    else:
        raw = path.read_bytes()
        line = re.search(rb"ElementDataFile\s*=\s*LOCAL[ \t]*\r?\n", raw)
        data = raw[line.end():] if line else b""
    inflate, total = zlib.decompressobj(), 0
    try:
        chunk = inflate.decompress(data, 1 << 20)
        while chunk:
            total += len(chunk)
            if total >= needed:
                return
            chunk = inflate.decompress(inflate.unconsumed_tail, 1 << 20)
    except zlib.error as exc:
        raise InputError(f"could not read the voxel data, the compressed stream is corrupt ({exc})", path) from None
    raise InputError(f"truncated or corrupt: its header declares {needed:,} bytes of voxel data but the compressed "
                     f"stream holds {total:,}", path)


#: Bytes per value of ITK's scalar pixel types.
_ITEMSIZE = {"8-bit": 1, "16-bit": 2, "32-bit": 4, "64-bit": 8}


def read_array(path: str | os.PathLike, *, labels: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Read one ``.nrrd``/``.nhdr``/``.mha``/``.mhd`` image.

    The header is checked (3-D, one component, real-valued, a sane size and geometry, data files
    that hold what it declares) before any voxel is read.

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
    if path.stat().st_size == 0:
        raise InputError("file is empty", path)
    fields = header_fields(path)
    files = check_data_files(path, fields)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    with captured_stderr() as said:
        try:
            reader.ReadImageInformation()
            error = None
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"not a readable {path.suffix} image ({error_summary(error, said)})", path)
    size = tuple(int(s) for s in reader.GetSize())
    if len(size) != 3:
        raise InputError(f"expected a 3-D image, got {len(size)}-D size {size}", path)
    if reader.GetNumberOfComponents() != 1:
        raise InputError(f"expected one value per voxel, got {reader.GetNumberOfComponents()} components "
                         "(a colour, complex or vector image, or a multi-layer segmentation); export a scalar "
                         "image", path)
    pixel = sitk.GetPixelIDValueAsString(reader.GetPixelID())
    if "complex" in pixel:
        raise InputError(f"complex-valued voxels ({pixel}); save the magnitude as a real image", path)
    lps = np.eye(4)
    lps[:3, :3] = np.asarray(reader.GetDirection(), dtype=np.float64).reshape(3, 3) @ np.diag(reader.GetSpacing())
    lps[:3, 3] = reader.GetOrigin()
    try:
        check_size(size)
        check_affine(LPS_TO_RAS @ lps)
    except InputError as exc:
        raise InputError(exc.reason, path) from None
    itemsize = next((n for key, n in _ITEMSIZE.items() if key in pixel), 8)
    _check_extent(path, fields, files, int(np.prod(size)), itemsize)
    with captured_stderr() as said:
        try:
            image = reader.Execute()
            error = None
        except RuntimeError as exc:
            error = exc
    if error is not None:
        raise InputError(f"could not read the voxel data, the file may be truncated or corrupt "
                         f"({error_summary(error, said)})", path)
    if path.suffix.lower() in (".nrrd", ".nhdr") and fields.get("space", "").lower() not in NRRD_SPACES:
        # ITK would take the axes as LPS: a guess (the same voxels as a NIfTI were mirrored otherwise)
        raise InputError(f"the header names no anatomical space (space: {fields.get('space', 'missing')}), so "
                         "left and right cannot be told apart; write it with 'space: left-posterior-superior' "
                         "(or RAS) and its space directions", path)
    data, affine = image_to_ras(image)
    data, affine, _ = to_canonical(data, affine)
    if labels:
        try:
            return check_labels(data, data.shape), affine
        except InputError as exc:
            raise InputError(exc.reason, path) from None
    with np.errstate(over="ignore", invalid="ignore"):     # overflow to Inf is refused below
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
