"""Typed control messages of a view (after viser's ``_messages.py``), shared by every front end.

A browser's intents are JSON objects ``{"type": <tag>, "view": <int>, ...}``; each tag maps to one
frozen dataclass below, which :class:`~rfmweb.session.controller.ViewController` carries out. The
Jupyter widget parses what ``viewer.js`` sends with :func:`parse_client_message` (validation once,
at the edge: :class:`MessageError` names the tag and the field); the trame app builds the same
dataclasses from its UI state and trame-rca pointer events. Core code: no UI imports.
"""

from __future__ import annotations

import math
import re
import typing
from dataclasses import MISSING, dataclass, fields
from typing import Literal, Optional

_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
#: The largest canvas side (in device pixels) a client may ask for.
MAX_SIDE = 4096
#: The most points one correction stroke may carry.
MAX_STROKE_POINTS = 4096
#: Brush radii a client may set, mm.
BRUSH_MM_RANGE = (0.5, 50.0)


class MessageError(ValueError):
    """A browser message that does not fit the protocol (the widget logs it and carries on)."""


@dataclass(frozen=True)
class ClientMessage:
    """Base of browser -> Python messages: ``view`` indexes the widget's views (0-based)."""

    view: int

    def __post_init__(self) -> None:
        if self.view < 0:
            raise MessageError(f"{self.tag()} message: 'view' must be >= 0, got {self.view}")

    @classmethod
    def tag(cls) -> str:
        return _TAG_OF[cls]


@dataclass(frozen=True)
class Ack(ClientMessage):
    """The browser has drawn frame ``id`` of this view."""

    id: int


@dataclass(frozen=True)
class _CanvasSize(ClientMessage):
    """A canvas of ``width`` x ``height`` device pixels (CSS size x devicePixelRatio), ``ratio`` device
    pixels per CSS pixel as laid out (a canvas shrunk by its page has fewer than its set size)."""

    width: int
    height: int
    ratio: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_size(self)


@dataclass(frozen=True)
class Ready(_CanvasSize):
    """A view was mounted (or remounted) with a canvas of ``width`` x ``height`` device pixels."""


@dataclass(frozen=True)
class Resize(_CanvasSize):
    """The canvas now has ``width`` x ``height`` device pixels."""


@dataclass(frozen=True)
class Drag(ClientMessage):
    """Merged pointer movement of ``(dx, dy)`` CSS pixels (y down) with one button held."""

    button: Literal["left", "middle", "right"]
    dx: float
    dy: float
    shift: bool = False
    ctrl: bool = False


@dataclass(frozen=True)
class Key(ClientMessage):
    """A key pressed on a focused view (the DOM ``KeyboardEvent.key``; see
    :data:`rfmweb.session.interaction.KEYS` for what each does)."""

    key: str

    def __post_init__(self) -> None:
        super().__post_init__()
        from .interaction import KEYS
        if self.key not in KEYS:
            raise MessageError(f"key message: 'key' must be one of {', '.join(KEYS)}, got {self.key[:20]!r}")


@dataclass(frozen=True)
class Wheel(ClientMessage):
    """Merged wheel movement (``deltaY`` in pixels; positive = zoom out). On a slice view the wheel
    steps slices, with ctrl held (or a trackpad pinch) it zooms."""

    dy: float
    ctrl: bool = False


@dataclass(frozen=True)
class Probe(ClientMessage):
    """The pointer rests at canvas device pixel ``(x, y)`` (y down): report what lies under it."""

    x: float
    y: float


@dataclass(frozen=True)
class SetLabelOverlay(ClientMessage):
    """Draw the label map over slice views (``on``), at ``opacity`` in [0, 1] when given."""

    on: bool
    opacity: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.opacity is not None and not 0.0 <= self.opacity <= 1.0:
            raise MessageError(f"overlay message: 'opacity' must lie in [0, 1], got {self.opacity}")


@dataclass(frozen=True)
class SetWindow(ClientMessage):
    """Slice grey window: ``preset`` (a name of :data:`rfmweb.render.slices.WINDOW_PRESETS`, or
    ``"auto"``), or ``width`` and ``level`` in image units (HU for CT)."""

    preset: Optional[str] = None
    width: Optional[float] = None
    level: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.preset is None and (self.width is None or self.level is None):
            raise MessageError("window message: give 'preset', or 'width' and 'level'")
        if self.width is not None and not self.width > 0:
            raise MessageError(f"window message: 'width' must be > 0, got {self.width}")


@dataclass(frozen=True)
class SetPreset(ClientMessage):
    name: str


@dataclass(frozen=True)
class SetRenderer(ClientMessage):
    name: str


@dataclass(frozen=True)
class SetClass(ClientMessage):
    """Change one class's style; fields left out (``None``) stay as they are."""

    index: int
    visible: Optional[bool] = None
    opacity: Optional[float] = None
    color: Optional[str] = None  # "#rrggbb"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.opacity is not None and not 0.0 <= self.opacity <= 1.0:
            raise MessageError(f"class message: 'opacity' must lie in [0, 1], got {self.opacity}")
        if self.color is not None and not _HEX.match(self.color):
            raise MessageError(f"class message: 'color' must look like '#rrggbb', got {self.color!r}")

    def rgb(self) -> tuple[float, float, float] | None:
        """``color`` as sRGB floats in [0, 1]."""
        if self.color is None:
            return None
        return tuple(int(self.color[i:i + 2], 16) / 255.0 for i in (1, 3, 5))  # type: ignore[return-value]


@dataclass(frozen=True)
class SetGroup(ClientMessage):
    group: str
    visible: bool


@dataclass(frozen=True)
class SetClassColors(ClientMessage):
    on: bool


@dataclass(frozen=True)
class SetCinematic(ClientMessage):
    """Cinematic still: path-trace progressively while the camera rests."""

    on: bool


@dataclass(frozen=True)
class ResetCamera(ClientMessage):
    pass


@dataclass(frozen=True)
class _Request(ClientMessage):
    """Ask the front end for a file of this view; ``request`` is echoed in the reply."""

    request: int


@dataclass(frozen=True)
class Screenshot(_Request):
    """Ask for a full-quality PNG of this view."""


@dataclass(frozen=True)
class SetMode(ClientMessage):
    """Show the 3-D render or a slice view; ``index`` (optional) is the slice along that axis."""

    mode: Literal["3d", "axial", "coronal", "sagittal"]
    index: Optional[int] = None


@dataclass(frozen=True)
class SetSlice(ClientMessage):
    """Show slice ``index`` of the view's current axis."""

    index: int


@dataclass(frozen=True)
class SetSliceChannel(ClientMessage):
    """Which image channel (an MR sequence: T1n, T1c, T2w, FLAIR) the view shows, slices and 3-D, by index."""

    channel: int


@dataclass(frozen=True)
class Stroke(ClientMessage):
    """A correction stroke painted on a slice view: ``points`` are ``[u, v]`` canvas device
    pixels (u right, v down), ``label`` 0 (not tumour) .. 3, ``radius`` in device pixels (``None``:
    the brush set by :class:`SetBrush`, in mm)."""

    points: list
    label: int
    radius: Optional[float] = None

    def __post_init__(self) -> None:
        super().__post_init__()
        pts = self.points
        if not isinstance(pts, list) or not 1 <= len(pts) <= MAX_STROKE_POINTS:
            raise MessageError(f"stroke message: 'points' must be a list of 1..{MAX_STROKE_POINTS} [u, v] pairs")
        for p in pts:
            if not (isinstance(p, list) and len(p) == 2 and all(
                    isinstance(c, (int, float)) and not isinstance(c, bool) and math.isfinite(c) for c in p)):
                raise MessageError(f"stroke message: each point must be [u, v] with finite numbers, got {p!r}")
        _check_correction_label(self)
        if self.radius is not None and not 0.5 <= self.radius <= 256:
            raise MessageError(f"stroke message: 'radius' must lie in [0.5, 256] pixels, got {self.radius}")


@dataclass(frozen=True)
class SetBrush(ClientMessage):
    """Brush radius of correction strokes, mm (within :data:`BRUSH_MM_RANGE`); all views share it."""

    radius_mm: float

    def __post_init__(self) -> None:
        super().__post_init__()
        lo, hi = BRUSH_MM_RANGE
        if not lo <= self.radius_mm <= hi:
            raise MessageError(f"brush message: 'radius_mm' must lie in [{lo}, {hi}] mm, got {self.radius_mm}")


@dataclass(frozen=True)
class ClearMarks(ClientMessage):
    """Forget the pending correction marks (they vanish from the slice views)."""


@dataclass(frozen=True)
class Mark(ClientMessage):
    """A correction click on a 3-D view at canvas device pixel ``(x, y)``."""

    x: float
    y: float
    label: int

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_correction_label(self)


@dataclass(frozen=True)
class ApplyCorrection(ClientMessage):
    """Fine-tune the INR on the marks and refresh the segmentation views."""


@dataclass(frozen=True)
class UndoCorrection(ClientMessage):
    """Undo the last applied correction."""


@dataclass(frozen=True)
class PointAt(ClientMessage):
    """A click (no drag) at canvas device pixel ``(x, y)``: put the crosshair cursor on the voxel (slice
    view) or surface (3-D view) under it; linked views move there."""

    x: float
    y: float


@dataclass(frozen=True)
class Measure(ClientMessage):
    """The ruler: a drag on a slice view from ``points[0]`` to ``points[1]``, ``[u, v]`` canvas device
    pixels (u right, v down); ``[]`` removes it."""

    points: list

    def __post_init__(self) -> None:
        super().__post_init__()
        pts = self.points
        if not (isinstance(pts, list) and len(pts) in (0, 2) and all(
                isinstance(p, list) and len(p) == 2 and all(isinstance(c, (int, float)) and not isinstance(c, bool)
                                                            and math.isfinite(c) for c in p) for p in pts)):
            raise MessageError(f"measure message: 'points' must be [] or two [u, v] pairs of finite numbers, "
                               f"got {str(pts)[:80]}")


@dataclass(frozen=True)
class Annotate(ClientMessage):
    """Label the cursor's point with ``text`` (one line, at most
    :data:`~rfmweb.session.pointing.MAX_TEXT` characters)."""

    text: str

    def __post_init__(self) -> None:
        super().__post_init__()
        from .pointing import MAX_TEXT
        if not self.text.strip() or len(self.text) > MAX_TEXT or not self.text.isprintable():
            raise MessageError(f"annotate message: 'text' must be 1..{MAX_TEXT} printable characters on one line")


@dataclass(frozen=True)
class RemoveAnnotation(ClientMessage):
    """Remove annotation ``index`` (0-based), or all of them (``index`` left out); the cursor too."""

    index: Optional[int] = None


@dataclass(frozen=True)
class SaveScene(_Request):
    """Ask for the view's scene file (JSON text)."""


@dataclass(frozen=True)
class SaveSegmentation(_Request):
    """Ask for a segmentation view's labels as a ``.nii.gz`` file."""


@dataclass(frozen=True)
class LoadScene(ClientMessage):
    """Restore a scene file's JSON ``text`` (:mod:`rfmweb.session.scene_file`) onto the view."""

    text: str

    def __post_init__(self) -> None:
        super().__post_init__()
        from .scene_file import MAX_SCENE_BYTES
        if len(self.text) > MAX_SCENE_BYTES:
            raise MessageError(f"scene message: 'text' holds at most {MAX_SCENE_BYTES} characters")


_TAG_OF: dict[type, str] = {
    Ack: "ack", Ready: "ready", Resize: "resize", Drag: "drag", Wheel: "wheel", Key: "key", SetPreset: "preset",
    SetRenderer: "renderer", SetClass: "class", SetGroup: "group", SetClassColors: "class_colors",
    SetCinematic: "cinematic",
    ResetCamera: "reset", Screenshot: "screenshot", SetMode: "mode", SetSlice: "slice", SetSliceChannel: "channel",
    Stroke: "stroke",
    Mark: "mark", ApplyCorrection: "apply_correction", UndoCorrection: "undo_correction", Probe: "probe",
    SetLabelOverlay: "overlay", SetWindow: "window", SetBrush: "brush", ClearMarks: "clear_marks",
    PointAt: "point", Measure: "measure", Annotate: "annotate", RemoveAnnotation: "unannotate", SaveScene: "save_scene",
    LoadScene: "load_scene", SaveSegmentation: "save_segmentation",
}
CLIENT_MESSAGES: dict[str, type[ClientMessage]] = {tag: cls for cls, tag in _TAG_OF.items()}


def _check_size(msg) -> None:
    for name in ("width", "height"):
        v = getattr(msg, name)
        if not 1 <= v <= MAX_SIDE:
            raise MessageError(f"{msg.tag()} message: {name!r} must lie in 1..{MAX_SIDE} pixels, got {v}")
    if not (math.isfinite(msg.ratio) and 0.05 <= msg.ratio <= 16):
        raise MessageError(f"{msg.tag()} message: 'ratio' must lie in 0.05..16 device pixels per CSS pixel, "
                           f"got {msg.ratio}")


def _check_correction_label(msg) -> None:
    if not 0 <= msg.label <= 3:
        raise MessageError(f"{msg.tag()} message: 'label' must be 0 (not tumour), 1 (NCR), 2 (ED) or 3 (ET), "
                           f"got {msg.label}")


def _convert(tag: str, name: str, value, hint):
    """``value`` checked (and lightly coerced) against the type ``hint``; raises MessageError."""
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return _convert(tag, name, value, inner)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise MessageError(f"{tag} message: {name!r} must be one of {list(choices)}, got {value!r}")
        return value
    ok = True
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        # JSON has one number type: accept 3.0 as 3, refuse 3.5 and booleans
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) \
            and float(value).is_integer()
        value = int(value) if ok else value
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif hint is str:
        ok = isinstance(value, str)
    if not ok:
        raise MessageError(f"{tag} message: {name!r} must be {getattr(hint, '__name__', hint)}, got {value!r}")
    return value


def parse_client_message(content) -> ClientMessage:
    """Validate a raw browser message and return its dataclass.

    Unknown extra keys are ignored (an older kernel may talk to a newer page); missing required
    keys, wrong types and out-of-range values raise :class:`MessageError`.

    Example:
        >>> parse_client_message({"type": "wheel", "view": 0, "dy": -120})
        Wheel(view=0, dy=-120.0)
    """
    if not isinstance(content, dict):
        raise MessageError(f"message must be a JSON object, got {type(content).__name__}")
    tag = content.get("type")
    cls = CLIENT_MESSAGES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise MessageError(f"unknown message type {tag!r}; expected one of {sorted(CLIENT_MESSAGES)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in fields(cls):
        if f.name not in content:
            if f.default is MISSING:
                raise MessageError(f"{tag} message: missing {f.name!r}")
            continue
        kwargs[f.name] = _convert(tag, f.name, content[f.name], hints[f.name])
    return cls(**kwargs)
