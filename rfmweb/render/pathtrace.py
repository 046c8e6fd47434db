r"""Physically based ground truth: path tracing of the scene with Mitsuba 3 (``pathtrace``).

The volume becomes a heterogeneous participating medium built from exactly what the ray-marcher
(:mod:`rfmweb.render.dvr`) sees: the same scalar (CT in HU, or an MRI's channel mix), hidden
classes faded out of it (:func:`~rfmweb.render.fields.hide_voxels`), the same TF lookup table, class table and gradient
opacity (:class:`~rfmweb.render.fields.ScalarField`, unshaded). At every lattice point

.. math::

    \sigma_t = -\ln(1 - a) / u \quad [\text{mm}^{-1}], \qquad
    \text{albedo} = \text{srgb\_to\_linear}(c),

with ``a``, ``c`` the TF opacity and colour and ``u`` the TF's unit distance. ``sigma_t`` is stored
normalised to [0, 1] and scaled back with the medium's ``scale`` (scene units are mm). Instead of
emitting its TF colour (the ray-marcher's emission-absorption model), the medium *scatters* the
fraction ``albedo`` of the light it stops, from two lights: a uniform white environment (ambient)
and a key light, a soft disc in the environment map (an area light at infinity: soft shadows). By
default the key sits up and to the left of the camera and follows it, as the ray-marcher's headlight
does; ``Lighting(frame="world")`` fixes it in the room for multi-view-consistent datasets.

Hybrid scattering (Exposure Render, Kroes et al. 2012; Siemens' cinematic rendering). A CT treated
as a pure scattering medium looks like a foggy jar: bone's shading hardly depends on its orientation
and the light scattered by the soft tissue veils it. So each collision at ``x`` is, with probability

.. math::

    P_s = 1 - \exp(-k \lVert \mathbf g(x) \rVert), \qquad
    \mathbf g = h \nabla (\sigma_t / \sigma_{max}) \quad (\text{per voxel spacing } h),

a reflection off a surface with normal ``-g / |g|``: Lambertian with the albedo plus a glossy GGX
lobe (``specular``, ``roughness``), and otherwise volumetric scattering with the phase function.
Bone boundaries (``|g|`` 0.2-0.75) are surfaces, soft tissue (``|g|`` ~0.01) stays a medium; ``k`` is
``gradient_factor`` (default 10; 0: purely volumetric). The equations, estimators and the surface
offset are in :mod:`rfmweb.render._mitsuba_integrator`. Volumetric scattering is forward by default
(Henyey-Greenstein ``g = 0.6``, :data:`PHASE_G`, tissue-like): the soft tissue in front of the bone
backscatters less haze and lets more light through to it. ``max_depth`` stays 16 (unbiased): paths
cut after two scattering events (``max_depth=3``) were 1.4x (head CT) to 2x (phantom) faster, but
the lost multiple scattering made the image 2.5-4 % darker, and more for whiter presets.

Two integrators give the same expected image when ``gradient_factor=0`` (tests compare them):

- ``"majorant"`` (default): ``rfmweb_volpath`` (:func:`~rfmweb.render._mitsuba_integrator.define_integrator`),
  delta tracking against local majorants over 8^3-point bricks, next-event estimation with ratio
  tracking, MIS with the scattered rays that reach the environment; hybrid scattering. About 20x
  faster than ``volpath`` on CT, whose bone is 20x denser than soft tissue.
- ``"volpath"``: Mitsuba's own integrator on a ``heterogeneous`` medium in a ``cube`` with a null
  BSDF: delta tracking against one global majorant ``max sigma_t`` (the purely volumetric reference).

What differs from the ray-marcher, by design: light transport (scattering, shadows, inter-reflection
instead of a headlight), pixels are box-filtered (anti-aliased) instead of centre-sampled, and the
medium is classified on a lattice and interpolated (pre-classification) where the ray-marcher
classifies each sample (post-classification). To keep the two close, small volumes are classified
on a lattice twice as fine as the voxels (``oversample="auto"``).

The camera is :class:`~rfmweb.camera.OrbitCamera` (OpenCV axes) turned into a Mitsuba
``perspective`` sensor with the same centre, vertical fov and pixel grid (Mitsuba's camera looks
along +z with +x left, +y up: a flip of x and y).

Mitsuba is optional (``pip install rfmweb[photoreal]``) and imported on the first render; the variant
(``cuda_ad_rgb``, ``llvm_ad_rgb`` needing LLVM >= 16, or ``scalar_rgb``) is chosen by
:func:`~rfmweb.render._mitsuba_scene.select_variant`, which logs why.

Example:
    >>> from rfmweb import samples, OrbitCamera
    >>> from rfmweb.render import Scene
    >>> from rfmweb.transfer import preset
    >>> vol = samples.load("ct_phantom", size=64)  # doctest: +SKIP
    >>> scene = Scene(vol, preset("CT-Bone"))  # doctest: +SKIP
    >>> camera = OrbitCamera.framing(vol.bounds, width=128, height=128)  # doctest: +SKIP
    >>> img = PathTracer(spp=16).render(scene, camera)  # doctest: +SKIP
    >>> foggy = PathTracer(spp=16, gradient_factor=0, phase_g=0).render(scene, camera)  # doctest: +SKIP
    >>> for image, spp in PathTracer().accumulate(scene, camera, spp_per_pass=8, passes=4): ...  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..camera import OrbitCamera
from ..errors import InputError
from ..extras import missing
from . import _mitsuba_scene as ms
from ._mitsuba_integrator import GRADIENT_FACTOR, ROUGHNESS, SPECULAR, define_integrator
from ._pathtrace_grids import VolumeGrids, build_grids, density_gradient, linear_to_srgb, srgb_to_linear, voxel_mm
from .denoise import PassStats, atrous
from .dvr import RaymarchRenderer
from .registry import register
from .scene import FULL, Identity, Quality, RenderAborted, Scene, to_uint8

log = logging.getLogger(__name__)

#: Paths traced at once (bounds the memory of one Mitsuba pass).
MAX_PATHS_PER_PASS = 1 << 21
#: Passes a denoised render is split into at least (their spread gives each pixel's variance).
MIN_PASSES = 8
#: Media kept per PathTracer (e.g. two TFs toggled back and forth).
MEDIA_CACHE = 2
#: Russian roulette starts after this many scattering events.
RR_DEPTH = 5
#: Default Henyey-Greenstein asymmetry of volumetric scattering: forward, as in tissue (g = 0.8-0.95
#: in the visible, Jacques 2013). Less backscatter from the soft tissue in front of the bone (the haze
#: that washed it out) and more light through it to the bone; 0.6 rather than 0.9 because the NEE
#: noise grows with the peak of the phase function, (1 + g) / (1 - g)^2.
PHASE_G = 0.6
INTEGRATORS = ("majorant", "volpath")


@dataclass(frozen=True)
class Lighting:
    """The light rig: a uniform white environment plus a soft key light (a disc in the environment).

    Attributes:
        ambient: radiance of the environment (linear units; 1 lights a white diffuser to 1).
        key_irradiance: irradiance the key light delivers to a surface facing it.
        key_radius: angular radius of the key disc, degrees (larger: softer shadows).
        key_direction: direction *towards* the key light, in camera axes (OpenCV: +x right, +y down,
            +z forward) when ``frame == "camera"``, in world RAS+ when ``frame == "world"``.
        frame: ``"camera"`` (the key follows the camera) or ``"world"`` (fixed; use for datasets
            whose views must agree, e.g. ``rfmweb views``).
    """

    ambient: float = 0.2
    key_irradiance: float = 4.5
    key_radius: float = 10.0
    key_direction: tuple[float, float, float] = (-0.75, -0.55, -0.35)
    frame: str = "camera"

    def __post_init__(self) -> None:
        if self.frame not in ("camera", "world"):
            raise InputError(f"lighting frame must be 'camera' or 'world', got {self.frame!r}")
        if self.ambient < 0 or self.key_irradiance < 0:
            raise InputError("light intensities must be >= 0")
        if not 0.5 <= self.key_radius <= 90:
            raise InputError(f"key light radius must lie in [0.5, 90] degrees, got {self.key_radius}")
        if float(np.linalg.norm(self.key_direction)) < 1e-9:
            raise InputError("key light direction must be non-zero")

    def key_world(self, camera: OrbitCamera) -> np.ndarray:
        """``[3]`` unit vector towards the key light, world RAS+."""
        d = np.asarray(self.key_direction, dtype=np.float64)
        d = camera.rotation.T @ d if self.frame == "camera" else d
        return d / np.linalg.norm(d)


#: A world-fixed rig for datasets: key from anterior, superior and the patient's left (RAS+ -x).
WORLD_LIGHTING = Lighting(key_direction=(-0.35, 0.6, 0.72), frame="world")


@dataclass
class _Medium:
    grids: VolumeGrids
    radius: float                   # bounding-sphere radius of the box, mm
    centre: np.ndarray
    medium: object = None           # Mitsuba heterogeneous medium (``integrator="volpath"``)
    integrator: object = None       # rfmweb_volpath integrator holding the grids (``"majorant"``)


class PathTracer:
    """The ``pathtrace`` renderer (Mitsuba 3 path tracing, hybrid surface/volume scattering); see the
    module docstring.

    Args:
        spp: samples per pixel for every :meth:`render`; ``None``: ``spp_interactive`` for reduced
            quality (``quality.scale < 1``) and ``spp_full`` otherwise.
        spp_interactive, spp_full: see ``spp``.
        seed: base random seed; pass ``i`` of a render uses a seed derived from ``(seed, i)``.
        lighting: the light rig (:class:`Lighting`).
        exposure: multiplies the linear radiance before sRGB encoding (1.5: about the ray-marcher's
            brightness for the CT presets; lit bone is then near white).
        max_depth: longest path (scattering events + 1); Russian roulette from depth 5.
        phase_g: Henyey-Greenstein asymmetry of volumetric scattering (0: isotropic; default
            :data:`PHASE_G`, forward as in tissue).
        gradient_factor: ``k`` of hybrid scattering, ``P_surface = 1 - exp(-k |grad|)`` with ``|grad|``
            the change of the normalised extinction per voxel; 0: purely volumetric. ``None``:
            :data:`~rfmweb.render._mitsuba_integrator.GRADIENT_FACTOR` for ``"majorant"``, 0 for
            ``"volpath"`` (Mitsuba's integrator has no surface scattering).
        specular: weight of the glossy (GGX) lobe of the surface BRDF, in [0, 1]; the rest is Lambertian.
        roughness: GGX roughness ``alpha`` of the glossy lobe, in [0.02, 1].
        oversample: lattice points per voxel spacing, or ``"auto"`` (2 for small volumes, else 1).
        show_environment: show the environment (ambient radiance) behind the volume instead of the
            scene's background colour.
        integrator: ``"majorant"`` (rfmweb_volpath, local majorants, hybrid scattering, default) or
            ``"volpath"`` (Mitsuba's, purely volumetric: the reference for ``gradient_factor=0``).
        variant: force a Mitsuba variant (default: :func:`~rfmweb.render._mitsuba_scene.select_variant`).
        device: torch device used to classify the lattice (default: CUDA when available).
        denoise: filter displayed images by their per-pixel Monte Carlo variance
            (:mod:`rfmweb.render.denoise`); the filter fades as samples accumulate. ``render_linear``
            is never filtered.

    Raises:
        MissingDependency: mitsuba is not installed (says ``pip install 'rfmweb[photoreal]'``).
        InputError: bad settings.
    """

    name = "pathtrace"

    def __init__(self, *, spp: int | None = None, spp_interactive: int = 4, spp_full: int = 64, seed: int = 0,
                 lighting: Lighting = Lighting(), exposure: float = 1.5, max_depth: int = 16,
                 phase_g: float = PHASE_G, gradient_factor: float | None = None, specular: float = SPECULAR,
                 roughness: float = ROUGHNESS, oversample: int | str = "auto", show_environment: bool = False,
                 integrator: str = "majorant", variant: str | None = None,
                 device: torch.device | str | None = None, denoise: bool = True) -> None:
        if not ms.mitsuba_installed():
            raise missing("pathtrace")
        for name_, v in (("spp", spp), ("spp_interactive", spp_interactive), ("spp_full", spp_full)):
            if v is not None and not (isinstance(v, int) and 1 <= v <= 1 << 16):
                raise InputError(f"{name_} must be an integer in 1..65536, got {v!r}")
        if not 1 <= max_depth <= 1024:
            raise InputError(f"max_depth must lie in 1..1024, got {max_depth}")
        if not -0.99 <= phase_g <= 0.99:
            raise InputError(f"phase_g must lie in [-0.99, 0.99], got {phase_g}")
        if not exposure > 0:
            raise InputError(f"exposure must be > 0, got {exposure}")
        if integrator not in INTEGRATORS:
            raise InputError(f"integrator must be one of {INTEGRATORS}, got {integrator!r}")
        if gradient_factor is None:
            gradient_factor = GRADIENT_FACTOR if integrator == "majorant" else 0.0
        if not 0 <= gradient_factor <= 1e4:
            raise InputError(f"gradient_factor must lie in [0, 10000], got {gradient_factor}")
        if gradient_factor > 0 and integrator == "volpath":
            raise InputError("integrator='volpath' is purely volumetric: pass gradient_factor=0 (or None)")
        if not 0 <= specular <= 1:
            raise InputError(f"specular must lie in [0, 1], got {specular}")
        if not 0.02 <= roughness <= 1:
            raise InputError(f"roughness must lie in [0.02, 1], got {roughness}")
        self.spp, self.spp_interactive, self.spp_full = spp, spp_interactive, spp_full
        self.seed = int(seed)
        self.lighting = lighting
        self.exposure = float(exposure)
        self.max_depth = int(max_depth)
        self.phase_g = float(phase_g)
        self.gradient_factor, self.specular, self.roughness = float(gradient_factor), float(specular), float(roughness)
        self.oversample = oversample
        self.show_environment = bool(show_environment)
        self.integrator = integrator
        self.denoise = bool(denoise)
        self._requested_variant = variant
        self._marcher = RaymarchRenderer(device=device)
        self._media: OrderedDict[tuple, _Medium | None] = OrderedDict()
        self._env_cache: tuple[tuple, object] | None = None
        self._lock = threading.RLock()

    # -- Mitsuba -----------------------------------------------------------------------------
    def _mi(self):
        try:
            return ms.import_mitsuba(self._requested_variant)
        except RuntimeError as exc:
            raise InputError(str(exc)) from None

    @property
    def variant(self) -> str:
        """The Mitsuba variant in use (imports Mitsuba on first access)."""
        return self._mi()[1].variant

    def spp_for(self, quality: Quality) -> int:
        """Samples per pixel of a :meth:`render` at ``quality``."""
        if self.spp is not None:
            return self.spp
        return self.spp_full if quality.scale >= 1.0 else self.spp_interactive

    def _medium_key(self, scene: Scene) -> tuple:
        vol = scene.volume
        return (Identity(vol), scene.effective_mix, scene.tf, scene.classes if vol.labels is not None else None,
                self.oversample, self.phase_g, self.gradient_factor, self.specular, self.roughness, self.integrator,
                self.max_depth, self.show_environment)

    def medium(self, scene: Scene) -> _Medium | None:
        """The Mitsuba medium of ``scene`` (cached per volume, TF, class table and mix: camera
        moves reuse it); ``None`` when nothing is visible."""
        key = self._medium_key(scene)
        cache = self._media
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        mi, _ = self._mi()
        integrator = self.integrator
        if integrator == "majorant" and self.variant == "scalar_rgb":
            # a Python integrator would run Python once per ray in scalar mode: use Mitsuba's C++ one
            log.warning("Mitsuba runs scalar_rgb here: using its volpath integrator instead of rfmweb_volpath%s",
                        " (purely volumetric: no surface scattering)" if self.gradient_factor > 0 else "")
            integrator = "volpath"
        grids = build_grids(scene, self._marcher, self.oversample,
                            with_gradient=integrator == "majorant" and self.gradient_factor > 0)
        med = None
        if grids is not None:
            corners = np.array(np.meshgrid([-1, 1], [-1, 1], [-1, 1], indexing="ij")).reshape(3, -1)
            world = grids.box_to_world[:3, :3] @ corners + grids.box_to_world[:3, 3:4]
            centre = world.mean(axis=1)
            med = _Medium(grids, float(np.linalg.norm(world - centre[:, None], axis=0).max()), centre)
            if integrator == "volpath":
                to_world = mi.ScalarTransform4f(grids.grid_to_world)
                phase = {"type": "isotropic"} if self.phase_g == 0 else {"type": "hg", "g": self.phase_g}
                med.medium = mi.load_dict({
                    "type": "heterogeneous",
                    "sigma_t": {"type": "gridvolume", "grid": mi.VolumeGrid(grids.density), "to_world": to_world},
                    "albedo": {"type": "gridvolume", "grid": mi.VolumeGrid(grids.albedo), "to_world": to_world},
                    "scale": grids.sigma_max,
                    "has_spectral_extinction": False,   # grey extinction: no hero-channel weighting needed
                    "phase": phase,
                })
            else:
                import drjit as dr  # noqa: PLC0415 (optional dependency)

                define_integrator(mi, dr)
                med.integrator = mi.load_dict({"type": "rfmweb_volpath", "max_depth": self.max_depth,
                                               "rr_depth": RR_DEPTH, "phase_g": self.phase_g,
                                               "gradient_factor": self.gradient_factor,
                                               "specular": self.specular, "roughness": self.roughness,
                                               "show_environment": self.show_environment})
                med.integrator.set_medium(grids)
        cache[key] = med
        while len(cache) > MEDIA_CACHE:
            cache.popitem(last=False)
        return med

    def _environment(self, mi):
        key = (self.lighting.ambient, self.lighting.key_irradiance, self.lighting.key_radius)
        if self._env_cache is None or self._env_cache[0] != key:
            env, _ = ms.key_light_bitmap(*key)
            self._env_cache = (key, mi.Bitmap(env))
        return self._env_cache[1]

    def mitsuba_scene(self, scene: Scene, camera: OrbitCamera):
        """``(Mitsuba scene, integrator)`` for ``scene`` seen by ``camera``: sensor and lights, plus the
        medium in its box for ``volpath`` (whose integrator is then the scene's own, ``None`` here);
        ``None`` when nothing is visible."""
        mi, _ = self._mi()
        med = self.medium(scene)
        if med is None:
            return None
        rot = np.eye(4)
        rot[:3, :3] = ms.rotation_taking(np.array([0.0, 0.0, -1.0]), self.lighting.key_world(camera))
        far = float(np.linalg.norm(camera.position - med.centre)) + 2 * med.radius
        desc = {
            "type": "scene",
            "sensor": ms.sensor_dict(camera, far),
            "light": {"type": "envmap", "bitmap": self._environment(mi), "to_world": mi.ScalarTransform4f(rot)},
        }
        if med.integrator is not None:
            return mi.load_dict(desc), med.integrator
        desc["integrator"] = {"type": "volpath", "max_depth": self.max_depth, "rr_depth": RR_DEPTH,
                              "hide_emitters": not self.show_environment}
        desc["volume"] = {"type": "cube", "to_world": mi.ScalarTransform4f(med.grids.box_to_world),
                          "bsdf": {"type": "null"}, "interior": med.medium}
        return mi.load_dict(desc), None

    # -- rendering ----------------------------------------------------------------------------
    def _pass_seed(self, i: int) -> int:
        return (self.seed * 0x9E3779B1 + i * 0x85EBCA77 + 1) & 0xFFFFFFFF

    @staticmethod
    def _plan(spp_per_pass: int, passes: int) -> list[int]:
        if not (isinstance(spp_per_pass, int) and spp_per_pass >= 1 and isinstance(passes, int) and passes >= 1):
            raise InputError(f"spp_per_pass and passes must be integers >= 1, got {spp_per_pass}, {passes}")
        return [spp_per_pass] * passes

    def _stats(self, scene: Scene, camera: OrbitCamera, plan: list[int],
               abort: Callable[[], bool] | None) -> Iterator[PassStats]:
        """Trace the passes of ``plan`` (spp each); yields the running :class:`PassStats` after each."""
        # The lock guards Mitsuba calls only, never a suspended generator: an abandoned cinematic
        # still must not keep the renderer locked (or release the lock later, from another thread).
        with self._lock:
            mi, _ = self._mi()
            if abort is not None and abort():
                raise RenderAborted("path tracing stopped: a newer frame is wanted")
            built = self.mitsuba_scene(scene, camera)
        stats = PassStats()
        for i, spp in enumerate(plan):
            if i and abort is not None and abort():
                raise RenderAborted("path tracing stopped: a newer frame is wanted")
            image = np.zeros((camera.height, camera.width, 3))
            if built is not None:
                mscene, integrator = built
                with self._lock:
                    image = np.asarray(mi.render(mscene, integrator=integrator, spp=spp, seed=self._pass_seed(i)),
                                       dtype=np.float64)[..., :3]
            stats.add(image, spp)
            yield stats

    def _split(self, camera: OrbitCamera, spp: int) -> list[int]:
        """``spp`` in passes of at most :data:`MAX_PATHS_PER_PASS` paths, and at least
        :data:`MIN_PASSES` of them when denoising (the filter needs the spread between passes)."""
        per = max(1, min(spp, MAX_PATHS_PER_PASS // max(1, camera.width * camera.height)))
        if self.denoise:
            per = max(1, min(per, spp // MIN_PASSES))
        passes, rest = divmod(spp, per)
        return [per] * passes + ([rest] if rest else [])

    def render_linear(self, scene: Scene, camera: OrbitCamera, spp: int, *,
                      abort: Callable[[], bool] | None = None) -> np.ndarray:
        """``[H, W, 3]`` float32 linear radiance at ``spp`` samples per pixel (``camera``'s full size),
        traced in passes of at most :data:`MAX_PATHS_PER_PASS` paths; ``abort`` is polled between them.
        Never denoised (the physics tests and training targets read it)."""
        return self._traced(scene, camera, spp, abort).mean

    def render_display(self, scene: Scene, camera: OrbitCamera, spp: int, *,
                       abort: Callable[[], bool] | None = None) -> np.ndarray:
        """``[H, W, 3]`` float32 sRGB in [0, 1] at ``spp`` samples per pixel, denoised when
        :attr:`denoise` (what :meth:`render` and the benchmarks show)."""
        return self._display(self._traced(scene, camera, spp, abort), scene, camera)

    def _traced(self, scene: Scene, camera: OrbitCamera, spp: int, abort: Callable[[], bool] | None) -> PassStats:
        """Every pass of ``spp`` samples per pixel (:meth:`_split`), traced: the final statistics."""
        stats = None
        for stats in self._stats(scene, camera, self._split(camera, spp), abort):
            pass
        return stats

    def _display(self, stats: PassStats, scene: Scene, camera: OrbitCamera) -> np.ndarray:
        linear, variance = stats.mean, stats.variance()
        if self.denoise and variance is not None:
            linear = atrous(linear, variance)
        return self.to_display(linear, scene, camera)

    def to_display(self, linear: np.ndarray, scene: Scene, camera: OrbitCamera) -> np.ndarray:
        """Linear radiance ``[H, W, 3]`` -> sRGB-encoded float32 in [0, 1], over the scene's background.

        A non-black background is composited with the ray-marcher's opacity of the same medium
        (Mitsuba hides the environment, so the transmittance is not in its image).
        """
        img = linear * self.exposure
        bg = np.asarray(scene.background, dtype=np.float32)
        if bg.any() and not self.show_environment:
            res, (h, w) = self._marcher.march(scene, camera, Quality(scale=1.0, step=1.0))
            alpha = res.opacity.reshape(h, w, 1).cpu().numpy()
            img = img + (1 - alpha) * srgb_to_linear(bg)
        return linear_to_srgb(img)

    def accumulate(self, scene: Scene, camera: OrbitCamera, spp_per_pass: int, passes: int, *,
                   abort: Callable[[], bool] | None = None) -> Iterator[tuple[np.ndarray, int]]:
        """Progressive rendering for a "cinematic still": yields ``(image [H, W, 3] float32 sRGB in
        [0, 1], total spp)`` after each pass, the mean of all passes so far (linear radiance averaged,
        denoised when :attr:`denoise`, then encoded). ``abort`` is polled between passes
        (:class:`RenderAborted`)."""
        for stats in self._stats(scene, camera, self._plan(spp_per_pass, passes), abort):
            yield self._display(stats, scene, camera), stats.spp

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *,
               abort: Callable[[], bool] | None = None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB, ``H' = round(H * quality.scale)``, at :meth:`spp_for` samples
        per pixel; ``abort`` is polled between passes. ``quality.step`` has no meaning here (free
        paths are sampled, not stepped). See :class:`~rfmweb.render.scene.Renderer`."""
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        t0 = time.perf_counter()
        image = self.render_display(scene, cam, self.spp_for(quality), abort=abort)
        log.debug("path traced %dx%d at %d spp in %.2f s", cam.width, cam.height, self.spp_for(quality),
                  time.perf_counter() - t0)
        return to_uint8(image)

    def close(self) -> None:
        """Drop the cached media (Mitsuba frees them when the last scene using them goes)."""
        self._media.clear()
        self._env_cache = None


def mitsuba_available() -> bool:
    """True when Mitsuba is installed (then ``pathtrace`` can run)."""
    return ms.mitsuba_installed()


# Registered always (the CLI lists it; asking for it without Mitsuba says what to install); importing
# this module never imports Mitsuba.
register("pathtrace", PathTracer, "Path tracer (Mitsuba 3)", feature="pathtrace")

__all__ = ["WORLD_LIGHTING", "Lighting", "PathTracer", "VolumeGrids", "build_grids", "density_gradient",
           "linear_to_srgb", "mitsuba_available", "srgb_to_linear", "voxel_mm"]
