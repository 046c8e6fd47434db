"""The frames a drag shows: how much they change between two cameras 0.5 degrees apart, per step and read.

Usage::

    .venv/bin/python benchmarks/bench_drag_frames.py [--size 512] [--scale 0.5] [--threads 2]
        [--renderers compiled,vtk] [--presets CT-Soft-Tissue,CT-Muscle,...]

Head CT, the framing of ``bench_pictures.py`` (azimuth 20, elevation 15), a ``--size``^2 view rendered
at ``--scale`` (0.5: what ``FrameStream`` sends while the camera moves, before it adapts the scale).
For each renderer, preset and setting (the one-voxel step of the segmentation panels, the half-voxel
step of a 3-D view (:data:`~rfmweb.render.scene.MOVING`), half a voxel read through the cubic
B-spline) it prints the stability (SSIM of the frames at azimuth 20 and 20.5; goal
>= 0.97) and the median time of a frame over 5 cameras (ms). Wood grain while dragging shows as low
stability. Only the ray-marchers read cubically; VTK's cubic rows are left out.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_parity import ssim_u8  # noqa: E402
from bench_pictures import HEAD_CT  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import INTERACTIVE, MOVING, Scene  # noqa: E402
from rfmweb.render.registry import make_renderer  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402

SETTINGS = (("step 1, trilinear (segmentation panels)", INTERACTIVE),
            ("step 1/2, trilinear (3-D views)", MOVING),
            ("step 1/2, cubic", replace(MOVING, cubic=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--scale", type=float, default=INTERACTIVE.scale)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--renderers", default="compiled,vtk")
    parser.add_argument("--presets", default="CT-Soft-Tissue,CT-Muscle,CT-Bone,CT-AAA,CT-Lung")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz")
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.size, margin=0.8)
    print(f"head CT {vol.shape}, {args.size}^2 view at scale {args.scale}, azimuth 20 vs 20.5 degrees; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s)\n")
    print("| renderer | preset | setting | stability | ms per frame |")
    print("|---|---|---|---|---|")
    for name in args.renderers.split(","):
        renderer = make_renderer(name)
        for preset_name in args.presets.split(","):
            scene = Scene(vol, preset(preset_name))
            for label, quality in SETTINGS:
                quality = replace(quality, scale=args.scale)
                if quality.cubic and name == "vtk":
                    continue
                renderer.render(scene, cam, quality)                      # set-up and compilation
                times = []
                for k in range(5):
                    t0 = time.perf_counter()
                    renderer.render(scene, cam.orbited(0.3 * k, 0.0), quality)
                    times.append(time.perf_counter() - t0)
                a, b = (renderer.render(scene, c, quality) for c in (cam, cam.orbited(0.5, 0.0)))
                print(f"| {name} | {preset_name} | {label} | {ssim_u8(a, b):.3f} | {np.median(times) * 1e3:.0f} |",
                      flush=True)
        if hasattr(renderer, "close"):
            renderer.close()


if __name__ == "__main__":
    main()
