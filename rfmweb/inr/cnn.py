"""The CNN baseline the Neumours INR is compared with: an nnU-Net-style 3-D U-Net segmenter.

It lives beside the INR (``rfmweb.inr``) because it exists to be compared with it
(``rfmweb evaluate-inr``); the network is the reusable :class:`rfmweb.models.unet.UNet3D`.

Recipe (:class:`CNNTrainConfig` defaults), nnU-Net's where a CPU budget allows:

- input: the 4 modalities z-scored inside the brain mask (the INR's input contract,
  :func:`~rfmweb.models.inr.normalise_modalities`), each case cropped to its brain bounding box
  (nnU-Net's "crop to non-zero");
- patches of ``patch`` voxels, ``batch`` per step; a third of them (nnU-Net's
  ``oversample_foreground_percent = 0.33``) centred on a random tumour voxel, the rest anywhere in
  the cropped case; random flips along each axis (the mirroring part of nnU-Net's augmentation);
- loss: cross-entropy + (1 - soft Dice over the three tumour classes, pooled over the batch), with
  deep supervision (weights 1, 1/2, 1/4, ... normalised; targets subsampled by taking every
  ``2^k``-th voxel, which is where a stride-2 convolution is centred);
- optimiser: AdamW, lr 1e-3 with nnU-Net's poly decay ``(1 - step / steps)^0.9``. nnU-Net's SGD
  (lr 1e-2, Nesterov momentum 0.99) is tuned for 250,000 steps; with the few hundred a CPU run
  affords, Adam reaches a lower loss (``optimizer="sgd"`` keeps nnU-Net's choice);
- precision: fp32, or bf16 autocast for the network (``precision="bf16"``; the loss stays fp32):
  about 2x faster per step on a CPU with AMX (0.57 -> 0.30 s per step of 2 x 48^3 patches on 2
  cores, BENCHMARKS.md) and on a GPU;
- inference (:func:`segment_cnn`): sliding windows of the training patch size at half-patch
  steps on the brain bounding box, logits weighted by a Gaussian (sigma = patch / 8, nnU-Net's
  importance map), argmax; background outside the brain. No test-time mirroring. Precision
  ``"auto"`` as the INR's (:func:`rfmweb.inr.infer.resolve_precision`).

Run folder: ``checkpoint.pt`` (model + optimiser + step; resumable), ``model.pt`` (weights),
``log.csv``, ``config.json``, ``summary.json``. Checkpoints are written atomically and read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from ..io.atomic import atomic_write, read_log_rows, write_csv
from ..models.inr import count_parameters, normalise_modalities
from ..models.unet import UNet3D, UNetConfig
from ..volume import Volume
from .denoise import _bbox
from .train import step_seed

log = logging.getLogger(__name__)

FORMAT = "rfmweb.unet-seg/1"
OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("fp32", "bf16")
LOG_COLUMNS = ("step", "lr", "loss", "step_s", "elapsed_s")


@dataclass
class CNNTrainConfig:
    """A CNN training run.

    Attributes:
        cases: folder of labelled BraTS-style training cases.
        out: run folder.
        steps: optimisation steps (the poly schedule spans them).
        patch: patch edge in voxels (also the inference window).
        batch: patches per step.
        features: U-Net channels per stage (default 5.65 M parameters, 21.6x the INR's 262,020).
        foreground_fraction: fraction of patches centred on a tumour voxel.
        optimizer: ``"adamw"`` or ``"sgd"`` (Nesterov, momentum 0.99).
        lr, weight_decay: initial learning rate (poly decay), decoupled weight decay.
        deep_supervision: losses on the coarser decoder outputs too.
        precision: ``"fp32"`` or ``"bf16"`` (autocast for the network's forward pass).
        checkpoint_every, log_every: intervals in steps.
        seed, device, resume, progress: as :class:`rfmweb.inr.train.TrainConfig`.
        init: a CNN model file whose weights a new run starts from (same ``features``), with a fresh
            optimiser and schedule: training continued past the end of an earlier run's schedule.
            Ignored when the run resumes (the checkpoint holds the weights).
    """

    cases: str
    out: str
    steps: int = 700
    patch: int = 48
    batch: int = 2
    features: tuple[int, ...] = (16, 32, 64, 128, 256)
    foreground_fraction: float = 0.33
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 3e-5
    deep_supervision: bool = True
    precision: str = "fp32"
    checkpoint_every: int = 50
    log_every: int = 10
    seed: int = 0
    device: str | None = None
    resume: bool = False
    progress: bool = True
    init: str | None = None

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"--precision must be one of {PRECISIONS}, got {self.precision!r}")
        for name in ("steps", "patch", "batch", "checkpoint_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if not 0.0 <= self.foreground_fraction <= 1.0:
            raise InputError(f"--foreground-fraction must lie in 0..1, got {self.foreground_fraction}")
        if self.lr <= 0 or self.weight_decay < 0:
            raise InputError("--lr must be > 0 and weight decay >= 0")
        if self.init and not Path(self.init).is_file():
            raise InputError("no such --init CNN file", self.init)
        UNetConfig(features=tuple(self.features))


def poly_lr(step: int, total: int, initial: float, exponent: float = 0.9) -> float:
    """nnU-Net's poly schedule ``initial * (1 - step / total)^exponent`` at 0-based ``step``.

    Example:
        >>> poly_lr(0, 100, 0.01), round(poly_lr(50, 100, 0.01), 6)
        (0.01, 0.005359)
    """
    return initial * (1.0 - min(step, total) / total) ** exponent


# ---------------------------------------------------------------- data


@dataclass(eq=False)
class CroppedCase:
    """A normalised case cropped to its brain bounding box.

    Attributes:
        image: ``[4, x, y, z]`` float32 z-scored modalities.
        labels: ``[x, y, z]`` int64 (or ``None`` for an unlabelled case).
        box: the crop in the original ``[X, Y, Z]`` grid.
        brain: ``[x, y, z]`` bool brain mask.
    """

    name: str
    image: torch.Tensor
    labels: torch.Tensor | None
    box: tuple[slice, slice, slice]
    brain: np.ndarray


def crop_case(data: np.ndarray, labels: np.ndarray | None = None, name: str = "") -> CroppedCase:
    """Normalise ``data [4, X, Y, Z]`` (:func:`~rfmweb.models.inr.normalise_modalities`) and crop it
    (and ``labels [X, Y, Z]``) to the bounding box of the brain and tumour."""
    if data.ndim != 4 or data.shape[0] != 4:
        raise InputError(f"needs 4 modalities [4, X, Y, Z] (T1n, T1c, T2w, FLAIR), got shape {data.shape}",
                         name or None)
    norm, mask = normalise_modalities(data)
    if labels is not None:
        mask = mask | (labels > 0)
    box = _bbox(mask)
    cropped = None if labels is None else torch.from_numpy(labels[box].astype(np.int64))
    return CroppedCase(name, torch.from_numpy(np.ascontiguousarray(norm[(slice(None),) + box])), cropped,
                       box, mask[box])


def sample_patch(case: CroppedCase, patch: int, foreground: bool, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """One ``[4, p, p, p]`` image patch and its ``[p, p, p]`` labels (zero / background outside the
    crop). A foreground patch is centred on a random tumour voxel (when the case has any)."""
    shape = np.array(case.labels.shape)
    tumour = None
    if foreground:
        idx = torch.nonzero(case.labels > 0)
        tumour = idx[int(rng.integers(len(idx)))].numpy() if len(idx) else None
    if tumour is not None:
        start = tumour - patch // 2
    else:
        start = np.array([int(rng.integers(min(0, n - patch), max(0, n - patch) + 1)) for n in shape])
    lo = np.maximum(start, 0)
    hi = np.minimum(start + patch, shape)
    src = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi))
    dst = tuple(slice(int(a - s), int(b - s)) for a, b, s in zip(lo, hi, start))
    image = torch.zeros(4, patch, patch, patch)
    labels = torch.zeros(patch, patch, patch, dtype=torch.int64)
    image[(slice(None),) + dst] = case.image[(slice(None),) + src]
    labels[dst] = case.labels[src]
    return image, labels


def draw_batch(cases: list[CroppedCase], config: CNNTrainConfig, rng: np.random.Generator
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[B, 4, p, p, p]`` images and ``[B, p, p, p]`` labels with random flips."""
    images, labels = [], []
    for _ in range(config.batch):
        case = cases[int(rng.integers(len(cases)))]
        img, lab = sample_patch(case, config.patch, bool(rng.random() < config.foreground_fraction), rng)
        flips = [a for a in range(3) if rng.random() < 0.5]
        if flips:
            img, lab = img.flip([a + 1 for a in flips]), lab.flip(flips)
        images.append(img)
        labels.append(lab)
    return torch.stack(images), torch.stack(labels)


# ---------------------------------------------------------------- loss


def ce_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``CE + (1 - mean soft Dice over classes 1..C-1)``, Dice pooled over the batch (nnU-Net's
    ``DC_and_CE_loss`` with batch Dice, background excluded).

    Args:
        logits: ``[B, C, D, H, W]`` (bf16 from an autocast forward pass is scored in fp32).
        target: ``[B, D, H, W]`` int64 in ``0..C-1``.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, target)
    probs = torch.softmax(logits, dim=1)[:, 1:]
    onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probs.dtype)
    dims = (0, 2, 3, 4)
    dice = (2 * (probs * onehot).sum(dims) + eps) / (probs.sum(dims) + onehot.sum(dims) + eps)
    return ce + (1.0 - dice.mean())


def deep_supervision_loss(outputs: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """:func:`ce_dice_loss` over deep-supervision outputs (finest first), weights ``2^-k`` normalised;
    the target of output ``k`` is every ``2^k``-th voxel of ``target``."""
    outputs = outputs if isinstance(outputs, list) else [outputs]
    weights = torch.tensor([0.5 ** k for k in range(len(outputs))])
    weights = weights / weights.sum()
    total = 0.0
    for k, (out, w) in enumerate(zip(outputs, weights)):
        s = 2 ** k
        total = total + w * ce_dice_loss(out, target[:, ::s, ::s, ::s])
    return total


# ---------------------------------------------------------------- checkpoints


def save_cnn_checkpoint(path: str | os.PathLike, model: UNet3D, *, patch: int, info: dict | None = None,
                        step: int | None = None, optimizer: torch.optim.Optimizer | None = None,
                        train_config: dict | None = None) -> Path:
    """Write a CNN model file (or, with ``step``/``optimizer``, a training checkpoint) atomically."""
    state = {"format": FORMAT, "model_config": model.config.to_dict(), "patch": int(patch),
             "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
             "info": json.loads(json.dumps(info or {}, default=str))}
    if step is not None:
        state["step"] = int(step)
    if optimizer is not None:
        state["optimizer"] = optimizer.state_dict()
    if train_config is not None:
        state["train_config"] = json.loads(json.dumps(train_config, default=str))
    return atomic_write(path, lambda tmp: torch.save(state, tmp))


def load_cnn_checkpoint(path: str | os.PathLike) -> dict:
    """Read a CNN file with ``torch.load(weights_only=True)``; InputError names the file when it is
    missing, unreadable or not a CNN checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise InputError("no such CNN checkpoint file", path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt zip, pickled code, truncated file
        raise InputError(f"not a readable checkpoint ({type(exc).__name__})", path) from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise InputError(f"not a CNN checkpoint (expected format {FORMAT!r})", path)
    return state


def load_cnn(path: str | os.PathLike, device: str | torch.device = "cpu") -> UNet3D:
    """A :class:`UNet3D` in eval mode from a CNN model file or training checkpoint; its training
    patch size is ``model.patch`` and the checkpoint's ``info`` is ``model.info``."""
    state = load_cnn_checkpoint(path)
    try:
        cfg = dict(state["model_config"])
        model = UNet3D(UNetConfig(**cfg))
        model.load_state_dict(state["state_dict"])
    except (TypeError, KeyError, RuntimeError) as exc:
        raise InputError(f"checkpoint does not match the U-Net ({str(exc).splitlines()[0][:200]})", path) from None
    model.patch = int(state["patch"])
    model.info = dict(state.get("info", {}))
    return model.to(device).eval()


# ---------------------------------------------------------------- inference


def gaussian_importance(patch: int, sigma_scale: float = 1.0 / 8) -> torch.Tensor:
    """``[p, p, p]`` Gaussian window (sigma = ``sigma_scale * p``) with maximum 1 and no zeros
    (nnU-Net's importance map for blending sliding-window logits)."""
    x = torch.arange(patch, dtype=torch.float32) - (patch - 1) / 2
    g = torch.exp(-0.5 * (x / (sigma_scale * patch)) ** 2)
    w = g[:, None, None] * g[None, :, None] * g[None, None, :]
    w = w / w.max()
    return w.clamp_min(float(w[w > 0].min()))


def window_starts(n: int, patch: int, step_fraction: float) -> list[int]:
    """Start indices of sliding windows covering ``0..n`` (``n >= patch``) at steps of at most
    ``step_fraction * patch``, spread evenly.

    Example:
        >>> window_starts(100, 48, 0.5)
        [0, 17, 35, 52]
    """
    if n <= patch:
        return [0]
    count = int(np.ceil((n - patch) / (step_fraction * patch))) + 1
    return [int(round(v)) for v in np.linspace(0, n - patch, count)]


@torch.inference_mode()
def segment_cnn(model: UNet3D, volume: Volume | np.ndarray, *, patch: int | None = None,
                step_fraction: float = 0.5, device: str | torch.device | None = None, precision: str = "auto"
                ) -> np.ndarray:
    """Sliding-window segmentation of a case by a trained :class:`UNet3D` (4 in, 4 class logits out).

    Args:
        model: the network (eval mode; ``model.patch`` is the default window).
        volume: a 4-modality :class:`Volume` or its ``[4, X, Y, Z]`` array (0 outside the brain).
        patch: window edge in voxels.
        step_fraction: window step as a fraction of the window (0.5: nnU-Net's overlap).
        device: where to run (default :func:`rfmweb.backend.default_device`).
        precision: ``"auto"`` (bf16 where fast), ``"fp32"`` or ``"bf16"`` (autocast of the network).

    Returns:
        ``[X, Y, Z]`` uint8 labels (0 background, 1 NCR, 2 ED, 3 ET); 0 outside the brain.
    """
    from ..backend import default_device
    from .infer import resolve_precision

    if not 0 < step_fraction <= 1:
        raise InputError(f"step_fraction must lie in (0, 1], got {step_fraction}")
    device = default_device() if device is None else torch.device(device)
    bf16 = resolve_precision(precision, device) == "bf16"
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume, np.float32)
    case = crop_case(data, name=getattr(volume, "name", ""))
    p = int(patch or getattr(model, "patch", 48))
    model = model.to(device).eval()
    image = case.image
    shape = tuple(image.shape[1:])
    padded = tuple(max(n, p) for n in shape)
    if padded != shape:
        image = F.pad(image, (0, padded[2] - shape[2], 0, padded[1] - shape[1], 0, padded[0] - shape[0]))
    weight = gaussian_importance(p).to(device)
    k = model.config.out_channels
    logits = torch.zeros((k,) + padded, device=device)
    norm = torch.zeros(padded, device=device)
    image = image.to(device)
    for i in window_starts(padded[0], p, step_fraction):
        for j in window_starts(padded[1], p, step_fraction):
            for m in window_starts(padded[2], p, step_fraction):
                win = (slice(i, i + p), slice(j, j + p), slice(m, m + p))
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = model(image[(slice(None),) + win][None])[0].float()
                logits[(slice(None),) + win] += out * weight
                norm[win] += weight
    labels_crop = (logits / norm).argmax(0)[:shape[0], :shape[1], :shape[2]].cpu().numpy().astype(np.uint8)
    labels_crop[~case.brain] = 0
    labels = np.zeros(data.shape[1:], np.uint8)
    labels[case.box] = labels_crop
    return labels


# ---------------------------------------------------------------- training


def _load_cropped(folder: Path) -> CroppedCase:
    from ..io.brats import load_brats_case

    volume = load_brats_case(folder, require_seg=True)
    return crop_case(volume.data, volume.labels, volume.name)


def _load_init(model: UNet3D, path: str | os.PathLike) -> int:
    """Copy a CNN file's weights into ``model``; returns how many steps they had been trained in all.

    Raises:
        InputError: naming the file, when its U-Net differs.
    """
    state = load_cnn_checkpoint(path)
    try:
        model.load_state_dict(state["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise InputError(f"--init file's U-Net differs from this run's --features "
                         f"({str(exc).splitlines()[0][:200]})", path) from None
    info = state.get("info", {})
    return int(info.get("steps", 0)) + int(info.get("steps_before", 0))


def train_cnn(config: CNNTrainConfig) -> dict:
    """Train (or resume) the CNN baseline; returns the run summary.

    Raises:
        InputError: bad configuration, no cases, or a run folder holding a checkpoint without ``resume``.
    """
    from tqdm.auto import tqdm

    from ..backend import default_device
    from ..data.cohort import find_cases

    config.validate()
    out = Path(config.out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not config.resume:
        raise InputError("run folder already holds a checkpoint.pt; pass --resume or choose another --out", out)
    folders = find_cases(config.cases)
    device = torch.device(config.device) if config.device else default_device()
    cases = [_load_cropped(f) for f in tqdm(folders, desc="load cases", unit="case", disable=not config.progress)]
    torch.manual_seed(config.seed)
    model = UNet3D(UNetConfig(in_channels=4, out_channels=4, features=tuple(config.features),
                              deep_supervision=config.deep_supervision)).to(device)
    if config.optimizer == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=0.99, nesterov=True,
                              weight_decay=config.weight_decay)
    start, elapsed, before = 0, 0.0, 0
    if config.resume and ckpt_path.exists():
        state = load_cnn_checkpoint(ckpt_path)
        if state.get("train_config", {}).get("optimizer") != config.optimizer:
            raise InputError(f"checkpoint was trained with --optimizer "
                             f"{state.get('train_config', {}).get('optimizer')}, not {config.optimizer}", ckpt_path)
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        start, elapsed = int(state["step"]), float(state["info"].get("elapsed_s", 0.0))
        before = int(state["info"].get("steps_before", 0))
        log.info("resuming %s at step %d of %d", ckpt_path, start, config.steps)
    elif config.init:
        before = _load_init(model, config.init)
        log.info("starting from the weights of %s (%d steps trained)", config.init, before)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
    cfg.update(parameters=count_parameters(model), train_cases=[f.name for f in folders], device=str(device))
    text = json.dumps(cfg, indent=1)
    atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))
    rows = read_log_rows(out / "log.csv", start)
    meta = {"cases_dir": str(config.cases), "train_cases": len(folders), "device": str(device),
            "threads": torch.get_num_threads(), "torch": str(torch.__version__), "optimizer": config.optimizer,
            "precision": config.precision, "steps_before": before}

    def checkpoint(step: int) -> None:
        info = {**meta, "steps": step, "elapsed_s": round(elapsed, 1)}
        save_cnn_checkpoint(ckpt_path, model, patch=config.patch, info=info, step=step, optimizer=opt,
                            train_config=cfg)
        save_cnn_checkpoint(out / "model.pt", model, patch=config.patch, info=info)
        write_csv(out / "log.csv", rows, LOG_COLUMNS)

    bar = tqdm(total=config.steps, initial=start, desc="train-cnn", unit="step", disable=not config.progress)
    losses: list[float] = []
    model.train()
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        lr = poly_lr(step, config.steps, config.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        rng = np.random.default_rng(step_seed(config.seed, 0, step))
        images, labels = draw_batch(cases, config, rng)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"):
            outputs = model(images.to(device))
        loss = deep_supervision_loss(outputs, labels.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 12.0)      # nnU-Net's clip
        opt.step()
        dt = time.perf_counter() - t0
        elapsed += dt
        losses.append(loss.item())
        done = step + 1
        bar.update(1)
        if done % config.log_every == 0 or done == config.steps:
            rows.append({"step": done, "lr": f"{lr:.6g}", "loss": f"{np.mean(losses):.5f}", "step_s": f"{dt:.3f}",
                         "elapsed_s": f"{elapsed:.1f}"})
            bar.set_postfix(loss=f"{np.mean(losses):.4f}")
            losses.clear()
        if done % config.checkpoint_every == 0 or done == config.steps:
            checkpoint(done)
    bar.close()
    summary = {"steps": config.steps, "train_s": round(elapsed, 1), "parameters": count_parameters(model),
               "s_per_step": round(elapsed / max(config.steps, 1), 3), "device": str(device),
               "precision": config.precision,
               "threads": torch.get_num_threads(), "final_loss": rows[-1]["loss"] if rows else None}
    text = json.dumps(summary, indent=1)
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    return summary
