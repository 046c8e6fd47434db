"""Atomic file writes: a failed write never leaves a partial output."""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

from ..errors import InputError


def _umask() -> int:
    """The process's umask: Linux reports it in /proc; elsewhere it is read by setting it (a moment
    in which another thread's new file would get 0o022)."""
    try:
        with open("/proc/self/status") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError, IndexError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


#: The process's umask (read once, at import): the mode a plain ``open(path, "w")`` would give a file.
_UMASK = _umask()


def check_output(path: str | os.PathLike) -> Path:
    """``path`` as a :class:`~pathlib.Path` when a file can be written there (its folder may be made);
    else an :class:`~rfmweb.errors.InputError` naming it: a folder, a parent that is a file, a folder
    without write permission. Commands call it before their work, so a bad ``--out`` costs nothing."""
    path = Path(path)
    if path.is_dir():
        raise InputError("is a folder; give a file name", path)
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write here ({parent} is a file)", path)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write here (no permission in {parent})", path)
    return path


def atomic_write(path: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    A failure leaves no partial file at ``path``. The temporary keeps ``path``'s suffixes so
    writers that pick a format from the name (nibabel, Pillow) behave. The file gets the mode a
    plain write would give it (``0o666`` less the umask). A path that cannot be written (a folder,
    a parent that is a file, no permission) raises :class:`~rfmweb.errors.InputError` naming it.
    """
    path = check_output(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix="".join(path.suffixes) or ".tmp", dir=path.parent)
    except OSError as exc:
        raise InputError(f"cannot write here ({exc.strerror or exc})", path) from None
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)
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
