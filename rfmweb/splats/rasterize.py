"""Rasterise 3D Gaussians into V images: the one public entry point, whatever the backend.

Example (the 6DGS pipeline: slice, then rasterise)::

    >>> g = slice_6d(splats, cams)                                   # V OrbitCameras
    >>> viewmats = torch.stack([torch.as_tensor(c.viewmat) for c in cams]).float()
    >>> Ks = torch.stack([torch.as_tensor(c.K) for c in cams]).float()
    >>> rgb, alpha = rasterize(g.means, g.covars, g.opacities, g.colors, viewmats, Ks, 256, 256)
    >>> rgb.shape, alpha.shape
    (torch.Size([V, 256, 256, 3]), torch.Size([V, 256, 256, 1]))

All backends implement gsplat's classic (non-antialiased) 3DGS maths; see
:mod:`rfmweb.splats._torch_impl` for the equations and :func:`rfmweb.backend.choose_rasterizer` for the choice.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..backend import choose_rasterizer, numba_threads


def _per_view(x: torch.Tensor, v: int, tail: tuple, name: str) -> torch.Tensor:
    """Broadcast ``[*tail]`` (shared) or ``[V, *tail]`` to ``[V, *tail]``."""
    if tuple(x.shape) == tail:
        return x.expand(v, *tail)
    if tuple(x.shape) == (v, *tail):
        return x
    raise InputError(f"{name} must have shape [{', '.join(map(str, tail))}] or [V={v}, ...], got {tuple(x.shape)}")


def rasterize(
    means: torch.Tensor,  # [V, N, 3] or [N, 3]
    covars: torch.Tensor,  # [V, N, 3, 3] or [N, 3, 3]
    opacities: torch.Tensor,  # [V, N] or [N]
    colors: torch.Tensor,  # [V, N, D] or [N, D]
    viewmats: torch.Tensor,  # [V, 4, 4]
    Ks: torch.Tensor,  # [V, 3, 3]  # noqa: N803
    width: int,
    height: int,
    *,
    background: torch.Tensor | None = None,  # [D] or [V, D]
    backend: str = "auto",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render 3D Gaussians (world mm) seen by V pinhole cameras (OpenCV axes, :mod:`rfmweb.camera`).

    Args:
        means, covars, opacities, colors: per-view (leading V) or shared Gaussians; opacities in
            [0, 1]; colors with D channels (RGB: D = 3).
        viewmats: world-to-camera matrices. Ks: pinhole intrinsics (pixel centres at +0.5).
        width, height: image size, pixels.
        background: colour behind the splats (default black).
        backend: ``"auto"``, ``"gsplat"``, ``"torch"`` or ``"cpu"`` (see :mod:`.backend`). The CPU
            backends use ``torch.get_num_threads()`` threads (see ``rfmweb.backend.limit_threads``).

    Returns:
        ``(rgb [V, H, W, D], alpha [V, H, W, 1])`` on the inputs' device, in their dtype
        (the ``"cpu"`` backend computes in float32).
    """
    if viewmats.ndim != 3 or viewmats.shape[1:] != (4, 4):
        raise InputError(f"viewmats must have shape [V, 4, 4], got {tuple(viewmats.shape)}")
    v = viewmats.shape[0]
    if Ks.shape != (v, 3, 3):
        raise InputError(f"Ks must have shape [V={v}, 3, 3], got {tuple(Ks.shape)}")
    if not (0 < int(width) <= 16384 and 0 < int(height) <= 16384):
        raise InputError(f"image size must be 1..16384 pixels, got {width}x{height}")
    width, height = int(width), int(height)
    n = means.shape[-2] if means.ndim >= 2 else -1
    means = _per_view(means, v, (n, 3), "means")
    covars = _per_view(covars, v, (n, 3, 3), "covars")
    opacities = _per_view(opacities, v, (n,), "opacities")
    d = colors.shape[-1]
    colors = _per_view(colors, v, (n, d), "colors")
    dtype, device = means.dtype, means.device
    if background is not None:
        background = _per_view(torch.as_tensor(background, dtype=dtype, device=device), v, (d,), "background")
    tensors = (means, covars, opacities, colors, viewmats, Ks) + ((background,) if background is not None else ())
    if any(t.device != device for t in tensors):
        raise InputError("rasterize: all tensors must be on one device")
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in tensors)
    choice = choose_rasterizer(backend, device, needs_grad)
    viewmats, Ks = viewmats.to(dtype), Ks.to(dtype)

    if choice == "gsplat":
        from ._gsplat_impl import rasterize_gsplat
        return rasterize_gsplat(means, covars, opacities, colors, viewmats, Ks, width, height, background)
    if choice == "cpu":
        from ._numba_impl import rasterize_numba

        arrays = [t.detach().cpu().numpy() for t in (means, covars, opacities, colors, viewmats, Ks)]
        bg = None if background is None else background.detach().cpu().numpy()
        with numba_threads():     # one thread budget for CPU compute: torch's intra-op threads
            rgb, alpha = rasterize_numba(*arrays, width, height, bg)
        return (torch.from_numpy(rgb).to(device=device, dtype=dtype),
                torch.from_numpy(alpha).to(device=device, dtype=dtype))
    from ._torch_impl import rasterize_torch
    return rasterize_torch(means, covars, opacities, colors, viewmats, Ks, width, height, background)
