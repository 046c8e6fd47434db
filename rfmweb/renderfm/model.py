"""The Render-FM model: a 3-D U-Net (6 -> 37 channels, half resolution) on the input builder's
channels, decoded into residuals on the AGP base (:mod:`.decoder`); checkpoints; one-pass prediction.

Prediction (:func:`predict`), timed by stage:

1. ``input``: copy the scan to the model's device, resample and classify it there
   (:func:`.inputs.build_inputs`), pool the AGP base (:func:`rfmweb.splats.init.prime`), all in torch;
2. ``network``: one forward pass, or overlapping patches when the volume exceeds ``max_voxels``
   (:meth:`RenderFM.forward_patched`: identical to one pass, since the network has no instance
   statistics; see :mod:`rfmweb.models.unet`);
3. ``decode``: gather the 37 channels at the kept blocks and apply the residuals;
4. ``transfer``: move the splats to the requested device (float32).

The U-Net has no normalisation layers (``norm="none"``): that is what makes patches exact, and it
keeps a 2-process DDP step equal to one process with the same global batch.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..io.atomic import atomic_write
from ..models.unet import UNet3D, UNetConfig
from ..render.scene import Scene
from ..splats.init import prime
from ..splats.model import Splats6D
from .decoder import N_OUT, Base, decode
from .inputs import N_CHANNELS, RenderFMInput, build_inputs

log = logging.getLogger(__name__)

FORMAT = "rfmweb.renderfm/1"
#: The shipped checkpoint (see RENDERFM_CARD.md beside it).
DEFAULT_WEIGHTS = "renderfm.pt"


@dataclass(frozen=True)
class RenderFMConfig:
    """Hyper-parameters of :class:`RenderFM`.

    Attributes:
        features: U-Net channels per stage, finest first.
        spacing_mm: working grid spacing (the paper: 1.5 mm).
        eps: AGP keeps blocks with opacity above this.
        agp: False keeps every block (the "AGP off" ablation).
        max_offset: position offset bound, working voxels.
        max_log_scale: bound of the log-scale residual (scales within ``e^b`` of the base).
        min_log_scale: lower bound of the position scales' log residual (``> 0``): a splat's Cholesky
            position scales stay above ``e^-m`` times the base (half the half-resolution lattice
            spacing), so the lattice never shows through as dots at any display size (0.1: at least
            0.45 of the spacing). None: ``max_log_scale`` (symmetric; checkpoints before 2026-12-05).
        max_voxels: larger working grids are processed in patches of at most this many voxels.
        min_sliced_width: the narrowest a splat may be in any view (its slice by the view direction),
            a fraction of its lattice spacing (:func:`~rfmweb.renderfm.decoder.floor_sliced_width`;
            0.35: the lattice's first harmonic under 9 % of the density). None: no floor.
    """

    features: tuple[int, ...] = (8, 16, 32, 64)
    spacing_mm: float = 1.5
    eps: float = 0.01
    agp: bool = True
    max_offset: float = 1.0
    max_log_scale: float = 2.0
    max_voxels: int = 288 ** 3
    min_log_scale: float | None = None
    min_sliced_width: float | None = 0.35

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if len(self.features) < 2:
            raise InputError(f"Render-FM needs at least 2 U-Net stages, got features {self.features}")
        if not (self.spacing_mm > 0 and self.max_offset > 0 and self.max_log_scale > 0 and self.max_voxels > 0):
            raise InputError("spacing_mm, max_offset, max_log_scale and max_voxels must be > 0")
        if self.min_log_scale is not None and not 0 < self.min_log_scale <= self.max_log_scale:
            raise InputError(f"min_log_scale must lie in (0, max_log_scale], got {self.min_log_scale}")
        if self.min_sliced_width is not None and not 0 < self.min_sliced_width <= 1:
            raise InputError(f"min_sliced_width must lie in (0, 1], got {self.min_sliced_width}")

    @property
    def unet(self) -> UNetConfig:
        return UNetConfig(in_channels=N_CHANNELS, out_channels=N_OUT, features=self.features,
                          half_resolution=True, norm="none")

    @property
    def halo(self) -> int:
        """Context voxels around a patch's core (a multiple of the stride grid ``2^(S-1)``),
        beyond the receptive field's reach (checked in the tests)."""
        m = 2 ** (len(self.features) - 1)
        return 6 * m

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d


class RenderFM(nn.Module):
    """U-Net backbone with a zero-initialised head: an untrained model predicts the AGP splats.

    Shapes: ``forward(x [B, 6, X, Y, Z]) -> [B, 37, X // 2, Y // 2, Z // 2]``.
    """

    def __init__(self, config: RenderFMConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or RenderFMConfig()
        self.unet = UNet3D(config.unet)
        for head in self.unet.heads.values():
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unet(x)

    @torch.no_grad()
    def forward_patched(self, x: torch.Tensor, max_voxels: int | None = None) -> torch.Tensor:
        """:meth:`forward` of ``x [1, 6, X, Y, Z]`` in overlapping patches of at most ``max_voxels``.

        Each patch is a core (a multiple of the stride grid) plus :attr:`RenderFMConfig.halo` voxels
        of context on every side that has a neighbour; only the core's outputs are kept. Patches
        start on the stride grid, so every output equals the whole pass's.
        """
        max_voxels = max_voxels or self.config.max_voxels
        size = x.shape[2:]
        if math.prod(size) <= max_voxels:
            return self(x)
        m, halo = 2 ** (len(self.config.features) - 1), self.config.halo
        core = m
        while (core + m + 2 * halo) ** 3 <= max_voxels:
            core += m
        out = x.new_zeros(x.shape[0], N_OUT, *(n // 2 for n in size))
        starts = [range(0, n, core) for n in size]
        for a in starts[0]:
            for b in starts[1]:
                for c in starts[2]:
                    lo = [max(0, s - halo) for s in (a, b, c)]
                    hi = [min(n, s + core + halo) for s, n in zip((a, b, c), size)]
                    y = self(x[:, :, lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]])
                    src = tuple(slice((s - l) // 2, (min(s + core, n) - l) // 2)
                                for s, l, n in zip((a, b, c), lo, size))
                    dst = tuple(slice(s // 2, min(s + core, n) // 2) for s, n in zip((a, b, c), size))
                    out[(slice(None), slice(None)) + dst] = y[(slice(None), slice(None)) + src]
        return out


def base_for(inputs: RenderFMInput, config: RenderFMConfig, device=None) -> Base:
    """The AGP base of a built input (every block when ``config.agp`` is False), pooled on the input's
    device and put on ``device`` (default: the input's)."""
    primed = prime(inputs.rgba, inputs.labels, inputs.affine, inputs.unit_distance, eps=config.eps,
                   all_voxels=not config.agp)
    if len(primed) == 0:
        raise InputError("Render-FM found no visible voxel: the transfer function and classes hide everything")
    return Base.from_primed(primed, inputs.tensor.device if device is None else device)


def decode_output(model: RenderFM, raw: torch.Tensor, base: Base) -> Splats6D:
    """``raw [37, X', Y', Z']`` -> splats with the model's bounds."""
    c = model.config
    return decode(raw, base, max_offset=c.max_offset, max_log_scale=c.max_log_scale, min_log_scale=c.min_log_scale,
                  min_sliced_width=c.min_sliced_width)


#: Above this share of unlabelled visible voxels a prediction says so (:attr:`Prediction.unlabelled_note`).
UNLABELLED_NOTE = 0.5


@dataclass
class Prediction:
    """What :func:`predict` returns: the splats and the seconds of each stage (``timings``:
    ``input``, ``network``, ``decode``, ``transfer``, ``prepare_s`` the whole); ``unlabelled``: the
    share of what the TF shows that the label mask leaves out (:class:`~rfmweb.renderfm.inputs.RenderFMInput`)."""

    splats: Splats6D
    timings: dict = field(default_factory=dict)
    grid: tuple[int, int, int] = (0, 0, 0)
    unlabelled: float = 0.0

    @property
    def unlabelled_note(self) -> str:
        """A line for the user when most of what the preset shows is unlabelled (more than
        :data:`UNLABELLED_NOTE`; e.g. CT-Lung on a head CT labelled soft tissue / bone), else ``""``."""
        if self.unlabelled <= UNLABELLED_NOTE:
            return ""
        return f"{self.unlabelled:.0%} of what this preset shows is unlabelled (label 0), which Render-FM leaves out"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict(model: RenderFM, scene: Scene, *, device=None, out_device=None, prune: float = 0.01) -> Prediction:
    """One network pass from ``scene`` to 6D splats (see the module docstring).

    Args:
        model: a :class:`RenderFM` (its device is used when ``device`` is None).
        device: where the network runs. out_device: where the splats go (default ``device``).
        prune: drop splats whose opacity ``sigmoid(a)`` is below this (DESIGN.md: 0.01).
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    out_device = torch.device(out_device) if out_device is not None else device
    model = model.to(device).eval()
    timings = {}
    t0 = t = time.perf_counter()
    inputs = build_inputs(scene, model.config.spacing_mm, eps=model.config.eps, device=device)
    base = base_for(inputs, model.config)
    x = inputs.tensor[None]
    if device.type == "cpu":     # oneDNN's 3-D convolutions: ~2x faster channels-last (measured, 2 cores)
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d)
    _sync(device)
    timings["input"], t = time.perf_counter() - t, time.perf_counter()
    raw = model.forward_patched(x)[0]
    _sync(device)
    timings["network"], t = time.perf_counter() - t, time.perf_counter()
    splats = decode_output(model, raw, base)
    if prune:
        splats = splats.prune(prune)
    _sync(device)
    timings["decode"], t = time.perf_counter() - t, time.perf_counter()
    splats = replace(splats.to(out_device), box=scene.volume.bounds)  # splats alone frame as the volume
    _sync(out_device)
    timings["transfer"] = time.perf_counter() - t
    timings["prepare_s"] = time.perf_counter() - t0
    log.info("Render-FM: %d splats from a %s working grid in %.3f s (input %.3f, network %.3f, decode %.3f, "
             "transfer %.3f) on %s", len(splats), "x".join(map(str, inputs.shape)), timings["prepare_s"],
             timings["input"], timings["network"], timings["decode"], timings["transfer"], device)
    return Prediction(splats, {k: round(v, 4) for k, v in timings.items()}, inputs.shape, inputs.unlabelled)


# -- checkpoints ------------------------------------------------------------------------------------
def default_checkpoint() -> Path:
    """Path of the shipped checkpoint ``rfmweb/weights/renderfm.pt`` (may be absent)."""
    return Path(str(importlib.resources.files("rfmweb.weights") / DEFAULT_WEIGHTS))


def save_model(path: str | os.PathLike, model: nn.Module, *, info: dict | None = None, extra: dict | None = None
               ) -> Path:
    """Write ``{"format", "config", "state_dict", "info"}`` (+ ``extra``) atomically; loadable with
    ``torch.load(..., weights_only=True)``."""
    net = getattr(model, "module", model)
    state = {"format": FORMAT, "config": net.config.to_dict(),
             "state_dict": {k: v.detach().cpu().clone() for k, v in net.state_dict().items()},
             "info": dict(info or {}), **(extra or {})}
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_state(path: str | os.PathLike, map_location="cpu") -> dict:
    """A Render-FM file as a dict (``weights_only=True``); any problem is an :class:`InputError`."""
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise InputError("no such Render-FM checkpoint", path) from None
    except Exception as e:  # unpickling / zip errors: not our file (torch's own text would suggest
        # weights_only=False, which would run the file's code)
        raise InputError(f"not a readable Render-FM checkpoint ({type(e).__name__}; a file written by "
                         "train-renderfm is a torch zip archive)", path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"not a Render-FM checkpoint (missing format tag {FORMAT!r})", path)
    return state


def config_of(state: dict) -> RenderFMConfig:
    """The :class:`RenderFMConfig` of a loaded checkpoint (files without later fields get their
    defaults, which keep the behaviour those files were trained with)."""
    return RenderFMConfig(**{**state["config"], "features": tuple(state["config"]["features"])})


def load_model(path: str | os.PathLike | None = None, device=None) -> RenderFM:
    """The model of a checkpoint (default: the shipped one), in eval mode on ``device``."""
    path = default_checkpoint() if path is None else Path(path)
    state = load_state(path)
    try:
        model = RenderFM(config_of(state))
        model.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise InputError(f"Render-FM checkpoint does not match the model ({e})", path) from None
    return model.to(device).eval()


def describe(model: RenderFM) -> dict:
    """Parameter count and configuration, for reports."""
    return {"parameters": int(sum(p.numel() for p in model.parameters())), **model.config.to_dict()}

