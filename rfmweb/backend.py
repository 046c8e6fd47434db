"""Where compute runs and in what precision: chosen in one place and logged once.

CUDA (and gsplat, for splats) when a GPU is present; torch on the CPU otherwise. gsplat is only
ever imported when ``torch.cuda.is_available()``: on a CPU machine with nvcc present it tries to
JIT-build its kernels and fails.

Choices that change results (not just speed) can be forced, so tests run every path on any machine:

- ``RFMWEB_DEVICE``: ``cpu`` / ``cuda`` / ``cuda:1`` ... (default: CUDA when available);
- ``RFMWEB_PRECISION``: ``fp32`` / ``bf16`` for the neural models' ``"auto"`` precision (default:
  bf16 on CUDA with bf16 support and on CPUs with AMX or AVX512-BF16, else fp32);
- ``RFMWEB_THREADS``: torch's intra-op threads of a server (default: cores - 1, at least 1).
"""

from __future__ import annotations

import functools
import logging
import os

import torch

from .errors import InputError

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


def auto_precision(device: torch.device) -> str:
    """The precision ``"auto"`` means on ``device``: ``"bf16"`` or ``"fp32"`` (see the module docstring).

    bf16 matmuls without hardware support are slower than fp32, so a CPU without AMX or AVX512-BF16
    gets fp32 -- and slightly different numbers: the choice is logged once per device type.

    Raises:
        InputError: ``RFMWEB_PRECISION`` is set to something other than ``fp32`` or ``bf16``.
    """
    return _auto_precision(device.type)


@functools.cache
def _auto_precision(device_type: str) -> str:
    forced = os.environ.get("RFMWEB_PRECISION", "").strip().lower()
    if forced:
        if forced not in ("fp32", "bf16"):
            raise InputError(f"RFMWEB_PRECISION must be fp32 or bf16, got {forced!r}")
        choice, why = forced, "forced by RFMWEB_PRECISION"
    elif device_type == "cuda":
        fast = torch.cuda.is_bf16_supported()
        choice, why = ("bf16" if fast else "fp32"), ("GPU has" if fast else "GPU lacks") + " bf16"
    elif device_type == "cpu":
        cpu = getattr(torch, "cpu", None)
        fast = any(getattr(cpu, f, lambda: False)() for f in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))
        choice, why = ("bf16", "CPU has AMX or AVX512-BF16") if fast else ("fp32", "CPU lacks AMX and AVX512-BF16")
    else:
        choice, why = "fp32", f"no bf16 path on {device_type}"
    log.info("rfmweb model precision on %s: %s (%s; set RFMWEB_PRECISION=fp32|bf16 to force)", device_type, choice,
             why)
    return choice


def limit_threads(n: int | None = None) -> int:
    """Bound torch's intra-op threads for a server that also encodes frames and serves clients.

    On a 2-core machine, torch with 2 threads beside another busy process ran 5-7x slower than
    with 1 (measured), so a server leaves one core free: ``n = RFMWEB_THREADS`` if set, else
    ``max(1, cores - 1)``.

    Raises:
        InputError: ``RFMWEB_THREADS`` is not a positive integer.
    """
    if n is None:
        forced = os.environ.get("RFMWEB_THREADS", "").strip()
        if forced:
            if not forced.isdigit() or int(forced) < 1:
                raise InputError(f"RFMWEB_THREADS must be a positive integer, got {forced!r}")
            n = int(forced)
        else:
            n = max(1, (os.cpu_count() or 2) - 1)
    torch.set_num_threads(n)
    log.info("torch intra-op threads: %d", n)
    return n
