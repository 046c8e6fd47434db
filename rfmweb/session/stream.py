"""``FrameStream``: renders a session's frames on a worker thread, with flow control.

The policy, shared by the Jupyter widget and the trame app (after jupyter_rfb and viser):

- state changes are *merged*, not queued: the worker always renders the latest state, so a burst
  of pointer events costs one frame;
- at most ``max_in_flight`` frames (2) are sent and not yet acknowledged by the client; an
  acknowledgement covers its frame and every earlier one (a browser may skip a frame it replaced
  before showing it), and a lost one expires after ``ack_timeout`` seconds so a stream never stalls;
- while the state keeps changing, frames are *interactive*: the session's ``moving_quality`` (half a
  voxel's step; :data:`~rfmweb.render.scene.MOVING`), JPEG at a resolution scale adapted so
  a render fits ``interactive_budget_ms``; ``idle_delay`` seconds after the last change, one
  full-quality frame follows (sharper JPEG at full resolution), abandoned as soon as the state
  changes again so a new drag never waits for it;
- a ray-marcher's view converges while the camera rests: the idle frame is the first of
  :data:`CONVERGE_FRAMES` jittered frames, each later one the running mean (``kind="progressive"``,
  ``spp`` = frames averaged), until all are in or the next change;
- refinement at rest does not wait for the link, nor fill it: its frames go one at a time (sent when
  no frame is unacknowledged), its passes go on meanwhile, and only the latest waits to be sent. A slow
  link gets fewer, later frames (all 16 frames of ~57 KB each were queued behind each other), and a new
  drag's first frame waits behind one refinement frame at most, not two (``bench_link.py``);
- with a still renderer set on the session (a "cinematic still", :meth:`RenderSession.set_still_renderer`),
  the camera at rest gets progressive frames instead: each pass of the path tracer adds samples to
  the view (``kind="progressive"``, ``spp`` in the frame) until ``max_spp`` or the next change;
- a renderer that prepares each scene slowly (Render-FM's network pass) prepares on its own thread
  (:meth:`RenderSession.render` with ``wait=False``): meanwhile no frame is sent, so the view keeps
  its last one, and ``on_status`` shows the renderer's line (``busy``); the session's ``"prepared"``
  change brings the first frame of the new splats. Frames carry the renderer's ``note``;
- PNG screenshots are served on request, ahead of the stream (they wait for a preparation);
- a failed render is logged and reported through ``on_status``; it never kills the worker.
"""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import replace
from typing import Callable

from ..render.registry import renderer_label
from ..render.scene import FULL, Preparing, RenderAborted
from .encode import JPEG_IDLE, JPEG_INTERACTIVE, Frame, encode_image
from .pointing import draw_orientation
from .session import RenderSession

log = logging.getLogger(__name__)

MIN_SCALE, MAX_SCALE = 0.25, 1.0
#: Cinematic still: samples per pixel added per progressive frame, and the most accumulated.
SPP_PER_PASS, MAX_SPP = 4, 1024
#: Ray-marched views at rest: jittered frames averaged (SSIM >= 0.99 to the reference, see BENCHMARKS.md).
CONVERGE_FRAMES = 16


def shows_other_renderer(session, renderer: str) -> bool:
    """Whether a view's last frame, drawn by ``renderer`` (:attr:`Frame.renderer`), is of another
    renderer than the one its menu now names, in 3-D (a slice is a slice, whoever draws the 3-D view):
    the front ends dim it until the new renderer's first frame, which can take seconds."""
    return bool(renderer) and session.mode == "3d" and renderer != session.renderer_name


class FrameStream:
    """Stream frames of ``session`` to ``send``.

    Args:
        session: the state to render (the stream subscribes to its changes).
        send: called from the worker thread with each :class:`Frame`; must not block for long.
        max_in_flight: frames sent and not acknowledged before the worker waits.
        idle_delay: seconds without changes before the full-quality frame.
        interactive_budget_ms: target render time of interactive frames.
        ack_timeout: seconds after which an unacknowledged frame stops counting.
        on_status: called with ``(busy, message)`` around slow renders and on failures.
        paused: send nothing until :meth:`resume` (a front end resumes when its page is attached).
        name: names the worker thread.
    """

    def __init__(self, session: RenderSession, send: Callable[[Frame], None], *, max_in_flight: int = 2,
                 idle_delay: float = 0.3, interactive_budget_ms: float = 80.0, ack_timeout: float = 2.0,
                 on_status: Callable[[bool, str], None] | None = None, paused: bool = False,
                 name: str = "view") -> None:
        self.session = session
        self._send = send
        self.max_in_flight = max_in_flight
        self.idle_delay = idle_delay
        self.budget_ms = interactive_budget_ms
        self.ack_timeout = ack_timeout
        self._on_status = on_status
        self._cond = threading.Condition()
        self._dirty = False
        self._idle_due: float | None = None
        self._in_flight: dict[int, float] = {}
        self._png: list[Future] = []
        self._closed = False
        self._paused = paused
        self._next_id = 1
        self._scale = {}  # renderer name -> adaptive interactive scale
        self._last_interactive = None  # (renderer, scene) of the last interactive render
        self._progress = None  # (pass iterator, version) of a cinematic still in progress
        self._pending: Frame | None = None  # the latest refinement frame, rendered while one was unacknowledged
        self._unsubscribe = session.subscribe(lambda _s, what: self._refine() if what == "still" else self.request())
        self._unsubscribe_released = session.on_refinement_released(self._wake)
        self._thread = threading.Thread(target=self._run, name=f"rfmweb-render-{name}", daemon=True)
        self._thread.start()

    # -- client side --------------------------------------------------------------------------
    def request(self) -> None:
        """Ask for a frame of the latest state (merged with any pending request)."""
        with self._cond:
            self._dirty = True
            self._cond.notify()

    def _refine(self) -> None:
        """Refine the view at rest again, with no interactive frame first: a still renderer turned on or
        off changes nothing in the picture until its first pass (the full-quality frame stays meanwhile)."""
        with self._cond:
            self._progress, self._idle_due, self._pending = None, time.monotonic(), None
            self._cond.notify()

    def _wake(self) -> None:
        """Look again at what to render (a :meth:`RenderSession.hold_refinement` ended)."""
        with self._cond:
            self._cond.notify()

    def ack(self, frame_id: int) -> None:
        """The client has displayed frame ``frame_id`` (and is done with every earlier one)."""
        with self._cond:
            for fid in [f for f in self._in_flight if f <= int(frame_id)]:
                del self._in_flight[fid]
            self._cond.notify()

    def reset_flow(self) -> None:
        """Forget unacknowledged frames (a client reconnected or was replaced)."""
        with self._cond:
            self._in_flight.clear()
            self._cond.notify()

    def resume(self) -> None:
        """A client is attached: forget old in-flight frames and send the current state."""
        with self._cond:
            self._paused = False
            self._in_flight.clear()
            self._dirty = True
            self._cond.notify()

    def screenshot(self, timeout: float = 120.0) -> bytes:
        """A PNG of the current state at full quality and full resolution (blocks until rendered).

        Works while paused; raises ``RuntimeError`` once the stream is closed.
        """
        fut: Future = Future()
        with self._cond:
            if self._closed:
                raise RuntimeError("the frame stream is closed")
            self._png.append(fut)
            self._cond.notify()
        return fut.result(timeout=timeout)

    def close(self) -> None:
        """Stop rendering and sending: the thread ends, pending screenshots are cancelled."""
        self._unsubscribe()
        self._unsubscribe_released()
        with self._cond:
            self._closed = True
            pending, self._png = self._png, []
            self._cond.notify()
        for fut in pending:
            fut.set_exception(RuntimeError("the frame stream was closed"))
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    # -- worker ---------------------------------------------------------------------------------
    def _next_job(self) -> tuple[str, Future | None] | None:
        """Wait for work; returns ``(kind, future)`` or ``None`` when closed."""
        with self._cond:
            while True:
                if self._closed:
                    return None
                now = time.monotonic()
                for fid, sent in list(self._in_flight.items()):
                    if now - sent > self.ack_timeout:
                        log.debug("frame %d not acknowledged after %.1f s", fid, self.ack_timeout)
                        del self._in_flight[fid]
                if self._png:
                    return "png", self._png.pop(0)
                room = len(self._in_flight) < self.max_in_flight and not self._paused
                if self._dirty and room:
                    self._dirty = False
                    self._progress = self._pending = None
                    return "interactive", None
                if self._pending is not None and not self._in_flight and not self._paused:
                    return "pending", None
                # refinement renders ahead of the link (its latest frame waits in _pending)
                refine = not self._paused and not self.session.refinement_held
                if self._idle_due is not None and now >= self._idle_due and refine:
                    self._idle_due = None
                    return "idle", None
                if self._progress is not None and refine:
                    return "progressive", None
                waits = [self._idle_due - now] if self._idle_due is not None and refine else []
                if self._in_flight:
                    waits.append(min(self._in_flight.values()) + self.ack_timeout - now)
                self._cond.wait(max(0.005, min(waits)) if waits else None)

    def _run(self) -> None:
        while (job := self._next_job()) is not None:
            kind, fut = job
            if kind == "pending":
                with self._cond:
                    frame, self._pending = self._pending, None
                if frame is None or frame.version != self.session.version:
                    continue
                self._dispatch(kind, frame)
                continue
            try:
                frame = self._render(kind)
                if frame is None:  # a cinematic still that has finished
                    continue
            except RenderAborted:
                log.debug("%s frame abandoned: the state changed or refinement is held", kind)
                with self._cond:
                    if kind != "interactive" and not self._dirty:   # held: refine again once released
                        self._progress, self._idle_due = None, time.monotonic()
                continue
            except Preparing as busy:  # the last frame stays; the session's "prepared" change asks again
                log.debug("%s frame waits: %s", kind, busy)
                self._status(True, str(busy))
                continue
            except Exception as exc:  # a bad state must not kill the stream
                log.exception("render failed")
                if fut is not None:
                    fut.set_exception(exc)
                self._status(False, f"render failed: {exc}")
                continue
            if fut is not None:
                fut.set_result(frame.data)
                continue
            with self._cond:
                if kind != "interactive" and self._in_flight:
                    self._pending = frame        # one at a time: the next pass may replace it
                    continue
            self._dispatch(kind, frame)

    def _dispatch(self, kind: str, frame: Frame) -> None:
        """Number ``frame``, count it in flight and send it."""
        with self._cond:
            frame = replace(frame, id=self._next_id)
            self._next_id += 1
            self._in_flight[frame.id] = time.monotonic()
            if kind == "interactive" and not self._dirty:
                self._idle_due = time.monotonic() + self.idle_delay
        try:
            self._send(frame)
        except Exception:
            log.exception("sending a frame failed")
            self.ack(frame.id)

    def _render(self, kind: str) -> Frame | None:
        snap = self.session.snapshot()
        if kind == "progressive" or (kind == "idle" and self.session.progressive_renderer(snap) is not None):
            return self._render_progressive(snap)
        # a renderer's first frames start small (its cost here is unknown: the torch marcher's first frame
        # at half of 1280x916 took a minute on 2 cores) and grow as it proves fast (below)
        scale = self._scale.get(snap.renderer, MIN_SCALE)
        quality = replace(self.session.moving_quality, scale=scale) if kind == "interactive" else FULL
        # a full-quality frame is worthless once the state moves on: let the renderer stop early
        abort = self._aborter(snap) if kind == "idle" else None
        # the first 3-D frame of another renderer pays its set-up and has no learnt scale yet: it may take
        # seconds; say so, as for full quality (a camera drag or a slider stays quiet)
        settling = kind == "interactive" and snap.mode == "3d" and \
            (self._last_interactive is None or snap.renderer != self._last_interactive[0])
        told = kind != "interactive" or settling
        if told:
            # the view keeps its last frame meanwhile: say whose frame is coming (a path tracer takes seconds)
            self._status(True, "rendering full quality…" if kind != "interactive"
                         else f"first frame of the {renderer_label(snap.renderer)}…")
        t0 = time.perf_counter()
        try:
            # screenshots wait for a renderer's preparation; streamed frames do not (see Preparing)
            image = self._marked(self.session.render(quality, snap, abort=abort, wait=kind == "png"), snap)
        except BaseException:
            if told:
                self._status(False, "")
            raise
        t1 = time.perf_counter()
        note = self.session.note(snap)
        if told:
            self._status(False, note)
        render_ms = (t1 - t0) * 1e3
        if kind == "interactive" and snap.mode == "3d":  # slice frames ignore the scale: learn nothing
            # Aim the next interactive frame at the budget (time ~ pixels ~ scale^2), learning only
            # from camera moves: a new scene or renderer pays one-off set-up costs.
            key = (snap.renderer, snap.scene)
            if key == self._last_interactive:
                ratio = (self.budget_ms / max(render_ms, 1.0)) ** 0.5
                self._scale[snap.renderer] = min(MAX_SCALE, max(MIN_SCALE, scale * min(1.25, max(0.7, ratio))))
            self._last_interactive = key
        fmt, q = ("png", 0) if kind == "png" else ("jpeg", JPEG_INTERACTIVE if kind == "interactive" else JPEG_IDLE)
        data = encode_image(image, fmt, q)
        encode_ms = (time.perf_counter() - t1) * 1e3
        return Frame(data, f"image/{fmt}", image.shape[1], image.shape[0], kind, snap.version,
                     render_ms=render_ms, encode_ms=encode_ms, note=note, renderer=snap.renderer)

    def _aborter(self, snap) -> Callable[[], bool]:
        """``abort`` of a full-quality or converging render of ``snap``: the state moved on, or
        refinement is held."""
        return lambda: self.session.version != snap.version or self.session.refinement_held

    def _render_progressive(self, snap) -> Frame | None:
        """The next pass of the progressive view of ``snapshot`` (started on the idle frame): a
        cinematic still's samples, or a ray-marcher's jittered frames."""
        with self._cond:
            progress = self._progress
        still = self.session.still_renderer is not None
        first = progress is None or progress[1] != snap.version
        if first:
            abort = self._aborter(snap)
            per_pass, passes = (SPP_PER_PASS, MAX_SPP // SPP_PER_PASS) if still else (1, CONVERGE_FRAMES)
            progress = (self.session.progressive(snap, per_pass, passes, abort=abort), snap.version)
            with self._cond:
                self._progress = progress
        t0 = time.perf_counter()
        if first:   # a still's first pass also builds its scene (seconds): the last frame stays meanwhile
            self._status(True, "cinematic still: tracing the first samples…" if still
                         else "rendering full quality…")
        try:
            image, spp = next(progress[0])
        except StopIteration:
            with self._cond:
                if self._progress is progress:
                    self._progress = None
            self._status(False, f"cinematic still done ({MAX_SPP} spp)" if still else "")
            return None
        t1 = time.perf_counter()
        data = encode_image(self._marked(image, snap), "jpeg", JPEG_IDLE)
        note = self.session.note(snap)     # e.g. that another renderer drew it
        # the samples so far are in the frame's own line (its ``spp``), not repeated here
        self._status(False, "cinematic still (path traced)" if still else note)
        # a ray-marcher's first frame at rest is the idle frame; the later ones refine it
        kind = "idle" if not still and spp == 1 else "progressive"
        return Frame(data, "image/jpeg", image.shape[1], image.shape[0], kind, snap.version,
                     render_ms=(t1 - t0) * 1e3, encode_ms=(time.perf_counter() - t1) * 1e3, spp=spp, note=note,
                     renderer=snap.renderer)

    def _marked(self, image, snap):
        """A 3-D frame with the orientation marker of its camera (:func:`draw_orientation`): a viewer's
        3-D view says which way the patient faces, as its slice views do with their letters. The
        session's own images (``rfmweb render``, comparisons) stay without it."""
        if snap.mode != "3d" or not self.session.draws_orientation:
            return image
        return draw_orientation(image, snap.camera)

    def _status(self, busy: bool, message: str) -> None:
        if self._on_status is not None:
            try:
                self._on_status(busy, message)
            except Exception:
                log.exception("status callback failed")
