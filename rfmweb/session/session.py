"""``RenderSession``: the state of one view (volume, renderer, TF, classes, camera) -> frames.

Core code: no UI imports. Front ends (the Jupyter widget, the trame app, the CLI) change state
through the methods here, from any thread; a :class:`~rfmweb.session.stream.FrameStream`
renders the latest state on a worker thread. Every change bumps :attr:`RenderSession.version`
and notifies listeners, so frames are never rendered for a state that is already stale.
"""

from __future__ import annotations

import logging
import math
import numbers
import threading
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from ..camera import OrbitCamera
from ..errors import InputError
from ..render.fields import default_mix
from ..render.registry import (check_renderer, default_renderer_name, make_renderer, renderer_label,
                               renderer_unsuited)
from ..render.scene import FULL, MOVING, Preparing, Quality, Scene, nothing_to_draw, to_uint8
from ..render.slices import AXES
from ..splats.model import Splats6D
from ..transfer import DEFAULT_PRESET, PRESETS, ClassTable, TransferFunction, preset_for, preset_unsuited
from ..volume import LabelClass, Volume, generic_classes
from .pointing import Annotation, Pointing, Ruler, draw_3d_points
from .slice_state import SliceControls
from .slice_frame import render_slice_frame

log = logging.getLogger(__name__)

#: Degrees of orbit per pixel of drag.
ORBIT_DEG_PER_PX = 0.4
#: View modes: the 3-D render, or one greyscale slice, optionally with the label overlay
#: (:mod:`rfmweb.render.slices`).
VIEW_MODES = ("3d", "axial", "coronal", "sagittal")
#: The most voxels the 3-D renderers draw (:meth:`~rfmweb.volume.Volume.coarsened`; slice views show
#: every voxel). Their tables take ~30 bytes a voxel: a thin-slice body CT (512 x 512 x 600) took
#: 8 GiB a view and 23 s a full frame on 2 cores, and 4 views overran 24 GB. 32 Mi voxels: ~1 GB.
MAX_3D_VOXELS = 1 << 25


@dataclass(frozen=True)
class Snapshot:
    """An immutable copy of what to render (taken under the session's lock)."""

    version: int
    renderer: str
    preset: str
    scene: Scene
    camera: OrbitCamera
    mode: str = "3d"
    slice_index: int = 0
    overlay: float = 0.0  # label overlay opacity as drawn (0 when the overlay is off)
    slice_channel: int = 0
    slice_window: tuple[float, float] | None = None  # (lo, hi) grey range of the slice channel, image units
    slice_zoom: float = 1.0
    slice_pan: tuple[float, float] = (0.0, 0.0)  # mm, screen right and down
    cursor: tuple[float, float, float] | None = None  # crosshair, world mm (RAS)
    annotations: tuple[Annotation, ...] = ()
    ruler: Ruler | None = None  # a measured distance, world mm (RAS)


class RenderSession(SliceControls, Pointing):
    """State of one view, rendered on demand.

    Args:
        volume: what to show (may be ``None`` when ``splats`` are given).
        splats: 6D Gaussian splats of the same anatomy, for the ``splats`` renderer.
        classes: class table for splats shown without a volume (default: one class per label).
        renderer: a name from :func:`rfmweb.render.registry.renderer_names`; default: the fastest
            here for a volume, ``splats`` for splats alone.
        preset: a preset name (:data:`rfmweb.transfer.PRESETS`); default per modality.
        width, height: view size in pixels.
        camera: initial camera; default: framing the volume from the front, slightly above.

    Example:
        >>> from rfmweb import samples
        >>> s = RenderSession(samples.load("ct_phantom", size=48), width=64, height=64)  # doctest: +SKIP
        >>> s.set_group_visible("skeleton", False); s.orbit(30, 0)  # doctest: +SKIP
        >>> s.render().shape  # doctest: +SKIP
        (64, 64, 3)
    """

    #: Its streamed 3-D frames carry the orientation marker (:class:`~rfmweb.session.stream.FrameStream`).
    draws_orientation = True
    #: The quality of its streamed 3-D frames while the state moves (the stream sets the scale).
    moving_quality = MOVING

    def __init__(self, volume: Volume | None = None, *, splats: Splats6D | None = None,
                 classes: tuple[LabelClass, ...] | None = None, renderer: str | None = None,
                 preset: str | None = None, width: int = 512, height: int = 512,
                 camera: OrbitCamera | None = None) -> None:
        if volume is None and splats is None:
            raise InputError("a view needs a volume, splats, or both")
        self._lock = threading.RLock()
        self._listeners: list[Callable[["RenderSession", str], None]] = []
        self._renderers: dict[str, object] = {}
        self._window_cache: tuple | None = None  # (image array, channel, window) of the slice views
        self.version = 0
        self._holds = 0  # hold_refinement() depth
        self._released: list[Callable[[], None]] = []  # on_refinement_released() callbacks
        self.volume = volume
        self.splats = splats
        self.renderer_name = self._usable(renderer or (default_renderer_name() if volume is not None else "splats"))
        self.preset_name = preset or DEFAULT_PRESET[volume.modality if volume is not None else "CT"]
        _warn_unsuited(self.preset_name, volume)
        self.tf: TransferFunction = self._preset(self.preset_name)
        if classes is None:
            classes = volume.classes if volume is not None else _splat_classes(splats)
        self.classes = ClassTable.from_classes(classes)
        self.still_renderer: str | None = None
        self.background = (0.0, 0.0, 0.0)
        self.camera = camera or self.home_camera(width, height)
        self.mode = "3d"
        self.pinned_mode: str | None = None  # a four-up plane view shows only this mode (pin_view_mode)
        self.slice_indices = self._middle_slices()
        self.overlay = 0.45
        self.label_overlay = False  # slices are greyscale until the overlay is switched on
        self.slice_channel = _default_slice_channel(volume)
        self.mix = None if volume is None else default_mix(volume, self.slice_channel)  # the 3-D view's sequence
        self.window: tuple[float, float] | None = None  # (lo, hi) set by the user; None: the default
        self.slice_zoom = 1.0
        self.slice_pan = (0.0, 0.0)
        self.cursor = None
        self.annotations = ()

    # -- listeners ----------------------------------------------------------------------------
    def subscribe(self, callback: Callable[["RenderSession", str], None]) -> Callable[[], None]:
        """Call ``callback(session, what)`` after every change; returns an unsubscribe function.

        ``what`` is ``"camera"``, ``"scene"``, ``"renderer"``, ``"still"`` (the still renderer: the
        picture is the same until its first pass), ``"slice"`` (view mode / slice index), ``"cursor"``
        (the crosshair moved, and the slices with it), ``"annotations"`` or ``"prepared"`` (a renderer
        finished preparing the scene in the background: Render-FM's splats).
        """
        return self._listen(self._listeners, callback)

    def _listen(self, listeners: list, callback: Callable) -> Callable[[], None]:
        """Add ``callback`` to ``listeners``; returns the function that removes it."""
        with self._lock:
            listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in listeners:
                    listeners.remove(callback)
        return unsubscribe

    def _changed(self, what: str) -> None:
        with self._lock:
            self.version += 1
            listeners = list(self._listeners)
        for cb in listeners:
            cb(self, what)

    @property
    def refinement_held(self) -> bool:
        """Whether a :meth:`hold_refinement` is in force."""
        return self._holds > 0

    @contextmanager
    def hold_refinement(self):
        """Within it, frame streams of this view start no full-quality or converging frame and stop
        the one under way (interactive frames still come): the cores go to work the user waits for,
        e.g. a correction whose result replaces this view. Afterwards the view refines its latest
        state again."""
        with self._lock:
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                released = list(self._released)
            for cb in released:
                cb()

    def on_refinement_released(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` whenever a :meth:`hold_refinement` ends (not a change of the view's
        state: :meth:`subscribe`'s listeners are not told); returns an unsubscribe function."""
        return self._listen(self._released, callback)

    # -- state --------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.volume.name if self.volume is not None else "splats"

    @property
    def bounds(self) -> np.ndarray:
        """``[2, 3]`` world box (mm) of what is shown: the volume's grid; for splats alone, the box of
        the volume they were made from (:attr:`Splats6D.box`), else the bulk of the splats."""
        if self.volume is not None:
            return self.volume.bounds
        if self.splats.box is not None:
            return self.splats.box
        means = self.splats.means.detach().cpu().numpy()
        return np.percentile(means, [0.5, 99.5], axis=0)

    def _preset(self, name: str) -> TransferFunction:
        return preset_for(name, self.volume) if self.volume is not None else PRESETS[name]

    def home_camera(self, width: int | None = None, height: int | None = None) -> OrbitCamera:
        """The default view: anterior, 20 degrees above, framing the whole volume."""
        w = width if width is not None else self.camera.width
        h = height if height is not None else self.camera.height
        return OrbitCamera.framing(self.bounds, azimuth=0.0, elevation=20.0, width=w, height=h, margin=0.9)

    def set_labels(self, labels: np.ndarray | None, classes: tuple[LabelClass, ...] | None = None) -> None:
        """Show another label map on the same image (e.g. after a correction); styles are kept.

        ``labels``: ``[X, Y, Z]`` integers on the volume's grid (``None``: no labels). The image
        data is shared, not copied. Classes whose label values did not change keep their
        visibility, opacity and colour, so a user's toggles survive a refresh.
        """
        if self.volume is None:
            raise InputError("this view has no volume to put labels on")
        with self._lock:
            volume = self.volume.with_labels(labels, classes)
            old = {st.index: st for st in self.classes.styles}
            fresh = ClassTable.from_classes(volume.classes)
            styles = tuple(old.get(st.index, st) if st.index in old and old[st.index].name == st.name else st
                           for st in fresh.styles)
            self.volume = volume
            self.classes = replace(self.classes, styles=styles)
        self._changed("scene")

    # -- slice views ----------------------------------------------------------------------------
    def _middle_slices(self) -> dict[str, int]:
        shape = self.volume.shape if self.volume is not None else (1, 1, 1)
        return {axis: shape[i] // 2 for axis, i in AXES.items()}

    def slice_count(self, axis: str | None = None) -> int:
        """Number of slices along ``axis`` (default: the current mode's; 0 in 3-D mode)."""
        axis = axis or self.mode
        if axis == "3d":
            return 0
        if axis not in AXES:
            raise InputError(f"slice axis must be one of {tuple(AXES)}, got {axis!r}")
        return self.volume.shape[AXES[axis]] if self.volume is not None else 0

    @property
    def slice_index(self) -> int:
        """Index of the slice shown (of the current mode's axis; 0 in 3-D mode)."""
        return self.slice_indices.get(self.mode, 0)

    def set_view_mode(self, mode: str, index: int | None = None) -> None:
        """Show the 3-D render (``"3d"``) or a slice (``"axial"``, ``"coronal"``, ``"sagittal"``).

        ``index``: the slice along that axis (default: the one shown last, initially the middle).
        """
        if mode not in VIEW_MODES:
            raise InputError(f"view mode must be one of {VIEW_MODES}, got {mode!r}")
        if mode != "3d" and self.volume is None:
            raise InputError("slice views need a volume (this view shows splats alone)")
        if self.pinned_mode is not None and mode != self.pinned_mode:
            return  # a pinned view keeps its plane, whoever asks (a scene, a menu)
        with self._lock:
            if index is not None:
                self._check_index(mode, index)
            if mode == self.mode and (index is None or int(index) == self.slice_indices.get(mode)):
                return
            self.mode = mode
            if index is not None:
                self.slice_indices[mode] = int(index)
        self._changed("slice")

    def pin_view_mode(self, mode: str) -> None:
        """Show ``mode`` from now on (a plane of the four-up layout): later requests for another mode
        are ignored; slices and the crosshair still move it."""
        self.pinned_mode = None
        self.set_view_mode(mode)
        self.pinned_mode = mode

    def set_slice(self, index: int) -> None:
        """Show slice ``index`` of the current axis (slice modes only); the cursor, if any, moves onto it."""
        if self.mode == "3d":
            raise InputError("set_slice needs a slice view mode (axial, coronal or sagittal), not 3d")
        self.set_view_mode(self.mode, index)
        self.cursor_to_slice()

    def step_slice(self, delta: int) -> None:
        """Move ``delta`` slices along the current axis (clamped to the volume)."""
        if self.mode == "3d" or not delta:
            return
        n = self.slice_count()
        self.set_slice(min(n - 1, max(0, self.slice_index + int(delta))))

    def _check_index(self, mode: str, index) -> None:
        n = self.slice_count(mode) if mode != "3d" else 0
        if mode == "3d" or not 0 <= int(index) < n:
            raise InputError(f"{mode} slice index must lie in 0..{n - 1}, got {index}")

    def set_renderer(self, name: str) -> None:
        """Draw the 3-D view with renderer ``name`` (:func:`~rfmweb.render.registry.renderer_names`);
        raises :class:`InputError` when it cannot run here (the error says what to install).

        ``"vtk"`` hands views with class colours, partial class opacity or solid labels to the
        ray-marcher, which draws them exactly (logged as a warning once; :meth:`note` says which
        renderer drew a frame)."""
        self._usable(name)
        with self._lock:
            self.renderer_name = name
        self._changed("renderer")

    def _usable(self, name: str) -> str:
        """``name`` when that renderer runs here and can draw what this session shows.

        Raises:
            InputError: unknown, missing a package, or unsuited (a volume renderer on splats alone,
                Render-FM on an MR volume): one line saying which and why.
        """
        check_renderer(name)
        if self.volume is None and name != "splats":
            raise InputError(f"the {renderer_label(name)} renderer draws a volume; this view shows splats "
                             "alone (use the splats renderer)")
        why = renderer_unsuited(name, self.volume)
        if why is not None:
            raise InputError(f"the {renderer_label(name)} renderer cannot draw {self.volume.name}: {why}")
        return name

    def set_preset(self, name: str) -> None:
        """Switch to a Slicer preset by name (stretched to the volume for MR presets). One of the
        other modality is drawn, as the CLI's ``render`` does, with a warning (the menus offer it
        disabled): its numbers mean something else on this scan."""
        if name not in PRESETS:
            raise InputError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
        _warn_unsuited(name, self.volume)
        with self._lock:
            self.preset_name = name
            self.tf = self._preset(name)
        self._changed("scene")

    def set_tf(self, tf: TransferFunction) -> None:
        """Use a custom transfer function (e.g. imported from ParaView JSON)."""
        if not isinstance(tf, TransferFunction):
            raise InputError(f"set_tf takes a TransferFunction (set_preset takes a preset's name), got "
                             f"{type(tf).__name__}")
        with self._lock:
            self.tf = tf
            self.preset_name = tf.name
        self._changed("scene")

    def set_class(self, index: int, *, visible: bool | None = None, opacity: float | None = None,
                  color: tuple[float, float, float] | None = None) -> None:
        """Change one class's style. A colour chosen is shown: class colours turn on with it (the
        picker changed a swatch and nothing on screen while the transfer function coloured)."""
        changes = {k: v for k, v in (("visible", visible), ("opacity", opacity), ("color", color)) if v is not None}
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, numbers.Integral):
            names = ", ".join(f"{c.index} {c.name}" for c in self.classes.styles[:8])
            raise InputError(f"set_class takes a class's label value (a whole number), got {index!r}; the classes "
                             f"are: {names or 'none'}")
        if visible is not None and not isinstance(visible, (bool, np.bool_)):
            raise InputError(f"class visible must be True or False, got {visible!r}")
        if "opacity" in changes and not (isinstance(opacity, numbers.Real) and 0.0 <= opacity <= 1.0):
            raise InputError(f"class opacity must lie in [0, 1], got {changes['opacity']!r}")
        with self._lock:
            self.classes = self.classes.updated(int(index), **changes)
            if color is not None:
                self.classes = replace(self.classes, use_class_colors=True)
        self._changed("scene")

    def set_group_visible(self, group: str, visible: bool) -> None:
        """Show or hide a group of classes ("skeleton", "organs", "vessels", "soft tissue")."""
        with self._lock:
            self.classes = self.classes.set_group_visible(group, visible)
        self._changed("scene")

    def set_class_table(self, table: ClassTable) -> None:
        """Style every label class at once (visibility, opacity 0..1, sRGB colour, mode)."""
        with self._lock:
            self.classes = table
        self._changed("scene")

    def set_class_colors(self, on: bool) -> None:
        """Colour voxels by their class (True) or by the transfer function (False)."""
        with self._lock:
            self.classes = replace(self.classes, use_class_colors=bool(on))
        self._changed("scene")

    def set_slice_channel(self, channel: int | str) -> None:
        """Which MR sequence the view shows (an index or a name such as ``"FLAIR"``): the slices, on
        the sequence's own auto window, and the 3-D render, which blends that sequence alone."""
        before = self.slice_channel
        super().set_slice_channel(channel)
        if self.volume.modality == "MR" and self.slice_channel != before:
            with self._lock:
                self.mix = default_mix(self.volume, self.slice_channel)
            self._changed("scene")

    def set_still_renderer(self, name: str | None) -> None:
        """Cinematic still: while the camera rests, accumulate frames of a progressive renderer
        (``"pathtrace"``) into the view; ``None`` turns it off. Interaction keeps the current renderer."""
        if name is not None:
            check_renderer(name)
            if not hasattr(self.renderer(name), "accumulate"):
                raise InputError(f"renderer {name!r} cannot accumulate samples progressively")
        with self._lock:
            if name == self.still_renderer:
                return
            self.still_renderer = name
        self._changed("still")

    def set_camera(self, camera: OrbitCamera) -> None:
        """Show the scene from ``camera`` (world mm, degrees; its size becomes the view's)."""
        with self._lock:
            if camera == self.camera:
                return
            self.camera = camera
        self._changed("camera")

    def look_from(self, azimuth: float, elevation: float = 0.0) -> None:
        """Turn the camera to ``azimuth`` degrees about the superior axis (0: anterior, 90: the
        patient's left, 180: posterior, 270: the right) and ``elevation`` degrees towards superior
        (-90..90), keeping what it looks at and how far."""
        if not (math.isfinite(elevation) and -90 <= elevation <= 90):
            raise InputError(f"elevation must lie in -90..90 degrees, got {elevation}")
        with self._lock:
            cam = replace(self.camera, azimuth=azimuth, elevation=elevation)   # checks the azimuth
        self.set_camera(cam)

    def orbit(self, dx_px: float, dy_px: float) -> None:
        """Rotate as for a drag of ``(dx, dy)`` pixels (``ORBIT_DEG_PER_PX`` degrees each): right turns the
        object right, down tilts it towards you (:meth:`look_from` names the angles instead)."""
        with self._lock:
            cam = self.camera.orbited(-dx_px * ORBIT_DEG_PER_PX, dy_px * ORBIT_DEG_PER_PX)
        self.set_camera(cam)

    def pan(self, dx_px: float, dy_px: float) -> None:
        """Move the scene with a drag of ``(dx, dy)`` pixels."""
        with self._lock:
            cam = self.camera.panned(dx_px, dy_px)
        self.set_camera(cam)

    def zoom(self, factor: float) -> None:
        """Scale the camera distance (``factor < 1`` zooms in)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise InputError(f"zoom factor must be a finite number > 0, got {factor}")
        with self._lock:
            cam = self.camera.zoomed(factor)
        self.set_camera(cam)

    def resize(self, width: int, height: int) -> None:
        """The viewport is now ``width x height`` pixels (:meth:`OrbitCamera.in_viewport`)."""
        with self._lock:
            cam = self.camera.in_viewport(int(width), int(height))
        self.set_camera(cam)

    def reset_camera(self) -> None:
        """Home camera; slice views back to fitted and centred."""
        with self._lock:
            moved = self.slice_zoom != 1.0 or self.slice_pan != (0.0, 0.0)
            self.slice_zoom, self.slice_pan = 1.0, (0.0, 0.0)
        if moved:
            self._changed("slice")
        self.set_camera(self.home_camera())

    # -- rendering ----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """A consistent copy of what the next frame shows (scene, camera, mode, slices, version),
        taken under the session's lock: renderers draw from it while the state moves on."""
        with self._lock:
            scene = Scene(self.volume, self.tf, self.classes, self.mix, self.background, self.splats)
            return Snapshot(self.version, self.renderer_name, self.preset_name, scene, self.camera, self.mode,
                            self.slice_index, self.overlay if self.label_overlay else 0.0, self.slice_channel,
                            self.window or self._slice_window(), self.slice_zoom, self.slice_pan, self.cursor,
                            self.annotations, self.ruler)

    def renderer(self, name: str | None = None):
        """This session's instance of a renderer (created on first use, then kept).

        A renderer that prepares scenes in the background (``listen``, e.g. Render-FM) is heard:
        when a preparation ends the session changes with ``what="prepared"``, so streams render again.
        """
        name = name or self.renderer_name
        if name not in self._renderers:
            renderer = make_renderer(name)
            listen = getattr(renderer, "listen", None)
            if listen is not None:
                listen(lambda: self._changed("prepared"))
            self._renderers[name] = renderer
        return self._renderers[name]

    def render(self, quality: Quality = FULL, snapshot: Snapshot | None = None, *, abort=None,
               wait: bool = True) -> np.ndarray:
        """Render the current (or a given) state: ``[H', W', 3]`` uint8, ``H' = round(H * quality.scale)``.

        ``abort`` is polled during long renders (see :class:`rfmweb.render.scene.Renderer`). A slice
        view is always rendered at full resolution (it is cheap), with orientation letters.

        ``wait=False``: a renderer that prepares each scene slowly (Render-FM: 0.1-3 s of network)
        does it on its own thread instead, and this raises :class:`~rfmweb.render.scene.Preparing`
        (its message is the status line) until it is ready; the session then changes with
        ``what="prepared"``. Frame streams render this way, so the view keeps its last frame.
        """
        snap = snapshot or self.snapshot()
        if snap.mode != "3d":
            return render_slice_frame(snap)
        renderer = self.renderer(snap.renderer)
        scene = self.scene_3d(snap.scene)
        if not wait and hasattr(renderer, "prepare_in_background"):
            message = renderer.prepare_in_background(scene)
            if message is not None:
                raise Preparing(message)
        return self._draw_points(renderer.render(scene, snap.camera, quality, abort=abort), snap)

    @staticmethod
    def scene_3d(scene: Scene) -> Scene:
        """``scene`` as the 3-D renderers (and 3-D picks) see it: its volume coarsened to
        :data:`MAX_3D_VOXELS` voxels, made once per scan and shared by its views."""
        if scene.volume is None:
            return scene
        coarse = scene.volume.coarsened(MAX_3D_VOXELS)
        return scene if coarse is scene.volume else replace(scene, volume=coarse)

    def _draw_points(self, image: np.ndarray, snap: Snapshot) -> np.ndarray:
        """A 3-D frame (``[H', W', 3]`` uint8) with the cursor and annotations drawn over it."""
        if snap.cursor is None and not snap.annotations and snap.ruler is None:
            return image  # the common case: no per-frame work (the bounds of splats are a percentile)
        extent = float(np.ptp(self.bounds, axis=0).max())
        return draw_3d_points(image, snap.camera, extent, snap.cursor, snap.annotations,
                              self.hidden_annotations(snap), ruler=snap.ruler)

    def note(self, snapshot: Snapshot) -> str:
        """One line about the last 3-D image of ``snapshot``'s renderer (``""`` if it has none), e.g.
        ``"Render-FM: 41,230 splats in 1.3 s"``, or that the transfer function hides the whole scan."""
        if snapshot.mode != "3d":
            return ""
        empty = nothing_to_draw(snapshot.scene)
        if empty is not None:
            return empty
        vol, coarse = snapshot.scene.volume, self.scene_3d(snapshot.scene).volume
        notes = [] if coarse is vol else ["3-D at " + "×".join(f"{s:.2g}" for s in coarse.spacing) + " mm"]
        if snapshot.renderer in self._renderers:
            notes.append(str(getattr(self._renderers[snapshot.renderer], "note", "") or ""))
        return " · ".join(n for n in notes if n)

    def progressive_renderer(self, snapshot: Snapshot) -> str | None:
        """The renderer that refines ``snapshot`` progressively while the camera rests: the still
        renderer when one is set, else the view's own renderer when it accumulates jittered frames
        (the ray-marchers and VTK converge), else ``None`` (slice views, splats)."""
        if snapshot.mode != "3d":
            return None
        if self.still_renderer is not None:
            return self.still_renderer
        return snapshot.renderer if hasattr(self.renderer(snapshot.renderer), "accumulate") else None

    def progressive(self, snapshot: Snapshot, per_pass: int, passes: int, *, abort=None):
        """Passes of :meth:`progressive_renderer` for ``snapshot``: an iterator of ``(image [H, W, 3]
        uint8, with the cursor and annotations, samples or frames so far)``; ``None`` when there is none."""
        name = self.progressive_renderer(snapshot)
        if name is None:
            return None
        passes = self.renderer(name).accumulate(self.scene_3d(snapshot.scene), snapshot.camera, per_pass, passes,
                                                abort=abort)
        return ((self._draw_points(to_uint8(image), snapshot), n) for image, n in passes)

    def close(self) -> None:
        """Release the renderers this session made (VTK windows, Mitsuba scenes, worker threads)."""
        for r in self._renderers.values():
            if hasattr(r, "close"):
                r.close()
        self._renderers.clear()


def _warn_unsuited(preset: str, volume: Volume | None) -> None:
    """Log that ``preset`` is of the other modality than ``volume``'s, if it is."""
    if (why := preset_unsuited(preset, volume)) is not None:
        log.warning("preset %s is %s: the picture will not show what it is made for", preset, why)


def _default_slice_channel(volume: Volume | None) -> int:
    """FLAIR when the volume has it (tumour and oedema stand out), else the first channel."""
    if volume is not None and "FLAIR" in volume.channels:
        return volume.channels.index("FLAIR")
    return 0


def _splat_classes(splats: Splats6D) -> tuple[LabelClass, ...]:
    """One class per label the splats carry (none without labels)."""
    if splats.labels is None:
        return ()
    return generic_classes(splats.labels.cpu().numpy())
