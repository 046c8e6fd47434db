"""Neumours INR: parameters, inference and denoising time per case, training time per step.

Usage::

    .venv/bin/python benchmarks/bench_inr.py [--checkpoint PATH] [--threads 1 2] [--repeats R]

Prints Markdown tables. Cases: the synthetic glioma at 1 mm on the MNI152 grid (197 x 233 x 189,
1.88 M brain voxels) and the same case cropped/padded to the BraTS grid 240 x 240 x 155; inference
in dense and coarse-to-fine mode, bf16 and fp32, with 1 and 2 torch threads on the CPU, and on CUDA
when present (``--devices cuda``: the GPU alone). Uses the shipped checkpoint (its predictions
decide how much coarse-to-fine refines); a random network is not representative for coarse-to-fine.
Targets (issue #4): <= 10 s per 240 x 240 x 155 case on a 2-core CPU, denoising <= 0.1 s.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rfmweb.data.cohort import cohort_case  # noqa: E402
from rfmweb.inr import denoise_labels, load_model, segment_volume  # noqa: E402
from rfmweb.inr.sampling import CaseBank, prepare_case  # noqa: E402
from rfmweb.inr.train import build_optimizers, neumours_loss  # noqa: E402
from rfmweb.metrics.segmentation import dice  # noqa: E402
from rfmweb.models.inr import NeumoursINR, count_parameters  # noqa: E402
from rfmweb.volume import Volume  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median seconds over ``repeats`` calls after one warm-up, and the last result."""
    out = fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def brats_like(vol: Volume) -> Volume:
    """The 1 mm MNI case on a 240 x 240 x 155 grid (x, y zero-padded, z cropped around the brain)."""
    data = vol.data
    z = np.flatnonzero(data.any(axis=(0, 1, 2)))
    z0 = max(0, min(int((z[0] + z[-1]) // 2 - 77), data.shape[3] - 155))
    out = np.zeros((4, 240, 240, 155), np.float32)
    lab = np.zeros((240, 240, 155), np.uint8)
    ox, oy = (240 - data.shape[1]) // 2, (240 - data.shape[2]) // 2
    out[:, ox:ox + data.shape[1], oy:oy + data.shape[2]] = data[..., z0:z0 + 155]
    lab[ox:ox + data.shape[1], oy:oy + data.shape[2]] = vol.labels[..., z0:z0 + 155]
    affine = vol.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([ox, oy, -z0])
    return Volume(out, affine, modality="MR", channels=vol.channels, labels=lab, classes=vol.classes,
                  name="brats_like")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", help="model file (default: the shipped weights)")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-fp32-dense", action="store_true", help="skip the slowest configuration")
    ap.add_argument("--devices", nargs="+", choices=("cpu", "cuda"),
                    help="where to time (default: the CPU, and CUDA when present)")
    args = ap.parse_args()
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])

    model = load_model(args.checkpoint)
    print(f"# Neumours INR benchmark\n\n{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads available, CUDA: {torch.cuda.is_available()}\n")
    print(f"Parameters: {count_parameters(model):,} (Neumours paper: about 0.26 M)\n")
    mni, _ = cohort_case("val", 0, 1, 1.0)
    cases = {"MNI 1 mm 197x233x189": mni, "BraTS-like 240x240x155": brats_like(mni)}

    print("## Inference, seconds per case (median of %d, after a warm-up)\n" % args.repeats)
    print("| case | brain voxels | device | threads | precision | mode | seconds | voxels equal to dense fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    reference = {}
    for name, vol in cases.items():
        brain = int(vol.data.any(0).sum())
        configs = []
        for n, threads in enumerate(args.threads if "cpu" in devices else []):
            for precision, c2f in (("fp32", False), ("fp32", True), ("bf16", False), ("bf16", True)):
                if args.skip_fp32_dense and precision == "fp32" and not c2f and n > 0:
                    continue
                configs.append(("cpu", threads, precision, c2f))
        if "cuda" in devices:
            configs += [("cuda", None, p, c) for p, c in (("fp32", False), ("fp32", True), ("bf16", False),
                                                            ("bf16", True))]
        for device, threads, precision, c2f in configs:
            if threads:
                torch.set_num_threads(threads)
            seconds, labels = timed(lambda: segment_volume(model, vol, device=device, precision=precision,
                                                           coarse_to_fine=c2f), args.repeats)
            key = (name, "fp32-dense")
            if precision == "fp32" and not c2f and key not in reference:
                reference[key] = labels
            agree = "" if key not in reference else f"{(labels == reference[key]).mean():.6f}"
            print(f"| {name} | {brain:,} | {device} | {threads or '-'} | {precision} | "
                  f"{'coarse-to-fine' if c2f else 'dense'} | {seconds:.2f} | {agree} |", flush=True)

    print("\n## Denoising (connected components + hole filling), seconds per case\n")
    print("| case | seconds | WT Dice raw -> denoised |")
    print("|---|---|---|")
    torch.set_num_threads(args.threads[0])
    for name, vol in cases.items():
        raw = segment_volume(model, vol, device=devices[-1])
        seconds, clean = timed(lambda: denoise_labels(raw, spacing=vol.spacing), max(args.repeats, 5))
        print(f"| {name} | {seconds:.3f} | {dice(raw > 0, vol.labels > 0):.4f} -> "
              f"{dice(clean > 0, vol.labels > 0):.4f} |")

    print("\n## Training, seconds per step (16,384 coordinates = 4 x 4,096, forward + backward + step)\n")
    print("| device | threads | precision | optimizer | s / step |")
    print("|---|---|---|---|---|")
    small, _ = cohort_case("train", 0, 0, 2.0)
    case = prepare_case(small)
    weights = torch.tensor([2.0, 1.0, 1.0, 1.0])
    runs = [("cpu", t) for t in args.threads if "cpu" in devices] + ([("cuda", None)] if "cuda" in devices else [])
    for device, threads in runs:
        if threads:
            torch.set_num_threads(threads)
        bank = CaseBank([case], device=device)      # batches drawn where the model trains
        for precision in ("fp32", "bf16"):
            for opt_name in ("adamw", "muon"):
                net = NeumoursINR().to(device)
                opts = build_optimizers(net, opt_name, 1e-3, 0.01)
                gen = bank.generator(0)

                def step():
                    for _ in range(4):
                        c, p, t = bank.sample(4096, gen)
                        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
                            logits = net(c, p)
                        (neumours_loss(logits, t, weights.to(device))[0] / 4).backward()
                    torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
                    for o in opts:
                        o.step()
                        o.zero_grad(set_to_none=True)

                seconds, _ = timed(step, max(args.repeats, 5))
                print(f"| {device} | {threads or '-'} | {precision} | {opt_name} | {seconds:.3f} |", flush=True)


if __name__ == "__main__":
    main()
