"""Which splat rasteriser runs: chosen here only, and each choice logged once.

- ``"gsplat"``: CUDA kernels (inputs on a CUDA device, gsplat installed); differentiable.
- ``"torch"``: the pure-torch twin of gsplat (:mod:`._torch_impl`); any device; differentiable.
- ``"cpu"``: the numba kernel (:mod:`._numba_impl`); forward only, the fastest on a CPU.
- ``"auto"``: gsplat for CUDA tensors when gsplat is installed; on the CPU the torch twin when a
  gradient is needed (grad mode on and an input requires grad), else numba when installed, else
  the torch twin.

gsplat is looked for only when ``torch.cuda.is_available()``: importing it on a CPU machine with
nvcc present makes it try to JIT-build its kernels, which fails.
"""

from __future__ import annotations

import functools
import importlib.util
import logging

import torch

from ..errors import InputError

log = logging.getLogger(__name__)
BACKENDS = ("auto", "gsplat", "torch", "cpu")


@functools.cache
def gsplat_available() -> bool:
    """True when CUDA is present and gsplat can be found (not imported here)."""
    return torch.cuda.is_available() and importlib.util.find_spec("gsplat") is not None


@functools.cache
def numba_available() -> bool:
    try:
        from . import _numba_impl  # noqa: F401
    except ImportError as e:  # numba missing or incompatible with this numpy
        log.info("numba splat rasteriser unavailable: %s", e)
        return False
    return True


@functools.cache
def _log_choice(backend: str, reason: str) -> None:
    log.info("splat rasteriser: %s (%s)", backend, reason)


def choose_backend(requested: str, device: torch.device, needs_grad: bool) -> str:
    """Resolve ``requested`` (one of :data:`BACKENDS`) for inputs on ``device``."""
    if requested not in BACKENDS:
        raise InputError(f"backend must be one of {BACKENDS}, got {requested!r}")
    if requested == "gsplat":
        if device.type != "cuda" or not gsplat_available():
            raise InputError("backend 'gsplat' needs CUDA tensors and gsplat installed (pip install "
                             "'rfmweb[gpu]'); use backend='torch' or 'auto'")
        choice, reason = "gsplat", "requested"
    elif requested == "cpu":
        if not numba_available():
            raise InputError("backend 'cpu' needs numba (pip install numba); use backend='torch' or 'auto'")
        if needs_grad:
            raise InputError("backend 'cpu' is forward only; use backend='torch' (or 'auto') for gradients")
        choice, reason = "cpu", "requested"
    elif requested == "torch":
        choice, reason = "torch", "requested"
    elif device.type == "cuda" and gsplat_available():
        choice, reason = "gsplat", "CUDA tensors, gsplat installed"
    elif device.type == "cpu" and not needs_grad and numba_available():
        choice, reason = "cpu", "CPU tensors, no gradient needed, numba installed"
    else:
        choice, reason = "torch", f"{device.type} tensors" + (", gradient needed" if needs_grad else "")
    _log_choice(choice, reason)
    return choice
