"""One way to name a volume on a command line: a NIfTI file, a BraTS case folder or ``sample:NAME``."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..volume import Volume
from .brats import load_brats_case
from .nifti import load_volume

SAMPLE_PREFIX = "sample:"


def open_volume(spec: str | os.PathLike | None, labels: str | os.PathLike | None = None) -> Volume:
    """Load what ``spec`` names.

    Args:
        spec: a ``.nii``/``.nii.gz`` file, a BraTS-style case folder, ``sample:NAME``
            (see :func:`rfmweb.samples.list_samples`), or ``None`` for the bundled CT phantom.
        labels: a label map for a NIfTI ``spec`` (same grid).

    Raises:
        InputError: naming the file or folder and the reason.
    """
    from .. import samples

    if spec is None:
        spec = SAMPLE_PREFIX + "ct_phantom"
    spec = str(spec)
    if spec.startswith(SAMPLE_PREFIX):
        if labels is not None:
            raise InputError("--labels cannot be combined with a bundled sample (it has its own labels)")
        return samples.load(spec[len(SAMPLE_PREFIX):])
    path = Path(spec)
    if path.is_dir():
        if labels is not None:
            raise InputError("--labels cannot be combined with a BraTS case folder (it holds its *-seg file)", path)
        return load_brats_case(path)
    return load_volume(path, labels)
