"""Piecewise-linear intensity transfer functions, evaluated on torch tensors (CPU or CUDA).

Semantics follow VTK / 3D Slicer so the ray-marcher and the VTK renderer agree:

- colour points ``(x, r, g, b)`` and opacity points ``(x, a)`` are linearly interpolated and
  clamped to the end values outside their range;
- opacity ``a`` is the opacity accumulated over ``unit_distance`` mm (VTK's
  ``ScalarOpacityUnitDistance``). The ray-marcher turns it into an extinction coefficient
  ``sigma = -ln(1 - a) / unit_distance`` (1/mm), so a sample of length ``dt`` has
  ``alpha = 1 - exp(-sigma dt) = 1 - (1 - a)^(dt / unit_distance)``, VTK's opacity correction.
- shading is Blinn-Phong with a headlight and two-sided normals (see :class:`Shading`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..errors import InputError

#: Opacity is capped below 1 so that ``-ln(1 - a)`` stays finite.
MAX_OPACITY = 0.999


@dataclass(frozen=True)
class Shading:
    """Blinn-Phong coefficients (3D Slicer's preset fields).

    With a headlight, the light, view and half vectors coincide, so for a unit normal ``n`` and
    ray direction ``d``: ``c = rgb (ambient + diffuse |n.d|) + specular |n.d|^power``.
    """

    enabled: bool = True
    ambient: float = 0.1
    diffuse: float = 0.9
    specular: float = 0.2
    power: float = 10.0


def _points(values, width: int, what: str) -> tuple[tuple[float, ...], ...]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != width or len(arr) < 1:
        raise InputError(f"{what} must be a list of {width}-tuples, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise InputError(f"{what} contains NaN/Inf")
    if (np.diff(arr[:, 0]) < 0).any():
        raise InputError(f"{what} x values must be non-decreasing, got {arr[:, 0].tolist()}")
    return tuple(tuple(float(v) for v in row) for row in arr)


def interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Piecewise-linear interpolation, clamped at the ends (``np.interp`` for torch).

    Args:
        x: ``[...]`` query points.
        xp: ``[P]`` non-decreasing knots.
        fp: ``[P, F]`` values at the knots.

    Returns:
        ``[..., F]``, differentiable with respect to ``x`` and ``fp``.
    """
    if xp.numel() == 1:
        return fp[0].expand(*x.shape, fp.shape[-1])
    idx = torch.searchsorted(xp, x.detach().contiguous(), right=True).clamp(1, xp.numel() - 1)
    x0, x1 = xp[idx - 1], xp[idx]
    w = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0).unsqueeze(-1)
    return fp[idx - 1] * (1 - w) + fp[idx] * w


@dataclass(frozen=True)
class TransferFunction:
    """An intensity transfer function: colour, opacity, gradient opacity and shading.

    Args:
        name: preset name ("CT-Bone").
        color: ``(x, r, g, b)`` points, r, g, b in [0, 1].
        opacity: ``(x, a)`` points, a in [0, 1] per ``unit_distance`` mm.
        gradient_opacity: ``(|grad| in intensity units per mm, factor)`` points.
        shading: lighting coefficients.
        unit_distance: mm over which ``opacity`` accumulates (VTK's ScalarOpacityUnitDistance).

    Example:
        >>> tf = TransferFunction("ramp", color=[(0, 0, 0, 0), (100, 1, 1, 1)], opacity=[(0, 0), (100, 1)])
        >>> rgb, a = tf.evaluate(torch.tensor([50.0]))
        >>> rgb.tolist(), round(a.item(), 3)
        ([[0.5, 0.5, 0.5]], 0.5)
    """

    name: str
    color: tuple[tuple[float, float, float, float], ...]
    opacity: tuple[tuple[float, float], ...]
    gradient_opacity: tuple[tuple[float, float], ...] = ((0.0, 1.0),)
    shading: Shading = field(default_factory=Shading)
    unit_distance: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "color", _points(self.color, 4, f"{self.name}: colour points"))
        object.__setattr__(self, "opacity", _points(self.opacity, 2, f"{self.name}: opacity points"))
        object.__setattr__(self, "gradient_opacity",
                           _points(self.gradient_opacity, 2, f"{self.name}: gradient opacity points"))
        if not self.unit_distance > 0:
            raise InputError(f"{self.name}: unit_distance must be > 0 mm, got {self.unit_distance}")
        vals = np.array([p[1:] for p in self.color] + [p[1:2] * 3 for p in self.opacity])
        if (vals < 0).any() or (vals > 1).any():
            raise InputError(f"{self.name}: colours and opacities must lie in [0, 1]")

    @property
    def x_range(self) -> tuple[float, float]:
        """The intensity range spanned by the colour and opacity points."""
        xs = [p[0] for p in self.color] + [p[0] for p in self.opacity]
        return min(xs), max(xs)

    @property
    def uses_gradient_opacity(self) -> bool:
        return any(abs(p[1] - 1.0) > 1e-6 for p in self.gradient_opacity)

    def _tensors(self, device, dtype) -> tuple[torch.Tensor, ...]:
        c = torch.tensor(self.color, device=device, dtype=dtype)
        o = torch.tensor(self.opacity, device=device, dtype=dtype)
        return c[:, 0].contiguous(), c[:, 1:], o[:, 0].contiguous(), o[:, 1:]

    def evaluate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Colour ``[..., 3]`` and opacity ``[...]`` at intensities ``x [...]`` (exact)."""
        cx, cv, ox, ov = self._tensors(x.device, x.dtype)
        return interp(x, cx, cv), interp(x, ox, ov)[..., 0]

    def rgba_np(self, x: np.ndarray) -> np.ndarray:
        """RGBA ``[..., 4]`` float32 at intensities ``x [...]`` (numpy, exact)."""
        x = np.asarray(x)
        out = np.empty(x.shape + (4,), dtype=np.float32)
        for c in range(3):
            out[..., c] = np.interp(x, [p[0] for p in self.color], [p[c + 1] for p in self.color])
        out[..., 3] = np.interp(x, [p[0] for p in self.opacity], [p[1] for p in self.opacity])
        return out

    def gradient_factor(self, grad_mag: torch.Tensor) -> torch.Tensor:
        """Gradient-opacity factor ``[...]`` at gradient magnitudes ``[...]`` (units per mm)."""
        g = torch.tensor(self.gradient_opacity, device=grad_mag.device, dtype=grad_mag.dtype)
        return interp(grad_mag, g[:, 0].contiguous(), g[:, 1:])[..., 0]

    def table(self, lo: float, hi: float, n: int = 4096, device=None, dtype=torch.float32) -> torch.Tensor:
        """``[n, 4]`` RGBA sampled uniformly over ``[lo, hi]`` (for fast lookups and VTK)."""
        xs = torch.linspace(lo, hi, n, device=device, dtype=torch.float64)
        rgb, a = self.evaluate(xs)
        return torch.cat([rgb, a[:, None]], dim=1).to(dtype)

    def rescaled(self, lo: float, hi: float) -> "TransferFunction":
        """The same shape stretched linearly from :attr:`x_range` onto ``[lo, hi]``."""
        a, b = self.x_range
        s = (hi - lo) / (b - a) if b > a else 1.0
        return replace(self, color=tuple((lo + (p[0] - a) * s, *p[1:]) for p in self.color),
                       opacity=tuple((lo + (p[0] - a) * s, p[1]) for p in self.opacity))

    def shifted(self, offset: float) -> "TransferFunction":
        """All points moved by ``offset`` intensity units (3D Slicer's "Shift" slider)."""
        return replace(self, color=tuple((p[0] + offset, *p[1:]) for p in self.color),
                       opacity=tuple((p[0] + offset, p[1]) for p in self.opacity))

    def transparent_value(self) -> float | None:
        """The first intensity where the opacity is exactly 0, or ``None``."""
        for x, a in self.opacity:
            if a == 0.0:
                return x
        return None

    def transparent_edge(self) -> float | None:
        """The zero-opacity point next to the visible range: the last one before the first point with
        opacity > 0, else the first one after it (a hidden class's neighbours fade towards it), or
        ``None`` when the opacity is nowhere 0."""
        alphas = [a for _, a in self.opacity]
        first = next((i for i, a in enumerate(alphas) if a > 0), len(alphas))
        before = [i for i in range(first) if alphas[i] == 0.0]
        after = [i for i in range(first, len(alphas)) if alphas[i] == 0.0]
        index = before[-1] if before else (after[0] if after else None)
        return None if index is None else self.opacity[index][0]

    def visible_intervals(self, eps: float = 0.0) -> tuple[tuple[float, float], ...]:
        """Open intensity intervals ``(lo, hi)``, in order and disjoint, where the opacity exceeds
        ``eps`` (``-inf`` / ``inf`` where it does beyond the first / last point); empty when nowhere.
        Exact up to the points where two intervals touch."""
        pts = self.opacity
        out: list[tuple[float, float]] = []

        def add(lo: float, hi: float) -> None:
            if out and out[-1][1] >= lo:                       # touching at a point: one interval
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        if pts[0][1] > eps:
            add(-math.inf, pts[0][0])
        for (x0, a0), (x1, a1) in zip(pts, pts[1:]):
            if a0 > eps and a1 > eps:
                add(x0, x1)
            elif a0 > eps:                                     # falls through eps inside the segment
                add(x0, x0 + (a0 - eps) / (a0 - a1) * (x1 - x0))
            elif a1 > eps:                                     # rises through it
                add(x1 - (a1 - eps) / (a1 - a0) * (x1 - x0), x1)
        if pts[-1][1] > eps:
            add(pts[-1][0], math.inf)
        return tuple(out)
