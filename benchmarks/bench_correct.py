"""Interactive correction (rfmweb.inr.correct): time of ``Corrector.apply()`` and what it fixes.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_correct.py [--repeats R] [--threads N]

Cases: the post-operative cohort case 0 at 2 mm (99 x 117 x 95) and 1 mm on the MNI grid
(197 x 233 x 189), the 1 mm case on the BraTS grid 240 x 240 x 155, and the pre-operative validation
case 5 at 2 mm (a large tumour the shipped model gets partly wrong; the tests' case). A simulated user brushes the
ground truth over every other axial slice of the lower half of the tumour's bounding box, on the
voxels the shipped model got wrong and on the true tumour; ``apply()`` runs in its default adaptive
mode (until the marks are honoured, at most ``MAX_STEPS`` steps: never a clock). Reported: the
first run's time (what a user's Apply costs: new marks every time), the median over ``R`` runs
(``undo()`` between runs restores the weights and the marks) of the whole call and its split into the
gradient steps and the full re-segmentation, the steps taken, and the whole-tumour Dice of the marked
half (all its slices, not only the marked ones) and of the unmarked half, and the accuracy on the
marked voxels, before -> after. The 2 mm cases also get one 3-D click ("not tumour") resolved through the ray-marcher.
Target (issue #4): <= 2 s on the CPU (a slower machine takes longer and shows progress; issue #8).
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

from bench_inr import brats_like  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.data.cohort import cohort_case  # noqa: E402
from rfmweb.inr import load_model, segment_volume  # noqa: E402
from rfmweb.inr.correct import Corrector  # noqa: E402
from rfmweb.io import BRATS_CLASSES  # noqa: E402
from rfmweb.metrics.segmentation import dice  # noqa: E402
from rfmweb.render import RaymarchRenderer, Scene  # noqa: E402
from rfmweb.transfer import ClassTable, TransferFunction  # noqa: E402


def user_marks(gt: np.ndarray, pred: np.ndarray) -> tuple[np.ndarray, tuple, tuple]:
    """The simulated user's marks ``[X, Y, Z]`` bool and the marked / unmarked halves of the box."""
    box = np.argwhere((gt > 0) | (pred > 0))
    lo, hi = box.min(0) - 2, box.max(0) + 3
    mid = (lo[2] + hi[2]) // 2
    marked = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], mid))
    rest = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(mid, hi[2]))
    slab = np.zeros(gt.shape, bool)
    slab[marked[0], marked[1], lo[2]:mid:2] = True
    return slab & ((pred != gt) | (gt > 0)), marked, rest


def run_case(name: str, vol, model, repeats: int) -> list[str]:
    gt = vol.labels
    t0 = time.perf_counter()
    corr = Corrector(model, vol, device="cpu")
    init_s = time.perf_counter() - t0
    base = corr.labels
    want, marked, rest = user_marks(gt, base)
    for k in range(4):
        corr.mark_voxels(np.argwhere(want & (gt == k)), k)
    idx, lab = corr.pending_voxels
    runs = []
    for r in range(repeats):
        runs.append(corr.apply())
        if r < repeats - 1:
            corr.undo()
    res = runs[-1]
    assert np.array_equal(res.labels, segment_volume(corr.model, vol, device="cpu"))
    wt = lambda labels, reg: dice(labels[reg] > 0, gt[reg] > 0)  # noqa: E731
    acc = lambda labels: float((labels[tuple(idx.T)] == lab).mean())  # noqa: E731
    med = lambda key: statistics.median(getattr(x, key) for x in runs)  # noqa: E731
    rows = [f"| {name} voxel marks | {vol.shape} | {len(idx)} | {init_s:.2f} | {runs[0].seconds:.2f} | "
            f"{med('seconds'):.2f} | {med('update_seconds'):.2f} | {med('segment_seconds'):.2f} | {res.steps} | "
            f"{res.changed} | {wt(base, marked):.3f} -> {wt(res.labels, marked):.3f} | "
            f"{wt(base, rest):.3f} -> {wt(res.labels, rest):.3f} | "
            f"{acc(base):.3f} -> {acc(res.labels):.3f} |"]
    if name.startswith("2 mm"):
        rows.append(click_row(name, corr, vol, base, gt))
    return rows


def click_row(name: str, corr: Corrector, vol, base: np.ndarray, gt: np.ndarray) -> str:
    """One "not tumour" click on the 3-D view of the labels, through the ray-marcher."""
    corr.undo()
    corr.clear_marks()
    clear = TransferFunction("clear", color=[(0, 0, 0, 0), (1, 1, 1, 1)], opacity=[(0, 0), (1, 0)])
    scene = Scene(vol.with_labels(base), clear, ClassTable.from_classes(BRATS_CLASSES, mode="solid"))
    centre = vol.affine[:3, :3] @ np.argwhere(base > 0).mean(0) + vol.affine[:3, 3]
    cam = OrbitCamera(tuple(centre), 30.0, 20.0, 300.0, 30.0, 64, 64)
    depth = RaymarchRenderer("cpu").depth(scene, cam)
    vs, us = np.nonzero(np.isfinite(depth))
    t0 = time.perf_counter()
    hit = corr.mark_ray(scene, cam, us[len(us) // 2] + 0.5, vs[len(vs) // 2] + 0.5, 0)
    click_s = time.perf_counter() - t0
    res = corr.apply()
    return (f"| {name} one 3-D click (mark_ray {click_s:.2f} s) | {vol.shape} | 1 ray | - | {res.seconds:.2f} | - | "
            f"{res.update_seconds:.2f} | {res.segment_seconds:.2f} | {res.steps} | {res.changed} | hit voxel "
            f"{base[tuple(hit)]} -> {res.labels[tuple(hit)]} (truth {gt[tuple(hit)]}) | - | - |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    print(f"CPU: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} thread(s)\n")
    print("| case | grid | marks | Corrector() s | first apply() s | apply() s | update s | re-segment s | steps | "
          "changed | WT Dice marked half | WT Dice unmarked half | marked-voxel accuracy |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    vol2, _ = cohort_case("postop", 0, 0, 2.0)
    for row in run_case("2 mm post-op", vol2, model, args.repeats):
        print(row, flush=True)
    vol1, _ = cohort_case("postop", 0, 0, 1.0)
    for row in run_case("1 mm MNI grid", vol1, model, args.repeats):
        print(row, flush=True)
    for row in run_case("1 mm BraTS grid", brats_like(vol1), model, args.repeats):
        print(row, flush=True)
    for row in run_case("2 mm pre-op", cohort_case("val", 0, 5, 2.0)[0], model, args.repeats):
        print(row, flush=True)


if __name__ == "__main__":
    main()
