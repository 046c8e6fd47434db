"""2-D slice views (axial, coronal, sagittal) with a label overlay, in radiological orientation.

Conventions (as in 3D Slicer's default layout and PACS viewers), for a RAS+ volume:

- axial (constant z): patient's right on screen left, anterior up;
- coronal (constant y): patient's right on screen left, superior up;
- sagittal (constant x): anterior on screen left, superior up.

Pixels are square in millimetres: the slice is resampled to the requested width, keeping the
physical aspect ratio (letterboxed). :meth:`SliceGeometry.to_voxel` maps a pixel back to voxel
indices, so strokes drawn on a slice can mark voxels.
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
    """

    axis: str
    index: int
    width: int
    height: int
    mm_per_px: float
    offset: tuple[float, float]
    shape: tuple[int, int, int]
    spacing: tuple[float, float, float]

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


def _plane(array: np.ndarray, axis: str, index: int) -> np.ndarray:
    """The 2-D plane ``[n_h, n_v]`` of ``array [X, Y, Z, ...]`` at ``index`` along the axis."""
    return np.take(array, index, axis=AXES[axis])


def slice_geometry(volume: Volume, axis: str, index: int | None, width: int, height: int) -> SliceGeometry:
    """Geometry of a ``width x height`` view of one slice (``index`` None: the middle one)."""
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
    mm_per_px = max(w_mm / width, h_mm / height)
    offset = ((width - w_mm / mm_per_px) / 2, (height - h_mm / mm_per_px) / 2)
    return SliceGeometry(axis, index, width, height, mm_per_px, offset, volume.shape, volume.spacing)


def _resample(plane: np.ndarray, geo: SliceGeometry, mode: str) -> np.ndarray:
    """Map a ``[n_h, n_v, C]`` plane onto the ``[H, W, C]`` screen (orientation + aspect)."""
    img = np.flip(plane, axis=(0, 1)).transpose(1, 0, 2)  # [n_v, n_h, C]: superior/anterior up, right on left
    w = int(round(img.shape[1] * geo.spacing[geo.in_plane[0]] / geo.mm_per_px))
    h = int(round(img.shape[0] * geo.spacing[geo.in_plane[1]] / geo.mm_per_px))
    t = torch.from_numpy(np.ascontiguousarray(img, dtype=np.float32)).permute(2, 0, 1)[None]
    if mode == "nearest":
        out = F.interpolate(t, size=(max(h, 1), max(w, 1)), mode="nearest")
    else:
        out = F.interpolate(t, size=(max(h, 1), max(w, 1)), mode="bilinear", align_corners=False)
    screen = np.zeros((geo.height, geo.width, plane.shape[2]), np.float32)
    u0, v0 = int(round(geo.offset[0])), int(round(geo.offset[1]))
    res = out[0].permute(1, 2, 0).numpy()[: geo.height - v0, : geo.width - u0]
    screen[v0:v0 + res.shape[0], u0:u0 + res.shape[1]] = res
    return screen


def default_window(data: np.ndarray) -> tuple[float, float]:
    """Grey-level window of a ``[X, Y, Z]`` channel: its 1st and 99th percentiles (on a subsample)."""
    sub = data[:: max(1, data.shape[0] // 64), :: max(1, data.shape[1] // 64)]
    lo, hi = np.percentile(sub, [1, 99])
    return float(lo), float(hi)


def render_slice(volume: Volume, axis: str = "axial", index: int | None = None, *, width: int = 256,
                 height: int = 256, channel: int = 0, window: tuple[float, float] | None = None,
                 labels: np.ndarray | None = None, classes: ClassTable | None = None, overlay: float = 0.45,
                 outline: bool = False) -> tuple[np.ndarray, SliceGeometry]:
    """One slice as an RGB image with an optional label overlay.

    Args:
        volume: the image (one channel shown, grey).
        axis, index: which slice (``index`` None: the middle).
        width, height: output size in pixels (the slice is letterboxed at its true aspect).
        channel: which channel of a multi-channel volume.
        window: ``(lo, hi)`` intensity window; default: the 1st-99th percentiles of the volume.
        labels: ``[X, Y, Z]`` label map to overlay (default: the volume's own); ``classes`` styles it
            (colour; hidden classes are not drawn; a class's opacity is a 3-D setting, per mm,
            and does not dim its overlay: a veiled edema in 3-D stays plain on the slices).
        overlay: overlay opacity in [0, 1].
        outline: draw only the label boundaries.

    Returns:
        ``(image [H, W, 3] uint8, geometry)``.
    """
    geo = slice_geometry(volume, axis, index, width, height)
    data = volume.data[channel]
    lo, hi = default_window(data) if window is None else window
    grey = np.clip((_plane(data, axis, geo.index) - lo) / max(hi - lo, 1e-6), 0, 1)
    rgb = _resample(np.repeat(grey[..., None], 3, axis=2), geo, "linear")
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
