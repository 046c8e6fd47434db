"""Which renderer is right: both, at rest, against a brute-force point-sampled march on the head CT.

Usage::

    .venv/bin/python benchmarks/bench_reference.py [--size 128] [--step 0.0625] [--frames 4] [--threads 1]
        [--presets CT-Bone,...] [--trilinear]

The brute force is the torch ray-marcher without pre-integration (each sample reads the TF at its
point) at ``--step`` voxels, ``--frames`` jittered frames averaged: as the step goes to zero it tends
to the volume-rendering integral that pre-integration and VTK's sampling both approximate. It reads
the CT through its cubic B-spline, as the ray-marcher does at rest (``--trilinear``: as VTK does). Prints,
per CT preset, the SSIM of the converged compiled ray-marcher and of VTK's converged view to it (what
the viewer shows at rest: ``bench_pictures.converged``), and the mean pixel value of each (a darker or
brighter picture shows there first).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_parity import ssim_u8  # noqa: E402
from bench_pictures import HEAD_CT, converged  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import Quality, RaymarchRenderer, Scene  # noqa: E402
from rfmweb.render.registry import make_renderer  # noqa: E402
from rfmweb.render.scene import to_uint8  # noqa: E402
from rfmweb.transfer import PRESETS, preset  # noqa: E402


def point_sampled(marcher: RaymarchRenderer, scene: Scene, camera: OrbitCamera, step: float, frames: int,
                  cubic: bool) -> np.ndarray:
    """The mean of ``frames`` jittered frames of point samples (no pre-integration) ``step`` voxels apart."""
    field = marcher.field(scene, preintegrate=None, cubic=cubic)
    total = sum(marcher.render_tensor(scene, camera, Quality(1.0, step, 1), field=field, frame=f).numpy()
                for f in range(frames))
    return to_uint8(total / frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--step", type=float, default=1 / 16, help="brute-force step, in voxels")
    parser.add_argument("--frames", type=int, default=4, help="brute-force jittered frames")
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--presets", default=",".join(p for p in PRESETS if p.startswith("CT-")))
    parser.add_argument("--trilinear", action="store_true", help="brute force with trilinear reads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.size, margin=0.8)
    brute, marcher, vtk = RaymarchRenderer(device="cpu"), make_renderer("compiled"), make_renderer("vtk")
    print(f"head CT {vol.shape}, {args.size}^2, azimuth 20, elevation 15; brute force: point samples every "
          f"{args.step:g} voxel, {'trilinear' if args.trilinear else 'cubic B-spline'} reads, {args.frames} jittered "
          f"frames; {args.threads} thread(s)\n")
    print("| preset | ray-marcher at rest vs brute force | VTK at rest vs brute force | mean: brute / marcher / VTK |")
    print("|---|---|---|---|")
    for name in args.presets.split(","):
        scene = Scene(vol, preset(name))
        truth = point_sampled(brute, scene, cam, args.step, args.frames, not args.trilinear)
        ours, theirs = converged(marcher, scene, cam), converged(vtk, scene, cam)
        print(f"| {name} | {ssim_u8(ours, truth):.3f} | {ssim_u8(theirs, truth):.3f} "
              f"| {truth.mean():.1f} / {ours.mean():.1f} / {theirs.mean():.1f} |", flush=True)
    vtk.close()


if __name__ == "__main__":
    main()
