"""ParaView colour-map JSON import and export.

Format (ParaView's "Export colour map preset"): a JSON list of objects with ``Name``,
``ColorSpace``, ``RGBPoints`` = ``[x, r, g, b, ...]`` and optionally ``Points`` =
``[x, opacity, midpoint, sharpness, ...]`` (``vtkPiecewiseFunction::AddPoint`` arguments).
Segments with a midpoint other than 0.5 or a sharpness other than 0 are resampled into linear
points with VTK's curve; colour spaces other than RGB are interpolated in RGB (logged).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..io.atomic import atomic_write
from .function import TransferFunction

log = logging.getLogger(__name__)


def _vtk_segment(y1: float, y2: float, midpoint: float, sharpness: float, t: np.ndarray) -> np.ndarray:
    """vtkPiecewiseFunction's value between two nodes at normalised positions ``t`` in [0, 1]."""
    m = min(max(midpoint, 1e-5), 1 - 1e-5)
    t = np.where(t < m, 0.5 * t / m, 0.5 + 0.5 * (t - m) / (1 - m))
    if sharpness > 0.99:
        return np.where(t < 0.5, y1, y2)
    if sharpness < 0.01:
        return y1 + (y2 - y1) * t
    p = 1 + 10 * sharpness
    t = np.where(t < 0.5, 0.5 * (2 * t) ** p, 1 - 0.5 * (2 * (1 - t)) ** p)
    t2, t3 = t * t, t * t * t
    slope = (y2 - y1) * (1 - sharpness)
    y = (2 * t3 - 3 * t2 + 1) * y1 + (-2 * t3 + 3 * t2) * y2 + (t3 - 2 * t2 + t) * slope + (t3 - t2) * slope
    return np.clip(y, min(y1, y2), max(y1, y2))


def _opacity_points(flat: list[float], where: str) -> list[tuple[float, float]]:
    if len(flat) % 4 or not flat:
        raise InputError(f"'Points' must hold groups of 4 numbers (x, opacity, midpoint, sharpness), "
                         f"got {len(flat)} numbers", where)
    nodes = np.asarray(flat, dtype=np.float64).reshape(-1, 4)
    out: list[tuple[float, float]] = []
    for (x1, y1, m, s), (x2, y2, _, _) in zip(nodes[:-1], nodes[1:]):
        if abs(m - 0.5) < 1e-6 and s < 0.01:
            out.append((x1, y1))
            continue
        t = np.linspace(0, 1, 33)[:-1]
        out.extend(zip(x1 + t * (x2 - x1), _vtk_segment(y1, y2, m, s, t)))
    out.append((nodes[-1, 0], nodes[-1, 1]))
    return out


def tf_from_paraview(obj: dict, where: str = "ParaView JSON") -> TransferFunction:
    """One ParaView preset object -> :class:`TransferFunction` (shading keeps its defaults)."""
    if not isinstance(obj, dict) or "RGBPoints" not in obj:
        raise InputError("expected a ParaView colour map object with 'RGBPoints'", where)
    rgb = obj["RGBPoints"]
    if not isinstance(rgb, list) or len(rgb) % 4 or not rgb:
        raise InputError("'RGBPoints' must hold groups of 4 numbers (x, r, g, b)", where)
    color = np.asarray(rgb, dtype=np.float64).reshape(-1, 4)
    if obj.get("ColorSpace", "RGB") not in ("RGB",):
        log.warning("%s: colour space %s interpolated in RGB", where, obj["ColorSpace"])
    if "Points" in obj:
        opacity = _opacity_points(obj["Points"], where)
    else:  # ParaView's default opacity: a linear ramp over the colour range
        opacity = [(color[0, 0], 0.0), (color[-1, 0], 1.0)]
    try:
        return TransferFunction(str(obj.get("Name", "imported")), color=color.tolist(), opacity=opacity)
    except InputError as exc:
        raise InputError(exc.reason, where) from None


def tf_to_paraview(tf: TransferFunction) -> dict:
    """:class:`TransferFunction` -> one ParaView preset object (RGB, linear opacity)."""
    return {
        "Name": tf.name,
        "ColorSpace": "RGB",
        "RGBPoints": [v for p in tf.color for v in p],
        "Points": [v for x, a in tf.opacity for v in (x, a, 0.5, 0.0)],
        "Creator": "rfmweb",
    }


def load_paraview_json(path: str | os.PathLike, name: str | None = None) -> TransferFunction:
    """Read a ParaView colour-map JSON file (a list of presets, or one preset object).

    Args:
        path: the .json file.
        name: which preset to take when the file holds several; default the first.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read ({exc.strerror})", path) from None
    text = re.sub(r",\s*([\]}])", r"\1", text)  # ParaView's own files carry trailing commas
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg} at line {exc.lineno})", path) from None
    presets = data if isinstance(data, list) else [data]
    if name is not None:
        presets = [p for p in presets if isinstance(p, dict) and p.get("Name") == name]
        if not presets:
            raise InputError(f"no preset named {name!r}", path)
    usable = [p for p in presets if isinstance(p, dict) and "RGBPoints" in p]
    if not usable:
        raise InputError("no colour map with 'RGBPoints' (indexed colour maps are not transfer functions)", path)
    return tf_from_paraview(usable[0], str(path))


def save_paraview_json(tf: TransferFunction, path: str | os.PathLike) -> Path:
    """Write ``tf`` as a one-entry ParaView colour-map JSON file (atomically)."""
    text = json.dumps([tf_to_paraview(tf)], indent=2)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))
