"""Training the Neumours INR on a cohort of BraTS-style cases (the recipe of the Neumours paper).

Recipe (:class:`TrainConfig` defaults):

- one INR for the whole training cohort: each coordinate of a batch draws its case, then a voxel
  (10 % from the tumour, the rest from the brain; :class:`~rfmweb.inr.sampling.CaseBank`);
  coordinates are normalised per case;
- loss ``0.5 * CE(weights 2, 1, 1, 1) + 0.5 * (1 - mean soft Dice over the 4 classes)``, the soft
  Dice pooled over the micro-batch ("batch Dice"), :func:`neumours_loss`;
- 16,384 coordinates per step as 4 micro-batches of 4,096 with gradient accumulation;
- learning rate: linear warm-up over 100 steps to 1e-3, then cosine to 5e-4 at the last step
  (:func:`learning_rate`); gradient norm clipped at 1.0;
- optimisers: AdamW (weight decay 0.01 on weight matrices, none on biases), or Muon
  (``torch.optim.Muon``, Newton-Schulz orthogonalised momentum) on the 2-D hidden weight matrices
  (the three 256 x 256 layers) with AdamW on everything else (the two input layers, the output
  layer and all biases, as Muon's authors recommend); Muon's step is scaled to match AdamW's update
  RMS (``adjust_lr_fn="match_rms_adamw"``), so one schedule serves both.

Scale-out: under ``torchrun`` every rank holds the cohort, draws its own coordinates (seeded by
step and rank) and computes its share of the 4 micro-batches (rank r takes micro-batches
r, r + W, ...; with more ranks than micro-batches each takes one and the step grows);
DistributedDataParallel averages the gradients. Only rank 0 validates and writes files.

Resumable: ``checkpoint.pt`` (model, optimiser states, step, elapsed time) is written atomically
every ``checkpoint_every`` steps and at the end; batches are seeded by ``(seed, rank, step)``, so a
resumed run draws exactly the batches the uninterrupted run would have.

Run folder: ``checkpoint.pt`` (training state), ``model.pt`` (weights for ``rfmweb segment``),
``log.csv``, ``curves.png`` (loss and validation Dice), ``config.json``, ``summary.json``.
"""

from __future__ import annotations

import contextlib
import csv
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .. import distributed
from ..errors import InputError
from ..io.atomic import atomic_write, read_log_rows, write_csv
from ..models.inr import INRConfig, NeumoursINR, count_parameters
from .checkpoint import load_checkpoint, save_checkpoint

log = logging.getLogger(__name__)

OPTIMIZERS = ("adamw", "muon")
LOG_COLUMNS = ("step", "lr", "loss", "ce", "dice_loss", "grad_norm", "step_s", "elapsed_s",
               "val_WT", "val_TC", "val_ET")


@dataclass
class TrainConfig:
    """Everything a training run needs (defaults: the Neumours recipe).

    Attributes:
        cases: folder of training case folders (BraTS layout, with ``-seg``).
        out: run folder.
        val: folder of validation cases (default: the first ``max_val_cases`` training cases, and
            the curve then shows training-case Dice).
        optimizer: ``"adamw"`` or ``"muon"``.
        steps: optimisation steps (the cosine schedule spans them).
        batch: coordinates per step; ``micro_batches``: gradient-accumulation chunks of it.
        foreground_ratio: fraction of coordinates drawn from tumour voxels.
        lr, final_lr, warmup: the schedule of :func:`learning_rate`.
        weight_decay: decoupled weight decay on weight matrices.
        grad_clip: maximum global gradient norm.
        class_weights: cross-entropy weights of background, NCR, ED, ET.
        ce_weight: weight of the cross-entropy (the soft-Dice term gets ``1 - ce_weight``).
        checkpoint_every, val_every, log_every: intervals in steps.
        max_val_cases: validation cases evaluated (dense inference each); 0 = no validation.
        seed: initialisation and sampling seed.
        precision: ``"fp32"`` or ``"bf16"`` (autocast for the forward pass).
        device: ``"cpu"``, ``"cuda"`` or ``None`` (:func:`rfmweb.backend.default_device`).
        resume: continue from ``out/checkpoint.pt`` when it exists.
        progress: tqdm progress bar (rank 0).
        plots: redraw ``curves.png`` at every checkpoint.
    """

    cases: str
    out: str
    val: str | None = None
    optimizer: str = "adamw"
    steps: int = 10_000
    batch: int = 16_384
    micro_batches: int = 4
    foreground_ratio: float = 0.1
    lr: float = 1e-3
    final_lr: float = 5e-4
    warmup: int = 100
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    class_weights: tuple[float, ...] = (2.0, 1.0, 1.0, 1.0)
    ce_weight: float = 0.5
    checkpoint_every: int = 250
    val_every: int = 250
    log_every: int = 10
    max_val_cases: int = 4
    seed: int = 0
    precision: str = "fp32"
    device: str | None = None
    resume: bool = False
    progress: bool = True
    plots: bool = True
    model: dict = field(default_factory=dict)

    def validate(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise InputError(f"--optimizer must be one of {OPTIMIZERS}, got {self.optimizer!r}")
        if self.precision not in ("fp32", "bf16"):
            raise InputError(f"--precision must be fp32 or bf16, got {self.precision!r}")
        if self.max_val_cases < 0:
            raise InputError(f"--max-val-cases must be >= 0, got {self.max_val_cases}")
        for name in ("steps", "batch", "micro_batches", "checkpoint_every", "val_every", "log_every"):
            if int(getattr(self, name)) < 1:
                raise InputError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.batch % self.micro_batches:
            raise InputError(f"--batch {self.batch} must be a multiple of --micro-batches {self.micro_batches}")
        if not 0 <= self.foreground_ratio <= 1:
            raise InputError(f"foreground ratio must lie in 0..1, got {self.foreground_ratio}")
        if self.lr <= 0 or self.final_lr < 0 or self.warmup < 0:
            raise InputError("learning rates must be > 0 and warm-up >= 0")
        if len(self.class_weights) != 4:
            raise InputError(f"class_weights needs 4 values, got {self.class_weights}")


def learning_rate(step: int, total: int, peak: float = 1e-3, final: float = 5e-4, warmup: int = 100) -> float:
    """Learning rate at (0-based) ``step``: linear warm-up to ``peak`` over ``warmup`` steps, then
    a cosine from ``peak`` down to ``final`` at step ``total - 1``.

    Example:
        >>> round(learning_rate(0, 1000), 6), learning_rate(99, 1000), learning_rate(999, 1000)
        (1e-05, 0.001, 0.0005)
    """
    if step < warmup:
        return peak * (step + 1) / warmup
    t = min(max((step - warmup) / max(total - 1 - warmup, 1), 0.0), 1.0)
    return final + 0.5 * (peak - final) * (1.0 + math.cos(math.pi * t))


def neumours_loss(logits: torch.Tensor, targets: torch.Tensor, class_weights: torch.Tensor,
                  ce_weight: float = 0.5, eps: float = 1e-5) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Weighted cross-entropy plus soft-Dice loss.

    ``ce_weight * CE(logits, targets; class_weights) + (1 - ce_weight) * (1 - mean_c Dice_c)`` with
    ``Dice_c = (2 sum_i p_ic g_ic + eps) / (sum_i p_ic + sum_i g_ic + eps)`` over the batch
    (``p`` softmax probabilities, ``g`` one-hot targets), averaged over all classes.

    Args:
        logits: ``[N, C]`` (computed in float32 whatever the autocast dtype).
        targets: ``[N]`` int64 in ``0..C-1``.
        class_weights: ``[C]``.

    Returns:
        ``(loss, ce, dice_loss)`` scalars.
    """
    logits = logits.float()
    ce = F.cross_entropy(logits, targets, weight=class_weights)
    probs = torch.softmax(logits, dim=1)
    onehot = F.one_hot(targets, logits.shape[1]).to(probs.dtype)
    inter = (probs * onehot).sum(0)
    denom = probs.sum(0) + onehot.sum(0)
    dice_loss = 1.0 - ((2.0 * inter + eps) / (denom + eps)).mean()
    return ce_weight * ce + (1.0 - ce_weight) * dice_loss, ce, dice_loss


def build_optimizers(model: NeumoursINR, name: str, lr: float, weight_decay: float) -> list[torch.optim.Optimizer]:
    """AdamW on everything, or Muon on the hidden 2-D weights + AdamW on the rest.

    Biases never get weight decay.
    """
    if name not in OPTIMIZERS:
        raise InputError(f"optimizer must be one of {OPTIMIZERS}, got {name!r}")
    hidden = [layer.weight for layer in model.hidden] if name == "muon" else []
    hidden_ids = {id(p) for p in hidden}
    rest = [p for p in model.parameters() if id(p) not in hidden_ids]
    groups = [{"params": [p for p in rest if p.ndim >= 2], "weight_decay": weight_decay},
              {"params": [p for p in rest if p.ndim < 2], "weight_decay": 0.0}]
    opts: list[torch.optim.Optimizer] = [torch.optim.AdamW(groups, lr=lr)]
    if hidden:
        opts.insert(0, torch.optim.Muon(hidden, lr=lr, weight_decay=weight_decay, adjust_lr_fn="match_rms_adamw"))
    return opts


def step_seed(seed: int, rank: int, step: int) -> int:
    """The sampling seed of one step of one rank (independent streams, reproducible on resume)."""
    return int(np.random.SeedSequence([int(seed), int(rank), int(step)]).generate_state(1, np.uint64)[0] >> 1)


def evaluate(model: NeumoursINR, volumes: list, device: torch.device, denoise: bool = False,
             with_hd95: bool = False, precision: str = "auto") -> dict[str, float]:
    """Mean BraTS scores of ``model`` over labelled volumes (dense inference of each)."""
    from ..metrics.segmentation import BratsMetric
    from .denoise import denoise_labels
    from .infer import segment_volume

    was_training = model.training
    metric = BratsMetric(with_hd95=with_hd95)
    for vol in volumes:
        pred = segment_volume(model, vol, device=device, precision=precision)
        if denoise:
            pred = denoise_labels(pred, spacing=vol.spacing)
        metric.update(pred, vol.labels, vol.spacing, case=vol.name)
    model.train(was_training)
    return metric.aggregate()


def _append_log(path: Path, row: dict) -> None:
    with path.open("a", newline="") as f:
        csv.DictWriter(f, LOG_COLUMNS).writerow(row)


def plot_curves(rows: list[dict], path: Path, title: str = "") -> None:
    """Loss (log scale) and validation Dice against step, as a PNG (matplotlib, Agg)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key):
        pts = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
        return ([p[0] for p in pts], [p[1] for p in pts]) if pts else ([], [])

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, style in (("loss", "-"), ("ce", ":"), ("dice_loss", "--")):
        x, y = series(key)
        if x:
            ax1.plot(x, y, style, label=key)
    ax1.set_yscale("log")
    ax1.set_xlabel("step")
    ax1.set_title("training loss")
    ax1.legend()
    for key in ("val_WT", "val_TC", "val_ET"):
        x, y = series(key)
        if x:
            ax2.plot(x, y, "o-", ms=3, label=key.removeprefix("val_"))
    ax2.set_ylim(0, 1)
    ax2.set_xlabel("step")
    ax2.set_title("validation Dice (raw)")
    if ax2.get_lines():
        ax2.legend()
    ax2.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)


def train(config: TrainConfig) -> dict:
    """Train (or resume training) a Neumours INR; returns the run summary (rank 0; others: {}).

    Raises:
        InputError: bad configuration, no cases, or a run folder that already holds a checkpoint
            without ``resume``.
    """
    from ..data.cohort import find_cases

    config.validate()
    out = Path(config.out)
    ckpt_path = out / "checkpoint.pt"
    if ckpt_path.exists() and not config.resume:
        raise InputError("run folder already holds a checkpoint.pt; pass --resume to continue it or choose "
                         "another --out", out)
    train_folders = find_cases(config.cases)
    val_folders = find_cases(config.val)[:config.max_val_cases] if config.val else \
        train_folders[:config.max_val_cases]
    info = distributed.setup(config.device)
    try:
        return _train(config, info, out, ckpt_path, train_folders, val_folders)
    finally:
        distributed.teardown(info)


#: What a resumed run must share with the run it continues: the steps already taken used these (the
#: number of steps may grow; the cosine schedule then stretches over the new number).
SAME_ON_RESUME = ("cases", "optimizer", "batch", "micro_batches", "foreground_ratio", "lr", "final_lr", "warmup",
                  "weight_decay", "grad_clip", "class_weights", "ce_weight", "seed", "precision", "model")


def _check_resume(state: dict, config: TrainConfig, ckpt_path: Path) -> None:
    """Refuse to resume ``state`` (a training checkpoint) with settings other than the ones its steps were
    taken with (:data:`SAME_ON_RESUME`), or with fewer steps than it has taken."""
    old = state.get("train_config", {})
    now = json.loads(json.dumps(asdict(config)))                          # tuples as lists, like the saved one

    def same(key: str) -> bool:
        if key == "cases":
            return Path(str(old.get(key))).resolve() == Path(config.cases).resolve()
        return old.get(key) == now[key]

    differ = [f"--{k.replace('_', '-')} {old.get(k)!r} (now {now[k]!r})" for k in SAME_ON_RESUME if not same(k)]
    if differ:
        raise InputError(f"cannot resume: the checkpoint's steps were taken with {'; '.join(differ)}; resume with "
                         "the same settings, or train afresh into another --out", ckpt_path)
    if int(state["step"]) > config.steps:
        raise InputError(f"cannot resume: the checkpoint has taken {int(state['step'])} steps, more than --steps "
                         f"{config.steps}", ckpt_path)


def _train(config: TrainConfig, info: distributed.DistInfo, out: Path, ckpt_path: Path, train_folders: list[Path],
           val_folders: list[Path]) -> dict:
    from tqdm.auto import tqdm

    from ..io.brats import load_brats_case
    from .sampling import CaseBank

    device = info.device
    main = info.is_main
    bank = CaseBank.from_folders(train_folders, config.foreground_ratio, progress=config.progress and main,
                                 device=device)
    val_volumes = [load_brats_case(f, require_seg=True) for f in val_folders] if main else []
    torch.manual_seed(config.seed)
    model = NeumoursINR(INRConfig(**config.model)).to(device)
    optimizers = build_optimizers(model, config.optimizer, config.lr, config.weight_decay)
    start, elapsed = 0, 0.0
    if config.resume and ckpt_path.exists():
        state = load_checkpoint(ckpt_path, map_location=device)
        _check_resume(state, config, ckpt_path)
        model.load_state_dict(state["state_dict"])
        for opt, s in zip(optimizers, state["optimizers"]):
            opt.load_state_dict(s)
        start = int(state["step"])
        elapsed = float(state.get("info", {}).get("elapsed_s", 0.0))
        if main:
            log.info("resuming %s at step %d of %d", ckpt_path, start, config.steps)
    net = distributed.wrap(model, info)
    weights = torch.tensor(config.class_weights, dtype=torch.float32, device=device)
    micro = config.batch // config.micro_batches
    n_micro = max(config.micro_batches, info.world_size)
    mine = [m for m in range(n_micro) if m % info.world_size == info.rank]
    scale = info.world_size / n_micro            # DDP averages over ranks; we want the mean over micro-batches
    log_path = out / "log.csv"
    rows = read_log_rows(log_path, start) if main else []
    if main:
        out.mkdir(parents=True, exist_ok=True)
        cfg = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
        cfg.update(world_size=info.world_size, device=str(device), parameters=count_parameters(model),
                   train_cases=[f.name for f in train_folders], val_cases=[f.name for f in val_folders])
        text = json.dumps(cfg, indent=1)
        atomic_write(out / "config.json", lambda tmp: Path(tmp).write_text(text))
        write_csv(log_path, rows, LOG_COLUMNS)
    meta = {"optimizer": config.optimizer, "precision": config.precision, "device": str(device),
            "world_size": info.world_size, "train_cases": len(train_folders),
            "cases_dir": str(config.cases), "torch": str(torch.__version__), "frame": bank.frame}
    val_label = "val" if config.val else "train (no --val)"
    last_val: dict = {}

    def checkpoint(step: int) -> None:
        meta_now = {**meta, "steps": step, "elapsed_s": round(elapsed, 1),
                    **{f"val_{k}": round(v, 4) for k, v in last_val.items()}}
        tc = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()}
        save_checkpoint(ckpt_path, model, info=meta_now, step=step, optimizers=optimizers, train_config=tc)
        save_checkpoint(out / "model.pt", model, info=meta_now)
        write_csv(log_path, rows, LOG_COLUMNS)
        if config.plots:
            plot_curves(rows, out / "curves.png", f"Neumours {config.optimizer}, {len(train_folders)} cases")

    session_start = time.perf_counter()
    bar = tqdm(total=config.steps, initial=start, desc=f"train-inr {config.optimizer}", unit="step",
               disable=not (config.progress and main))
    sums = torch.zeros(4, device=device)   # loss, ce, dice_loss, grad_norm since the last log row
    count = 0
    model.train()
    for step in range(start, config.steps):
        t0 = time.perf_counter()
        lr = learning_rate(step, config.steps, config.lr, config.final_lr, config.warmup)
        for opt in optimizers:
            for group in opt.param_groups:
                group["lr"] = lr
        gen = bank.generator(step_seed(config.seed, info.rank, step))
        stats = torch.zeros(3, device=device)   # on the device: no host synchronisation per micro-batch
        for n, _ in enumerate(mine):
            coords, patches, targets = bank.sample(micro, gen)
            sync = n == len(mine) - 1 or not info.distributed
            ctx = net.no_sync() if not sync else contextlib.nullcontext()
            with ctx:
                with torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                                    enabled=config.precision == "bf16"):
                    logits = net(coords, patches)
                loss, ce, dl = neumours_loss(logits, targets, weights, config.ce_weight)
                (loss * scale).backward()
            stats += torch.stack([loss, ce, dl]).detach().float()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        for opt in optimizers:
            opt.step()
            opt.zero_grad(set_to_none=True)
        sums += torch.cat([stats / len(mine), grad_norm.detach().float().reshape(1)])
        count += 1
        done = step + 1
        is_last = done == config.steps
        logging_now = done % config.log_every == 0 or is_last
        means = (sums / count).tolist() if logging_now else None    # the one host synchronisation
        dt = time.perf_counter() - t0
        elapsed += dt
        bar.update(1)
        row = None
        if logging_now:
            means = [distributed.all_mean(v, info) for v in means]
            row = {"step": done, "lr": f"{lr:.6g}", "loss": f"{means[0]:.5f}", "ce": f"{means[1]:.5f}",
                   "dice_loss": f"{means[2]:.5f}", "grad_norm": f"{means[3]:.4f}", "step_s": f"{dt:.3f}",
                   "elapsed_s": f"{elapsed:.1f}"}
            sums.zero_()
            count = 0
            bar.set_postfix(loss=f"{means[0]:.4f}", lr=f"{lr:.2e}")
        if main and (done % config.val_every == 0 or is_last) and val_volumes:
            last_val = evaluate(model, val_volumes, device, precision=config.precision)
            row = row or {"step": done, "lr": f"{lr:.6g}", "step_s": f"{dt:.3f}", "elapsed_s": f"{elapsed:.1f}"}
            row.update({f"val_{k}": f"{last_val[f'dice_{k}']:.4f}" for k in ("WT", "TC", "ET")})
            log.info("step %d: %s Dice WT %.3f TC %.3f ET %.3f", done, val_label, last_val["dice_WT"],
                     last_val["dice_TC"], last_val["dice_ET"])
        if main and row is not None:
            rows.append(row)
            _append_log(log_path, row)
        if main and (done % config.checkpoint_every == 0 or is_last):
            checkpoint(done)
        if done % config.checkpoint_every == 0 or is_last:
            distributed.barrier(info)
    bar.close()
    if not main:
        return {}
    summary = {"steps": config.steps, "optimizer": config.optimizer, "train_s": round(elapsed, 1),
               "session_wall_s": round(time.perf_counter() - session_start, 1),
               "s_per_step": round(elapsed / max(config.steps - start, 1), 3) if config.steps > start else None,
               "world_size": info.world_size, "device": str(device), "parameters": count_parameters(model),
               "val_cases": [v.name for v in val_volumes], "val_split": val_label}
    if val_volumes:
        raw = evaluate(model, val_volumes, device, with_hd95=True, precision=config.precision)
        den = evaluate(model, val_volumes, device, denoise=True, with_hd95=True,
                       precision=config.precision)
        summary["val_raw"] = {k: round(v, 4) for k, v in raw.items()}
        summary["val_denoised"] = {k: round(v, 4) for k, v in den.items()}
        meta["val_denoised_WT"] = summary["val_denoised"]["dice_WT"]
        checkpoint(config.steps)
    text = json.dumps(summary, indent=1)
    atomic_write(out / "summary.json", lambda tmp: Path(tmp).write_text(text))
    return summary
