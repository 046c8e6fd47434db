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
