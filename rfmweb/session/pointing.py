"""The crosshair cursor and annotations of a view: world points (mm, RAS) that every view draws.

A click on a slice view puts the cursor on the voxel under it; a click on the 3-D view puts it on
the surface under it (the ray-marcher's depth, :func:`rfmweb.render.pick.pick`). The slice views
then show the three planes through the cursor, with crosshair lines; the 3-D view draws it as a
small 3-D cross. Annotations are labelled points (a teacher's "optic chiasm") drawn on the 3-D view,
where they stay on the anatomy while orbiting, and on the slices they lie on. Linked views share both
(:func:`rfmweb.session.linking.link_points`). A ruler (:class:`Ruler`) is a distance measured between
two points of a slice plane, drawn with its length on the slices holding both ends and on the 3-D
view; linked views share it, as they share the cursor. Core code: no UI imports.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch

from ..errors import InputError
from ..render.pick import opacity_in_front, pick, project
from ..render.slices import AXES, SliceGeometry

if TYPE_CHECKING:
    from ..camera import OrbitCamera
    from ..volume import Volume

#: The most annotations a view holds, and the longest label (characters).
MAX_ANNOTATIONS = 200
MAX_TEXT = 80
CURSOR_COLOR = (0, 230, 120)
ANNOTATION_COLOR = (255, 120, 200)
#: An annotation behind the surface of the 3-D view: its ring and label, dimmed.
HIDDEN_COLOR = (200, 95, 160)
#: Half-length of the 3-D cursor's arms, as a fraction of the volume's largest side.
CURSOR_ARM = 0.08
#: Labels of a reduced 3-D frame smaller than this (px) are left out (the page would magnify a blur).
MIN_LABEL_PX = 8
#: Annotations within this many voxels of a slice are drawn on it.
SLICE_TOLERANCE = 1.0
RULER_COLOR = (255, 210, 0)


@dataclass(frozen=True)
class Annotation:
    """A labelled world point: ``position`` ``(x, y, z)`` mm (RAS), ``text`` one line."""

    position: tuple[float, float, float]
    text: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "position", check_point(self.position, "annotation position"))
        object.__setattr__(self, "text", check_text(self.text))

    def to_dict(self) -> dict:
        return {"position": list(self.position), "text": self.text}


def check_point(value, what: str = "point") -> tuple[float, float, float]:
    """``value`` as three finite floats (mm), or an InputError naming ``what``."""
    try:
        p = tuple(float(c) for c in value)
    except (TypeError, ValueError):
        raise InputError(f"{what} must be three numbers (mm), got {value!r}") from None
    if len(p) != 3 or not np.isfinite(p).all():
        raise InputError(f"{what} must be three finite numbers (mm), got {value!r}")
    return p  # type: ignore[return-value]


def check_text(text) -> str:
    """An annotation label: a non-empty line of at most :data:`MAX_TEXT` printable characters."""
    if not isinstance(text, str):
        raise InputError(f"annotation text must be a string, got {type(text).__name__}")
    text = text.strip()
    if not text or len(text) > MAX_TEXT:
        raise InputError(f"annotation text must have 1..{MAX_TEXT} characters, got {len(text)}")
    if any(unicodedata.category(c)[0] == "C" for c in text):
        raise InputError("annotation text must be one line of printable characters")
    return text


@dataclass(frozen=True)
class Ruler:
    """A measured distance: from ``start`` to ``end``, world points (mm, RAS)."""

    start: tuple[float, float, float]
    end: tuple[float, float, float]

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", check_point(self.start, "ruler start"))
        object.__setattr__(self, "end", check_point(self.end, "ruler end"))

    @property
    def length_mm(self) -> float:
        return float(np.linalg.norm(np.subtract(self.end, self.start)))

    def text(self) -> str:
        """The length as drawn beside the ruler, e.g. ``"42.3 mm"``."""
        return f"{self.length_mm:.1f} mm"


class Pointing:
    """Cursor and annotation state of :class:`~rfmweb.session.session.RenderSession` (a mixin: it
    uses the session's lock, volume, camera, slice indices and change notification)."""

    cursor: tuple[float, float, float] | None = None
    annotations: tuple[Annotation, ...] = ()
    ruler: Ruler | None = None
    _picker = None  # the ray-marcher of 3-D picks
    _hidden = None  # (scene, camera, annotations) -> hidden_annotations of the last 3-D frame

    def point_at(self, u: float, v: float) -> np.ndarray | None:
        """World point ``[3]`` mm under pixel ``(u right, v down)`` of the current frame: the voxel
        centre on a slice view, the surface (opacity 0.5) on the 3-D view; ``None`` off the volume."""
        snap = self.snapshot()
        vol = snap.scene.volume
        if vol is None:
            raise InputError("pointing at a point needs a volume (this view shows splats alone)")
        if snap.mode == "3d":
            hit = pick(self.scene_3d(snap.scene), snap.camera, float(u), float(v), self._marcher())
            return None if hit is None else hit.point
        ijk = np.rint(self.slice_geometry(snap).to_voxel([u], [v])[0])
        if not all(0 <= c < n for c, n in zip(ijk, vol.shape)):
            return None
        return (vol.affine @ np.append(ijk, 1.0))[:3]

    def hidden_annotations(self, snap) -> list[bool]:
        """Per annotation of ``snap`` (a 3-D view's snapshot): whether it lies behind what the view
        shows, i.e. the ray-marcher reaches opacity 0.5 before it (:func:`opacity_in_front`); all
        ``False`` without a volume (splats alone)."""
        if snap.scene.volume is None or not snap.annotations:
            return [False] * len(snap.annotations)
        key = (snap.scene, snap.camera, snap.annotations)
        held = self._hidden
        if held is None or held[0] != key:       # a resting view's passes share one answer
            points = np.array([a.position for a in snap.annotations])
            hidden = opacity_in_front(self.scene_3d(snap.scene), snap.camera, points, self._marcher()) >= 0.5
            held = self._hidden = (key, hidden.tolist())
        return held[1]

    def _marcher(self):
        """The CPU ray-marcher of picks and occlusion, kept: it holds the prepared scene."""
        if self._picker is None:
            from ..render.dvr import RaymarchRenderer
            self._picker = RaymarchRenderer(torch.device("cpu"))
        return self._picker

    def set_cursor(self, position: Sequence[float] | None) -> None:
        """Put the crosshair at ``position`` (mm, RAS; ``None``: hide it); the slice views move to
        the planes through it (clamped to the volume)."""
        point = None if position is None else check_point(position, "cursor")
        with self._lock:
            if point == self.cursor:
                return
            self.cursor = point
            if point is not None and self.volume is not None:
                ijk = np.linalg.solve(self.volume.affine, np.append(point, 1.0))[:3]
                for axis, i in AXES.items():
                    self.slice_indices[axis] = int(np.clip(np.rint(ijk[i]), 0, self.volume.shape[i] - 1))
        self._changed("cursor")

    def cursor_to_slice(self) -> None:
        """Move the cursor along the current slice view's axis onto the slice it shows (as in 3D
        Slicer: stepping the axial slice moves the axial line in the other planes and the 3-D cross);
        nothing without a cursor or on the 3-D view."""
        with self._lock:
            if self.cursor is None or self.volume is None or self.mode not in AXES:
                return
            ijk = np.linalg.solve(self.volume.affine, np.append(self.cursor, 1.0))
            i, index = AXES[self.mode], self.slice_indices[self.mode]
            if int(np.clip(np.rint(ijk[i]), 0, self.volume.shape[i] - 1)) == index:
                return
            ijk[i] = index
            point = (self.volume.affine @ ijk)[:3]
        self.set_cursor(point.tolist())

    def add_annotation(self, text: str, position: Sequence[float] | None = None) -> Annotation:
        """Label ``position`` (default: the cursor) with ``text``; returns the annotation."""
        if position is None:
            if self.cursor is None:
                raise InputError("place the cursor first (click a point), then annotate it")
            position = self.cursor
        note = Annotation(check_point(position, "annotation position"), text)
        with self._lock:
            if len(self.annotations) >= MAX_ANNOTATIONS:
                raise InputError(f"a view holds at most {MAX_ANNOTATIONS} annotations")
            self.annotations = self.annotations + (note,)
        self._changed("annotations")
        return note

    def remove_annotation(self, index: int | None = None) -> None:
        """Remove annotation ``index`` (0-based; ``None``: all of them)."""
        with self._lock:
            if index is None:
                self.annotations = ()
            else:
                if not 0 <= int(index) < len(self.annotations):
                    raise InputError(f"no annotation {index}; there are {len(self.annotations)}")
                self.annotations = self.annotations[:int(index)] + self.annotations[int(index) + 1:]
        self._changed("annotations")

    def measure(self, start: Sequence[float] | None, end: Sequence[float] | None = None) -> Ruler | None:
        """Measure from ``start`` to ``end`` (world mm, RAS): the view's ruler, drawn with its length;
        ``start=None`` removes it. Returns the ruler."""
        ruler = None if start is None else Ruler(start, end)
        with self._lock:
            if ruler == self.ruler:
                return ruler
            self.ruler = ruler
        self._changed("ruler")
        return ruler

    def measure_pixels(self, start: Sequence[float], end: Sequence[float]) -> Ruler:
        """Measure between two pixels ``(u right, v down)`` of the slice view shown: the points of
        the slice plane under them (not snapped to voxel centres), in the plane's true mm."""
        snap = self.snapshot()
        if snap.mode == "3d" or snap.scene.volume is None:
            raise InputError("measure on a slice view: the 3-D view has no plane to measure in")
        ijk = self.slice_geometry(snap).to_voxel([start[0], end[0]], [start[1], end[1]])
        world = (snap.scene.volume.affine @ np.c_[ijk, np.ones(2)].T).T[:, :3]
        return self.measure(world[0].tolist(), world[1].tolist())

    def set_annotations(self, annotations: Sequence[Annotation]) -> None:
        """Replace every annotation (a linked view's, a scene file's)."""
        notes = tuple(annotations)
        if len(notes) > MAX_ANNOTATIONS or not all(isinstance(a, Annotation) for a in notes):
            raise InputError(f"annotations must be at most {MAX_ANNOTATIONS} Annotation objects")
        with self._lock:
            if notes == self.annotations:
                return
            self.annotations = notes
        self._changed("annotations")


# -- drawing --------------------------------------------------------------------------------------
def font(size: int):
    """PIL's default font at ``size`` pixels (the fixed bitmap font on Pillow < 10.1)."""
    from PIL import ImageFont
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has one fixed-size bitmap font
        return ImageFont.load_default()


def _canvas(image: np.ndarray):
    """``(PIL image, its ImageDraw, label size px)`` to draw over ``image`` ``[H, W, 3]`` uint8."""
    from PIL import Image, ImageDraw

    pil = Image.fromarray(image)
    return pil, ImageDraw.Draw(pil), label_px(image.shape[1], image.shape[0])


def label_px(width: int, height: int) -> int:
    """Label text size (px) on a ``width x height`` frame: 1/28 of its shorter side, at least 10."""
    return max(10, min(width, height) // 28)


def _label(draw, xy, text: str, size: int, hidden: bool = False) -> None:
    draw.text((xy[0] + size * 0.6, xy[1]), text, fill=HIDDEN_COLOR if hidden else ANNOTATION_COLOR, font=font(size),
              anchor="lm", stroke_width=max(1, size // 8), stroke_fill=(0, 0, 0))


def _dot(draw, xy, radius: float, hidden: bool = False) -> None:
    """A filled dot outlined in black; ``hidden`` (behind the surface): a ring, its centre showing through."""
    x, y = xy
    box = [x - radius, y - radius, x + radius, y + radius]
    width = max(1, int(radius // 3))
    if hidden:
        draw.ellipse(box, outline=(0, 0, 0), width=width + 2)
        draw.ellipse([x - radius + 1, y - radius + 1, x + radius - 1, y + radius - 1], outline=HIDDEN_COLOR,
                     width=width)
    else:
        draw.ellipse(box, fill=ANNOTATION_COLOR, outline=(0, 0, 0), width=width)


def draw_slice_points(image: np.ndarray, geo: SliceGeometry, volume: "Volume",
                      cursor: tuple[float, float, float] | None, annotations: Sequence[Annotation],
                      ruler: Ruler | None = None) -> np.ndarray:
    """Crosshair lines through the cursor, and the annotations and the ruler lying on this slice (the
    ruler: both ends), over ``image`` (``[H, W, 3]`` uint8, the slice of ``geo``); returns a new image
    (the input when nothing to draw)."""
    if cursor is None and not annotations and ruler is None:
        return image
    normal = AXES[geo.axis]
    inv = np.linalg.inv(volume.affine)
    on_slice = []
    for a in annotations:
        ijk = (inv @ np.append(a.position, 1.0))[:3]
        if abs(ijk[normal] - geo.index) <= SLICE_TOLERANCE:
            on_slice.append((ijk, a.text))
    ends = None if ruler is None else [(inv @ np.append(p, 1.0))[:3] for p in (ruler.start, ruler.end)]
    if ends is not None and any(abs(ijk[normal] - geo.index) > SLICE_TOLERANCE for ijk in ends):
        ends = None
    if cursor is None and not on_slice and ends is None:
        return image
    pil, draw, size = _canvas(image)
    h, w = image.shape[:2]
    if cursor is not None:
        (u, v), = geo.to_pixel((inv @ np.append(cursor, 1.0))[:3])
        gap = size * 0.8
        for a, b in (((0, v), (u - gap, v)), ((u + gap, v), (w, v)), ((u, 0), (u, v - gap)), ((u, v + gap), (u, h))):
            if a != b:
                draw.line([a, b], fill=CURSOR_COLOR, width=1)
    for ijk, text in on_slice:
        (u, v), = geo.to_pixel(ijk)
        _dot(draw, (u, v), size * 0.35)
        _label(draw, (u, v), text, size)
    if ends is not None:
        _ruler(draw, geo.to_pixel(np.array(ends)), ruler.text(), size)
    return np.asarray(pil)


def _ruler(draw, px: np.ndarray, text: str | None, size: float) -> None:
    """The ruler from ``px[0]`` to ``px[1]`` (pixels): a line with end ticks across it, and ``text``
    (its length) beside the end, outlined in black to read on any grey."""
    (u0, v0), (u1, v1) = px
    d = np.array([u1 - u0, v1 - v0])
    n = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-6) * size * 0.3     # across the line
    width = max(1, round(size / 8))
    for a, b in (((u0, v0), (u1, v1)), ((u0, v0) - n, (u0, v0) + n), ((u1, v1) - n, (u1, v1) + n)):
        draw.line([tuple(a), tuple(b)], fill=(0, 0, 0), width=width + 2)
        draw.line([tuple(a), tuple(b)], fill=RULER_COLOR, width=width)
    if text:   # past the end, away from the line; past the start where that runs out of the view
        f = font(round(size))
        room, w, h = size * 0.8 + draw.textlength(text, font=f), *draw.im.size
        spots = [(u, v, +1 if u >= other else -1) for (u, v), other in (((u1, v1), u0), ((u0, v0), u1))]
        u, v, side = next(((u, v, d) for u, v, d in spots if 0 <= u + d * room <= w), spots[0])
        draw.text((u + side * size * 0.8, min(max(v, size), h - size)), text, fill=RULER_COLOR, font=f,
                  anchor="lm" if side > 0 else "rm", stroke_width=max(1, round(size / 8)), stroke_fill=(0, 0, 0))


def draw_3d_points(image: np.ndarray, camera: "OrbitCamera", extent_mm: float,
                   cursor: tuple[float, float, float] | None, annotations: Sequence[Annotation],
                   hidden: Sequence[bool] | None = None, ruler: Ruler | None = None) -> np.ndarray:
    """The cursor (a 3-D cross, arms along x, y, z of :data:`CURSOR_ARM` x ``extent_mm``) and the
    annotations (dot and label), projected through ``camera`` onto ``image`` (``[H, W, 3]`` uint8,
    any size); drawn on top. An annotation flagged in ``hidden`` (behind the surface,
    :meth:`Pointing.hidden_annotations`) is a ring with a dimmed label, so a point deep in the brain
    does not read as one on its surface. On a reduced frame (an interactive one, which the page
    magnifies) marks keep their size on screen and labels too small to read (:data:`MIN_LABEL_PX`)
    are left out: drawn at the 10 px minimum they filled the view, magnified and blurred, while the
    user dragged. The ruler is drawn over everything, with its length. Returns a new image (or the input)."""
    if cursor is None and not annotations and ruler is None:
        return image
    pil, draw, _ = _canvas(image)
    h, w = image.shape[:2]
    size = label_px(camera.width, camera.height) * w / camera.width      # as on the full-size frame
    if cursor is not None:
        arm = CURSOR_ARM * extent_mm
        ends = np.asarray(cursor) + np.concatenate([np.eye(3) * arm, -np.eye(3) * arm])
        px, front = project(camera, ends, w, h)
        for k in range(3):
            if front[k] and front[k + 3]:
                draw.line([tuple(px[k]), tuple(px[k + 3])], fill=CURSOR_COLOR, width=max(1, round(size / 6)))
    if annotations:
        px, front = project(camera, np.array([a.position for a in annotations]), w, h)
        for a, p, ok, behind in zip(annotations, px, front, hidden or [False] * len(annotations)):
            if ok:
                _dot(draw, p, max(1.0, size * 0.35), behind)
                if size >= MIN_LABEL_PX:
                    _label(draw, p, a.text, round(size), behind)
    if ruler is not None:
        px, front = project(camera, np.array([ruler.start, ruler.end]), w, h)
        if front.all():
            _ruler(draw, px, ruler.text() if size >= MIN_LABEL_PX else None, size)
    return np.asarray(pil)


def mark_radius_px(width: int, height: int) -> int:
    """Half-size (px) of a pending mark's dot on a ``width x height`` 3-D frame: 3 px or 1 % of the
    smaller side, so a single clicked mark is seen at once (a 2 px dot in a 356 px view was missed)."""
    return max(3, min(width, height) // 100)


def draw_3d_marks(image: np.ndarray, camera: "OrbitCamera", points: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """Pending correction marks on a 3-D frame: a dot of ``colors`` ``[M, 3]`` uint8 (outlined in
    black) at each world point ``points`` ``[M, 3]`` mm, projected through ``camera`` (any image
    size). Drawn on top, as the slices draw them. Returns a new image (or the input when empty)."""
    if not len(points):
        return image
    h, w = image.shape[:2]
    px, front = project(camera, points, w, h)
    keep = front & (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
    if not keep.any():
        return image
    out = image.copy()
    r = mark_radius_px(w, h)
    u, v = np.floor(px[keep]).astype(int).T
    for ring, color in ((r + 1, None), (r, colors[keep])):  # a black outline first, then the colour
        for du in range(-ring, ring + 1):
            for dv in range(-ring, ring + 1):
                uu, vv = np.clip(u + du, 0, w - 1), np.clip(v + dv, 0, h - 1)
                out[vv, uu] = 0 if color is None else color
    return out


#: Colours of the orientation marker's patient axes: R-L, A-P, S-I (sRGB uint8).
AXIS_COLORS = ((235, 80, 70), (90, 205, 100), (100, 150, 255))


def orientation_ends(camera: "OrbitCamera") -> list[tuple[str, int, np.ndarray, bool]]:
    """The six ends of the patient axes as ``camera`` sees them, far ones first: ``(letter, axis (0 R-L,
    1 A-P, 2 S-I), screen direction [2] (x right, y down; length 1 across the view, 0 along it), near)``;
    ``near``: the end does not point away from the viewer. World RAS: +x is the patient's right."""
    rot = camera.rotation                                    # column k: world axis k in camera x, y, z
    ends = [(("LR", "PA", "IS")[k][sign > 0], k, sign * rot[:2, k], sign * rot[2, k] < 0.05)
            for k in range(3) for sign in (1, -1)]
    return sorted(ends, key=lambda e: e[3])


def draw_orientation(image: np.ndarray, camera: "OrbitCamera") -> np.ndarray:
    """The 3-D view's orientation marker, at its bottom right (:func:`orientation_ends`): the patient
    axes R-L (red), A-P (green) and S-I (blue), each end lettered; the near halves bright and over
    the far ones, dim; a letter hidden where its axis points almost straight at the viewer.
    ``image`` ``[H, W, 3]`` uint8, any size (the marker scales with it; none under 90 px); returns a
    new one (or ``image``)."""
    h, w = image.shape[:2]
    r = min(w, h) // 18                                      # axis length, px
    if r < 5:                                                # a thumbnail: no room
        return image
    text_size = max(6, (r * 2) // 3)
    # drawn on its corner alone (every streamed 3-D frame carries it: no copy of the whole frame to PIL)
    centre = np.array([w - r - text_size - 2, h - r - text_size - 2], np.float64)
    x0, y0 = (np.maximum(centre - r - 1.2 * text_size - 2, 0)).astype(int)   # the marker's reach
    out = image.copy()
    pil, draw, _ = _canvas(out[y0:, x0:])
    c = centre - (x0, y0)
    for letter, k, v, near in orientation_ends(camera):
        color = AXIS_COLORS[k] if near else tuple(int(x * 0.45) for x in AXIS_COLORS[k])
        draw.line([tuple(c), tuple(c + r * v)], fill=color, width=max(2, r // 6) if near else max(1, r // 10))
        if np.hypot(*v) > 0.45:                              # a short axis' letters would sit on the others
            draw.text(tuple(c + (r + text_size * 0.6) * v), letter, fill=color, font=font(text_size), anchor="mm",
                      stroke_width=1, stroke_fill=(0, 0, 0))
    out[y0:, x0:] = np.asarray(pil)
    return out
