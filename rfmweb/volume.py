"""The :class:`Volume` type: a scalar or multi-channel 3-D image in world millimetres.

Conventions (used by every renderer, model and front end):

- ``data`` is ``[C, X, Y, Z]`` float32; voxel ``(i, j, k)`` is ``data[:, i, j, k]``.
- ``affine`` maps voxel indices ``(i, j, k, 1)`` to world millimetres in RAS+ (+x towards the patient's
  right, +y anterior, +z superior), the NIfTI/nibabel convention. Loaders reorient to the closest canonical (RAS+) voxel order, so ``affine`` is
  diagonal-positive up to obliquity.
- CT intensities are Hounsfield units; MR intensities are in scanner units.
- ``labels`` is an optional ``[X, Y, Z]`` integer map on the same grid, described by ``classes``.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass, field, replace

import numpy as np

from .errors import InputError

#: Refuse volumes larger than this many voxels x channels (about 4 GiB of float32).
MAX_VOXELS = 1 << 30

MODALITIES = ("CT", "MR")

#: Coarsened copies, made once per volume and budget (:meth:`Volume.coarsened`): views of one scan share them.
_COARSE: "weakref.WeakKeyDictionary[Volume, dict[int, Volume]]" = weakref.WeakKeyDictionary()
_COARSE_LOCK = threading.Lock()
#: A label map with more values than this is coarsened by its blocks' centre voxels, not by majority.
MAJORITY_MAX_LABELS = 32


@dataclass(frozen=True)
class LabelClass:
    """One class of a label map.

    Attributes:
        index: the integer value in the label map.
        name: human-readable name ("liver", "ET").
        color: display colour, sRGB in [0, 1].
        group: anatomical group used by grouped toggles ("skeleton", "organs", "vessels",
            "soft tissue", "tumour"); empty when the class belongs to none.
    """

    index: int
    name: str
    color: tuple[float, float, float]
    group: str = ""


@dataclass(eq=False, repr=False)
class Volume:
    """A 3-D image with optional labels.

    Args:
        data: ``[C, X, Y, Z]`` or ``[X, Y, Z]`` (promoted to one channel), finite values; kept as a
            C-contiguous float32 array: such an array is shared, not copied (change it and the volume
            changes), any other dtype or layout is converted into a copy.
        affine: ``[4, 4]`` voxel-to-world (mm) matrix, invertible.
        modality: ``"CT"`` (HU) or ``"MR"``.
        channels: one name per channel, e.g. ``("T1n", "T1c", "T2w", "FLAIR")``.
        labels: ``[X, Y, Z]`` integer label map on the same grid, or ``None``.
        classes: the classes present in ``labels`` (index 0 is background by convention); default with
            labels: one per value present (:func:`generic_classes`: "label 1", ... in distinct colours).
        name: a short name for display.
        source: where the volume was read from, for writers that reference it (e.g. the DICOM
            headers of :class:`rfmweb.io.dicom.DicomSeries`, which a DICOM SEG points to); kept by
            :meth:`with_labels`, opaque to everything else, never shown (it may hold patient identifiers).

    Raises:
        InputError: on any inconsistency (names the problem; ``path`` is filled in by loaders).
    """

    data: np.ndarray
    affine: np.ndarray = None  # required; a default only so that leaving it out is an InputError, not a TypeError
    modality: str = "CT"
    channels: tuple[str, ...] = ("intensity",)
    labels: np.ndarray | None = None
    classes: tuple[LabelClass, ...] = ()
    name: str = ""
    source: object = field(default=None, repr=False)
    _range_cache: dict = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        data = np.asarray(self.data)
        if data.ndim == 3:
            data = data[None]
        if data.ndim != 4:
            raise InputError(f"volume must be 3-D (or 4-D with channels first), got shape {data.shape}")
        channels = tuple(self.channels)
        # channels last ([X, Y, Z, C]): a last axis as long as the names, or a few against a long first one
        last = data.shape[-1] == len(channels) != data.shape[0] or data.shape[-1] <= 4 < data.shape[0]
        hint = (f"; channels go first ([C, X, Y, Z]): np.moveaxis(data, -1, 0) for an array of shape "
                f"{tuple(data.shape)}" if last else "")
        if min(data.shape[1:]) < 2:
            raise InputError(f"volume needs at least 2 voxels along each axis, got shape {data.shape[1:]}{hint}")
        check_size(data.shape)
        if not np.issubdtype(data.dtype, np.number) or np.issubdtype(data.dtype, np.complexfloating):
            raise InputError(f"volume data must be real numbers, got dtype {data.dtype}")
        data = np.ascontiguousarray(data, dtype=np.float32)
        if not np.isfinite(data).all():
            bad = int((~np.isfinite(data)).sum())
            raise InputError(f"volume contains {bad} NaN/Inf values")
        self.data = data
        if self.affine is None:
            raise InputError("a Volume needs its affine: the 4x4 voxel-to-world matrix in mm (RAS), e.g. "
                             "np.diag([sx, sy, sz, 1]) for voxels of sx x sy x sz mm (a file's: rfmweb.load_volume)")
        self.affine = check_affine(self.affine)
        if self.modality not in MODALITIES:
            raise InputError(f"modality must be one of {MODALITIES}, got {self.modality!r}")
        self.channels = channels
        if len(self.channels) != data.shape[0]:
            raise InputError(f"{data.shape[0]} channels but {len(self.channels)} channel names {self.channels}{hint}")
        if self.labels is not None:
            self.labels = check_labels(self.labels, data.shape[1:])
        self.classes = tuple(self.classes)
        if self.labels is not None and not self.classes:
            self.classes = generic_classes(self.labels)
        indices = [c.index for c in self.classes]
        if len(set(indices)) != len(indices):
            raise InputError(f"class indices must be unique, got {indices}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size ``(X, Y, Z)`` in voxels."""
        return tuple(int(s) for s in self.data.shape[1:])  # type: ignore[return-value]

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along each voxel axis (column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]

    @property
    def obliquity_deg(self) -> float:
        """How far the voxel axes turn from the world (RAS) axes, degrees: 0 for a scan on the
        scanner's axes (the slice views show voxel planes, so an oblique scan's "axial" is tilted)."""
        unit = self.affine[:3, :3] / np.linalg.norm(self.affine[:3, :3], axis=0)
        return float(np.degrees(np.arccos(np.clip(np.abs(unit).max(axis=0).min(), 0.0, 1.0))))

    @property
    def bounds(self) -> np.ndarray:
        """``[2, 3]`` world-space (mm) axis-aligned box around the voxel centres."""
        corners = np.array(np.meshgrid(*[[0, s - 1] for s in self.shape], indexing="ij")).reshape(3, -1)
        world = self.affine[:3, :3] @ corners + self.affine[:3, 3:4]
        return np.stack([world.min(axis=1), world.max(axis=1)])

    @property
    def center(self) -> np.ndarray:
        """``[3]`` world-space centre of the grid in mm."""
        return self.bounds.mean(axis=0)

    def __repr__(self) -> str:
        """One line, never the voxels: ``Volume('ct_phantom', CT, 128x96x160 of 2.5x2.5x2.5 mm, ...)``."""
        labels = "no labels" if self.labels is None else f"labels: {len(self.classes)} classes"
        return (f"Volume({self.name!r}, {self.modality}, {'x'.join(map(str, self.shape))} of "
                f"{'x'.join(f'{s:g}' for s in self.spacing)} mm, channels {list(self.channels)}, {labels})")

    def channel(self, name: str) -> np.ndarray:
        """``[X, Y, Z]`` view of the named channel."""
        try:
            return self.data[self.channels.index(name)]
        except ValueError:
            raise InputError(f"no channel {name!r}; channels are {self.channels}") from None

    def intensity_range(self, channel: int = 0) -> tuple[float, float]:
        """(min, max) of one channel, cached."""
        if channel not in self._range_cache:
            d = self.data[channel]
            self._range_cache[channel] = (float(d.min()), float(d.max()))
        return self._range_cache[channel]

    def class_by_index(self, index: int) -> LabelClass | None:
        for c in self.classes:
            if c.index == index:
                return c
        return None

    def coarse_factors(self, max_voxels: int) -> tuple[int, int, int]:
        """Voxels per block along each axis so that at most ``max_voxels`` blocks remain: ``(1, 1, 1)``
        when the grid fits; else the factor of the axis of the finest (block) spacing is doubled, and
        again, so that 512 x 512 x 600 voxels of 0.5 x 0.5 x 0.6 mm become 256 x 256 x 600 of
        1.0 x 1.0 x 0.6 mm, then (under 32 Mi voxels) 256 x 256 x 300 of 1.0 x 1.0 x 1.2 mm."""
        factors = [1, 1, 1]
        while math.prod(s // f for s, f in zip(self.shape, factors)) > max_voxels:
            axis = min((a for a in range(3) if self.shape[a] // factors[a] >= 4),
                       key=lambda a: self.spacing[a] * factors[a], default=None)
            if axis is None:
                break
            factors[axis] *= 2
        return tuple(factors)

    def coarsened(self, max_voxels: int) -> "Volume":
        """This volume with at most ``max_voxels`` voxels, for views that cannot afford every voxel
        (the 3-D renderers on a CPU: ~30 bytes a voxel, seconds a frame). Itself when it fits; else
        blocks of :meth:`coarse_factors` voxels: the block mean of the data, the majority label of
        the block (no label value appears that was not there; the block's centre voxel when there
        are more than :data:`MAJORITY_MAX_LABELS` values), the affine of the block centres; a part
        block at the far edge is dropped. Made once per volume (shared by its views), then kept."""
        factors = self.coarse_factors(max_voxels)
        if factors == (1, 1, 1):
            return self
        with _COARSE_LOCK:
            held = _COARSE.setdefault(self, {})
            if max_voxels not in held:
                held[max_voxels] = self._blocks(factors)
            return held[max_voxels]

    def _blocks(self, f: tuple[int, int, int]) -> "Volume":
        n = [s // k for s, k in zip(self.shape, f)]
        cut = (slice(0, n[0] * f[0]), slice(0, n[1] * f[1]), slice(0, n[2] * f[2]))
        split = (n[0], f[0], n[1], f[1], n[2], f[2])
        data = self.data[(slice(None), *cut)].reshape(self.data.shape[0], *split).mean(axis=(2, 4, 6), dtype=np.float32)
        labels = None
        if self.labels is not None:
            lab = self.labels[cut]
            values = np.flatnonzero(np.bincount(lab.ravel()))
            if len(values) > MAJORITY_MAX_LABELS:
                labels = lab[f[0] // 2::f[0], f[1] // 2::f[1], f[2] // 2::f[2]]
            else:
                counts = np.stack([(lab == v).reshape(split).sum(axis=(1, 3, 5), dtype=np.uint16) for v in values])
                labels = values[counts.argmax(axis=0)].astype(np.uint16)
        affine = self.affine.copy()
        affine[:3, :3] = self.affine[:3, :3] * np.asarray(f, dtype=np.float64)
        affine[:3, 3] = self.affine[:3, :3] @ ((np.asarray(f, dtype=np.float64) - 1) / 2) + self.affine[:3, 3]
        return replace(self, data=data, affine=affine, labels=labels, _range_cache={})

    def with_labels(self, labels: np.ndarray | None, classes: tuple[LabelClass, ...] | None = None) -> "Volume":
        """A copy sharing ``data`` with another label map (and class table)."""
        return replace(self, labels=labels, classes=self.classes if classes is None else classes,
                       _range_cache=self._range_cache)


def generic_classes(labels: np.ndarray) -> tuple[LabelClass, ...]:
    """One class per label value present, with distinct colours (a qualitative palette)."""
    palette = [(0.89, 0.10, 0.11), (0.22, 0.49, 0.72), (0.30, 0.69, 0.29), (0.60, 0.31, 0.64),
               (1.00, 0.50, 0.00), (1.00, 1.00, 0.20), (0.65, 0.34, 0.16), (0.97, 0.51, 0.75)]
    values = np.unique(labels)
    return tuple(LabelClass(int(v), "background" if v == 0 else f"label {int(v)}",
                            (0.0, 0.0, 0.0) if v == 0 else palette[(int(v) - 1) % len(palette)])
                 for v in values)


def check_size(shape: tuple[int, ...]) -> None:
    """Refuse absurd sizes before anything is allocated."""
    n = 1
    for s in shape:
        if s <= 0:
            raise InputError(f"volume has an empty axis, shape {tuple(shape)}")
        n *= int(s)
    if n > MAX_VOXELS:
        raise InputError(f"volume of shape {tuple(shape)} has {n:,} values, more than the {MAX_VOXELS:,} "
                         "this viewer accepts; crop or downsample it first")


#: The largest voxel side accepted (mm): 1 m; anything larger is a corrupt header, not a scan.
MAX_SPACING_MM = 1000.0


def check_affine(affine: np.ndarray) -> np.ndarray:
    """Validate a voxel-to-world matrix: 4x4, finite, invertible, positive voxel sizes."""
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4):
        raise InputError(f"affine must be 4x4, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise InputError("the voxel-to-world matrix (affine) contains NaN/Inf")
    spacing = np.linalg.norm(a[:3, :3], axis=0)
    if (spacing <= 1e-6).any() or abs(np.linalg.det(a[:3, :3])) < 1e-12:
        shown = tuple(float(s) for s in spacing.round(6))
        raise InputError(f"voxel spacing must be > 0 mm and the affine invertible, got spacing {shown}")
    if (spacing > MAX_SPACING_MM).any():
        raise InputError(f"voxel spacing {tuple(float(s) for s in spacing.round(3))} mm is absurd (over "
                         f"{MAX_SPACING_MM:g} mm); the header's voxel sizes are corrupt")
    return a


#: Voxel axes may stray from perpendicular by this many degrees (rounding in a header), no more.
PERPENDICULAR_TOLERANCE_DEG = 0.1


def check_perpendicular(affine: np.ndarray) -> np.ndarray:
    """Refuse a voxel-to-world matrix whose voxel axes are not perpendicular (a sheared grid, e.g. a
    tilted gantry's): the slice views and measurements assume perpendicular axes."""
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    unit = a / np.linalg.norm(a, axis=0)
    cosines = np.abs(unit.T @ unit - np.eye(3))
    worst = float(90.0 - np.degrees(np.arccos(min(1.0, cosines.max()))))
    if worst > PERPENDICULAR_TOLERANCE_DEG:
        raise InputError(f"the voxel axes are sheared by {worst:.2f} degrees (a tilted gantry?): the views "
                         "assume perpendicular axes; resample to a perpendicular grid first (e.g. 3D Slicer "
                         "or dcm2niix)")
    return np.asarray(affine, dtype=np.float64)


def check_labels(labels: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a label map: integer values (integral floats accepted), same grid shape."""
    lab = np.asarray(labels)
    if lab.ndim == 4 and lab.shape[-1] == 1:
        lab = lab[..., 0]
    if tuple(lab.shape) != tuple(shape):
        raise InputError(f"label map shape {lab.shape} differs from the volume grid {tuple(shape)}")
    if np.issubdtype(lab.dtype, np.floating):
        if not np.isfinite(lab).all() or not np.array_equal(lab, np.round(lab)):
            raise InputError(f"label map must hold integer labels, got non-integral {lab.dtype} values")
    elif not np.issubdtype(lab.dtype, np.integer) and lab.dtype != np.bool_:
        raise InputError(f"label map must be integer, got dtype {lab.dtype}")
    if lab.size and (lab.min() < 0 or lab.max() > 65535):
        raise InputError(f"label values must lie in 0..65535, got {lab.min()}..{lab.max()}")
    return np.ascontiguousarray(lab, dtype=np.uint16)
