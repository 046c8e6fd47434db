"""What every renderer draws: a :class:`Scene` (volume + transfer function + class styles), seen by an
:class:`~rfmweb.camera.OrbitCamera` at a :class:`Quality`."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, field, replace
from typing import Callable, ClassVar, Protocol

import numpy as np

from ..camera import OrbitCamera
from ..errors import InputError
from ..transfer import ClassTable, TransferFunction
from ..splats.model import Splats6D
from ..volume import Volume
from .fields import VISIBLE_EPS, ChannelMix, default_mix


@dataclass(frozen=True)
class Scene:
    """Everything about the picture except the camera.

    Attributes:
        volume: the data (``None`` for a view of splats alone).
        tf: transfer function, in HU for CT and in blended units [0, 1] for MR (see ``mix``).
        classes: per-label styles (ignored when the volume has no labels).
        mix: how an MR volume's channels blend into the scalar the TF sees; ``None`` means the
            first channel in its own units (CT) or windowed to [0, 1] (MR).
        background: sRGB in [0, 1].
        splats: 6D Gaussian splats of the same anatomy (the ``splats`` renderer draws them).
    """

    volume: Volume | None
    tf: TransferFunction
    classes: ClassTable = field(default_factory=ClassTable)
    mix: ChannelMix | None = None
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    splats: Splats6D | None = None

    @property
    def effective_mix(self) -> ChannelMix | None:
        """The channel blend actually applied (``None`` for a CT rendered in HU)."""
        if self.volume is None:
            return None
        return self.mix if self.mix is not None else default_mix(self.volume)


@dataclass(frozen=True)
class Quality:
    """Speed/quality trade-off.

    Attributes:
        scale: render at this fraction of the view's resolution, then upsample (interactive frames).
        step: ray-marching sample distance as a multiple of the smallest voxel spacing.
        frames: jittered frames averaged into the image (ray-marchers: each frame moves every ray's
            samples along it and its position inside the pixel; see :func:`frame_offsets`).
        cubic: ray-marchers read the volume through its interpolating cubic B-spline instead of
            trilinearly (no contour rings from the voxel lattice on steep TFs, at 1.6-2.2x the cost of
            a frame on the CPU; :mod:`rfmweb.render.sampling`). VTK, which reads trilinearly only, reads
            the B-spline sampled at half the spacing instead (:mod:`rfmweb.render.vtk_volume`).
    """

    scale: float = 1.0
    step: float = 0.5
    frames: int = 1
    cubic: bool = False

    #: Bounds of ``step`` (voxels): finer is only slower; coarser skips thin bone.
    STEP_RANGE: ClassVar[tuple[float, float]] = (0.05, 4.0)
    #: Most ``frames``, as ``rfmweb render --frames``.
    MAX_FRAMES: ClassVar[int] = 1024

    def __post_init__(self):
        """Refuse values no renderer can honour (a 0 step, no frames) with an InputError naming the field."""
        lo, hi = self.STEP_RANGE
        def real(v) -> bool:
            return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))

        checks = (("scale", self.scale, real(self.scale) and 0 < self.scale <= 1, "in (0, 1]"),
                  ("step", self.step, real(self.step) and lo <= self.step <= hi, f"in {lo}..{hi} voxels"),
                  ("frames", self.frames, isinstance(self.frames, numbers.Integral)
                   and not isinstance(self.frames, bool) and 1 <= self.frames <= self.MAX_FRAMES,
                   f"a whole number in 1..{self.MAX_FRAMES}"),
                  ("cubic", self.cubic, isinstance(self.cubic, (bool, np.bool_)), "True or False"))
        for name, value, ok, want in checks:
            if not ok:
                raise InputError(f"Quality.{name} must be {want}, got {value!r}")


INTERACTIVE = Quality(scale=0.5, step=1.0)
#: A 3-D view's frames while its camera moves (:class:`~rfmweb.session.FrameStream` adapts the scale to
#: its time budget): half a voxel's step. The one-voxel step drew wood grain on steep presets at any
#: resolution (SSIM of frames 0.5 degrees apart, CT-Soft-Tissue: 0.892 at scale 0.5; half the step at
#: scale 0.44, the same time: 0.936; ``benchmarks/bench_drag_frames.py``).
MOVING = replace(INTERACTIVE, step=0.5)
FULL = Quality(scale=1.0, step=0.5)
#: The view at rest: the frames the viewer accumulates while the camera rests (FULL, cubic)
REST = replace(FULL, cubic=True)
#: Ground truth (``rfmweb views``, convergence checks): a quarter-voxel step, 8 jittered frames,
#: cubic (SSIM >= 0.99 to 4x the samples on every preset measured; ``tests/test_raymarch.py``).
REFERENCE = Quality(scale=1.0, step=0.25, frames=8, cubic=True)


def frame_offsets(frame: int) -> tuple[float, float]:
    """Sub-pixel ray position ``(x, y)`` (pixels from the top-left corner) of jittered frame ``frame``:
    the centre for frame 0, then the R2 low-discrepancy sequence (Roberts 2018), which covers the
    pixel evenly for any number of frames."""
    if frame == 0:
        return 0.5, 0.5
    g = 1.32471795724474602596                      # the plastic number
    return float((0.5 + frame / g) % 1.0), float((0.5 + frame / (g * g)) % 1.0)


class RenderAborted(Exception):
    """A render stopped early because its ``abort`` callback said the result is no longer wanted."""


class Preparing(Exception):
    """A renderer is still preparing this scene on its own thread (e.g. Render-FM predicting splats):
    there is no image yet. ``str(exc)`` is the status line to show meanwhile; the renderer tells its
    listeners when it is done (see :meth:`rfmweb.session.RenderSession.render` with ``wait=False``)."""


class Renderer(Protocol):
    """A renderer turns (scene, camera, quality) into an ``[H', W', 3]`` uint8 sRGB image.

    ``abort``, when given, is polled during long renders; once it returns True the renderer
    raises :class:`RenderAborted` instead of finishing (a newer state is waiting).

    Optional parts, looked up with ``getattr`` by the session and the frame stream:

    - ``accumulate(scene, camera, per_pass, passes, abort=)``: progressive refinement at rest;
    - ``prepare_in_background(scene) -> str | None`` and ``listen(callback)``: a renderer with slow
      per-scene set-up (Render-FM) starts it on its own thread and returns a status line, or
      ``None`` once it is ready; ``callback()`` is called (from that thread) when a set-up ends;
    - ``note``: one line about the last image drawn (e.g. ``"Render-FM: 41,230 splats in 1.3 s"``).
    """

    name: ClassVar[str]

    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *,
               abort: Callable[[], bool] | None = None) -> np.ndarray: ...


class Identity:
    """A cache-key part that stands for one object: equal only to itself, and it keeps the object
    alive (``id(obj)`` alone is not a key: a freed object's id goes to the next one made)."""

    __slots__ = ("obj",)

    def __init__(self, obj) -> None:
        self.obj = obj

    def __hash__(self) -> int:
        return id(self.obj)

    def __eq__(self, other) -> bool:
        return isinstance(other, Identity) and other.obj is self.obj


def nothing_to_draw(scene: Scene) -> str | None:
    """Why ``scene`` draws an empty frame from every camera (``None``: something may show): its
    transfer function is transparent over every value of the volume, e.g. an all-air scan, or a
    preset set for values the scan does not have. Cheap: the volume's cached range (a CT in HU; an
    MR blend lies in [0, 1]). Splats alone have no TF to check."""
    vol = scene.volume
    if vol is None:
        return None
    lo, hi = vol.intensity_range(0) if scene.effective_mix is None else (0.0, 1.0)
    if any(a < hi and b > lo for a, b in scene.tf.visible_intervals(VISIBLE_EPS)):
        return None
    unit = " HU" if scene.effective_mix is None and vol.modality == "CT" else ""
    return f"nothing to draw: the transfer function hides every value of this scan ({lo:g} to {hi:g}{unit})"


def to_uint8(image) -> np.ndarray:
    """``[H, W, 3]`` float in [0, 1] (numpy or torch) -> uint8."""
    arr = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return (np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
