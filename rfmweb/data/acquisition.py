"""Acquisition of a synthetic cohort case: bias field, slice thickness, noise, skull stripping, gain.

Applied to the noise-free head of :func:`rfmweb.data.appearance.synthesize`, per channel
(T1n, T1c, T2w, FLAIR), with parameters drawn per case by :func:`draw_acquisition`:

- bias field: a smooth multiplicative field per channel (correlation 60 mm), ``1 +- p`` at its
  extremes over the brain, peak ``p`` 5-35 % per case;
- slice thickness: a channel is acquired as thick axial slices with probability
  :data:`P_THICK` (else 3-D at the grid resolution): thickness 3-6 mm, slices as far apart as
  they are thick, a random offset; the slice profile is a gaussian of that FWHM along z, the
  slices are read out, noise is added to them and they are linearly interpolated back onto the
  grid (as BraTS resamples 1 x 1 x 5 mm scans to 1 mm isotropic);
- Rician noise ``|I + n_re + i n_im|``, sigma a fraction of the case's white-matter intensity:
  log-uniform 1-8 % per case, x 0.8-1.25 per channel;
- skull stripping: exact in 65 % of cases; in 35 % a rim of the head is left, everything within
  ``r(x)`` of the brain, ``r`` up to 2-12 mm where a smooth field (correlation 30 mm) lies in its
  top 30-100 % (tapering at the edges of those patches); 0 elsewhere outside the brain;
- scanner gain: x 0.6-1.6 per channel (log-uniform).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from ..samples import glioma
from ..samples.ct_phantom import smooth_field

#: Probability that a channel is acquired as thick axial slices (BraTS mixes 3-D T1c with 2-D
#: T2w / FLAIR).
P_THICK = {"T1n": 0.35, "T1c": 0.2, "T2w": 0.5, "FLAIR": 0.5}


@dataclass(frozen=True)
class Acquisition:
    """A case's drawn acquisition (per-channel tuples in T1n, T1c, T2w, FLAIR order).

    Attributes:
        bias_peak: relative peak of the bias fields.
        slice_mm: slice thickness in mm, 0 for a 3-D acquisition.
        slice_offset: offset of the first slice, in slices (0..1).
        noise: Rician sigma as a fraction of the case's white-matter intensity.
        gain: scanner gain.
        strip_rim_mm: thickness of the head rim left by skull stripping (0: exact stripping).
        strip_cover: fraction of the head surface where that rim may be left.
    """

    bias_peak: float
    slice_mm: tuple[float, ...]
    slice_offset: tuple[float, ...]
    noise: tuple[float, ...]
    gain: tuple[float, ...]
    strip_rim_mm: float
    strip_cover: float

    def info(self) -> dict:
        """JSON-ready summary for the manifest."""
        return {"bias_peak": round(self.bias_peak, 4), "slice_mm": [round(s, 2) for s in self.slice_mm],
                "noise_fraction": [round(n, 4) for n in self.noise], "gain": [round(g, 4) for g in self.gain],
                "strip_rim_mm": round(self.strip_rim_mm, 2), "strip_cover": round(self.strip_cover, 3)}


def draw_acquisition(rng: np.random.Generator) -> Acquisition:
    """Draw a case's acquisition (ranges in the module docstring)."""
    n = len(glioma.CHANNELS)
    bias = float(rng.uniform(0.05, 0.35))
    thick = [rng.random() < P_THICK[c] for c in glioma.CHANNELS]
    slices = rng.uniform(3.0, 6.0, n)
    offset = rng.uniform(0.0, 1.0, n)
    noise = np.exp(rng.uniform(np.log(0.01), np.log(0.08))) * rng.uniform(0.8, 1.25, n)
    gain = np.exp(rng.uniform(np.log(0.6), np.log(1.6), n))
    rim = rng.uniform(2.0, 12.0) if rng.random() < 0.35 else 0.0
    cover = rng.uniform(0.3, 1.0)
    return Acquisition(bias, tuple(float(s) if t else 0.0 for s, t in zip(slices, thick)),
                       tuple(float(o) for o in offset), tuple(float(v) for v in noise),
                       tuple(float(g) for g in gain), float(rim), float(cover))


def _lerp_z(a: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """``a [X, Y, Z]`` linearly interpolated at fractional z indices ``pos [K]`` (clamped to the
    ends): ``[X, Y, K]``."""
    pos = np.clip(pos, 0.0, a.shape[2] - 1)
    i0 = np.minimum(np.floor(pos).astype(int), a.shape[2] - 2) if a.shape[2] > 1 else np.zeros(len(pos), int)
    w = (pos - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, a.shape[2] - 1)
    return a[:, :, i0] * (1.0 - w) + a[:, :, i1] * w


def thick_slices(image: np.ndarray, spacing_mm: float, thickness_mm: float, offset: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Read ``image [X, Y, Z]`` (``spacing_mm`` voxels) out as axial slices ``thickness_mm`` thick.

    Returns:
        ``(slices [X, Y, K], positions [K])``: the slice images (gaussian slice profile of FWHM
        ``thickness_mm``) and their centres as fractional z indices of the grid, ``thickness_mm``
        apart, the first at ``(offset - 1)`` slices so that the slices cover the whole grid.
    """
    pitch = thickness_mm / spacing_mm
    blurred = ndimage.gaussian_filter1d(image, pitch / np.sqrt(8.0 * np.log(2.0)), axis=2, mode="nearest")
    count = int(np.ceil((image.shape[2] - 1) / pitch)) + 2
    positions = (offset - 1.0 + np.arange(count)) * pitch
    return _lerp_z(blurred, positions), positions


def back_to_grid(slices: np.ndarray, positions: np.ndarray, depth: int) -> np.ndarray:
    """Linear resampling of ``slices [X, Y, K]`` at z indices ``positions`` back onto ``depth``
    grid planes: ``[X, Y, depth]``."""
    pitch = positions[1] - positions[0]
    return _lerp_z(slices, (np.arange(depth) - positions[0]) / pitch)


def bias_fields(mask: np.ndarray, axes, peak: float, rng: np.random.Generator) -> np.ndarray:
    """``[4, X, Y, Z]`` float32 multiplicative fields, one per channel, smooth (correlation 60 mm),
    reaching ``1 +- peak`` at their extremes over ``mask``; ``axes`` are the grid's coordinates (mm)."""
    fields = []
    for _ in glioma.CHANNELS:
        f = smooth_field(axes, rng, 60.0)
        fields.append(1.0 + peak * f / (np.abs(f[mask]).max() + 1e-6))
    return np.stack(fields).astype(np.float32)


def strip_mask(mask: np.ndarray, outside: np.ndarray, axes, acq: Acquisition, rng: np.random.Generator
               ) -> np.ndarray:
    """``[X, Y, Z]`` bool: the brain ``mask``, plus the head rim that imperfect skull stripping kept.

    ``outside`` ``[X, Y, Z]`` is the distance (mm) from the brain (0 inside), ``axes`` the grid's
    coordinates (mm).
    """
    if acq.strip_rim_mm <= 0.0:
        return mask
    field = smooth_field(axes, rng, 30.0)
    rim = acq.strip_rim_mm * np.clip((field - ndtri(1.0 - acq.strip_cover)) / 0.5, 0.0, 1.0)
    return mask | (outside <= rim)


def acquire(clean: np.ndarray, mask: np.ndarray, outside: np.ndarray, axes, white_matter: np.ndarray,
            acq: Acquisition, rng: np.random.Generator) -> np.ndarray:
    """Bias, slices, noise, skull stripping and gain applied to ``clean``.

    Args:
        clean: ``[4, X, Y, Z]`` noise-free head (scanner units) on a grid of isotropic voxels.
        mask: ``[X, Y, Z]`` bool brain mask.
        outside: ``[X, Y, Z]`` distance (mm) from the brain.
        axes: the grid's voxel-centre coordinates (mm) along x, y, z.
        white_matter: ``[4]`` the case's white-matter intensity per channel (noise reference).
        acq: the case's :class:`Acquisition`.
        rng: the case's acquisition stream (after :func:`draw_acquisition`).

    Returns:
        ``[4, X, Y, Z]`` float32 image, 0 outside the skull-stripping mask.
    """
    step = float(axes[0][1] - axes[0][0])
    strip = strip_mask(mask, outside, axes, acq, rng)
    # only the stripping mask survives: work in its bounding box, grown along z by the widest slice
    # profile (6 mm FWHM reaches about 5 mm) so that thick slices still blur the head into it
    pad = int(np.ceil(6.0 / step))
    keep = ndimage.find_objects(strip.astype(np.uint8))[0]
    keep = keep[:2] + (slice(max(keep[2].start - pad, 0), min(keep[2].stop + pad, strip.shape[2])),)
    axes = [a[k] for a, k in zip(axes, keep)]
    bias = bias_fields(mask[keep], axes, acq.bias_peak, rng)
    out = np.zeros(clean.shape, np.float32)
    sub = out[(slice(None),) + keep]
    for c in range(clean.shape[0]):
        image = clean[c][keep] * bias[c]
        thick = acq.slice_mm[c] > step
        if thick:
            image, positions = thick_slices(image, step, acq.slice_mm[c], acq.slice_offset[c])
        sigma = acq.noise[c] * white_matter[c]
        re = image + sigma * rng.standard_normal(image.shape, dtype=np.float32)
        image = np.hypot(re, sigma * rng.standard_normal(image.shape, dtype=np.float32))
        sub[c] = back_to_grid(image, positions, sub.shape[3]) if thick else image
        sub[c] *= strip[keep] * acq.gain[c]
    return out
