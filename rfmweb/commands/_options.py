"""Options several sub-commands share: ``--threads`` and ``--no-progress``."""

from __future__ import annotations

from ..errors import InputError


def add_compute_options(p, threads_help: str = "torch intra-op threads") -> None:
    """Add ``--threads N`` and ``--no-progress`` to parser ``p``."""
    p.add_argument("--threads", type=int, help=threads_help)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def apply_threads(args) -> None:
    """Set torch's intra-op threads from ``--threads`` (unchanged when not given)."""
    if args.threads is None:
        return
    if args.threads < 1:
        raise InputError(f"--threads must be >= 1, got {args.threads}")
    import torch

    torch.set_num_threads(args.threads)


def parse_device(name: str | None):
    """The torch device for ``--device cpu|cuda`` (None: :func:`rfmweb.backend.default_device`);
    checked without logging, so bad input stays one line."""
    import torch

    if name is None:
        from ..backend import default_device
        return default_device()
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)
