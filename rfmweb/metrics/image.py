"""Full-reference image quality metrics: PSNR, SSIM, MS-SSIM and LPIPS, as in the Render-FM and 6DGS papers.

Inputs (``pred``, ``target``: same shape, numpy arrays or torch tensors):

- ``[H, W, 3]`` (one image, channels last: what renderers return) or ``[N, 3, H, W]`` (a batch);
- ``uint8`` in 0..255, or floating point in [0, 1] (values more than 1e-3 outside are refused).

Every metric returns a ``[N]`` float tensor (``N = 1`` for a single image), on the inputs' device:

- :func:`psnr`: ``10 log10(1 / MSE)`` in dB over all channels and pixels (``inf`` for equal images).
- :func:`ssim`: SSIM with an 11x11 Gaussian window, sigma 1.5, K = (0.01, 0.03), averaged over the
  valid window positions and the RGB channels (pytorch-msssim; Wang et al. 2004). Needs >= 11 px.
- :func:`ms_ssim`: multi-scale SSIM (Wang et al. 2003) with the standard 5 scales and weights
  (0.0448, 0.2856, 0.3001, 0.2363, 0.1333). Five scales need images larger than 160 px per side;
  smaller images raise :class:`MetricUnavailable` unless fewer ``scales`` are asked for (then the
  first weights, rescaled to the same sum; not comparable with 5-scale values).
- :func:`lpips`: LPIPS distance (Zhang et al. 2018; the ``lpips`` package, VGG by default). It needs
  torchvision's ImageNet backbone weights in the torch hub cache; they are *never downloaded* here.
  :func:`lpips_status` says why LPIPS is unavailable, and :func:`lpips` raises
  :class:`MetricUnavailable` with that reason instead of inventing a value.

:class:`ImageMetrics` accumulates them over batches (MONAI style) and reports the mean of each,
or ``None`` with the reason for a metric that could not be computed.

Example:
    >>> import numpy as np
    >>> a = np.full((32, 32, 3), 128, np.uint8); b = a.copy(); b[0, 0] = 138
    >>> round(float(psnr(a, b)[0]), 2)   # one pixel off by 10/255 in all 3 channels
    58.23
    >>> m = ImageMetrics(("psnr", "ssim", "ms_ssim")); _ = m.update(a, b)
    >>> m.aggregate()["ms_ssim"] is None, "160" in m.reasons["ms_ssim"]
    (True, True)
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError

#: SSIM window (Wang et al. 2004), as in the 6DGS / Render-FM evaluations.
WIN_SIZE, WIN_SIGMA = 11, 1.5
#: MS-SSIM scale weights (Wang et al. 2003).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
#: torchvision's file names of the ImageNet backbones LPIPS builds on (in ``<torch hub>/checkpoints``).
LPIPS_BACKBONES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth",
                   "squeeze": "squeezenet1_1-b8a52dc0.pth"}
NAMES = ("psnr", "ssim", "ms_ssim", "lpips")


class MetricUnavailable(Exception):
    """A metric cannot be computed here or for these images; ``reason`` says why (one line)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def to_nchw(image, name: str = "image") -> torch.Tensor:
    """``[H, W, 3]`` or ``[N, 3, H, W]``, uint8 or float in [0, 1] -> float32 ``[N, 3, H, W]`` in [0, 1].

    Raises:
        InputError: another shape or dtype, or float values outside [0, 1] (naming ``name``).
    """
    if isinstance(image, torch.Tensor):
        t = image
    else:
        array = np.ascontiguousarray(image)
        t = torch.from_numpy(array if array.flags.writeable else array.copy())  # a frame PIL made is read-only
    if t.dim() == 3 and t.shape[-1] == 3:
        t = t.permute(2, 0, 1)[None]
    elif not (t.dim() == 4 and t.shape[1] == 3):
        raise InputError(f"{name} must be [H, W, 3] or [N, 3, H, W], got shape {tuple(t.shape)}")
    if t.dtype == torch.uint8:
        return t.float() / 255.0
    if not t.is_floating_point():
        raise InputError(f"{name} must be uint8 or float in [0, 1], got {t.dtype}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise InputError(f"{name} contains NaN/Inf")
    lo, hi = float(t.min()), float(t.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise InputError(f"{name} must lie in [0, 1] (float) or be uint8, got values in [{lo:.4g}, {hi:.4g}]")
    return t.clamp(0.0, 1.0)


def _pair(pred, target) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = to_nchw(pred, "pred"), to_nchw(target, "target")
    if x.shape != y.shape:
        raise InputError(f"pred and target differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return x, y.to(x.device)


def psnr(pred, target) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, ``[N]`` (data range 1 after normalisation; ``inf`` if equal)."""
    x, y = _pair(pred, target)
    mse = ((x.double() - y.double()) ** 2).flatten(1).mean(1)
    return (10 * torch.log10(1.0 / mse)).float()


def _window_check(x: torch.Tensor, what: str) -> None:
    if min(x.shape[-2:]) < WIN_SIZE:
        raise MetricUnavailable(f"{what} needs images of at least {WIN_SIZE}x{WIN_SIZE} px, got "
                                f"{x.shape[-2]}x{x.shape[-1]}")


def ssim(pred, target) -> torch.Tensor:
    """SSIM, ``[N]`` in [-1, 1] (1 for equal images); 11x11 Gaussian window, sigma 1.5.

    Raises:
        MetricUnavailable: an image side is shorter than the 11 px window.
    """
    from pytorch_msssim import ssim as _ssim_fn

    x, y = _pair(pred, target)
    _window_check(x, "SSIM")
    return _ssim_fn(x, y, data_range=1.0, size_average=False, win_size=WIN_SIZE, win_sigma=WIN_SIGMA)


def ms_ssim_min_size(scales: int = 5) -> int:
    """Smallest image side (px) that MS-SSIM at ``scales`` scales accepts (161 for 5 scales)."""
    return (WIN_SIZE - 1) * 2 ** (scales - 1) + 1


def ms_ssim(pred, target, scales: int = 5) -> torch.Tensor:
    """Multi-scale SSIM, ``[N]`` in [0, 1] (1 for equal images).

    Args:
        scales: 1..5; 5 is the standard metric. Fewer scales use the first weights of
            :data:`MS_SSIM_WEIGHTS`, rescaled to their total.

    Raises:
        MetricUnavailable: an image side is not larger than ``(11 - 1) * 2 ** (scales - 1)`` px
            (160 for 5 scales: the window must fit the coarsest scale).
    """
    if not (isinstance(scales, int) and 1 <= scales <= 5):
        raise InputError(f"MS-SSIM scales must be an integer in 1..5, got {scales!r}")
    x, y = _pair(pred, target)
    need = ms_ssim_min_size(scales)
    if min(x.shape[-2:]) < need:
        fit = max((k for k in range(1, 6) if min(x.shape[-2:]) >= ms_ssim_min_size(k)), default=0)
        hint = f"; {fit} scale(s) would fit (ms_ssim(..., scales={fit}))" if fit and scales == 5 else ""
        raise MetricUnavailable(f"MS-SSIM at {scales} scales needs images larger than {need - 1} px per side, "
                                f"got {x.shape[-2]}x{x.shape[-1]}{hint}")
    if scales == 5:
        from pytorch_msssim import ms_ssim as _ms_ssim_fn

        return _ms_ssim_fn(x, y, data_range=1.0, size_average=False, win_size=WIN_SIZE, win_sigma=WIN_SIGMA,
                           weights=list(MS_SSIM_WEIGHTS))
    return _ms_ssim_levels(x, y, scales)


def _ms_ssim_levels(x: torch.Tensor, y: torch.Tensor, scales: int) -> torch.Tensor:
    """pytorch-msssim's MS-SSIM loop without its hard-coded 5-scale size check."""
    import torch.nn.functional as F
    from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim

    w = torch.tensor(MS_SSIM_WEIGHTS[:scales], dtype=x.dtype, device=x.device)
    w = w * (sum(MS_SSIM_WEIGHTS) / w.sum())     # same total as the standard weights (1.0001)
    win = _fspecial_gauss_1d(WIN_SIZE, WIN_SIGMA).repeat([x.shape[1], 1, 1, 1])
    mcs = []
    for level in range(scales):
        ssim_pc, cs = _ssim(x, y, data_range=1.0, win=win, size_average=False, K=(0.01, 0.03))
        if level < scales - 1:
            mcs.append(torch.relu(cs))
            pad = [s % 2 for s in x.shape[2:]]
            x, y = F.avg_pool2d(x, kernel_size=2, padding=pad), F.avg_pool2d(y, kernel_size=2, padding=pad)
    stack = torch.stack(mcs + [torch.relu(ssim_pc)], dim=0)                 # [levels, N, C]
    return torch.prod(stack ** w.view(-1, 1, 1), dim=0).mean(1)


# -- LPIPS ----------------------------------------------------------------------------------------
_LPIPS_MODELS: dict[tuple[str, str], torch.nn.Module] = {}


def lpips_status(net: str = "vgg") -> str | None:
    """``None`` when LPIPS(``net``) can run offline here, else the reason it cannot (one line).

    Checks, without importing or downloading anything: the ``lpips`` and ``torchvision`` packages,
    the linear-layer weights shipped inside ``lpips``, and torchvision's ImageNet backbone in the
    torch hub cache (``torch.hub.get_dir()/checkpoints``, moved with ``TORCH_HOME``).
    """
    if net not in LPIPS_BACKBONES:
        raise InputError(f"LPIPS net must be one of {sorted(LPIPS_BACKBONES)}, got {net!r}")
    spec = importlib.util.find_spec("lpips")
    if spec is None or spec.origin is None:
        return "the lpips package is not installed (pip install lpips; it also needs torchvision's ImageNet weights)"
    if importlib.util.find_spec("torchvision") is None:
        return "LPIPS needs torchvision, which is not installed"
    lin = Path(spec.origin).parent / "weights" / "v0.1" / f"{net}.pth"
    if not lin.exists():
        return f"the lpips package lacks its linear-layer weights {lin}"
    backbone = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONES[net]
    if not backbone.exists():
        return (f"LPIPS({net}) needs torchvision's ImageNet weights {backbone}, which are absent and are never "
                f"downloaded here; copy {LPIPS_BACKBONES[net]} there (or set TORCH_HOME) to enable it")
    return None


def lpips(pred, target, net: str = "vgg") -> torch.Tensor:
    """LPIPS distance, ``[N]`` (0 for equal images; lower is better).

    Raises:
        MetricUnavailable: see :func:`lpips_status` (nothing is downloaded).
    """
    reason = lpips_status(net)
    if reason is not None:
        raise MetricUnavailable(reason)
    x, y = _pair(pred, target)
    key = (net, str(x.device))
    if key not in _LPIPS_MODELS:
        import lpips as lpips_pkg  # noqa: PLC0415 (optional; weights checked above, so no download)

        _LPIPS_MODELS[key] = lpips_pkg.LPIPS(net=net, verbose=False).eval().to(x.device)
    with torch.no_grad():
        return _LPIPS_MODELS[key](x * 2 - 1, y * 2 - 1).flatten()


# -- accumulator ----------------------------------------------------------------------------------
class ImageMetrics:
    """Mean image metrics over many (pred, target) batches.

    Args:
        metrics: any of ``"psnr"``, ``"ssim"``, ``"ms_ssim"``, ``"lpips"``.
        ms_ssim_scales: scales for MS-SSIM (5 = standard; see :func:`ms_ssim`).
        lpips_net: LPIPS backbone (``"vgg"`` as in the 6DGS / Render-FM papers).

    A metric that cannot be computed for some batch (MS-SSIM on small images, LPIPS without its
    weights) aggregates to ``None``, and :attr:`reasons` says why: never a mean over a subset.

    Example:
        >>> m = ImageMetrics()
        >>> for pred, target in pairs: m.update(pred, target)  # doctest: +SKIP
        >>> m.aggregate(), m.reasons  # doctest: +SKIP
        ({'psnr': 28.9, 'ssim': 0.93, 'ms_ssim': 0.97, 'lpips': None}, {'lpips': 'the lpips package ...'})
    """

    def __init__(self, metrics: tuple[str, ...] = NAMES, *, ms_ssim_scales: int = 5, lpips_net: str = "vgg") -> None:
        unknown = [m for m in metrics if m not in NAMES]
        if unknown or not metrics:
            raise InputError(f"unknown metrics {unknown}; choose from {NAMES}")
        self.metrics = tuple(metrics)
        self.ms_ssim_scales = ms_ssim_scales
        self.lpips_net = lpips_net
        self.reset()

    def reset(self) -> None:
        self._values: dict[str, list[torch.Tensor]] = {m: [] for m in self.metrics}
        self._missing: dict[str, tuple[str, int]] = {}
        self.count = 0

    def _compute(self, name: str, pred, target) -> torch.Tensor:
        if name == "psnr":
            return psnr(pred, target)
        if name == "ssim":
            return ssim(pred, target)
        if name == "ms_ssim":
            return ms_ssim(pred, target, scales=self.ms_ssim_scales)
        return lpips(pred, target, net=self.lpips_net)

    def update(self, pred, target) -> dict[str, torch.Tensor | None]:
        """Add a batch; returns this batch's per-image values (``None`` for unavailable metrics)."""
        x, y = _pair(pred, target)
        out: dict[str, torch.Tensor | None] = {}
        for name in self.metrics:
            try:
                out[name] = self._compute(name, x, y).detach().cpu()
                self._values[name].append(out[name])
            except MetricUnavailable as exc:
                out[name] = None
                _, n = self._missing.get(name, (exc.reason, 0))
                self._missing[name] = (exc.reason, n + x.shape[0])
        self.count += x.shape[0]
        return out

    __call__ = update

    def aggregate(self) -> dict[str, float | None]:
        """Mean of each metric over every image so far (``None``: not computed for all of them)."""
        result: dict[str, float | None] = {}
        for name in self.metrics:
            if name in self._missing or not self._values[name]:
                result[name] = None
            else:
                result[name] = float(torch.cat(self._values[name]).double().mean())
        return result

    @property
    def reasons(self) -> dict[str, str]:
        """Why each ``None`` in :meth:`aggregate` is ``None``."""
        out = {}
        for name in self.metrics:
            if name in self._missing:
                reason, n = self._missing[name]
                out[name] = reason if n == self.count else f"{reason} ({n} of {self.count} images)"
            elif not self._values[name]:
                out[name] = "no images yet"
        return out

