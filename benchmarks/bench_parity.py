"""How close VTK is to the torch ray-marcher: SSIM on the same volume, TF, classes and camera.

Usage::

    .venv/bin/python benchmarks/bench_parity.py [--size 256]

Prints a Markdown table over presets and class modes on the real head CT (soft tissue / bone
labels), averaged over four views; both renderers at full quality (step 0.5 voxel).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ssim

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import FULL, RaymarchRenderer, Scene  # noqa: E402
from rfmweb.render.vtk_volume import VtkRenderer  # noqa: E402
from rfmweb.transfer import ClassTable, preset  # noqa: E402


def ssim_u8(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(ssim(ta, tb, data_range=255.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(1)
    vol = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
    table = ClassTable.from_classes(vol.classes)
    modes = {"all classes shown": table, "bone hidden": table.updated(2, visible=False),
             "soft tissue hidden": table.updated(1, visible=False),
             "coloured by class": ClassTable(table.styles, use_class_colors=True),
             "soft tissue at opacity 0.3": table.updated(1, opacity=0.3)}
    ours, vtk = RaymarchRenderer(device="cpu"), VtkRenderer(threads=1)
    print(f"head CT {vol.shape}, {args.size}^2, 4 views (azimuth 0/90/180/270, elevation 15), full quality\n")
    print("| preset | classes | SSIM mean | SSIM min | mean abs diff (grey levels) |")
    print("|---|---|---|---|---|")
    for name in ("CT-Bone", "CT-Muscle", "CT-Soft-Tissue", "CT-AAA"):
        for label, classes in modes.items():
            if name != "CT-Bone" and label not in ("all classes shown", "bone hidden"):
                continue
            scene = Scene(vol, preset(name), classes)
            scores, diffs = [], []
            for az in (0, 90, 180, 270):
                cam = OrbitCamera.framing(vol.bounds, azimuth=az, elevation=15, width=args.size, height=args.size,
                                          margin=0.8)
                a, b = ours.render(scene, cam, FULL), vtk.render(scene, cam, FULL)
                scores.append(ssim_u8(a, b))
                diffs.append(float(np.abs(a.astype(float) - b).mean()))
            print(f"| {name} | {label} | {np.mean(scores):.3f} | {np.min(scores):.3f} | {np.mean(diffs):.1f} |",
                  flush=True)
    vtk.close()


if __name__ == "__main__":
    main()
