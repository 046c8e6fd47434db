"""One camera convention for every renderer: an orbit around a target, as a pinhole camera.

World space is RAS+ millimetres (see :mod:`rfmweb.volume`). Camera space uses OpenCV axes, as
gsplat does: +x right, +y down, +z forward (into the scene). ``viewmat`` maps world to camera
(``x_cam = R x_world + t``); ``K`` is the pinhole intrinsic matrix with the principal point at the
image centre; pixel ``(u, v)`` covers ``[u, u + 1) x [v, v + 1)`` and its centre is ``(u + 0.5, v + 0.5)``.

Orbit parameters: ``azimuth`` (degrees) turns about the superior (+z) axis: 0 is the anterior
view (camera in front of the face, patient's right on screen left), 90 the left lateral view;
``elevation`` (degrees) lifts the camera towards superior (clamped to +-89.9 so "up" stays defined).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
import torch

from .errors import InputError

MAX_ELEVATION = 89.9
UP = np.array([0.0, 0.0, 1.0])
#: Orbits of training / ground-truth views (``rfmweb views``, Render-FM's data): elevation band and fov, degrees.
ELEVATION_RANGE = (-60.0, 75.0)
FOV = 30.0
GOLDEN_ANGLE = 180.0 * (3.0 - math.sqrt(5.0))  # degrees


def check_size(width, height) -> None:
    """Raise :class:`InputError` unless ``width`` x ``height`` is an image size of 1..8192 pixels."""
    if not (1 <= int(width) <= 8192 and 1 <= int(height) <= 8192):
        raise InputError(f"image size must be 1..8192 pixels, got {width}x{height}")


@dataclass(frozen=True)
class OrbitCamera:
    """Orbit camera.

    Attributes:
        target: ``(x, y, z)`` world point looked at, mm.
        azimuth: degrees about +z; 0 = anterior view.
        elevation: degrees towards +z, in [-89.9, 89.9].
        distance: camera-to-target distance, mm (> 0).
        fov: vertical field of view, degrees, in (0, 180).
        width, height: image size in pixels.
    """

    target: tuple[float, float, float] = (0.0, 0.0, 0.0)
    azimuth: float = 0.0
    elevation: float = 0.0
    distance: float = 500.0
    fov: float = 30.0
    width: int = 256
    height: int = 256

    def __post_init__(self) -> None:
        check_size(self.width, self.height)     # first: a bad size also makes a framing distance meaningless
        t = tuple(float(v) for v in self.target)
        if len(t) != 3 or not all(math.isfinite(v) for v in t):
            raise InputError(f"camera target must be 3 finite numbers, got {self.target}")
        object.__setattr__(self, "target", t)
        for name in ("azimuth", "elevation"):
            if not math.isfinite(float(getattr(self, name))):
                raise InputError(f"camera {name} must be a finite number of degrees, got {getattr(self, name)}")
        object.__setattr__(self, "elevation", float(np.clip(self.elevation, -MAX_ELEVATION, MAX_ELEVATION)))
        object.__setattr__(self, "azimuth", float(self.azimuth) % 360.0)
        if not (self.distance > 0 and math.isfinite(self.distance)):
            raise InputError(f"camera distance must be > 0 mm, got {self.distance}")
        if not 0 < self.fov < 180:
            raise InputError(f"camera fov must lie in (0, 180) degrees, got {self.fov}")
        object.__setattr__(self, "width", int(self.width))
        object.__setattr__(self, "height", int(self.height))

    # -- geometry ---------------------------------------------------------------------------
    @property
    def offset_dir(self) -> np.ndarray:
        """``[3]`` unit vector from the target to the camera centre."""
        az, el = math.radians(self.azimuth), math.radians(self.elevation)
        return np.array([-math.sin(az) * math.cos(el), math.cos(az) * math.cos(el), math.sin(el)])

    @property
    def position(self) -> np.ndarray:
        """``[3]`` camera centre in world mm."""
        return np.asarray(self.target) + self.distance * self.offset_dir

    @property
    def rotation(self) -> np.ndarray:
        """``[3, 3]`` world-to-camera rotation; rows are the camera's x (right), y (down), z (forward)."""
        z = -self.offset_dir
        x = np.cross(z, UP)
        x /= np.linalg.norm(x)
        y = np.cross(z, x)
        return np.stack([x, y, z])

    @property
    def viewmat(self) -> np.ndarray:
        """``[4, 4]`` world-to-camera matrix (OpenCV axes), float64."""
        m = np.eye(4)
        r = self.rotation
        m[:3, :3] = r
        m[:3, 3] = -r @ self.position
        return m

    @property
    def focal(self) -> float:
        """Focal length in pixels (vertical fov; square pixels)."""
        return 0.5 * self.height / math.tan(math.radians(self.fov) / 2)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 (the standard name)
        """``[3, 3]`` pinhole intrinsics, principal point at the image centre."""
        f = self.focal
        return np.array([[f, 0.0, self.width / 2], [0.0, f, self.height / 2], [0.0, 0.0, 1.0]])

    @property
    def mm_per_pixel(self) -> float:
        """Size of one pixel at the target's depth, mm."""
        return self.distance / self.focal

    # -- conversions --------------------------------------------------------------------------
    @classmethod
    def from_viewmat(cls, viewmat: np.ndarray, K: np.ndarray, width: int, height: int,  # noqa: N803
                     distance: float) -> "OrbitCamera":
        """Inverse of (:attr:`viewmat`, :attr:`K`) for a camera with no roll.

        ``distance`` places the target along the optical axis (a view matrix does not encode it).
        """
        viewmat, K = np.asarray(viewmat, dtype=np.float64), np.asarray(K, dtype=np.float64)
        r, t = viewmat[:3, :3], viewmat[:3, 3]
        centre = -r.T @ t
        forward = r[2]
        target = centre + distance * forward
        o = -forward
        elevation = math.degrees(math.asin(float(np.clip(o[2], -1, 1))))
        azimuth = math.degrees(math.atan2(-o[0], o[1]))
        fov = math.degrees(2 * math.atan(0.5 * height / K[1, 1]))
        return cls(tuple(target), azimuth, elevation, distance, fov, width, height)

    @classmethod
    def framing(cls, bounds: np.ndarray, *, azimuth: float = 0.0, elevation: float = 0.0, fov: float = 30.0,
                width: int = 256, height: int = 256, margin: float = 1.05) -> "OrbitCamera":
        """A camera looking at the centre of ``bounds [2, 3]`` (mm) from far enough to see all of it."""
        bounds = np.asarray(bounds, dtype=np.float64)
        centre = bounds.mean(axis=0)
        radius = 0.5 * float(np.linalg.norm(bounds[1] - bounds[0]))
        check_size(width, height)
        half = math.radians(fov) / 2
        if width < height:  # the horizontal fov is the narrower one
            half = math.atan(math.tan(half) * width / height)
        return cls(tuple(centre), azimuth, elevation, margin * radius / math.sin(half), fov, width, height)

    def resized(self, width: int, height: int) -> "OrbitCamera":
        """Same view (same vertical fov) at another image size."""
        return replace(self, width=width, height=height)

    def in_viewport(self, width: int, height: int) -> "OrbitCamera":
        """The view for a viewport resized to ``width x height`` pixels: what the image's narrower side
        showed stays in view, as viewers fit a scene to the smaller dimension. A window turned
        narrower than tall then shows across its width what it showed from top to bottom (the head
        is not cut at the sides); landscape to landscape keeps the distance. Depends only on the two
        sizes: a drag-resize that comes back restores the view."""
        check_size(width, height)
        before, after = min(1.0, self.width / self.height), min(1.0, width / height)
        return replace(self, width=width, height=height, distance=self.distance * before / after)

    # -- interaction --------------------------------------------------------------------------
    def orbited(self, d_azimuth: float, d_elevation: float) -> "OrbitCamera":
        """Turned about the target by ``d_azimuth`` degrees (about the superior axis) and
        ``d_elevation`` degrees (up, towards superior)."""
        return replace(self, azimuth=self.azimuth + d_azimuth, elevation=self.elevation + d_elevation)

    def zoomed(self, factor: float) -> "OrbitCamera":
        """Distance multiplied by ``factor`` (< 1 moves closer)."""
        return replace(self, distance=float(np.clip(self.distance * factor, 1e-3, 1e6)))

    def panned(self, dx_px: float, dy_px: float) -> "OrbitCamera":
        """Move the target so the scene follows a drag of ``(dx_px, dy_px)`` pixels."""
        r = self.rotation
        shift = -self.mm_per_pixel * (dx_px * r[0] + dy_px * r[1])
        return replace(self, target=tuple(np.asarray(self.target) + shift))

    def to_dict(self) -> dict:
        return {"target": list(self.target), "azimuth": self.azimuth, "elevation": self.elevation,
                "distance": self.distance, "fov": self.fov, "width": self.width, "height": self.height}

    @classmethod
    def from_dict(cls, d: dict) -> "OrbitCamera":
        keys = ("target", "azimuth", "elevation", "distance", "fov", "width", "height")
        unknown = set(d) - set(keys)
        if unknown:
            raise InputError(f"unknown camera fields {sorted(unknown)}; expected {keys}")
        return cls(**d)


def generate_rays(viewmat: torch.Tensor, K: torch.Tensor, width: int, height: int,  # noqa: N803
                  offset: tuple[float, float] = (0.5, 0.5)) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera rays through one point of every pixel (default: the centres).

    Args:
        viewmat: ``[4, 4]`` world-to-camera (OpenCV axes).
        K: ``[3, 3]`` intrinsics.
        width, height: image size in pixels.
        offset: ``(x, y)`` position of the ray inside its pixel, in pixels from its top-left corner.

    Returns:
        ``(origins [H, W, 3], dirs [H, W, 3])`` in world mm; ``dirs`` are unit vectors.
    """
    dtype, device = viewmat.dtype, viewmat.device
    v, u = torch.meshgrid(torch.arange(height, dtype=dtype, device=device) + float(offset[1]),
                          torch.arange(width, dtype=dtype, device=device) + float(offset[0]), indexing="ij")
    cam = torch.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], torch.ones_like(u)], dim=-1)
    r = viewmat[:3, :3]
    dirs = cam @ r  # row-vector form of R^T d
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    origin = -r.T @ viewmat[:3, 3]
    return origin.expand_as(dirs), dirs


def camera_rays(camera: OrbitCamera, device=None, dtype=torch.float32, offset: tuple[float, float] = (0.5, 0.5)
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`generate_rays` for an :class:`OrbitCamera`."""
    return generate_rays(torch.as_tensor(camera.viewmat, dtype=dtype, device=device),
                         torch.as_tensor(camera.K, dtype=dtype, device=device), camera.width, camera.height, offset)


def orbit_directions(n: int, seed: int = 0, elevation_range: tuple[float, float] = ELEVATION_RANGE
                     ) -> list[tuple[float, float]]:
    """``n`` ``(azimuth, elevation)`` pairs (degrees) spread evenly over an elevation band.

    Equal-area Fibonacci spiral: ``sin(elevation)`` in equal steps from the top of the band down,
    azimuth in golden-angle steps from an offset drawn from ``seed``. Deterministic.
    """
    z_lo, z_hi = (math.sin(math.radians(e)) for e in elevation_range)
    offset = float(np.random.default_rng(seed).uniform(0.0, 360.0))
    out = []
    for i in range(n):
        z = z_hi - (i + 0.5) / n * (z_hi - z_lo)
        out.append(((offset + i * GOLDEN_ANGLE) % 360.0, math.degrees(math.asin(z))))
    return out


def orbit_cameras(bounds: np.ndarray, n: int, size: int, seed: int = 0, fov: float = FOV) -> list[OrbitCamera]:
    """``n`` square ``size``-pixel cameras in :func:`orbit_directions`, at one distance framing ``bounds [2, 3]``
    (world mm), looking at its centre."""
    return [OrbitCamera.framing(bounds, azimuth=az, elevation=el, fov=fov, width=size, height=size, margin=1.0)
            for az, el in orbit_directions(n, seed)]
