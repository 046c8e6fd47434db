"""The shipped Neumours model on one case laid out on other grids: the same voxels padded, cropped,
or resampled into a BraTS-sized field of view; the network's coordinates by the grid's extent (the
anchor: the checkpoint without its recorded frame) vs placed by the brain's bounding box.

    .venv/bin/python benchmarks/bench_inr_grids.py [--cases 4]

Prints a markdown table of whole-tumour / enhancing-tumour Dice (raw labels, fp32) per layout, the
mean over ``--cases`` unseen validation cases (cohort seed 1, 2 mm).
"""

from __future__ import annotations

import argparse
import copy
import logging

import numpy as np
from scipy import ndimage

from rfmweb.data.cohort import cohort_case
from rfmweb.inr import load_model, segment_volume
from rfmweb.metrics.segmentation import brats_scores
from rfmweb.models.inr import brain_mask
from rfmweb.volume import Volume


def _like(volume: Volume, data: np.ndarray, labels: np.ndarray, affine: np.ndarray) -> Volume:
    return Volume(data, affine, modality="MR", channels=volume.channels, labels=labels, classes=volume.classes)


def padded(volume: Volume, pad: tuple) -> Volume:
    """``volume`` zero-padded by ``pad`` ``((before, after),) * 3``: the same voxels at the same places."""
    affine = volume.affine.copy()
    affine[:3, 3] -= affine[:3, :3] @ np.array([p[0] for p in pad])
    return _like(volume, np.pad(volume.data, ((0, 0), *pad)), np.pad(volume.labels, pad), affine)


def cropped(volume: Volume, margin: int = 2) -> Volume:
    """``volume`` cropped to its brain's bounding box and ``margin`` voxels."""
    idx = np.argwhere(brain_mask(volume.data))
    box = tuple(slice(max(int(a) - margin, 0), int(b) + margin + 1) for a, b in zip(idx.min(0), idx.max(0)))
    affine = volume.affine.copy()
    affine[:3, 3] += affine[:3, :3] @ np.array([b.start for b in box])
    return _like(volume, volume.data[(slice(None), *box)], volume.labels[box], affine)


def field_of_view(volume: Volume, shape: tuple[int, int, int], spacing: float) -> Volume:
    """``volume`` resampled (images trilinear, labels nearest) onto a ``shape`` grid of ``spacing`` mm
    centred on it: BraTS's 240 x 240 x 155 at 1 mm is (240, 240, 155), 1.0."""
    step = spacing / np.asarray(volume.spacing)
    centre_in = (np.asarray(volume.shape) - 1) / 2
    start = centre_in - step * (np.asarray(shape) - 1) / 2
    grid = np.stack(np.meshgrid(*[s + d * np.arange(n) for s, d, n in zip(start, step, shape)], indexing="ij"))
    data = np.stack([ndimage.map_coordinates(c, grid, order=1, mode="constant") for c in volume.data])
    labels = ndimage.map_coordinates(volume.labels, grid, order=0, mode="constant")
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * step
    affine[:3, 3] = volume.affine[:3, :3] @ start + volume.affine[:3, 3]
    return _like(volume, data, labels, affine)


LAYOUTS = {
    "the cohort grid (99 x 117 x 95, 2 mm)": lambda v: v,
    "10 voxels of zero padding each side in x": lambda v: padded(v, ((10, 10), (0, 0), (0, 0))),
    "20 voxels of zero padding on one side": lambda v: padded(v, ((20, 0), (0, 0), (0, 0))),
    "cropped to the brain (+2 voxels)": cropped,
    "BraTS's field of view at 2 mm (120 x 120 x 78)": lambda v: field_of_view(v, (120, 120, 78), 2.0),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=4, help="unseen validation cases (cohort seed 1)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    placed = load_model()
    extent = copy.deepcopy(placed)
    extent.info = {k: v for k, v in placed.info.items() if k != "frame"}
    scores = {name: {"extent": [], "placed": []} for name in LAYOUTS}
    for i in range(args.cases):
        case, _ = cohort_case("val", 1, i, 2.0)
        for name, layout in LAYOUTS.items():
            volume = layout(case)
            for kind, model in (("extent", extent), ("placed", placed)):
                labels = segment_volume(model, volume, device="cpu", precision="fp32")
                s = brats_scores(labels, volume.labels, volume.spacing, with_hd95=False)
                scores[name][kind].append((s["dice_WT"], s["dice_ET"]))
    print("| case laid out on | by the grid's extent (before): WT / ET | by the brain's box (now): WT / ET |")
    print("|---|---|---|")
    for name, by in scores.items():
        cells = [" / ".join(f"{m:.3f}" for m in np.mean(by[k], axis=0)) for k in ("extent", "placed")]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
