"""6D splats + cameras -> images: slice (:mod:`.slicing`) then rasterise (:mod:`.rasterize`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..camera import OrbitCamera
from ..errors import InputError
from .model import Splats6D
from .rasterize import rasterize
from .slicing import LAMBDA_OPA, ConditionalParts, slice_6d


def camera_tensors(cameras: OrbitCamera | Sequence[OrbitCamera], device=None, dtype=torch.float32
                   ) -> tuple[torch.Tensor, torch.Tensor, int, int]:
    """``(viewmats [V, 4, 4], Ks [V, 3, 3], width, height)`` of cameras sharing one image size."""
    cams = [cameras] if isinstance(cameras, OrbitCamera) else list(cameras)
    if not cams or len({(c.width, c.height) for c in cams}) != 1:
        raise InputError("cameras must be a non-empty list sharing one image size")
    viewmats = torch.as_tensor(np.stack([c.viewmat for c in cams]), dtype=dtype, device=device)
    ks = torch.as_tensor(np.stack([c.K for c in cams]), dtype=dtype, device=device)
    return viewmats, ks, cams[0].width, cams[0].height


def render_splats(splats: Splats6D, cameras: OrbitCamera | Sequence[OrbitCamera], *,
                  background: torch.Tensor | None = None,  # [3] or [V, 3]
                  backend: str = "auto",
                  lambda_opa: float = LAMBDA_OPA, parts: ConditionalParts | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Render ``splats`` for V cameras: ``(rgb [V, H, W, 3], alpha [V, H, W, 1])``."""
    cams = [cameras] if isinstance(cameras, OrbitCamera) else list(cameras)
    viewmats, ks, width, height = camera_tensors(cams, splats.device, splats.dtype)
    g = slice_6d(splats, cams, lambda_opa, parts=parts)
    return rasterize(g.means, g.covars, g.opacities, g.colors, viewmats, ks, width, height,
                     background=background, backend=backend)
