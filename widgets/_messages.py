"""Messages between the Python widget and ``viewer.js``.

Browser -> Python: the typed control messages every front end shares
(:mod:`rfmweb.session.messages`, re-exported here). Python -> browser: the ``*Out`` dataclasses
below; image bytes always travel as binary buffers next to the JSON, never inside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Optional

from rfmweb.session.messages import (  # re-exported: the widget's protocol
    MAX_SIDE,
    MAX_STROKE_POINTS,
    MessageError,
    ClientMessage,
    Ack,
    Ready,
    Resize,
    Drag,
    Wheel,
    Probe,
    SetPreset,
    SetRenderer,
    SetClass,
    SetGroup,
    SetClassColors,
    SetCinematic,
    ResetCamera,
    Screenshot,
    SetMode,
    SetSlice,
    SetSliceChannel,
    Stroke,
    Mark,
    ApplyCorrection,
    UndoCorrection,
    SetLabelOverlay,
    SetWindow,
    PointAt,
    Annotate,
    RemoveAnnotation,
    SaveScene,
    LoadScene,
    SaveSegmentation,
    CLIENT_MESSAGES,
    parse_client_message,
)

__all__ = [
    "MAX_SIDE", "MAX_STROKE_POINTS", "MessageError", "ClientMessage", "Ack", "Ready", "Resize", "Drag",
    "Wheel", "Probe", "SetPreset", "SetRenderer", "SetClass", "SetGroup", "SetClassColors", "SetCinematic",
    "ResetCamera", "Screenshot", "SetMode", "SetSlice", "SetSliceChannel", "Stroke", "Mark", "ApplyCorrection",
    "UndoCorrection", "SetLabelOverlay", "SetWindow", "PointAt", "Annotate", "RemoveAnnotation", "SaveScene",
    "LoadScene", "SaveSegmentation", "CLIENT_MESSAGES", "parse_client_message", "FrameOut", "ScreenshotOut",
    "SceneOut", "FileOut", "ErrorOut"
]


# -- Python -> browser ------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameOut:
    """Header of a frame; the encoded image is the message's single binary buffer."""

    view: int
    id: int
    mime: str
    width: int
    height: int
    kind: str  # "interactive" | "idle" | "progressive"
    version: int
    render_ms: float
    encode_ms: float
    spp: int = 0  # samples per pixel of a progressive (cinematic still) frame
    note: str = ""  # the renderer's line about the image (e.g. "Render-FM: 41,230 splats in 1.3 s")

    def to_json(self) -> dict:
        return {"type": "frame", **asdict(self)}


@dataclass(frozen=True)
class ScreenshotOut:
    """Reply to :class:`Screenshot`; the PNG is the single binary buffer."""

    view: int
    request: int
    filename: str
    mime: str = "image/png"

    def to_json(self) -> dict:
        return {"type": "screenshot", **asdict(self)}


@dataclass(frozen=True)
class SceneOut:
    """Reply to :class:`SaveScene`: the scene file's JSON ``text`` (:mod:`rfmweb.session.scene_file`)."""

    view: int
    request: int
    filename: str
    text: str

    def to_json(self) -> dict:
        return {"type": "scene", **asdict(self)}


@dataclass(frozen=True)
class FileOut:
    """A file for the page to download (e.g. a segmentation); its bytes are the single binary buffer."""

    view: int
    request: int
    filename: str
    mime: str

    def to_json(self) -> dict:
        return {"type": "file", **asdict(self)}


@dataclass(frozen=True)
class ErrorOut:
    """A request from the browser could not be honoured (shown in the view's status line)."""

    view: int
    message: str
    request: Optional[int] = None

    def to_json(self) -> dict:
        return {"type": "error", **asdict(self)}
