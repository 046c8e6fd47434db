"""Atomic file writes: a failed write never leaves a partial output."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A failure leaves no partial file at ``path``. The temporary keeps ``path``'s suffixes so
    writers that pick a format from the name (nibabel, Pillow) behave.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_csv(path: str | os.PathLike, rows, columns: tuple[str, ...] | list[str]) -> Path:
    """``rows`` (dicts) as CSV with a header of ``columns``, atomically; missing keys are empty."""
    def write(tmp):
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, columns, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
    return atomic_write(path, write)


def read_log_rows(path: str | os.PathLike, upto: int) -> list[dict]:
    """Rows of a training log CSV whose ``step`` is at most ``upto`` (``[]`` when there is no log)."""
    path = Path(path)
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return [row for row in csv.DictReader(f) if int(row["step"]) <= upto]
