"""The one exception type for bad input.

Every problem with something a user handed us (a volume file, a label map, a transfer-function
JSON, a splat file, a CLI argument) is raised as :class:`InputError`, carrying the offending
path (when there is one) and a one-line reason. Front ends print ``str(error)`` and nothing else.
"""

from __future__ import annotations

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
