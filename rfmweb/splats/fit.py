r"""Per-scan 6DGS fitting: optimise 6D Gaussian splats against rendered views of one volume.

This is the paper's per-scan baseline ("6DGS", and "6DGS + AGP" when started from Anatomy-Guided
Priming; Render-FM, DESIGN.md): no network, just gradient descent on the splats of one scan.

- **Data**: a views folder (``rfmweb views``) read by :func:`rfmweb.splats.viewset.load_views`.
  Only ``train`` views drive the optimisation; ``test`` views are for :func:`evaluate` only.
- **Loss**: ``0.8 L1 + 0.2 (1 - SSIM)`` (11x11 Gaussian window, sigma 1.5; pytorch-msssim) between
  the splats rendered over the views' background and the ground truth.
- **Optimiser**: Adam (eps 1e-15) with one learning rate per parameter (:class:`FitConfig`, 3DGS's
  recipe adapted to a few hundred iterations), the position rate scaled by the scene extent and
  decaying exponentially, one random training view per step, a new random order every epoch.
- **Densification / pruning**: :mod:`rfmweb.splats.densify` (screen-space gradient statistics,
  clone / split / prune every ``densify_every`` steps inside a window, optional opacity reset,
  Adam state rebuilt on every change), and a last pruning pass at ``sigmoid(a) < 0.01``.
- **Backends**: the differentiable rasteriser is chosen by :func:`rfmweb.backend.choose_rasterizer`
  (``"auto"``: gsplat on CUDA, the torch twin on the CPU); :func:`evaluate` renders without
  gradients (gsplat on CUDA; the torch twin on the CPU, see its docstring for why not numba).
- **Ctrl-C** (main thread): the loop stops after the current step and returns the current splats
  (``FitResult.interrupted``); a second Ctrl-C raises ``KeyboardInterrupt`` at once.

Example::

    >>> views = load_views("views/", size=128)                                      # doctest: +SKIP
    >>> scene = scene_for_views(views, volume)                                      # doctest: +SKIP
    >>> splats = initial_splats("agp", scene, max_splats=10000)                     # doctest: +SKIP
    >>> result = fit_6dgs(splats, views.train, FitConfig(iters=300, max_splats=20000))  # doctest: +SKIP
    >>> evaluate(result.splats, views.test_native).psnr                             # doctest: +SKIP

Wall time on a CPU is dominated by the torch twin: one step (slice, forward, backward, Adam) took
0.9 s for 20k splats at 128^2 on one core of this shared 2-core machine, 1.6 s with a second fit
beside it. Hence the CPU defaults of ``rfmweb fit-6dgs`` (128^2 views, at most 20k splats, 300
steps); on CUDA gsplat makes a step take milliseconds.
"""

from __future__ import annotations

import json
import logging
import math
import signal
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from ..backend import choose_rasterizer, scoring_rasterizer
from .densify import DensifyConfig, GradStats, SplatParams, densify_and_prune
from .model import Splats6D
from .rasterize import rasterize
from .slicing import conditional_parts, slice_6d
from .viewset import SSIM_WINDOW, Views, scene_extent

log = logging.getLogger(__name__)

#: Loss weights (DESIGN.md): 0.8 L1 + 0.2 (1 - SSIM).
SSIM_WEIGHT = 0.2
SSIM_SIGMA = 1.5
REPORT_FORMAT = "rfmweb.fit6dgs.report/1"
#: Share of ``--max-splats`` the initial splats may take; densification grows into the rest.
INIT_FRACTION = 0.5


# -- loss and metrics -------------------------------------------------------------------------------
def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(0, 3, 1, 2)


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [B, H, W, 3] x2 -> [B]
    """Per-image SSIM (11x11 Gaussian window, sigma 1.5, data range 1), differentiable.

    The same SSIM as :func:`rfmweb.metrics.ssim`, minus its input checks: a render being trained
    may exceed 1 (colours add up), and checking the range every step would sync a GPU.
    """
    from pytorch_msssim import ssim as _ssim

    return _ssim(_nchw(pred), _nchw(target), data_range=1.0, size_average=False, win_size=SSIM_WINDOW,
                 win_sigma=SSIM_SIGMA)


def photometric_terms(pred: torch.Tensor,  # [B, H, W, 3] in [0, 1]
                      target: torch.Tensor,  # [B, H, W, 3] in [0, 1]
                      ssim_weight: float = SSIM_WEIGHT) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(loss, L1, SSIM)``: the loss ``(1 - w) L1 + w (1 - SSIM)`` (DESIGN.md: w = 0.2) and its two
    terms, each a scalar averaged over the batch."""
    l1 = (pred - target).abs().mean()
    s = ssim(pred, target).mean()
    return (1.0 - ssim_weight) * l1 + ssim_weight * (1.0 - s), l1, s


def photometric_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = SSIM_WEIGHT) -> torch.Tensor:
    """The loss of :func:`photometric_terms` alone."""
    return photometric_terms(pred, target, ssim_weight)[0]


@dataclass
class Evaluation:
    """Held-out image quality (:mod:`rfmweb.metrics.image`), means over the views.

    ``ms_ssim`` / ``lpips`` are ``None`` with a reason when they cannot be computed (MS-SSIM needs
    more than 160 px per side; LPIPS needs the ``lpips`` package and its backbone weights, which
    are never downloaded): a value is never invented.
    """

    ssim: float
    psnr: float
    ms_ssim: float | None
    ms_ssim_reason: str | None
    lpips: float | None
    lpips_reason: str | None
    size: tuple[int, int]
    per_view: list[dict]
    images: torch.Tensor | None = None  # [V, H, W, 3] the renders (when asked for)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.pop("images")
        d["size"] = list(self.size)
        return d


@torch.no_grad()
def evaluate(splats: Splats6D, views: Views, *, background=(0.0, 0.0, 0.0), backend: str | None = None,
             keep_images: bool = False) -> Evaluation:
    """Render ``splats`` for every view (no gradients) and score them against the views' images.

    PSNR, SSIM (11x11 Gaussian window, sigma 1.5), MS-SSIM (5 scales) and LPIPS (VGG, as in the
    6DGS / Render-FM papers) from :class:`rfmweb.metrics.ImageMetrics`, per view then averaged.

    ``backend=None``: :func:`~rfmweb.backend.scoring_rasterizer` (the torch twin on a CPU, gsplat on
    CUDA). Torch's thread pool is restored afterwards, whatever the backend changed.
    """
    if backend is None:
        backend = scoring_rasterizer(splats.device)
    threads = torch.get_num_threads()
    try:
        return _evaluate(splats, views, background, backend, keep_images)
    finally:
        if torch.get_num_threads() != threads:  # see above: never leave torch's pool changed
            torch.set_num_threads(threads)


def _evaluate(splats: Splats6D, views: Views, background, backend: str, keep_images: bool) -> Evaluation:
    from ..metrics.image import ImageMetrics

    parts = conditional_parts(splats)
    device, dtype = splats.device, splats.dtype
    bg = torch.as_tensor(background, dtype=dtype, device=device)
    metrics = ImageMetrics(("psnr", "ssim", "ms_ssim", "lpips"))
    renders, per_view = [], []
    for i in range(len(views)):  # one view at a time: bounded memory at any size
        v = views.subset([i]).to(device)
        g = slice_6d(splats, v.centres, parts=parts)
        rgb, _ = rasterize(g.means, g.covars, g.opacities, g.colors, v.viewmats, v.Ks, v.width, v.height,
                           background=bg, backend=backend)
        pred = rgb.clamp(0, 1).float().cpu()  # [1, H, W, 3]
        values = metrics.update(_nchw(pred), _nchw(views.images[i:i + 1].float()))
        per_view.append({"file": views.names[i], **{k: None if x is None else float(x[0]) for k, x in values.items()}})
        if keep_images:
            renders.append(pred)
    mean, reasons = metrics.aggregate(), metrics.reasons
    return Evaluation(mean["ssim"], mean["psnr"], mean["ms_ssim"], reasons.get("ms_ssim"), mean["lpips"],
                      reasons.get("lpips"), (views.width, views.height), per_view,
                      torch.cat(renders) if keep_images else None)


# -- fitting ----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FitConfig:
    """Hyper-parameters of :func:`fit_6dgs` (3DGS's recipe, adapted to short CPU schedules).

    Learning rates (Adam, per parameter; every one multiplied by ``lr_scale``):

    - ``means_lr`` -> ``means_lr_final``: position, as a fraction of the scene extent (mm per
      step = fraction x extent), decaying exponentially over the run (3DGS: 1.6e-4 -> 1.6e-6 of
      the camera extent over 30k steps; our runs are ~100x shorter);
    - ``sh_dc_lr``: SH degree 0; ``sh_rest_lr``: degree 1, DC / 20 as in 3DGS;
    - ``opacity_lr``: opacity logits; ``log_scale_lr``: the six log-diagonals of the Cholesky factor;
    - ``chol_lower_lr``: the 15 raw off-diagonals (``l = 2 sigmoid(x) - 1``; they orient the
      Gaussian and couple position to direction, the role of 3DGS's rotation);
    - ``dir_lr``: direction means ``mu_d`` (unit-vector space; slow).

    The base values are twice 3DGS's ratios (DC 2.5e-3 x 8, opacity 0.05 x 2, scaling 5e-3 x 2,
    off-diagonals between rotation and scaling): on the head CT (128^2, 20 + 10 views, 100 steps)
    doubling every rate took the held-out PSNR of AGP from 20.5 to 22.2 dB, and on the test ball
    from 20.3 to 25.8 dB; ``--lr-scale`` scales them all.

    Schedule: densify / prune every ``densify_every`` steps from ``densify_from`` to
    ``densify_until`` (``None``: every ``clamp(iters // 12, 10, 100)`` steps from 10% to 60% of
    ``iters``; 3DGS: every 100 from 500 to 15k of 30k). ``opacity_reset_every``: clamp every
    opacity to ``2 * min_opacity`` that often inside the window (3DGS: to 0.01 every 3000 steps);
    0, the default, turns it off: in runs of a few hundred steps a reset costs more than it cleans.
    ``views_per_step``: training views rendered (as one batch) per Adam step.
    """

    iters: int = 300
    lr_scale: float = 1.0
    means_lr: float = 2e-3
    means_lr_final: float = 2e-5
    sh_dc_lr: float = 0.02
    sh_rest_lr: float = 0.02 / 20
    opacity_lr: float = 0.1
    log_scale_lr: float = 0.01
    chol_lower_lr: float = 0.006
    dir_lr: float = 0.002
    ssim_weight: float = SSIM_WEIGHT
    views_per_step: int = 1
    densify_every: int | None = None
    densify_from: int | None = None
    densify_until: int | None = None
    opacity_reset_every: int = 0
    densify: DensifyConfig = field(default_factory=DensifyConfig)
    max_splats: int | None = None
    log_every: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        if self.iters < 0:
            raise InputError(f"--iters must be >= 0, got {self.iters}")
        if not self.lr_scale > 0:
            raise InputError(f"--lr-scale must be > 0, got {self.lr_scale}")
        if self.max_splats is not None and self.max_splats < 1:
            raise InputError(f"--max-splats must be >= 1, got {self.max_splats}")
        if self.views_per_step < 1 or self.log_every < 1:
            raise InputError("views_per_step and log_every must be >= 1")

    @property
    def schedule(self) -> tuple[int, int, int]:
        """``(every, from, until)`` of densification, defaults resolved."""
        every = self.densify_every or int(np.clip(self.iters // 12, 10, 100))
        start = self.densify_from if self.densify_from is not None else self.iters // 10
        until = self.densify_until if self.densify_until is not None else int(self.iters * 0.6)
        return every, start, until

    def lrs(self, extent: float) -> dict[str, float]:
        """Initial learning rate of every parameter group."""
        s = self.lr_scale
        return {"means": self.means_lr * extent * s, "dir_means": self.dir_lr * s,
                "chol_log_diag": self.log_scale_lr * s, "chol_lower": self.chol_lower_lr * s,
                "opacity_logits": self.opacity_lr * s, "sh_dc": self.sh_dc_lr * s, "sh_rest": self.sh_rest_lr * s}

    def means_lr_at(self, step: int, extent: float) -> float:
        """Exponential (log-linear) decay from ``means_lr`` to ``means_lr_final`` over the run."""
        t = min(max(step / max(self.iters - 1, 1), 0.0), 1.0)
        lr = math.exp((1 - t) * math.log(self.means_lr) + t * math.log(self.means_lr_final))
        return lr * extent * self.lr_scale

    def to_dict(self) -> dict:
        d = asdict(self)
        every, start, until = self.schedule
        d.update(densify_every=every, densify_from=start, densify_until=until)
        return d


@dataclass
class FitResult:
    """What :func:`fit_6dgs` returns.

    Attributes:
        splats: the fitted splats (detached, on the fitting device).
        iterations: steps taken (fewer than asked when interrupted).
        wall_s: seconds spent in the loop.
        interrupted: True when Ctrl-C stopped the loop early (the splats are the current ones).
        curve: ``{"iteration", "loss", "n_splats", "time_s"}`` every ``log_every`` steps (mean loss
            over those steps).
        events: densify / prune / reset events with counts.
        backend: the rasteriser used for training.
        extent: scene radius used for the learning rate and thresholds, mm.
    """

    splats: Splats6D
    iterations: int
    wall_s: float
    interrupted: bool
    curve: list[dict]
    events: list[dict]
    backend: str
    extent: float


class _StopFlag:
    """First Ctrl-C asks the loop to stop after the current step; a second one interrupts at once.

    Installed only on the main thread (signal handlers cannot be set elsewhere).
    """

    def __init__(self, enabled: bool) -> None:
        self.stop = False
        self._previous = None
        self._enabled = enabled and threading.current_thread() is threading.main_thread()

    def __enter__(self) -> "_StopFlag":
        if self._enabled:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.stop:
            raise KeyboardInterrupt
        self.stop = True
        log.warning("Ctrl-C: stopping after this step and keeping the current splats (Ctrl-C again to abort)")

    def __exit__(self, *exc) -> None:
        if self._enabled:
            signal.signal(signal.SIGINT, self._previous)


def fit_6dgs(splats: Splats6D, train: Views, config: FitConfig = FitConfig(), *, device=None,
             background=(0.0, 0.0, 0.0), backend: str = "auto", extent: float | None = None,
             progress: bool = True, label: str = "fit-6dgs", handle_interrupt: bool = True) -> FitResult:
    """Optimise ``splats`` so that they render like the ``train`` views (see the module docstring).

    Args:
        splats: starting splats (not modified).
        train: training views (all of one size).
        config: hyper-parameters.
        device: where to optimise (default: the splats' device).
        background: colour behind the splats, as in the views (sRGB [0, 1]).
        backend: rasteriser (``"auto"``: gsplat on CUDA, the torch twin on the CPU; ``"torch"``).
        extent: scene radius in mm for the learning rate and thresholds (default: from the splats).
        progress: show a tqdm bar on stderr, named ``label`` (the command running the fit).
        handle_interrupt: on the main thread, the first Ctrl-C ends the loop after the current step
            and returns the current splats with ``interrupted=True`` (a second Ctrl-C raises).

    Returns:
        :class:`FitResult`.
    """
    from tqdm import tqdm

    if backend == "cpu":
        raise InputError("backend 'cpu' (numba) is forward only; fit with 'auto', 'torch' or 'gsplat'")
    device = torch.device(device) if device is not None else splats.device
    extent = float(extent) if extent is not None else scene_extent(splats)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    gen = torch.Generator(device=device).manual_seed(config.seed)
    params = SplatParams(splats, config.lrs(extent), device)
    views = train.to(device)
    centres = views.centres
    bg = torch.as_tensor(background, dtype=torch.float32, device=device)
    every, start, until = config.schedule
    stats = GradStats(len(params), device)
    curve, events, window = [], [], []
    order: list[int] = []
    used_backend = choose_rasterizer(backend, device, True)
    step = 0
    t0 = time.perf_counter()
    with _StopFlag(handle_interrupt) as flag:
        bar = tqdm(total=config.iters, desc=label, unit="it", disable=not progress, dynamic_ncols=True)
        while step < config.iters and not flag.stop:
            params.set_lr("means", config.means_lr_at(step, extent))
            if len(order) < config.views_per_step:
                order.extend(rng.permutation(len(views)).tolist())  # a new random order every epoch
            idx, order = order[:config.views_per_step], order[config.views_per_step:]
            batch = views.subset(idx)
            sp = params.splats()
            g = slice_6d(sp, centres[idx], parts=conditional_parts(sp))
            sliced_means = g.means
            sliced_means.retain_grad()  # [B, N, 3]: screen-space gradient statistics (densify.GradStats)
            rgb, _ = rasterize(sliced_means, g.covars, g.opacities, g.colors, batch.viewmats, batch.Ks,
                               batch.width, batch.height, background=bg, backend=used_backend)
            loss = photometric_loss(rgb, batch.images, config.ssim_weight)
            params.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if start <= step < until and sliced_means.grad is not None:
                stats.add(sliced_means.grad, sliced_means.detach(), batch.viewmats, batch.Ks, batch.width,
                          batch.height)
            params.optimizer.step()
            step += 1
            window.append(float(loss.detach()))

            if start <= step <= until and step % every == 0:
                ev = densify_and_prune(params, stats, config.densify, extent, max_splats=config.max_splats,
                                       densify=step < until, generator=gen)
                events.append({"iteration": step, "kind": "densify", **ev})
                stats = GradStats(len(params), device)
            if config.opacity_reset_every and step % config.opacity_reset_every == 0 and step < until:
                params.reset_opacity(2 * config.densify.min_opacity)
                events.append({"iteration": step, "kind": "opacity_reset", "n": len(params)})
            if step % config.log_every == 0 or step == config.iters or flag.stop:
                curve.append({"iteration": step, "loss": float(np.mean(window)), "n_splats": len(params),
                              "time_s": round(time.perf_counter() - t0, 3)})
                window = []
                bar.set_postfix(loss=f"{curve[-1]['loss']:.4f}", splats=len(params))
            bar.update(1)
        bar.close()
    # last clean-up: drop what can never be seen (DESIGN.md: opacity < 0.01)
    ev = densify_and_prune(params, GradStats(len(params), device), replace(config.densify, prune_scale=math.inf),
                           extent, densify=False)
    events.append({"iteration": step, "kind": "final_prune", **ev})
    return FitResult(params.detached(), step, time.perf_counter() - t0, flag.stop, curve, events, used_backend,
                     extent)


# -- report -----------------------------------------------------------------------------------------
def write_json(path: str | Path, obj: dict) -> Path:
    """Write ``obj`` as indented JSON, atomically."""
    text = json.dumps(obj, indent=2, allow_nan=False)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text + "\n"))
