"""The one exception type for bad input, and its case for a missing package.

Every problem with something a user handed us (a volume file, a label map, a transfer-function
JSON, a splat file, a CLI argument) is raised as :class:`InputError`, carrying the offending
path (when there is one) and a one-line reason. Front ends print ``str(error)`` and nothing else.
Asking for a feature whose optional package is not installed raises :class:`MissingDependency`,
an :class:`InputError` that says what to install (:mod:`rfmweb.extras`).
"""

from __future__ import annotations

from contextlib import contextmanager
from os import PathLike


class InputError(ValueError):
    """Bad user input: names the file (if any) and says what is wrong with it.

    Args:
        reason: what is wrong and, where possible, what to do about it.
        path: the file or folder at fault, or ``None`` for in-memory input.

    Example:
        >>> str(InputError("spacing must be > 0, got (1.0, 0.0, 1.0)", "scan.nii.gz"))
        'scan.nii.gz: spacing must be > 0, got (1.0, 0.0, 1.0)'
    """

    def __init__(self, reason: str, path: str | PathLike | None = None) -> None:
        self.reason = reason
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {reason}" if self.path else reason)


class MissingDependency(InputError):
    """A feature was asked for whose package is not installed; the message says what to install.

    An :class:`InputError` (front ends show it as one line, exit status 2), raised by
    :func:`rfmweb.extras.require`, which words it.

    Args:
        reason: what needs what, and the ``pip install`` line.
        feature: the feature's name in :data:`rfmweb.extras.FEATURES`.
    """

    def __init__(self, reason: str, feature: str) -> None:
        self.feature = feature
        super().__init__(reason)


@contextmanager
def about(path: str | PathLike | None):
    """Within it, an :class:`InputError` that names no file is about ``path`` (e.g. "no visible
    voxel" found deep in a model, raised while a command works on that volume)."""
    try:
        yield
    except InputError as exc:
        if exc.path is None and type(exc) is InputError and path is not None:
            raise InputError(exc.reason, path) from None
        raise


#: Characters of an error that reach a log line when a browser's input caused it.
BRIEF_CHARS = 300


def brief(exc: BaseException) -> str:
    """``str(exc)`` cut to :data:`BRIEF_CHARS` characters, for a log line about a client's input: a
    100,000-character preset name from a page made a 100 kB line, again on every message."""
    text = str(exc)
    return text if len(text) <= BRIEF_CHARS else f"{text[:BRIEF_CHARS]}… ({len(text):,} characters)"

