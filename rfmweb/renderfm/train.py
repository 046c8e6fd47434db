"""Render-FM training: ``rfmweb train-renderfm --config cfg.toml`` (one process, or ``torchrun`` DDP).

Each step takes ``scans_per_step`` samples (:mod:`.data`; rank ``r`` of ``W`` takes samples
``step * G + k`` with ``k = r, r + W, ...``), runs the network on each scan, decodes the splats,
slices and rasterises them for the scan's views (gsplat on CUDA, the torch twin on a CPU:
:func:`rfmweb.backend.choose_rasterizer`) and compares with the reference ray-marched views:
``0.8 L1 + 0.2 (1 - SSIM)`` (:func:`rfmweb.splats.fit.photometric_loss`), averaged over the scans
of the step (each rank averages its own, DDP averages the ranks: the same gradient as one process
with the whole global batch). AdamW, linear warm-up then cosine decay to ``lr_final``, gradient
clipping; bf16 autocast for the network on CUDA.

Files in ``out`` (rank 0 only, every one written atomically):

- ``checkpoint.pt``: model + optimiser + step + configs, every ``checkpoint_every`` steps and at the
  end; a run resumes from it (after Ctrl-C, ``kill -9`` or a machine change: it loads onto any
  device with ``weights_only=True``);
- ``model.pt``: the model alone (what ``rfmweb prepare --checkpoint`` reads);
- ``log.csv`` (step, loss, l1, ssim, lr, splats, seconds) and ``loss.png``.

The number of steps is the config's; ``time_limit_s`` (only when the user sets it) stops early
after a checkpoint, and a rerun continues.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import time
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from .data import DataConfig, GroundTruth, Sample, SampleDataset
from .decoder import Base
from .model import RenderFM, RenderFMConfig, config_of, decode_output, load_model, load_state, save_model

log = logging.getLogger(__name__)

CSV_FIELDS = ("step", "loss", "l1", "ssim", "lr", "splats", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """The optimisation (``[train]`` in the TOML file).

    Attributes:
        out: output folder. steps: optimisation steps. scans_per_step: global batch, scans.
        lr, lr_final, warmup: AdamW learning rate, linear warm-up steps, cosine decay to ``lr_final``.
        weight_decay, grad_clip: AdamW decay; gradient-norm clip (0: off).
        checkpoint_every, log_every: steps between checkpoints / log lines.
        device: ``"cpu"``, ``"cuda"`` or None (:func:`rfmweb.backend.default_device`).
        bf16: autocast the network in bf16 (None: on CUDA only).
        time_limit_s: stop (after a checkpoint) once this much time has passed; None: never.
        init: a Render-FM model file whose weights a new run starts from (its U-Net must match
            ``[model]``; the decoder's bounds may differ); ignored when the run resumes.
    """

    out: str = "renderfm_run"
    steps: int = 1000
    scans_per_step: int = 2
    lr: float = 1e-3
    lr_final: float = 1e-4
    warmup: int = 50
    weight_decay: float = 1e-4
    grad_clip: float = 1.0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str | None = None
    bf16: bool | None = None
    time_limit_s: float | None = None
    init: str | None = None

    def __post_init__(self) -> None:
        if self.steps < 0 or self.scans_per_step < 1 or self.checkpoint_every < 1 or self.log_every < 1:
            raise InputError("train.steps >= 0, train.scans_per_step >= 1, checkpoint_every and log_every >= 1")
        if not (self.lr > 0 and self.lr_final > 0):
            raise InputError("train.lr and train.lr_final must be > 0")

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        t = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr_final + 0.5 * (self.lr - self.lr_final) * (1 + math.cos(math.pi * t))


@dataclass(frozen=True)
class RunConfig:
    """A whole training run: ``[model]``, ``[data]`` and ``[train]`` sections of the TOML file."""

    model: RenderFMConfig = field(default_factory=RenderFMConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return {"model": self.model.to_dict(), "data": asdict(self.data), "train": asdict(self.train)}


def _section(cls, values: dict, name: str, path):
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise InputError(f"[{name}] has unknown keys {unknown}; known: {sorted(known)}", path)
    try:
        return cls(**values)
    except TypeError as e:
        raise InputError(f"[{name}]: {e}", path) from None


def load_config(path) -> RunConfig:
    """Read a TOML run configuration (every key optional; unknown keys are errors)."""
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise InputError("no such config file", path) from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"not a readable TOML file ({e})", path) from None
    extra = sorted(set(raw) - {"model", "data", "train"})
    if extra:
        raise InputError(f"unknown sections {extra}; use [model], [data], [train]", path)
    return RunConfig(_section(RenderFMConfig, raw.get("model", {}), "model", path),
                     _section(DataConfig, raw.get("data", {}), "data", path),
                     _section(TrainConfig, raw.get("train", {}), "train", path))


class _StepIndices(torch.utils.data.Sampler):
    """This rank's sample indices from step ``start`` on, in order."""

    def __init__(self, start: int, steps: int, per_step: int, rank: int, world: int) -> None:
        self.start, self.steps, self.per_step, self.rank, self.world = start, steps, per_step, rank, world

    def __iter__(self):
        for step in range(self.start, self.steps):
            for k in range(self.rank, self.per_step, self.world):
                yield step * self.per_step + k

    def __len__(self) -> int:
        return max(0, self.steps - self.start) * len(range(self.rank, self.per_step, self.world))


def scan_loss(net, model: RenderFM, sample: Sample, images: torch.Tensor, device, *, rasterizer: str,
              autocast: bool) -> tuple[torch.Tensor, dict]:
    """Loss of one scan's views and its parts (``l1``, ``ssim``, ``splats``).

    ``images``: the scan's ground-truth views ``[V, H, W, 3]`` in [0, 1] (any device; moved to ``device``).
    """
    from ..splats.fit import photometric_terms
    from ..splats.pipeline import camera_tensors
    from ..splats.rasterize import rasterize
    from ..splats.slicing import slice_6d

    x = torch.from_numpy(sample.x)[None].to(device).float()
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
        raw = net(x)[0]
    splats = decode_output(model, raw.float(), Base.from_primed(sample.primed, device))
    viewmats, ks, w, h = camera_tensors(sample.cameras, device)
    g = slice_6d(splats, sample.cameras)
    bg = torch.as_tensor(sample.scene.background, dtype=torch.float32, device=device)
    rgb, _ = rasterize(g.means, g.covars, g.opacities, g.colors, viewmats, ks, w, h, background=bg,
                       backend=rasterizer)
    target = images.to(device)
    loss, l1, s = photometric_terms(rgb, target)
    return loss, {"l1": float(l1.detach()), "ssim": float(s.detach()), "splats": len(splats)}


def _collate(batch):
    return batch


def _worker_init(_: int) -> None:
    torch.set_num_threads(1)       # many workers on a many-core host: one thread each, no contention


def _plot(csv_path: Path, png_path: Path) -> None:
    try:
        import matplotlib
    except ImportError:       # a bare GPU machine: the CSV is the record, plot it later
        log.debug("matplotlib is not installed: no loss.png")
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot([int(r["step"]) for r in rows], [float(r["loss"]) for r in rows], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("0.8 L1 + 0.2 (1 - SSIM)")
    ax.set_title("Render-FM training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_write(png_path, lambda tmp: fig.savefig(tmp, format="png"))
    plt.close(fig)


def _append_csv(path: Path, rows: list[dict]) -> None:
    """Rewrite the CSV with ``rows`` appended (atomically; the log is small)."""
    old = path.read_text() if path.exists() else ",".join(CSV_FIELDS) + "\n"
    new = "".join(",".join(str(r[k]) for k in CSV_FIELDS) + "\n" for r in rows)
    atomic_write(path, lambda tmp: Path(tmp).write_text(old + new))


def _truncate_csv(path: Path, step: int) -> None:
    """Drop log rows after ``step`` (steps redone after a resume are logged again)."""
    if not path.exists():
        return
    lines = path.read_text().splitlines(keepends=True)
    kept = lines[:1] + [ln for ln in lines[1:] if ln.strip() and int(ln.split(",")[0]) <= step]
    atomic_write(path, lambda tmp: Path(tmp).write_text("".join(kept)))


def train(config: RunConfig, *, progress: bool = True) -> dict:
    """Run (or resume) a training run; returns a summary dict (see the module docstring)."""
    from tqdm import tqdm

    from ..backend import choose_rasterizer
    from .. import distributed as dist_

    info = dist_.setup(config.train.device)
    device, tc = info.device, config.train
    if tc.scans_per_step % info.world_size:
        raise InputError(f"train.scans_per_step ({tc.scans_per_step}) must be a multiple of the number of "
                         f"processes ({info.world_size})")
    out = Path(tc.out)
    ckpt_path = out / "checkpoint.pt"
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.data.seed)
    model = RenderFM(config.model).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    start = 0
    if ckpt_path.exists():
        state = load_state(ckpt_path, map_location=device)
        if config_of(state) != config.model:
            raise InputError("the checkpoint's [model] differs from the config's; use another train.out", ckpt_path)
        model.load_state_dict(state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        start = int(state["step"])
        log.info("resuming from step %d (%s)", start, ckpt_path)
    elif tc.init:
        init = load_model(tc.init)
        if init.config.features != config.model.features:
            raise InputError(f"train.init has U-Net features {init.config.features}, [model] "
                             f"{config.model.features}", tc.init)
        model.load_state_dict(init.state_dict())
        log.info("starting from the weights of %s", tc.init)
    if info.is_main:
        _truncate_csv(out / "log.csv", start)
    net = dist_.wrap(model, info)
    rasterizer = choose_rasterizer("auto", device, needs_grad=True)
    autocast = (device.type == "cuda") if tc.bf16 is None else bool(tc.bf16)
    log.info("train-renderfm: %d parameters, steps %d..%d, %d scans/step (%d here), %d views of %d px per scan, "
             "rasteriser %s, bf16 %s, %d process(es) on %s", sum(p.numel() for p in model.parameters()), start,
             tc.steps, tc.scans_per_step, tc.scans_per_step // info.world_size, config.data.views_per_scan,
             config.data.view_size, rasterizer, autocast, info.world_size, device)
    dataset = SampleDataset(config.data, eps=config.model.eps, agp=config.model.agp)
    sampler = _StepIndices(start, tc.steps, tc.scans_per_step, info.rank, info.world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=tc.scans_per_step // info.world_size, sampler=sampler,
                                         num_workers=config.data.workers, collate_fn=_collate, worker_init_fn=_worker_init,
                                         persistent_workers=False, prefetch_factor=2 if config.data.workers else None)
    truth = GroundTruth(config.data)
    rows, window, step, t0 = [], [], start, time.perf_counter()
    bar = tqdm(total=tc.steps, initial=start, desc="train-renderfm", unit="step", disable=not (progress and info.is_main),
               dynamic_ncols=True)

    def checkpoint() -> None:
        if info.is_main:
            extra = {"step": step, "optimizer": optimizer.state_dict(), "run_config": config.to_dict()}
            save_model(ckpt_path, model, info={"step": step}, extra=extra)
            save_model(out / "model.pt", model, info={"step": step, "run_config": config.to_dict()})
            _append_csv(out / "log.csv", rows)
            rows.clear()
            _plot(out / "log.csv", out / "loss.png")
        dist_.barrier(info)

    stopped = False
    for batch in loader:
        for group in optimizer.param_groups:
            group["lr"] = tc.lr_at(step)
        optimizer.zero_grad(set_to_none=True)
        parts = []
        for j, sample in enumerate(batch):
            images = truth.images(sample)
            sync = j == len(batch) - 1 or not info.distributed
            ctx = net.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                loss, part = scan_loss(net, model, sample, images, device, rasterizer=rasterizer, autocast=autocast)
                (loss / len(batch)).backward()
            parts.append({"loss": float(loss.detach()), **part})
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        optimizer.step()
        step += 1
        mean = {k: dist_.all_mean(sum(p[k] for p in parts) / len(parts), info) for k in ("loss", "l1", "ssim", "splats")}
        window.append(mean)
        if step % tc.log_every == 0 or step == tc.steps:
            avg = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            rows.append({"step": step, "loss": round(avg["loss"], 6), "l1": round(avg["l1"], 6),
                         "ssim": round(avg["ssim"], 5), "lr": f"{tc.lr_at(step - 1):.3g}",
                         "splats": int(avg["splats"]), "seconds": round(time.perf_counter() - t0, 2)})
            bar.set_postfix(loss=f"{avg['loss']:.4f}", ssim=f"{avg['ssim']:.3f}")
            window = []
        bar.update(1)
        over = tc.time_limit_s is not None and time.perf_counter() - t0 > tc.time_limit_s
        over = dist_.broadcast_flag(over, info)
        if step % tc.checkpoint_every == 0 or step == tc.steps or over:
            checkpoint()
        if over:
            log.info("train-renderfm: time limit %.0f s reached at step %d; rerun to continue", tc.time_limit_s, step)
            stopped = True
            break
    bar.close()
    if step == start == 0:     # nothing trained (steps = 0): the initial model is the result; every rank
        checkpoint()           # takes part (checkpoint() ends at a barrier)
    dist_.teardown(info)
    return {"step": step, "steps": tc.steps, "stopped_by_time_limit": stopped, "out": str(out),
            "seconds": round(time.perf_counter() - t0, 2), "world_size": info.world_size}

