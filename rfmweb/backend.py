"""Where compute runs: chosen in one place and logged once.

CUDA (and gsplat, for splats) when a GPU is present; torch on the CPU otherwise. gsplat is only
ever imported when ``torch.cuda.is_available()``: on a CPU machine with nvcc present it tries to
JIT-build its kernels and fails.
"""

from __future__ import annotations

import functools
import logging
import os

import torch

log = logging.getLogger(__name__)


@functools.cache
def default_device() -> torch.device:
    """CUDA when available (and not disabled with ``RFMWEB_DEVICE=cpu``), else CPU."""
    wanted = os.environ.get("RFMWEB_DEVICE", "").strip().lower()
    if wanted:
        device = torch.device(wanted)
    else:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    log.info("rfmweb compute device: %s%s", device,
             f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else
             f" (torch {torch.__version__}, {torch.get_num_threads()} threads)")
    return device


def limit_threads(n: int | None = None) -> int:
    """Bound torch's intra-op threads for a server that also encodes frames and serves clients.

    On a 2-core machine, torch with 2 threads beside another busy process ran 5-7x slower than
    with 1 (measured), so a server leaves one core free: ``n = max(1, cores - 1)``.
    """
    if n is None:
        n = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    log.info("torch intra-op threads: %d", n)
    return n
