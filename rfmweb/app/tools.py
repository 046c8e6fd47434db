"""The pointer tools of the web app's views: the ruler (any slice view) and the correction tool
(segmentation views). A tool on takes the views' left drags (:attr:`~rfmweb.app.frames.FrameAdapter.painter`);
one tool at a time. A mixin of :class:`~rfmweb.app.logic.AppController` (its sessions, views, controller
and state)."""

from __future__ import annotations

import asyncio
import logging

from ..errors import InputError, brief
from ..session import messages as m
from .frames import guarded

log = logging.getLogger(__name__)


class SliceTools:
    """The ruler and the correction tool (see the module docstring)."""

    # -- the ruler ------------------------------------------------------------------------------------
    @guarded
    def set_measure(self, on: bool) -> None:
        """The ruler tool: a left drag on a slice view measures from where it starts to where it ends
        (clicks still place the crosshair; 3-D views still orbit); off, the rulers go."""
        if on and self.typed.data.tool:
            with self.state:
                self.typed.data.tool = False            # one tool at a time: the correction tool goes off
        self._set_painter(self._measure if on else None)
        if not on:
            for i, session in enumerate(self.sessions.values()):
                if session.ruler is not None:
                    self.control.handle(m.Measure(i, []))

    @guarded
    def _measure(self, view: str, points: list, click: bool) -> None:
        if click:
            self.control.handle(m.PointAt(self.index[view], float(points[0][0]), float(points[0][1])))
        else:
            self.control.handle(m.Measure(self.index[view], [[float(c) for c in points[0]],
                                                             [float(c) for c in points[-1]]]))

    def _set_painter(self, painter) -> None:
        """Who gets left drags (and clicks) of the views' pointer: a tool, or ``None`` (orbit, pan...)."""
        for view in self.views.values():
            view.painter = painter
            view.painter_3d = painter == self._paint        # the ruler measures on slices alone

    # -- corrections (segmentation views) -------------------------------------------------------------
    @guarded
    def set_tool(self, on: bool) -> None:
        """The correction tool: left drags paint strokes on slice views, clicks mark the 3-D view."""
        if self.segmentation is None:  # trame also calls this with the initial value (off) when ready
            if on:
                raise InputError("corrections need the segmentation views (rfmweb serve CASE --segment)")
            return
        if on and self.typed.data.measure:
            with self.state:
                self.typed.data.measure = False         # one tool at a time: the ruler goes off
        self._set_painter(self._paint if on else None)

    @guarded
    def set_brush(self, radius_mm) -> None:
        """Correction brush radius, mm (every view)."""
        self.control.handle(m.SetBrush(0, float(radius_mm)))

    @guarded
    def _paint(self, view: str, points: list, click: bool) -> None:
        """A stroke (slice view, the brush's radius) or click (3-D view) of the correction tool."""
        i, label = self.index[view], int(self.typed.data.correct_label)
        if self.sessions[view].mode != "3d":
            self.control.handle(m.Stroke(i, [[float(u), float(v)] for u, v in points], label))
        elif click:
            self.control.handle(m.Mark(i, float(points[0][0]), float(points[0][1]), label))

    @guarded
    def _correct(self, action: str) -> None:
        """Apply (fine-tune the INR on the marks), undo, or clear the marks, on the correction thread."""
        messages = {"apply": m.ApplyCorrection, "undo": m.UndoCorrection, "clear": m.ClearMarks}
        self.control.handle(messages[action](1))

    async def segmentation_file(self, view=2, fmt="nii.gz", *_args) -> bytes | None:
        """A segmentation view's labels (default: the denoised INR's, corrections included) as
        ``.nii.gz`` bytes, or (``fmt="dcm"``) a zip of the DICOM SEG and its image series, for the
        page to download (written on a worker thread)."""
        try:
            if self.segmentation is None:
                raise InputError("only the segmentation views have labels to save")
            loop = asyncio.get_event_loop()
            return await loop.run_in_executor(None, self.segmentation.segmentation_file, int(view), str(fmt))
        except Exception as exc:
            log.warning("saving the segmentation failed: %s", brief(exc))
            return None

    def _from_control(self, index: int, _busy: bool, message: str) -> None:
        """A correction's outcome (correction thread): to the view's status line, on the loop."""
        name = self._names[index]
        self.views[name]._call_on_loop(self._after_correction, name, message)

    def _after_correction(self, view: str, message: str) -> None:
        with self.state:
            self._view_state(view).status = message or self._view_state(view).status
            self.sync_state()
