"""Slice-view controls of :class:`~rfmweb.session.session.RenderSession`: label overlay, grey
window, zoom and pan, the channel shown, and what lies under the pointer. Core code: no UI imports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InputError
from ..io.dicom import voi_window
from ..render.slices import WINDOW_PRESETS, ZOOM_RANGE, SliceGeometry, default_window, drag_window, \
    slice_geometry, window_range

if TYPE_CHECKING:
    from .session import Snapshot


#: The "auto" slice window of a CT without its own (a NIfTI, or DICOM without a VOI window): the
#: soft-tissue window (W 400 L 50 HU) a CT is first read in. A head CT's 1st-99th percentiles span air
#: to bone (W ~2,200): brain, muscle and fat all the same grey.
CT_AUTO_WINDOW = "abdomen"


def _fixed_auto_window(volume) -> tuple[str, tuple[float, float] | None]:
    """``(name, (lo, hi))`` of the "auto" window a one-channel volume gets whatever its voxels: a DICOM
    series' own (VOI), else a CT's :data:`CT_AUTO_WINDOW`; ``("", None)`` when it is the percentiles."""
    if volume is None or volume.data.shape[0] != 1:
        return "", None
    voi = voi_window(volume)
    if voi is not None:
        return "the series' own", voi
    if volume.modality == "CT":
        return "soft tissue", window_range(*WINDOW_PRESETS[CT_AUTO_WINDOW])
    return "", None


@dataclass(frozen=True)
class Probe:
    """The voxel under the pointer on a slice view: ``voxel`` indices, ``position`` world mm (RAS),
    ``value`` in image units (``unit``: ``"HU"`` for CT), ``label`` (None without labels) and the name
    of its class (``""`` for the background or an unnamed label)."""

    voxel: tuple[int, int, int]
    position: tuple[float, float, float]
    value: float
    unit: str
    label: int | None = None
    label_name: str = ""

    def text(self) -> str:
        """One status-line phrase, e.g. ``"(12.0, -3.5, 40.0) mm RAS · 45 HU · soft tissue"`` (RAS: a
        PACS shows LPS, the first two signs flipped; the class of a labelled voxel last)."""
        x, y, z = self.position
        value = f"{self.value:.0f} HU" if self.unit == "HU" else f"{self.value:.4g}"
        return f"({x:.1f}, {y:.1f}, {z:.1f}) mm RAS · {value}" + (f" · {self.label_name}" if self.label_name else "")



class SliceControls:
    """Slice-view state and controls (a mixin of :class:`~rfmweb.session.session.RenderSession`: it
    uses the session's lock, volume, mode and change notification)."""

    def set_overlay(self, opacity: float) -> None:
        """Opacity in [0, 1] of the label overlay on slice views (drawn while :attr:`label_overlay` is on)."""
        if not 0.0 <= float(opacity) <= 1.0:
            raise InputError(f"overlay opacity must lie in [0, 1], got {opacity}")
        with self._lock:
            self.overlay = float(opacity)
        self._changed("slice")

    def set_label_overlay(self, on: bool) -> None:
        """Draw the label map over slice views (coloured by class, at :attr:`overlay` opacity) or not."""
        with self._lock:
            if bool(on) == self.label_overlay:
                return
            self.label_overlay = bool(on)
        self._changed("slice")

    def set_window(self, width: float | None, level: float | None = None) -> None:
        """Slice grey window: width and level in image units (HU for CT); ``None``: the automatic one
        (a DICOM series' own, a CT's soft-tissue window, else the 1st-99th percentiles of the slice
        channel)."""
        window = None if width is None else window_range(float(width), float(level if level is not None else 0.0))
        with self._lock:
            self.window = window
        self._changed("slice")

    def set_window_preset(self, name: str) -> None:
        """A CT window by name (:data:`rfmweb.render.slices.WINDOW_PRESETS`: brain, subdural, bone, lung,
        abdomen)."""
        if name not in WINDOW_PRESETS:
            raise InputError(f"unknown window preset {name!r}; choose one of {', '.join(WINDOW_PRESETS)}")
        self.set_window(*WINDOW_PRESETS[name])

    def drag_window(self, dx_px: float, dy_px: float) -> None:
        """Window/level drag of ``(dx, dy)`` pixels (:func:`rfmweb.render.slices.drag_window`)."""
        with self._lock:
            lo, hi = self.window or self._slice_window(force=True)
            span = self._window_span()
        lo, hi = drag_window(lo, hi, dx_px, dy_px, span)
        self.set_window(hi - lo, (lo + hi) / 2)

    def zoom_slice(self, factor: float, about: tuple[float, float] | None = None) -> None:
        """Magnify slice views ``factor`` times (clamped to :data:`~rfmweb.render.slices.ZOOM_RANGE`)
        about pixel ``about`` (``(u right, v down)`` of the slice frame: what lies there stays there, as
        under the pointer in 3D Slicer or a PACS; the view's centre by default)."""
        if not factor > 0:
            raise InputError(f"zoom factor must be > 0, got {factor}")
        before = self.slice_geometry() if about is not None and self.mode != "3d" else None
        with self._lock:
            self.slice_zoom = float(np.clip(self.slice_zoom * factor, *ZOOM_RANGE))
            if before is not None:
                # a pixel u shows the slice at (u - width / 2) * mm_per_px + pan + const: keep that at `about`
                mm = before.mm_per_px * before.zoom / self.slice_zoom - before.mm_per_px
                du, dv = about[0] - before.width / 2, about[1] - before.height / 2
                self.slice_pan = (self.slice_pan[0] + du * mm, self.slice_pan[1] + dv * mm)
        self._changed("slice")

    def pan_slice(self, dx_px: float, dy_px: float) -> None:
        """Move slice views with a drag of ``(dx, dy)`` pixels (the image follows the pointer)."""
        if self.mode == "3d":
            return
        mm = self.slice_geometry().mm_per_px
        with self._lock:
            self.slice_pan = (self.slice_pan[0] + dx_px * mm, self.slice_pan[1] + dy_px * mm)
        self._changed("slice")

    @property
    def window_level(self) -> tuple[float, float] | None:
        """``(width, level)`` of the slice window shown (None in 3-D mode), image units."""
        window = self.window or self._slice_window()
        return None if window is None else (window[1] - window[0], (window[0] + window[1]) / 2)

    def _window_span(self) -> float:
        """Intensity range of the slice channel (image units): the scale of window drags."""
        data = self.volume.data[self.slice_channel]
        return float(data.max() - data.min())

    def set_slice_channel(self, channel: int | str) -> None:
        """Which image channel slice views show (an index or a name such as ``"FLAIR"``). Another
        channel starts on its own auto window (a window set on one MR sequence means nothing on another)."""
        index = channel_index(self.volume, channel)
        with self._lock:
            if index == self.slice_channel:
                return
            self.slice_channel = index
            self.window = None
        self._changed("slice")

    def slice_geometry(self, snapshot: Snapshot | None = None) -> SliceGeometry:
        """Where the pixels of the current (or a given) slice frame come from (for strokes:
        :meth:`SliceGeometry.to_voxel` maps frame pixels to voxels)."""
        snap = snapshot or self.snapshot()
        if snap.mode == "3d":
            raise InputError("the view shows the 3-D render, not a slice")
        return slice_geometry(snap.scene.volume, snap.mode, snap.slice_index, snap.camera.width, snap.camera.height,
                              zoom=snap.slice_zoom, pan_mm=snap.slice_pan)

    def probe(self, u: float, v: float) -> Probe | None:
        """What lies under pixel ``(u right, v down)`` of the slice frame: voxel, position (mm, world
        RAS) and intensity; ``None`` in 3-D mode or off the volume."""
        snap = self.snapshot()
        if snap.mode == "3d" or snap.scene.volume is None:
            return None
        return _probe_voxel(snap, self.slice_geometry(snap).to_voxel([u], [v])[0])

    def probe_point(self, position) -> Probe | None:
        """What lies at world point ``position`` (mm, RAS; e.g. the cursor): the nearest voxel, its
        position and intensity (of the slices' channel); ``None`` off the volume or without one."""
        snap = self.snapshot()
        if snap.scene.volume is None:
            return None
        return _probe_voxel(snap, np.linalg.solve(snap.scene.volume.affine, np.append(position, 1.0))[:3])

    def set_slice_view(self, zoom: float, pan_mm: tuple[float, float]) -> None:
        """Slice magnification (within :data:`~rfmweb.render.slices.ZOOM_RANGE`) and pan (mm, screen
        right and down) at once (a restored scene)."""
        if not ZOOM_RANGE[0] <= float(zoom) <= ZOOM_RANGE[1]:
            raise InputError(f"slice zoom must lie in {ZOOM_RANGE}, got {zoom}")
        with self._lock:
            self.slice_zoom, self.slice_pan = float(zoom), (float(pan_mm[0]), float(pan_mm[1]))
        self._changed("slice")

    def auto_window_label(self) -> str:
        """What the slices' "auto" window is, as the window menu names it: e.g. ``"auto: soft tissue
        (W400 L50)"`` on a CT without its own window, ``"auto: 1st-99th percentile"`` on an MRI."""
        name, window = _fixed_auto_window(self.volume)
        if window is None:
            return "auto: 1st-99th percentile"
        lo, hi = window
        return f"auto: {name} (W{hi - lo:g} L{(lo + hi) / 2:g})"

    def _slice_window(self, force: bool = False) -> tuple[float, float] | None:
        """The slice channel's default window ("auto"): a DICOM series' own (its header's VOI window),
        else a CT's :data:`CT_AUTO_WINDOW`, else the 1st-99th percentiles; computed once per image
        array and channel (not per frame)."""
        if (self.mode == "3d" and not force) or self.volume is None:
            return None
        data, channel = self.volume.data, self.slice_channel
        cached = self._window_cache
        if cached is None or cached[0] is not data or cached[1] != channel:
            window = _fixed_auto_window(self.volume)[1] or default_window(data[channel])
            cached = self._window_cache = (data, channel, window)
        return cached[2]


def channel_index(volume, channel: int | str) -> int:
    """The index of image channel ``channel`` (an index or a name such as ``"FLAIR"``) of ``volume``.

    Raises:
        InputError: no volume, an unknown name or an index out of range.
    """
    if volume is None:
        raise InputError("slice views need a volume")
    names = volume.channels
    if isinstance(channel, str):
        if channel not in names:
            raise InputError(f"no channel {channel!r}; channels are {names}")
        channel = names.index(channel)
    index = int(channel)
    if not 0 <= index < len(names):
        raise InputError(f"channel must lie in 0..{len(names) - 1}, got {channel}")
    return index


def _probe_voxel(snap, ijk) -> Probe | None:
    """The :class:`Probe` of the voxel nearest fractional index ``ijk`` [3] of ``snap``'s volume."""
    vol = snap.scene.volume
    ijk = np.rint(np.asarray(ijk, dtype=np.float64)).astype(int)
    if not all(0 <= c < n for c, n in zip(ijk, vol.shape)):
        return None
    mm = (vol.affine @ np.append(ijk, 1.0))[:3]
    value = float(vol.data[snap.slice_channel][tuple(ijk)])
    label = int(vol.labels[tuple(ijk)]) if vol.labels is not None else None
    name = next((c.name for c in vol.classes if c.index == label), "") if label else ""
    return Probe(tuple(int(c) for c in ijk), tuple(float(c) for c in mm), value,
                 "HU" if vol.modality == "CT" else "", label, name)
