"""The ``splats`` renderer: a scene's 6D Gaussian splats, sliced by view and rasterised.

A saved splat file (from ``rfmweb fit-6dgs`` or, later, Render-FM) renders like a volume: the
same cameras, the same class toggles (splats carry the label of the voxel they came from), the
same interactive/full-quality frames. The rasteriser backend is chosen in one place
(:mod:`rfmweb.splats.backend`): gsplat on CUDA, the numba kernel on a CPU.
"""

from __future__ import annotations

import numpy as np
import torch

from ..camera import OrbitCamera
from ..errors import InputError
from ..splats.pipeline import camera_tensors
from ..splats.rasterize import rasterize
from ..splats.slicing import conditional_parts, slice_6d
from .scene import FULL, Quality, RenderAborted, Scene, to_uint8


class SplatRenderer:
    """The ``splats`` renderer (see the module docstring)."""

    name = "splats"

    def __init__(self) -> None:
        self._splats = None
        self._parts = None

    def _prepared(self, scene: Scene):
        splats = scene.splats
        if splats is None:
            raise InputError("this view has no splats: load a .npz written by `rfmweb fit-6dgs` "
                             "(or choose another renderer)")
        if splats is not self._splats:
            self._splats, self._parts = splats, conditional_parts(splats)
        return splats, self._parts

    @torch.no_grad()
    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``."""
        splats, parts = self._prepared(scene)
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        g = slice_6d(splats, [cam], parts=parts)
        opacities = g.opacities
        hidden = scene.classes.hidden
        if hidden and splats.labels is not None:
            keep = ~torch.isin(splats.labels, torch.tensor(hidden, device=splats.labels.device))
            opacities = opacities * keep
        if abort is not None and abort():
            raise RenderAborted("splat render stopped: a newer frame is wanted")
        viewmats, ks, w, h = camera_tensors([cam], splats.device, splats.dtype)
        bg = torch.tensor(scene.background, dtype=splats.dtype, device=splats.device)
        rgb, _ = rasterize(g.means, g.covars, opacities, g.colors, viewmats, ks, w, h, background=bg)
        return to_uint8(rgb[0])
