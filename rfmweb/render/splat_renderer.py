"""The ``splats`` renderer: a scene's 6D Gaussian splats, sliced by view and rasterised.

A saved splat file (from ``rfmweb fit-6dgs`` or, later, Render-FM) renders like a volume: the
same cameras, the same class toggles (splats carry the label of the voxel they came from), the
same interactive/full-quality frames. Device and backends are chosen in one place
(:mod:`rfmweb.backend`): the splats move to CUDA when there is one (once, when a new set arrives),
where our fused Triton kernel slices them and gsplat rasterises; on a CPU the torch twin slices and
the numba kernel rasterises.
"""

from __future__ import annotations

import numpy as np
import torch

from ..backend import default_device, slicing_backend
from ..camera import OrbitCamera
from ..errors import InputError
from ..splats.pipeline import camera_tensors
from ..splats.rasterize import rasterize
from ..splats.slicing import LAMBDA_OPA, conditional_parts, slice_6d
from .scene import FULL, Quality, RenderAborted, Scene, to_uint8


class SplatRenderer:
    """The ``splats`` renderer (see the module docstring).

    Args:
        device: where the splats are sliced and drawn (default: :func:`rfmweb.backend.default_device`;
            gsplat on CUDA, the numba kernel on the CPU).
    """

    name = "splats"
    #: What its view says: a preset changes nothing there (class toggles do)
    note = "colours of the splat file: a preset or transfer function does not change them"

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = torch.device(device) if device is not None else default_device()
        self._source = None       # the scene's splats the cache below was made from
        self._splats = None       # ... on self.device
        self._parts = None

    def _prepared(self, scene: Scene):
        splats = scene.splats
        if splats is None:
            raise InputError("this view has no splats: load a .npz written by `rfmweb fit-6dgs` "
                             "(or choose another renderer)")
        if splats is not self._source:
            on_device = splats.to(self.device)
            self._source, self._splats, self._parts = splats, on_device, conditional_parts(on_device)
        return self._splats, self._parts

    def _slice(self, splats, parts, cam: OrbitCamera):
        if slicing_backend(splats.device) == "triton":
            from ..splats._triton_slicing import slice_6d_fused
            centres = torch.as_tensor(np.asarray(cam.position)[None], dtype=torch.float32, device=splats.device)
            return slice_6d_fused(splats.means, splats.dir_means, splats.opacity_logits, splats.sh, parts, centres,
                                  LAMBDA_OPA, splats.labels)
        return slice_6d(splats, [cam], parts=parts)

    @torch.no_grad()
    def render(self, scene: Scene, camera: OrbitCamera, quality: Quality = FULL, *, abort=None) -> np.ndarray:
        """``[H', W', 3]`` uint8 sRGB image, ``H' = round(H * quality.scale)``."""
        splats, parts = self._prepared(scene)
        cam = camera.resized(max(1, round(camera.width * quality.scale)), max(1, round(camera.height * quality.scale)))
        g = self._slice(splats, parts, cam)
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
