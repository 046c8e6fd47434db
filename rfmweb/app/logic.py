"""Controllers of the web app: typed UI state <-> render sessions (frames <-> browsers: :mod:`.frames`).

Sizes and pointer events come in through trame-rca's RPCs as typed messages (:mod:`rfmweb.session.messages`)
for the :class:`~rfmweb.session.controller.ViewController` the Jupyter widget shares. Frames of a
:class:`~rfmweb.session.FrameStream` go to every client on trame-rca's stream topic; the page script
(:data:`rfmweb.app.ui.CLIENT_SCRIPT`) shows and acknowledges each (two unacknowledged per view at most).

:class:`AppController` owns the sessions (view A, and view B for the compare layout, cameras linked;
view B starts on another renderer or preset than view A (:func:`~rfmweb.app.layout.compare_choice`: Render-FM on a CT
with a checkpoint, else VTK | ray-marcher), and "Ray-marcher | Render-FM" sets the pair in one click;
with ``--segment`` the three views ground truth | raw INR | denoised INR of a
:class:`~rfmweb.session.SegmentationViews`, cameras and slices linked, with the correction tools)
and keeps :class:`~rfmweb.app.state.AppState` in step with them: every UI change becomes a message
for the controller (each control is written there once). Anything a browser sends is validated; a
bad message is logged and the state is put back, it never raises into trame.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import time
from typing import Callable

from trame_server.utils.typed_state import TypedState

from ..backend import marcher_renderer
from ..errors import InputError, brief
from ..extras import feature_status
from ..render.registry import all_renderer_names, renderer_label, renderer_status
from ..render.slices import WINDOW_PRESETS
from ..session import VIEW_MODES, Frame, RenderSession, SegmentationViews, link_cameras, link_points, \
    link_view_modes
from ..session import messages as m
from ..session.controller import ViewController, shown_readout, window_readout
from ..session.stream import shows_other_renderer
from ..session.segmentation import CORRECTION_LABELS
from ..transfer import PRESETS, preset_unsuited
from ..volume import Volume
from ..session.difference import DifferenceSession
from ..session.encode import side_by_side
from ..session.scene_file import parse_scene, scene_to_dict
from .frames import FrameAdapter, guarded
from .layout import apply_layout, check_layout, compare_choice, layout_of
from .tools import SliceTools
from .state import (PLANE_VIEWS, VIEW_A, VIEW_B, VIEW_C, VIEW_D, VIEWS, AppState, Choice, class_rows, group_rows,
                    view_title)

log = logging.getLogger(__name__)

class AppController(SliceTools):
    """The app's logic: one or two views of ``volume`` (or the three segmentation views) and the
    state the layout shows.

    Args:
        server: the trame server (its state, controller and triggers are used).
        volume: what to show (``None`` for splats alone; ignored with ``segmentation``).
        splats: 6D splats of the same anatomy, for the ``splats`` renderer.
        renderer, preset: initial choices for both views (defaults: the session's).
        segmentation: show its ground truth | raw INR | denoised INR views side by side instead.
    """

    def __init__(self, server, volume: Volume | None, *, splats=None, renderer: str | None = None,
                 preset: str | None = None, segmentation: SegmentationViews | None = None) -> None:
        self.server = server
        self.state = server.state
        self.typed = TypedState(self.state, AppState)
        self.names = self.typed.name
        self.segmentation = segmentation
        if segmentation is not None:
            volume = segmentation.volume
            self.sessions = dict(zip(VIEWS, segmentation.sessions))
        else:
            a = RenderSession(volume, splats=splats, renderer=renderer, preset=preset)
            b_renderer, b_preset = compare_choice(volume, a.renderer_name, a.preset_name)
            self.sessions = {VIEW_A: a, VIEW_B: RenderSession(volume, splats=splats, renderer=b_renderer,
                                                              preset=b_preset)}
            for name, axis in (PLANE_VIEWS.items() if volume is not None else ()):  # four-up: streamed when shown
                self.sessions[name] = RenderSession(volume, renderer=a.renderer_name, preset=a.preset_name)
                self.sessions[name].pin_view_mode(axis)
        self.index = {name: i for i, name in enumerate(self.sessions)}
        self._names = list(self.sessions)
        #: Every control goes through here; class, overlay and window changes apply to all views.
        self.control = ViewController(list(self.sessions.values()), segmentation=segmentation, shared_styles=True,
                                      on_status=self._from_control, on_probe=self._on_probe)
        self.views = {name: FrameAdapter(name, i, self.control, on_frame=functools.partial(self._on_frame, name),
                                         on_status=functools.partial(self._on_status, name))
                      for i, name in enumerate(self.sessions)}
        self._unlink: Callable[[], None] | None = None
        self._mode_before_four = "3d"  # the main view's mode before Four views: back to it after
        self._last_info = dict.fromkeys(VIEWS, 0.0)
        self._shown = dict.fromkeys(VIEWS, "")  # the renderer of each view's last frame
        self._held: dict[str, Frame] = {}  # an interactive frame whose status line waits its turn
        # compared / segmentation views: one mode and slice (cameras link side by side); four-up planes: their own
        paired = [s for name, s in self.sessions.items() if name not in PLANE_VIEWS]
        self._unlink_modes = link_view_modes(paired) if volume is not None else None
        self._unlink_points = link_points(list(self.sessions.values()))  # crosshair and annotations
        # compare: a third pane may show |left - right| (SSIM / PSNR); its pointer events steer the left view
        self.difference = None
        if segmentation is None:
            self.difference = DifferenceSession(self.sessions[VIEW_A], self.sessions[VIEW_B])
            self.views[VIEW_C] = FrameAdapter(VIEW_C, 0, self.control, on_frame=functools.partial(self._on_frame, VIEW_C),
                                              on_status=functools.partial(self._on_status, VIEW_C))
        self.views[VIEW_A].attach(self.sessions[VIEW_A])
        if segmentation is not None:
            self._unlink = link_cameras(list(self.sessions.values()))
            for name in (VIEW_B, VIEW_C):
                self.views[name].attach(self.sessions[name])
            segmentation.on_status = self._from_segmentation
        # slices stepped by the wheel in a view: the slider follows
        self._unsubscribe = self.sessions[VIEW_A].subscribe(
            lambda _s, what: self.views[VIEW_A]._call_on_loop(self._sync_now)
            if what in ("slice", "cursor", "annotations") else None)

        d = self.typed.data
        d.title = self.sessions[VIEW_A].name or "rfmweb"
        self.state.trame__title = f"{d.title} · rfmweb" if d.title != "rfmweb" else d.title   # the tab's title
        # the renderers that can draw what was loaded; those missing a package show disabled, saying which
        status = renderer_status(volume)
        fits = [n for n in all_renderer_names() if ((splats is not None) if n == "splats" else (volume is not None))]
        usable = [n for n in fits if status[n] is None]
        d.renderers = [Choice(renderer_label(n, note=True), n, status[n] is not None, status[n] or "") for n in fits]
        d.presets = [Choice(n, n, why is not None, why or "") for n in PRESETS
                     for why in [preset_unsuited(n, volume)]]
        d.modes = [Choice(m if m != "3d" else "3D", m) for m in VIEW_MODES] if volume is not None else []
        shown = self.sessions[VIEW_A].volume
        d.channels = [Choice(c, str(i)) for i, c in enumerate(shown.channels)] if shown is not None else []
        d.correct_labels = [Choice(f"{name} (erase)" if i == 0 else name, str(i))
                            for i, name in CORRECTION_LABELS.items()]
        d.segment = segmentation is not None
        d.seg_files = segmentation.download_names() if segmentation is not None else {}
        d.compare = segmentation is not None  # the segmentation views are always side by side
        auto = Choice(self.sessions[VIEW_A].auto_window_label(), "auto")
        d.window_presets = [auto] + [Choice(f"{k} (W{w:g} L{lv:g})", k) for k, (w, lv) in WINDOW_PRESETS.items()]
        d.can_renderfm = segmentation is None and "renderfm" in usable
        self.sync_state()

        n = self.names
        changes = {n.compare: self.set_compare, n.class_colors: self.set_class_colors, n.cinematic: self.set_cinematic,
                   n.view_mode: self.set_view_mode, n.slice_index: self.set_slice, n.tool: self.set_tool,
                   n.measure: self.set_measure,
                   n.slice_channel: self.set_slice_channel,
                   n.label_overlay: self.set_label_overlay, n.overlay_opacity: self.set_overlay_opacity,
                   n.window_preset: self.set_window_preset, n.brush_mm: self.set_brush,
                   n.difference: self.set_difference, n.linked: self.set_linked, n.four_up: self.set_four_up,
                   n.classes: self.set_class_rows}
        for name in self.sessions:
            changes[getattr(n, name).renderer] = functools.partial(self.set_renderer, name)
            changes[getattr(n, name).preset] = functools.partial(self.set_preset, name)
        self.typed.bind_changes(changes)
        ctrl = server.controller
        ctrl.on_server_ready.add(self._on_server_ready)
        ctrl.on_server_exited.add(self.close)
        ctrl.rfm_reset_view = self.reset_view
        ctrl.rfm_compare_renderfm = self.compare_renderfm
        ctrl.rfm_class_visible = self.set_class_visible
        ctrl.rfm_group_visible = self.set_group_visible
        ctrl.rfm_apply_correction = functools.partial(self._correct, "apply")
        ctrl.rfm_undo_correction = functools.partial(self._correct, "undo")
        ctrl.rfm_clear_marks = functools.partial(self._correct, "clear")
        ctrl.rfm_annotate = self.annotate
        ctrl.rfm_unannotate = self.unannotate
        server.trigger("rfm_screenshot")(self.screenshot)
        server.trigger("rfm_scene")(self.scene_text)
        server.trigger("rfm_load_scene")(self.load_scene)
        server.trigger("rfm_segmentation")(self.segmentation_file)

    # -- wiring -----------------------------------------------------------------------------------
    def _on_server_ready(self, **_) -> None:
        loop = asyncio.get_event_loop()
        for view in self.views.values():
            view.loop = loop
            self.server.controller.rc_area_register(view)
        with self.state:
            self.sync_state()  # the segmentation may have finished before the loop ran

    def sync_state(self) -> None:
        """Rebuild the UI state from the sessions (no change callbacks fire)."""
        a = self.sessions[VIEW_A]
        d = self.typed.data
        seg = self.segmentation
        differ = self.difference is not None and self.views[VIEW_C].stream is not None
        compared = seg is None and self.views[VIEW_B].stream is not None
        with self.typed.suppress_change_listeners():
            for i, (name, session) in enumerate(self.sessions.items()):
                vs = self._view_state(name)
                vs.renderer, vs.preset = session.renderer_name, session.preset_name
                vs.title = seg.titles[i] if seg is not None else ""
                if compared and name in (VIEW_A, VIEW_B):  # side by side, each view says what it shows
                    vs.title = view_title(session)
                vs.subtitle = seg.caption(i) if seg is not None else ""
                vs.probe = shown_readout(session, self.control.probes[i])
            # compare / difference are written by their setters: a sync racing a click would turn them back
            if differ:
                d.view_c.title = "|left − right|"
            d.view_mode, d.slice_index, d.slice_channel = a.mode, a.slice_index, str(a.slice_channel)
            d.slice_max = max(0, a.slice_count() - 1) if a.volume is not None else 0
            d.marks = seg.n_marks if seg is not None else 0
            d.can_undo = seg is not None and seg.can_undo
            d.correcting = seg is not None and seg.correcting
            d.correction_note = seg.last_correction if seg is not None else ""
            d.brush_mm = self.control.brush_mm
            d.class_colors = bool(a.classes.use_class_colors)
            d.label_overlay, d.overlay_opacity = bool(a.label_overlay), round(float(a.overlay), 3)
            d.is_ct = a.volume is not None and a.volume.modality == "CT"
            planes = d.four_up and VIEW_D in self.sessions      # the 3-D view has no window: its planes do
            d.window_preset, d.window_text = window_readout(self.sessions[VIEW_D] if planes else a)
            d.cinematic = a.still_renderer is not None
            cinematic = feature_status()["pathtrace"]
            d.can_cinematic = cinematic.available and a.volume is not None
            d.cinematic_hint = "" if cinematic.available else cinematic.hint
            d.classes = class_rows(a.classes)
            d.groups = group_rows(a.classes)
            d.cursor = "" if a.cursor is None else "({:.1f}, {:.1f}, {:.1f}) mm".format(*a.cursor)
            d.annotations = [f"{i + 1}. {note.text}" for i, note in enumerate(a.annotations)]

    def _sync_now(self) -> None:
        with self.state:
            self.sync_state()

    def close(self, **_) -> None:
        self._unsubscribe()
        self.control.close()
        for view in self.views.values():
            stream = view.detach()
            if stream is not None:
                stream.close()
        for session in self.sessions.values():
            session.close()
        if self.difference is not None:
            self.difference.close()

    # -- view choices: one message each for the controller ------------------------------------------
    @guarded
    def set_renderer(self, view: str, name: str) -> None:
        self.control.handle(m.SetRenderer(self.index[view], str(name)))
        with self.state:
            self._view_state(view).stale = shows_other_renderer(self.sessions[view], self._shown[view])
            self.sync_state()  # titles of a difference layout name renderer and preset

    @guarded
    def set_preset(self, view: str, name: str) -> None:
        self.control.handle(m.SetPreset(self.index[view], str(name)))
        self.sync_state()  # titles of a difference layout name renderer and preset

    @guarded
    def set_view_mode(self, mode: str) -> None:
        """3-D or a slice view, in every view (they are linked)."""
        if mode not in VIEW_MODES:
            raise InputError(f"view mode must be one of {VIEW_MODES}, got {mode!r}")
        if mode != "3d" and any(self.views[n].stream is not None for n in PLANE_VIEWS if n in self.views):
            raise InputError("four views show the 3-D view beside the three planes: turn Four views off first")
        self.control.handle(m.SetMode(0, mode))
        self.sync_state()

    @guarded
    def set_slice(self, index) -> None:
        if self.sessions[VIEW_A].mode != "3d":
            self.control.handle(m.SetSlice(0, int(index)))

    @guarded
    def set_slice_channel(self, channel) -> None:
        """Which MR sequence (image channel) the slices show, in every view."""
        self.control.handle(m.SetSliceChannel(0, int(channel)))
        self.sync_state()  # the window readout: another channel starts on its own auto window

    @guarded
    def set_label_overlay(self, on: bool) -> None:
        """Draw the label map over the slices (greyscale without it)."""
        self.control.handle(m.SetLabelOverlay(0, bool(on)))

    @guarded
    def set_overlay_opacity(self, opacity) -> None:
        value = float(opacity)
        if not math.isfinite(value):
            raise InputError(f"overlay opacity must be a number in [0, 1], got {opacity!r}")
        self.control.handle(m.SetLabelOverlay(0, self.sessions[VIEW_A].label_overlay, value))

    @guarded
    def set_window_preset(self, name: str) -> None:
        """A CT window preset of the slices (``"auto"``: the volume's own, see
        :meth:`~rfmweb.session.session.RenderSession.set_window`); ``"custom"`` is
        what a window/level drag leaves, nothing to set."""
        if name != "custom":
            self.control.handle(m.SetWindow(0, preset=str(name)))
        self.sync_state()

    @guarded
    def set_compare(self, on: bool) -> None:
        if self.segmentation is not None:  # the three segmentation views are always side by side
            return
        b = self.views[VIEW_B]
        if bool(on) == (b.stream is not None):
            return
        if on:
            self.set_four_up(False)  # one layout at a time
            if self.typed.data.linked:
                self._unlink = link_cameras([self.sessions[VIEW_A], self.sessions[VIEW_B]])
            b.attach(self.sessions[VIEW_B])
        else:
            if self._unlink is not None:
                self._unlink()
                self._unlink = None
            self.set_difference(False)
            stream = b.detach()
            if stream is not None:  # closing joins the worker, which may be mid-render: not on the loop
                asyncio.get_event_loop().run_in_executor(None, stream.close)
            with self.state:
                self.typed.data.view_b.status = ""
        with self.state:
            self.typed.data.compare = b.stream is not None
            self.sync_state()  # the compared views' titles

    @guarded
    def set_four_up(self, on: bool) -> None:
        """The main view beside axial, coronal and sagittal views, all on one crosshair."""
        planes = [self.views[name] for name in PLANE_VIEWS if name in self.sessions]
        if not planes or bool(on) == (planes[0].stream is not None):
            return
        main = self.sessions[VIEW_A]
        if on:  # the main view is the 3-D one of the four; the planes open on the slices it was on
            shown, self._mode_before_four = dict(main.slice_indices), main.mode
            self.control.handle(m.SetMode(0, "3d"))
        elif self._mode_before_four != "3d":  # and it goes back to the plane it showed
            self.control.handle(m.SetMode(0, self._mode_before_four))
        for view in planes:
            if on:
                plane = self.sessions[view.area_name]
                plane.set_view_mode(plane.mode, shown.get(plane.mode))
                view.attach(plane)
            else:
                stream = view.detach()
                if stream is not None:
                    asyncio.get_event_loop().run_in_executor(None, stream.close)
        with self.state:
            self.typed.data.four_up = bool(on)
            self.sync_state()

    @guarded
    def set_linked(self, on: bool) -> None:
        """Compare layout: one camera for both views (orbit either, both follow), or each its own."""
        if self.segmentation is not None or self.views[VIEW_B].stream is None:
            return  # applied when compare turns on; the segmentation views are always linked
        if on and self._unlink is None:
            self._unlink = link_cameras([self.sessions[VIEW_A], self.sessions[VIEW_B]])
        elif not on and self._unlink is not None:
            self._unlink()
            self._unlink = None

    @guarded
    def set_difference(self, on: bool) -> None:
        """Show |left - right| (a heat map, SSIM and PSNR in its status line) beside the compared views."""
        c = self.views.get(VIEW_C) if self.difference is not None else None
        if c is None or bool(on) == (c.stream is not None):
            return
        if on:
            if self.views[VIEW_B].stream is None:
                with self.state:
                    self.typed.data.difference = False  # the switch goes back
                raise InputError("the difference view compares two views: switch Compare on first")
            c.attach(self.difference)
        else:
            stream = c.detach()
            if stream is not None:
                asyncio.get_event_loop().run_in_executor(None, stream.close)
        with self.state:
            self.typed.data.difference = c.stream is not None
            self.sync_state()

    @guarded
    def compare_renderfm(self) -> None:
        """The "Ray-marcher | Render-FM" layout: the ray-marcher left, Render-FM right with the left
        view's preset, cameras linked."""
        if not self.typed.data.can_renderfm:
            raise InputError("Render-FM is not available here (no checkpoint, or no volume)")
        self.set_renderer(VIEW_A, marcher_renderer())
        self.set_renderer(VIEW_B, "renderfm")
        self.set_preset(VIEW_B, self.sessions[VIEW_A].preset_name)
        self.set_compare(True)
        with self.state:
            self.sync_state()

    @guarded
    def reset_view(self) -> None:
        self.control.handle(m.ResetCamera(0))  # view B follows through the camera link

    @guarded
    def set_cinematic(self, on: bool) -> None:
        """Cinematic still in every view: path-trace progressively while the camera rests."""
        self.control.handle(m.SetCinematic(0, bool(on)))

    # -- classes (shared by all views) ------------------------------------------------------------
    @guarded
    def set_class_colors(self, on: bool) -> None:
        self.control.handle(m.SetClassColors(0, bool(on)))

    @guarded
    def set_class_visible(self, index, visible) -> None:
        self.control.handle(m.SetClass(0, int(index), visible=bool(visible)))
        self.sync_state()

    @guarded
    def set_class_rows(self, rows) -> None:
        """The page's class list after a class-opacity slider moved: each changed opacity goes to the views."""
        styles = {s.index: s for s in self.sessions[VIEW_A].classes.styles}
        for row in rows:
            index, opacity = int(row.index), float(row.opacity)
            if index in styles and not math.isclose(opacity, styles[index].opacity, abs_tol=5e-4):
                self.control.handle(m.SetClass(0, index, opacity=opacity))   # the message checks the range
        self.sync_state()

    @guarded
    def set_group_visible(self, group, visible) -> None:
        self.control.handle(m.SetGroup(0, str(group), bool(visible)))
        self.sync_state()

    # -- annotations and scenes -------------------------------------------------------------------------
    @guarded
    def annotate(self) -> None:
        """Label the cursor's point with the typed text (every view: they share annotations)."""
        text = str(self.typed.data.annotation_text or "")
        self.control.handle(m.Annotate(0, text))
        with self.state:
            self.typed.data.annotation_text = ""
            self.sync_state()

    @guarded
    def unannotate(self) -> None:
        """Remove every annotation and the cursor."""
        self.control.handle(m.RemoveAnnotation(0))

    def scene_text(self, *_args) -> str:
        """The main view's scene file (JSON text) for the page to download, with the page's layout."""
        scene = scene_to_dict(self.sessions[VIEW_A])
        if self.segmentation is None:  # the segmentation views' layout is fixed
            scene["layout"] = layout_of(self)
        return json.dumps(scene, indent=1)

    def start_from_scene(self, scene: dict) -> None:
        """Start every view from a scene (``rfmweb serve --scene``; checked before serving), as
        :meth:`~rfmweb.session.controller.ViewController.load_scene` spreads it, laid out as it says."""
        self._restore(scene, "the scene")

    def _restore(self, scene: dict, where: str) -> None:
        layout = check_layout(scene["layout"]) if "layout" in scene and self.segmentation is None else None
        self.control.load_scene(scene, where)
        with self.state:
            if layout is not None:
                apply_layout(self, layout)
            self.sync_state()

    @guarded
    def load_scene(self, text, *_args) -> None:
        """Restore an uploaded scene file (a bad one: logged, shown, nothing changed)."""
        if not isinstance(text, str):
            raise InputError("a scene upload must be the file's text")
        try:
            self._restore(parse_scene(text, "the uploaded scene"), "the uploaded scene")
        except InputError as exc:
            with self.state:
                self.typed.data.alert = f"Scene not loaded: {exc}"   # a status line would cut it short
            raise
        with self.state:
            self.typed.data.alert, self.typed.data.view_a.status = "", "scene loaded"

    def _on_probe(self, index: int, text: str) -> None:
        """The readout under the pointer changed: on the event loop (trame-rca events), or on the
        controller's job thread (a 3-D view's pick), whose state changes the page never got."""
        name = self._names[index]
        if self.views[name].loop is None:      # no server yet
            self._set_probe(name, text)
        else:
            self.views[name]._call_on_loop(self._set_probe, name, text)

    def _set_probe(self, view: str, text: str) -> None:
        with self.state:
            self._view_state(view).probe = text

    def _from_segmentation(self, index: int, busy: bool, message: str) -> None:
        """SegmentationViews progress (any thread): to the view's status, Dice re-read, on the loop."""
        name = self._names[index]
        self.views[name]._call_on_loop(self._segmentation_status, name, busy, message)

    def _segmentation_status(self, view: str, busy: bool, message: str) -> None:
        self._on_status(view, busy, message)
        with self.state:
            self.sync_state()

    # -- output -----------------------------------------------------------------------------------
    async def screenshot(self, view: str = VIEW_A, *_args, **_kwargs) -> bytes | None:
        """PNG of a view at full quality (rendered on its worker thread, not on the event loop);
        ``view="layout"``: every view shown, side by side in one PNG."""
        try:
            names = [n for n, v in self.views.items() if v.stream is not None] if view == "layout" else [str(view)]
            streams = [self.views[n].stream if n in self.views else None for n in names]
            if not streams or None in streams:
                raise InputError(f"view {view!r} is not shown")
            loop = asyncio.get_event_loop()
            pngs = [await loop.run_in_executor(None, s.screenshot) for s in streams]
            return pngs[0] if len(pngs) == 1 else side_by_side(pngs, captions=[self._caption(n) for n in names])
        except Exception as exc:
            log.warning("screenshot failed: %s", brief(exc))
            return None

    def _caption(self, view: str) -> str:
        """What a view shows, for a layout screenshot: its title and subtitle (segmentation views:
        "raw INR · Dice ..."; the difference pane), else its renderer and preset."""
        vs = self._view_state(view)
        title = vs.title
        if not title and view in self.sessions:
            s = self.sessions[view]
            title = view_title(s) if s.mode == "3d" else s.mode
        return " · ".join(t for t in (title, vs.subtitle) if t)

    # -- status -----------------------------------------------------------------------------------
    def _view_state(self, view: str):
        return getattr(self.typed.data, view)

    def _on_status(self, view: str, busy: bool, message: str) -> None:
        with self.state:
            vs = self._view_state(view)
            vs.busy = bool(busy)
            if message:
                vs.status = message + ("…" if busy and not message.endswith("…") else "")

    def _on_frame(self, view: str, frame: Frame) -> None:
        self._shown[view] = frame.renderer
        session = self.views[view].session
        stale = session is not None and shows_other_renderer(session, frame.renderer)
        if self._view_state(view).stale != stale:
            with self.state:
                self._view_state(view).stale = stale
        # interactive frames' lines at most 4 a second; the last one held back shows when its turn comes
        # (dropped, the line still described an older frame after a quick zoom)
        wait = self._last_info[view] + 0.25 - time.monotonic()
        loop = self.views[view].loop
        if frame.kind == "interactive" and wait > 0:
            if self._held.get(view) is None and loop is not None:
                loop.call_later(wait, lambda: (held := self._held.pop(view, None)) and self._on_frame(view, held))
            self._held[view] = frame
            return
        self._held.pop(view, None)
        self._last_info[view] = time.monotonic()
        still = session is not None and session.still_renderer is not None
        refined = f"cinematic still, {frame.spp} spp" if still else f"converging, {frame.spp} spp"
        label = {"idle": "full quality", "progressive": refined}.get(frame.kind, "interactive")
        note = f"{frame.note} · " if frame.note else ""  # first: a narrow view cuts the end of the line
        if session is self.difference:
            with self.state:
                self._view_state(view).subtitle = frame.note
        with self.state:
            self._view_state(view).status = (f"{note}{label} {frame.width}×{frame.height}, "
                                              f"{frame.render_ms:.0f} ms render + {frame.encode_ms:.0f} ms encode")
