"""DICOM series in: a folder (or a ``.zip`` of one) -> :class:`~rfmweb.volume.Volume`.

pydicom reads the headers (no pixel data) to group the files by SeriesInstanceUID, pick one series
and validate its geometry; SimpleITK/GDCM decodes the pixels (uncompressed, JPEG, JPEG-LS,
JPEG 2000, RLE) and applies each file's RescaleSlope/RescaleIntercept (CT -> HU). A MONOCHROME1
series (brighter = lower values on display) is decoded by pydicom instead: GDCM inverts its stored
values before the rescale, which gives wrong HU. Voxels a file marks as padding (PixelPaddingValue,
up to PixelPaddingRangeLimit: outside the scanner's field of view, often -2000 or -3024 HU) take the
lowest value of the series' real voxels (air), so they never stretch a range or a histogram. Copies
of one image (the same SOPInstanceUID, as PACS exports re-send) are read once. Files without the
128-byte preamble and ``DICM`` signature (older PACS and ACR-NEMA tools write bare datasets) are read
when they start with a DICOM tag of group 0002 or 0008 and name a series. Slices are ordered
by ImagePositionPatient projected on the slice normal ``n = row x column`` (never by file name or
InstanceNumber). The LPS geometry becomes a RAS+ affine as for NRRD
(:mod:`rfmweb.io.itk_image`), the slice spacing being the mean over the whole stack.

Refused with an :class:`~rfmweb.errors.InputError` naming the folder and the problem: bad geometry
(gantry tilt, missing slices, uneven spacing, duplicate positions, mixed sizes, orientations or
pixel spacings), malformed or missing tags, pixel data shorter than declared, unknown transfer
syntaxes, float pixel data, multi-frame or colour images, several echoes or time points in one
stack (all checked in :mod:`rfmweb.io.dicom_checks` before any
pixel is decoded); a DICOM file that cannot be parsed; hostile zips (paths leaving the archive,
links, bombs).

Privacy: patient identifiers (name, ID, birth date) are never logged, put in errors, or used as
the volume's ``name`` (the SeriesDescription, else ``DICOM series`` and its number or a hash of its
UID); logs never name the folder either (exports are often named after the patient). The headers stay
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
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import InputError
from ..volume import Volume, check_size
from .dicom_checks import check_pixel_data, check_series, quiet_pydicom
from .formats import VOLUME_SUFFIXES
from .itk_image import captured_stderr, error_summary, from_canonical, image_to_ras, to_canonical
from .nifti import guess_modality

log = logging.getLogger(__name__)

#: Largest total uncompressed size of a ``.zip`` accepted, bytes.
MAX_ZIP_BYTES = 4 << 30
#: Most files looked at in a folder or a ``.zip``.
MAX_FILES = 100_000
#: Segmentation Storage: our own output may sit beside the images; it is not a series to render.
SEG_SOP_CLASS_UID = "1.2.840.10008.5.1.4.1.1.66.4"
#: Media Storage Directory (a DICOMDIR): DICOM, but no image and no series.
MEDIA_DIRECTORY_UID = "1.2.840.10008.1.3.10"


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


def voi_window(volume: Volume) -> tuple[float, float] | None:
    """The grey window ``(lo, hi)`` (HU for CT) the series' own header asks for (its first
    WindowCenter / WindowWidth, as the scanner's protocol set it), or ``None`` (not DICOM, or none)."""
    source = dicom_source(volume)
    if source is None or not source.datasets:
        return None

    def first(value) -> float:   # a multi-valued element lists alternatives: take the first
        return float(next(iter(value)) if hasattr(value, "__iter__") and not isinstance(value, str) else value)

    ds = source.datasets[0]
    try:
        center, width = first(ds.get("WindowCenter")), first(ds.get("WindowWidth"))
    except (TypeError, ValueError, StopIteration):
        return None
    if not (np.isfinite(center) and np.isfinite(width) and width > 0):
        return None
    return center - width / 2, center + width / 2


def load_dicom(path: str | os.PathLike, series: str | None = None, *, name: str | None = None) -> Volume:
    """Read one DICOM series from a folder (searched recursively) or a ``.zip`` of one.

    Args:
        path: the folder or ``.zip``.
        series: the series to read (its SeriesInstanceUID, SeriesNumber, or the id messages give);
            default: the series with the most images (a tie is refused).
        name: display name; default: the SeriesDescription, else "DICOM series" and its number (never
            the folder's name: exports often name folders after the patient).

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
    groups, rowless = _scan(folder, shown)
    with quiet_pydicom():                             # an odd NumberOfFrames is refused in words
        uid = _choose(groups, series, shown)
    for p, ds in rowless.get(uid, []):
        if ds.get("SOPClassUID") in {d.get("SOPClassUID") for _, d in groups[uid]}:
            raise InputError(f"image {_shown_name(p, folder)} has no Rows: its header is truncated or corrupt", shown)
    with quiet_pydicom():                             # odd values are refused in words
        try:
            items, step = check_series(groups[uid], shown)
        except InputError as exc:
            if series is not None or len(groups) == 1:
                raise
            others = "; ".join(_describe(u, groups[u]) for u in groups if u != uid)
            raise InputError(f"{exc.reason} (the largest series, {_describe(uid, groups[uid])}; the folder also "
                             f"holds {others}: choose one with --series)", shown) from None
        headers = [ds for _, ds in items]
        try:
            check_size((int(headers[0].Columns), int(headers[0].Rows), len(items)))
        except InputError as exc:
            raise InputError(exc.reason, shown) from None
        check_pixel_data(items, folder, shown)
    image = _read_pixels(items, folder, shown)
    data, affine = image_to_ras(image)
    # ITK takes the slice spacing from the first two slices; the mean over the stack is exact
    affine[:3, 2] *= step / image.GetSpacing()[2]
    data, affine, ornt = to_canonical(data, affine)
    dicom_modality = str(headers[0].get("Modality", "")).upper()
    modality = {"CT": "CT", "MR": "MR"}.get(dicom_modality) or guess_modality(data)
    if modality != dicom_modality:
        log.info("DICOM modality %r shown as %s", dicom_modality, modality)
    short = _series_id(uid)
    # named by the series, not the folder: an export's folders are often named after the patient
    desc = str(headers[0].get("SeriesDescription", "") or "").strip()
    number = headers[0].get("SeriesNumber")          # None when the element is there but empty
    default = desc or f"DICOM series {short if number in (None, '') else number}"
    try:
        volume = Volume(data, affine, modality=modality, name=name or default,
                        source=DicomSeries(uid, tuple(headers), ornt))
    except InputError as exc:
        raise InputError(exc.reason, shown) from None
    log.info("read DICOM series %s (a hash of its UID): %d slices, %s, %s voxels of %s mm", short, len(items),
             modality, volume.shape, tuple(round(s, 3) for s in volume.spacing))
    return volume


def _scan(folder: Path, shown: Path) -> tuple[dict[str, list], dict[str, list]]:
    """The image files under ``folder``, by SeriesInstanceUID, in file order.

    Returns:
        ``(images, rowless)``: ``uid -> [(file, header)]`` of the images, and ``uid -> [(file, header)]``
        of the other DICOM files that name a series (reports, or images whose header is cut short).

    Raises:
        InputError: a file that starts as DICOM (``DICM`` at byte 128) but cannot be parsed.
    """
    import pydicom

    files = []
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        files += [Path(root) / n for n in sorted(names)]
        if len(files) > MAX_FILES:
            raise InputError(f"more than {MAX_FILES:,} files; point at the folder of one series", shown)
    groups: dict[str, list] = {}
    rowless: dict[str, list] = {}
    skipped = bare = 0
    for p in files:
        if not p.is_file():           # a pipe or device would block the read; a dangling link has nothing
            skipped += 1
            continue
        try:
            with quiet_pydicom():
                ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception as exc:  # pydicom raises many types for non-DICOM or corrupt files
            if _is_dicom(p):
                raise InputError(f"{_shown_name(p, folder)} could not be read: a DICOM file that is truncated or "
                                 f"corrupt ({type(exc).__name__}); remove it or export the series again",
                                 shown) from None
            ds = _bare_dataset(p)
            if ds is None:
                skipped += 1
                continue
            bare += 1
        if ds.get("SOPClassUID") == SEG_SOP_CLASS_UID or "SeriesInstanceUID" not in ds:
            media = getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", None)
            if "SeriesInstanceUID" not in ds and media != MEDIA_DIRECTORY_UID and _is_dicom(p):
                raise InputError(f"{_shown_name(p, folder)} could not be read: a DICOM file without a "
                                 "SeriesInstanceUID (truncated or corrupt); remove it or export the series again",
                                 shown)
            skipped += 1
            continue
        (groups if "Rows" in ds else rowless).setdefault(str(ds.SeriesInstanceUID), []).append((p, ds))
    if skipped:
        log.debug("skipped %d files that are not DICOM images", skipped)
    if bare:
        log.info("%d DICOM files without the file header (preamble and DICM) read as bare datasets", bare)
    if not groups:
        volumes = sorted(_shown_name(p, folder) for p in files if p.name.lower().endswith(VOLUME_SUFFIXES))
        cases = sorted({str(Path(v).parent) for v in volumes if v.lower().endswith(("-t1n.nii", "-t1n.nii.gz"))})
        hint = ""
        if cases:               # a cohort: BraTS case folders inside
            hint = f"; it holds BraTS case folders ({', '.join(cases[:3])}{', ...' * (len(cases) > 3)}): give one"
        elif volumes:
            hint = f"; it holds {', '.join(volumes[:3])}: give that file itself"
        raise InputError("no DICOM images and no *-t1n.nii.gz file: expected a folder (or .zip) holding a DICOM "
                         f"series, or a BraTS case folder (t1n, t1c, t2w, t2f){hint}", shown)
    return groups, rowless


def _is_dicom(path: Path) -> bool:
    """Whether ``path`` carries the DICOM file signature (``DICM`` after the 128-byte preamble)."""
    with path.open("rb") as f:
        return f.read(132)[128:] == b"DICM"


def _bare_dataset(path: Path):
    """The header of a DICOM dataset stored without the file header (no preamble, no ``DICM``), or
    ``None`` (not one).

    Only a file that starts with a little-endian tag of group 0002 (file meta) or 0008 (the first
    group of an image's dataset) is parsed, so a large non-DICOM file is never read as one; the parse
    must yield a SOPClassUID and a SeriesInstanceUID.
    """
    import pydicom

    with path.open("rb") as f:
        if f.read(2) not in (b"\x02\x00", b"\x08\x00"):
            return None
    try:
        with quiet_pydicom():
            ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception:  # pydicom raises many types for data that is not DICOM
        return None
    return ds if "SOPClassUID" in ds and "SeriesInstanceUID" in ds else None


def _shown_name(path: Path, folder: Path) -> str:
    """``path`` relative to the folder read (never a temporary folder's path), for messages."""
    return str(path.relative_to(folder))


def _series_id(uid: str) -> str:
    """A short id of a series for logs and messages (a hash: the UID itself is never logged)."""
    return hashlib.sha1(uid.encode()).hexdigest()[:8]


def _frames(items: list) -> int:
    """How many 2-D images the files ``[(file, header)]`` hold (a multi-frame file counts its frames)."""
    total = 0
    for _, ds in items:
        try:
            total += max(1, int(ds.get("NumberOfFrames") or 1))
        except (TypeError, ValueError):   # malformed: refused in words if this series is read
            total += 1
    return total


def _describe(uid: str, items: list) -> str:
    """One series as the messages list it: ``3 'Head 5mm' (108 images, id 419b46a9)``, or
    ``(1 image of 40 frames, ...)`` for a multi-frame file."""
    ds = items[0][1]
    desc = str(ds.get("SeriesDescription", "") or "").strip()
    frames = _frames(items)
    count = f"{len(items)} image{'s' * (len(items) != 1)}" + (f" of {frames} frames" if frames > len(items) else "")
    return f"{ds.get('SeriesNumber', '?')}{f' {desc!r}' if desc else ''} ({count}, id {_series_id(uid)})"


def _choose(groups: dict[str, list], series: str | None, shown: Path) -> str:
    """The UID to read: ``series`` (a SeriesInstanceUID, a series number or the id in the messages)
    if given, else the series with the most images (a multi-frame file counts its frames, so that
    an enhanced series is refused in words rather than passed over for a few key images); a tie for
    the most is refused (file order would decide which scan a clinician sees)."""
    summary = "; ".join(_describe(uid, items) for uid, items in groups.items())
    if series is not None:
        found = [uid for uid, items in groups.items()
                 if series in (uid, _series_id(uid), str(items[0][1].get("SeriesNumber", "")))]
        if len(found) != 1:
            raise InputError(f"{'no' if not found else 'more than one'} series {series} here; the series are: "
                             f"{summary} (give --series a number, an id or a SeriesInstanceUID)", shown)
        return found[0]
    frames = {uid: _frames(items) for uid, items in groups.items()}
    ranked = sorted(groups, key=lambda u: -frames[u])
    if len(ranked) > 1 and frames[ranked[0]] == frames[ranked[1]]:
        raise InputError(f"holds several series with {frames[ranked[0]]} images: {summary}; choose one with "
                         "--series (its number or id)", shown)
    if len(groups) > 1:
        log.info("the folder holds %d DICOM series: %s; reading the largest, id %s (choose with --series)",
                 len(groups), summary, _series_id(ranked[0]))
    return ranked[0]


def _read_pixels(items: list, folder: Path, shown: Path):
    """Decode the sorted slices ``[(file, header)]`` into one float32 ``SimpleITK.Image`` (rescale applied
    per file); an image that cannot be decoded is named."""
    import SimpleITK as sitk

    files = [p for p, _ in items]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in files])
    reader.SetOutputPixelType(sitk.sitkFloat32)
    with captured_stderr() as said:         # GDCM and libjpeg print their complaints
        try:
            image = reader.Execute()
        except RuntimeError as exc:
            error = exc
            image = None
    if image is None:
        for p, ds in items:                 # which file? (one at a time, only once the series failed)
            with captured_stderr() as said_one:
                try:
                    sitk.ReadImage(str(p), sitk.sitkFloat32)
                except RuntimeError as exc:
                    reason = error_summary(exc, said_one).replace(str(folder) + os.sep, "")
                    syntax = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                    what = f"{getattr(syntax, 'name', syntax)}: " if syntax else ""
                    raise InputError(f"could not decode the pixel data of {_shown_name(p, folder)} ({what}{reason})",
                                     shown) from None
        reason = error_summary(error, said).replace(str(folder) + os.sep, "")
        raise InputError(f"could not decode the pixel data ({reason})", shown)
    if any(str(ds.get("PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1" for _, ds in items):
        image = _monochrome1(items, folder, shown, image)
    return _unpad(items, image)


def _unpad(items: list, image):
    """``image`` with the voxels each file marks as padding set to the lowest real voxel value.

    A file's padding is its stored value PixelPaddingValue (to PixelPaddingRangeLimit when given),
    rescaled like its pixels; stored values are integers, so half a RescaleSlope tells them apart."""
    import SimpleITK as sitk

    if not any("PixelPaddingValue" in ds for _, ds in items):
        return image
    data = sitk.GetArrayFromImage(image)                  # [slices, rows, columns], the files' order
    padded = np.zeros(data.shape, bool)
    for k, (_, ds) in enumerate(items):
        try:
            ends = [float(ds.PixelPaddingValue)] + ([float(ds.PixelPaddingRangeLimit)]
                                                     if "PixelPaddingRangeLimit" in ds else [])
            slope, intercept = float(ds.get("RescaleSlope", 1) or 1), float(ds.get("RescaleIntercept", 0) or 0)
        except (AttributeError, TypeError, ValueError):   # absent or malformed: nothing marked in this file
            continue
        lo, hi = sorted(v * slope + intercept for v in (min(ends), max(ends)))
        half = abs(slope) / 2
        padded[k] = (data[k] >= lo - half) & (data[k] <= hi + half)
    if not padded.any():
        return image
    data[padded] = data[~padded].min() if not padded.all() else 0.0
    log.info("%.1f%% of the voxels are padding (outside the field of view): shown as the lowest real value",
             100 * padded.mean())
    out = sitk.GetImageFromArray(data)
    out.CopyInformation(image)
    return out


def _monochrome1(items: list, folder: Path, shown: Path, image):
    """``image`` with the voxel values pydicom decodes and rescales (its modality LUT), not GDCM's,
    which inverts a MONOCHROME1 image's stored values first (CT: 63487 - HU for 16-bit data)."""
    import pydicom
    import SimpleITK as sitk
    from pydicom.pixels import apply_modality_lut

    planes = []
    for p, _ in items:
        try:
            with quiet_pydicom():
                ds = pydicom.dcmread(p, force=True)       # the scan found it is DICOM
                planes.append(np.asarray(apply_modality_lut(ds.pixel_array, ds), np.float32))
        except Exception as exc:   # pydicom raises many types for data it cannot decode
            raise InputError(f"could not decode the pixel data of {_shown_name(p, folder)} "
                             f"(MONOCHROME1: {type(exc).__name__}: {str(exc)[:120]})", shown) from None
    out = sitk.GetImageFromArray(np.stack(planes))           # [slices, rows, columns], the files' order
    out.CopyInformation(image)
    return out


def _extract_zip(path: Path, dest: Path) -> None:
    """Unpack ``path`` into ``dest``, refusing paths that leave ``dest``, links and zip bombs."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise InputError(f"not a readable .zip file ({exc})", path) from None
    with archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise InputError(f"holds {len(members):,} files, more than the {MAX_FILES:,} accepted", path)
        total = sum(m.file_size for m in members)
        if total > MAX_ZIP_BYTES:
            raise InputError(f"unpacks to {total / 2**30:.1f} GiB, more than the {MAX_ZIP_BYTES >> 30} GiB "
                             "accepted", path)
        root = dest.resolve()
        for member in members:
            shown = repr(member.filename[:80] + ("..." if len(member.filename) > 80 else ""))
            parts = PurePosixPath(member.filename.replace("\\", "/")).parts
            if (not parts or parts[0].startswith("/") or parts[0] == "" or ".." in parts or ":" in parts[0]
                    or "\0" in member.filename):
                raise InputError(f"refusing member {shown}: its path leaves the archive", path)
            if stat.S_ISLNK(member.external_attr >> 16):
                raise InputError(f"refusing member {shown}: a symbolic link", path)
            target = dest.joinpath(*parts)
            if root not in target.resolve().parents:          # belt and braces: nothing lands outside dest
                raise InputError(f"refusing member {shown}: its path leaves the archive", path)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                # zipfile stops a member at its declared size (then checks its CRC), so the total
                # checked above bounds what lands on disk
                with archive.open(member) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
            except OSError as exc:          # a name too long, a file where a folder must go, disk full
                raise InputError(f"could not unpack member {shown} ({exc.strerror or exc})", path) from None
            except RuntimeError:            # zipfile's word for a password-protected member
                raise InputError(f"could not unpack member {shown}: it is encrypted (password-protected); "
                                 "unpack the archive yourself", path) from None
            except (zipfile.BadZipFile, EOFError, zlib.error, NotImplementedError, ValueError) as exc:
                # bad CRC, corrupt deflate stream, unsupported compression method
                raise InputError(f"could not unpack member {shown} ({exc})", path) from None
