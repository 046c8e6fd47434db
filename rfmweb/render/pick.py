"""What a click on a 3-D view hits: the pixel's ray marched as the ray-marcher draws it.

Used by the viewer's crosshair (click a point on the 3-D view, the slice views move there) and by
corrections (a click marks the surface voxel, :meth:`rfmweb.inr.correct.Corrector.mark_ray`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from ..camera import OrbitCamera
from ..errors import InputError
from .scene import FULL, Scene


@dataclass(frozen=True)
class RayHit:
    """A picked ray: ``origin`` ``[3]`` mm, unit ``direction`` ``[3]``, ``depth`` mm along it."""

    origin: np.ndarray
    direction: np.ndarray
    depth: float

    @property
    def point(self) -> np.ndarray:
        """``[3]`` world position of the hit, mm."""
        return self.origin + self.depth * self.direction


def pixel_ray_camera(camera: OrbitCamera, x: float, y: float) -> OrbitCamera:
    """A one-pixel camera looking along the ray through image position ``(x, y)`` of ``camera``
    (continuous pixel units, right and down; pixel ``(u, v)``'s centre is ``(u + 0.5, v + 0.5)``).

    OrbitCamera clamps the elevation to +-89.9 degrees: a ray closer to vertical than that is tilted
    by at most 0.1 degree.
    """
    if not (math.isfinite(x) and math.isfinite(y) and 0 <= x <= camera.width and 0 <= y <= camera.height):
        raise InputError(f"click ({x}, {y}) lies outside the {camera.width}x{camera.height} image")
    d = camera.rotation.T @ np.array([(x - camera.width / 2) / camera.focal, (y - camera.height / 2) / camera.focal, 1.0])
    d /= np.linalg.norm(d)
    elevation = math.degrees(math.asin(float(np.clip(-d[2], -1.0, 1.0))))   # OrbitCamera.offset_dir = -d
    azimuth = math.degrees(math.atan2(d[0], -d[1]))
    return OrbitCamera(tuple(camera.position + camera.distance * d), azimuth, elevation, camera.distance,
                       camera.fov, 1, 1)


def pick(scene: Scene, camera: OrbitCamera, x: float, y: float, marcher=None) -> RayHit | None:
    """March the ray through pixel position ``(x, y)`` of ``camera`` through ``scene`` (a volume)
    exactly as the ``raymarch`` renderer draws it (:data:`~rfmweb.render.scene.FULL` quality: the
    same empty-space skipping, sample lattice and field); the hit is where the accumulated opacity
    first reaches 0.5. Returns ``None`` when it never does.

    ``marcher``: a :class:`~rfmweb.render.dvr.RaymarchRenderer` to reuse (default: a CPU one).
    """
    from .dvr import RaymarchRenderer

    if scene.volume is None:
        raise InputError("picking a point needs a volume (this view shows splats alone)")
    ray_cam = pixel_ray_camera(camera, x, y)
    marcher = marcher or RaymarchRenderer(torch.device("cpu"))
    with torch.no_grad():
        res, _ = marcher.march(scene, ray_cam, FULL)
    depth = float(res.depth[0])
    if not math.isfinite(depth):
        return None
    return RayHit(np.asarray(ray_cam.position, dtype=np.float64), -ray_cam.offset_dir, depth)


def opacity_in_front(scene: Scene, camera: OrbitCamera, points: np.ndarray, marcher=None) -> np.ndarray:
    """``[N]`` opacity the ray-marcher accumulates between ``camera`` and each world point ``points``
    ``[N, 3]`` mm (unjittered, :data:`~rfmweb.render.scene.FULL` step and field; the march stops three
    samples short of the point, so a point :func:`pick` put on a surface reads about 0). 0.5 or more:
    the point is hidden behind what the view shows. One batched march (a few ms for a few points).

    ``marcher``: a :class:`~rfmweb.render.dvr.RaymarchRenderer` to reuse (default: a CPU one).
    """
    from .dvr import RaymarchRenderer
    from .raymarch import march, ray_aabb

    if scene.volume is None:
        raise InputError("occlusion needs a volume (this view shows splats alone)")
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    if not len(pts):
        return np.zeros(0)
    marcher = marcher or RaymarchRenderer(torch.device("cpu"))
    dtype, device = marcher.prepare(scene).grid.dtype, marcher.device
    step = FULL.step * min(scene.volume.spacing)
    field = marcher.field(scene, preintegrate=step, cubic=FULL.cubic)
    origins = torch.as_tensor(np.broadcast_to(camera.position, pts.shape).copy(), dtype=dtype, device=device)
    dirs = torch.as_tensor(pts, dtype=dtype, device=device) - origins
    dist = dirs.norm(dim=1).clamp_min(1e-6)
    dirs = dirs / dist[:, None]
    inv = torch.as_tensor(np.linalg.inv(scene.volume.affine), dtype=dtype, device=device)
    hi = torch.tensor(scene.volume.shape, dtype=dtype, device=device) - 1
    t0, t1 = ray_aabb(origins @ inv[:3, :3].T + inv[:3, 3], dirs @ inv[:3, :3].T, torch.zeros_like(hi), hi)
    with torch.no_grad():
        res = march(origins, dirs, t0, torch.minimum(t1, dist - 3 * step), field, step)
    return res.opacity.double().cpu().numpy()


def project(camera: OrbitCamera, points: np.ndarray, width: int | None = None, height: int | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
    """World points ``[N, 3]`` mm -> ``(pixels [N, 2] (x right, y down), in_front [N] bool)`` in an
    image of ``width`` x ``height`` (default: the camera's; a reduced interactive frame scales)."""
    pts = np.atleast_2d(np.asarray(points, dtype=np.float64))
    cam = (pts - camera.position) @ camera.rotation.T
    z = cam[:, 2]
    safe = np.where(z > 1e-6, z, 1e-6)
    sx = (width or camera.width) / camera.width
    sy = (height or camera.height) / camera.height
    px = np.stack([(camera.focal * cam[:, 0] / safe + camera.width / 2) * sx,
                   (camera.focal * cam[:, 1] / safe + camera.height / 2) * sy], axis=1)
    return px, z > 1e-6
