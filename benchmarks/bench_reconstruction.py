"""Trilinear vs cubic B-spline reconstruction under a steep transfer function: the contour rings.

Usage::

    .venv/bin/python benchmarks/bench_reconstruction.py [--zoom 3.5] [--size 256] [--height H] [--frames 8]
        [--threads 2] [--presets CT-Soft-Tissue,CT-Bone] [--out rings.png]

Zooms onto the head CT's face (``--zoom`` times the default framing, so a pixel is a fraction of a
voxel, as in the app at 960 x 716; ``--zoom 1 --size 960 --height 716`` is the app's own view) and
accumulates ``--frames`` jittered frames at rest with the compiled ray-marcher (the torch marcher's
images within 1e-3) twice: reading the CT trilinearly (``FULL``, what a drag shows) and through its
interpolating cubic B-spline (``REST``, what the viewer accumulates at rest). Prints per preset the view stability
(SSIM of the converged views 0.5 degrees apart) and the time of one frame of each; ``--out`` writes
trilinear | cubic side by side, one row per preset.
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
from rfmweb.render import FULL, Scene  # noqa: E402
from rfmweb.render.registry import make_renderer  # noqa: E402
from rfmweb.render.scene import REST, to_uint8  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402


def at_rest(marcher, scene: Scene, camera: OrbitCamera, frames: int, cubic: bool) -> tuple[np.ndarray, float]:
    """The mean of ``frames`` jittered full-resolution frames (uint8) and the seconds per frame."""
    quality = replace(REST if cubic else FULL, frames=frames)
    marcher.render_frame(scene, camera, quality)                         # tables and compilation
    t0 = time.perf_counter()
    image = marcher.render_float(scene, camera, quality)
    return to_uint8(image), (time.perf_counter() - t0) / frames


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=float, default=3.5)
    parser.add_argument("--size", type=int, default=256, help="image width (and height unless --height)")
    parser.add_argument("--height", type=int)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--presets", default="CT-Soft-Tissue,CT-Bone")
    parser.add_argument("--out", type=Path, help="write trilinear | cubic into this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    height = args.height or args.size
    framed = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=height, margin=0.8)
    cam = replace(framed, fov=framed.fov / args.zoom)
    marcher = make_renderer("compiled")
    print(f"head CT, {args.size} x {height} zoomed {args.zoom}x onto the face, {args.frames} frames at rest, "
          f"0.5 degrees apart, compiled marcher, {args.threads} thread(s)\n\n"
          "| preset | reconstruction | stability | ms per frame |\n|---|---|---|---|")
    rows = []
    for name in args.presets.split(","):
        scene, shown = Scene(vol, preset(name)), []
        for cubic in (False, True):
            (image, seconds), (turned, _) = (at_rest(marcher, scene, c, args.frames, cubic)
                                             for c in (cam, cam.orbited(0.5, 0.0)))
            label = "cubic B-spline (REST)" if cubic else "trilinear (FULL)"
            print(f"| {name} | {label} | {ssim_u8(image, turned):.3f} | {seconds * 1e3:.0f} |", flush=True)
            shown.append(image)
        rows.append(np.concatenate(shown, axis=1))
    if args.out:
        from PIL import Image
        Image.fromarray(np.concatenate(rows, axis=0)).save(args.out)


if __name__ == "__main__":
    main()
