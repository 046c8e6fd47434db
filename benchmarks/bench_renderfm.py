"""Render-FM preparation time by stage, and the frame rate of the prepared splats (issue #10).

Usage::

    python benchmarks/bench_renderfm.py [--checkpoint model.pt] [--device cpu|cuda] [--sizes 128 256]

Prints Markdown tables:

- ``rfmweb prepare``'s stages (input: classify + resample + AGP pooling; network; decode (gather +
  residuals + pruning); transfer to the device; ``prepare_s`` the whole), the median of ``--repeats`` passes (default 3) after
  a warm-up, for a generated torso on an N^3 working grid (1.5 mm) for each ``--sizes`` N, and for the
  head CT of ../shared/data (CT-Bone, labels, its own 256 x 256 x 108 grid resampled to 1.5 mm);
- frames per second of the head CT's prepared splats at 512^2 and 1024^2 (slice + rasterise:
  gsplat on CUDA, the numba kernel on a CPU), median of 10 frames over an orbit.

Timing only: the splats come from whatever checkpoint is given (default: the shipped one).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.render import Scene  # noqa: E402
from rfmweb.renderfm.model import load_model, predict  # noqa: E402
from rfmweb.splats import render_splats  # noqa: E402
from rfmweb.transfer import ClassTable, preset  # noqa: E402
from rfmweb.volume import Volume  # noqa: E402

STAGES = ("input", "network", "decode", "transfer", "prepare_s")


def cube(n: int) -> Volume:
    """A generated torso resampled onto an n^3 grid at 1.5 mm (labels nearest)."""
    from rfmweb.renderfm.anatomy import random_anatomy

    vol = random_anatomy(7, "torso", spacing_mm=3.0)
    t = torch.from_numpy(vol.data[0])[None, None]
    data = F.interpolate(t, size=(n, n, n), mode="trilinear", align_corners=True)[0].numpy()
    idx = [np.rint(np.linspace(0, s - 1, n)).astype(int) for s in vol.labels.shape]
    labels = vol.labels[np.ix_(*idx)]
    affine = np.diag([1.5, 1.5, 1.5, 1.0])
    affine[:3, 3] = -0.75 * (n - 1)
    return Volume(data, affine, modality="CT", labels=labels, classes=vol.classes, name=f"torso_{n}")


def stage_row(name: str, model, scene: Scene, device, repeats: int) -> tuple[dict, object]:
    predict(model, scene, device=device)                                   # warm-up
    runs = [predict(model, scene, device=device) for _ in range(repeats)]
    med = {k: statistics.median(r.timings[k] for r in runs) for k in STAGES}
    pred = runs[-1]
    print(f"| {name} | {'x'.join(map(str, pred.grid))} | {len(pred.splats):,} | "
          + " | ".join(f"{med[k]:.3f}" for k in STAGES) + " |", flush=True)
    return med, pred


def fps_rows(splats, bounds, device) -> None:
    backend = "auto" if device.type == "cuda" else "cpu"
    for size in (512, 1024):
        cams = [OrbitCamera.framing(bounds, azimuth=a, elevation=10, width=size, height=size) for a in range(0, 40, 4)]
        render_splats(splats, cams[0], backend=backend)
        times = []
        for cam in cams:
            if device.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
            render_splats(splats, cam, backend=backend)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t)
        ms = 1000 * statistics.median(times)
        print(f"| {size}^2 | {len(splats):,} | {ms:.2f} | {1000 / ms:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", help="Render-FM model file (default: the shipped one)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    ap.add_argument("--repeats", type=int, default=3, help="timed passes after the warm-up (median)")
    args = ap.parse_args()
    device = torch.device(args.device)
    model = load_model(args.checkpoint, device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"Render-FM prepare on {name} (features {list(model.config.features)}, median of {args.repeats} after a warm-up, s)\n")
    print("| volume | working grid | splats | " + " | ".join(STAGES) + " |")
    print("|---|---|---|" + "---|" * len(STAGES))
    for n in args.sizes:
        vol = cube(n)
        stage_row(f"generated torso {n}^3", model, Scene(vol, preset("CT-Bone"), ClassTable.from_classes(vol.classes)),
                  device, args.repeats)
    if (HEAD_CT / "ct.nii.gz").exists():
        from rfmweb.io import load_volume

        head = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
        _, pred = stage_row("head CT (CT-Bone)", model, Scene(head, preset("CT-Bone"),
                                                             ClassTable.from_classes(head.classes)), device,
                              args.repeats)
        print(f"\nFrames of the head CT's prepared splats on {name} (slice + rasterise, median of 10)\n")
        print("| size | splats | ms / frame | FPS |\n|---|---|---|---|")
        fps_rows(pred.splats, head.bounds, device)


if __name__ == "__main__":
    main()
