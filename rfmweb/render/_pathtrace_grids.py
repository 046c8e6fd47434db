"""The path tracer's medium: a volume's transfer function, classes and gradient on a lattice, laid out
for Mitsuba (:class:`VolumeGrids`, :func:`build_grids`). Used by :mod:`rfmweb.render.pathtrace`."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import InputError
from .dvr import RaymarchRenderer, visible_box
from .fields import marched_classes
from .scene import Scene

log = logging.getLogger(__name__)

#: ``oversample="auto"`` classifies on a 2x finer lattice while that stays under this many points.
AUTO_OVERSAMPLE_POINTS = 16_000_000
#: Lattice points classified per ScalarField call.
CHUNK = 1 << 20


def srgb_to_linear(c: np.ndarray | torch.Tensor):
    """sRGB-encoded values in [0, 1] -> linear (IEC 61966-2-1)."""
    if isinstance(c, torch.Tensor):
        return torch.where(c <= 0.04045, c / 12.92, ((c.clamp_min(0) + 0.055) / 1.055) ** 2.4)
    c = np.asarray(c, dtype=np.float32)
    return np.where(c <= 0.04045, c / 12.92, ((np.maximum(c, 0) + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(c: np.ndarray) -> np.ndarray:
    """Linear values -> sRGB-encoded, clipped to [0, 1] first."""
    c = np.clip(np.asarray(c, dtype=np.float32), 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055).astype(np.float32)


@dataclass
class VolumeGrids:
    """The medium of one (volume, TF, class table, mix) on a lattice, in Mitsuba's memory layout.

    Attributes:
        density: ``[Z', Y', X', 1]`` float32 in [0, 1]: ``sigma_t / sigma_max`` (Mitsuba volume grids
            are indexed z-major: ``density[k, j, i]`` is lattice point ``(i, j, k)``).
        albedo: ``[Z', Y', X', 3]`` float32, linear RGB in [0, 1].
        sigma_max: the largest extinction, 1/mm (the medium's ``scale``).
        grid_to_world: ``[4, 4]`` texture unit cube (texel centres at ``(n + 1/2) / N``) -> world mm.
        box_to_world: ``[4, 4]`` cube ``[-1, 1]^3`` -> world mm: the box the medium fills, the
            ray-marcher's visible box (voxel centres, VTK's convention).
        oversample: lattice points per voxel spacing along each axis.
        gradient: ``[Z', Y', X', 3]`` float32, ``h * grad(density)`` in world axes (x, y, z): the
            change of the normalised extinction per voxel spacing ``h`` = ``voxel_mm`` (central
            differences on the lattice); drives hybrid scattering. ``None`` when not built.
        voxel_mm: ``h``, the geometric mean of the voxel spacings, mm.
        seconds: time taken to classify the lattice.
    """

    density: np.ndarray
    albedo: np.ndarray
    sigma_max: float
    grid_to_world: np.ndarray
    box_to_world: np.ndarray
    oversample: int
    gradient: np.ndarray | None = None
    voxel_mm: float = 1.0
    seconds: float = 0.0


def voxel_mm(affine: np.ndarray) -> float:
    """Geometric mean voxel spacing of a ``[4, 4]`` voxel -> world mm affine, mm."""
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3])) ** (1 / 3))


def density_gradient(density: np.ndarray, affine: np.ndarray, oversample: int) -> np.ndarray:
    """Gradient of the normalised extinction in world axes, per voxel spacing (dimensionless).

    Args:
        density: ``[Z', Y', X', 1]`` lattice with ``oversample`` points per voxel spacing.
        affine: ``[4, 4]`` voxel index -> world mm of the volume.
        oversample: lattice points per voxel spacing.

    Returns:
        ``[Z', Y', X', 3]`` float32: ``h grad_world(density)`` with ``h`` = :func:`voxel_mm`. Per
        voxel rather than per lattice step or per mm, so that the same ``k`` in
        ``P_s = 1 - exp(-k |g|)`` finds the same boundaries whatever the oversampling or the
        scanner's resolution (a boundary blurred over a voxel or two by partial volume).
    """
    a = np.asarray(affine, dtype=np.float64)[:3, :3]
    d = density[..., 0]
    grad = np.empty(d.shape + (3,), dtype=np.float32)
    for axis in range(3):                                   # x, y, z: lattice axes 2, 1, 0
        grad[..., axis] = np.gradient(d, axis=2 - axis)
    # chain rule: world = A @ voxel, so grad_world = A^-T grad_voxel (rows: g_world = g_voxel A^-1),
    # and grad_voxel = oversample * grad_lattice; applied in slabs to bound the temporaries
    m = (oversample * voxel_mm(affine) * np.linalg.inv(a)).astype(np.float32)
    per = max(1, CHUNK // max(1, d.shape[1] * d.shape[2]))
    for k0 in range(0, d.shape[0], per):
        grad[k0:k0 + per] = grad[k0:k0 + per] @ m
    return grad


def _footprint(field_fn, g: torch.Tensor, cell: torch.Tensor, pts: torch.Tensor,
               fallback: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(points, dirs)`` for a pre-integrated ``field_fn`` so that each lattice point gets the mean of
    the TF over its cell's footprint along the scalar's gradient: the segment from ``p - w n / 2`` to
    ``p + w n / 2``, ``n`` the unit gradient, ``w`` the width of the lattice cell along ``n``.

    Classified at points, a steep TF jumps from empty to opaque between two lattice points; Mitsuba's
    trilinear read of that density draws the lattice as contour rings (wood grain on CT-Soft-Tissue,
    at any number of samples). The footprint mean is band-limited: the rings go, and a scalar that
    is flat across the cell keeps its point value.

    Args:
        g: ``[N, 3]`` world gradient of the scalar at the points.
        cell: ``[3, 3]`` world mm of one lattice step along each lattice axis (columns).
        pts: ``[N, 3]`` lattice points, world mm.
        fallback: ``[3]`` the direction where the scalar is flat.
    """
    norm = (g * g).sum(1, keepdim=True).sqrt()
    n = torch.where(norm > 1e-6, g / norm.clamp_min(1e-6), fallback)
    width = (n @ cell).abs().sum(1, keepdim=True)                        # [N, 1] mm across the cell along n
    return pts + 0.5 * width * n, n * (width / field_fn.preintegrate)


def build_grids(scene: Scene, marcher: RaymarchRenderer, oversample: int | str = "auto", *,
                with_gradient: bool = True) -> VolumeGrids | None:
    """Classify ``scene`` on a lattice with the ray-marcher's own field (unshaded).

    The lattice covers the ray-marcher's visible box (voxels the TF and class table can show,
    padded by one voxel) with ``oversample`` points per voxel spacing; each point goes through
    :class:`~rfmweb.render.fields.ScalarField` (trilinear scalar, TF lookup table, labels through the
    class table, gradient opacity), pre-integrated over its cell along the scalar's gradient
    (:func:`_footprint`: no lattice rings on steep TFs). With ``with_gradient`` the gradient of the
    normalised extinction is added (:func:`density_gradient`; hybrid scattering needs it).

    Returns:
        :class:`VolumeGrids`, or ``None`` when nothing is visible.
    """
    t0 = time.perf_counter()
    p = marcher.prepare(scene)
    box = visible_box(p.grid[0], scene.tf, p.labels, marched_classes(scene.classes, scene.tf))
    if box is None:
        return None
    lo, hi = box
    n_vox = int(np.prod(hi - lo + 1))
    if oversample == "auto":
        f = 2 if n_vox * 8 <= AUTO_OVERSAMPLE_POINTS else 1
    elif isinstance(oversample, int) and 1 <= oversample <= 4:
        f = oversample
    else:
        raise InputError(f"oversample must be 'auto' or 1..4, got {oversample!r}")
    counts = np.rint((hi - lo) * f).astype(np.int64) + 1                      # lattice points per axis
    axes_mm = np.asarray(scene.volume.affine, dtype=np.float64)[:3, :3] / f  # [3 world, 3 lattice axes] one cell
    field_fn = marcher.field(scene, shade=False, preintegrate=float(np.abs(axes_mm).sum(0).max()))
    field_fn.PREINT_PIECES = 1      # a cell's plain mean: no viewer in front of it to order its pieces
    dev, dtype = p.grid.device, p.grid.dtype
    aff = torch.as_tensor(scene.volume.affine, dtype=dtype, device=dev)
    cell = torch.as_tensor(axes_mm, dtype=dtype, device=dev)
    axes = [torch.as_tensor(lo[a] + np.arange(counts[a]) / f, dtype=dtype, device=dev) for a in range(3)]
    nx, ny, nz = (int(c) for c in counts)
    sigma = torch.empty(nz, ny, nx, dtype=dtype, device=dev)
    rgb = torch.empty(nz, ny, nx, 3, dtype=dtype, device=dev)
    jj, ii = torch.meshgrid(axes[1], axes[0], indexing="ij")                    # [Y', X'] in (k, j, i) order
    plane = torch.stack([ii, jj, torch.zeros_like(ii)], -1).reshape(-1, 3)     # voxel coords of one k-slab
    per = max(1, CHUNK // plane.shape[0])
    forward = torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=dev)
    with torch.no_grad():
        for k0 in range(0, nz, per):
            ks = axes[2][k0:k0 + per]
            vox = plane.repeat(len(ks), 1)
            vox[:, 2] = ks.repeat_interleave(plane.shape[0])
            pts = vox @ aff[:3, :3].T + aff[:3, 3]
            if f == 1:   # the lattice is the voxels: their gradients as they are (a 3-channel read cost 5x)
                i, j, k = (int(v) for v in lo)
                block = p.grid[1:4, i:i + nx, j:j + ny, k + k0:k + k0 + len(ks)]              # [3, X', Y', K]
                g = block.permute(3, 2, 1, 0).reshape(-1, 3)
            else:
                g = field_fn.sampler.trilinear(pts, p.grid[1:4]).T
            c, s = field_fn(*_footprint(field_fn, g, cell, pts, forward))
            sigma[k0:k0 + len(ks)] = s.reshape(len(ks), ny, nx)
            rgb[k0:k0 + len(ks)] = c.reshape(len(ks), ny, nx, 3)
    sigma_max = float(sigma.max())
    if sigma_max <= 0:
        return None
    density = (sigma / sigma_max).clamp(0, 1).float().cpu().numpy()[..., None]
    albedo = srgb_to_linear(rgb.clamp(0, 1)).float().cpu().numpy()
    vox_from_tex = np.eye(4)
    vox_from_tex[:3, :3] = np.diag(counts / f)
    vox_from_tex[:3, 3] = lo - 0.5 / f
    vox_from_box = np.eye(4)
    vox_from_box[:3, :3] = np.diag(np.maximum((hi - lo) / 2, 1e-3))
    vox_from_box[:3, 3] = (lo + hi) / 2
    if np.linalg.det(scene.volume.affine[:3, :3]) < 0:
        # a mirroring affine would turn the box inside out (interior <-> exterior): mirror it back
        vox_from_box = vox_from_box @ np.diag([-1.0, 1.0, 1.0, 1.0])
    gradient = density_gradient(density, scene.volume.affine, f) if with_gradient else None
    grids = VolumeGrids(density, albedo, sigma_max, scene.volume.affine @ vox_from_tex,
                        scene.volume.affine @ vox_from_box, f, gradient, voxel_mm(scene.volume.affine),
                        time.perf_counter() - t0)
    log.info("path tracer medium: %s lattice %dx%dx%d (oversample %d), sigma_max %.3g/mm, %.2f s",
             scene.volume.name or "volume", nx, ny, nz, f, sigma_max, grids.seconds)
    return grids
