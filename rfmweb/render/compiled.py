"""The ``compiled`` renderer: the torch ray-marcher's images, marched by a numba kernel on the CPU.

:class:`CompiledRaymarchRenderer` takes everything that depends on the volume and the scene from a
private torch :class:`~rfmweb.render.dvr.RaymarchRenderer` on the CPU (the prepared grid with hidden
classes and shading gradient, label normals, the pre-integrated
:class:`~rfmweb.render.fields.ScalarField` with its tables, the visible box) and the rays and their
sample lattice from the same torch expressions as :meth:`RaymarchRenderer.march`; only the per-sample
loop runs in :mod:`._numba_march`, which reproduces the torch marcher's float32 sampling bit for bit
(its cubic B-spline reads, at rest, to float32 rounding).
The torch marcher stays the oracle: images agree within 1e-3 (in practice within about 2e-4). Forward only.
"""

from __future__ import annotations

import functools
import logging
import threading
from dataclasses import dataclass

import numba
import numpy as np
import torch

from ..backend import numba_threads
from ..camera import OrbitCamera, camera_rays
from ..transfer.function import MAX_OPACITY
from . import _numba_march, _numba_volume, blocks
from .dvr import RaymarchRenderer, accumulate_frames
from .fields import ScalarField
from .raymarch import pixel_jitter
from .scene import FULL, REST, Quality, RenderAborted, Scene, frame_offsets, to_uint8

log = logging.getLogger(__name__)


@functools.cache
def _announce_kernels() -> None:
    """Once a process: the first frame after installing compiles the kernels (then numba's cache loads
    them in seconds); without a word, a first ``rfmweb render`` looked hung for a minute."""
    log.info("loading the compiled ray-marcher's kernels (compiled once after installing: up to a minute)")

_NO_VECTORS = np.zeros((2, 2, 2, 3), dtype=np.float32)   # stands in for an absent [X, Y, Z, 3] array


def interleaved(vectors: torch.Tensor) -> np.ndarray:
    """``[3, X, Y, Z]`` tensor -> ``[X, Y, Z, 3]`` float32 array, the kernel's layout for vector fields."""
    src = np.ascontiguousarray(vectors.detach().cpu().numpy(), dtype=np.float32)
    out = np.empty((*src.shape[1:], 3), dtype=np.float32)
    with numba_threads():
        _numba_volume.interleave(src, out)
    return out


@dataclass
class _Tables:
    """The kernel's volume- and scene-side arguments (see :func:`._numba_march.march_tiles`)."""

    scalar: np.ndarray            # [X, Y, Z] float32, a view of the torch renderer's grid or its B-spline
    cubic: bool                   # scalar holds cubic B-spline coefficients
    geometry: tuple               # float32 world -> grid_sample / voxel maps
    blocks: tuple                 # per-block LUT ranges and the transparency key
    tf: tuple                     # TF and pre-integration tables
    classes: tuple                # labels and class styles
    light: tuple                  # gradient opacity and shading


def narrow_labels(labels: torch.Tensor) -> np.ndarray:
    """Flat label tensor -> the same values in the narrowest integer type (less memory to read)."""
    array = labels.cpu().numpy()
    most = int(array.max()) if array.size else 0
    return array.astype(np.uint8 if most < 2 ** 8 else np.int16 if most < 2 ** 15 else np.int64)


def _tables(field: ScalarField, ranges: tuple[torch.Tensor, torch.Tensor], gradient: np.ndarray,
            normals: np.ndarray | None, labels: np.ndarray | None) -> _Tables:
    """The kernel's view of a pre-integrated :class:`~rfmweb.render.fields.ScalarField` (no copy of the
    scalar, or of its B-spline coefficients when the field reads them); ``ranges``: per-block ``(min,
    max)`` of what the kernel reads (:func:`.blocks.block_ranges`);
    ``gradient``, ``normals``: the field's shading gradient and label normals, :func:`interleaved`;
    ``labels``: its labels, :func:`narrow_labels` (``None`` without)."""
    def f64(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float64)

    def f32(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=np.float32)

    sampler, tf, sh = field.sampler, field.tf, field.tf.shading
    # torch applies these Python floats to float32 tensors as float32
    lut_lo, lut_scale = np.float32(field._lut_lo), np.float32(field._lut_scale)
    cum_sigma = f64(field._cum_sigma)
    cum = np.ascontiguousarray(np.concatenate([cum_sigma[:, None], f64(field._cum_emit)], axis=1))  # [n, 4]
    has_labels = field.labels is not None
    solid = bool(has_labels and field._solid)
    if has_labels:
        class_rgba, class_use = f64(field._class_rgba), f64(field._class_use)
    else:
        labels, class_rgba, class_use = np.zeros(1, dtype=np.uint8), np.ones((1, 4)), np.zeros(1)
    # a class's opacity over one sample step (the marcher's opacity correction of its alpha)
    class_a = 1.0 - np.exp(np.log1p(-np.clip(class_rgba[:, 3], 0.0, MAX_OPACITY)) / float(tf.unit_distance)
                           * float(field.preintegrate))
    go = np.asarray(tf.gradient_opacity, dtype=np.float64)
    power = float(sh.power)
    ipower = int(power) if power.is_integer() and 0 <= power <= 64 else -1     # x ** 10 by squaring
    cubic = field.coefficients is not None
    return _Tables(
        scalar=f32(field.coefficients if cubic else sampler.grid[0]), cubic=cubic,
        geometry=(f32(sampler._norm_linear), f32(sampler._norm_offset), f32(sampler._vox_linear),
                  f32(sampler._vox_offset)),
        blocks=tuple(t.numpy() for t in blocks.field_blocks(field, ranges)),
        tf=(f64(field._lut), cum, lut_lo, lut_scale, float(tf.unit_distance),
            float(ScalarField.PREINT_MIN_SPAN), int(ScalarField.PREINT_PIECES)),
        classes=(labels, class_rgba, class_use, class_a, has_labels, solid),
        light=(gradient, np.ascontiguousarray(go[:, 0]), np.ascontiguousarray(go[:, 1]),
               bool(field.use_grad_opacity), bool(field.shade), float(sh.ambient), float(sh.diffuse),
               float(sh.specular), power, ipower, _NO_VECTORS if normals is None else normals, normals is not None))


class CompiledRaymarchRenderer:
    """The ``compiled`` renderer: :class:`RaymarchRenderer`'s images from a compiled CPU kernel.

    Args:
        band_rows: image rows marched per kernel call; ``abort`` is polled between bands.

    Uses ``torch.get_num_threads()`` threads (at most numba's pool), like the splat rasteriser.
    The first render compiles the kernel (seconds; then cached on disk).
    """

    name = "compiled"

    def __init__(self, band_rows: int = 32) -> None:
        self._marcher = RaymarchRenderer(device="cpu")
        self.band_rows = max(1, int(band_rows))
        self._key: tuple | None = None
        self._tab: _Tables | None = None
        self._ranges_of = None            # the prepared grid self._ranges and self._gradient come from
        self._ranges: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}   # per reconstruction (cubic or not)
        self._gradient: np.ndarray | None = None
        self._copies: dict[str, tuple] = {}  # field tensor -> (the tensor, its kernel copy), made once each
        # the tables above are replaced by whichever thread renders (a view's frame stream, the
        # difference pane, a notebook call): built one thread at a time; a kernel then runs on its own
        self._lock = threading.Lock()

    def _field_tables(self, scene: Scene, step: float, cubic: bool) -> _Tables:
        """Kernel tables of the scene's pre-integrated field, rebuilt when the volume, mix, hidden
        classes (a new prepared grid), TF, class table, step or reconstruction change."""
        p = self._marcher.prepare(scene)
        key = (p, scene.tf, scene.classes, step, cubic)
        if self._key is None or self._key[0] is not p or self._key[1:] != key[1:]:
            field = self._marcher.field(scene, preintegrate=step, cubic=cubic)
            if self._ranges_of is not p.grid:  # these depend on the prepared grid only (not on labels)
                self._ranges, self._gradient, self._ranges_of = {}, interleaved(p.grid[1:4]), p.grid
            if cubic not in self._ranges:
                read = field.coefficients if cubic else field.sampler.grid[0]
                self._ranges[cubic] = blocks.block_ranges(read, cubic=cubic)
            self._tab = _tables(field, self._ranges[cubic], self._gradient,
                                self._copy("normals", field.label_normals, interleaved),
                                self._copy("labels", field.labels, narrow_labels))
            self._key = key
            log.debug("compiled marcher tables for %s (%d blocks)", scene.tf.name,
                      self._ranges[cubic][0].numel())
        return self._tab

    def _copy(self, name: str, tensor: torch.Tensor | None, convert) -> np.ndarray | None:
        """``convert(tensor)``, made again only when the field hands over another tensor (a TF or
        class change keeps the prepared labels and normals)."""
        if tensor is None:
            self._copies.pop(name, None)
            return None
        held = self._copies.get(name)
        if held is None or held[0] is not tensor:
            held = self._copies[name] = (tensor, convert(tensor))
        return held[1]

    def _rays(self, scene: Scene, cam: OrbitCamera, step: float, box, frame: int):
        """Rays and sample lattice of frame ``frame``, as :meth:`RaymarchRenderer.march` and
        :func:`~rfmweb.render.raymarch.march` make them (float32, bit for bit: every ray gets the same
        samples) -> numpy ``(origins [R, 3], dirs [R, 3], t_near [R], n_steps [R])``: the first sample
        (mm, jitter included) and the number of samples of every pixel ray."""
        dtype = self._marcher.prepare(scene).grid.dtype
        origins, dirs = camera_rays(cam, dtype=dtype, offset=frame_offsets(frame))
        origins = np.ascontiguousarray(origins.reshape(-1, 3).numpy())
        dirs = np.ascontiguousarray(dirs.reshape(-1, 3).numpy())
        inv = np.linalg.inv(scene.volume.affine).astype(np.float32)
        t_near, n_steps = _numba_march.ray_lattice(
            origins, dirs, np.ascontiguousarray(inv[:3, :3]), np.ascontiguousarray(inv[:3, 3]),
            box[0].astype(np.float32), box[1].astype(np.float32), np.array(scene.volume.shape, dtype=np.float32) - 1,
            float(step), pixel_jitter(cam.height, cam.width, frame))
        return origins, dirs, t_near, n_steps

    @torch.no_grad()
    def render_frame(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None,
                     frame: int = 0) -> np.ndarray:
        """``[H', W', 3]`` float64 image of jittered frame ``frame`` over the scene's background, as
        :meth:`RaymarchRenderer.render_tensor` (``quality.frames`` is not applied here)."""
        _announce_kernels()
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        h, w = cam.height, cam.width
        bg = np.asarray(scene.background, dtype=np.float64)
        step = quality.step * min(scene.volume.spacing)
        out = np.empty((h, w, 3), dtype=np.float64)
        with numba_threads():
            with self._lock:
                box = self._marcher._visible_box(scene, self._marcher.prepare(scene))
                if box is None:                     # nothing visible: the background
                    return np.broadcast_to(bg, (h, w, 3)).copy()
                tab = self._field_tables(scene, step, quality.cubic)
            origins, dirs, t_near, n_steps = self._rays(scene, cam, step, box, frame)
            with numba.parallel_chunksize(1):      # tiles handed out one at a time (march_tiles)
                for row0 in range(0, h, self.band_rows):
                    if abort is not None and abort():
                        raise RenderAborted("ray-marching stopped: a newer frame is wanted")
                    _numba_march.march_tiles(out, row0, min(h, row0 + self.band_rows), origins, dirs, t_near,
                                             n_steps, float(step), bg, bool(bg.any()), tab.scalar, tab.cubic,
                                             tab.geometry, tab.blocks, tab.tf, tab.classes, tab.light)
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
                   abort=None, quality: Quality = REST):
        """Progressive convergence while the camera rests (:func:`~rfmweb.render.dvr.accumulate_frames`).
        ``abort`` is polled between row bands (:class:`RenderAborted`)."""
        return accumulate_frames(self, scene, camera, frames_per_pass, passes, abort=abort, quality=quality)

    def depth(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL) -> np.ndarray:
        """``[H', W']`` distance (mm) where opacity reaches 0.5 (``inf``: none): the torch marcher's."""
        return self._marcher.depth(scene, camera, quality)
