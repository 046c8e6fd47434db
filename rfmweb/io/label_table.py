"""Names and colours of a label map's classes, from the table that travels with it.

A NIfTI, NRRD or MetaImage label map holds integers only; the tools that make label maps write the
classes' names and colours beside it, in one of three text formats, all read here:

- **BIDS** ``*_dseg.tsv`` (tab-separated, a header with ``index`` and ``name`` columns, optionally
  ``color`` as ``#RRGGBB``);
- **3D Slicer** colour table ``.ctbl`` (``index name R G B A`` per line, 0-255, ``#`` comments);
- **ITK-SNAP** label description ``.txt`` (``index R G B A visible mesh "name"``, 0-255 and A in 0-1).

:func:`sidecar_table` finds the table next to a label map by the conventions of BIDS and Slicer
(``seg.nii.gz`` -> ``seg.tsv`` or ``seg.ctbl``); :func:`classes_from_table` turns it into the
:class:`~rfmweb.volume.LabelClass` tuple of the values present in the map. Values the table lacks keep
the generic name ``label N`` (logged); rows for values not in the map are left out.
:func:`write_label_table` writes the BIDS table beside the label maps rfmweb saves, so their names
come back with them.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..volume import LabelClass, generic_classes
from . import itk_image, nifti
from .atomic import atomic_write

log = logging.getLogger(__name__)

#: Suffixes of label tables found beside a label map (:func:`sidecar_table`), in the order tried.
SIDECAR_SUFFIXES = (".tsv", ".ctbl")

#: Label tables larger than this are refused (a few hundred classes take a few kB).
MAX_TABLE_BYTES = 1 << 20

#: ``index -> (name, colour in [0, 1] or None)``
Table = dict[int, tuple[str, tuple[float, float, float] | None]]


def read_label_table(path: str | os.PathLike) -> Table:
    """Read a BIDS ``.tsv``, Slicer ``.ctbl`` or ITK-SNAP ``.txt`` label table (module docstring).

    Returns:
        ``{index: (name, (r, g, b) in [0, 1] or None)}``.

    Raises:
        InputError: naming the file and the line when it cannot be read, a row is malformed or an
            index repeats.
    """
    path = Path(path)
    try:
        if (size := path.stat().st_size) > MAX_TABLE_BYTES:
            raise InputError(f"{size} bytes is too large for a label table "
                             f"(at most {MAX_TABLE_BYTES})", path)
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the label table: {exc}", path) from None
    lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1)]
    lines = [(n, line) for n, line in lines if line and not line.startswith("#")]
    if not lines:
        raise InputError("the label table has no rows", path)
    parse = _bids if path.suffix.lower() == ".tsv" else _itksnap if '"' in lines[0][1] else _slicer
    table: Table = {}
    for n, index, name, color in parse(lines, path):
        if index in table:
            raise InputError(f"line {n}: label {index} appears twice", path)
        if index < 0 or not name:
            raise InputError(f"line {n}: needs an index >= 0 and a name", path)
        table[index] = (name, color)
    return table


def sidecar_path(labels: str | os.PathLike, suffix: str = ".tsv") -> Path:
    """Where the label table of the label map ``labels`` goes: its name with ``suffix`` for the image
    suffix (``seg.nii.gz`` -> ``seg.tsv``)."""
    labels = Path(labels)
    return labels.with_name(nifti.file_stem(labels, nifti.NIFTI_SUFFIXES + itk_image.ITK_SUFFIXES) + suffix)


def sidecar_table(labels: str | os.PathLike) -> Path | None:
    """The label table beside the label map ``labels`` (:func:`sidecar_path`, a :data:`SIDECAR_SUFFIXES`
    suffix), if any."""
    for suffix in SIDECAR_SUFFIXES:
        if (candidate := sidecar_path(labels, suffix)).is_file():
            return candidate
    return None


def write_label_table(labels_path: str | os.PathLike, classes: tuple[LabelClass, ...]) -> Path:
    """Write ``classes`` as the BIDS table beside the label map ``labels_path`` (``index``, ``name``,
    ``color`` as ``#RRGGBB``), atomically; returns its path."""
    rows = ["index\tname\tcolor"] + [
        f"{c.index}\t{c.name}\t#" + "".join(f"{round(255 * min(max(x, 0.0), 1.0)):02x}" for x in c.color)
        for c in sorted(classes, key=lambda c: c.index)]
    text = "\n".join(rows) + "\n"
    return atomic_write(sidecar_path(labels_path), lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def classes_from_table(labels: np.ndarray, table: Table, source: str | os.PathLike) -> tuple[LabelClass, ...]:
    """One class per value present in ``labels [X, Y, Z]``, named and coloured by ``table`` (read from
    ``source``) where it has the value, else generic (:func:`rfmweb.volume.generic_classes`)."""
    generic = generic_classes(labels)
    missing = [c.index for c in generic if c.index != 0 and c.index not in table]
    if missing:
        log.warning("the label table has no row for label(s) %s: shown as 'label N'", missing)
    return tuple(LabelClass(c.index, table[c.index][0], table[c.index][1] or c.color) if c.index in table else c
                 for c in generic)


def _int(value: str, n: int, path: Path, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise InputError(f"line {n}: {what} {value!r} is not an integer", path) from None


def _rgb255(values: list[str], n: int, path: Path) -> tuple[float, float, float]:
    rgb = [_int(v, n, path, "colour component") for v in values]
    if any(not 0 <= v <= 255 for v in rgb):
        raise InputError(f"line {n}: colour components must be 0-255, got {rgb}", path)
    return rgb[0] / 255.0, rgb[1] / 255.0, rgb[2] / 255.0


def _slicer(lines, path: Path):
    """``index name R G B A`` (3D Slicer's colour table)."""
    for n, line in lines:
        parts = line.split()
        if len(parts) < 5:
            raise InputError(f"line {n}: expected 'index name R G B A' (3D Slicer colour table), got {line!r}", path)
        yield n, _int(parts[0], n, path, "index"), parts[1], _rgb255(parts[2:5], n, path)


def _itksnap(lines, path: Path):
    """``index R G B A visible mesh "name"`` (ITK-SNAP's label description)."""
    for n, line in lines:
        try:
            parts = shlex.split(line)
        except ValueError as exc:
            raise InputError(f"line {n}: {exc}", path) from None
        if len(parts) != 8:
            raise InputError(f'line {n}: expected \'index R G B A visible mesh "name"\' (ITK-SNAP), got {line!r}', path)
        yield n, _int(parts[0], n, path, "index"), parts[7], _rgb255(parts[1:4], n, path)


def _bids(lines, path: Path):
    """A tab-separated table with ``index`` and ``name`` columns, optionally ``color`` (BIDS ``dseg.tsv``)."""
    header = [h.strip().lower() for h in lines[0][1].split("\t")]
    if "index" not in header or "name" not in header:
        raise InputError(f"line {lines[0][0]}: a label .tsv needs 'index' and 'name' columns, got {header}", path)
    at = {h: i for i, h in enumerate(header)}
    for n, line in lines[1:]:
        cells = [c.strip() for c in line.split("\t")]
        if len(cells) <= max(at["index"], at["name"]):
            raise InputError(f"line {n}: {len(cells)} columns, the header has {len(header)}", path)
        cells += [""] * (len(header) - len(cells))   # empty trailing cells (their tabs were stripped)
        color = cells[at["color"]] if "color" in at else ""
        color = "" if color == "n/a" else color
        if color and not re.fullmatch(r"#[0-9a-fA-F]{6}", color):
            raise InputError(f"line {n}: colour {color!r} is not #RRGGBB", path)
        rgb = tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5)) if color else None
        yield n, _int(cells[at["index"]], n, path, "index"), cells[at["name"]], rgb
