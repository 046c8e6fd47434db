r"""Fields for the ray-marcher: a scalar volume through a transfer function, with labels.

:class:`ScalarField` is the one field every volume renders through. A CT is its own scalar; an
MRI's modalities are first blended into one scalar by :class:`ChannelMix` (per-modality toggle,
weight, window and gamma). Labels are styled by a :class:`~rfmweb.transfer.ClassTable`: a table
that tints and scales the TF blends the styles of the 8 voxels around a sample with the trilinear
weights (a class boundary is then as smooth as the intensity and turns with the view without
voxel-sized flicker); solid labels, which replace the TF, are sampled nearest-neighbour. Shading
is Blinn-Phong with a headlight and two-sided normals, matching VTK's volume mappers (see
:class:`~rfmweb.transfer.Shading`).

Pre-integration (Engel, Kraus and Ertl 2001, without self-attenuation within a segment): a sample
stands for the segment ``[t - dt, t]`` of its ray. With a steep transfer function (CT-Soft-Tissue
goes from clear to opaque over a few HU) the scalar can cross the whole opacity ramp between two
samples; point sampling then sees the surface only at the samples that happen to fall on the ramp,
and the lattice of samples draws wood-grain rings. Pre-integrated, the segment's extinction is
the TF's mean extinction over the scalar interval the segment spans,

.. math::

    \bar\sigma = \frac{\Sigma(s_b) - \Sigma(s_f)}{s_b - s_f}, \qquad
    \bar c = \frac{K(s_b) - K(s_f)}{\Sigma(s_b) - \Sigma(s_f)}, \qquad
    \Sigma(s) = \int^s \sigma, \; K(s) = \int^s \sigma c,

with ``s_f``, ``s_b`` the scalar at the segment's ends (tables over the TF's lookup table,
:func:`preintegration_tables`), so a ramp crossed anywhere in a segment counts in full. The scalar
is taken as linear along the segment, which is cut into :attr:`ScalarField.PREINT_PIECES` pieces,
each pre-integrated as above and composited front to back: on a near-opaque preset the colour is
then the one where the light stops, not the mean over the whole step (the reference render is
within SSIM 0.99 of 4x the samples on CT-Soft-Tissue: 0.984 with one piece).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from ..backend import compiled_cpu, numba_threads
from ..errors import InputError
from ..transfer import ClassTable, TransferFunction
from ..transfer.function import MAX_OPACITY
from .sampling import GridSampler, gradient_volume

#: TF lookup table resolution (entries over the intensity range).
LUT_SIZE = 4096


@dataclass(frozen=True)
class ChannelSetting:
    """How one MRI modality contributes to the blended scalar.

    ``value = clip((I - lo) / (hi - lo), 0, 1) ** gamma``, weighted by ``weight`` when ``enabled``.
    """

    enabled: bool = True
    weight: float = 1.0
    window: tuple[float, float] | None = None  # (lo, hi); None = 1st..99th percentile
    gamma: float = 1.0


@dataclass(frozen=True)
class ChannelMix:
    """Blend of a multi-channel volume into one scalar in [0, 1] (weights normalised)."""

    settings: tuple[ChannelSetting, ...]

    def blend(self, data: torch.Tensor) -> torch.Tensor:
        """``[C, X, Y, Z]`` -> ``[X, Y, Z]`` blended scalar in [0, 1] (differentiable)."""
        if len(self.settings) != data.shape[0]:
            raise InputError(f"channel mix has {len(self.settings)} settings for {data.shape[0]} channels")
        total = sum(s.weight for s in self.settings if s.enabled)
        if total <= 0:
            return torch.zeros_like(data[0])
        out = torch.zeros_like(data[0])
        for c, s in enumerate(self.settings):
            if not s.enabled or s.weight == 0:
                continue
            lo, hi = s.window if s.window is not None else _percentiles(data[c])
            v = ((data[c] - lo) / max(hi - lo, 1e-6)).clamp(0.0, 1.0)
            out = out + (s.weight / total) * (v ** s.gamma if s.gamma != 1.0 else v)
        return out


def default_mix(volume, channel: int = 0) -> ChannelMix | None:
    """MR: modality ``channel`` alone, windowed to its 1st-99th percentiles; CT: ``None`` (HU)."""
    if volume.modality != "MR":
        return None
    return ChannelMix(tuple(ChannelSetting(enabled=(c == channel)) for c in range(volume.data.shape[0])))


def scalar_np(data: np.ndarray, mix: ChannelMix | None) -> np.ndarray:
    """The scalar a TF sees, ``[X, Y, Z]`` float32: channel 0 (CT, HU) or the blended channels (MR)."""
    if mix is None:
        return data[0]
    return mix.blend(torch.from_numpy(data)).numpy()


#: TF opacity below which a voxel counts as empty for empty-space skipping
VISIBLE_EPS = 1e-3
#: Gaussian (voxels) across which tissue beside a hidden class fades out (:func:`hide_voxels`)
HIDE_FADE_SIGMA = 1.0
#: how far below the TF's transparent edge (fraction of the intensity span) a hidden class's inside goes
HIDE_FADE_MARGIN = 0.01


def tf_visible(scalar: torch.Tensor, tf: TransferFunction, eps: float = VISIBLE_EPS) -> torch.Tensor:
    """``[X, Y, Z]`` bool: the voxels whose value the TF gives an opacity above ``eps`` (two
    comparisons per interval of :meth:`~rfmweb.transfer.TransferFunction.visible_intervals`, several
    times faster than interpolating the opacity)."""
    x = scalar.detach()
    visible = torch.zeros(x.shape, dtype=torch.bool, device=x.device)
    for lo, hi in tf.visible_intervals(eps):
        if math.isinf(lo) and math.isinf(hi):
            visible.fill_(True)
        elif math.isinf(lo):
            visible |= x < hi
        elif math.isinf(hi):
            visible |= x > lo
        else:
            visible |= (x > lo) & (x < hi)
    return visible


def surface_owners(labels: torch.Tensor, scalar: torch.Tensor, tf: TransferFunction, classes: tuple[int, ...],
                   hidden: tuple[int, ...] = (), chunk: int = 32) -> torch.Tensor:
    """``labels`` ``[X, Y, Z]`` for the class lookup of a marcher, with the surface of the classes in
    ``classes`` (drawn translucent) given to them.

    A structure's visible surface lies where the interpolated scalar crosses the TF's ramp, between its
    own voxels and their neighbours, whose label is another class (the tissue around a rib). Read with
    the labels as they are, the samples there take much of the neighbours' class opacity, and a thin
    bone at class opacity 0 stays drawn. So a voxel next to (26-neighbourhood) a voxel of one of
    ``classes`` takes that class's label (of the neighbour the TF makes most opaque) when the TF makes
    its own value less than half as opaque as that neighbour's (transparent tissue, or a faint
    partial-volume rim), or when it is of a class in ``hidden`` (faded out of ``scalar`` by
    :func:`hide_voxels`, which leaves the voxels beside a shown structure a smooth fall-off of that
    structure's values): the samples of the surface are then the structure's, as opacity-weighted
    interpolation of the voxels' classes would make them. Voxels of ``classes`` keep their label.
    Works in slabs of ``chunk`` along the first axis (memory: a few slabs of the structures' box);
    returns ``labels`` itself when nothing changes.
    """
    if not classes:
        return labels
    own = torch.isin(labels, torch.tensor(classes, dtype=labels.dtype, device=labels.device))
    where = torch.nonzero(own & tf_visible(scalar, tf))
    if not len(where):
        return labels
    box = tuple(slice(max(0, int(i.min()) - 1), min(n, int(i.max()) + 2)) for i, n in zip(where.T, labels.shape))
    alpha = tf.evaluate(scalar[box].float())[1]
    value = torch.where(own[box], alpha, -torch.inf)          # the translucent classes' voxels, by opacity
    free = ~own[box] & torch.isin(labels[box], torch.tensor(hidden, dtype=labels.dtype, device=labels.device))
    sub_labels = labels[box]
    out = labels.clone()
    target = out[box]
    for start in range(0, value.shape[0], chunk):
        a, b = max(0, start - 1), min(value.shape[0], start + chunk + 1)     # one slab plus a voxel each side
        best, index = torch.nn.functional.max_pool3d(value[None, a:b], 3, stride=1, padding=1, return_indices=True)
        rows = slice(start, min(start + chunk, value.shape[0]))
        best, index = best[0, start - a:start - a + rows.stop - rows.start], index[0, start - a:rows.stop - a]
        take = (best > 0) & ~own[box][rows] & (free[rows] | (2 * alpha[rows] < best))
        target[rows][take] = sub_labels[a:b].reshape(-1)[index[take]]
    return out


def hide_key(hidden: tuple[int, ...], tf: TransferFunction) -> tuple:
    """What :func:`hide_voxels` depends on besides the volume and labels (a cache key): the hidden
    classes and where the TF's opacity is 0, not its height elsewhere."""
    return (hidden, tuple((x, a > 0) for x, a in tf.opacity)) if hidden else ((), None)


def marched_classes(classes: ClassTable, tf: TransferFunction) -> ClassTable:
    """``classes`` as a marcher applies them to a scalar :func:`hide_voxels` faded (hidden classes
    ``hidden_in_scalar`` when the TF is somewhere transparent)."""
    if classes.hidden and tf.transparent_edge() is not None and not classes.hidden_in_scalar:
        return replace(classes, hidden_in_scalar=True)
    return classes


def hide_voxels(scalar, labels, hidden: tuple[int, ...], tf: TransferFunction):
    r"""The scalar ``[X, Y, Z]`` with the classes in ``hidden`` faded out of what the TF shows.

    Moving the hidden voxels to a transparent intensity leaves the tissue beside them an edge on
    the voxel lattice: a Lego staircase where the label map cuts visible tissue, sparkles where it
    is a voxel thick. Instead, with ``h`` the hidden voxels the TF shows (opacity > 0) and ``w``
    the visible fraction, the mask "not ``h``" blurred by a Gaussian of :data:`HIDE_FADE_SIGMA`
    voxels (a smooth field whose 0.5 level is the label map's outline, rounded),

    .. math::

        s' = t + w\,(\tilde s - t) - (1 - w)\,m \text{ where the TF shows } s, \qquad
        s' = s \text{ elsewhere},

    with ``t`` the TF's transparent edge (:meth:`~rfmweb.transfer.TransferFunction.transparent_edge`),
    ``m`` :data:`HIDE_FADE_MARGIN` of the intensity span (signed away from what the TF shows), and
    ``s~`` the scalar itself off ``h`` and, on ``h``, the Gaussian-weighted mean of the voxels off
    ``h`` around it: a hidden structure's own intensities never show (no ghost of a hidden skull),
    the tissue beside it fades out across about two voxels, a class the TF does not show (air)
    changes nothing when hidden, and the inside of a hidden structure (``t - m``) is clear of the
    lookup table's last step before ``t``. The field stays smooth there: a cubic B-spline read
    rings at a jump. Works on numpy arrays and torch tensors; returns ``scalar`` itself when
    nothing shown is hidden or the TF is nowhere transparent.
    """
    if isinstance(scalar, torch.Tensor):
        return HiddenFade()(scalar, labels, hidden, tf)
    tensor = torch.from_numpy(np.ascontiguousarray(scalar, dtype=np.float32))
    out = HiddenFade()(tensor, None if labels is None else torch.from_numpy(np.asarray(labels, dtype=np.int64)),
                       hidden, tf)
    return scalar if out is tensor else out.numpy()


@dataclass
class _Blurs:
    """What :func:`hide_voxels` makes of one scalar, label map and set of hidden voxels (not of the TF)."""

    scalar: torch.Tensor              # [X, Y, Z] the scalar and labels they were made from (compared by identity)
    labels: torch.Tensor
    hidden: tuple[int, ...]
    in_hidden: torch.Tensor           # [X, Y, Z] bool: voxels of the hidden classes
    span: float                       # the scalar's max - min
    hide: torch.Tensor | None = None  # [X, Y, Z] bool: those the TF shows
    box: tuple[slice, ...] | None = None  # around them, grown by the blur's reach
    w: torch.Tensor | None = None     # [box] the visible fraction
    base: torch.Tensor | None = None  # [box] s~: the scalar off the hidden voxels, the mean around them on them


class HiddenFade:
    """:func:`hide_voxels` that keeps its Gaussian blurs for the next call of one renderer.

    They depend on the scalar and labels (compared by identity), the hidden classes and which of their
    voxels the TF shows, not on where the TF's transparent edge lies: a TF drag with a class hidden
    then redoes only the element-wise fade (a hidden bone is shown over the whole drag of CT-Muscle).
    Holds a few copies of the volume's size; one thread at a time.
    """

    def __init__(self) -> None:
        self._blurs: _Blurs | None = None

    def __call__(self, scalar: torch.Tensor, labels: torch.Tensor | None, hidden: tuple[int, ...],
                 tf: TransferFunction) -> torch.Tensor:
        edge = tf.transparent_edge()
        if not hidden or labels is None or edge is None:
            return scalar
        b = self._blurs
        if b is None or b.scalar is not scalar or b.labels is not labels or b.hidden != hidden:
            in_hidden = torch.isin(labels, torch.tensor(hidden, device=labels.device, dtype=labels.dtype))
            b = self._blurs = _Blurs(scalar, labels, hidden, in_hidden, float(scalar.max() - scalar.min()))
        shown = tf_visible(scalar, tf, 0.0)
        hide = b.in_hidden & shown
        if b.hide is None or not torch.equal(hide, b.hide):
            b.hide, b.box = hide, _grown_box(hide, _blur_radius(HIDE_FADE_SIGMA) + 1)
            if b.box is not None:
                s, h = scalar[b.box].detach(), hide[b.box]
                keep = (~h).to(s.dtype)
                b.w = gaussian_blur(keep, HIDE_FADE_SIGMA)
                around = gaussian_blur(s * keep, HIDE_FADE_SIGMA) / b.w.clamp_min(1e-12)
                b.base = torch.where(h, around, s)
        if b.box is None:
            return scalar
        lo, hi = tf.x_range
        above = any(a >= edge for a, _ in tf.visible_intervals())           # what the TF shows lies above t
        margin = HIDE_FADE_MARGIN * max(hi - lo, b.span) * (1.0 if above else -1.0)
        faded = edge + b.w * (b.base - edge) - (1 - b.w) * margin
        out = scalar.detach().clone()
        out[b.box] = torch.where(shown[b.box] & (b.w < 1 - 1e-6), faded, out[b.box])
        return out


def _grown_box(mask: torch.Tensor, reach: int) -> tuple[slice, ...] | None:
    """Slices of the bounding box of ``mask [X, Y, Z]`` grown by ``reach`` voxels (``None`` if empty)."""
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        idx = torch.nonzero(mask.any(dim=other[1]).any(dim=other[0])).squeeze(1)
        if idx.numel() == 0:
            return None
        box.append(slice(max(int(idx[0]) - reach, 0), min(int(idx[-1]) + reach + 1, mask.shape[axis])))
    return tuple(box)


def label_normals(labels: torch.Tensor, shown: tuple[int, ...], affine: np.ndarray,
                  sigma_vox: float = 1.0) -> torch.Tensor:
    """``[3, X, Y, Z]`` world gradient of the Gaussian-smoothed mask of the labels in ``shown``.

    Used as the normal of solid label surfaces (segmentations): smooth where a label map is
    blocky, and independent of the image noise underneath. Computed on the labels' bounding box
    grown by the blur's reach and the difference stencil (zero beyond it): a tumour in a brain is a
    few percent of the grid.
    """
    mask = torch.isin(labels, torch.tensor(shown, dtype=labels.dtype, device=labels.device))
    out = torch.zeros((3, *labels.shape), dtype=torch.float32, device=labels.device)
    box = _grown_box(mask, _blur_radius(sigma_vox) + 2)
    if box is None:
        return out
    out[(slice(None), *box)] = gradient_volume(gaussian_blur(mask[box].float(), sigma_vox), affine)
    return out


def gaussian_blur(volume: torch.Tensor, sigma_vox: float) -> torch.Tensor:
    """``[X, Y, Z]`` volume blurred by a Gaussian of ``sigma_vox`` voxels (separable, edges replicated)."""
    for axis in range(3):
        volume = _blur_axis(volume, sigma_vox, axis)
    return volume


def shading_gradient(scalar: torch.Tensor, affine: np.ndarray, sigma_mm: float | None = None, *,
                     out: torch.Tensor | None = None) -> torch.Tensor:
    """``[3, X, Y, Z]`` world gradient used for shading and gradient opacity: of the scalar blurred
    by a Gaussian of ``sigma_mm`` (default: half the smallest voxel spacing); written into ``out``
    (a contiguous ``[3, X, Y, Z]`` tensor of the scalar's dtype) when given.

    Central differences of the raw voxels make normals that step with every slice of a CT whose
    slices are thicker than its pixels (1.5 mm on 0.96 mm): lit surfaces then show terraces that
    crawl as the camera turns. A mild blur (half a voxel) smooths them without softening edges. On the
    CPU (float32, no gradient wanted) a compiled twin runs (:mod:`._numba_volume`).
    """
    spacing = np.linalg.norm(np.asarray(affine)[:3, :3], axis=0)
    sigma_mm = 0.5 * float(spacing.min()) if sigma_mm is None else float(sigma_mm)
    sigmas = [sigma_mm / float(s) for s in spacing]        # per-axis sigma in voxels: separable
    if compiled_cpu(scalar):
        from . import _numba_volume                           # imports numba: only where it runs
        kernels = tuple(np.asarray(_gaussian_weights(s) if s >= 0.2 else [1.0], dtype=np.float32) for s in sigmas)
        inv_t = np.ascontiguousarray(np.linalg.inv(np.asarray(affine, dtype=np.float64)[:3, :3]).T, dtype=np.float32)
        out = torch.empty((3, *scalar.shape), dtype=torch.float32) if out is None else out
        with numba_threads():
            _numba_volume.shading_gradient(np.ascontiguousarray(scalar.detach().numpy()), kernels, inv_t, out.numpy())
        return out
    blurred = scalar
    for axis, sigma_vox in enumerate(sigmas):
        if sigma_vox >= 0.2:
            blurred = _blur_axis(blurred, sigma_vox, axis)
    gradient = gradient_volume(blurred, affine)
    return gradient if out is None else out.copy_(gradient)


def _blur_radius(sigma_vox: float) -> int:
    """Half-width (voxels) of the Gaussian kernel of :func:`gaussian_blur`."""
    return max(1, int(math.ceil(3 * sigma_vox)))


def _gaussian_weights(sigma_vox: float) -> list[float]:
    """The normalised Gaussian kernel of :func:`gaussian_blur` (``2 r + 1`` taps, ``r`` :func:`_blur_radius`)."""
    radius = _blur_radius(sigma_vox)
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma_vox) ** 2)
    return (k / k.sum()).tolist()


def _blur_axis(volume: torch.Tensor, sigma_vox: float, axis: int) -> torch.Tensor:
    """``volume`` blurred along ``axis`` (edges replicated): a weighted sum of shifted views, several
    times faster on the CPU than a one-channel convolution."""
    weights = _gaussian_weights(sigma_vox)
    radius = len(weights) // 2
    n = volume.shape[axis]
    padded = volume.index_select(axis, torch.arange(-radius, n + radius, device=volume.device).clamp(0, n - 1))
    out = padded.narrow(axis, 0, n) * weights[0]
    for j in range(1, len(weights)):
        out = out.add_(padded.narrow(axis, j, n), alpha=weights[j])
    return out


def preintegration_tables(lut: torch.Tensor, unit_distance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Cumulative integrals of a TF lookup table over its index: ``(Sigma [n], K [n, 3])`` float64.

    ``lut [n, 4]`` is RGBA over ``n`` evenly spaced intensities; ``sigma = -ln(1 - a) / unit_distance``
    (1/mm) per entry, ``Sigma[k] = sum_{j<k} (sigma_j + sigma_{j+1}) / 2`` (trapezoids, one index unit
    each) and ``K`` the same for ``sigma * rgb``. Linear between entries (see the module docstring).
    """
    lut = lut.detach().to(torch.float64)
    sigma = -torch.log1p(-lut[:, 3].clamp(0.0, MAX_OPACITY)) / unit_distance
    emit = sigma[:, None] * lut[:, :3]

    def cumulative(v: torch.Tensor) -> torch.Tensor:
        steps = 0.5 * (v[1:] + v[:-1])
        return torch.cat([torch.zeros_like(v[:1]), torch.cumsum(steps, 0)])
    return cumulative(sigma), cumulative(emit)


def _percentiles(x: torch.Tensor) -> tuple[float, float]:
    sub = x.detach().flatten()[:: max(1, x.numel() // 200_000)].float().cpu().numpy()
    lo, hi = np.percentile(sub, [1, 99])
    return float(lo), float(hi)


class ScalarField:
    """Scalar volume -> (colour, extinction) through a TF, with shading, gradient opacity and labels.

    Args:
        grid: ``[1, X, Y, Z]`` scalar, or ``[4, X, Y, Z]`` scalar + world gradient (units per mm);
            the gradient (:func:`shading_gradient`) is computed here when shading needs it and it is missing. Gradients
            (autograd) flow to ``grid``.
        affine: ``[4, 4]`` voxel-to-world matrix (mm).
        tf: transfer function in the scalar's units.
        labels: ``[X, Y, Z]`` integer tensor or ``None``.
        classes: styles for the labels (ignored without labels).
        shade: apply the TF's shading (False for unlit renders).
        value_range: ``(min, max)`` of the scalar, if known (saves a pass over the grid).
        label_normals: ``[3, X, Y, Z]`` gradient of the smoothed mask of the visible solid labels
            (see :func:`label_normals`): solid labels are lit by their own boundary, not by the
            (noisy) intensity gradient.
        preintegrate: the marcher's sample step (mm): each sample then stands for the segment
            ``[t - step, t]`` and the TF is pre-integrated over it (module docstring); ``None``:
            point samples.
        coefficients: ``[X, Y, Z]`` cubic B-spline coefficients of the scalar
            (:func:`~rfmweb.render.sampling.bspline_coefficients`): the scalar is then read through the
            interpolating cubic B-spline (C2: no contour rings from the voxel lattice on steep TFs;
            8 trilinear reads per sample) instead of trilinearly. Gradients stay trilinear.

    Call with ``(points [N, 3], dirs [N, 3])`` -> ``(rgb [N, 3], sigma [N] in 1/mm)``.
    """

    #: below this many lookup-table entries across a piece of a segment, the TF is read at its middle
    PREINT_MIN_SPAN = 0.05
    #: pieces a segment is composited in (front to back): the colour comes from where the light stops
    PREINT_PIECES = 4

    def __init__(self, grid: torch.Tensor, affine: np.ndarray, tf: TransferFunction,
                 labels: torch.Tensor | None = None, classes: ClassTable | None = None, *, shade: bool = True,
                 value_range: tuple[float, float] | None = None, label_normals: torch.Tensor | None = None,
                 preintegrate: float | None = None, coefficients: torch.Tensor | None = None) -> None:
        if grid.dim() == 3:
            grid = grid[None]
        self.tf = tf
        self.shade = shade and tf.shading.enabled
        self.use_grad_opacity = tf.uses_gradient_opacity
        need_grad = self.shade or self.use_grad_opacity
        if need_grad and grid.shape[0] == 1:
            grid = torch.cat([grid, shading_gradient(grid[0], affine)])
        self.sampler = GridSampler(grid[:1], affine)
        self.coefficients = coefficients
        self.gradient = grid[1:4] if need_grad else None  # [3, X, Y, Z], sampled only where visible
        if value_range is None:
            value_range = float(grid[0].detach().min()), float(grid[0].detach().max())
        lo, hi = min(value_range[0], tf.x_range[0]), max(value_range[1], tf.x_range[1])
        self._lut_lo, self._lut_scale = lo, (LUT_SIZE - 1) / max(hi - lo, 1e-6)
        self._lut = tf.table(lo, hi, LUT_SIZE, device=grid.device, dtype=grid.dtype)
        self.preintegrate = float(preintegrate) if preintegrate else None
        if self.preintegrate:
            self._cum_sigma, self._cum_emit = preintegration_tables(self._lut, tf.unit_distance)
        self.labels = None
        if labels is not None and classes is not None and not classes.is_trivial:
            self.labels = labels.reshape(-1).long()
            rgba, use = classes.lookup(int(self.labels.max()), device=grid.device, dtype=grid.dtype)
            self._class_rgba, self._class_use, self._solid = rgba, use, classes.mode == "solid"
            # per label, for _blend_classes: opacity, and class-colour weight and colour times opacity
            a, w = rgba[:, 3:], use[:, None]
            self._class_blend = torch.cat([a, a * w, a * w * rgba[:, :3]], 1)                # [L, 5]
        self.label_normals = label_normals if self.labels is not None and self._solid else None

    def _blend_classes(self, norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Class styles of the 8 voxels around grid_sample points ``norm [N, 3]``, blended with
        grid_sample's trilinear weights -> ``(alpha [N], use [N], rgb [N, 3])``: class opacity, then
        the class-colour weight and the class colour premultiplied by it, both weighted by the voxels'
        opacities (a hidden class adds no colour)."""
        shape, table = self.sampler.shape, self._class_blend
        out = torch.zeros(norm.shape[0], 5, dtype=table.dtype, device=norm.device)
        corners = []
        for axis, n in enumerate(shape):    # voxel axis i, j, k is grid_sample's column 2, 1, 0
            v = ((norm[:, 2 - axis].detach() + 1) / 2 * (n - 1)).clamp(0, n - 1)
            lo = v.floor()
            hi = torch.clamp(lo + 1, max=n - 1)
            corners.append(((lo.long(), lo + 1 - v), (hi.long(), v - lo)))
        for (i, wi), (j, wj), (k, wk) in itertools.product(*corners):
            index = (i * shape[1] + j) * shape[2] + k
            out += table[self.labels[index]] * ((wk * wj) * wi)[:, None]
        alpha = out[:, 0]
        per_alpha = torch.where(alpha > 0, 1 / torch.where(alpha > 0, alpha, 1), 0)
        return alpha, out[:, 1] * per_alpha, out[:, 2:] * per_alpha[:, None]

    def scalar(self, norm: torch.Tensor) -> torch.Tensor:
        """The scalar ``[N]`` at grid_sample points ``norm [N, 3]``: trilinear, or the cubic B-spline of
        :attr:`coefficients` when the field has them."""
        if self.coefficients is not None:
            return self.sampler.cubic(norm, self.coefficients, normalized=True)
        return self.sampler.trilinear(norm, normalized=True)[0]

    def _index(self, x: torch.Tensor) -> torch.Tensor:
        """Fractional lookup-table index ``[N]`` of intensities ``x [N]``."""
        return ((x - self._lut_lo) * self._lut_scale).clamp(0, LUT_SIZE - 1)

    @staticmethod
    def _linear(table: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        i0 = u.detach().floor().clamp(0, LUT_SIZE - 2).long()     # a rounded -1e-17 must not wrap to the end
        w = (u - i0).reshape(-1, *([1] * (table.dim() - 1)))
        return table[i0] * (1 - w) + table[i0 + 1] * w

    def lookup(self, x: torch.Tensor) -> torch.Tensor:
        """TF RGBA ``[N, 4]`` at intensities ``x [N]`` via the lookup table (linear between entries)."""
        return self._linear(self._lut, self._index(x))

    def _segment_rgba(self, norm: torch.Tensor, points: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
        """Pre-integrated TF RGBA ``[N, 4]`` of the segments ``[p - step d, p]`` (module docstring); the
        alpha is that of ``unit_distance`` mm at the segment's mean extinction."""
        m = self.PREINT_PIECES
        back = self._index(self.scalar(norm))
        front = self._index(self.scalar(self.sampler.normalized(points - self.preintegrate * dirs)))
        frac = torch.arange(m + 1, dtype=torch.float64, device=back.device) / m
        u = front.double()[:, None] + (back - front).double()[:, None] * frac                  # [N, m + 1]
        n = u.shape[0]
        d_sigma = torch.diff(self._linear(self._cum_sigma, u.reshape(-1)).reshape(n, m + 1), dim=1)   # [N, m]
        d_emit = torch.diff(self._linear(self._cum_emit, u.reshape(-1)).reshape(n, m + 1, 3), dim=1)  # [N, m, 3]
        mid = self._linear(self._lut, (0.5 * (u[:, 1:] + u[:, :-1])).reshape(-1)).double().reshape(n, m, 4)
        span = (back - front).double()[:, None] / m                                          # [N, 1]
        wide = span.detach().abs() > self.PREINT_MIN_SPAN
        mid_sigma = -torch.log1p(-mid[..., 3].clamp(0.0, MAX_OPACITY)) / self.tf.unit_distance
        sigma = torch.where(wide, d_sigma / torch.where(wide, span, torch.ones_like(span)), mid_sigma)   # [N, m]
        has = wide & (d_sigma.detach().abs() > 1e-12)
        rgb = torch.where(has[..., None], d_emit / torch.where(has, d_sigma, torch.ones_like(d_sigma))[..., None],
                          mid[..., :3])                                                      # [N, m, 3]
        # front to back through the pieces: the colour seen is the one near where the light stops
        tau = sigma * (self.preintegrate / m)
        trans = torch.exp(-torch.cumsum(tau, 1))
        before = torch.cat([torch.ones_like(trans[:, :1]), trans[:, :-1]], 1)
        weight = before - trans                                                              # [N, m]
        total = 1.0 - trans[:, -1]
        seen = total.detach() > 1e-12
        colour = torch.where(seen[:, None], (weight[..., None] * rgb).sum(1) / torch.where(seen, total, 1.0)[:, None],
                             rgb.mean(1))
        alpha = 1.0 - torch.exp(-tau.sum(1) / self.preintegrate * self.tf.unit_distance)
        dtype = self._lut.dtype
        return torch.cat([colour.to(dtype), alpha.to(dtype)[:, None]], dim=1)

    def __call__(self, points: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        norm = self.sampler.normalized(points)
        if self.preintegrate:
            rgba = self._segment_rgba(norm, points, dirs)                           # [N, 4]
        else:
            rgba = self.lookup(self.scalar(norm))                                    # [N, 4]
        rgb, alpha = rgba[:, :3], rgba[:, 3]
        if self.labels is not None and self._solid:
            lab = self.labels[self.sampler.nearest_index(points)]
            crgba, use = self._class_rgba[lab], self._class_use[lab]
            alpha = torch.where(use > 0, crgba[:, 3], alpha * crgba[:, 3])
            rgb = torch.lerp(rgb, crgba[:, :3], use[:, None])
        elif self.labels is not None:
            class_alpha, use, class_rgb = self._blend_classes(norm)
            alpha = alpha * class_alpha
            rgb = rgb * (1 - use)[:, None] + class_rgb
        if self.gradient is not None:
            # gradients only where something is visible: most samples of a typical CT are not
            vis = torch.nonzero(alpha.detach() > 0).squeeze(1)
            g = self.sampler.trilinear(norm[vis], self.gradient, normalized=True)      # [3, V]
            gmag = (g * g).sum(0).sqrt()
            if self.use_grad_opacity:
                alpha = alpha.index_put((vis,), alpha[vis] * self.tf.gradient_factor(gmag))
            if self.shade:
                sh = self.tf.shading
                if self.label_normals is not None:
                    gl = self.sampler.trilinear(norm[vis], self.label_normals, normalized=True)
                    g = torch.where(use[vis] > 0, gl, g)
                    gmag = (g * g).sum(0).sqrt()
                cos = (g * dirs[vis].T).sum(0).abs() / gmag.clamp_min(1e-6) * (gmag > 1e-6)
                lit = rgb[vis] * (sh.ambient + sh.diffuse * cos)[:, None]
                if sh.specular > 0:
                    lit = lit + (sh.specular * cos.clamp_min(1e-6) ** sh.power)[:, None]
                rgb = rgb.index_put((vis,), lit)
        sigma = -torch.log1p(-alpha.clamp(0.0, MAX_OPACITY)) / self.tf.unit_distance
        return rgb, sigma
