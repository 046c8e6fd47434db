"""Where compute runs, on which backend and in what precision: chosen here only, each choice logged once.

- device: CUDA when a GPU is present, else the CPU (:func:`default_device`);
- the interactive volume renderer: the torch ray-marcher on CUDA, the compiled (numba) ray-marcher
  on a CPU, VTK where numba is missing (:func:`volume_renderer`, :func:`marcher_renderer`);
- the ray-marcher's forward pass and 6DGS slicing: our fused Triton kernels on CUDA, the torch
  twins elsewhere (:func:`march_backend`, :func:`slicing_backend`);
- VTK's volume mapper: GPU ray casting on a hardware OpenGL, the fixed-point CPU ray caster on a
  software one (:func:`vtk_volume_mapper`);
- splat rasterisation: gsplat on CUDA, the numba kernel on a CPU without gradients, the torch twin
  otherwise (:func:`choose_rasterizer`);
- the neural models' precision (:func:`auto_precision`) and a server's threads (:func:`limit_threads`).

gsplat and Triton are only ever looked for when ``torch.cuda.is_available()``: gsplat on a CPU
machine with nvcc present tries to JIT-build its kernels and fails. With CUDA but without them
(``pip install 'rfmweb[gpu]'``) the torch twins run, and that is logged once at INFO
(:func:`rfmweb.extras.note_fallback`). Which package a feature needs is known in :mod:`rfmweb.extras`.

Choices that change results (not just speed) can be forced, so tests run every path on any machine:

- ``RFMWEB_DEVICE``: ``cpu`` / ``cuda`` / ``cuda:1`` ... (default: CUDA when available);
- ``RFMWEB_PRECISION``: ``fp32`` / ``bf16`` for the neural models' ``"auto"`` precision (default:
  bf16 on CUDA with bf16 support and on CPUs with AMX or AVX512-BF16, else fp32);
- ``RFMWEB_THREADS``: torch's intra-op threads of a server (default: cores - 1, at least 1);
- ``RFMWEB_VTK_MAPPER``: ``gpu`` / ``fixed-point`` (default: by the OpenGL renderer).
"""

from __future__ import annotations

import functools
import logging
import os
from contextlib import contextmanager

import torch

from . import extras
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


def parse_device(name: str | None) -> torch.device:
    """The torch device a ``--device cpu|cuda`` option names (None: :func:`default_device`);
    checked without logging, so bad input stays one line."""
    if name is None:
        return default_device()
    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


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


#: torch intra-op threads of a process whose model runs on CUDA (its host side is Python, batches
#: and kernel launches): more only contend on a many-core host (measured on the 16-core H200 machine
#: when INR batches were still drawn on the host: 358 ms per training step with 16 threads, 42 ms with 4)
CUDA_HOST_THREADS = 4


def compute_threads(requested: int | None, device: torch.device) -> int:
    """Set and return torch's intra-op threads for a compute command (training, evaluation): the
    ``requested`` count when given, at most :data:`CUDA_HOST_THREADS` when the work runs on CUDA,
    else torch's own default (one per core)."""
    if requested is not None:
        n = requested
    elif device.type == "cuda":
        n = min(torch.get_num_threads(), CUDA_HOST_THREADS)
        _log_choice("host threads", str(n), "the work runs on CUDA; --threads to change")
    else:
        return torch.get_num_threads()
    torch.set_num_threads(n)
    return n


@functools.cache
def _log_choice(what: str, choice: str, reason: str) -> None:
    log.info("rfmweb %s: %s (%s)", what, choice, reason)


def _cuda_feature(feature: str) -> bool:
    """True when CUDA is present and ``feature``'s package can be found (not imported); with CUDA but
    without the package, say once (INFO) that the torch twin runs instead and what would enable it."""
    if not torch.cuda.is_available():
        return False
    if not extras.available(feature):
        extras.note_fallback(feature)
        return False
    return True


@functools.cache
def gsplat_available() -> bool:
    """True when CUDA is present and gsplat can be found (not imported here)."""
    return _cuda_feature("gsplat")


@functools.cache
def triton_available() -> bool:
    """True when CUDA is present and Triton can be found (not imported here)."""
    return _cuda_feature("triton")


@functools.cache
def load_triton_before_gl() -> None:
    """Load Triton's native library, when Triton is installed, before an OpenGL stack starts.

    Mesa's software OpenGL (what VTK renders offscreen with on a machine without a GPU) loads the
    system's ``libLLVM``; Triton's ``libtriton`` carries its own LLVM, and loading it afterwards
    crashes the process (a segmentation fault, seen with VTK 9.7 and Triton 3.x). torch imports Triton
    by itself the first time an optimiser is made (``torch._dynamo``), e.g. in a segmentation
    correction after a VTK frame, so the order is fixed here: call this before creating a VTK
    render window. Costs about 0.2 s once.
    """
    if extras.available("triton"):
        import triton  # noqa: F401

        log.debug("Triton loaded before the OpenGL stack (their LLVM libraries clash the other way round)")


@functools.cache
def numba_available() -> bool:
    """True when numba imports (the compiled CPU kernels need it)."""
    try:
        import numba  # noqa: F401
    except ImportError as e:  # numba missing or incompatible with this numpy
        log.info("numba unavailable (%s): %s", e, extras.hint("compiled"))
        return False
    return True


def compiled_cpu(tensor: torch.Tensor) -> bool:
    """True when one of our compiled CPU kernels (numba) stands in for torch operations on ``tensor``:
    float32 on the CPU, no gradient wanted through it, and numba importable (else the torch ops run)."""
    return tensor.device.type == "cpu" and tensor.dtype == torch.float32 and not tensor.requires_grad and \
        numba_available()


@contextmanager
def numba_threads():
    """Run numba kernels on torch's intra-op threads: one CPU budget (:func:`limit_threads`).

    numba's OpenMP pool, started by the first parallel kernel, resets the process-wide OpenMP thread
    count that torch reads (measured: 1 -> 2): it is put back afterwards.
    """
    import numba

    n = torch.get_num_threads()
    numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, n)))
    try:
        yield
    finally:
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)


def marcher_renderer() -> str:
    """The ray-marcher that draws images fastest here: ``"raymarch"`` (torch; one Triton kernel per
    frame, :func:`march_backend`) on CUDA, ``"compiled"`` (numba, the same images within 1e-3) on a
    CPU with numba, else ``"raymarch"``."""
    if default_device().type != "cuda" and numba_available():
        choice, reason = "compiled", "CPU, numba installed"
    else:
        choice, reason = "raymarch", "CUDA" if default_device().type == "cuda" else "CPU without numba"
    _log_choice("ray-marcher", choice, reason)
    return choice


def volume_renderer() -> str:
    """The interactive volume renderer for this machine: :func:`marcher_renderer` on CUDA or with
    numba, else ``"vtk"`` where VTK is installed (the torch marcher alone is too slow for interaction
    on a CPU)."""
    cpu_only = default_device().type != "cuda" and not numba_available()
    choice = "vtk" if cpu_only and extras.available("vtk") else marcher_renderer()
    _log_choice("volume renderer", choice, "default of the viewer")
    return choice


#: Words in an OpenGL renderer string that mean software rasterisation (Mesa's llvmpipe, softpipe, swrast;
#: Google's SwiftShader; Windows' GDI Generic): no GPU draws the frames.
SOFTWARE_GL = ("llvmpipe", "softpipe", "swrast", "swiftshader", "software rasterizer", "gdi generic")


def vtk_volume_mapper(gl_renderer: str) -> str:
    """VTK's volume mapper for an OpenGL context whose ``GL_RENDERER`` string is ``gl_renderer``.

    ``"gpu"`` (``vtkGPUVolumeRayCastMapper``: jittered rays, normals from central differences of the
    trilinearly read volume at each sample) on a hardware OpenGL; ``"fixed-point"``
    (``vtkFixedPointVolumeRayCastMapper``: multithreaded CPU ray casting, quantised per-voxel normals,
    abortable mid-frame) on a software or unreported one (:data:`SOFTWARE_GL`), where the GPU mapper's
    shader runs on the CPU 9-18x slower than the fixed-point mapper (BENCHMARKS.md).
    ``RFMWEB_VTK_MAPPER`` forces either.

    Raises:
        InputError: ``RFMWEB_VTK_MAPPER`` is set to something other than ``gpu`` or ``fixed-point``.
    """
    forced = os.environ.get("RFMWEB_VTK_MAPPER", "").strip().lower()
    if forced:
        if forced not in ("gpu", "fixed-point"):
            raise InputError(f"RFMWEB_VTK_MAPPER must be gpu or fixed-point, got {forced!r}")
        choice, reason = forced, "RFMWEB_VTK_MAPPER"
    elif not gl_renderer or any(word in gl_renderer.lower() for word in SOFTWARE_GL):
        choice, reason = "fixed-point", f"software OpenGL: {gl_renderer or 'renderer not reported'}"
    else:
        choice, reason = "gpu", f"OpenGL on {gl_renderer}"
    _log_choice("VTK volume mapper", choice, reason)
    return choice


def _triton_or_torch(device: torch.device, what: str) -> str:
    if device.type == "cuda" and triton_available():
        choice, reason = "triton", "CUDA, Triton installed"
    else:
        choice, reason = "torch", f"{device.type}" + ("" if device.type != "cuda" else ", no Triton")
    _log_choice(what, choice, reason)
    return choice


def slicing_backend(device: torch.device) -> str:
    """``"triton"`` (the fused kernel) for CUDA tensors when Triton is installed, else ``"torch"``."""
    return _triton_or_torch(device, "6DGS slicing")


def march_backend(device: torch.device) -> str:
    """The ray-marcher's forward pass (images, no gradients): ``"triton"`` (one fused kernel) for
    CUDA when Triton is installed, else ``"torch"`` (the differentiable marcher, its twin)."""
    return _triton_or_torch(device, "ray-marcher forward")


#: Splat rasteriser names for :func:`choose_rasterizer`.
RASTERIZERS = ("auto", "gsplat", "torch", "cpu")


def choose_rasterizer(requested: str, device: torch.device, needs_grad: bool, why: str = "requested") -> str:
    """Resolve ``requested`` (one of :data:`RASTERIZERS`) for inputs on ``device``; ``why`` is what
    the log line gives as the reason for a named backend (the caller's, e.g. a command's rule).

    - ``"gsplat"``: CUDA kernels (inputs on a CUDA device, gsplat installed); differentiable.
    - ``"torch"``: the pure-torch twin of gsplat; any device; differentiable.
    - ``"cpu"``: the numba kernel; forward only, the fastest on a CPU.
    - ``"auto"``: gsplat for CUDA tensors when gsplat is installed; on the CPU the torch twin when a
      gradient is needed, else numba when installed, else the torch twin.

    Raises:
        InputError: an unknown name, or a backend that cannot run these inputs here.
    """
    if requested not in RASTERIZERS:
        raise InputError(f"backend must be one of {RASTERIZERS}, got {requested!r}")
    if requested == "gsplat":
        if device.type != "cuda" or not gsplat_available():
            raise InputError(f"backend 'gsplat' needs CUDA tensors and gsplat installed "
                             f"({extras.FEATURES['gsplat'].command}); use backend='torch' or 'auto'")
        choice, reason = "gsplat", why
    elif requested == "cpu":
        if not numba_available():
            raise InputError(f"backend 'cpu' needs numba ({extras.FEATURES['compiled'].command}); use "
                             "backend='torch' or 'auto'")
        if needs_grad:
            raise InputError("backend 'cpu' is forward only; use backend='torch' (or 'auto') for gradients")
        choice, reason = "cpu", why
    elif requested == "torch":
        choice, reason = "torch", why
    elif device.type == "cuda" and gsplat_available():
        choice, reason = "gsplat", "CUDA tensors, gsplat installed"
    elif device.type == "cpu" and not needs_grad and numba_available():
        choice, reason = "cpu", "CPU tensors, no gradient needed, numba installed"
    else:
        choice, reason = "torch", f"{device.type} tensors" + (", gradient needed" if needs_grad else "")
    _log_choice("splat rasteriser", choice, reason)
    return choice


def scoring_rasterizer(device: torch.device) -> str:
    """The rasteriser that scores splats against views (``evaluate``, fit reports, ``evaluate-splats``):
    gsplat (``"auto"``) on CUDA, the torch twin on a CPU. The numba kernel is faster, but its OpenMP
    layer shares libgomp with torch: after it has run, torch's intra-op pool is resized (1 -> 2
    threads here) and torch ops in the same process ran 5-50x slower on a 2-core machine, which
    would ruin a fit that follows; and the twin is what a fit's own reports use, so the two agree."""
    if device.type == "cpu":
        return choose_rasterizer("torch", device, needs_grad=False, why="scores on a CPU (see scoring_rasterizer)")
    return choose_rasterizer("auto", device, needs_grad=False)
