"""Mitsuba 3 plumbing for :mod:`rfmweb.render.pathtrace`: variant choice, lights, sensor, scene dicts.

Nothing here imports ``mitsuba`` at module import: :func:`import_mitsuba` does, once, after
:func:`select_variant` has decided which variant can run here (and pointed Dr.Jit at a usable
LLVM, which must happen before Dr.Jit is first imported).

Variant policy (:func:`select_variant`):

1. ``cuda_ad_rgb`` when ``torch.cuda.is_available()``;
2. ``llvm_ad_rgb`` (CPU JIT) when an LLVM >= 16 shared library is found: ``DRJIT_LIBLLVM_PATH``
   when set, else the newest ``libLLVM`` in the usual Linux locations (Debian: ``apt-get install
   libllvm19`` gives ``/usr/lib/x86_64-linux-gnu/libLLVM.so.19.1``). Older LLVMs are refused, not
   tried: Dr.Jit 1.x with LLVM 15 crashes the process when it compiles its first kernel;
3. ``scalar_rgb`` otherwise (one ray at a time in C++; about 100x slower: a warning is logged).
"""

from __future__ import annotations

import glob
import importlib.util
import logging
import math
import os
import re
import sys
import threading
from dataclasses import dataclass

import numpy as np

from ..camera import OrbitCamera

log = logging.getLogger(__name__)

INSTALL_HINT = "pip install rfmweb[photoreal]"
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
    """True when the ``mitsuba`` package can be found (it is not imported)."""
    return importlib.util.find_spec("mitsuba") is not None


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
    import torch

    rejected: list[tuple[str, str]] = []
    if requested is not None and requested not in VARIANTS:
        raise RuntimeError(f"unknown Mitsuba variant {requested!r}; choose one of {VARIANTS}")
    if requested in (None, "cuda_ad_rgb"):
        if torch.cuda.is_available():
            return VariantChoice("cuda_ad_rgb", "torch sees a CUDA device")
        why = "torch.cuda.is_available() is False"
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
        raise RuntimeError(f"the path tracer needs Mitsuba 3: {INSTALL_HINT}")
    choice = select_variant(requested)
    try:
        import mitsuba as mi  # noqa: PLC0415 (optional dependency, imported lazily)
    except ImportError as exc:
        raise RuntimeError(f"mitsuba is installed but does not import ({exc}); reinstall: {INSTALL_HINT}") from None

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


# -- the fast integrator: delta tracking against a grid of local majorants ---------------------
#: Lattice points per majorant brick along each axis.
BRICK = 8


def majorant_grid(density: np.ndarray, brick: int = BRICK) -> np.ndarray:
    """Local majorants: ``[Z', Y', X', 1]`` density -> ``[BZ, BY, BX]`` maximum over each brick.

    Brick ``b`` covers texel-space ``[b B, (b + 1) B)``; trilinear lookups there read texels
    ``b B - 1 .. (b + 1) B`` (one more on each side), hence the ``B + 2`` pooling window.
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(density[..., 0]))[None, None]
    b = max(1, min(brick, *t.shape[2:]))
    return F.max_pool3d(t, kernel_size=b + 2, stride=b, padding=1, ceil_mode=True)[0, 0].numpy()


mi = dr = None   # set by define_integrator: @dr.syntax re-executes the methods with these globals
_INTEGRATOR: tuple[str, type] | None = None     # (variant, class) once registered


def define_integrator(mi_module, dr_module):
    """Define and register the ``rfmweb_volpath`` integrator for the current variant (idempotent).

    A volumetric path tracer for one heterogeneous medium in a box under an environment light,
    like Mitsuba's ``volpath`` (delta tracking, next-event estimation) but tracking against
    *local* majorants: the box is cut into bricks of :data:`BRICK`^3 lattice points, rays walk
    the bricks (3-D DDA) and sample tentative collisions against each brick's own maximum
    extinction. Empty bricks cost one step; ``volpath`` spends ``max sigma_t * length`` null
    collisions on every ray whatever the local density, which is 10-20x more work on a CT whose
    bone is 20x denser than its soft tissue. Shadow rays use ratio tracking (with Russian
    roulette once the transmittance falls below 0.05). Both estimators are unbiased, so the two
    integrators converge to the same image (tests compare them).
    """
    global mi, dr, _INTEGRATOR
    mi, dr = mi_module, dr_module
    if _INTEGRATOR is not None and _INTEGRATOR[0] == mi.variant():
        return _INTEGRATOR[1]

    class MajorantVolpath(mi.SamplingIntegrator):
        def __init__(self, props):
            super().__init__(props)
            self.max_depth = props.get("max_depth", 16)
            self.rr_depth = props.get("rr_depth", 5)
            self.show_environment = props.get("show_environment", False)
            self.g = props.get("phase_g", 0.0)

        def set_medium(self, grids, brick: int = BRICK) -> None:
            """Upload a :class:`~rfmweb.render.pathtrace.VolumeGrids` (textures + majorant bricks)."""
            m = np.array(grids.density.shape[2::-1], dtype=np.float64)          # (X', Y', Z')
            self.size = mi.ScalarVector3f(*m)
            self.density = mi.Texture3f(mi.TensorXf(grids.density))
            self.albedo = mi.Texture3f(mi.TensorXf(grids.albedo))
            maj = majorant_grid(grids.density, brick) * grids.sigma_max * 1.001
            self.brick = float(max(1, min(brick, *grids.density.shape[:3])))
            self.nb = mi.ScalarVector3i(maj.shape[2], maj.shape[1], maj.shape[0])
            self.nb_max = mi.ScalarVector3f(maj.shape[2] - 1, maj.shape[1] - 1, maj.shape[0] - 1)
            self.majorant = mi.Float(maj.astype(np.float32).ravel())
            self.scale = float(grids.sigma_max)
            to_tex = np.diag([*m, 1.0]) @ np.linalg.inv(grids.grid_to_world)      # world mm -> texel space
            self.to_tex = [[float(x) for x in row] for row in to_tex]   # python floats: numpy scalars would
                                                                         # try to convert traced arrays

        def _tex(self, v, point: bool = True):
            """World mm -> texel space (texel n spans [n, n + 1), its centre at n + 1/2)."""
            a = self.to_tex
            rows = [a[r][0] * v.x + a[r][1] * v.y + a[r][2] * v.z + (a[r][3] if point else 0.0) for r in range(3)]
            return (mi.Point3f if point else mi.Vector3f)(*rows)

        # -- helpers (traced) --------------------------------------------------------------
        def _box(self, os, dv):
            safe = dr.select(dr.abs(dv) < 1e-12, 1e-12, dv)
            inv = dr.rcp(safe)
            ta = (0.5 - os) * inv
            tb = (self.size - 0.5 - os) * inv
            lo, hi = dr.minimum(ta, tb), dr.maximum(ta, tb)
            t0 = dr.maximum(dr.maximum(lo.x, lo.y), lo.z)
            t1 = dr.minimum(dr.minimum(hi.x, hi.y), hi.z)
            return dr.maximum(t0, 0.0), t1

        def _ray(self, o, d):
            """A world ray in texel space: origin, direction, box entry/exit ``t`` and the same ray
            in brick units (``qo``, ``qd``, ``1 / qd``) for :meth:`_cell_step`."""
            os, dv = self._tex(o), self._tex(d, point=False)
            t, t1 = self._box(os, dv)
            qo, qd = os / self.brick, dv / self.brick
            inv_qd = dr.rcp(dr.select(dr.abs(qd) < 1e-12, 1e-12, qd))
            return os, dv, t, t1, qo, qd, inv_qd

        def _cell_step(self, qo, qd, inv_qd, t, t1):
            """End of the current brick along the ray and its majorant."""
            q = qo + t * qd
            nxt = dr.select(qd > 0, dr.floor(q) + 1, dr.ceil(q) - 1)
            tx = dr.select(dr.abs(qd) > 1e-12, (nxt - qo) * inv_qd, dr.inf)
            t_exit = dr.minimum(dr.minimum(dr.minimum(tx.x, tx.y), tx.z), t1)
            t_exit = dr.maximum(t_exit, t + 1e-4)                         # always move on
            qm = qo + (0.5 * (t + t_exit)) * qd
            cell = mi.Vector3i(dr.clip(dr.floor(qm), 0.0, self.nb_max))
            idx = mi.UInt32((cell.z * self.nb.y + cell.y) * self.nb.x + cell.x)
            return t_exit, idx

        def _sigma(self, os, dv, t, active):
            return self.density.eval(mi.Point3f((os + t * dv) / self.size), active)[0] * self.scale

        @dr.syntax
        def free_flight(self, o, d, sampler, active):
            """Distance to the first real collision along ``(o, d)`` (delta tracking), and whether
            there is one before the ray leaves the box."""
            os, dv, t, t1, qo, qd, inv_qd = self._ray(o, d)
            alive = mi.Bool(active) & (t < t1)
            hit = mi.Bool(False)
            t_hit = mi.Float(dr.inf)
            while alive:
                t_exit, idx = self._cell_step(qo, qd, inv_qd, t, t1)
                m = dr.gather(mi.Float, self.majorant, idx, alive)
                u = sampler.next_1d(alive)
                tc = t + dr.select(m > 0, -dr.log(1 - u) / m, dr.inf)
                collide = alive & (tc < t_exit)
                sigma = self._sigma(os, dv, tc, collide)
                real = collide & (sampler.next_1d(collide) * m < sigma)
                t_hit[real] = tc
                hit |= real
                t = dr.select(collide, tc, t_exit)
                alive &= ~real & (t < t1)
            return t_hit, hit

        @dr.syntax
        def transmittance(self, o, d, sampler, active):
            """Transmittance from ``o`` along ``d`` out of the box (ratio tracking)."""
            os, dv, t, t1, qo, qd, inv_qd = self._ray(o, d)
            alive = mi.Bool(active) & (t < t1)
            tr = mi.Float(dr.select(active, 1.0, 0.0))
            while alive:
                t_exit, idx = self._cell_step(qo, qd, inv_qd, t, t1)
                m = dr.gather(mi.Float, self.majorant, idx, alive)
                u = sampler.next_1d(alive)
                tc = t + dr.select(m > 0, -dr.log(1 - u) / m, dr.inf)
                collide = alive & (tc < t_exit)
                sigma = self._sigma(os, dv, tc, collide)
                tr[collide] *= dr.maximum(1 - sigma / m, 0.0)
                low = collide & (tr < 0.05)                               # Russian roulette
                survive = sampler.next_1d(low) * 0.05 < tr
                tr[low] = dr.select(survive, 0.05, 0.0)
                t = dr.select(collide, tc, t_exit)
                alive &= (t < t1) & (tr > 0)
            return tr

        def _phase_eval(self, cos_theta):
            if self.g == 0:
                return mi.Float(dr.inv_four_pi)
            g = self.g
            denom = 1 + g * g - 2 * g * cos_theta
            return dr.inv_four_pi * (1 - g * g) / (denom * dr.safe_sqrt(denom))

        def _phase_sample(self, d, u):
            if self.g == 0:
                return mi.warp.square_to_uniform_sphere(u)
            g = self.g
            s = (1 - g * g) / (1 - g + 2 * g * u.x)
            cos_theta = dr.clip((1 + g * g - s * s) / (2 * g), -1.0, 1.0)
            sin_theta = dr.safe_sqrt(1 - cos_theta * cos_theta)
            sp, cp = dr.sincos(dr.two_pi * u.y)
            return mi.Frame3f(d).to_world(mi.Vector3f(sin_theta * cp, sin_theta * sp, cos_theta))

        @dr.syntax
        def sample(self, scene, sampler, ray, medium=None, active=True):
            active = mi.Bool(active)
            o, d = mi.Point3f(ray.o), mi.Vector3f(ray.d)
            L = mi.Spectrum(0.0)
            beta = mi.Spectrum(1.0)
            depth = mi.UInt32(0)
            env = scene.environment()
            while active:
                t, hit = self.free_flight(o, d, sampler, active)
                if dr.hint(self.show_environment, mode="scalar"):
                    seen = active & ~hit & (depth == 0)
                    si = dr.zeros(mi.SurfaceInteraction3f)
                    si.wi = -d
                    si.wavelengths = ray.wavelengths
                    L[seen] += beta * env.eval(si, seen)
                active &= hit
                p = o + t * d
                a = self.albedo.eval(mi.Point3f(self._tex(p) / self.size), active)
                beta[active] *= mi.Spectrum(a[0], a[1], a[2])
                depth[active] += 1
                active &= (depth < self.max_depth) & dr.any(beta != 0)
                # next-event estimation towards the environment (it is the only light)
                it = dr.zeros(mi.Interaction3f)
                it.p, it.time, it.wavelengths = p, ray.time, ray.wavelengths
                ds, em_weight = scene.sample_emitter_direction(it, sampler.next_2d(active), False, active)
                lit = active & (ds.pdf > 0)
                tr = self.transmittance(p, ds.d, sampler, lit)
                L[lit] += beta * em_weight * (tr * self._phase_eval(dr.dot(d, ds.d)))
                # continue the path in a direction drawn from the phase function (weight 1)
                wo = self._phase_sample(d, sampler.next_2d(active))
                o[active] = p
                d[active] = wo
                rr = active & (depth >= self.rr_depth)
                q = dr.minimum(dr.max(beta), 0.95)
                active &= ~rr | (sampler.next_1d(rr) < q)
                beta[rr] *= dr.rcp(q)
            return L, mi.Bool(True), []

        def aov_names(self):
            return []

        def to_string(self):
            return f"MajorantVolpath[max_depth={self.max_depth}, brick={BRICK}]"

    mi.register_integrator("rfmweb_volpath", lambda props: MajorantVolpath(props))
    _INTEGRATOR = (mi.variant(), MajorantVolpath)
    return MajorantVolpath
