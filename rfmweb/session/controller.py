"""One controller for every front end: typed control messages -> session changes.

The trame app (:mod:`rfmweb.app.logic`) and the Jupyter widget (:mod:`rfmweb.widgets`) are thin
adapters: they turn what their page sends (trame state changes and trame-rca pointer events; JSON
intents of ``viewer.js``) into the dataclasses of :mod:`rfmweb.session.messages` and hand them to
:meth:`ViewController.handle`. Each control is written here once, so the same messages give the same
session state, and the same frames, whichever front end sent them. Core code: no UI imports.

Frame flow control (acknowledgements, first frames, screenshots) stays with the front ends: it is
about their transport, not about what a view shows.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Sequence

from ..errors import InputError, brief
from . import messages as m
from ..render.slices import WINDOW_PRESETS
from .interaction import WheelSteps, apply_drag, apply_wheel, key_gesture
from .scene_file import apply_scene, parse_scene
from .segmentation import CORRECTION_LABELS, SegmentationViews
from .session import RenderSession

log = logging.getLogger(__name__)

#: Messages that change how things look rather than where one looks; with ``shared_styles`` they
#: apply to every view (the trame app's single drawer; the three segmentation views).
STYLE_MESSAGES = (m.SetClass, m.SetGroup, m.SetClassColors, m.SetCinematic, m.SetLabelOverlay, m.SetWindow,
                  m.SetSliceChannel)

StatusCallback = Callable[[int, bool, str], None]
#: How a readout of the crosshair cursor begins (the others read the voxel under the pointer).
CURSOR = "cursor "
#: The readout of a click on nothing (empty space of the 3-D view, off the slice).
NOTHING_THERE = "nothing under the pointer"
#: Correction brush radius at start, mm (a few voxels of a 1 mm BraTS grid).
DEFAULT_BRUSH_MM = 3.0


class ViewController:
    """Carries out control messages on a list of views.

    Args:
        sessions: the views' sessions (``msg.view`` indexes them).
        segmentation: the segmentation views shown (enables strokes, marks, apply and undo; their
            slices show the label overlay, the point of those views).
        shared_styles: class, overlay, window and cinematic messages apply to every view.
        on_status: ``(view, busy, message)`` for correction progress and results (any thread).
        on_probe: ``(view, text)`` when the readout under the pointer changes (``""``: nothing).

    Example:
        >>> c = ViewController([session])                                          # doctest: +SKIP
        >>> c.handle(m.SetMode(0, "axial")); c.handle(m.SetWindow(0, preset="bone"))  # doctest: +SKIP
    """

    def __init__(self, sessions: Sequence[RenderSession], *, segmentation: SegmentationViews | None = None,
                 shared_styles: bool = False, on_status: StatusCallback | None = None,
                 on_probe: Callable[[int, str], None] | None = None) -> None:
        self.sessions = list(sessions)
        self.segmentation = segmentation
        self.shared_styles = shared_styles
        self.on_status = on_status or (lambda _view, _busy, _message: None)
        self.on_probe = on_probe or (lambda _view, _text: None)
        self.pixel_ratio = [1.0] * len(self.sessions)  # device pixels per CSS pixel, per view
        self.probes = [""] * len(self.sessions)
        self._pointer: list[tuple[float, float] | None] = [None] * len(self.sessions)  # last Probe position
        self.brush_mm = DEFAULT_BRUSH_MM  # radius of strokes sent without one (m.SetBrush)
        self._lock = threading.Lock()
        # corrections (INR fine-tuning) run here, one at a time, never on a UI thread
        self._jobs = ThreadPoolExecutor(1, thread_name_prefix="rfmweb-correct")
        self._wheel_steps = [WheelSteps() for _ in self.sessions]
        # a readout follows what it reads: the cursor when it moves (a slice stepped in another
        # view), the voxel under a resting pointer when the slice or plane under it changes
        self._unsubscribe = [s.subscribe(lambda source, what, i=i: self._follow(i, what))
                             for i, s in enumerate(self.sessions)]
        if segmentation is not None:
            for s in self.sessions:
                s.set_label_overlay(True)

    # -- entry point ------------------------------------------------------------------------------
    def handle(self, msg: m.ClientMessage) -> None:
        """Carry out one message; raises :class:`~rfmweb.errors.InputError` for a bad one (the
        front end logs it and tells its page)."""
        i = self._check_view(msg.view)
        handler = _HANDLERS.get(type(msg))
        if handler is None:
            raise InputError(f"{msg.tag()!r} messages are the front end's to handle, not the controller's")
        targets = self.sessions if self.shared_styles and isinstance(msg, STYLE_MESSAGES) else [self.sessions[i]]
        handler(self, msg, targets)

    def set_pixel_ratio(self, view: int, ratio: float) -> None:
        """Device pixels per CSS pixel of ``view`` (drags arrive in CSS pixels, images are in device pixels)."""
        self.pixel_ratio[self._check_view(view)] = float(ratio)

    def wait(self, timeout: float = 600.0) -> None:
        """Block until the corrections submitted so far have run (for scripts and tests)."""
        self._jobs.submit(lambda: None).result(timeout=timeout)

    def close(self) -> None:
        for unsubscribe in self._unsubscribe:
            unsubscribe()
        self._jobs.shutdown(wait=False, cancel_futures=True)

    def _check_view(self, view: int) -> int:
        if not 0 <= int(view) < len(self.sessions):
            raise InputError(f"view must lie in 0..{len(self.sessions) - 1}, got {view}")
        return int(view)

    # -- controls -------------------------------------------------------------------------------
    def _drag(self, msg: m.Drag, targets) -> None:
        view = targets[0]
        action = apply_drag(view, msg.button, msg.dx, msg.dy, shift=msg.shift, ctrl=msg.ctrl,
                            pixel_ratio=self.pixel_ratio[msg.view])
        if action == "window" and self.shared_styles:  # a window/level drag is a style: every view takes it
            width, level = view.window_level
            for s in self.sessions:
                if s is not view:
                    s.set_window(width, level)

    def _wheel(self, msg: m.Wheel, targets) -> None:
        steps = self._wheel_steps[msg.view].steps(msg.dy)
        for s in targets:
            apply_wheel(s, msg.dy, ctrl=msg.ctrl, steps=steps, about=self._pointer[msg.view])

    def _key(self, msg: m.Key, targets) -> None:
        """A key on a focused view: the drag, wheel or reset it stands for (:func:`key_gesture`)."""
        gesture = key_gesture(msg.key, targets[0].mode)
        if gesture is None:
            return
        kind, args = gesture
        if kind == "drag":
            self._drag(m.Drag(msg.view, "left", *args), targets)
        elif kind == "wheel":
            self._wheel(m.Wheel(msg.view, *args), targets)
        else:
            targets[0].reset_camera()

    def _resize(self, msg: m.Resize, targets) -> None:
        self.set_pixel_ratio(msg.view, msg.ratio)
        for s in targets:
            s.resize(msg.width, msg.height)

    def _probe(self, msg: m.Probe, targets) -> None:
        self._pointer[msg.view] = (msg.x, msg.y)
        probe = targets[0].probe(msg.x, msg.y)
        self._show(msg.view, probe.text() if probe is not None else "")

    def _show(self, view: int, text: str) -> None:
        """Set ``view``'s readout to ``text``; tells the front end when it changed."""
        with self._lock:
            changed = text != self.probes[view]
            self.probes[view] = text
        if changed:
            self.on_probe(view, text)

    def _follow(self, view: int, what: str) -> None:
        """A change of ``view``'s session: a cursor readout follows the cursor (stepping a slice moves it
        in every view that shares it) and what lies there (another MR sequence: it read the old one's
        value; a corrected label); a readout under a resting pointer reads the new slice or plane."""
        session, text = self.sessions[view], self.probes[view]
        if what in ("cursor", "slice", "scene") and text.startswith(CURSOR):
            self._show(view, cursor_readout(session) if session.cursor is not None else "")
        elif what == "slice" and text and not text.startswith(CURSOR) and self._pointer[view] is not None:
            self._probe(m.Probe(view, *self._pointer[view]), [session])

    def _window(self, msg: m.SetWindow, targets) -> None:
        for s in targets:
            if msg.preset == "auto":
                s.set_window(None)
            elif msg.preset is not None:
                s.set_window_preset(msg.preset)
            else:
                s.set_window(msg.width, msg.level)

    def _overlay(self, msg: m.SetLabelOverlay, targets) -> None:
        for s in targets:
            if msg.opacity is not None:
                s.set_overlay(msg.opacity)
            s.set_label_overlay(msg.on)

    # -- crosshair, annotations, scenes ----------------------------------------------------------
    def _point(self, msg: m.PointAt, targets) -> None:
        """Slice views: at once; 3-D views: the surface pick marches a ray, on the job thread."""
        if targets[0].mode == "3d":
            self._jobs.submit(self._run_point, msg, targets[0])
        else:
            self._run_point(msg, targets[0])

    def _run_point(self, msg: m.PointAt, session: RenderSession) -> None:
        """Place the cursor; the readout of every view that shares it says where it is and what is
        there (e.g. ``"cursor (12.0, -3.5, 40.0) mm RAS · 45 HU"``), the clicked view's also when nothing is."""
        views = [msg.view]
        try:
            point = session.point_at(msg.x, msg.y)
            if point is None:
                text = NOTHING_THERE
            else:
                session.set_cursor(point)
                text = cursor_readout(session)
                views = [i for i, s in enumerate(self.sessions) if s.cursor == session.cursor]
        except Exception as exc:  # a job thread has nobody to raise to
            log.warning("placing the cursor failed: %s", brief(exc))
            text = f"placing the cursor failed: {exc}"
        for i in views:
            self._show(i, text)

    def _unannotate(self, msg: m.RemoveAnnotation, targets) -> None:
        for s in targets:
            s.remove_annotation(msg.index)
            if msg.index is None:
                s.set_cursor(None)

    def load_scene(self, data: dict, where: str | None = "the scene") -> None:
        """A scene onto every view: the first takes all of it; the others keep their own renderer and
        preset (a comparison stays one) and take the rest (classes, camera, slices, window,
        annotations); a pinned plane view keeps its plane (:meth:`RenderSession.pin_view_mode`)."""
        rest = {k: v for k, v in data.items() if k not in ("renderer", "preset", "transfer_function")}
        for i, session in enumerate(self.sessions):
            apply_scene(session, data if i == 0 else rest, where)

    def _load_scene(self, msg: m.LoadScene, targets) -> None:
        data = parse_scene(msg.text, "the uploaded scene")
        for s in targets:
            apply_scene(s, data, "the uploaded scene")

    # -- corrections (segmentation views) ---------------------------------------------------------
    def _brush(self, msg: m.SetBrush, _targets) -> None:
        self.brush_mm = float(msg.radius_mm)

    def _stroke_radius_px(self, msg: m.Stroke) -> float:
        """A stroke's radius in device pixels of its view: its own, or the brush (mm) at the view's scale."""
        if msg.radius is not None:
            return msg.radius
        return self.brush_mm / self.sessions[msg.view].slice_geometry().mm_per_px

    def _correct(self, msg: m.ClientMessage, _targets) -> None:
        if self.segmentation is None:
            raise InputError("these views are not segmentation views: corrections need them "
                             "(Compare.segmentations, or rfmweb serve CASE --segment)")
        self._jobs.submit(self._run_correction, msg)

    def _run_correction(self, msg: m.ClientMessage) -> None:
        """A correction message, on the correction thread; the outcome goes to ``on_status``."""
        seg, i = self.segmentation, msg.view
        try:
            if isinstance(msg, m.Stroke):
                if self.sessions[i].mode == "3d":
                    raise InputError("strokes are painted on slice views; click to mark the 3-D view")
                n = seg.mark_pixels(i, msg.points, msg.label, self._stroke_radius_px(msg))
                text = f"marked {n} voxels as {CORRECTION_LABELS[msg.label]}"
            elif isinstance(msg, m.Mark):
                hit = seg.mark_click(i, msg.x, msg.y, msg.label)
                text = NOTHING_THERE if hit is None else \
                    f"marked voxel {tuple(int(c) for c in hit)} as {CORRECTION_LABELS[msg.label]}"
            elif isinstance(msg, m.ClearMarks):
                seg.clear_marks()
                text = "pending marks cleared"
            elif isinstance(msg, m.ApplyCorrection):
                seg.apply_correction()
                text = seg.last_correction          # how it ended, as the segmentation views word it
            else:
                seg.undo_correction()
                text = seg.last_correction
        except Exception as exc:
            log.warning("correction failed: %s", brief(exc))
            text = f"correction failed: {exc}"
        self.on_status(i, False, text)


def window_readout(session: RenderSession) -> tuple[str, str]:
    """``(preset, text)`` of a session's slice window, as menus and status lines show it: ``"auto"``,
    a :data:`~rfmweb.render.slices.WINDOW_PRESETS` name or ``"custom"`` (dragged); and e.g.
    ``"W 400 L 50 HU"`` (``""`` in 3-D)."""
    wl = session.window_level
    if wl is None:
        return ("auto" if session.window is None else "custom"), ""
    unit = " HU" if session.volume.modality == "CT" else ""
    text = f"W {wl[0]:.4g} L {wl[1]:.4g}{unit}"
    if session.window is None:
        return "auto", text
    name = next((k for k, (w, lv) in WINDOW_PRESETS.items() if abs(wl[0] - w) < 1e-6 and abs(wl[1] - lv) < 1e-6),
                "custom")
    return name, text


def _each(method: Callable[[RenderSession, m.ClientMessage], None]):
    """A handler applying ``method(session, msg)`` to every target session."""
    def handler(_controller: ViewController, msg, targets) -> None:
        for s in targets:
            method(s, msg)
    return handler


_HANDLERS: dict[type, Callable] = {
    m.Drag: ViewController._drag,
    m.Wheel: ViewController._wheel,
    m.Key: ViewController._key,
    m.Probe: ViewController._probe,
    m.Resize: ViewController._resize,
    m.SetPreset: _each(lambda s, msg: s.set_preset(msg.name) if msg.name != s.preset_name else None),
    m.SetRenderer: _each(lambda s, msg: s.set_renderer(msg.name) if msg.name != s.renderer_name else None),
    m.SetClass: _each(lambda s, msg: s.set_class(msg.index, visible=msg.visible, opacity=msg.opacity,
                                                 color=msg.rgb())),
    m.SetGroup: _each(lambda s, msg: s.set_group_visible(msg.group, msg.visible)),
    m.SetClassColors: _each(lambda s, msg: s.set_class_colors(msg.on)),
    m.SetCinematic: _each(lambda s, msg: s.set_still_renderer("pathtrace" if msg.on else None)),
    m.ResetCamera: _each(lambda s, _msg: s.reset_camera()),
    m.SetMode: _each(lambda s, msg: s.set_view_mode(msg.mode, msg.index)),
    m.SetSlice: _each(lambda s, msg: s.set_slice(msg.index) if msg.index != s.slice_index else None),
    m.SetSliceChannel: _each(lambda s, msg: s.set_slice_channel(msg.channel)),
    m.SetLabelOverlay: ViewController._overlay,
    m.SetWindow: ViewController._window,
    m.Stroke: ViewController._correct,
    m.Mark: ViewController._correct,
    m.ApplyCorrection: ViewController._correct,
    m.UndoCorrection: ViewController._correct,
    m.ClearMarks: ViewController._correct,
    m.SetBrush: ViewController._brush,
    m.PointAt: ViewController._point,
    m.Annotate: _each(lambda s, msg: s.add_annotation(msg.text)),
    m.Measure: _each(lambda s, msg: s.measure_pixels(*msg.points) if msg.points else s.measure(None)),
    m.RemoveAnnotation: ViewController._unannotate,
    m.LoadScene: ViewController._load_scene,
}


def cursor_readout(session: RenderSession) -> str:
    """The readout of ``session``'s cursor (set): ``"cursor (12.0, -3.5, 40.0) mm RAS · 45 HU"``: the
    cursor's own position (a 3-D click's surface point lies between voxel centres; the sidebar shows
    it too), with the value and structure of its nearest voxel."""
    point = session.cursor
    probe = session.probe_point(point)
    if probe is None:
        return CURSOR + "({:.1f}, {:.1f}, {:.1f}) mm".format(*point)
    return CURSOR + dataclasses.replace(probe, position=tuple(float(c) for c in point)).text()


def shown_readout(session: RenderSession, probe: str) -> str:
    """What a view's readout line shows, given its last readout ``probe``: a slice view's as it is
    (under the pointer, or the cursor's); on the 3-D view what a click found nothing at, else the
    cursor's (position, HU, structure: the slices' words, whether a click or Python placed it), else
    nothing (a slice's hover readout does not linger there)."""
    if session.mode != "3d":
        return probe
    if probe == NOTHING_THERE:
        return probe
    return cursor_readout(session) if session.cursor is not None and session.volume is not None else ""
