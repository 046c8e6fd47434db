"""The ``compiled`` renderer: the torch ray-marcher's images, marched by a numba kernel on the CPU.

:class:`CompiledRaymarchRenderer` takes everything that depends on the volume and the scene from a
private torch :class:`~rfmweb.render.dvr.RaymarchRenderer` on the CPU (prepared grid with hidden
classes and shading gradient, label normals, the pre-integrated :class:`~rfmweb.render.fields.ScalarField`'s
tables, the visible box) and the rays and their sample lattice from the same torch expressions as
:meth:`RaymarchRenderer.march`; only the per-sample loop runs in :mod:`._numba_march`. The torch
marcher stays the oracle: images agree within 1e-3. Forward only (no autograd).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np
import torch

from ..camera import OrbitCamera, camera_rays
from . import _numba_march
from .dvr import RaymarchRenderer
from .fields import ScalarField
from .raymarch import pixel_jitter, ray_aabb
from .scene import FULL, Quality, RenderAborted, Scene, frame_offsets, to_uint8

log = logging.getLogger(__name__)

_NO_VECTORS = np.zeros((3, 2, 2, 2), dtype=np.float32)   # stands in for an absent [3, X, Y, Z] array


@dataclass
class _Tables:
    """Numpy views and copies of one :class:`ScalarField` (the kernel's volume-side arguments)."""

    scalar: np.ndarray            # [X, Y, Z] float32
    lut: np.ndarray               # [n, 4] float64
    cum_sigma: np.ndarray         # [n] float64
    cum_emit: np.ndarray          # [n, 3] float64
    lut_lo: float
    lut_scale: float
    labels: np.ndarray            # [X * Y * Z] int64 (or a dummy [1])
    class_rgba: np.ndarray        # [L, 4] float64
    class_use: np.ndarray         # [L] float64
    has_labels: bool
    solid: bool
    gradient: np.ndarray          # [3, X, Y, Z] float32 (or a dummy)
    grad_x: np.ndarray            # [P] gradient-opacity knots (units/mm)
    grad_f: np.ndarray            # [P] factors
    use_grad_opacity: bool
    shade: bool                   # the TF's headlight shading is on
    label_normals: np.ndarray     # [3, X, Y, Z] float32 (or a dummy)
    use_label_normals: bool


def _tables(field: ScalarField) -> _Tables:
    """The kernel's view of a pre-integrated :class:`~rfmweb.render.fields.ScalarField` (no volume copies)."""
    def f64(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)

    def f32(t: torch.Tensor | None) -> np.ndarray:
        return _NO_VECTORS if t is None else np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    has_labels = field.labels is not None
    go = np.asarray(field.tf.gradient_opacity, dtype=np.float64)
    return _Tables(
        scalar=f32(field.sampler.grid[0]), lut=f64(field._lut), cum_sigma=f64(field._cum_sigma),
        cum_emit=f64(field._cum_emit), lut_lo=float(field._lut_lo), lut_scale=float(field._lut_scale),
        labels=field.labels.cpu().numpy() if has_labels else np.zeros(1, dtype=np.int64),
        class_rgba=f64(field._class_rgba) if has_labels else np.ones((1, 4)),
        class_use=f64(field._class_use) if has_labels else np.zeros(1),
        has_labels=has_labels, solid=bool(has_labels and field._solid),
        gradient=f32(field.gradient), grad_x=np.ascontiguousarray(go[:, 0]), grad_f=np.ascontiguousarray(go[:, 1]),
        use_grad_opacity=bool(field.use_grad_opacity), shade=bool(field.shade),
        label_normals=f32(field.label_normals), use_label_normals=field.label_normals is not None)


class CompiledRaymarchRenderer:
    """The ``compiled`` renderer: :class:`RaymarchRenderer`'s images from a compiled CPU kernel.

    Args:
        band_rows: image rows marched per kernel call; ``abort`` is polled between bands.

    Uses ``torch.get_num_threads()`` threads (at most numba's pool), like the splat rasteriser.
    """

    name = "compiled"

    def __init__(self, band_rows: int = 32) -> None:
        self._marcher = RaymarchRenderer(device="cpu")
        self.band_rows = max(1, int(band_rows))
        self._key: tuple | None = None
        self._tab: _Tables | None = None

    def _field_tables(self, scene: Scene, step: float) -> _Tables:
        """Tables of the scene's pre-integrated field, rebuilt when the volume, TF, classes or step change."""
        p = self._marcher.prepare(scene)
        key = (p, scene.tf, scene.classes, step)
        if self._key is None or self._key[0] is not p or self._key[1:] != key[1:]:
            self._tab = _tables(self._marcher.field(scene, preintegrate=step))
            self._key = key
        return self._tab

    def _rays(self, scene: Scene, cam: OrbitCamera, step: float, box, frame: int):
        """Rays and sample lattice of frame ``frame``, as :meth:`RaymarchRenderer.march` and
        :func:`~rfmweb.render.raymarch.march` compute them (the same float32 torch expressions, so the
        same number of samples per ray) -> ``(origins [R, 3], dirs [R, 3], t_near [R], n_steps [R])``."""
        dtype = self._marcher.prepare(scene).grid.dtype
        origins, dirs = camera_rays(cam, dtype=dtype, offset=frame_offsets(frame))
        origins, dirs = origins.reshape(-1, 3), dirs.reshape(-1, 3)
        inv = torch.as_tensor(np.linalg.inv(scene.volume.affine), dtype=dtype)
        o_v, d_v = origins @ inv[:3, :3].T + inv[:3, 3], dirs @ inv[:3, :3].T
        lo, hi = (torch.as_tensor(b, dtype=dtype) for b in box)
        t0, t1 = ray_aabb(o_v, d_v, lo, hi)
        grid_hi = torch.tensor(scene.volume.shape, dtype=dtype) - 1
        g0, _ = ray_aabb(o_v, d_v, torch.zeros_like(grid_hi), grid_hi)
        t0 = g0 + torch.floor((t0 - g0).clamp_min(0) / step) * step
        jitter = torch.as_tensor(pixel_jitter(cam.height, cam.width, frame), dtype=dtype)
        t_near = t0 + jitter * step
        n_steps = (torch.floor((t1 - t_near) / step) + 1).clamp_min(0).long()
        return (origins.contiguous().numpy(), dirs.contiguous().numpy(), t_near.numpy(), n_steps.numpy())

    def render_frame(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None,
                     frame: int = 0) -> np.ndarray:
        """``[H', W', 3]`` float64 image of jittered frame ``frame`` over the scene's background:
        :meth:`RaymarchRenderer.render_tensor` (``quality.frames`` is not applied here)."""
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        h, w = cam.height, cam.width
        bg = np.asarray(scene.background, dtype=np.float64)
        p = self._marcher.prepare(scene)
        box = self._marcher._visible_box(scene, p)
        if box is None:                             # nothing visible: the background
            return np.broadcast_to(bg, (h, w, 3)).copy()
        step = quality.step * min(scene.volume.spacing)
        tab = self._field_tables(scene, step)
        origins, dirs, t_near, n_steps = self._rays(scene, cam, step, box, frame)
        w2v = np.ascontiguousarray(np.linalg.inv(scene.volume.affine)[:3], dtype=np.float64)
        tf, sh = scene.tf, scene.tf.shading
        numba.set_num_threads(max(1, min(numba.config.NUMBA_NUM_THREADS, torch.get_num_threads())))
        lanes = numba.get_num_threads()
        out = np.empty((h, w, 3), dtype=np.float64)
        for row0 in range(0, h, self.band_rows):
            if abort is not None and abort():
                raise RenderAborted("ray-marching stopped: a newer frame is wanted")
            _numba_march.march_rows(
                out, row0, min(h, row0 + self.band_rows), lanes, origins, dirs, t_near, n_steps, w2v, float(step),
                bg, bool(bg.any()), tab.scalar, tab.lut, tab.cum_sigma, tab.cum_emit, tab.lut_lo, tab.lut_scale,
                float(tf.unit_distance), ScalarField.PREINT_MIN_SPAN, tab.labels, tab.class_rgba, tab.class_use,
                tab.has_labels, tab.solid, tab.gradient, tab.grad_x, tab.grad_f, tab.use_grad_opacity,
                tab.shade, float(sh.ambient), float(sh.diffuse), float(sh.specular), float(sh.power),
                tab.label_normals, tab.use_label_normals)
        return out

    def render_float(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None,
                     first_frame: int = 0) -> np.ndarray:
        """``[H', W', 3]`` float32 mean of ``quality.frames`` jittered frames from ``first_frame`` on."""
        frames = max(1, quality.frames)
        total = None
        for k in range(first_frame, first_frame + frames):
            img = self.render_frame(scene, camera, quality, abort=abort, frame=k)
            total = img if total is None else total + img
        return (total / frames).astype(np.float32)

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``; see :class:`Renderer`."""
        return to_uint8(self.render_float(scene, camera, quality, abort=abort))

    def accumulate(self, scene: Scene, camera: OrbitCamera, frames_per_pass: int, passes: int, *,
                   abort=None, quality: Quality = FULL):
        """Progressive convergence while the camera rests: yields ``(image [H, W, 3] float32 in [0, 1],
        frames so far)`` after each pass of ``frames_per_pass`` jittered frames, the mean of all of them
        (:meth:`RaymarchRenderer.accumulate`). ``abort`` is polled between row bands (:class:`RenderAborted`)."""
        total, done = None, 0
        for _ in range(passes):
            if abort is not None and abort():
                raise RenderAborted("accumulation stopped: a newer frame is wanted")
            img = self.render_float(scene, camera, Quality(1.0, quality.step, frames_per_pass), abort=abort,
                                    first_frame=done)
            total = img * frames_per_pass if total is None else total + img * frames_per_pass
            done += frames_per_pass
            yield total / done, done

    def depth(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL) -> np.ndarray:
        """``[H', W']`` distance (mm) where opacity reaches 0.5 (``inf``: none): the torch marcher's."""
        return self._marcher.depth(scene, camera, quality)
