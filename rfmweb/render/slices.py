"""2-D slice views (axial, coronal, sagittal) with a label overlay, in radiological orientation.

Conventions (as in 3D Slicer's default layout and PACS viewers), for a RAS+ volume:

- axial (constant z): patient's right on screen left, anterior up;
- coronal (constant y): patient's right on screen left, superior up;
- sagittal (constant x): anterior on screen left, superior up.

Pixels are square in millimetres: the slice is resampled to the requested width, keeping the
physical aspect ratio (letterboxed), then zoomed about the view's centre and panned (in mm).
:meth:`SliceGeometry.to_voxel` maps a pixel back to voxel indices, so strokes drawn on a slice can
mark voxels and the pointer can read the intensity under it; rendering samples the plane through
the same mapping, so what is drawn and what is read agree exactly.

Grey levels follow a window ``(lo, hi)`` in the image's units (HU for CT): radiology states it as
width ``W = hi - lo`` and level (centre) ``L = (lo + hi) / 2``; :data:`WINDOW_PRESETS` lists the
usual CT ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..transfer import ClassTable
from ..volume import Volume

AXES = {"sagittal": 0, "coronal": 1, "axial": 2}

#: CT window presets ``name -> (width, level)`` in HU (as in PACS viewers and 3D Slicer).
WINDOW_PRESETS = {"brain": (80.0, 40.0), "subdural": (200.0, 75.0), "bone": (2000.0, 500.0),
                  "lung": (1500.0, -600.0), "abdomen": (400.0, 50.0)}
#: Window/level drag: one pixel moves this fraction of the current window's width, within
#: ``[1 / 100, 1] x WINDOW_SPAN_PER_PX`` of the image's intensity span (:func:`drag_window`)
WINDOW_PER_PX = 1.0 / 100
WINDOW_SPAN_PER_PX = 1.0 / 400
#: Slice zoom limits (1 = the whole slice fits the view).
ZOOM_RANGE = (0.25, 32.0)


def window_range(width: float, level: float) -> tuple[float, float]:
    """Window ``(width W, level L)`` -> grey range ``(lo, hi) = (L - W/2, L + W/2)`` (image units)."""
    if not width > 0:
        raise InputError(f"window width must be > 0, got {width}")
    return float(level) - float(width) / 2, float(level) + float(width) / 2


def window_grey(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear grey ramp: ``(values - lo) / (hi - lo)`` clipped to [0, 1] (same shape, float)."""
    return np.clip((np.asarray(values, dtype=np.float64) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def drag_window(lo: float, hi: float, dx: float, dy: float, span: float) -> tuple[float, float]:
    """Window/level drag (3D Slicer's directions): right widens the window (less contrast), down
    raises the level (darker). Each pixel moves ``WINDOW_PER_PX`` of the current width, at most
    ``span * WINDOW_SPAN_PER_PX`` image units (Slicer's fixed step; ``span``: the image's intensity
    range) and at least a hundredth of that: a brain window (W80 on a CT spanning 4000 HU) moves
    0.8 HU a pixel instead of 10, so a short drag tunes it rather than losing it, and a wide window
    still grows by the span's step. The step changes with the width pixel by pixel (the width grows
    exponentially between the two limits), so a drag ends where it ends however the front end split
    it into messages. Returns the new ``(lo, hi)``."""
    coarse = max(float(span), 1e-6) * WINDOW_SPAN_PER_PX
    width = hi - lo
    wider = _drag_width(width, dx, coarse)
    # over the path the mean step is the width gained per pixel (dW/dx is the step), exact for a straight drag
    step = (wider - width) / dx if abs(wider - width) > 1e-9 * width else _window_step(width, coarse)
    return window_range(max(wider, coarse / 100), (lo + hi) / 2 + dy * step)


def _window_step(width: float, coarse: float) -> float:
    """Image units one pixel of window drag moves at window width ``width`` (:func:`drag_window`)."""
    return min(coarse, max(width * WINDOW_PER_PX, coarse / 100))


def _drag_width(width: float, dx: float, coarse: float) -> float:
    """The window width after ``dx`` pixels of drag: ``dW/dx`` = :func:`_window_step`, integrated through
    its three pieces (linear at ``coarse / 100`` below ``w_fine``, exponential, linear at ``coarse`` above
    ``w_coarse``); below 0 when the drag narrows past nothing (the caller keeps the finest step)."""
    fine, rate = coarse / 100, WINDOW_PER_PX
    w_fine, w_coarse = fine / rate, coarse / rate
    left = abs(float(dx))
    # widening goes through the pieces upwards, narrowing downwards
    if dx >= 0:
        if width < w_fine:
            if left <= (w_fine - width) / fine:
                return width + left * fine
            left -= (w_fine - width) / fine
            width = w_fine
        if width < w_coarse:
            if left <= np.log(w_coarse / width) / rate:
                return width * float(np.exp(rate * left))
            left -= np.log(w_coarse / width) / rate
            width = w_coarse
        return width + left * coarse
    if width > w_coarse:
        if left <= (width - w_coarse) / coarse:
            return width - left * coarse
        left -= (width - w_coarse) / coarse
        width = w_coarse
    if width > w_fine:
        if left <= np.log(width / w_fine) / rate:
            return width * float(np.exp(-rate * left))
        left -= np.log(width / w_fine) / rate
        width = w_fine
    return width - left * fine


@dataclass(frozen=True)
class SliceGeometry:
    """Where a slice image's pixels come from.

    Attributes:
        axis: ``"axial"``, ``"coronal"`` or ``"sagittal"``.
        index: voxel index along the slice's normal axis.
        width, height: image size in pixels.
        mm_per_px: size of a pixel (square) in mm.
        offset: ``(u0, v0)`` pixel position of the slice's top-left corner (letterboxing).
        shape: the volume grid ``(X, Y, Z)``; spacing: voxel size in mm.
        zoom: magnification over the fitted slice (1: the whole slice fits).
    """

    axis: str
    index: int
    width: int
    height: int
    mm_per_px: float
    offset: tuple[float, float]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]
    zoom: float = 1.0

    @property
    def in_plane(self) -> tuple[int, int]:
        """The voxel axes shown horizontally and vertically."""
        return {"axial": (0, 1), "coronal": (0, 2), "sagittal": (1, 2)}[self.axis]

    def to_voxel(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """Pixel coordinates ``(u right, v down)`` -> voxel indices ``[N, 3]`` (float; may lie outside)."""
        u = np.asarray(u, dtype=np.float64).ravel()
        v = np.asarray(v, dtype=np.float64).ravel()
        h_axis, v_axis = self.in_plane
        n_h, n_v = self.shape[h_axis], self.shape[v_axis]
        # physical position from the slice's first displayed voxel edge
        x_mm = (u - self.offset[0]) * self.mm_per_px
        y_mm = (v - self.offset[1]) * self.mm_per_px
        h = x_mm / self.spacing[h_axis] - 0.5
        vv = y_mm / self.spacing[v_axis] - 0.5
        # screen left shows the patient's right (+x) or anterior (+y), screen top superior (+z) or
        # anterior (+y): on both screen axes the voxel index decreases as the pixel index grows
        h = (n_h - 1) - h
        vv = (n_v - 1) - vv
        out = np.empty((u.size, 3))
        out[:, h_axis], out[:, v_axis] = h, vv
        out[:, AXES[self.axis]] = self.index
        return out

    def to_pixel(self, ijk: np.ndarray) -> np.ndarray:
        """Voxel indices ``[N, 3]`` (float) -> pixel positions ``[N, 2]`` ``(u right, v down)`` on
        this slice (the inverse of :meth:`to_voxel` in the plane; the normal coordinate is ignored)."""
        ijk = np.atleast_2d(np.asarray(ijk, dtype=np.float64))
        h_axis, v_axis = self.in_plane
        h = (self.shape[h_axis] - 1) - ijk[:, h_axis]
        vv = (self.shape[v_axis] - 1) - ijk[:, v_axis]
        u = (h + 0.5) * self.spacing[h_axis] / self.mm_per_px + self.offset[0]
        v = (vv + 0.5) * self.spacing[v_axis] / self.mm_per_px + self.offset[1]
        return np.stack([u, v], axis=1)


def _plane(array: np.ndarray, axis: str, index: int) -> np.ndarray:
    """The 2-D plane ``[n_h, n_v]`` of ``array [X, Y, Z, ...]`` at ``index`` along the axis."""
    return np.take(array, index, axis=AXES[axis])


def slice_geometry(volume: Volume, axis: str, index: int | None, width: int, height: int, *, zoom: float = 1.0,
                   pan_mm: tuple[float, float] = (0.0, 0.0)) -> SliceGeometry:
    """Geometry of a ``width x height`` view of one slice (``index`` None: the middle one), magnified
    ``zoom`` times about the view's centre and moved ``pan_mm`` (right, down) millimetres."""
    if axis not in AXES:
        raise InputError(f"slice axis must be one of {tuple(AXES)}, got {axis!r}")
    n = volume.shape[AXES[axis]]
    index = n // 2 if index is None else int(index)
    if not 0 <= index < n:
        raise InputError(f"{axis} slice index must lie in 0..{n - 1}, got {index}")
    if width < 8 or height < 8:
        raise InputError(f"slice image must be at least 8x8 pixels, got {width}x{height}")
    geo = SliceGeometry(axis, index, width, height, 1.0, (0.0, 0.0), volume.shape, volume.spacing)
    h_axis, v_axis = geo.in_plane
    w_mm = volume.shape[h_axis] * volume.spacing[h_axis]
    h_mm = volume.shape[v_axis] * volume.spacing[v_axis]
    zoom = float(np.clip(zoom, *ZOOM_RANGE))
    mm_per_px = max(w_mm / width, h_mm / height) / zoom
    offset = ((width - w_mm / mm_per_px) / 2 + pan_mm[0] / mm_per_px,
              (height - h_mm / mm_per_px) / 2 + pan_mm[1] / mm_per_px)
    return SliceGeometry(axis, index, width, height, mm_per_px, offset, volume.shape, volume.spacing, zoom)


def _resample(plane: np.ndarray, geo: SliceGeometry, mode: str) -> np.ndarray:
    """Sample a ``[n_h, n_v, C]`` plane at every screen pixel's centre: ``[H, W, C]`` float32.

    Pixels map to voxels through :meth:`SliceGeometry.to_voxel` (orientation, aspect, zoom, pan);
    ``mode`` is ``"cubic"`` (image: bicubic, as PACS viewers magnify; it can overshoot the plane's
    range a little) or ``"nearest"`` (labels); pixels off the slice are 0.
    """
    n_h, n_v = plane.shape[:2]
    u, v = np.meshgrid(np.arange(geo.width) + 0.5, np.arange(geo.height) + 0.5)
    ijk = geo.to_voxel(u, v)
    h_axis, v_axis = geo.in_plane
    fh, fv = ijk[:, h_axis], ijk[:, v_axis]
    inside = (fh >= -0.5) & (fh <= n_h - 0.5) & (fv >= -0.5) & (fv <= n_v - 0.5)
    # grid_sample with align_corners=True: -1 and +1 are the centres of the first and last voxels
    gx = fv / max(n_v - 1, 1) * 2 - 1
    gy = fh / max(n_h - 1, 1) * 2 - 1
    grid = torch.from_numpy(np.stack([gx, gy], -1).astype(np.float32)).view(1, geo.height, geo.width, 2)
    t = torch.from_numpy(np.ascontiguousarray(plane, dtype=np.float32)).permute(2, 0, 1)[None]  # [1, C, n_h, n_v]
    out = F.grid_sample(t, grid, mode="nearest" if mode == "nearest" else "bicubic", padding_mode="border",
                        align_corners=True)[0].permute(1, 2, 0).numpy()
    return out * inside.reshape(geo.height, geo.width, 1)


#: A minimum held by more than this share of the voxels is background (a skull-stripped or masked MR).
BACKGROUND_SHARE = 0.1


def default_window(data: np.ndarray) -> tuple[float, float]:
    """Grey-level window of a ``[X, Y, Z]`` channel: its 1st and 99th percentiles (on a subsample),
    background left out (a skull-stripped MR is mostly zeros: counted, they pushed the 99th
    percentile into the brain and blew out FLAIR's bright half); 1 unit wide on a uniform volume
    (its window was 0 wide)."""
    sub = data[:: max(1, data.shape[0] // 64), :: max(1, data.shape[1] // 64)].ravel()
    floor = sub.min()
    rest = sub[sub > floor]
    if rest.size and rest.size < (1 - BACKGROUND_SHARE) * sub.size:
        sub = rest
    lo, hi = (float(v) for v in np.percentile(sub, [1, 99]))
    return (lo - 0.5, hi + 0.5) if hi <= lo else (lo, hi)


def render_slice(volume: Volume, axis: str = "axial", index: int | None = None, *, width: int = 256,
                 height: int = 256, channel: int = 0, window: tuple[float, float] | None = None,
                 labels: np.ndarray | None = None, classes: ClassTable | None = None, overlay: float = 0.45,
                 outline: bool = False, zoom: float = 1.0,
                 pan_mm: tuple[float, float] = (0.0, 0.0)) -> tuple[np.ndarray, SliceGeometry]:
    """One slice as an RGB image with an optional label overlay.

    Args:
        volume: the image (one channel shown, grey).
        axis, index: which slice (``index`` None: the middle).
        width, height: output size in pixels (the slice is letterboxed at its true aspect).
        channel: which channel of a multi-channel volume.
        window: ``(lo, hi)`` intensity window in image units (HU for CT; :func:`window_range` converts
            a width/level); default: the 1st-99th percentiles of the volume.
        labels: ``[X, Y, Z]`` label map to overlay (default: the volume's own); ``classes`` styles it
            (colour; hidden classes are not drawn; a class's opacity is a 3-D setting, per mm,
            and does not dim its overlay: a veiled edema in 3-D stays plain on the slices).
        overlay: overlay opacity in [0, 1].
        outline: draw only the label boundaries.
        zoom, pan_mm: magnification and shift (right, down; mm) of the view (:func:`slice_geometry`).

    Returns:
        ``(image [H, W, 3] uint8, geometry)``.
    """
    geo = slice_geometry(volume, axis, index, width, height, zoom=zoom, pan_mm=pan_mm)
    data = volume.data[channel]
    lo, hi = default_window(data) if window is None else window
    grey = np.clip(_resample(window_grey(_plane(data, axis, geo.index), lo, hi)[..., None], geo, "cubic"), 0, 1)
    rgb = np.repeat(grey, 3, axis=2)
    labels = volume.labels if labels is None else labels
    if labels is not None and overlay > 0:
        classes = classes or ClassTable.from_classes(volume.classes)
        lab = _resample(_plane(labels, axis, geo.index)[..., None].astype(np.float32), geo, "nearest")[..., 0]
        lab = lab.astype(np.int64)
        rgba, _ = classes.lookup(int(max(lab.max(), labels.max())))
        colors = rgba.numpy()[lab]
        shown = (colors[..., 3] > 0) & (lab > 0)
        alpha = overlay * shown
        if outline:
            edge = np.zeros_like(lab, dtype=bool)
            edge[1:, :] |= lab[1:, :] != lab[:-1, :]
            edge[:, 1:] |= lab[:, 1:] != lab[:, :-1]
            alpha = np.where(edge, 1.0, 0.0) * shown
        rgb = rgb * (1 - alpha[..., None]) + colors[..., :3] * alpha[..., None]
    return (np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8), geo
