"""Sampling volumes at world-space points (trilinear and nearest-neighbour).

Grid convention (VTK's): voxel centres are the sample points and the volume spans from the first
to the last centre, so the renderable box in voxel coordinates is ``[0, n - 1]`` per axis and
trilinear sampling uses ``align_corners=True``.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


class GridSampler:
    """Samples a ``[C, X, Y, Z]`` grid at world points.

    Args:
        grid: ``[C, X, Y, Z]`` tensor (any device; float dtype). Gradients flow to it.
        affine: ``[4, 4]`` voxel-to-world (mm) matrix.

    Example:
        >>> s = GridSampler(torch.arange(8.0).reshape(1, 2, 2, 2), np.eye(4))
        >>> s.trilinear(torch.tensor([[0.5, 0.5, 0.5]])).item()
        3.5
    """

    def __init__(self, grid: torch.Tensor, affine: np.ndarray) -> None:
        self.grid = grid
        self.shape = tuple(int(s) for s in grid.shape[1:])
        inv = np.linalg.inv(np.asarray(affine, dtype=np.float64))
        self.world_to_voxel = torch.as_tensor(inv, dtype=grid.dtype, device=grid.device)
        # voxel (i, j, k) -> grid_sample's normalised (x, y, z) = (k, j, i) scaled to [-1, 1]
        size = torch.tensor([max(s - 1, 1) for s in self.shape], dtype=grid.dtype, device=grid.device)
        scale = torch.diag(torch.cat([2.0 / size, torch.ones(1, dtype=grid.dtype, device=grid.device)]))
        scale[:3, 3] = -1.0
        to_norm = (scale @ self.world_to_voxel)[[2, 1, 0, 3]]
        self._norm_linear = to_norm[:3, :3].T.contiguous()
        self._norm_offset = to_norm[:3, 3].contiguous()
        self._vox_linear = self.world_to_voxel[:3, :3].T.contiguous()
        self._vox_offset = self.world_to_voxel[:3, 3].contiguous()
        self._strides = torch.tensor([self.shape[1] * self.shape[2], self.shape[2], 1], device=grid.device)

    @property
    def box_voxel(self) -> tuple[np.ndarray, np.ndarray]:
        """The renderable box ``(lo [3], hi [3])`` in voxel coordinates."""
        return np.zeros(3), np.array(self.shape, dtype=np.float64) - 1

    def to_voxel(self, points: torch.Tensor) -> torch.Tensor:
        """World ``[..., 3]`` mm -> continuous voxel indices ``[..., 3]``."""
        return points @ self._vox_linear + self._vox_offset

    def normalized(self, points: torch.Tensor) -> torch.Tensor:
        """World ``[N, 3]`` mm -> grid_sample coordinates ``[N, 3]`` in [-1, 1]."""
        return points @ self._norm_linear + self._norm_offset

    def trilinear(self, points: torch.Tensor, grid: torch.Tensor | None = None, *,
                  normalized: bool = False) -> torch.Tensor:
        """Trilinear samples ``[C, N]`` (channels first) at world points ``[N, 3]``, clamped at the border.

        Args:
            points: world mm, or grid_sample coordinates when ``normalized``.
            grid: another ``[C, X, Y, Z]`` grid on the same lattice (default: this sampler's).
        """
        grid = self.grid if grid is None else grid
        g = (points if normalized else self.normalized(points)).view(1, 1, 1, -1, 3)
        out = F.grid_sample(grid.unsqueeze(0), g, mode="bilinear", padding_mode="border", align_corners=True)
        return out.view(grid.shape[0], -1)

    def nearest_index(self, points: torch.Tensor) -> torch.Tensor:
        """Flat voxel index ``[N]`` (long) of the nearest voxel centre to each world point ``[N, 3]``."""
        v = torch.round(self.to_voxel(points).detach())
        hi = torch.tensor(self.shape, dtype=v.dtype, device=v.device) - 1
        v = torch.minimum(v.clamp_min(0), hi).long()
        return (v * self._strides).sum(-1)


def gradient_volume(volume: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
    """World-space gradient of a scalar grid, in intensity units per mm.

    Central differences along the voxel axes (one-sided at the border), mapped to world axes with
    the inverse-transpose of the affine's linear part.

    Args:
        volume: ``[X, Y, Z]`` scalar grid.
        affine: ``[4, 4]`` voxel-to-world matrix.

    Returns:
        ``[3, X, Y, Z]`` gradient (d/dx, d/dy, d/dz in world mm).
    """
    grads = torch.gradient(volume, dim=(0, 1, 2))  # per voxel step
    g = torch.stack(grads)
    inv_t = torch.as_tensor(np.linalg.inv(np.asarray(affine)[:3, :3]).T, dtype=volume.dtype, device=volume.device)
    return torch.einsum("wv,vxyz->wxyz", inv_t, g)
