"""Scene files: a view's look (transfer function, classes, camera, slices, window, cursor,
annotations and ruler) as a small JSON a teacher can hand out, and back.

The file names no server path and no patient: it records the grid it was made on (shape, voxel
size, modality) and refuses to restore onto another grid; the volume itself comes from whoever
opens it (``rfmweb serve scan``, the widget's volume). Example (abridged)::

    {"format": "rfmweb-scene/1", "grid": {"shape": [256, 256, 120], "spacing": [0.9, 0.9, 1.5], "modality": "CT"},
     "renderer": "compiled", "preset": "CT-Bone", "classes": {"use_class_colors": true, "styles": [...]},
     "camera": {"target": [0, 0, 0], "azimuth": 30, "elevation": 20, "distance": 600, "fov": 30, "aspect": 1.34},
     "view": {"mode": "axial", "slices": {"axial": 60, ...}, "window": [-160, 240], ...},
     "cursor": [12.5, -3.0, 40.0], "annotations": [{"position": [12.5, -3.0, 40.0], "text": "optic chiasm"}],
     "ruler": [[10.0, -3.0, 40.0], [52.5, -3.0, 40.0]]}

A scene saved by the web app also holds its ``"layout"`` (compare, the right view's renderer and
preset, linked cameras, difference, four views: :mod:`rfmweb.app.layout`), which the app restores and
other front ends ignore.

The camera's ``aspect`` (width / height of the view it was saved from; optional) lets a view of
another shape show the same thing across its narrower side (:meth:`OrbitCamera.in_viewport`): a
scene saved in a wide window opens whole on a tall one.

Core code: no UI imports.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..camera import OrbitCamera
from ..errors import InputError
from ..io.atomic import atomic_write
from ..render.registry import renderer_names
from ..render.slices import AXES, ZOOM_RANGE
from ..transfer import PRESETS
from ..transfer.paraview import tf_from_paraview, tf_to_paraview
from .pointing import Annotation, Ruler, check_point

if TYPE_CHECKING:
    from .session import RenderSession

log = logging.getLogger(__name__)

FORMAT = "rfmweb-scene/1"
#: The largest scene file read (bytes): a scene is a few kB; anything bigger is not one.
MAX_SCENE_BYTES = 256 * 1024
_KEYS = {"format", "grid", "renderer", "preset", "transfer_function", "classes", "camera", "view", "cursor",
         "annotations", "ruler", "layout"}


def scene_to_dict(session: "RenderSession") -> dict:
    """What ``session`` shows, as a JSON-ready dict (see the module docstring)."""
    snap = session.snapshot()
    vol = session.volume
    out: dict = {"format": FORMAT}
    if vol is not None:
        out["grid"] = {"shape": list(vol.shape), "spacing": [round(float(s), 6) for s in vol.spacing],
                       "modality": vol.modality}
    out["renderer"] = snap.renderer
    out["preset"] = snap.preset
    if snap.preset not in PRESETS:  # a custom transfer function travels whole
        out["transfer_function"] = tf_to_paraview(snap.scene.tf)
    out["classes"] = {"use_class_colors": snap.scene.classes.use_class_colors,
                      "styles": [{"index": s.index, "visible": s.visible, "opacity": s.opacity,
                                  "color": "#%02x%02x%02x" % tuple(int(round(c * 255)) for c in s.color[:3])}
                                 for s in snap.scene.classes.styles]}
    cam = snap.camera.to_dict()
    width, height = cam.pop("width"), cam.pop("height")  # the viewer's size, not the scene's: its shape
    cam["aspect"] = round(width / height, 6)
    out["camera"] = cam
    out["view"] = {"mode": snap.mode, "slices": dict(session.slice_indices),
                   "window": None if session.window is None else list(session.window),
                   "zoom": snap.slice_zoom, "pan": list(snap.slice_pan), "label_overlay": session.label_overlay,
                   "overlay": session.overlay, "channel": snap.slice_channel}
    out["cursor"] = None if snap.cursor is None else list(snap.cursor)
    out["annotations"] = [a.to_dict() for a in snap.annotations]
    out["ruler"] = None if snap.ruler is None else [list(snap.ruler.start), list(snap.ruler.end)]
    return out


def save_scene(session: "RenderSession", path: str | os.PathLike) -> Path:
    """Write ``session``'s scene to ``path`` (JSON; written to a temporary file, then renamed)."""
    text = json.dumps(scene_to_dict(session), indent=1)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_scene(path: str | os.PathLike) -> dict:
    """A scene file's JSON (checked for size and syntax; :func:`apply_scene` checks the content)."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_SCENE_BYTES:
            raise InputError(f"{size} bytes is too large for a scene file (at most {MAX_SCENE_BYTES})", p)
        return parse_scene(p.read_text(encoding="utf-8"), p)
    except FileNotFoundError:
        raise InputError("no such scene file", p) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the scene file: {exc}", p) from None


def parse_scene(text: str, where: str | os.PathLike | None = "scene") -> dict:
    """A scene's JSON text (e.g. uploaded by a browser) -> dict; InputError for anything else."""
    if len(text) > MAX_SCENE_BYTES:
        raise InputError(f"a scene is at most {MAX_SCENE_BYTES} bytes, got {len(text)}", where)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not a scene file: invalid JSON ({exc.msg} at line {exc.lineno})", where) from None
    except RecursionError:
        raise InputError("not a scene file: JSON nested too deeply", where) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a scene file: expected a JSON object with \"format\": \"{FORMAT}\"", where)
    return data


def apply_scene(session: "RenderSession", data: dict, where: str | os.PathLike | None = "scene") -> None:
    """Restore a scene onto ``session`` (its volume must lie on the scene's grid).

    Everything is checked before anything changes, so a bad scene leaves the view as it was; a
    renderer this machine lacks is skipped (logged) and the rest restored.
    """
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise InputError(f"not a scene: expected \"format\": \"{FORMAT}\"", where)
    unknown = set(data) - _KEYS
    if unknown:
        raise InputError(f"unknown scene fields {sorted(unknown)}", where)
    try:
        plan = _plan(session, data)
    except InputError as exc:
        raise InputError(exc.reason, where) from None
    except (TypeError, ValueError, KeyError) as exc:
        raise InputError(f"malformed scene: {exc}", where) from None
    for step in plan:
        step()


def _plan(session: "RenderSession", data: dict) -> list:
    """The checked changes of a scene, as calls to make in order (nothing changed yet)."""
    vol = session.volume
    grid = data.get("grid")
    if vol is not None and grid is not None:
        shape = tuple(int(v) for v in grid["shape"])
        if shape != tuple(vol.shape) or not np.allclose(grid["spacing"], vol.spacing, rtol=1e-3):
            raise InputError(f"the scene was made on a {'x'.join(map(str, shape))} grid of "
                             f"{'x'.join(f'{s:g}' for s in grid['spacing'])} mm voxels; this view shows "
                             f"{'x'.join(map(str, vol.shape))} of {'x'.join(f'{s:g}' for s in vol.spacing)} mm")
    plan: list = []
    renderer = data.get("renderer")
    if renderer is not None:
        if renderer in renderer_names():
            plan.append(lambda: session.set_renderer(renderer))
        else:
            log.warning("the scene's renderer %r is not available here; keeping %s", renderer, session.renderer_name)
    if "transfer_function" in data:
        tf = tf_from_paraview(data["transfer_function"], "the scene's transfer_function")
        tf = replace(tf, name=str(data.get("preset") or tf.name))
        plan.append(lambda: session.set_tf(tf))
    elif data.get("preset") is not None:
        if data["preset"] not in PRESETS:
            raise InputError(f"unknown preset {data['preset']!r}")
        plan.append(lambda: session.set_preset(data["preset"]))
    if "classes" in data:
        plan.append(_classes_step(session, data["classes"]))
    if "camera" in data:
        cam = _camera(data["camera"], session.camera.width, session.camera.height)
        plan.append(lambda: session.set_camera(cam))
    if "view" in data:
        plan.extend(_view_steps(session, data["view"]))
    if "annotations" in data:
        items = data["annotations"]
        if not isinstance(items, list):
            raise InputError("'annotations' must be a list")
        notes = [Annotation(check_point(a["position"], "annotation position"), a["text"]) for a in items]
        plan.append(lambda: session.set_annotations(notes))
    if "cursor" in data:
        cursor = None if data["cursor"] is None else check_point(data["cursor"], "cursor")
        plan.append(lambda: session.set_cursor(cursor))
    if "ruler" in data:
        ends = data["ruler"]
        if ends is not None and not (isinstance(ends, list) and len(ends) == 2):
            raise InputError("'ruler' must be null or its two ends [[x, y, z], [x, y, z]] (mm)")
        ruler = None if ends is None else Ruler(*ends)       # checks each end
        plan.append(lambda: session.measure(None) if ruler is None else session.measure(ruler.start, ruler.end))
    return plan


def _camera(data, width: int, height: int) -> OrbitCamera:
    """The scene's camera for a ``width x height`` view (fitted from the saved view's ``aspect``)."""
    if not isinstance(data, dict):
        raise InputError("the scene's camera must be an object")
    fields = dict(data)
    aspect = fields.pop("aspect", None)
    if aspect is None:
        return OrbitCamera.from_dict({**fields, "width": width, "height": height})
    if isinstance(aspect, bool) or not isinstance(aspect, (int, float)) or not 1e-3 < aspect < 1e3:
        raise InputError(f"the scene's camera aspect must be a number between 0.001 and 1000, got {aspect!r}")
    saved = OrbitCamera.from_dict({**fields, "width": max(1, round(1000 * aspect)), "height": 1000})
    return saved.in_viewport(width, height)


def _classes_step(session: "RenderSession", classes: dict):
    table = session.classes
    known = {s.index for s in table.styles}
    for item in classes.get("styles", []):
        index = int(item["index"])
        if index not in known:
            raise InputError(f"the scene styles class {index}, which this volume's labels lack")
        color = item.get("color")
        rgb = None if color is None else tuple(int(color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))
        opacity = float(item.get("opacity", table.style(index).opacity))
        if not 0.0 <= opacity <= 1.0:
            raise InputError(f"class {index}: opacity must lie in [0, 1], got {opacity}")
        changes = {"opacity": opacity, "visible": bool(item.get("visible", True))}
        if rgb is not None:
            changes["color"] = rgb
        table = table.updated(index, **changes)
    table = replace(table, use_class_colors=bool(classes.get("use_class_colors", table.use_class_colors)))
    return lambda: session.set_class_table(table)


def _view_steps(session: "RenderSession", view: dict) -> list:
    from .session import VIEW_MODES

    steps = []
    mode = view.get("mode", "3d")
    if mode not in VIEW_MODES or (mode != "3d" and session.volume is None):
        raise InputError(f"view mode must be one of {VIEW_MODES} (slices need a volume), got {mode!r}")
    if session.volume is None:  # splats alone: no slice state to restore
        return []
    slices = {k: int(v) for k, v in (view.get("slices") or {}).items()}
    for axis, index in slices.items():
        if axis not in AXES:
            raise InputError(f"unknown slice axis {axis!r}")
        session._check_index(axis, index)
    if "channel" in view:  # before the window: another channel starts on its own auto window
        channel = int(view["channel"])
        steps.append(lambda: session.set_slice_channel(channel))
    window = view.get("window")
    if window is not None:
        lo, hi = (float(v) for v in window)
        if not (np.isfinite([lo, hi]).all() and hi > lo):
            raise InputError(f"window must be [low, high] with high > low, got {window}")
        steps.append(lambda: session.set_window(hi - lo, (lo + hi) / 2))
    else:
        steps.append(lambda: session.set_window(None))
    zoom = float(view.get("zoom", 1.0))
    if not ZOOM_RANGE[0] <= zoom <= ZOOM_RANGE[1]:
        raise InputError(f"slice zoom must lie in {ZOOM_RANGE}, got {zoom}")
    pan = tuple(float(v) for v in view.get("pan", (0.0, 0.0)))
    if len(pan) != 2 or not np.isfinite(pan).all():
        raise InputError(f"slice pan must be two finite numbers (mm), got {view.get('pan')}")
    overlay = float(view.get("overlay", session.overlay))
    steps.append(lambda: session.set_overlay(overlay))
    steps.append(lambda: session.set_label_overlay(bool(view.get("label_overlay", False))))
    steps.append(lambda: session.set_slice_view(zoom, pan))
    for axis, index in slices.items():
        steps.append(lambda axis=axis, index=index: session.set_view_mode(axis, index))
    steps.append(lambda: session.set_view_mode(mode))
    return steps
