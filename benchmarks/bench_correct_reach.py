"""How far one correction reaches: where the updated INR changes labels, and what keeping only the changes
near the marks (``rfmweb.inr.correct.REACH_MM``) does to the whole-tumour Dice.

Usage::

    .venv/bin/python benchmarks/bench_correct_reach.py [--cases 2] [--threads 2]

Validation cases of cohort seed 1 at 2 mm (``rfmweb make-cohort --split val --seed 1 --resolution 2``
writes the same). On each, one brush stroke of radius 1 voxel across the tumour's middle axial slice,
marked "not tumour" (an erase) and then, from the same start, marked with the ground truth under it
(a user tracing the truth); ``apply()`` in its default adaptive mode. Reported per stroke: voxels
marked, voxels the updated model labels differently (all of them, their median and largest
distance from the marks in mm), how many lie farther than ``REACH_MM`` (left as they were), and the
whole-tumour Dice of the raw labels against the ground truth: before, with every change the model
made, and as applied (changes within ``REACH_MM`` only).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rfmweb.data.cohort import cohort_case  # noqa: E402
from rfmweb.inr import load_model, segment_volume  # noqa: E402
from rfmweb.inr.correct import REACH_MM, Corrector  # noqa: E402
from rfmweb.metrics.segmentation import dice  # noqa: E402


def _stroke(gt: np.ndarray) -> tuple[int, np.ndarray]:
    """The middle axial slice of the tumour and a stroke ``[2, 2]`` (i, j) across the tumour on it."""
    box = np.argwhere(gt > 0)
    k = int(np.median(box[:, 2]))
    on = np.argwhere(gt[:, :, k] > 0)
    j = float(np.median(on[:, 1]))
    return k, np.array([[on[:, 0].min() - 3.0, j], [on[:, 0].max() + 3.0, j]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = load_model(device="cpu")
    print(f"REACH_MM = {REACH_MM:g}; {platform.processor() or platform.machine()}, {args.threads} thread(s)\n")
    print("| case | stroke | marked | model changes | median / max distance mm | farther than reach "
          "(left out) | WT Dice before | every change | as applied |")
    print("|---|---|---|---|---|---|---|---|---|")
    for index in range(args.cases):
        vol, _ = cohort_case("val", 1, index, 2.0)
        gt = vol.labels
        base = segment_volume(model, vol, device="cpu")
        k, pts = _stroke(gt)
        for name in ("erase", "ground truth"):
            corr = Corrector(model, vol, labels=base, device="cpu")
            if name == "erase":
                corr.mark_stroke("axial", k, pts, label=0, radius=1.0)
            else:
                corr.mark_stroke("axial", k, pts, label=0, radius=1.0)
                ijk, _ = corr.pending_voxels
                corr.clear_marks()
                for c in range(4):                         # the truth under the same stroke
                    sel = gt[tuple(ijk.T)] == c
                    if sel.any():
                        corr.mark_voxels(ijk[sel], c)
            ijk, _ = corr.pending_voxels
            marks = np.zeros(gt.shape, bool)
            marks[tuple(ijk.T)] = True
            result = corr.apply()
            full = segment_volume(corr.model, vol, device="cpu")
            changed = full != base
            dist = ndimage.distance_transform_edt(~marks, sampling=vol.spacing)[changed]
            spread = f"{np.median(dist):.1f} / {dist.max():.1f}" if dist.size else "-"
            wt = [dice(x > 0, gt > 0) for x in (base, full, result.labels)]
            print(f"| {vol.name} | {name} | {len(ijk)} | {int(changed.sum())} | {spread} | {result.left_out} | "
                  f"{wt[0]:.3f} | {wt[1]:.3f} | {wt[2]:.3f} |", flush=True)


if __name__ == "__main__":
    main()
