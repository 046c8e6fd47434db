"""Jupyter widgets (anywidget): the views and their messages, and :class:`Viewer` (one view); :class:`Compare`
(linked views, in ``compare.py``) builds on the same base.

Each view is a :class:`~rfmweb.session.RenderSession` streamed by a
:class:`~rfmweb.session.FrameStream`. The widget is a thin adapter:

- frames: the stream's worker thread calls ``send({"type": "frame", "view": i, ...}, buffers=[jpeg])``
  (ipykernel's IOPub socket is safe to use from any thread: each thread gets its own pipe to the IOPub
  thread; checked in a real JupyterLab 4.6 with ipykernel 7.4 by ``tests/browser/test_jupyterlab.py``);
  the page draws each frame and answers ``{"type": "ack", "view": i, "id": n}``, which frees the
  stream's flow control;
- intents: the page sends typed messages (:mod:`rfmweb.session.messages`: drag, wheel, resize, preset,
  class, window, overlay, probe, ...) that the shared :class:`~rfmweb.session.controller.ViewController`
  carries out (the trame app uses the same one); a malformed message is logged and answered with an
  ``error`` message, it never raises into the kernel;
- state: the synced traitlets ``views`` (per view: preset, renderer, classes, groups, status),
  ``preset_options`` and ``renderer_options`` mirror the sessions. Python owns them (rebuilt after
  every session change, whoever made it); the page only reads them and sends intents back.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from functools import partial
from pathlib import Path
from typing import Sequence, Union

import anywidget
import numpy as np
import traitlets as t

from rfmweb.errors import InputError
from rfmweb.io.atomic import atomic_write
from rfmweb.render.registry import renderer_label, renderer_status
from rfmweb.render.slices import WINDOW_PRESETS
from rfmweb.session import FrameStream, RenderSession, SegmentationViews, link_cameras, link_points, link_view_modes
from rfmweb.session.controller import STYLE_MESSAGES, ViewController, shown_readout, window_readout
from rfmweb.session.encode import side_by_side
from rfmweb.session.scene_file import apply_scene, read_scene, save_scene, scene_to_dict
from rfmweb.session.slice_state import channel_index
from rfmweb.session.stream import shows_other_renderer
from rfmweb.transfer import PRESETS, preset_unsuited
from rfmweb.volume import Volume

from . import _messages as m

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
#: The page half, in order: one ES module made of these files (anywidget loads a single module).
ESM_PARTS = ("dom.js", "viewer.js")

ViewSource = Union[Volume, RenderSession]


def esm() -> str:
    """The widget's ES module: :data:`ESM_PARTS` of ``js/`` joined in order."""
    return "\n".join((STATIC / name).read_text(encoding="utf-8") for name in ESM_PARTS)


def _hex(color: Sequence[float]) -> str:
    return "#" + "".join(f"{max(0, min(255, round(float(c) * 255))):02x}" for c in color[:3])


def _session_for(source: ViewSource, renderer: str | None, preset: str | None, width: int,
                 height: int) -> tuple[RenderSession, bool]:
    """``(session, owned)``: wrap a volume in a new session, or adopt a given one."""
    if isinstance(source, RenderSession):
        if renderer is not None:
            source.set_renderer(renderer)
        if preset is not None:
            source.set_preset(preset)
        return source, False
    if isinstance(source, Volume):
        return RenderSession(source, renderer=renderer, preset=preset, width=width, height=height), True
    raise InputError(f"a view must be an rfmweb Volume or RenderSession, got {type(source).__name__}"
                     + _hint_for(source))


def _hint_for(source) -> str:
    """What to do with a source a view cannot take (a path, an array, a nibabel image)."""
    if isinstance(source, (str, Path)):
        return "; load the file first: rfmweb.load_volume(path) (a DICOM folder: rfmweb.io.open_volume(folder))"
    if hasattr(source, "affine") and hasattr(source, "get_fdata"):
        return "; wrap it: rfmweb.Volume(image.get_fdata(), image.affine, modality='MR' or 'CT')"
    if isinstance(source, np.ndarray):
        return "; wrap it with its voxel-to-mm matrix: rfmweb.Volume(array, affine)"
    return ""


class _Views(anywidget.AnyWidget):
    """One or more views, each a session + frame stream, drawn by ``viewer.js``."""

    _esm = esm()
    _css = STATIC / "viewer.css"

    #: Per view: title, preset, renderer, class_colors, classes, groups, status, busy (see ``_view_state``).
    views = t.List(t.Dict()).tag(sync=True)
    #: Presets offered in the preset menus: ``{"name", "disabled", "hint"}`` (another modality's: disabled, why).
    preset_options = t.List(t.Dict()).tag(sync=True)
    #: Renderers offered in the renderer menus: ``{"name": ..., "label": ...}``.
    renderer_options = t.List(t.Dict()).tag(sync=True)
    #: CT window presets offered on slice views: ``{"name": ..., "label": "bone (W2000 L500)"}``.
    window_options = t.List(t.Dict()).tag(sync=True)
    #: CSS size of each canvas (the page sends back the device-pixel size it really has).
    width = t.Int(512).tag(sync=True)
    height = t.Int(512).tag(sync=True)
    #: ``"side"``: controls beside the canvas (Viewer); ``"below"``: under each canvas (Compare).
    arrangement = t.Unicode("side").tag(sync=True)

    def __init__(self, sessions: list[RenderSession], *, owned: list[bool], titles: Sequence[str | None],
                 width: int, height: int, arrangement: str, link: bool,
                 segmentation: SegmentationViews | None = None, link_modes: bool = True) -> None:
        if not sessions:
            raise InputError("a viewer needs at least one view")
        if len(titles) != len(sessions):
            raise InputError(f"got {len(titles)} titles for {len(sessions)} views")
        for name, v in (("width", width), ("height", height)):
            if not 16 <= int(v) <= m.MAX_SIDE:
                raise InputError(f"{name} must lie in 16..{m.MAX_SIDE} CSS pixels, got {v}")
        self._sessions = list(sessions)
        self._owned = list(owned)
        self._titles = [tt or s.name or f"View {i + 1}" for i, (tt, s) in enumerate(zip(titles, sessions))]
        self._state_lock = threading.RLock()
        self._status = [("", False)] * len(sessions)
        self._shown = [""] * len(sessions)  # the renderer of each view's last frame
        self._closed = False
        self.segmentation = segmentation
        #: Every control of the page (and of the methods below) goes through here.
        self.control = ViewController(sessions, segmentation=segmentation, shared_styles=segmentation is not None,
                                      on_status=self._on_status, on_probe=lambda _i, _text: self._sync_views())
        volume = next((x.volume for x in sessions if x.volume is not None), None)
        has = {"splats": any(x.splats is not None for x in sessions),
               "renderfm": any(x.volume is not None for x in sessions)}  # Render-FM predicts from a volume
        super().__init__(width=int(width), height=int(height), arrangement=arrangement,
                         preset_options=[{"name": n, "disabled": why is not None, "hint": why or ""}
                                         for n in PRESETS for why in [preset_unsuited(n, volume)]],
                         # a renderer missing its package is offered disabled, with what to install
                         renderer_options=[{"name": n, "label": renderer_label(n, note=True),
                                            "disabled": why is not None, "hint": why or ""}
                                           for n, why in renderer_status(volume).items() if has.get(n, True)],
                         window_options=[{"name": k, "label": f"{k} (W{w:g} L{lv:g})"}
                                         for k, (w, lv) in WINDOW_PRESETS.items()])
        self._unsubscribe = [s.subscribe(self._on_session_change) for s in self._sessions]
        linked = link and len(self._sessions) > 1
        self._unlink = link_cameras(self._sessions) if linked else None
        # slice views follow each other too when the views show the same grid
        same_grid = len({s.volume.shape if s.volume is not None else None for s in self._sessions}) == 1
        self._unlink_modes = link_view_modes(self._sessions) if linked and same_grid and link_modes else None
        self._unlink_points = link_points(self._sessions) if linked and same_grid else None
        # paused until the page mounts the view (its "ready" message): no frames for nobody
        self._streams = [FrameStream(s, partial(self._send_frame, i), on_status=partial(self._on_status, i),
                                     paused=True, name=f"{self.model_id[:8]}-{i}")
                         for i, s in enumerate(self._sessions)]
        self._sync_views()
        self.on_msg(self._on_client_msg)

    # -- public API -----------------------------------------------------------------------------
    @property
    def sessions(self) -> tuple[RenderSession, ...]:
        """The views' sessions (change them directly; the page follows)."""
        return tuple(self._sessions)

    @property
    def streams(self) -> tuple[FrameStream, ...]:
        return tuple(self._streams)

    def set_preset(self, name: str, *, view: int | None = None) -> None:
        """Switch to a preset (e.g. ``"CT-Bone"``) in one view (``view=i``) or all (``None``)."""
        self._control(view, m.SetPreset, name=name)

    def set_renderer(self, name: str, *, view: int | None = None) -> None:
        """Switch renderer (a name from :func:`rfmweb.render.registry.renderer_names`)."""
        self._control(view, m.SetRenderer, name=name)

    def set_class_visible(self, index_or_name: int | str, visible: bool, *, view: int | None = None) -> None:
        """Show or hide one class, given by label value or name (case-insensitive)."""
        for i in self._views(view):
            self._control(i, m.SetClass, index=_class_index(self._sessions[i], index_or_name),
                          visible=_flag("visible", visible))

    def set_class_opacity(self, index_or_name: int | str, opacity: float, *, view: int | None = None) -> None:
        """Set one class's opacity in [0, 1]."""
        for i in self._views(view):
            self._control(i, m.SetClass, index=_class_index(self._sessions[i], index_or_name), opacity=float(opacity))

    def set_class_color(self, index_or_name: int | str, color: str | Sequence[float], *,
                        view: int | None = None) -> None:
        """Colour one class: ``"#rrggbb"`` or ``(r, g, b)`` in [0, 1]; class colours turn on to show it."""
        if not isinstance(color, str):
            rgb = np.asarray(color, dtype=float)
            if rgb.shape != (3,) or not np.isfinite(rgb).all() or rgb.min() < 0 or rgb.max() > 1:
                raise InputError(f"a class colour is '#rrggbb' or (r, g, b) in [0, 1], got {color!r}")
            color = _hex(rgb)
        for i in self._views(view):
            self._control(i, m.SetClass, index=_class_index(self._sessions[i], index_or_name), color=color)

    def set_group_visible(self, group: str, visible: bool, *, view: int | None = None) -> None:
        """Show or hide a group of classes ("skeleton", "organs", "vessels", "soft tissue", ...)."""
        self._control(view, m.SetGroup, group=group, visible=_flag("visible", visible))

    def set_class_colors(self, on: bool, *, view: int | None = None) -> None:
        """Colour voxels by class (``True``) or by the transfer function (``False``)."""
        self._control(view, m.SetClassColors, on=_flag("on", on))

    def set_cinematic(self, on: bool, *, view: int | None = None) -> None:
        """Cinematic still: path-trace the view progressively while the camera rests (needs Mitsuba)."""
        self._control(view, m.SetCinematic, on=_flag("on", on))

    def set_view_mode(self, mode: str, index: int | None = None, *, view: int | None = None) -> None:
        """Show the 3-D render (``"3d"``) or a slice (``"axial"``, ``"coronal"``, ``"sagittal"``,
        at ``index`` or the last one shown); linked views follow."""
        self._control(view, m.SetMode, mode=mode, index=index)

    def set_slice(self, index: int, *, view: int | None = None) -> None:
        """Show slice ``index`` along the current slice axis."""
        self._control(view, m.SetSlice, index=int(index))

    def set_window(self, preset: str | None = None, *, width: float | None = None, level: float | None = None,
                   view: int | None = None) -> None:
        """Slice grey window: a preset (``"brain"``, ``"subdural"``, ``"bone"``, ``"lung"``, ``"abdomen"``,
        ``"auto"``) or ``width``/``level`` in image units (HU for CT)."""
        self._control(view, m.SetWindow, preset=preset, width=width, level=level)

    def set_slice_channel(self, channel: int | str, *, view: int | None = None) -> None:
        """Which MR sequence the view shows, in slices and in 3-D: a channel index or name (``"T1c"``,
        ``"FLAIR"``); slices start on the new channel's auto window."""
        session = self._sessions[0 if view is None else self._check_view(view)]
        self._control(view, m.SetSliceChannel, channel=channel_index(session.volume, channel))

    def set_label_overlay(self, on: bool, opacity: float | None = None, *, view: int | None = None) -> None:
        """Draw the label map over slice views (greyscale without it), at ``opacity`` in [0, 1]."""
        self._control(view, m.SetLabelOverlay, on=_flag("on", on), opacity=opacity)

    def set_linked(self, on: bool) -> None:
        """One camera for every view (orbit one, all follow), or each its own (Compare)."""
        if on and self._unlink is None and len(self._sessions) > 1:
            self._unlink = link_cameras(self._sessions)
        elif not on and self._unlink is not None:
            self._unlink()
            self._unlink = None

    # -- crosshair, annotations, scenes ------------------------------------------------------------
    def set_cursor(self, position: Sequence[float] | None, *, view: int = 0) -> None:
        """Put the crosshair at ``position`` (mm, RAS; ``None``: hide it); the slices move there, and
        linked views follow."""
        self._sessions[self._check_view(view)].set_cursor(position)

    def annotate(self, text: str, position: Sequence[float] | None = None, *, view: int = 0) -> None:
        """Label ``position`` (mm, RAS; default: the cursor) with ``text``: drawn on the 3-D view
        (it stays on the anatomy while orbiting) and on the slices it lies on."""
        self._sessions[self._check_view(view)].add_annotation(text, position)

    def clear_annotations(self, *, view: int = 0) -> None:
        """Remove every annotation and the cursor (linked views follow)."""
        self._control(view, m.RemoveAnnotation)

    def scene(self, *, view: int = 0) -> dict:
        """The view's scene (preset, classes, camera, slices, window, cursor, annotations) as a dict."""
        return scene_to_dict(self._sessions[self._check_view(view)])

    def save_scene(self, path: str | Path, *, view: int = 0) -> Path:
        """Write the view's scene to ``path`` (a small JSON file to hand out)."""
        return save_scene(self._sessions[self._check_view(view)], path)

    def load_scene(self, scene: str | Path | dict, *, view: int | None = None) -> None:
        """Restore a scene (a file or a :meth:`scene` dict) onto one view, or onto all (the first view
        takes all of it, the others keep their renderer and preset, four-up planes their plane)."""
        data = scene if isinstance(scene, dict) else read_scene(scene)
        where = None if isinstance(scene, dict) else str(scene)
        if view is None:
            self.control.load_scene(data, where)
        else:
            apply_scene(self._sessions[self._check_view(view)], data, where)

    # -- segmentation corrections (Compare.segmentations) ----------------------------------------
    def dice(self) -> dict[str, dict[str, float]] | None:
        """Dice (WT, TC, ET) of the raw and denoised INR views against the ground truth."""
        seg = self._require_segmentation()
        seg.wait()
        return seg.dice()

    def mark_stroke(self, axis: str, index: int, points, label: int, radius: float = 2.0) -> int:
        """Mark voxels along a stroke on a slice: ``points [M, 2]`` voxel coordinates in the plane
        of ``axis`` at ``index`` (first, second remaining array axes); ``label`` 0 = not tumour,
        1 NCR, 2 ED, 3 ET; ``radius`` in voxels. Returns the number of voxels marked."""
        return self._require_segmentation().mark_stroke(axis, index, points, label, radius)

    def apply_correction(self, *, steps: int | None = None):
        """Fine-tune the INR on the marks until they are honoured (blocking; the views show
        "correcting: step n/N"); the raw and denoised views (and Dice) update. Returns the engine's
        ``CorrectionResult``."""
        return self._require_segmentation().apply_correction(steps=steps)

    def save_segmentation(self, path: str | Path, *, view: int = 2) -> Path:
        """Write a segmentation view's labels (default 2: the denoised INR's, corrections included) to
        ``path``: ``.nii.gz``, ``.nrrd``, ``.mha`` or ``.dcm`` (DICOM SEG)."""
        return self._require_segmentation().save(path, view)

    def undo_correction(self):
        """Undo the last applied correction; returns the raw labels shown again."""
        return self._require_segmentation().undo_correction()

    def clear_marks(self) -> None:
        """Forget the pending marks (not applied; an undo brings back the marks of the correction it undid)."""
        self._require_segmentation().clear_marks()

    def _require_segmentation(self) -> SegmentationViews:
        if self.segmentation is None:
            raise InputError("these views are not segmentation views; use Compare.segmentations(case)")
        return self.segmentation

    def look_from(self, azimuth: float, elevation: float = 0.0, *, view: int | None = None) -> None:
        """Turn the 3-D camera to ``azimuth`` degrees (0: anterior, 90: the patient's left, 180:
        posterior, 270: the right) and ``elevation`` degrees towards superior (-90..90); linked views follow."""
        for i in self._views(view):
            self._sessions[i].look_from(azimuth, elevation)

    def reset_camera(self, *, view: int | None = None) -> None:
        """Back to the home view, slices fitted (linked views follow)."""
        self._control(view, m.ResetCamera)

    def screenshot(self, path: str | Path | None = None, *, view: int | None = None) -> bytes:
        """A full-quality PNG of one view, or of all views side by side (``view=None``).

        Blocks until rendered; writes the PNG to ``path`` too when given.
        """
        indices = range(len(self._streams)) if view is None else [self._check_view(view)]
        pngs = [self._streams[i].screenshot() for i in indices]
        if len(pngs) == 1:
            data = pngs[0]
        else:
            seg = self.segmentation
            captions = [" · ".join(t for t in (self._titles[i], seg.caption(i).replace("\n", " — ")
                                               if seg is not None else "") if t)
                        for i in indices]
            data = side_by_side(pngs, captions=captions)
        if path is not None:
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))    # never half a file over a good one
        return data

    def close(self) -> None:
        """Stop the render threads, unlink cameras, close the sessions this widget created."""
        if not getattr(self, "_closed", True):
            self._closed = True
            self.control.close()
            for s in self._streams:
                s.close()
            for u in self._unsubscribe:
                u()
            if self._unlink is not None:
                self._unlink()
            for unlink in (self._unlink_modes, self._unlink_points):
                if unlink is not None:
                    unlink()
            for s, owned in zip(self._sessions, self._owned):
                if owned:
                    s.close()
        super().close()

    # -- state mirror ---------------------------------------------------------------------------
    def _views(self, view: int | None) -> list[int]:
        return list(range(len(self._sessions))) if view is None else [self._check_view(view)]

    def _control(self, view: int | None, kind: type, **fields) -> None:
        """Send a ``kind`` message to one view or to all (once when styles are shared anyway)."""
        views = self._views(view)
        if view is None and self.control.shared_styles and issubclass(kind, STYLE_MESSAGES):
            views = views[:1]
        for i in views:
            try:
                msg = kind(view=i, **fields)
            except m.MessageError as exc:      # the page's protocol checks; from Python, a bad argument
                raise InputError(str(exc).split(" message: ", 1)[-1]) from None
            self.control.handle(msg)

    def _check_view(self, view: int) -> int:
        if not 0 <= int(view) < len(self._sessions):
            raise InputError(f"view must lie in 0..{len(self._sessions) - 1}, got {view}")
        return int(view)

    def _view_state(self, i: int) -> dict:
        s = self._sessions[i]
        snap = s.snapshot()  # one consistent reading of the session's state
        table, preset, renderer = snap.scene.classes, snap.preset, snap.renderer
        classes = [{"index": c.index, "name": c.name, "color": _hex(c.color), "opacity": float(c.opacity),
                    "visible": bool(c.visible), "group": c.group} for c in table.styles]
        groups = []
        for g in dict.fromkeys(c.group for c in table.styles if c.group):  # in class-table order
            vis = [c.visible for c in table.styles if c.group == g]
            groups.append({"name": g, "visible": "all" if all(vis) else "none" if not any(vis) else "some"})
        status, busy = self._status[i]
        seg = self.segmentation
        window = window_readout(s)
        return {"title": self._titles[i], "preset": preset, "renderer": renderer,
                "class_colors": bool(table.use_class_colors), "classes": classes, "groups": groups,
                "cinematic": s.still_renderer is not None,
                "mode": snap.mode, "slice_index": int(snap.slice_index), "slice_count": s.slice_count(snap.mode),
                "can_slice": s.volume is not None,
                "channels": list(s.volume.channels) if s.volume is not None else [],
                "slice_channel": int(snap.slice_channel),
                "subtitle": seg.caption(i) if seg is not None else "",
                "correctable": seg is not None, "marks": seg.n_marks if seg is not None else 0,
                "can_undo": seg is not None and seg.can_undo,
                "correcting": seg is not None and seg.correcting,
                "last_correction": seg.last_correction if seg is not None else "",
                "brush_mm": self.control.brush_mm,
                "mm_per_px": s.slice_geometry(snap).mm_per_px if snap.mode != "3d" else 0.0,
                "label_overlay": bool(s.label_overlay), "overlay_opacity": float(s.overlay),
                "hu": s.volume is not None and s.volume.modality == "CT",
                "window_preset": window[0], "window": window[1], "auto_window": s.auto_window_label(),
                "probe": shown_readout(s, self.control.probes[i]), "status": status, "busy": busy,
                "stale": shows_other_renderer(s, self._shown[i]),   # dimmed: the previous renderer's image
                "cursor": "" if snap.cursor is None else "({:.1f}, {:.1f}, {:.1f}) mm RAS".format(*snap.cursor),
                "annotations": [a.text for a in snap.annotations]}

    def _sync_views(self) -> None:
        # Called from the kernel thread and from render threads: one writer at a time.
        with self._state_lock:
            if not self._closed:
                self.views = [self._view_state(i) for i in range(len(self._sessions))]

    def _on_session_change(self, _session: RenderSession, what: str) -> None:
        if what != "camera":
            self._sync_views()

    def _on_status(self, i: int, busy: bool, message: str) -> None:
        with self._state_lock:
            self._status[i] = (message, busy)
        self._sync_views()

    # -- frames ---------------------------------------------------------------------------------
    def _send_frame(self, i: int, frame) -> None:
        """FrameStream callback (render thread): one frame as one binary buffer."""
        header = m.FrameOut(view=i, **frame.meta())
        self.send(header.to_json(), buffers=[frame.data])
        stale = shows_other_renderer(self._sessions[i], self._shown[i])
        self._shown[i] = frame.renderer
        if stale != shows_other_renderer(self._sessions[i], frame.renderer):
            self._sync_views()

    # -- browser messages -----------------------------------------------------------------------
    def _on_client_msg(self, _widget, content, buffers) -> None:
        """Every browser message enters here; nothing it contains may raise into the kernel."""
        view = content.get("view") if isinstance(content, dict) else None
        try:
            msg = m.parse_client_message(content)
            self._check_view(msg.view)
            self._dispatch(msg)
        except (m.MessageError, InputError) as exc:
            log.warning("rfmweb widget: ignored message %r: %s", _short(content), exc)
            self._reply_error(view, str(exc), content)
        except Exception as exc:  # a bug of ours: log it with the traceback, keep the kernel alive
            log.exception("rfmweb widget: handling message %r failed", _short(content))
            self._reply_error(view, f"internal error: {exc}", content)

    def _reply_error(self, view, text: str, content) -> None:
        request = content.get("request") if isinstance(content, dict) else None
        try:
            self.send(m.ErrorOut(view if isinstance(view, int) else -1, text,
                                 request if isinstance(request, int) else None).to_json())
        except Exception:
            log.exception("rfmweb widget: could not report an error to the page")

    def _dispatch(self, msg: m.ClientMessage) -> None:
        """Frame transport here (acks, first frames, screenshots); every control to the controller."""
        i = msg.view
        session, stream = self._sessions[i], self._streams[i]
        if isinstance(msg, m.Ack):
            stream.ack(msg.id)
        elif isinstance(msg, m.Ready):
            # a (re)mounted page has no frames in flight and needs a first frame even if nothing changed
            session.resize(msg.width, msg.height)
            self.control.set_pixel_ratio(i, msg.ratio)
            stream.resume()
        elif isinstance(msg, m.SaveScene):
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self._titles[i]}_scene").strip("_")
            text = json.dumps(scene_to_dict(session), indent=1)
            self.send(m.SceneOut(i, msg.request, f"{name or 'rfmweb'}.json", text).to_json())
        elif isinstance(msg, m.SaveSegmentation):
            threading.Thread(target=self._reply_segmentation, args=(msg,), name="rfmweb-save-seg",
                             daemon=True).start()
        elif isinstance(msg, m.Screenshot):
            # rendering a full-quality PNG takes a while: never on the kernel's thread
            threading.Thread(target=self._reply_screenshot, args=(msg,), name="rfmweb-screenshot",
                             daemon=True).start()
        else:
            self.control.handle(msg)

    def _reply_segmentation(self, msg: m.SaveSegmentation) -> None:
        try:
            seg = self._require_segmentation()
            data = seg.segmentation_file(msg.view)
        except Exception as exc:
            log.warning("rfmweb widget: saving the segmentation failed: %s", exc)
            self.send(m.ErrorOut(msg.view, f"saving the segmentation failed: {exc}", msg.request).to_json())
            return
        self.send(m.FileOut(msg.view, msg.request, seg.download_name(msg.view), "application/gzip").to_json(),
                  buffers=[data])

    def _reply_screenshot(self, msg: m.Screenshot) -> None:
        try:
            png = self._streams[msg.view].screenshot()
        except Exception as exc:
            log.exception("rfmweb widget: screenshot failed")
            self.send(m.ErrorOut(msg.view, f"screenshot failed: {exc}", msg.request).to_json())
            return
        s = self._sessions[msg.view]
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{self._titles[msg.view]}_{s.preset_name}").strip("_")
        self.send(m.ScreenshotOut(msg.view, msg.request, f"{name or 'rfmweb'}.png").to_json(), buffers=[png])


def _short(content, limit: int = 200) -> str:
    text = repr(content)
    return text if len(text) <= limit else text[:limit] + "..."


def _class_index(session: RenderSession, index_or_name: int | str) -> int:
    styles = session.classes.styles
    if isinstance(index_or_name, str):
        for c in styles:
            if c.name.lower() == index_or_name.lower():
                return c.index
        raise InputError(f"no class named {index_or_name!r}; classes are {[c.name for c in styles]}")
    return session.classes.style(int(index_or_name)).index


class Viewer(_Views):
    """One interactive view of a volume in a notebook.

    Args:
        volume_or_session: a :class:`~rfmweb.Volume` (a new session is made) or a
            :class:`~rfmweb.RenderSession` to show (shared: changes from either side show up in both).
        renderer: renderer name (default: the fastest here); preset: preset name (default per modality).
        width, height: canvas size in CSS pixels.
        title: shown above the canvas (default: the volume's name).

    Example:
        >>> from rfmweb.widgets import Viewer                              # doctest: +SKIP
        >>> v = Viewer(rfmweb.samples.load("ct_phantom"), preset="CT-Bone")  # doctest: +SKIP
        >>> v.set_group_visible("skeleton", False); v                     # doctest: +SKIP
    """

    def __init__(self, volume_or_session: ViewSource, *, renderer: str | None = None, preset: str | None = None,
                 width: int = 512, height: int = 512, title: str | None = None) -> None:
        session, owned = _session_for(volume_or_session, renderer, preset, width, height)
        super().__init__([session], owned=[owned], titles=[title], width=width, height=height,
                         arrangement="side", link=False)

    @property
    def session(self) -> RenderSession:
        return self._sessions[0]

    @property
    def stream(self) -> FrameStream:
        return self._streams[0]


def _flag(name: str, value) -> bool:
    """``value`` as a bool, refusing what is not one (``set_class_colors("no")`` switched them on)."""
    if not isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be True or False, got {value!r}")
    return bool(value)
