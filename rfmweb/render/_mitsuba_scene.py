"""Mitsuba 3 plumbing for :mod:`rfmweb.render.pathtrace`: variant choice, lights, sensor, scene dicts
(the ``rfmweb_volpath`` integrator is in :mod:`rfmweb.render._mitsuba_integrator`).

Nothing here imports ``mitsuba`` at module import: :func:`import_mitsuba` does, once, after
:func:`select_variant` has decided which variant can run here (and pointed Dr.Jit at a usable
LLVM, which must happen before Dr.Jit is first imported).

Variant policy (:func:`select_variant`):

1. ``cuda_ad_rgb`` when rfmweb's compute device (:func:`rfmweb.backend.default_device`) is CUDA;
2. ``llvm_ad_rgb`` (CPU JIT) when an LLVM >= 16 shared library is found: ``DRJIT_LIBLLVM_PATH``
   when set, else the newest ``libLLVM`` in the usual Linux locations (Debian: ``apt-get install
   libllvm19`` gives ``/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1``). Older LLVMs are refused, not
   tried: Dr.Jit 1.x with LLVM 15 crashes the process when it compiles its first kernel;
3. ``scalar_rgb`` otherwise (one ray at a time in C++; about 100x slower: a warning is logged).
"""

from __future__ import annotations

import glob
import logging
import math
import os
import re
import sys
import threading
from dataclasses import dataclass

import numpy as np

from ..camera import OrbitCamera
from ..extras import FEATURES, available, hint

log = logging.getLogger(__name__)

#: Oldest LLVM that Dr.Jit 1.x runs with here (LLVM 15 crashed at the first kernel).
MIN_LLVM = 16
#: Where shared LLVM libraries live on Linux distributions (Debian/Ubuntu multiarch, llvm.org apt, RPM).
LLVM_GLOBS = (
    "/usr/lib/*-linux-gnu/libLLVM*.so*",
    "/usr/lib/llvm-*/lib/libLLVM*.so*",
    "/usr/lib64/libLLVM*.so*",
    "/usr/local/lib/libLLVM*.so*",
)
VARIANTS = ("cuda_ad_rgb", "llvm_ad_rgb", "scalar_rgb")


def mitsuba_installed() -> bool:
    """True when Mitsuba 3 can be found (it is not imported): :func:`rfmweb.extras.available`."""
    return available("pathtrace")


def llvm_version(path: str) -> int | None:
    """Major LLVM version from a library path (``libLLVM.so.19.1``, ``libLLVM-19.so``, ``llvm-19/lib``)."""
    name = os.path.basename(path)
    for pattern, text in ((r"libLLVM-(\d+)", name), (r"libLLVM\.so\.(\d+)", name), (r"llvm-(\d+)", path)):
        m = re.search(pattern, text)
        if m:
            return int(m.group(1))
    return None


def find_libllvm(min_version: int = MIN_LLVM) -> tuple[str | None, str]:
    """A shared LLVM library Dr.Jit can use, and why that one (or why none).

    ``DRJIT_LIBLLVM_PATH`` wins when set (and is refused when it names an LLVM older than
    ``min_version``); otherwise the newest library of version >= ``min_version`` in :data:`LLVM_GLOBS`.
    """
    env = os.environ.get("DRJIT_LIBLLVM_PATH")
    if env:
        v = llvm_version(env)
        if not os.path.exists(env):
            return None, f"DRJIT_LIBLLVM_PATH={env} does not exist"
        if v is not None and v < min_version:
            return None, f"DRJIT_LIBLLVM_PATH={env} is LLVM {v}; Dr.Jit needs LLVM >= {min_version}"
        return env, f"DRJIT_LIBLLVM_PATH={env}" + (f" (LLVM {v})" if v else "")
    found: dict[str, int] = {}
    for pattern in LLVM_GLOBS:
        for path in glob.glob(pattern):
            v = llvm_version(path)
            if v is not None and os.path.isfile(path):
                found[path] = v
    good = {p: v for p, v in found.items() if v >= min_version}
    if not good:
        seen = sorted(set(found.values()))
        return None, (f"no LLVM >= {min_version} found (saw versions {seen}); on Debian/Ubuntu "
                      f"`apt-get install libllvm19` and set DRJIT_LIBLLVM_PATH to its libLLVM.so")
    # newest version; among equal versions prefer the fully versioned real file
    path = max(good, key=lambda p: (good[p], not os.path.islink(p), len(p)))
    return path, f"found {path} (LLVM {good[path]})"


@dataclass(frozen=True)
class VariantChoice:
    """The Mitsuba variant that runs here, and why the others do not.

    Attributes:
        variant: ``"cuda_ad_rgb"``, ``"llvm_ad_rgb"`` or ``"scalar_rgb"``.
        reason: why this one.
        rejected: ``(variant, why not)`` for the preferred variants that cannot run.
        llvm_path: the LLVM library handed to Dr.Jit (llvm variant only).
    """

    variant: str
    reason: str
    rejected: tuple[tuple[str, str], ...] = ()
    llvm_path: str | None = None

    def describe(self) -> str:
        why_not = "; ".join(f"not {v}: {r}" for v, r in self.rejected)
        return f"Mitsuba variant {self.variant} ({self.reason})" + (f"; {why_not}" if why_not else "")


def select_variant(requested: str | None = None) -> VariantChoice:
    """Pick the fastest Mitsuba variant that can run here (see the module docstring).

    Args:
        requested: force one of :data:`VARIANTS` (e.g. ``"scalar_rgb"`` to compare); it must be usable.

    Side effect: sets ``DRJIT_LIBLLVM_PATH`` for the llvm variant when it was unset (Dr.Jit reads it
    when first imported).

    Raises:
        RuntimeError: ``requested`` cannot run here (the message says why).
    """
    from ..backend import default_device

    rejected: list[tuple[str, str]] = []
    if requested is not None and requested not in VARIANTS:
        raise RuntimeError(f"unknown Mitsuba variant {requested!r}; choose one of {VARIANTS}")
    if requested in (None, "cuda_ad_rgb"):
        if default_device().type == "cuda":
            return VariantChoice("cuda_ad_rgb", "rfmweb's compute device is CUDA")
        why = "rfmweb's compute device is the CPU (no CUDA, or RFMWEB_DEVICE=cpu)"
        if requested:
            raise RuntimeError(f"Mitsuba variant cuda_ad_rgb cannot run: {why}")
        rejected.append(("cuda_ad_rgb", why))
    if requested in (None, "llvm_ad_rgb"):
        path, why = find_libllvm()
        if path is not None:
            os.environ.setdefault("DRJIT_LIBLLVM_PATH", path)
            if "drjit" in sys.modules and os.environ["DRJIT_LIBLLVM_PATH"] != path:
                log.warning("drjit was imported before rfmweb chose LLVM %s; it may use another LLVM", path)
            return VariantChoice("llvm_ad_rgb", f"CPU JIT with {why}", tuple(rejected), path)
        if requested:
            raise RuntimeError(f"Mitsuba variant llvm_ad_rgb cannot run: {why}")
        rejected.append(("llvm_ad_rgb", why))
    return VariantChoice("scalar_rgb", "no GPU and no usable LLVM: one ray at a time, very slow "
                         "(measured 174 s for 256^2 x 32 spp on 2 cores)" if not requested else "requested",
                         tuple(rejected))


_MI = None
_VARIANT: VariantChoice | None = None
_IMPORT_LOCK = threading.Lock()


def import_mitsuba(requested: str | None = None):
    """``mitsuba`` with the chosen variant set (imported once; later calls re-set the variant on
    this thread, since Mitsuba's variant is per thread).

    Returns:
        ``(mitsuba module, VariantChoice)``.

    Raises:
        RuntimeError: mitsuba is not installed (says ``pip install rfmweb[photoreal]``), or the
            requested variant cannot run.
    """
    global _MI, _VARIANT
    with _IMPORT_LOCK:
        if _MI is None:
            _MI, _VARIANT = _first_import(requested)
    if requested is not None and requested != _VARIANT.variant:
        raise RuntimeError(f"Mitsuba already runs variant {_VARIANT.variant} in this process; "
                           f"cannot switch to {requested}")
    if _MI.variant() != _VARIANT.variant:
        _MI.set_variant(_VARIANT.variant)
    return _MI, _VARIANT


def _first_import(requested: str | None):
    """Choose the variant, point Dr.Jit at LLVM, import mitsuba and set the variant (once)."""
    if not mitsuba_installed():
        raise RuntimeError(hint("pathtrace"))
    choice = select_variant(requested)
    try:
        import mitsuba as mi  # noqa: PLC0415 (optional dependency, imported lazily)
    except ImportError as exc:
        raise RuntimeError(f"mitsuba is installed but does not import ({exc}); reinstall: "
                           f"{FEATURES['pathtrace'].command}") from None

    if choice.variant not in mi.variants():
        raise RuntimeError(f"this mitsuba build lacks variant {choice.variant}; it has {mi.variants()}")
    mi.set_variant(choice.variant)
    (log.warning if choice.variant == "scalar_rgb" else log.info)("%s", choice.describe())
    return mi, choice


# -- lights ------------------------------------------------------------------------------------
#: Envmap resolution (latitude-longitude); a texel is 0.7 degrees, fine for a 10-degree key disc.
ENV_WIDTH, ENV_HEIGHT = 512, 256


def key_light_bitmap(ambient: float, key_irradiance: float, key_radius_deg: float) -> tuple[np.ndarray, float]:
    """Latitude-longitude environment: uniform ``ambient`` radiance plus a soft disc (the key light)
    centred on the map's local ``-z`` direction.

    The disc's radiance is chosen so that it delivers ``key_irradiance`` to a surface facing it.
    An area light at infinity, its angular radius sets how soft the shadows are.

    Returns:
        ``(rgb [ENV_HEIGHT, ENV_WIDTH, 3] float32, disc radiance)``.
    """
    h, w = ENV_HEIGHT, ENV_WIDTH
    theta = np.arange(h) * math.pi / (h - 1)                  # Mitsuba: row y <-> theta = y pi / (h - 1)
    phi = (np.arange(w) + 0.5) * 2 * math.pi / w
    st = np.sin(theta)[:, None]
    # Mitsuba's envmap: u = atan2(v.x, -v.z) / 2pi, v = acos(v.y) / pi  ->  v = (st sin phi, cos theta, -st cos phi)
    dirs = np.stack([st * np.sin(phi)[None], np.broadcast_to(np.cos(theta)[:, None], (h, w)),
                     -st * np.cos(phi)[None]], axis=-1)
    cos_angle = -dirs[..., 2]                                  # angle to the key direction (0, 0, -1)
    r = math.radians(key_radius_deg)
    ang = np.arccos(np.clip(cos_angle, -1, 1))
    # smooth edge over the outer 30 % of the radius: no aliasing of the disc into the shadows
    weight = np.clip((r - ang) / (0.3 * r), 0.0, 1.0)
    weight = weight * weight * (3 - 2 * weight)
    texel_sr = (2 * math.pi / w) * (math.pi / (h - 1)) * np.maximum(st, 0.5 * math.pi / (h - 1))
    solid = float((weight * texel_sr).sum())
    radiance = key_irradiance / solid if solid > 0 else 0.0
    env = ambient + radiance * weight
    return np.repeat(env[..., None], 3, axis=-1).astype(np.float32), radiance


def rotation_taking(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """``[3, 3]`` rotation that maps unit vector ``src`` onto unit vector ``dst`` (Rodrigues)."""
    src, dst = src / np.linalg.norm(src), dst / np.linalg.norm(dst)
    v, c = np.cross(src, dst), float(np.dot(src, dst))
    if c < -1 + 1e-9:  # opposite: turn 180 degrees about any axis perpendicular to src
        axis = np.cross(src, [1.0, 0, 0] if abs(src[0]) < 0.9 else [0, 1.0, 0])
        axis /= np.linalg.norm(axis)
        return 2 * np.outer(axis, axis) - np.eye(3)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1 + c)


# -- camera -----------------------------------------------------------------------------------
#: OpenCV camera axes (+x right, +y down, +z forward) -> Mitsuba's (+x left, +y up, +z forward).
CV_TO_MITSUBA = np.diag([-1.0, -1.0, 1.0, 1.0])


def sensor_to_world(camera: OrbitCamera) -> np.ndarray:
    """``[4, 4]`` Mitsuba camera-to-world matrix for an :class:`OrbitCamera` (same centre and axes)."""
    return np.linalg.inv(camera.viewmat) @ CV_TO_MITSUBA


def sensor_dict(camera: OrbitCamera, far_mm: float) -> dict:
    """A Mitsuba ``perspective`` sensor with ``camera``'s vertical fov, pixel grid and pose.

    Pixels are box-filtered (each pixel is the mean over its square, the Monte Carlo version of the
    ray-marcher's pixel-centre ray) and the principal point is the image centre, as in ``camera.K``.
    """
    import mitsuba as mi  # noqa: PLC0415

    return {
        "type": "perspective",
        "fov": camera.fov,
        "fov_axis": "y",
        "near_clip": max(1e-3, 1e-4 * camera.distance),
        "far_clip": far_mm,
        "to_world": mi.ScalarTransform4f(sensor_to_world(camera)),
        "film": {"type": "hdrfilm", "width": camera.width, "height": camera.height,
                 "rfilter": {"type": "box"}, "pixel_format": "rgb"},
        "sampler": {"type": "independent"},
    }
