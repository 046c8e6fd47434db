"""Validation of one DICOM series' headers before any pixel is decoded (used by :mod:`rfmweb.io.dicom`).

Every numeric tag the geometry or the pixel decoding depends on is parsed here, and a missing,
malformed, non-finite or inconsistent one is refused with an :class:`~rfmweb.errors.InputError` that
names the tag, so that neither numpy nor GDCM meets it (a crash, garbage pixels, or a buffer
allocated for pixel data the files do not hold).

Geometry: slices are ordered by ImagePositionPatient projected on the slice normal
``n = row x column``; gantry tilt (positions not along ``n``), missing slices, uneven spacing (beyond
:data:`SPACING_TOLERANCE`), duplicate positions, mixed image sizes, orientations or pixel spacings
multi-frame files, images off the stack's line, and several echoes, time points or interleaved
acquisitions in one stack are refused.
"""

from __future__ import annotations

import contextlib
import logging
import math
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from ..errors import InputError

log = logging.getLogger(__name__)

#: Slice positions may stray from an even grid by this fraction of the slice spacing, or by
#: :data:`ROUNDING_MM`: positions written to a tenth of a mm are off by up to 0.05 mm per coordinate.
SPACING_TOLERANCE = 0.05
ROUNDING_MM = 0.1
#: A tilt up to this many degrees (rounded positions) is read as none.
TILT_TOLERANCE_DEG = 0.1
#: A slice may lie off the line through the first and last slice, and the last slice off the first's
#: normal (a tilt), by this fraction of a pixel (positions rounded in the headers).
STRAY_TOLERANCE = 0.25
#: Header elements that tell volumes apart when a series holds several (echoes, time points): each must
#: take one value in a stack, with what the message calls the volumes and the value's unit.
VOLUME_KEYS = (("EchoNumbers", "echoes", ""), ("EchoTime", "echo times", " ms"),
               ("TemporalPositionIdentifier", "time points", ""))
#: Transfer syntaxes whose pixel data is stored as is (length = rows x columns x samples x bytes).
NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
#: Transfer syntaxes GDCM decodes: native, deflated, JPEG family (incl. JPEG-LS, JPEG 2000), RLE.
_DECODED_PREFIXES = ("1.2.840.10008.1.2.4.", "1.2.840.10008.1.2.5")
_DEFLATED = "1.2.840.10008.1.2.1.99"


@contextlib.contextmanager
def quiet_pydicom():
    """pydicom warns (and logs) about every odd value it parses; the checks here refuse the ones that
    matter in words, so neither reaches the terminal while headers are read and checked."""
    pydicom_log = logging.getLogger("pydicom")
    disabled, pydicom_log.disabled = pydicom_log.disabled, True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        pydicom_log.disabled = disabled


def numbers(ds, keyword: str, count: int, shown: Path) -> list[float]:
    """The ``count`` finite numbers of a (multi-valued) decimal tag, or an InputError naming the tag."""
    raw = ds.get(keyword)
    try:
        values = [float(v) for v in ([] if raw is None else [raw] if isinstance(raw, (str, bytes, int, float))
                                     else raw)]
    except (TypeError, ValueError):
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        shown_value = str(raw)[:60] if raw is not None else "empty"
        raise InputError(f"{keyword} is {shown_value!s}, not {count} finite number{'s' if count > 1 else ''} "
                         "(corrupt header)", shown)
    return values


def integer(ds, keyword: str, shown: Path, default: int | None = None) -> int:
    """An integer tag (``default`` when absent), or an InputError naming the tag."""
    raw = ds.get(keyword)
    if raw is None or raw == "":
        if default is None:
            raise InputError(f"some images lack {keyword} (corrupt header)", shown)
        return default
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise InputError(f"{keyword} is {str(raw)[:40]!r}, not a whole number (corrupt header)", shown) from None


def check_pixel_format(headers: list, shown: Path) -> None:
    """Grey-scale, single-frame, a pixel layout GDCM decodes and a finite rescale, in every header."""
    for ds in headers:
        if integer(ds, "NumberOfFrames", shown, 1) > 1:
            raise InputError("multi-frame (enhanced) DICOM is not supported; export the series as single-frame "
                             "images", shown)
        if integer(ds, "SamplesPerPixel", shown, 1) != 1:
            raise InputError("colour images (SamplesPerPixel > 1); expected grey-scale CT or MR slices", shown)
        photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
        if photometric not in ("MONOCHROME1", "MONOCHROME2"):
            raise InputError(f"PhotometricInterpretation is {photometric[:30]}: expected grey-scale (MONOCHROME1/2) "
                             "CT or MR slices", shown)
        allocated, stored = integer(ds, "BitsAllocated", shown), integer(ds, "BitsStored", shown, 0)
        if allocated not in (8, 16, 32):
            raise InputError(f"BitsAllocated is {allocated}: expected 8, 16 or 32 bits per pixel (corrupt header)",
                             shown)
        if not 0 <= stored <= allocated:
            raise InputError(f"BitsStored is {stored}, more than the {allocated} BitsAllocated (corrupt header)", shown)
        if integer(ds, "PixelRepresentation", shown, 0) not in (0, 1):
            raise InputError(f"PixelRepresentation is {ds.get('PixelRepresentation')}: expected 0 (unsigned) or 1 "
                             "(signed) (corrupt header)", shown)
        for keyword in ("RescaleSlope", "RescaleIntercept"):
            if ds.get(keyword) not in (None, ""):
                numbers(ds, keyword, 1, shown)
        syntax = str(getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", "") or NATIVE_SYNTAXES[0])
        if syntax not in NATIVE_SYNTAXES + (_DEFLATED,) and not syntax.startswith(_DECODED_PREFIXES):
            raise InputError(f"transfer syntax {syntax[:64]} is not one this viewer decodes (uncompressed, JPEG, "
                             "JPEG-LS, JPEG 2000 or RLE); export the series uncompressed", shown)


def check_pixel_data(items: list, folder: Path, shown: Path) -> None:
    """Every file must hold the pixel data its header declares, before GDCM allocates for it.

    Reads each file whole, one at a time: native pixel data shorter than ``rows x columns x bytes``
    (or cut off by the end of the file) is a truncated file. Compressed (encapsulated) pixel data is
    left to the decoder.
    """
    import pydicom

    for path, header in items:
        name = str(path.relative_to(folder))
        try:
            ds = pydicom.dcmread(path, force=True)        # the scan found it is DICOM (maybe without a preamble)
            element = ds.get("PixelData") and ds["PixelData"]
        except Exception as exc:  # pydicom raises many types for a file cut short
            raise InputError(f"image {name} is truncated or corrupt ({type(exc).__name__})", shown) from None
        if not element:
            floats = [k for k in ("FloatPixelData", "DoubleFloatPixelData") if k in ds]
            if floats:
                raise InputError(f"image {name} holds {floats[0]} (floating-point pixels), which this viewer does not "
                                 "read; export the series with integer pixels and a rescale", shown)
            raise InputError(f"image {name} has no pixel data", shown)
        syntax = str(getattr(ds.file_meta, "TransferSyntaxUID", "") or NATIVE_SYNTAXES[0])
        if syntax not in NATIVE_SYNTAXES:
            continue
        if element.is_undefined_length:
            raise InputError(f"image {name} holds compressed pixel data under the uncompressed transfer syntax "
                             f"{syntax} (corrupt file)", shown)
        expected = int(header.Rows) * int(header.Columns) * int(header.BitsAllocated) // 8
        held = len(element.value)
        if held < expected:
            raise InputError(f"image {name} is truncated: its header declares {int(header.Rows)} x "
                             f"{int(header.Columns)} pixels ({expected:,} bytes) but it holds {held:,} bytes of "
                             "pixel data", shown)


def _unique_images(items: list) -> list:
    """``items`` without later copies of an image already listed (the same SOPInstanceUID)."""
    seen: set[str] = set()
    unique = []
    for p, ds in items:
        uid = str(ds.get("SOPInstanceUID", "") or "")
        if uid and uid in seen:
            continue
        seen.add(uid)
        unique.append((p, ds))
    if len(unique) < len(items):
        n = len(items) - len(unique)
        log.info("%d cop%s of images already read skipped (the same SOPInstanceUID)", n, "y" if n == 1 else "ies")
    return unique


def check_series(items: list, shown: Path) -> tuple[list, float]:
    """Validate one series' headers; returns ``(items sorted along the slice normal, slice spacing mm)``.

    Args:
        items: ``[(file, header)]`` of one SeriesInstanceUID; copies of an image (the same
            SOPInstanceUID: an export that re-sent it) are read once.
        shown: the folder or zip named in errors.
    """
    items = _unique_images(items)
    headers = [ds for _, ds in items]
    check_pixel_format(headers, shown)
    if len(headers) < 2:
        raise InputError("the series has 1 image; a volume needs at least 2 slices", shown)
    for tag in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing"):
        if any(tag not in ds for ds in headers):
            raise InputError(f"some images lack {tag}: not a volume series (a localizer or a screenshot?)", shown)
    sizes = Counter((integer(ds, "Rows", shown), integer(ds, "Columns", shown)) for ds in headers)
    if len(sizes) > 1:
        counts = ", ".join(f"{r}x{c} in {k} images" for (r, c), k in sizes.most_common())
        raise InputError(f"mixed image sizes (rows x columns): {counts}", shown)
    iop = np.array([numbers(ds, "ImageOrientationPatient", 6, shown) for ds in headers])     # [n, 6]
    if np.abs(iop - iop[0]).max() > 1e-4:
        raise InputError("mixed orientations: ImageOrientationPatient differs between images", shown)
    pixel = np.array([numbers(ds, "PixelSpacing", 2, shown) for ds in headers])               # [n, 2] mm
    if (pixel[0] <= 0).any():
        raise InputError(f"PixelSpacing is {pixel[0].tolist()} mm: both must be > 0 (corrupt header)", shown)
    if np.abs(pixel - pixel[0]).max() > 1e-4 * pixel[0].max():
        raise InputError("mixed pixel spacings: PixelSpacing differs between images", shown)
    row, col = iop[0, :3], iop[0, 3:]
    normal = np.cross(row, col)
    if max(abs(np.linalg.norm(row) - 1), abs(np.linalg.norm(col) - 1), abs(np.linalg.norm(normal) - 1)) > 1e-3:
        raise InputError(f"ImageOrientationPatient {iop[0].tolist()} is not two orthogonal unit vectors", shown)
    ipp = np.array([numbers(ds, "ImagePositionPatient", 3, shown) for ds in headers])         # [n, 3] mm, LPS
    pos = ipp @ normal                                                                        # [n] mm along n
    _check_one_volume(headers, pos, shown)
    order = np.argsort(pos, kind="stable")
    pos, ipp = pos[order], ipp[order]
    gaps = np.diff(pos)
    same = gaps < 1e-3                                                      # [n - 1] image i+1 at image i's place
    if same.any():
        k = int(np.argmax(same))
        (a, _), (b, _) = items[order[k]], items[order[k + 1]]
        shared = int((np.concatenate([same, [False]]) | np.concatenate([[False], same])).sum())
        places = shared - int(same.sum())
        raise InputError(f"{shared} images share {'one' if places == 1 else places} slice position"
                         f"{'s' if places > 1 else ''}, e.g. {a.name} and {b.name} at {pos[k]:.4g} mm (several "
                         "acquisitions, echoes or time points in one series?)", shown)
    extent = pos[-1] - pos[0]
    off_axis = np.linalg.norm(ipp[-1] - ipp[0] - extent * normal)
    tilt = np.degrees(np.arctan2(off_axis, extent))
    aside = max(ROUNDING_MM, STRAY_TOLERANCE * pixel[0].min())   # mm: rounded positions are not a tilt
    if tilt > TILT_TOLERANCE_DEG and off_axis > aside:
        raise InputError(f"gantry tilt of {tilt:.2f} degrees: the slices are not stacked along their normal; "
                         "resample to an untilted grid first (e.g. 3D Slicer or dcm2niix)", shown)
    sideways = ipp - ipp[0] - np.outer(pos - pos[0], normal)                 # [n, 3] mm, in the slice plane
    stray = np.linalg.norm(sideways - np.outer((pos - pos[0]) / extent, sideways[-1]), axis=1)   # [n] mm
    k = int(np.argmax(stray))
    if stray[k] > aside:
        raise InputError(f"image {items[order[k]][0].name} lies {stray[k]:.3g} mm to the side of the line the other "
                         "slices stack along (an image of another stack?)", shown)
    step = extent / (len(pos) - 1)
    spacing = float(np.median(gaps))
    if np.abs(pos - (pos[0] + step * np.arange(len(pos)))).max() > max(ROUNDING_MM, SPACING_TOLERANCE * spacing):
        k = int(np.argmax(gaps))
        if gaps[k] > 1.5 * spacing:
            raise InputError(f"missing slices: a gap of {gaps[k]:.3g} mm between slice positions {pos[k]:.3g} and "
                             f"{pos[k + 1]:.3g} mm where the spacing is {spacing:.3g} mm", shown)
        raise InputError(f"uneven slice spacing: gaps from {gaps.min():.3g} to {gaps.max():.3g} mm", shown)
    return [items[i] for i in order], float(step)


def _check_one_volume(headers: list, pos: np.ndarray, shown: Path) -> None:
    """Refuse a stack that holds several volumes: echoes or time points (:data:`VOLUME_KEYS` take more
    than one value), or acquisitions (AcquisitionNumber) whose slice positions ``pos`` ``[n]`` (mm
    along the normal) interleave. Acquisitions one after another along the stack (step-and-shoot CT)
    are one volume. Images that leave a value out are not counted (some exports drop it on a few)."""
    for keyword, volumes, unit in VOLUME_KEYS:
        values = sorted({_value(ds.get(keyword)) for ds in headers} - {""})
        if len(values) > 1:
            listed = ", ".join(values[:4]) + (", ..." if len(values) > 4 else "")
            raise InputError(f"the series holds {len(values)} {volumes} in one stack ({keyword} {listed}{unit}); "
                             "this viewer reads one 3-D volume: export each as its own series (dcm2niix writes "
                             "them as separate files)", shown)
    spans: dict[str, list[float]] = {}
    for ds, p in zip(headers, pos):
        number = _value(ds.get("AcquisitionNumber"))
        if number:
            span = spans.setdefault(number, [p, p])
            span[0], span[1] = min(span[0], p), max(span[1], p)
    if len(spans) < 2:
        return
    ordered = sorted(spans.values())
    reach = ordered[0][1]
    for lo, hi in ordered[1:]:
        if lo < reach - 1e-3:
            raise InputError(f"the series interleaves {len(spans)} acquisitions (AcquisitionNumber) along one "
                             "stack; this viewer reads one 3-D volume: export each acquisition as its own series",
                             shown)
        reach = max(reach, hi)


def _value(raw) -> str:
    """A header value as one text whatever its spelling (``"10"`` and ``"10.0"`` alike; ``""`` if absent)."""
    try:
        return f"{float(raw):g}"
    except (TypeError, ValueError):
        return str(raw if raw is not None else "").strip()
