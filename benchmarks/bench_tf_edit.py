"""Frames while the user edits the transfer function: every frame a new TF, as a drag in the TF editor.

Usage::

    .venv/bin/python benchmarks/bench_tf_edit.py [--size 512] [--threads 2] [--renderers compiled,raymarch]

Head CT, CT-Muscle, the app's frame while moving (``INTERACTIVE``: half resolution, one-voxel step)
of a ``--size`` view. Two drags, six frames each (median, ms): the whole TF shifted 1 HU a frame
(the points' positions move: where the opacity is 0 moves with them), and every opacity point
lowered 2 % a frame (heights only). Each with all classes shown and with bone (label 2) hidden.
A frame's time includes whatever the renderer rebuilds for the new TF (lookup tables, the
empty-space box, the faded grid when hidden classes depend on where the opacity is 0).

First a table of what opening the scan costs the ray-marchers before their first frame: preparing
the grid (``RaymarchRenderer.prepare``: the faded scalar and the shading gradient; a fresh
renderer each time, best of 3), with nothing and with bone hidden.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render.registry import make_renderer, renderer_names  # noqa: E402
from rfmweb.render.scene import INTERACTIVE, Scene  # noqa: E402
from rfmweb.transfer import ClassTable, preset  # noqa: E402

FRAMES = 6


def drags(base):
    """``{name: [TF per frame]}`` for the two drags (module docstring)."""
    return {
        "shift 1 HU / frame": [base.shifted(float(k)) for k in range(1, FRAMES + 1)],
        "heights -2 % / frame": [replace(base, opacity=tuple((x, a * (1 - 0.02 * k)) for x, a in base.opacity))
                                 for k in range(1, FRAMES + 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--renderers", default="compiled" if "compiled" in renderer_names() else "raymarch")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.size, margin=0.8)
    table = ClassTable.from_classes(vol.classes)
    base = preset("CT-Muscle")
    print(f"head CT {vol.shape}, CT-Muscle, INTERACTIVE frames of a {args.size}^2 view; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s)\n")
    print("| preparing the grid | ms (best of 3) |")
    print("|---|---|")
    for label, classes in (("nothing hidden", table), ("bone hidden", table.updated(2, visible=False))):
        times = []
        for _ in range(3):
            t = time.perf_counter()
            make_renderer("raymarch").prepare(Scene(vol, base, classes))
            times.append(time.perf_counter() - t)
        print(f"| {label} | {min(times) * 1000:.0f} |", flush=True)
    print()
    print("| renderer | drag | classes | ms / frame (median of 6) |")
    print("|---|---|---|---|")
    for name in args.renderers.split(","):
        renderer = make_renderer(name)
        for label, classes in (("all shown", table), ("bone hidden", table.updated(2, visible=False))):
            for drag, tfs in drags(base).items():
                renderer.render(Scene(vol, base, classes), cam, INTERACTIVE)       # the frame before the drag
                times = []
                for tf in tfs:
                    t = time.perf_counter()
                    renderer.render(Scene(vol, tf, classes), cam, INTERACTIVE)
                    times.append(time.perf_counter() - t)
                print(f"| {name} | {drag} | {label} | {statistics.median(times) * 1000:.0f} |", flush=True)


if __name__ == "__main__":
    main()
