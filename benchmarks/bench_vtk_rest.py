"""VTK's converged view, read trilinearly or through the half-spacing cubic grid, against the ray-marcher's.

Usage::

    .venv/bin/python benchmarks/bench_vtk_rest.py [--size 960] [--height 716] [--zoom 1] [--frames 16]
        [--threads 2] [--presets CT-Soft-Tissue,CT-Muscle,...] [--out vtk_rest.png]

The head CT (no labels) at the default framing, ``--zoom`` times closer, ``--frames`` frames at rest
(``VtkRenderer.accumulate``, as the viewer converges a view at rest) twice: reading the volume as it
is (trilinear) and reading it as shipped (the cubic B-spline at half the spacing where VTK uses it:
unshaded presets; :mod:`rfmweb.render.vtk_volume`). Prints per preset the SSIM of each to the compiled
ray-marcher's converged view (the same frames, cubic reads; it agrees with a brute-force reference to
0.985-0.995), the time of the first pass (the grid's setup included) and of a frame. ``--out`` writes
trilinear | shipped | ray-marcher, one row per preset.
"""

from __future__ import annotations

import argparse
import os
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
from rfmweb.render import Scene  # noqa: E402
from rfmweb.render.registry import make_renderer  # noqa: E402
from rfmweb.render.scene import REST, to_uint8  # noqa: E402
from rfmweb.render.vtk_volume import VtkRenderer  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402

PRESETS = "CT-Soft-Tissue,CT-Bone,CT-Muscle,CT-Lung"


def vtk_at_rest(scene: Scene, camera: OrbitCamera, frames: int, cubic: bool,
                threads: int) -> tuple[np.ndarray, float, float]:
    """VTK's converged view (uint8), the seconds of its first frame (setup included) and per frame after."""
    vtk = VtkRenderer(threads=threads)
    try:
        quality = replace(REST, cubic=cubic)
        t0 = time.perf_counter()
        list(vtk.accumulate(scene, camera, 1, 1, quality=quality))
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        *_, (image, _) = vtk.accumulate(scene, camera, frames, 1, quality=quality)
        return to_uint8(image), first, (time.perf_counter() - t0) / frames
    finally:
        vtk.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=960, help="image width")
    parser.add_argument("--height", type=int, default=716)
    parser.add_argument("--zoom", type=float, default=1.0)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--presets", default=PRESETS)
    parser.add_argument("--out", type=Path, help="write trilinear | shipped | ray-marcher into this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    framed = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.height,
                                 margin=0.8)
    cam = replace(framed, fov=framed.fov / args.zoom)
    marcher = make_renderer("compiled")
    print(f"head CT, {args.size} x {args.height}, zoom {args.zoom}, {args.frames} frames at rest, "
          f"{args.threads} thread(s); SSIM of VTK's converged view to the ray-marcher's\n\n"
          "| preset | VTK reads at rest | trilinear | as shipped | first pass, s (trilinear / shipped) "
          "| ms per frame (trilinear / shipped) |\n|---|---|---|---|---|---|")
    rows = []
    for name in args.presets.split(","):
        scene = Scene(vol, preset(name))
        *_, (ours, _) = marcher.accumulate(scene, cam, args.frames, 1)
        ours = to_uint8(ours)
        cubic = VtkRenderer()._reads_cubic(scene, REST)
        runs = [vtk_at_rest(scene, cam, args.frames, c, args.threads) for c in (False, cubic)]
        (tri, t_first, t_frame), (shipped, s_first, s_frame) = runs
        grid = "cubic, half spacing" if cubic else "the volume (trilinear)"
        print(f"| {name} | {grid} | {ssim_u8(tri, ours):.3f} | {ssim_u8(shipped, ours):.3f} | "
              f"{t_first:.1f} / {s_first:.1f} | {t_frame * 1e3:.0f} / {s_frame * 1e3:.0f} |", flush=True)
        rows.append(np.concatenate([tri, shipped, ours], axis=1))
    if args.out:
        from PIL import Image
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)


if __name__ == "__main__":
    main()
