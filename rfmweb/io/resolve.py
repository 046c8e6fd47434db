"""One way to name a volume on a command line: a volume file, a DICOM series folder or ``.zip``, a
BraTS case folder, or ``sample:NAME``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..volume import Volume
from .brats import is_case_folder, load_brats_case
from .dicom import load_dicom
from .formats import attach_labels, load_volume

SAMPLE_PREFIX = "sample:"


def open_volume(spec: str | os.PathLike | None, labels: str | os.PathLike | None = None,
                series: str | None = None, *, case_seg: bool = True) -> Volume:
    """Load what ``spec`` names.

    Args:
        spec: a ``.nii``/``.nii.gz``/``.nrrd``/``.nhdr``/``.mha``/``.mhd`` file; a DICOM series folder
            or a ``.zip`` of one; a BraTS-style case folder (one holding a ``*-t1n.nii.gz``);
            ``sample:NAME`` (see :func:`rfmweb.samples.list_samples`); or ``None`` for the bundled
            CT phantom.
        labels: a label map on the grid of a volume file or DICOM series (any volume-file format).
        series: the series to read from a DICOM folder holding several: its SeriesInstanceUID,
            SeriesNumber or the id messages give (default: the one with the most images).
        case_seg: ``False``: a BraTS case folder's ``-seg`` file is left unread (its images alone).

    Raises:
        InputError: naming the file or folder and the reason.
    """
    from .. import samples

    if spec is None:
        spec = SAMPLE_PREFIX + "ct_phantom"
    spec = str(spec)
    path = Path(spec)
    is_dicom = path.suffix.lower() == ".zip" or (path.is_dir() and not is_case_folder(path))
    if series is not None and not is_dicom:
        raise InputError("--series picks a series of a DICOM folder or .zip, not of this input", spec)
    if spec.startswith(SAMPLE_PREFIX):
        if labels is not None:
            raise InputError("--labels cannot be combined with a bundled sample (it has its own labels)")
        return samples.load(spec[len(SAMPLE_PREFIX):])
    if is_dicom:
        volume = load_dicom(path, series)
        return volume if labels is None else attach_labels(volume, labels, path)
    if path.is_dir():
        if labels is not None:
            raise InputError("--labels cannot be combined with a BraTS case folder (it holds its *-seg file)", path)
        return load_brats_case(path, read_seg=case_seg)
    if path.suffix.lower() == ".dcm":
        raise InputError("a single DICOM file: give the folder (or .zip) holding the whole series", path)
    return load_volume(path, labels)
