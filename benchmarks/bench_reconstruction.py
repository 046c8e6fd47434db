"""Trilinear vs tricubic reconstruction of the CT under a steep transfer function: the contour rings.

Usage::

    .venv/bin/python benchmarks/bench_reconstruction.py [--zoom 3.5] [--size 256] [--frames 4] [--threads 1]
        [--preset CT-Soft-Tissue] [--out rings.png]

Zooms onto the head CT's face (``--zoom`` times the default framing, so a pixel is a fraction of a
voxel as in the app at 960 x 716) and renders it at rest with the torch ray-marcher twice: as the
product does (trilinear samples) and with the field's scalar samples replaced by an interpolating
cubic B-spline (``scipy.ndimage.map_coordinates(order=3)`` on the spline coefficients: C2, so no
gradient jumps at cell faces). Prints the view stability (SSIM of renders 0.5 degrees apart) of
each; ``--out`` writes them side by side. A measurement for the reconstruction the three marchers
do not have yet, not a renderer: the cubic path runs on the host, one frame in tens of seconds.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_parity import ssim_u8  # noqa: E402
from bench_pictures import HEAD_CT  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import FULL, RaymarchRenderer, Scene  # noqa: E402
from rfmweb.render.scene import to_uint8  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402


def cubic_field(marcher: RaymarchRenderer, scene: Scene, step_mm: float):
    """The scene's pre-integrated field with its scalar read through an interpolating cubic B-spline."""
    field = marcher.field(scene, preintegrate=step_mm)
    grid = field.sampler.grid[0].double().numpy()
    coef = ndimage.spline_filter(grid, order=3, mode="nearest")
    trilinear = field.sampler.trilinear

    def sample(points, other=None, *, normalized=False):
        if other is not None:                     # gradients and other grids stay trilinear
            return trilinear(points, other, normalized=normalized)
        norm = (points if normalized else field.sampler.normalized(points)).detach().double().numpy()
        ijk = [np.clip((norm[:, 2 - a] + 1) / 2 * (n - 1), 0, n - 1) for a, n in enumerate(grid.shape)]
        out = ndimage.map_coordinates(coef, ijk, order=3, prefilter=False, mode="nearest")
        return torch.from_numpy(out).to(field.sampler.grid.dtype)[None]

    field.sampler.trilinear = sample
    return field


def at_rest(marcher: RaymarchRenderer, scene: Scene, camera: OrbitCamera, frames: int, cubic: bool) -> np.ndarray:
    """The mean of ``frames`` jittered full-quality frames (what the viewer shows at rest), uint8."""
    step = FULL.step * min(scene.volume.spacing)
    field = cubic_field(marcher, scene, step) if cubic else marcher.field(scene, preintegrate=step)
    total = sum(marcher.render_tensor(scene, camera, FULL, field=field, frame=f).numpy() for f in range(frames))
    return to_uint8(total / frames)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--zoom", type=float, default=3.5)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--frames", type=int, default=4)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--preset", default="CT-Soft-Tissue")
    parser.add_argument("--out", type=Path, help="write trilinear | cubic into this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    framed = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.size, margin=0.8)
    cam = replace(framed, fov=framed.fov / args.zoom)
    marcher, scene = RaymarchRenderer(device="cpu"), Scene(vol, preset(args.preset))
    print(f"head CT, {args.preset}, {args.size}^2 zoomed {args.zoom}x, {args.frames} frames at rest, "
          f"0.5 degrees apart\n\n| reconstruction | stability |\n|---|---|")
    shown = []
    for cubic in (False, True):
        pair = [at_rest(marcher, scene, c, args.frames, cubic) for c in (cam, cam.orbited(0.5, 0.0))]
        print(f"| {'cubic B-spline' if cubic else 'trilinear (the marchers)'} | {ssim_u8(*pair):.3f} |", flush=True)
        shown.append(pair[0])
    if args.out:
        from PIL import Image
        Image.fromarray(np.concatenate(shown, axis=1)).save(args.out)


if __name__ == "__main__":
    main()
