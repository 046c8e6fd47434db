"""DICOM series in: a folder (or a ``.zip`` of one) -> :class:`~rfmweb.volume.Volume`.

pydicom reads the headers (no pixel data) to group the files by SeriesInstanceUID, pick one series
and validate its geometry; SimpleITK/GDCM decodes the pixels (uncompressed, JPEG, JPEG-LS,
JPEG 2000, RLE) and applies each file's RescaleSlope/RescaleIntercept (CT -> HU). Slices are
ordered by ImagePositionPatient projected on the slice normal ``n = row x column`` (never by file
name or InstanceNumber). The LPS geometry becomes a RAS+ affine as for NRRD
(:mod:`rfmweb.io.itk_image`), the slice spacing being the mean over the whole stack.

Refused with an :class:`~rfmweb.errors.InputError` naming the folder and the problem: gantry tilt
(slice positions not along ``n``), missing slices, uneven spacing (beyond
:data:`SPACING_TOLERANCE`), duplicate positions, mixed image sizes, orientations or pixel spacings,
multi-frame files.

Privacy: patient identifiers (name, ID, birth date) are never logged, put in errors, or used as
the volume's ``name`` (the folder's name, or ``DICOM series <hash of the UID>``). The headers stay
in memory, without pixels, as a :class:`DicomSeries` that a DICOM SEG writer references
(:func:`dicom_source`).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InputError
from ..volume import Volume, check_size
from .itk_image import error_summary, from_canonical, image_to_ras, to_canonical
from .nifti import guess_modality

log = logging.getLogger(__name__)

#: Largest total uncompressed size of a ``.zip`` accepted, bytes.
MAX_ZIP_BYTES = 4 << 30
#: Most files looked at in a folder or a ``.zip``.
MAX_FILES = 100_000
#: Slice positions may stray from an even grid by this fraction of the slice spacing.
SPACING_TOLERANCE = 0.05
#: A tilt up to this many degrees (rounded positions) is read as none.
TILT_TOLERANCE_DEG = 0.1
#: Segmentation Storage: our own output may sit beside the images; it is not a series to render.
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"


@dataclass(frozen=True)
class DicomSeries:
    """The DICOM images a volume was read from, as a DICOM SEG must reference them.

    Attributes:
        uid: SeriesInstanceUID.
        datasets: one header per slice (pydicom Datasets without pixel data), sorted along the slice
            normal: frame ``k`` of a segmentation covers ``datasets[k]``. Not in ``repr``: they hold
            patient identifiers.
        ornt: ``[3, 2]`` nibabel orientation taking the source voxel order ``[column, row, slice]``
            to the volume's RAS+ order.
    """

    uid: str
    datasets: tuple = field(repr=False)
    ornt: np.ndarray = field(repr=False)

    def to_frames(self, labels: np.ndarray) -> np.ndarray:
        """A map ``[X, Y, Z]`` on the volume's grid -> ``[slices, rows, columns]`` in source frame order."""
        return np.ascontiguousarray(from_canonical(labels, self.ornt).transpose(2, 1, 0))


def dicom_source(volume: Volume) -> DicomSeries | None:
    """The DICOM series ``volume`` was read from, or ``None`` (not read from DICOM)."""
    return volume.source if isinstance(volume.source, DicomSeries) else None


def load_dicom(path: str | os.PathLike, series: str | None = None, *, name: str | None = None) -> Volume:
    """Read one DICOM series from a folder (searched recursively) or a ``.zip`` of one.

    Args:
        path: the folder or ``.zip``.
        series: the SeriesInstanceUID to read; default: the series with the most images.
        name: display name; default: the folder (or zip) name, with a short hash of the series UID
            when the folder holds several series.

    Returns:
        A one-channel Volume: CT in HU (modality ``"CT"``), MR in scanner units (``"MR"``); other
        modalities are guessed from the values (:func:`~rfmweb.io.nifti.guess_modality`).

    Raises:
        InputError: naming ``path`` and the problem (see the module docstring).
    """
    path = Path(path)
    if path.suffix.lower() == ".zip":
        if not path.is_file():
            raise InputError("no such file", path)
        with tempfile.TemporaryDirectory(prefix="rfmweb-dicom-") as tmp:
            _extract_zip(path, Path(tmp))
            return _load_folder(Path(tmp), path, series, name)
    if not path.is_dir():
        raise InputError("no such folder" if not path.exists() else "expected a folder holding a DICOM series", path)
    return _load_folder(path, path, series, name)


def _load_folder(folder: Path, shown: Path, series: str | None, name: str | None) -> Volume:
    """Read a series from ``folder``; errors name ``shown`` (the zip, not its temporary folder)."""
    groups = _scan(folder, shown)
    uid = _choose(groups, series, shown)
    items, step = _check_series(groups[uid], shown)
    headers = [ds for _, ds in items]
    check_size((int(headers[0].Columns), int(headers[0].Rows), len(items)))
    image = _read_pixels([p for p, _ in items], shown)
    data, affine = image_to_ras(image)
    # ITK takes the slice spacing from the first two slices; the mean over the stack is exact
    affine[:3, 2] *= step / image.GetSpacing()[2]
    data, affine, ornt = to_canonical(data, affine)
    dicom_modality = str(headers[0].get("Modality", "")).upper()
    modality = {"CT": "CT", "MR": "MR"}.get(dicom_modality) or guess_modality(data)
    if modality != dicom_modality:
        log.info("DICOM modality %r shown as %s", dicom_modality, modality)
    short = hashlib.sha1(uid.encode()).hexdigest()[:8]
    stem = shown.name[:-4] if shown.suffix.lower() == ".zip" else shown.resolve().name
    default = (f"{stem} ({short})" if len(groups) > 1 else stem) if stem else f"DICOM series {short}"
    try:
        volume = Volume(data, affine, modality=modality, name=name or default,
                        source=DicomSeries(uid, tuple(headers), ornt))
    except InputError as exc:
        raise InputError(exc.reason, shown) from None
    log.info("read DICOM series %s: %d slices, %s, %s voxels of %s mm", uid, len(items), modality, volume.shape,
             tuple(round(s, 3) for s in volume.spacing))
    return volume


def _scan(folder: Path, shown: Path) -> dict[str, list]:
    """SeriesInstanceUID -> ``[(file, header)]`` of the image files under ``folder``, in file order."""
    import pydicom

    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [Path(root) / n for n in sorted(names)]
        if len(files) > MAX_FILES:
            raise InputError(f"more than {MAX_FILES:,} files; point at the folder of one series", shown)
    groups: dict[str, list] = {}
    skipped = 0
    for p in files:
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception:  # pydicom raises many types for non-DICOM or corrupt files: skip them
            skipped += 1
            continue
        if "Rows" not in ds or "SeriesInstanceUID" not in ds or ds.get("SOPClassUID") == SEG_SOP_CLASS_UID:
            skipped += 1
            continue
        groups.setdefault(str(ds.SeriesInstanceUID), []).append((p, ds))
    if skipped:
        log.debug("%s: skipped %d files that are not DICOM images", shown, skipped)
    if not groups:
        raise InputError("no DICOM images and no *-t1n.nii.gz file: expected a folder (or .zip) holding a DICOM "
                         "series, or a BraTS case folder (t1n, t1c, t2w, t2f)", shown)
    return groups


def _choose(groups: dict[str, list], series: str | None, shown: Path) -> str:
    """The UID to read: ``series`` if given, else the series with the most images (first on ties)."""
    summary = ", ".join(f"{uid} ({len(items)} images)" for uid, items in groups.items())
    if series is not None:
        if series not in groups:
            raise InputError(f"no series {series} here; the series are: {summary}", shown)
        return series
    uid = max(groups, key=lambda u: len(groups[u]))
    if len(groups) > 1:
        log.info("%s holds %d DICOM series: %s; reading the largest, %s (choose with --series UID)",
                 shown, len(groups), summary, uid)
    return uid


def _floats(ds, tag: str) -> list[float]:
    return [float(v) for v in ds[tag].value]


def _check_series(items: list, shown: Path) -> tuple[list, float]:
    """Validate one series' geometry; returns ``(items sorted along the slice normal, slice spacing mm)``."""
    headers = [ds for _, ds in items]
    if any(int(ds.get("NumberOfFrames") or 1) > 1 for ds in headers):
        raise InputError("multi-frame (enhanced) DICOM is not supported; export the series as single-frame "
                         "images", shown)
    if len(headers) < 2:
        raise InputError("the series has 1 image; a volume needs at least 2 slices", shown)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if any(tag not in ds for ds in headers):
            raise InputError(f"some images lack {tag}: not a volume series (a localizer or a screenshot?)", shown)
    if any(int(ds.get("SamplesPerPixel") or 1) != 1 for ds in headers):
        raise InputError("colour images (SamplesPerPixel > 1); expected grey-scale CT or MR slices", shown)
    sizes = Counter((int(ds.Rows), int(ds.Columns)) for ds in headers)
    if len(sizes) > 1:
        counts = ", ".join(f"{r}x{c} in {k} images" for (r, c), k in sizes.most_common())
        raise InputError(f"mixed image sizes (rows x columns): {counts}", shown)
    iop = np.array([_floats(ds, "ImageOrientationPatient") for ds in headers])     # [n, 6]
    if np.abs(iop - iop[0]).max() > 1e-4:
        raise InputError("mixed orientations: ImageOrientationPatient differs between images", shown)
    pixel = np.array([_floats(ds, "PixelSpacing") for ds in headers])               # [n, 2] mm
    if np.abs(pixel - pixel[0]).max() > 1e-4 * pixel[0].max():
        raise InputError("mixed pixel spacings: PixelSpacing differs between images", shown)
    normal = np.cross(iop[0, :3], iop[0, 3:])
    if abs(np.linalg.norm(normal) - 1) > 1e-3:
        raise InputError(f"ImageOrientationPatient {iop[0].tolist()} is not two orthogonal unit vectors", shown)
    ipp = np.array([_floats(ds, "ImagePositionPatient") for ds in headers])         # [n, 3] mm, LPS
    pos = ipp @ normal                                                              # [n] mm along the normal
    order = np.argsort(pos, kind="stable")
    pos, ipp = pos[order], ipp[order]
    gaps = np.diff(pos)
    if gaps.min() < 1e-3:
        raise InputError(f"{int((gaps < 1e-3).sum()) + 1} images share a slice position (several acquisitions, "
                         "echoes or time points in one series?)", shown)
    extent = pos[-1] - pos[0]
    off_axis = np.linalg.norm(ipp[-1] - ipp[0] - extent * normal)
    tilt = np.degrees(np.arctan2(off_axis, extent))
    if tilt > TILT_TOLERANCE_DEG and off_axis > 0.05:
        raise InputError(f"gantry tilt of {tilt:.2f} degrees: the slices are not stacked along their normal; "
                         "resample to an untilted grid first (e.g. 3D Slicer or dcm2niix)", shown)
    step = extent / (len(pos) - 1)
    spacing = float(np.median(gaps))
    if np.abs(pos - (pos[0] + step * np.arange(len(pos)))).max() > max(0.02, SPACING_TOLERANCE * spacing):
        k = int(np.argmax(gaps))
        if gaps[k] > 1.5 * spacing:
            raise InputError(f"missing slices: a gap of {gaps[k]:.3g} mm between slice positions {pos[k]:.3g} and "
                             f"{pos[k + 1]:.3g} mm where the spacing is {spacing:.3g} mm", shown)
        raise InputError(f"uneven slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm", shown)
    return [items[i] for i in order], float(step)


def _read_pixels(files: list[Path], shown: Path):
    """Decode the sorted slice files into one float32 ``SimpleITK.Image`` (rescale applied per file)."""
    import SimpleITK as sitk

    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in files])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    try:
        return reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"could not decode the pixel data ({error_summary(exc)})", shown) from None


def _extract_zip(path: Path, dest: Path) -> None:
    """Unpack ``path`` into ``dest``, refusing paths that leave ``dest``, links and zip bombs."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise InputError(f"not a readable .zip file ({exc})", path) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise InputError(f"holds {len(members):,} files, more than the {MAX_FILES:,} accepted", path)
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise InputError(f"unpacks to {total / 2**30:.1f} GiB, more than the {MAX_ZIP_BYTES >> 30} GiB "
                             "accepted", path)
        for member in members:
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if (not parts or parts[0] in ("/", "") or ".." in parts or ":" in parts[0]
                    or "\0" in member.filename):
                raise InputError(f"refusing member {member.filename!r}: its path leaves the archive", path)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise InputError(f"refusing member {member.filename!r}: a symbolic link", path)
            target = dest.joinpath(*parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                # zipfile stops a member at its declared size (then checks its CRC), so the total
                # checked above bounds what lands on disk
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
            except (zipfile.BadZipFile, RuntimeError, OSError, EOFError) as exc:
                raise InputError(f"could not unpack member {member.filename!r} ({exc})", path) from None
