"""What a command line or ``serve()`` names -> ``(volume, splats)`` for a :class:`RenderSession`."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import InputError
from ..io import open_volume
from ..splats.model import Splats6D
from ..splats.ply6d import read_splats
from ..volume import Volume

#: Files read as splats, not as a volume: ours (``.npz``) and the 6D PLY (``export-ply --6d``, ``prepare --out x.ply``).
SPLAT_SUFFIXES = (".npz", ".ply")


def open_sources(spec: Volume | str | os.PathLike | None, labels: str | os.PathLike | None = None,
                 splats: Splats6D | str | os.PathLike | None = None, *, series: str | None = None
                 ) -> tuple[Volume | None, Splats6D | None]:
    """Load a view's sources.

    Args:
        spec: a :class:`Volume`; a volume file (NIfTI, NRRD, MHA), a DICOM series folder or ``.zip``,
            a BraTS case folder or ``sample:NAME`` (see :func:`rfmweb.io.open_volume`; ``None``: the
            bundled CT phantom); or a splat file (``.npz``, or a 6D ``.ply``) to show splats alone.
        labels: a label map for a volume file or DICOM series.
        splats: splats of the same anatomy (a :class:`Splats6D` or a ``.npz`` / 6D ``.ply`` path), shown by the
            ``splats`` renderer beside the volume.
        series: the SeriesInstanceUID to read from a DICOM folder holding several (default: the largest).

    Raises:
        InputError: naming the file and the reason.
    """
    if isinstance(splats, (str, os.PathLike)):
        splats = read_splats(splats)
    if isinstance(spec, Volume):
        if labels is not None or series is not None:
            raise InputError("labels= and series= are only used with a volume file or DICOM series")
        return spec, splats
    if spec is not None and Path(str(spec)).suffix.lower() in SPLAT_SUFFIXES:
        if labels is not None or splats is not None:
            raise InputError("--labels and --splats go with a volume, not with a splat file", spec)
        return None, read_splats(spec)
    return open_volume(spec, labels, series=series), splats
