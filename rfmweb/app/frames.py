"""Frames of the web app: trame-rca sizes and pointer events -> typed messages, stream frames -> browsers.

:class:`FrameAdapter` is a trame-rca view handler (the duck type of ``trame_rca.protocol.AreaAdapter``)
that bypasses trame-rca's render scheduler, which would render synchronously on the event loop (see
:mod:`rfmweb.app.logic` for the whole flow). :func:`guarded` wraps every handler of browser input.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import math
import time
from typing import Callable

import numpy as np

from ..errors import InputError, brief
from ..session import Frame, FrameStream, RenderSession
from ..session import messages as m
from ..session.controller import ViewController
from ..session.interaction import ZOOM_PER_WHEEL

log = logging.getLogger(__name__)

#: Largest rendered image, in pixels (a 4K screen at devicePixelRatio 2 would otherwise ask for 16 MP).
MAX_PIXELS = 1280 * 1024
_BUTTONS = {"Left": "left", "Middle": "middle", "Right": "right"}
#: A left press and release closer than this (CSS px) is a click: it places the crosshair cursor.
CLICK_PX = 4.0
#: after the page says every finger has lifted, trame-rca's events of that gesture still arrive this long
GESTURE_TAIL_S = 0.5
#: one finger dragged up or down a slice view steps a slice per this many CSS pixels (a mouse pans)
SWIPE_PX_PER_SLICE = 8.0
#: Pointer moves (drags, hovering) reach the controller at most once per this many seconds: a drag's
#: deltas are summed, hovering keeps the latest position (a client flooding events gets the same view).
COALESCE_S = 0.016


def guarded(method: Callable) -> Callable:
    """Run a handler of browser input; log and swallow any error (then re-sync the state)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (InputError, ValueError, TypeError, KeyError, AttributeError) as exc:  # malformed input
            log.warning("ignored a bad request (%s): %s: %s", method.__name__, type(exc).__name__, brief(exc))
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
        index: the view's index in ``control``.
        control: carries out the view's pointer messages.
        on_frame: called on the event loop with each frame published.
        on_status: called on the event loop with ``(busy, message)`` from the stream.
    """

    def __init__(self, name: str, index: int, control: ViewController, *, on_frame: Callable[[Frame], None],
                 on_status: Callable[[bool, str], None]):
        self.area_name = name
        self.index = index
        self.control = control
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
        self._press: tuple[float, float] | None = None  # where a plain left press began (CSS px): a click?
        # fingers on the view (the page says how many): one finger's vertical travel not yet a slice
        # ("dy"), or two fingers' gesture, whose vtk.js button events are never clicks or drags (its pinch
        # factor and pan translation are cumulative since it began); "lifted": when the page said all
        # fingers were up (vtk.js's events of the lift still follow, up to a button release)
        self._touch: dict | None = None
        self._pending: m.ClientMessage | None = None  # a merged Drag or Probe not handled yet
        self._last_flush = -math.inf
        self._flush_due = False
        #: With a tool on (the ruler, the correction tool): called with ``(view name, points [[u, v], ...]
        #: device pixels, click)`` when a left drag (a stroke; a ruler's ends) or a click ends.
        self.painter: Callable[[str, list, bool], None] | None = None
        self.painter_3d = True  # the painter takes the 3-D view's drags too (False: they orbit as without it)
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
        self.control.set_pixel_ratio(self.index, self._pixel_ratio)
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
        elif kind == "Key" and self.session is not None:
            self._flush()
            self.control.handle(m.Key(self.index, str(event.get("key", ""))))   # checks the key
        elif kind == "Touches":      # the page: fingers on the view (2: a gesture begins, 0: all lifted)
            n = int(event.get("n", 0))
            if n >= 2:
                self._two_fingers().pop("lifted", None)    # fingers down again before the last lift's tail
            elif n == 1:     # a first finger: any gesture before it is over (its tail may not have come)
                self._touch = {"two": False, "dy": 0.0}
            elif self._touch is not None:
                self._touch["lifted"] = time.monotonic()
        elif kind in ("StartPinch", "Pinch", "StartPan", "Pan") and self.session is not None:
            self._touch_gesture(kind, event)
        elif kind == "Wheel" and self.session is not None:
            # the page's own wheel events (CLIENT_SCRIPT): the browser's deltaY, summed over ~20 ms.
            # trame-rca's carry only a spin that vtk.js scales by the first event of a scroll (a
            # 3-notch event came as one notch, a 2 px trackpad event as a whole notch)
            self._flush()
            self.control.handle(m.parse_client_message({"type": "wheel", "view": self.index,
                                                        "dy": event.get("dy"), "ctrl": event.get("ctrl", False)}))
        elif self.session is not None:
            if kind != "MouseMove":
                self._flush()  # the merged pointer movement first: events stay in order
            self._pointer(kind, event)

    def _two_fingers(self) -> dict:
        """The two-finger touch under way, begun now if there is none (a page may not have said
        "Touches" first): the first finger's press is no click, nor its drag."""
        if self._touch is None or not self._touch["two"]:
            self._flush()
            self._touch, self._press, self._drag = {"two": True, "factor": 1.0, "translation": (0.0, 0.0)}, None, None
        return self._touch

    def _touch_gesture(self, kind: str, event: dict) -> None:
        """Two fingers: a pinch zooms (the 3-D camera, or a slice view's magnification), a two-finger
        drag pans; vtk.js sends each gesture's factor / translation since it began."""
        g = self._two_fingers()
        if kind.startswith("Start"):
            g["factor"], g["translation"] = 1.0, (0.0, 0.0)
            return
        if kind == "Pinch":
            factor = float(event.get("factor", 1.0))
            if not (math.isfinite(factor) and factor > 0):
                raise InputError(f"bad pinch factor {event.get('factor')!r}")
            ratio, g["factor"] = factor / g["factor"], factor
            # the wheel's zoom (ctrl on a slice view), by the spread's ratio: exp(-dy k) = ratio
            self.control.handle(m.Wheel(self.index, -math.log(ratio) / ZOOM_PER_WHEEL, ctrl=True))
            return
        tx, ty = (float(v) for v in event.get("translation", (0.0, 0.0)))
        if not (math.isfinite(tx) and math.isfinite(ty)):
            raise InputError(f"bad pan translation {event.get('translation')!r}")
        (x0, y0), g["translation"] = g["translation"], (tx, ty)
        self._merge(m.Drag(self.index, "middle", tx - x0, y0 - ty))     # vtk.js y points up

    def _pointer(self, kind: str, event: dict) -> None:
        """Buttons, moves and the wheel: clicks, drags, hovering, strokes (the correction tool)."""
        touch = self._touch
        if touch is not None and time.monotonic() - touch.get("lifted", math.inf) >= GESTURE_TAIL_S:
            touch = self._touch = None       # an event well after the lift: a new touch (or the mouse)
        if touch is not None and "lifted" in touch and kind == "LeftButtonRelease":
            self._touch = None               # the lift's last event
        if touch is not None and touch["two"] and kind in ("LeftButtonPress", "LeftButtonRelease", "MouseMove"):
            return       # the fingers of a pinch or pan (vtk.js emulates a button for one)
        paints = self.painter is not None and (self.painter_3d or self.session.mode != "3d" or self._stroke is not None)
        if paints and kind in ("LeftButtonPress", "MouseMove", "LeftButtonRelease"):
            self._paint(kind, event)
        elif kind.endswith("ButtonPress") and kind[:-len("ButtonPress")] in _BUTTONS:
            button = _BUTTONS[kind[:-len("ButtonPress")]]
            self._drag = (button, float(event["x"]), float(event["y"]), bool(event.get("shiftKey")),
                          bool(event.get("ctrlKey")))
            plain = button == "left" and not (self._drag[3] or self._drag[4])
            self._press = (self._drag[1], self._drag[2]) if plain else None
        elif kind.endswith("ButtonRelease"):
            press, self._press, self._drag = self._press, None, None
            x, y = float(event.get("x", math.nan)), float(event.get("y", math.nan))
            if press is not None and math.isfinite(x) and math.isfinite(y) and \
                    math.hypot(x - press[0], y - press[1]) < CLICK_PX:  # a click: the crosshair goes there
                self.control.handle(m.PointAt(self.index, x * self._pixel_ratio,
                                              (self._css_height - y) * self._pixel_ratio))
        elif kind == "MouseMove":
            x, y = float(event["x"]), float(event["y"])
            if not (math.isfinite(x) and math.isfinite(y)):
                raise InputError(f"bad pointer position {event!r}")
            if self._drag is None:  # hovering: what lies under the pointer (slice views)
                if self.session.mode != "3d":
                    self._merge(m.Probe(self.index, x * self._pixel_ratio, (self._css_height - y) * self._pixel_ratio))
                return
            button, x0, y0, shift, ctrl = self._drag
            self._drag = (button, x, y, shift, ctrl)
            one = self._touch is not None and not self._touch["two"]
            if one and self.session.mode != "3d" and button == "left" and not (shift or ctrl):
                self._step_slices(y0 - y)
                return
            # trame-rca positions are CSS pixels from the area's bottom-left corner; messages want y down
            self._merge(m.Drag(self.index, button, x - x0, y0 - y, shift, ctrl))

    def _step_slices(self, dy: float) -> None:
        """A finger moved ``dy`` CSS px down a slice view: a slice per :data:`SWIPE_PX_PER_SLICE`, down
        to lower slices as the wheel scrolled down (the arrow keys' steps: linked views follow)."""
        self._touch["dy"] += dy
        steps = int(self._touch["dy"] / SWIPE_PX_PER_SLICE)
        if steps:
            self._touch["dy"] -= steps * SWIPE_PX_PER_SLICE
            self._flush()
            for _ in range(abs(steps)):
                self.control.handle(m.Key(self.index, "ArrowDown" if steps > 0 else "ArrowUp"))

    def _merge(self, msg: m.ClientMessage) -> None:
        """Hand a pointer message (Drag, Probe) to the controller at most once per :data:`COALESCE_S`:
        drags of one button and modifiers sum their deltas, probes keep the latest position."""
        pending = self._pending
        if isinstance(pending, m.Drag) and isinstance(msg, m.Drag) and \
                (pending.button, pending.shift, pending.ctrl) == (msg.button, msg.shift, msg.ctrl):
            msg = dataclasses.replace(pending, dx=pending.dx + msg.dx, dy=pending.dy + msg.dy)
        elif pending is not None and type(pending) is not type(msg):
            self._flush()
        self._pending = msg
        if self.loop is None or time.monotonic() - self._last_flush >= COALESCE_S:
            self._flush()
        elif not self._flush_due:
            self._flush_due = True
            self.loop.call_soon_threadsafe(self.loop.call_later, COALESCE_S, self._flush)

    def _flush(self) -> None:
        """The merged pointer message, if any, to the controller (a bad one is logged, never raised:
        this also runs as a loop callback)."""
        self._flush_due = False
        msg, self._pending = self._pending, None
        if msg is None:
            return
        self._last_flush = time.monotonic()
        try:
            self.control.handle(msg)
        except InputError as exc:
            log.warning("ignored a bad pointer message: %s", brief(exc))

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
            self.painter(self.area_name, stroke, click)

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
