"""Post-processing of a predicted BraTS label map: drop specks, fill holes, keep sub-labels.

1. Whole tumour ``WT = labels > 0``; its 26-connected components; keep the largest and every other
   component of at least ``min_volume_mm3`` (a satellite lesion), drop the rest (isolated false
   positives of a per-voxel classifier).
2. Fill the holes of the kept whole tumour in 3-D (``scipy.ndimage.binary_fill_holes``): the
   filling is done on the whole tumour, not per class -- filling each class separately would turn
   everything the edema shell encloses into edema, and filling the core would swallow the edema.
3. Reassign sub-labels inside the filled tumour: voxels that were labelled keep their label; a
   filled hole takes the label of the nearest labelled voxel (Euclidean, in mm).

Everything runs on the bounding box of the whole tumour, so the cost does not grow with the
volume (a few tens of ms for a 240 x 240 x 155 case).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage

_FULL = np.ones((3, 3, 3), bool)      # 26-connectivity


def denoise_labels(labels: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                   min_volume_mm3: float = 500.0, fill_holes: bool = True) -> np.ndarray:
    """Connected-component filtering and hole filling of a BraTS label map.

    Args:
        labels: ``[X, Y, Z]`` integer labels (0 background, 1 NCR, 2 ED, 3 ET).
        spacing: voxel size in mm (for the component volume and the nearest-label distance).
        min_volume_mm3: components smaller than this are removed unless they are the largest
            (500 mm^3 = 0.5 ml, 500 voxels at 1 mm, 62 at 2 mm).
        fill_holes: fill enclosed holes. Turn off for post-operative scans: a resection cavity
            enclosed by residual enhancement or edema is not tumour, and filling would label it.

    Returns:
        A new ``[X, Y, Z]`` uint8 label map.
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, np.uint8)
    wt = labels > 0
    box = _bbox(wt)
    if box is None:
        return out
    # 1. components, on the bounding box of the whole tumour; sizes from the tumour voxels only
    comp, _ = ndimage.label(wt[box], structure=_FULL)
    where = np.nonzero(comp)
    ids = comp[where]
    sizes = np.bincount(ids)
    sizes[0] = 0
    keep_ids = sizes * float(np.prod(spacing)) >= min_volume_mm3
    keep_ids[int(np.argmax(sizes))] = True
    keep_ids[0] = False
    keep = keep_ids[ids]
    # 2.-3. fill and relabel on the (usually much smaller) box of the kept components
    coords = [w[keep] + s.start for w, s in zip(where, box)]
    lo = [max(int(c.min()) - 1, 0) for c in coords]
    hi = [min(int(c.max()) + 2, n) for c, n in zip(coords, labels.shape)]
    small = tuple(slice(a, b) for a, b in zip(lo, hi))
    local = tuple(c - a for c, a in zip(coords, lo))
    kept = np.zeros([b - a for a, b in zip(lo, hi)], bool)
    kept[local] = True
    kept_labels = np.zeros(kept.shape, np.uint8)
    kept_labels[local] = labels[tuple(coords)]
    holes = ndimage.binary_fill_holes(kept) & ~kept if fill_holes else np.zeros_like(kept)
    hbox = _bbox(holes)
    if hbox is not None:
        # The nearest labelled voxel of a hole voxel borders the hole, so it lies in the holes'
        # bounding box grown by one voxel: the distance transform runs on that box only.
        hbox = tuple(slice(max(b.start - 1, 0), min(b.stop + 1, n)) for b, n in zip(hbox, kept.shape))
        _, nearest = ndimage.distance_transform_edt(~kept[hbox], sampling=tuple(float(s) for s in spacing),
                                                    return_indices=True)
        hole = np.nonzero(holes[hbox])
        sub = kept_labels[hbox]
        sub[hole] = sub[tuple(nearest[a][hole] for a in range(3))]
    out[small] = kept_labels
    return out


def _bbox(mask: np.ndarray) -> tuple[slice, ...] | None:
    """Bounding box of a boolean mask from its axis projections (cheap), or ``None`` when empty."""
    box = []
    for axis in range(mask.ndim):
        others = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(np.any(mask, axis=others))
        if hit.size == 0:
            return None
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)
