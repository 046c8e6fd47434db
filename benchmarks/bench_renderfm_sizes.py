"""Render-FM's picture at the size it is looked at: SSIM / PSNR to the reference ray-marcher on the
head CT at several view sizes, for one or more checkpoints side by side (issue #10).

Usage::

    .venv/bin/python benchmarks/bench_renderfm_sizes.py [--checkpoint A.pt B.pt] [--sizes 128 256 512]
        [--preset CT-Bone] [--zoom 0.4] [--min-sliced-width none 0.35] [--agp] [--threads 2] [--out montage.png]

The evaluation table (``rfmweb evaluate-renderfm``) scores 128^2 views, where a splat covers a
couple of pixels; the viewer shows 500-1000 px, where splats narrower than ~0.4 of their lattice
spacing leave the lattice visible as a grid of dots that a 128^2 view cannot see. Four cameras on
an orbit around the head CT (CT-Bone, its labels), ground truth ``REFERENCE`` (what ``rfmweb views``
writes), splats rasterised by the torch/numba/gsplat path the viewer uses. ``--out`` writes the
first camera at the largest size: the reference, then each checkpoint. ``--zoom`` moves every camera
closer (its distance times the factor: 0.4 is a close-up of the face or the skull);
``--min-sliced-width`` overrides the checkpoints' floor on the width of a splat's slice (a fraction
of its lattice spacing, ``none``: off), one row per value; ``--agp`` adds the AGP base alone (what
the network corrects: an untrained model predicts it). Then, per checkpoint, the
brightness of each view at the largest size against the reference: the mean RGB ratio over the pixels
both draw (a colour bias shows in every view alike, a view-dependent one, as under the reference's
headlight, differs between them).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.metrics.image import psnr, ssim  # noqa: E402
from rfmweb.render import REFERENCE, Scene  # noqa: E402
from rfmweb.render.registry import make_renderer, renderer_names  # noqa: E402
from rfmweb.renderfm.model import RenderFM, load_model, predict  # noqa: E402
from rfmweb.splats import render_splats  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402

ORBIT = ((20, 15), (110, 0), (200, 30), (290, -10))   # (azimuth, elevation) degrees


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", nargs="+", default=[None], help="Render-FM model files (default: the shipped one)")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 256, 512])
    ap.add_argument("--preset", default="CT-Bone")
    ap.add_argument("--zoom", type=float, default=1.0, help="camera distance factor (< 1: closer)")
    ap.add_argument("--min-sliced-width", nargs="+", default=None,
                    help="override the checkpoints' min_sliced_width: values, or none (one row each)")
    ap.add_argument("--agp", action="store_true", help="add a row: the AGP base alone (an untrained network)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path, help="write reference | each checkpoint (first camera, largest size)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
    scene = Scene(vol, preset(args.preset))
    splats = {}
    for name in args.checkpoint:
        model = load_model(name)
        for width in args.min_sliced_width or [None]:
            if width is not None:
                model.config = replace(model.config, min_sliced_width=None if width == "none" else float(width))
            label = (name or "shipped") + ("" if width is None else f", min_sliced_width {width}")
            splats[label] = predict(model, scene).splats
    if args.agp:     # the network's starting point: its head is zero until trained
        splats["AGP base alone"] = predict(RenderFM(load_model(args.checkpoint[0]).config), scene).splats
    marcher = make_renderer("compiled" if "compiled" in renderer_names() else "raymarch")
    print(f"head CT, {args.preset}, {len(ORBIT)} views on an orbit (zoom {args.zoom}), SSIM / PSNR dB to REFERENCE\n")
    print("| checkpoint | splats | " + " | ".join(f"{s}^2" for s in args.sizes) + " |")
    print("|---|---|" + "---|" * len(args.sizes))
    rows = {name: [] for name in splats}
    bright: dict = {}
    tiles = []
    for size in args.sizes:
        cams = [OrbitCamera.framing(vol.bounds, azimuth=a, elevation=e, width=size, height=size,
                                    margin=0.8).zoomed(args.zoom) for a, e in ORBIT]
        truth = torch.stack([torch.as_tensor(marcher.render_float(scene, c, REFERENCE)) for c in cams]).clamp(0, 1)
        tiles = [truth[0]]
        for name, s in splats.items():
            with torch.no_grad():
                rgb, _ = render_splats(s, cams, background=torch.zeros(3))
            rgb = rgb.clamp(0, 1)
            pair = rgb.permute(0, 3, 1, 2), truth.permute(0, 3, 1, 2)        # [V, 3, H, W]
            rows[name].append((float(ssim(*pair).mean()), float(psnr(*pair).mean())))
            both = (rgb.sum(-1) > 0.02) & (truth.sum(-1) > 0.02)               # [V, H, W]
            bright[name] = [float(rgb[v][both[v]].mean() / truth[v][both[v]].mean()) for v in range(len(cams))]
            tiles.append(rgb[0])
    for name, scores in rows.items():
        print(f"| {name} | {len(splats[name]):,} | "
              + " | ".join(f"{a:.3f} / {b:.2f}" for a, b in scores) + " |")
    print(f"\nbrightness at {args.sizes[-1]}^2, Render-FM / reference over the pixels both draw\n\n| checkpoint | "
          + " | ".join(f"azimuth {a}, elevation {e}" for a, e in ORBIT) + " |\n|---|" + "---|" * len(ORBIT))
    for name, ratios in bright.items():
        print(f"| {name} | " + " | ".join(f"{r:.2f}" for r in ratios) + " |")
    if args.out:
        from PIL import Image
        image = (torch.cat(tiles, dim=1).numpy() * 255 + 0.5).clip(0, 255).astype(np.uint8)
        tmp = args.out.with_suffix(".tmp.png")
        Image.fromarray(image).save(tmp)
        tmp.replace(args.out)


if __name__ == "__main__":
    main()
