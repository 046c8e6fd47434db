"""Direct volume rendering with the torch ray-marcher (``raymarch``): differentiable, CPU or CUDA.

:class:`RaymarchRenderer` binds a :class:`~rfmweb.render.scene.Scene` to a
:class:`~rfmweb.render.fields.ScalarField`, caches what depends only on the volume (device
tensors, the world gradient for shading) and skips empty space by marching only through the box
around the voxels the transfer function and class table leave visible.

Every image is jittered (:func:`~rfmweb.render.raymarch.pixel_jitter`) and pre-integrated
(:class:`~rfmweb.render.fields.ScalarField`): no wood-grain moire on steep transfer functions.
``quality.frames`` jittered frames are averaged into one image, and :meth:`RaymarchRenderer.accumulate`
keeps adding frames while the camera rests (a converged image; ``frame`` k also moves the rays
inside their pixels: anti-aliasing). Those frames (``REST``) and the reference (``REFERENCE``) read
the volume through its interpolating cubic B-spline (:mod:`.sampling`): trilinear reads leave faint
contour rings of the voxel lattice on steep unshaded presets (CT-Soft-Tissue) when zoomed in.
Frames while the camera moves stay trilinear (a cubic frame costs 1.5-2x one on the CPU).
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..backend import default_device, march_backend
from ..camera import OrbitCamera, camera_rays
from ..transfer import ClassTable, TransferFunction
from .fields import (VISIBLE_EPS, ChannelMix, HiddenFade, ScalarField, hide_key, label_normals, marched_classes,
                     shading_gradient, surface_owners, tf_visible)
from .raymarch import MarchResult, march, pixel_jitter, ray_aabb
from .sampling import bspline_coefficients
from .scene import FULL, REST, Quality, RenderAborted, Scene, frame_offsets, to_uint8

log = logging.getLogger(__name__)


@dataclass
class _Prepared:
    """Device tensors derived from one volume and channel mix."""

    volume: object
    mix: ChannelMix | None
    hidden: tuple                     # hide_key of the hidden classes faded out of the grid
    grid: torch.Tensor                # [4, X, Y, Z]: scalar + world gradient
    labels: torch.Tensor | None       # [X, Y, Z] long
    value_range: tuple[float, float]
    solid: tuple[int, ...] = ()       # visible labels of a solid class table (their normals below)
    label_normals: torch.Tensor | None = None
    coefficients: torch.Tensor | None = None  # [X, Y, Z] cubic B-spline of grid[0], made when first wanted
    source: torch.Tensor | None = None  # [X, Y, Z] the scalar before hidden classes were faded out of it


def visible_box(scalar: torch.Tensor, tf: TransferFunction, labels: torch.Tensor | None,
                classes: ClassTable | None, eps: float = VISIBLE_EPS, *,
                visible: torch.Tensor | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """Voxel-space box ``(lo [3], hi [3])`` around every voxel that can be visible, padded by two
    voxels (a trilinear read reaches the neighbours, a cubic B-spline one the next ones); ``None``
    when nothing is visible.

    Args:
        scalar: ``[X, Y, Z]`` values the TF sees.
        labels, classes: optional per-label styles (hidden classes are not visible).
        visible: :func:`tf_visible` of ``scalar``, ``tf`` and ``eps`` when already known.
    """
    x = scalar.detach()
    visible = tf_visible(x, tf, eps) if visible is None else visible
    if labels is not None and classes is not None and not classes.is_trivial:
        rgba, use = classes.lookup(int(labels.max()), device=x.device, dtype=x.dtype)
        class_alpha = rgba[:, 3][labels]
        solid = (use[labels] > 0) if classes.mode == "solid" else torch.zeros_like(visible)
        visible = torch.where(solid, class_alpha > eps, visible & (class_alpha > eps))
    if not visible.any():
        return None
    lo, hi = [], []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = torch.nonzero(visible.any(dim=other[1]).any(dim=other[0])).squeeze(1)
        lo.append(max(int(idx[0]) - 2, 0))
        hi.append(min(int(idx[-1]) + 2, scalar.shape[axis] - 1))
    return np.array(lo, dtype=np.float64), np.array(hi, dtype=np.float64)


class RaymarchRenderer:
    """The ``raymarch`` renderer.

    Args:
        device: torch device; default: CUDA when available, else CPU (see :mod:`rfmweb.backend`).

    Example:
        >>> from rfmweb import samples, OrbitCamera
        >>> from rfmweb.transfer import preset
        >>> vol = samples.load("ct_phantom", size=48)  # doctest: +SKIP
        >>> img = RaymarchRenderer().render(Scene(vol, preset("CT-Bone")),
        ...                                 OrbitCamera.framing(vol.bounds, width=64, height=64))  # doctest: +SKIP
        >>> img.shape  # doctest: +SKIP
        (64, 64, 3)
    """

    name = "raymarch"

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self._prepared: _Prepared | None = None
        self._box_key: tuple | None = None
        self._box = None
        self._box_of: _Prepared | None = None       # the prepared volume self._box is of
        self._tf_visible: tuple = (None, None, None)  # (grid, TF opacity points, tf_visible of them)
        self._fade = HiddenFade()                       # its blurs kept while the TF moves
        self._owners: tuple | None = None               # (grid, labels, key, owners) of _lookup_labels
        # the caches above are read and replaced by whichever thread renders (a view's frame stream,
        # the difference pane, a notebook call): one at a time
        self._lock = threading.RLock()

    # -- cached preparation ------------------------------------------------------------------
    def prepare(self, scene: Scene) -> _Prepared:
        """Device tensors for the scene's volume, mix and hidden classes (cached for the last ones)."""
        with self._lock:
            vol, mix = scene.volume, scene.effective_mix
            hidden = hide_key(scene.classes.hidden if vol.labels is not None else (), scene.tf)
            p = self._prepared
            if p is not None and p.volume is vol and p.mix == mix and p.hidden == hidden:
                return p
            same = p is not None and p.volume is vol     # the same scan: its tensors are kept
            labels = p.labels if same else \
                None if vol.labels is None else torch.as_tensor(vol.labels.astype(np.int64), device=self.device)
            if p is not None and p.volume.data is vol.data and p.mix == mix and p.hidden == hidden and \
                    not hidden[0] and np.array_equal(p.volume.affine, vol.affine):
                # only the labels changed (a correction, set_labels): the grid does not depend on them
                self._prepared = _Prepared(vol, mix, hidden, p.grid, labels, p.value_range,
                                           coefficients=p.coefficients, source=p.source)
            else:
                if same and p.mix == mix:
                    source, rng = p.source, p.value_range
                else:
                    data = torch.as_tensor(vol.data, device=self.device)
                    source = data[0] if mix is None else mix.blend(data)
                    rng = (float(source.min()), float(source.max()))
                scalar = self._fade(source, labels, hidden[0], scene.tf)
                grid = torch.empty((4, *scalar.shape), dtype=scalar.dtype, device=scalar.device)
                grid[0] = scalar
                shading_gradient(scalar, vol.affine, out=grid[1:])
                self._prepared = _Prepared(vol, mix, hidden, grid, labels, rng, source=source)
            self._update_label_normals(scene)
            log.debug("prepared the volume on %s (%s)", self.device, tuple(self._prepared.grid.shape))
            return self._prepared

    def _update_label_normals(self, scene: Scene) -> None:
        """Normals of the visible solid labels, recomputed when that set changes."""
        p = self._prepared
        solid = ()
        if p.labels is not None and scene.classes.mode == "solid":
            solid = tuple(s.index for s in scene.classes.styles if s.index > 0 and s.visible)
        if solid != p.solid:
            p.solid = solid
            p.label_normals = label_normals(p.labels, solid, scene.volume.affine) if solid else None

    def field(self, scene: Scene, *, shade: bool = True, preintegrate: float | None = None,
              cubic: bool = False) -> ScalarField:
        """The scene's :class:`ScalarField` (``preintegrate``: the sample step in mm, or point samples;
        ``cubic``: read through the cubic B-spline, its coefficients made once per prepared volume)."""
        with self._lock:
            p = self.prepare(scene)
            self._update_label_normals(scene)
            if cubic and p.coefficients is None:
                p.coefficients = bspline_coefficients(p.grid[0])
            classes = marched_classes(scene.classes, scene.tf)
            return ScalarField(p.grid, scene.volume.affine, scene.tf, self._lookup_labels(scene, p), classes,
                               shade=shade, value_range=p.value_range, label_normals=p.label_normals,
                               preintegrate=preintegrate, coefficients=p.coefficients if cubic else None)

    def _lookup_labels(self, scene: Scene, p: _Prepared) -> torch.Tensor | None:
        """The labels the field's class lookup reads: the prepared ones, with the surface of translucent
        classes given to them (:func:`surface_owners`; kept while the grid, labels, those classes and
        where the TF shows anything stay the same)."""
        translucent = scene.classes.translucent if p.labels is not None else ()
        if not translucent:
            return p.labels
        hidden = p.hidden[0]                            # the classes faded out of the grid
        key = (translucent, hidden, scene.tf.visible_intervals(VISIBLE_EPS))
        held = self._owners
        if held is None or held[0] is not p.grid or held[1] is not p.labels or held[2] != key:
            held = self._owners = (p.grid, p.labels, key, surface_owners(p.labels, p.grid[0], scene.tf, translucent,
                                                                         hidden))
        return held[3]

    def _visible_box(self, scene: Scene, p: _Prepared):
        with self._lock:
            key = (scene.tf.opacity, scene.classes if p.labels is not None else None)
            if self._box_of is not p or key != self._box_key:
                grid, opacity, _ = self._tf_visible
                if grid is not p.grid or opacity != scene.tf.opacity:    # kept when only the labels change
                    self._tf_visible = (p.grid, scene.tf.opacity, tf_visible(p.grid[0], scene.tf))
                self._box = visible_box(p.grid[0], scene.tf, p.labels, marched_classes(scene.classes, scene.tf),
                                        visible=self._tf_visible[2])
                self._box_key, self._box_of = key, p
            return self._box

    # -- rendering ----------------------------------------------------------------------------
    def march(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *,
              field=None, abort=None, frame: int = 0) -> tuple[MarchResult, tuple[int, int]]:
        """March every pixel ray of ``camera`` (scaled by ``quality.scale``), jittered as frame ``frame``.

        ``field`` defaults to the scene's pre-integrated :class:`ScalarField` (cubic as the quality says).

        Returns:
            (per-ray result over ``H' x W'`` rays, ``(H', W')``).
        """
        p = self.prepare(scene)
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        step = quality.step * min(scene.volume.spacing)
        field = field if field is not None else self.field(scene, preintegrate=step, cubic=quality.cubic)
        box = self._visible_box(scene, p)
        if box is None:
            n = cam.height * cam.width
            z = torch.zeros(n, dtype=p.grid.dtype, device=self.device)
            return MarchResult(torch.zeros(n, 3, dtype=z.dtype, device=z.device), z, torch.full_like(z, np.inf)), \
                (cam.height, cam.width)
        origins, dirs, t0, t1, jitter = self.rays(scene, cam, step, box, frame)
        return march(origins, dirs, t0, t1, field, step, abort=abort, jitter=jitter), (cam.height, cam.width)

    def rays(self, scene: Scene, cam: OrbitCamera, step: float, box, frame: int) -> tuple[torch.Tensor, ...]:
        """The pixel rays of ``cam`` (already scaled by the quality) for jittered frame ``frame``, and
        their sample lattice, on this renderer's device in the prepared grid's dtype.

        Returns:
            ``(origins [R, 3], dirs [R, 3], t0 [R], t1 [R], jitter [R])``, ``R = H' W'`` row-major: world
            mm and unit directions, the interval (mm) through the voxel-space ``box`` (:func:`visible_box`)
            with ``t0`` moved back onto the lattice of ``step``-spaced samples from the whole grid's
            entry (so skipping never moves the samples), and the per-ray offset ``u`` in [0, 1).
        """
        dtype = self.prepare(scene).grid.dtype
        origins, dirs = camera_rays(cam, device=self.device, dtype=dtype, offset=frame_offsets(frame))
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        # intersect in voxel space (affine map: the ray parameter t is shared)
        inv = torch.as_tensor(np.linalg.inv(scene.volume.affine), dtype=dtype, device=self.device)
        o_v, d_v = origins @ inv[:3, :3].T + inv[:3, 3], dirs @ inv[:3, :3].T
        lo, hi = (torch.as_tensor(b, dtype=dtype, device=self.device) for b in box)
        t0, t1 = ray_aabb(o_v, d_v, lo, hi)
        # start on the sample lattice of the whole grid, so skipping never moves the samples
        grid_hi = torch.tensor(scene.volume.shape, dtype=dtype, device=self.device) - 1
        g0, _ = ray_aabb(o_v, d_v, torch.zeros_like(grid_hi), grid_hi)
        t0 = g0 + torch.floor((t0 - g0).clamp_min(0) / step) * step
        return origins, dirs, t0, t1, _jitter_tensor(cam.height, cam.width, frame, self.device, dtype)

    def render_tensor(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, field=None,
                      abort=None, frame: int = 0) -> torch.Tensor:
        """``[H', W', 3]`` float image of jittered frame ``frame`` over the scene's background
        (differentiable; ``quality.frames`` is not applied here)."""
        res, (h, w) = self.march(scene, camera, quality, field=field, abort=abort, frame=frame)
        bg = torch.tensor(scene.background, dtype=res.rgb.dtype, device=res.rgb.device)
        return (res.rgb + (1 - res.opacity)[:, None] * bg).reshape(h, w, 3)

    @torch.no_grad()
    def render_float(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None,
                     first_frame: int = 0) -> np.ndarray:
        """``[H', W', 3]`` float32 mean of ``quality.frames`` jittered frames from ``first_frame`` on
        (on CUDA each frame is one fused Triton kernel, :func:`rfmweb.backend.march_backend`)."""
        fused = march_backend(self.device) == "triton"
        if fused:
            from ._triton_march import march_triton      # imports Triton: on CUDA only
        total = None
        for k in range(first_frame, first_frame + max(1, quality.frames)):
            if fused:
                if abort is not None and abort():
                    raise RenderAborted("ray-marching stopped: a newer frame is wanted")
                img = march_triton(self, scene, camera, quality, k)
            else:
                img = self.render_tensor(scene, camera, quality, abort=abort, frame=k)
            total = img if total is None else total + img
        return (total / max(1, quality.frames)).float().cpu().numpy()

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``; see :class:`Renderer`."""
        return to_uint8(self.render_float(scene, camera, quality, abort=abort))

    def accumulate(self, scene: Scene, camera: OrbitCamera, frames_per_pass: int, passes: int, *,
                   abort=None, quality: Quality = REST):
        """Progressive convergence while the camera rests: :func:`accumulate_frames` of this renderer.
        ``abort`` is polled between segments (:class:`RenderAborted`)."""
        return accumulate_frames(self, scene, camera, frames_per_pass, passes, abort=abort, quality=quality)

    @torch.no_grad()
    def depth(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL) -> np.ndarray:
        """``[H', W']`` distance (mm) along each pixel ray where opacity reaches 0.5 (``inf``: none)."""
        res, (h, w) = self.march(scene, camera, quality)
        return res.depth.reshape(h, w).cpu().numpy()


@functools.lru_cache(maxsize=16)
def _jitter_tensor(height: int, width: int, frame: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """:func:`~rfmweb.render.raymarch.pixel_jitter` as a tensor on ``device``, kept (a host-to-device
    copy per frame costs more than a Triton frame)."""
    return torch.tensor(pixel_jitter(height, width, frame), dtype=dtype, device=device)


def accumulate_frames(renderer, scene: Scene, camera: OrbitCamera, frames_per_pass: int, passes: int, *,
                      abort=None, quality: Quality = REST):
    """Yields ``(image [H, W, 3] float32 in [0, 1], frames in it)`` after each of ``passes`` passes of
    ``frames_per_pass`` jittered frames of a ray-marcher (``renderer.render_float`` at ``quality``'s
    step and reconstruction, full resolution): the running mean of all of them, so the view converges
    while the camera rests."""
    fine = replace(quality, scale=1.0, frames=frames_per_pass)
    total, done = None, 0
    for _ in range(passes):
        if abort is not None and abort():
            raise RenderAborted("accumulation stopped: a newer frame is wanted")
        img = renderer.render_float(scene, camera, fine, abort=abort, first_frame=done)
        total = img * frames_per_pass if total is None else total + img * frames_per_pass
        done += frames_per_pass
        yield total / done, done
