"""Frame encoding (Pillow): JPEG while interacting, sharper JPEG when idle, PNG on request."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..errors import InputError

#: JPEG quality of interactive and idle frames.
JPEG_INTERACTIVE = 75
JPEG_IDLE = 92
#: caption text height (px) of :func:`side_by_side`
CAPTION_PX = 14


@dataclass(frozen=True)
class Frame:
    """One encoded frame.

    Attributes:
        data: encoded bytes.
        mime: ``"image/jpeg"`` or ``"image/png"``.
        width, height: pixel size of the encoded image (an interactive frame may be smaller than
            the view; the client scales it up).
        kind: ``"interactive"``, ``"idle"``, ``"progressive"`` (a cinematic-still pass) or ``"png"``.
        version: the session state version it shows.
        id: sequence number within its stream (for acknowledgements).
        render_ms, encode_ms: time spent.
        spp: path-traced samples per pixel accumulated so far (progressive frames; 0 otherwise).
        note: the renderer's line about the image (e.g. ``"Render-FM: 41,230 splats in 1.3 s"``; or ``""``).
        renderer: the session's renderer when it was drawn (a view whose menu names another one shows
            this frame dimmed until the new renderer's first frame:
            :func:`~rfmweb.session.stream.shows_other_renderer`).
    """

    data: bytes
    mime: str
    width: int
    height: int
    kind: str
    version: int
    id: int = 0
    render_ms: float = 0.0
    encode_ms: float = 0.0
    spp: int = 0
    note: str = ""
    renderer: str = ""

    def meta(self) -> dict:
        """JSON-able description (everything but the bytes)."""
        return {"id": self.id, "mime": self.mime, "width": self.width, "height": self.height, "kind": self.kind,
                "version": self.version, "render_ms": round(self.render_ms, 1), "encode_ms": round(self.encode_ms, 1),
                "spp": self.spp, "note": self.note}


def encode_image(image: np.ndarray, fmt: str = "jpeg", quality: int = JPEG_IDLE) -> bytes:
    """``[H, W, 3]`` uint8 -> JPEG (``fmt="jpeg"``) or PNG (``"png"``, any case) bytes.

    Raises:
        InputError: another format, or an image that is not ``[H, W, 3]`` uint8.
    """
    fmt = str(fmt).lower()
    if fmt not in ("jpeg", "png"):
        raise InputError(f"image format must be 'jpeg' or 'png', got {fmt!r}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise InputError(f"an image to encode must be [H, W, 3] uint8, got {list(image.shape)} {image.dtype}")
    buf = io.BytesIO()
    img = Image.fromarray(np.ascontiguousarray(image))
    if fmt == "png":
        img.save(buf, format="PNG", compress_level=3)
    else:
        img.save(buf, format="JPEG", quality=quality, subsampling=0 if quality >= 90 else 2)
    return buf.getvalue()


#: Characters the captions' font (Pillow's bundled one) has no glyph for, drawn as their ASCII kin
#: (it would draw a box): the minus of "|left − right|", the times sign of sizes, dashes.
_CAPTION_ASCII = str.maketrans({"\u2212": "-", "\u00d7": "x", "\u2013": "-", "\u2014": "-"})


def side_by_side(pngs: list[bytes], gap: int = 4, captions: list[str] | None = None) -> bytes:
    """One PNG of several view PNGs left to right (``gap`` black pixels between; heights may differ:
    each is top-aligned on black): a screenshot of a whole layout. ``captions`` (one per view, e.g.
    "raw INR · Dice WT 0.91 · TC 0.80 · ET 0.75") are written in a band above the views, so the
    saved picture says which is which."""
    images = [Image.open(io.BytesIO(p)).convert("RGB") for p in pngs]
    if captions is not None and len(captions) != len(images):
        raise ValueError(f"{len(captions)} captions for {len(images)} views")
    band = CAPTION_PX + 8 if captions else 0
    out = Image.new("RGB", (sum(i.width for i in images) + gap * (len(images) - 1),
                            band + max(i.height for i in images)))
    font = ImageFont.load_default(size=CAPTION_PX) if captions else None
    x = 0
    for k, image in enumerate(images):
        out.paste(image, (x, band))
        if captions:                 # drawn on the view's own strip: a long one is cut at its edge
            strip = Image.new("RGB", (image.width, band))
            ImageDraw.Draw(strip).text((4, 4), captions[k].translate(_CAPTION_ASCII), fill=(235, 235, 235), font=font)
            out.paste(strip, (x, 0))
        x += image.width + gap
    buf = io.BytesIO()
    out.save(buf, format="PNG")
    return buf.getvalue()
