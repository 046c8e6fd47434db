"""Options several sub-commands share: ``--threads``, ``--no-progress``, ``--series``, style options."""

from __future__ import annotations

import math
import re

from ..errors import InputError


#: What ``--labels`` takes, in every command's help.
LABELS_HELP = "label map on the volume's grid (.nii, .nii.gz, .nrrd, .nhdr, .mha, .mhd)"


def doc_description(doc: str) -> str:
    """A command's ``--help`` description from its module docstring: the first paragraph, without the
    reST markup (````rfmweb x````, ``:mod:`rfmweb.y```) a terminal would print raw."""
    text = doc.split("\n\n")[0]
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def add_compute_options(p, threads_help: str = "torch intra-op threads") -> None:
    """Add ``--threads N`` and ``--no-progress`` to parser ``p``."""
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def add_series_option(p) -> None:
    """Add ``--series ID`` (which series of a DICOM folder or .zip to read) to parser ``p``."""
    p.add_argument("--series", metavar="ID", help="the series to read when the DICOM folder or .zip holds several: "
                                                  "its number, the id the error lists, or its SeriesInstanceUID "
                                                  "(default: the one with the most images)")


def check_view_angles(args) -> None:
    """Refuse ``--azimuth`` / ``--elevation`` that name no view: not finite, or an elevation past a pole."""
    for name in ("azimuth", "elevation"):
        if not math.isfinite(getattr(args, name)):
            raise InputError(f"--{name} must be a finite number of degrees, got {getattr(args, name)}")
    if not -90 <= args.elevation <= 90:
        raise InputError(f"--elevation must lie in -90..90 degrees, got {args.elevation:g}")


def apply_threads(args, device: str | None = None) -> None:
    """Set torch's intra-op threads from ``--threads``; without it, a few when the command's ``device``
    (``cpu``, ``cuda``, ``None``: the default one) is CUDA (:func:`rfmweb.backend.compute_threads`)."""
    if args.threads is not None and args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    from ..backend import compute_threads, parse_device

    compute_threads(args.threads, parse_device(device))


def add_style_options(p) -> None:
    """Add ``--preset P | --tf JSON`` and ``--hide CLASS_OR_GROUP`` (repeatable) to parser ``p``."""
    from ..transfer import PRESETS

    group = p.add_mutually_exclusive_group()
    group.add_argument("--preset", choices=list(PRESETS), help="transfer-function preset (default per modality)")
    group.add_argument("--tf", metavar="JSON", help="transfer function as a ParaView colour-map JSON")
    p.add_argument("--hide", action="append", default=[], metavar="CLASS_OR_GROUP",
                   help="hide a label class (name or value) or a group such as skeleton; repeatable")


def tf_from_args(args, volume):
    """``(TransferFunction, name)`` of ``--tf`` (a ParaView JSON) or ``--preset`` (default per modality)."""
    from ..transfer import DEFAULT_PRESET, load_paraview_json, preset_for

    if getattr(args, "tf", None):
        tf = load_paraview_json(args.tf)
        return tf, tf.name
    name = args.preset or DEFAULT_PRESET[volume.modality]
    return preset_for(name, volume), name


def show_defaults(p) -> None:
    """Append ``(default: X)`` to the help of every option of ``p`` that has a value by default and
    does not name it yet (a training command's many numbers); options without help get one line."""
    import argparse

    for action in p._actions:
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS \
                or not action.option_strings:
            continue
        text = action.help or ""
        if "default" not in text:
            action.help = (text + " " if text else "") + "(default: %(default)s)"
