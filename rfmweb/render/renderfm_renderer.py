"""The ``renderfm`` renderer: Render-FM's feed-forward 6D splats of the scene, drawn as splats.

Render-FM (:mod:`rfmweb.renderfm`) turns a scene (CT + labels + transfer function + class table)
into 6D Gaussian splats in one network pass (:func:`rfmweb.renderfm.model.predict`: 0.1-0.2 s for a
small model on a 64 x 64 x 27 CT, about 1-3 s for a real CT on a CPU). After that every frame is a
splat frame (milliseconds): the ``splats`` renderer (:class:`~rfmweb.render.splat_renderer.SplatRenderer`)
draws the predicted splats, hidden classes included.

A prediction belongs to a *scene key*: the volume (by identity), the TF, the class table and the
channel mix; the camera and the background are not part of it. A new key (another preset, a class
toggled, a class colour or opacity changed) means a new prediction; the last
:data:`PREDICTIONS_KEPT` keys are kept, so toggling a class back is instant.

Two ways to get an image:

- :meth:`RenderFMRenderer.render` predicts when the key is new, then draws (blocking: scripts,
  ``rfmweb render``, screenshots, tests);
- :meth:`RenderFMRenderer.prepare_in_background` starts the prediction on the renderer's own thread
  and returns a status line (``"Render-FM: preparing splats"``) until it is done; the listeners
  (:meth:`listen`) hear when it ends. The viewer uses this: :meth:`RenderSession.render(wait=False)
  <rfmweb.session.RenderSession.render>` raises :class:`~rfmweb.render.scene.Preparing`, the
  :class:`~rfmweb.session.FrameStream` keeps the frame on screen and shows the line, and the session
  asks for a new frame when the splats are in.

Availability (one place: :func:`renderfm_checkpoint` / :func:`checkpoint_missing`): the checkpoint
named by ``$RFMWEB_RENDERFM_CHECKPOINT``, else the shipped ``rfmweb/weights/renderfm.pt``. Without
one the renderer is not offered (:func:`rfmweb.render.registry.renderer_names`) and asking for it
raises an :class:`~rfmweb.errors.InputError` that says what to do.

Example:
    >>> r = RenderFMRenderer("m.pt")                                    # doctest: +SKIP
    >>> image = r.render(Scene(ct, preset("CT-Bone")), camera)         # doctest: +SKIP
    >>> r.note                                                          # doctest: +SKIP
    'Render-FM: 6,246 splats in 0.11 s'
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..backend import default_device
from ..camera import OrbitCamera
from ..errors import InputError
from .scene import FULL, Identity, Quality, Scene
from .splat_renderer import SplatRenderer

log = logging.getLogger(__name__)

#: Environment variable naming a Render-FM checkpoint (overrides the shipped one).
ENV_CHECKPOINT = "RFMWEB_RENDERFM_CHECKPOINT"
#: Predictions (scene keys) kept per renderer.
PREDICTIONS_KEPT = 2
#: Status line while a prediction runs.
PREPARING = "Render-FM: preparing splats"
#: Loaded models kept (per checkpoint file, modification time and device).
MODELS_KEPT = 2

_MODELS: OrderedDict[tuple, object] = OrderedDict()
_MODELS_LOCK = threading.Lock()


def _resolve() -> tuple[Path | None, str | None]:
    """``(checkpoint, None)`` or ``(None, why there is none)``."""
    named = os.environ.get(ENV_CHECKPOINT, "").strip()
    if named:
        path = Path(named).expanduser()
        if path.is_file():
            return path, None
        return None, f"{ENV_CHECKPOINT}={named} names no file; point it at a Render-FM checkpoint (.pt)"
    from ..renderfm.model import default_checkpoint

    path = default_checkpoint()
    if path.is_file():
        return path, None
    return None, (f"no Render-FM checkpoint: {path} is absent and {ENV_CHECKPOINT} is not set; train one with "
                  f"`rfmweb train-renderfm` and set {ENV_CHECKPOINT}=PATH")


def checkpoint_missing() -> str | None:
    """Why the ``renderfm`` renderer is not offered here, or ``None`` when a checkpoint is there."""
    return _resolve()[1]


def renderfm_checkpoint() -> Path:
    """The Render-FM checkpoint to use (``$RFMWEB_RENDERFM_CHECKPOINT``, else the shipped one).

    Raises:
        InputError: there is none (the message says how to get one).
    """
    path, why = _resolve()
    if path is None:
        raise InputError(why)
    return path


def _model(path: Path, device: torch.device):
    """The model of ``path`` on ``device``, loaded once (shared by every renderer: inference only)."""
    from ..renderfm.model import load_model

    key = (str(path.resolve()), path.stat().st_mtime_ns, str(device))
    with _MODELS_LOCK:
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    model = load_model(path, device)
    log.info("Render-FM: loaded %s on %s", path, device)
    with _MODELS_LOCK:
        _MODELS[key] = model
        while len(_MODELS) > MODELS_KEPT:
            _MODELS.popitem(last=False)
    return model


def scene_key(scene: Scene) -> tuple:
    """What a prediction depends on: the volume (itself), TF, class table, channel mix (all hashable)."""
    return Identity(scene.volume), scene.tf, scene.classes, scene.mix


def _seconds(s: float) -> str:
    return f"{s:.2f} s" if s < 1 else f"{s:.1f} s"


class RenderFMRenderer:
    """The ``renderfm`` renderer (see the module docstring).

    Args:
        checkpoint: a Render-FM checkpoint (default: :func:`renderfm_checkpoint`).
        device: where the network runs and the splats are drawn (default: :func:`rfmweb.backend.default_device`).

    Attributes:
        note: one line about the splats of the last image (``""`` before the first).
        predictions: predictions finished so far (each new scene key makes one).

    Raises:
        InputError: no checkpoint (the message says how to get one), or the file is missing.
    """

    name = "renderfm"

    def __init__(self, checkpoint: str | os.PathLike | None = None, *, device: torch.device | str | None = None
                 ) -> None:
        self.checkpoint = renderfm_checkpoint() if checkpoint is None else Path(checkpoint)
        if not self.checkpoint.is_file():
            raise InputError("no such Render-FM checkpoint", self.checkpoint)
        self.device = torch.device(device) if device is not None else default_device()
        self.note = ""
        self.predictions = 0
        self._splats = SplatRenderer(self.device)
        self._lock = threading.Lock()
        self._jobs: OrderedDict[tuple, Future] = OrderedDict()  # scene key -> prediction (LRU, newest last)
        self._listeners: list[Callable[[], None]] = []
        # one prediction at a time, never on the caller's thread when asked in the background
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="rfmweb-renderfm")

    # -- preparation ------------------------------------------------------------------------------
    def listen(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the prediction thread) whenever a prediction ends, done or
        failed; returns the function that stops it."""
        with self._lock:
            self._listeners.append(callback)

        def stop() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)
        return stop

    def _job(self, scene: Scene) -> Future:
        """The prediction of ``scene``'s key: kept, or submitted now (queued ones of older keys are
        cancelled: only the newest state matters)."""
        key = scene_key(scene)
        with self._lock:
            fut = self._jobs.get(key)
            if fut is None or fut.cancelled():
                for old in self._jobs.values():
                    old.cancel()  # only those not started yet; a running one finishes
                fut = self._pool.submit(self._predict, scene)
                fut.add_done_callback(self._finished)  # after the result is stored: listeners see it ready
                self._jobs[key] = fut
            self._jobs.move_to_end(key)
            for old in [k for k, f in self._jobs.items() if f.cancelled()]:
                del self._jobs[old]
            while len(self._jobs) > PREDICTIONS_KEPT:
                self._jobs.popitem(last=False)
        return fut

    def _predict(self, scene: Scene):
        from ..renderfm.model import predict

        log.info("%s (%s)", PREPARING, scene.tf.name)     # not the volume's name: a file's name may be a patient's
        return predict(_model(self.checkpoint, self.device), scene, device=self.device, out_device=self.device)

    def _finished(self, fut: Future) -> None:
        if fut.cancelled():
            return
        exc = fut.exception()
        if exc is not None:
            log.warning("Render-FM prediction failed: %s", exc)
        else:
            with self._lock:
                self.predictions += 1
        with self._lock:
            listeners = list(self._listeners)
        for cb in listeners:
            try:
                cb()
            except Exception:
                log.exception("Render-FM listener failed")

    def prepare_in_background(self, scene: Scene) -> str | None:
        """Start predicting ``scene`` on the renderer's thread unless it is done: returns the status
        line to show meanwhile, or ``None`` when :meth:`render` can draw it without waiting."""
        fut = self._job(scene)
        return None if fut.done() else f"{PREPARING}…"

    def prepare(self, scene: Scene):
        """The :class:`~rfmweb.renderfm.model.Prediction` of ``scene`` (predicted now if needed; blocks).

        Raises:
            InputError: Render-FM cannot predict this scene (e.g. the TF and classes hide everything).
        """
        while True:
            try:
                return self._job(scene).result()
            except CancelledError:  # a newer key queued meanwhile cancelled it: ask again
                continue

    # -- drawing ---------------------------------------------------------------------------------
    @torch.no_grad()
    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image of the predicted splats, ``H' = round(H * quality.scale)``
        (predicts first when the scene key is new; see :meth:`prepare_in_background` to not wait)."""
        prediction = self.prepare(scene)
        splats = prediction.splats
        self.note = f"Render-FM: {len(splats):,} splats in {_seconds(prediction.timings['prepare_s'])}"
        if prediction.unlabelled_note:
            self.note += f"; {prediction.unlabelled_note}"
        return self._splats.render(replace(scene, splats=splats), camera, quality, abort=abort)

    def close(self) -> None:
        """Stop the prediction thread (a running prediction finishes) and drop the predictions."""
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            self._jobs.clear()
            self._listeners.clear()
