"""Controllers of the web app: typed UI state <-> render sessions, and frames <-> browsers.

:class:`FrameAdapter` is a trame-rca view handler (the duck type of ``trame_rca.protocol.AreaAdapter``)
that bypasses trame-rca's render scheduler, which would render synchronously on the event loop:

- sizes and pointer events come in through trame-rca's RPCs (``trame.rca.size`` / ``trame.rca.event``)
  and become session calls (:mod:`rfmweb.session.interaction`, the mapping every front end shares);
- frames come from a :class:`~rfmweb.session.FrameStream` worker thread, hop onto the event loop
  (``call_soon_threadsafe``) and are published on trame-rca's stream topic, which wslink sends to
  every connected, authenticated client;
- the page script (:data:`rfmweb.app.ui.CLIENT_SCRIPT`) shows them in an ``<img>`` and
  acknowledges each frame it displayed with a ``FrameAck`` event; the stream keeps at most two
  unacknowledged frames per view. All clients get every frame (they share one state); the first
  acknowledgement frees it, so a stalled tab cannot freeze the others, and a lost one expires after
  the stream's ``ack_timeout``.

:class:`AppController` owns the sessions (view A, and view B for the compare layout, cameras linked;
on a CT with a Render-FM checkpoint view B starts on ``renderfm``, and "Ray-marcher | Render-FM" sets
the pair in one click;
with ``--segment`` the three views ground truth | raw INR | denoised INR of a
:class:`~rfmweb.session.SegmentationViews`, cameras and slices linked, with the correction tools)
and keeps :class:`~rfmweb.app.state.AppState` in step with them. Anything a browser sends is
validated here; a bad message is logged and the state is put back, it never raises into trame.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import math
import time
from typing import Callable

import numpy as np
from trame_server.utils.typed_state import TypedState

from ..backend import marcher_renderer
from ..errors import InputError
from ..render.registry import renderer_label, renderer_names
from ..session import VIEW_MODES, Frame, FrameStream, RenderSession, SegmentationViews, link_cameras, link_view_modes
from ..session.interaction import apply_drag, apply_wheel
from ..session.segmentation import CORRECTION_LABELS, TITLES
from ..transfer import PRESETS
from ..volume import Volume
from .state import VIEW_A, VIEW_B, VIEW_C, VIEWS, AppState, Choice, class_rows, group_rows

log = logging.getLogger(__name__)

#: Largest rendered image, in pixels (a 4K screen at devicePixelRatio 2 would otherwise ask for 16 MP).
MAX_PIXELS = 1280 * 1024
#: Browser wheel delta per trame-rca ``spinY`` unit (one notch).
WHEEL_DELTA_PER_SPIN = 100.0
_BUTTONS = {"Left": "left", "Middle": "middle", "Right": "right"}
#: Correction brush radius, CSS pixels.
BRUSH_CSS_PX = 6.0


def guarded(method: Callable) -> Callable:
    """Run a handler of browser input; log and swallow any error (then re-sync the state)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (InputError, ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed input
            log.warning("ignored a bad request (%s): %s: %s", method.__name__, type(exc).__name__, exc)
        except Exception:  # one client's bad message must never take the server down
            log.exception("ignored a request that failed (%s)", method.__name__)
        resync = getattr(self, "sync_state", None)
        if resync is not None:
            try:
                resync()
            except Exception:
                log.exception("could not re-sync the UI state")
        return None

    return wrapper


class FrameAdapter:
    """One view: trame-rca sizes and pointer events -> session; stream frames -> browsers.

    Args:
        name: the trame-rca area name (``img[data-rfm-view]`` in the page).
        on_frame: called on the event loop with each frame published.
        on_status: called on the event loop with ``(busy, message)`` from the stream.
    """

    def __init__(self, name: str, *, on_frame: Callable[[Frame], None], on_status: Callable[[bool, str], None]):
        self.area_name = name
        self.streamer = None
        self.session: RenderSession | None = None
        self.stream: FrameStream | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._on_frame = on_frame
        self._on_status = on_status
        self._gen = 0
        self._pixel_ratio = 1.0  # rendered (device) pixels per CSS pixel
        self._css_height = 300.0
        self._drag: tuple[str, float, float, bool, bool] | None = None
        #: With the correction tool on: called with ``(view name, points [[u, v], ...] device pixels,
        #: radius device pixels, click)`` when a left drag (a stroke) or a click ends.
        self.painter: Callable[[str, list, float, bool], None] | None = None
        self._stroke: list[list[float]] | None = None

    # -- lifetime -------------------------------------------------------------------------------
    def attach(self, session: RenderSession) -> None:
        """Stream ``session`` (any previous stream must have been detached)."""
        self._gen += 1
        gen = self._gen
        self.session = session
        self.stream = FrameStream(session, lambda frame: self._from_worker(gen, frame), name=self.area_name,
                                  on_status=lambda busy, msg: self._call_on_loop(self._status, gen, busy, msg))
        self.stream.request()

    def detach(self) -> FrameStream | None:
        """Stop streaming; returns the stream to close (closing waits for a render in progress)."""
        stream, self.stream = self.stream, None
        self._gen += 1
        return stream

    # -- trame-rca view handler protocol ----------------------------------------------------------
    def set_streamer(self, streamer) -> None:
        self.streamer = streamer

    @guarded
    def update_size(self, _origin, size: dict) -> None:
        """Client area size: ``{"w": css px, "h": css px, "p": devicePixelRatio}``."""
        w, h = float(size.get("w", 300)), float(size.get("h", 300))
        ratio = float(size.get("p", 1.0))
        if not all(math.isfinite(v) and v > 0 for v in (w, h, ratio)):
            raise InputError(f"bad view size {size!r}")
        ratio = min(4.0, max(0.25, ratio))
        pw, ph = max(16.0, w * ratio), max(16.0, h * ratio)
        shrink = min(1.0, math.sqrt(MAX_PIXELS / (pw * ph)))
        self._pixel_ratio = ratio * shrink
        self._css_height = h
        if self.session is not None:
            self.session.resize(max(16, round(pw * shrink)), max(16, round(ph * shrink)))
        self.refresh()  # a newly mounted view needs a frame even when its size did not change

    @guarded
    def on_interaction(self, _origin, event: dict) -> None:
        kind = str(event.get("type", ""))
        if kind == "FrameAck":
            self._ack(int(event.get("gen", 0)), int(event["id"]))
        elif kind == "Refresh":  # a page (re)subscribed: frames sent before are not coming back
            if self.stream is not None:
                self.stream.reset_flow()
            self.refresh()
        elif self.session is None:
            return
        elif self.painter is not None and kind in ("LeftButtonPress", "MouseMove", "LeftButtonRelease"):
            self._paint(kind, event)
        elif kind.endswith("ButtonPress") and kind[:-len("ButtonPress")] in _BUTTONS:
            button = _BUTTONS[kind[:-len("ButtonPress")]]
            self._drag = (button, float(event["x"]), float(event["y"]), bool(event.get("shiftKey")),
                          bool(event.get("ctrlKey")))
        elif kind.endswith("ButtonRelease"):
            self._drag = None
        elif kind == "MouseMove" and self._drag is not None:
            button, x0, y0, shift, ctrl = self._drag
            x, y = float(event["x"]), float(event["y"])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise InputError(f"bad pointer position {event!r}")
            self._drag = (button, x, y, shift, ctrl)
            # trame-rca positions are CSS pixels from the area's bottom-left corner; the mapping wants y down
            apply_drag(self.session, button, x - x0, y0 - y, shift=shift, ctrl=ctrl, pixel_ratio=self._pixel_ratio)
        elif kind == "MouseWheel":
            spin = float(event.get("spinY", 0.0))
            if math.isfinite(spin) and spin:
                if self.session.mode == "3d":
                    apply_wheel(self.session, spin * WHEEL_DELTA_PER_SPIN)
                else:  # a slice view: the wheel steps slices (down: lower index)
                    self.session.step_slice(-1 if spin > 0 else 1)

    def _paint(self, kind: str, event: dict) -> None:
        """Correction tool: collect a left drag as a stroke in device pixels (y down), hand it over on release."""
        x, y = float(event["x"]), float(event["y"])
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InputError(f"bad pointer position {event!r}")
        point = [x * self._pixel_ratio, (self._css_height - y) * self._pixel_ratio]
        if kind == "LeftButtonPress":
            self._stroke = [point]
        elif self._stroke is not None and len(self._stroke) < 4096:
            self._stroke.append(point)
        if kind == "LeftButtonRelease" and self._stroke is not None:
            stroke, self._stroke = self._stroke, None
            pts = np.asarray(stroke)
            click = float(np.abs(pts - pts[0]).max()) < 4 * self._pixel_ratio
            self.painter(self.area_name, stroke, BRUSH_CSS_PX * self._pixel_ratio, click)

    def reset(self) -> None:
        """trame-rca asks to reset its encoder: forget unacknowledged frames instead."""
        if self.stream is not None:
            self.stream.reset_flow()

    def video_codecs(self) -> list:
        return []

    def negotiate_video(self, _codecs) -> dict:
        return {"error": "not-a-video-stream"}

    # -- frames -----------------------------------------------------------------------------------
    def refresh(self) -> None:
        if self.stream is not None:
            self.stream.request()

    def _call_on_loop(self, fn, *args) -> None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the loop stopped meanwhile (server shutting down)
            pass

    def _from_worker(self, gen: int, frame: Frame) -> None:
        """FrameStream's ``send`` (worker thread): publishing must happen on the event loop."""
        if self.loop is None:  # no server loop yet: nobody to send it to
            stream = self.stream
            if stream is not None and gen == self._gen:
                stream.ack(frame.id)
            return
        self._call_on_loop(self._publish, gen, frame)

    def _publish(self, gen: int, frame: Frame) -> None:
        if gen != self._gen or self.stream is None:
            return  # a frame of a stream that was replaced (compare toggled)
        if self.streamer is None:
            self.stream.ack(frame.id)
            return
        meta = {"type": frame.mime, "w": frame.width, "h": frame.height, "st": int(time.time() * 1e3), "key": "key",
                "rfm": 1, "id": frame.id, "gen": gen, "kind": frame.kind, "version": frame.version}
        try:
            self.streamer.push_content(self.area_name, meta, frame.data)
        except Exception:
            log.exception("publishing a frame failed")
            self._ack(gen, frame.id)
            return
        self._on_frame(frame)

    def _ack(self, gen: int, frame_id: int) -> None:
        """The client displayed ``frame_id``: it and every earlier frame are done (a browser may skip one)."""
        if gen == self._gen and self.stream is not None:
            self.stream.ack(frame_id)

    def _status(self, gen: int, busy: bool, message: str) -> None:
        if gen == self._gen:
            self._on_status(busy, message)


class AppController:
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
            self.sessions = {VIEW_A: RenderSession(volume, splats=splats, renderer=renderer, preset=preset),
                             VIEW_B: RenderSession(volume, splats=splats, preset=preset,
                                                   renderer=compare_renderer(volume) or renderer)}
        self.views = {name: FrameAdapter(name, on_frame=functools.partial(self._on_frame, name),
                                         on_status=functools.partial(self._on_status, name))
                      for name in self.sessions}
        self._unlink: Callable[[], None] | None = None
        self._last_info = {name: 0.0 for name in self.sessions}
        # slice views follow each other (same volume grid); cameras link when views are side by side
        self._unlink_modes = link_view_modes(list(self.sessions.values())) if volume is not None else None
        self._jobs = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="rfmweb-correct")
        self.views[VIEW_A].attach(self.sessions[VIEW_A])
        if segmentation is not None:
            self._unlink = link_cameras(list(self.sessions.values()))
            for name in (VIEW_B, VIEW_C):
                self.views[name].attach(self.sessions[name])
            segmentation.on_status = self._from_segmentation
        # slices stepped by the wheel in a view: the slider follows
        self._unsubscribe = self.sessions[VIEW_A].subscribe(
            lambda _s, what: self.views[VIEW_A]._call_on_loop(self._sync_now) if what == "slice" else None)

        d = self.typed.data
        d.title = self.sessions[VIEW_A].name or "rfmweb"
        # only the renderers that can draw what was loaded
        usable = [n for n in renderer_names() if ((splats is not None) if n == "splats" else (volume is not None))]
        d.renderers = [Choice(renderer_label(n), n) for n in usable]
        d.presets = list(PRESETS)
        d.modes = [Choice(m if m != "3d" else "3D", m) for m in VIEW_MODES] if volume is not None else []
        d.correct_labels = [Choice(name, str(i)) for i, name in CORRECTION_LABELS.items()]
        d.segment = segmentation is not None
        d.can_renderfm = segmentation is None and "renderfm" in usable
        self.sync_state()

        n = self.names
        changes = {n.compare: self.set_compare, n.class_colors: self.set_class_colors, n.cinematic: self.set_cinematic,
                   n.view_mode: self.set_view_mode, n.slice_index: self.set_slice, n.tool: self.set_tool}
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
        ctrl.rfm_class_opacity = self.set_class_opacity
        ctrl.rfm_group_visible = self.set_group_visible
        ctrl.rfm_apply_correction = functools.partial(self._correct, "apply")
        ctrl.rfm_undo_correction = functools.partial(self._correct, "undo")
        server.trigger("rfm_screenshot")(self.screenshot)

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
        with self.typed.suppress_change_listeners():
            for i, (name, session) in enumerate(self.sessions.items()):
                vs = self._view_state(name)
                vs.renderer, vs.preset = session.renderer_name, session.preset_name
                vs.title = TITLES[i] if seg is not None else ""
                vs.subtitle = seg.dice_text(i) if seg is not None else ""
            d.compare = self.views[VIEW_B].stream is not None
            d.view_mode, d.slice_index = a.mode, a.slice_index
            d.slice_max = max(0, a.slice_count() - 1) if a.volume is not None else 0
            d.marks = seg.n_marks if seg is not None else 0
            d.class_colors = bool(a.classes.use_class_colors)
            d.cinematic = a.still_renderer is not None
            d.can_cinematic = "pathtrace" in renderer_names() and a.volume is not None
            d.classes = class_rows(a.classes)
            d.groups = group_rows(a.classes)

    def _sync_now(self) -> None:
        with self.state:
            self.sync_state()

    def close(self, **_) -> None:
        self._unsubscribe()
        self._jobs.shutdown(wait=False, cancel_futures=True)
        for view in self.views.values():
            stream = view.detach()
            if stream is not None:
                stream.close()
        for session in self.sessions.values():
            session.close()

    # -- view choices -----------------------------------------------------------------------------
    @guarded
    def set_renderer(self, view: str, name: str) -> None:
        session = self.sessions[view]
        if name != session.renderer_name:
            session.set_renderer(str(name))

    @guarded
    def set_preset(self, view: str, name: str) -> None:
        session = self.sessions[view]
        if name != session.preset_name:
            session.set_preset(str(name))

    @guarded
    def set_view_mode(self, mode: str) -> None:
        """3-D or a slice view, in every view (they are linked)."""
        self.sessions[VIEW_A].set_view_mode(str(mode))
        self.sync_state()

    @guarded
    def set_slice(self, index) -> None:
        a = self.sessions[VIEW_A]
        if a.mode != "3d" and int(index) != a.slice_index:
            a.set_slice(int(index))

    @guarded
    def set_compare(self, on: bool) -> None:
        if self.segmentation is not None:  # the three segmentation views are always side by side
            return
        b = self.views[VIEW_B]
        if bool(on) == (b.stream is not None):
            return
        if on:
            self._unlink = link_cameras([self.sessions[VIEW_A], self.sessions[VIEW_B]])
            b.attach(self.sessions[VIEW_B])
        else:
            if self._unlink is not None:
                self._unlink()
                self._unlink = None
            stream = b.detach()
            if stream is not None:  # closing joins the worker, which may be mid-render: not on the loop
                asyncio.get_event_loop().run_in_executor(None, stream.close)
            with self.state:
                self.typed.data.view_b.status = ""

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
        self.sessions[VIEW_A].reset_camera()  # view B follows through the camera link

    @guarded
    def set_cinematic(self, on: bool) -> None:
        """Cinematic still in both views: path-trace progressively while the camera rests."""
        for session in self.sessions.values():
            session.set_still_renderer("pathtrace" if on else None)

    # -- classes (shared by both views) -----------------------------------------------------------
    @guarded
    def set_class_colors(self, on: bool) -> None:
        for session in self.sessions.values():
            session.set_class_colors(bool(on))

    @guarded
    def set_class_visible(self, index, visible) -> None:
        for session in self.sessions.values():
            session.set_class(int(index), visible=bool(visible))
        self.sync_state()

    @guarded
    def set_class_opacity(self, index, opacity) -> None:
        value = float(opacity)
        if not math.isfinite(value):
            raise InputError(f"class opacity must be a number in [0, 1], got {opacity!r}")
        for session in self.sessions.values():
            session.set_class(int(index), opacity=value)
        self.sync_state()

    @guarded
    def set_group_visible(self, group, visible) -> None:
        for session in self.sessions.values():
            session.set_group_visible(str(group), bool(visible))
        self.sync_state()

    # -- corrections (segmentation views) -------------------------------------------------------------
    @guarded
    def set_tool(self, on: bool) -> None:
        """The correction tool: left drags paint strokes on slice views, clicks mark the 3-D view."""
        if self.segmentation is None:
            raise InputError("corrections need the segmentation views (rfmweb serve CASE --segment)")
        for view in self.views.values():
            view.painter = self._paint if on else None

    def _paint(self, view: str, points: list, radius: float, click: bool) -> None:
        """A stroke or click from a view (event loop): mark voxels on the correction thread."""
        label = int(self.typed.data.correct_label)
        if label not in CORRECTION_LABELS:
            raise InputError(f"bad correction label {label!r}")
        i = list(self.sessions).index(view)
        seg = self.segmentation

        def mark() -> str:
            if self.sessions[view].mode != "3d":
                n = seg.mark_pixels(i, points, label, radius)
                return f"marked {n} voxels as {CORRECTION_LABELS[label]}"
            if not click:
                return ""
            hit = seg.mark_click(i, points[0][0], points[0][1], label)
            return "nothing under the pointer" if hit is None else \
                f"marked voxel {tuple(int(c) for c in hit)} as {CORRECTION_LABELS[label]}"
        self._submit(view, mark)

    def _correct(self, action: str) -> None:
        """Apply (fine-tune the INR on the marks) or undo, on the correction thread."""
        if self.segmentation is None:
            log.warning("ignored a correction request: no segmentation views")
            return
        seg = self.segmentation

        def run() -> str:
            if action == "apply":
                r = seg.apply_correction()
                return f"corrected: {int(r.changed)} voxels changed, {r.steps} steps, {r.seconds:.1f} s"
            seg.undo_correction()
            return "correction undone"
        self._submit(VIEW_B, run)

    def _submit(self, view: str, job: Callable[[], str]) -> None:
        adapter = self.views[view]

        def run() -> None:
            try:
                message = job()
            except Exception as exc:
                log.warning("correction failed: %s", exc)
                message = f"correction failed: {exc}"
            adapter._call_on_loop(self._after_correction, view, message)
        self._jobs.submit(run)

    def _after_correction(self, view: str, message: str) -> None:
        with self.state:
            if message:
                self._view_state(view).status = message
            self.sync_state()

    def _from_segmentation(self, index: int, busy: bool, message: str) -> None:
        """SegmentationViews progress (any thread): to the view's status, Dice re-read, on the loop."""
        name = VIEWS[index]
        self.views[name]._call_on_loop(self._segmentation_status, name, busy, message)

    def _segmentation_status(self, view: str, busy: bool, message: str) -> None:
        self._on_status(view, busy, message)
        with self.state:
            self.sync_state()

    # -- output -----------------------------------------------------------------------------------
    async def screenshot(self, view: str = VIEW_A, *_args, **_kwargs) -> bytes | None:
        """PNG of a view at full quality (rendered on its worker thread, not on the event loop)."""
        try:
            stream = self.views[str(view)].stream
            if stream is None:
                raise InputError(f"view {view!r} is not shown")
            return await asyncio.get_event_loop().run_in_executor(None, stream.screenshot)
        except Exception as exc:
            log.warning("screenshot failed: %s", exc)
            return None

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
        now = time.monotonic()
        if frame.kind == "interactive" and now - self._last_info[view] < 0.25:
            return
        self._last_info[view] = now
        session = self.views[view].session
        still = session is not None and session.still_renderer is not None
        refined = f"cinematic still, {frame.spp} spp" if still else f"converging, {frame.spp} spp"
        label = {"idle": "full quality", "progressive": refined}.get(frame.kind, "interactive")
        note = f"{frame.note} · " if frame.note else ""  # first: a narrow view cuts the end of the line
        with self.state:
            self._view_state(view).status = (f"{note}{label} {frame.width}×{frame.height}, "
                                              f"{frame.render_ms:.0f} ms render + {frame.encode_ms:.0f} ms encode")


def compare_renderer(volume: Volume | None) -> str | None:
    """The compare view's first renderer: ``renderfm`` for a CT when Render-FM is available (the
    comparison it was made for: ray-marcher | Render-FM), else ``None`` (the main view's)."""
    if volume is not None and volume.modality == "CT" and "renderfm" in renderer_names():
        return "renderfm"
    return None
