"""What the eye sees, measured: view stability, convergence and renderer parity on the real head CT.

Usage::

    .venv/bin/python benchmarks/bench_pictures.py [--size 256] [--threads 2] [--presets CT-Bone,...]
        [--azimuth 20] [--elevation 15] [--zoom 1] [--no-classes] [--montage docs/presets.png]

Prints Markdown tables, per CT preset (and, unless ``--no-classes``, class colours on CT-Bone, bone
hidden on CT-Muscle and CT-Soft-Tissue), at the head CT's framing turned to ``--azimuth`` /
``--elevation`` and ``--zoom`` times closer (a lateral view: ``--azimuth 90 --elevation 0``, along a
voxel axis):

- **stability**: SSIM between two renders 0.5 degrees of azimuth apart (goal >= 0.97): the
  ray-marcher's single jittered frame (what a drag shows), its converged view (16 jittered frames
  read through the cubic B-spline, ``REST``: what the viewer shows at rest), VTK's frame and VTK's
  converged view (16 frames at a finer step and sub-pixel offsets, ``VtkRenderer.accumulate``);
- **convergence**: SSIM of the reference render (``REFERENCE``: quarter-voxel step, 8 frames, what
  ``rfmweb views`` writes) to one with 4x the samples (goal >= 0.99);
- **parity**: SSIM of VTK's converged view to the ray-marcher's at the same camera (goal >= 0.95).

The ray-marcher runs as the compiled CPU twin when it is registered (its images equal the torch
marcher's within 1e-3; ``tests/test_compiled_raymarch.py``), else as the torch marcher.
``--montage`` writes every preset's converged view (and VTK's beside it) into one PNG to look at.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from bench_parity import ssim_u8  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import FULL, REFERENCE, Scene  # noqa: E402
from rfmweb.render.scene import REST, to_uint8  # noqa: E402
from rfmweb.render.registry import make_renderer, renderer_names  # noqa: E402
from rfmweb.transfer import PRESETS, ClassTable, preset  # noqa: E402

CONVERGED = replace(REST, frames=16)


def converged(renderer, scene, camera) -> np.ndarray:
    """What the viewer shows once the camera rests: ``CONVERGED.frames`` frames accumulated (uint8)."""
    *_, (image, _) = renderer.accumulate(scene, camera, CONVERGED.frames, 1, quality=CONVERGED)
    return to_uint8(image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2)))
    parser.add_argument("--presets", default=",".join(p for p in PRESETS if p.startswith("CT-")))
    parser.add_argument("--azimuth", type=float, default=20.0)
    parser.add_argument("--elevation", type=float, default=15.0)
    parser.add_argument("--zoom", type=float, default=1.0, help="this many times closer than the framing")
    parser.add_argument("--no-classes", action="store_true", help="the presets only: no class-styled rows")
    parser.add_argument("--montage", type=Path, help="write the converged views (and VTK's) into this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
    plain = vol.with_labels(None, ())
    marcher_name = "compiled" if "compiled" in renderer_names() else "raymarch"
    marcher, vtk = make_renderer(marcher_name), make_renderer("vtk")
    cam = OrbitCamera.framing(vol.bounds, azimuth=args.azimuth, elevation=args.elevation, width=args.size,
                              height=args.size, margin=0.8).zoomed(1.0 / args.zoom)
    turned = cam.orbited(0.5, 0.0)
    print(f"head CT {vol.shape}, {args.size}^2, azimuth {args.azimuth:g} vs {args.azimuth + 0.5:g} degrees, elevation "
          f"{args.elevation:g}, zoom {args.zoom:g}; ray-marcher: {marcher_name};"
          f" {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s)\n")
    print("| preset | stability: 1 frame | stability: converged | stability: VTK 1 frame | stability: VTK converged "
          "| convergence (ref vs 4x) | parity VTK vs ray-marcher, converged |")
    print("|---|---|---|---|---|---|---|")
    cases = [(name, Scene(plain, preset(name))) for name in args.presets.split(",") if name]
    table = ClassTable.from_classes(vol.classes)
    if not args.no_classes:
        cases.append(("CT-Bone, coloured by class",
                      Scene(vol, preset("CT-Bone"), ClassTable(table.styles, use_class_colors=True))))
        for name in ("CT-Muscle", "CT-Soft-Tissue"):
            cases.append((f"{name}, bone (label 2) hidden", Scene(vol, preset(name), table.updated(2, visible=False))))
    tiles = []
    for name, scene in cases:
        one = [marcher.render(scene, c, FULL) for c in (cam, turned)]
        conv = [converged(marcher, scene, c) for c in (cam, turned)]
        theirs = [vtk.render(scene, c, FULL) for c in (cam, turned)]
        theirs_conv = [converged(vtk, scene, c) for c in (cam, turned)]
        ref = marcher.render(scene, cam, REFERENCE)
        more = marcher.render(scene, cam, replace(REFERENCE, step=REFERENCE.step / 2, frames=REFERENCE.frames * 2))
        print(f"| {name} | {ssim_u8(*one):.3f} | {ssim_u8(*conv):.3f} | {ssim_u8(*theirs):.3f} "
              f"| {ssim_u8(*theirs_conv):.3f} | {ssim_u8(ref, more):.3f} | {ssim_u8(theirs_conv[0], conv[0]):.3f} |",
              flush=True)
        tiles.append(np.concatenate([conv[0], theirs_conv[0]], axis=1))
    if args.montage:
        from PIL import Image
        args.montage.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.montage.with_suffix(".tmp.png")
        Image.fromarray(np.concatenate(tiles, axis=0)).save(tmp)
        tmp.replace(args.montage)
    if hasattr(vtk, "close"):
        vtk.close()


if __name__ == "__main__":
    main()
