"""Slice frames: the greyscale slice of a :class:`~rfmweb.session.session.Snapshot` with its label
overlay (when on), pending correction marks (when given), R/L/A/P/S/I letters, a scale bar and
where the slice lies (plane, number, position in mm), as PACS viewers draw them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..render.slices import AXES, SliceGeometry, render_slice
from .pointing import draw_slice_points
from .pointing import font as text_font

if TYPE_CHECKING:
    from .session import Snapshot

#: Screen-edge letters of each slice view (left, right, top, bottom), radiological convention.
ORIENTATION = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}
#: A scan turned more than this from the anatomical axes says so on its slice views, degrees.
OBLIQUE_DEG = 1.0
#: Lengths a scale bar may take, mm (the longest that fits in a fifth of the view is drawn).
SCALE_BAR_MM = (1, 2, 5, 10, 20, 50, 100, 200, 500)
LETTER_COLOR = (255, 220, 60)
#: Colour of pending "not tumour" (label 0) marks: label 0 has no class colour of its own.
ERASE_MARK_COLOR = (90, 200, 255)
#: Opacity of a pending mark's fill; its outline is drawn opaque, so marks stand out from the
#: label overlay (drawn at ~0.45) in the same colour.
MARK_FILL = 0.35


def render_slice_frame(snap: "Snapshot", marks: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """``[H, W, 3]`` uint8: the snapshot's slice (window, zoom, pan, overlay) with letters, a scale bar,
    the crosshair cursor and the annotations on this slice (:mod:`rfmweb.session.pointing`).

    ``marks``: pending correction marks ``(ijk [M, 3] int voxel indices, labels [M] uint8)``
    (:attr:`rfmweb.inr.correct.Corrector.pending_voxels`); those on this slice are drawn over it
    (:func:`draw_marks`) in their label's colour.
    """
    image, geo = render_slice(snap.scene.volume, snap.mode, snap.slice_index, width=snap.camera.width,
                              height=snap.camera.height, channel=snap.slice_channel, window=snap.slice_window,
                              classes=snap.scene.classes, overlay=snap.overlay, zoom=snap.slice_zoom,
                              pan_mm=snap.slice_pan)
    if marks is not None and len(marks[0]):
        image = draw_marks(image, geo, marks[0], marks[1], mark_colors(snap.scene.classes))
    image = draw_slice_points(image, geo, snap.scene.volume, snap.cursor, snap.annotations, snap.ruler)
    volume = snap.scene.volume
    return _annotate(image, snap.mode, geo.mm_per_px, volume.obliquity_deg,
                     slice_position(volume, snap.mode, snap.slice_index),
                     window_caption(snap.slice_window, volume.modality),
                     volume.channels[snap.slice_channel] if len(volume.channels) > 1 else "")


def window_caption(window: tuple[float, float] | None, modality: str) -> str:
    """The grey window as PACS viewers print it on the image, e.g. ``"W 400 L 50"`` (HU on a CT;
    image units on an MR), from ``window`` ``(lo, hi)``; ``""`` without one."""
    if window is None:
        return ""
    lo, hi = window
    return f"W {hi - lo:.4g} L {(hi + lo) / 2:.4g}"


def slice_position(volume, axis: str, index: int) -> str:
    """Where slice ``index`` of plane ``axis`` lies, as a PACS labels it: its number of the plane's
    count and the world position (mm, RAS) of its centre along the patient axis, with that axis'
    letter, e.g. ``"21/40 · S 12.5 mm"`` (axial: S/I, coronal: A/P, sagittal: R/L)."""
    a = AXES[axis]
    ijk = (np.asarray(volume.shape, np.float64) - 1) / 2
    ijk[a] = index
    mm = float((volume.affine @ np.append(ijk, 1.0))[a])
    letter = ("LR", "PA", "IS")[a][mm >= 0]
    return f"{index + 1}/{volume.shape[a]} · {letter} {abs(mm):.1f} mm"


def mark_colors(classes) -> dict[int, tuple[int, int, int]]:
    """``label -> (r, g, b)`` uint8 colour of pending marks: the class colours of a
    :class:`~rfmweb.transfer.ClassTable` (labels 1-3), :data:`ERASE_MARK_COLOR` for label 0."""
    colors = {0: ERASE_MARK_COLOR}
    for style in classes.styles:
        if style.index > 0:
            colors[style.index] = tuple(int(round(c * 255)) for c in style.color[:3])
    return colors


def draw_marks(image: np.ndarray, geo: SliceGeometry, ijk: np.ndarray, labels: np.ndarray,
               colors: dict[int, tuple[int, int, int]]) -> np.ndarray:
    """Draw the marked voxels lying on ``geo``'s slice over ``image``.

    Each marked voxel covers the screen pixels whose centres map into it (the same pixel -> voxel
    mapping as the slice itself, :meth:`SliceGeometry.to_voxel`, rounded); they are filled at
    :data:`MARK_FILL` in the label's colour, with an opaque one-pixel outline in that colour.

    Args:
        image: ``[H, W, 3]`` uint8 slice frame (not modified).
        geo: its geometry.
        ijk: ``[M, 3]`` integer voxel indices of the marks; labels: ``[M]`` their labels.
        colors: ``label -> (r, g, b)`` uint8 (:func:`mark_colors`).

    Returns:
        ``[H, W, 3]`` uint8, a new image.
    """
    ijk = np.asarray(ijk, np.int64).reshape(-1, 3)
    on = ijk[:, AXES[geo.axis]] == geo.index
    if not on.any():
        return image
    h_axis, v_axis = geo.in_plane
    plane = np.full((geo.shape[h_axis], geo.shape[v_axis]), -1, np.int16)       # -1: not marked
    plane[ijk[on, h_axis], ijk[on, v_axis]] = np.asarray(labels)[on]
    u, v = np.meshgrid(np.arange(geo.width) + 0.5, np.arange(geo.height) + 0.5)
    vox = np.rint(geo.to_voxel(u, v)).astype(np.int64)
    fh, fv = vox[:, h_axis], vox[:, v_axis]
    inside = (fh >= 0) & (fh < plane.shape[0]) & (fv >= 0) & (fv < plane.shape[1])
    mark = np.full(fh.shape, -1, np.int16)
    mark[inside] = plane[fh[inside], fv[inside]]
    mark = mark.reshape(geo.height, geo.width)                                  # [H, W] label or -1
    edge = np.zeros(mark.shape, bool)                                           # pixels next to another value
    edge[1:, :] |= mark[1:, :] != mark[:-1, :]
    edge[:-1, :] |= mark[:-1, :] != mark[1:, :]
    edge[:, 1:] |= mark[:, 1:] != mark[:, :-1]
    edge[:, :-1] |= mark[:, :-1] != mark[:, 1:]
    out = image.astype(np.float32)
    for label in np.unique(mark[mark >= 0]):
        color = np.asarray(colors.get(int(label), ERASE_MARK_COLOR), np.float32)
        fill = mark == label
        out[fill] = out[fill] * (1 - MARK_FILL) + color * MARK_FILL
        out[fill & edge] = color
    return (out + 0.5).astype(np.uint8)


def scale_bar_mm(width_px: int, mm_per_px: float) -> int:
    """The scale bar's length in mm: the longest of :data:`SCALE_BAR_MM` within a fifth of the width."""
    fits = [mm for mm in SCALE_BAR_MM if mm / mm_per_px <= width_px / 5]
    return fits[-1] if fits else SCALE_BAR_MM[0]


def _annotate(image: np.ndarray, axis: str, mm_per_px: float, oblique_deg: float = 0.0,
              position: str = "", window: str = "", sequence: str = "") -> np.ndarray:
    """Patient-direction letters at the middle of each edge (yellow); the plane's name at the top left,
    with the ``sequence`` shown of several (a capture said which only in the sidebar), and "oblique N°"
    when the voxel planes shown turn more than :data:`OBLIQUE_DEG` from the anatomical ones (the
    letters are then the nearest directions); ``window`` (:func:`window_caption`)
    at the top right, where it does not run into the top letter; a scale bar at the bottom left and
    ``position`` (:func:`slice_position`) at the bottom right (its slice number alone where the whole
    would run into the bottom letter)."""
    from PIL import Image, ImageDraw

    h, w = image.shape[:2]
    size = max(10, min(w, h) // 22)
    font = text_font(size)
    pil = Image.fromarray(image)
    draw = ImageDraw.Draw(pil)
    left, right, top, bottom = ORIENTATION[axis]
    pad = max(2, size // 3)
    spots = ((left, (pad, h / 2), "lm"), (right, (w - pad, h / 2), "rm"), (top, (w / 2, pad), "mt"),
             (bottom, (w / 2, h - pad), "mb"))
    name = axis + (f" · {sequence}" if sequence else "") + \
        (f" · oblique {oblique_deg:.0f}°" if oblique_deg > OBLIQUE_DEG else "")
    spots += ((name, (pad, pad), "lt"),)
    if window and draw.textlength(window, font=font) <= w / 2 - size:
        spots += ((window, (w - pad, pad), "rt"),)
    for text, xy, anchor in spots:
        draw.text(xy, text, fill=LETTER_COLOR, font=font, anchor=anchor, stroke_width=1, stroke_fill=(0, 0, 0))
    mm = scale_bar_mm(w, mm_per_px)
    length = mm / mm_per_px
    x0, y0 = 2 * pad, h - 2 * pad
    draw.line([(x0, y0), (x0 + length, y0)], fill=(255, 255, 255), width=max(2, size // 6))
    for x in (x0, x0 + length):
        draw.line([(x, y0 - size // 3), (x, y0)], fill=(255, 255, 255), width=max(1, size // 8))
    draw.text((x0, y0 - size // 3 - 1), f"{mm} mm", fill=(255, 255, 255), font=font, anchor="lb", stroke_width=1,
              stroke_fill=(0, 0, 0))
    if position:
        if draw.textlength(position, font=font) > w / 2 - size:   # would run into the bottom letter
            position = position.split(" · ")[0]                   # the slice number alone
        draw.text((w - pad, h - pad), position, fill=(255, 255, 255), font=font, anchor="rb", stroke_width=1,
                  stroke_fill=(0, 0, 0))
    return np.asarray(pil)
