"""Segmentation metrics for BraTS-style label maps: Dice and HD95, per class and per region.

Pure functions on boolean masks (:func:`dice`, :func:`hd95`) and on BraTS label maps
(:func:`brats_scores`), plus a small stateful accumulator (:class:`BratsMetric`) in the style of
MONAI's metrics.

Classes are the BraTS labels 1 = NCR, 2 = ED, 3 = ET; regions are WT = {1, 2, 3}, TC = {1, 3},
ET = {3} (:data:`rfmweb.io.brats.BRATS_REGIONS`).

Empty-mask conventions (those of the BraTS challenge evaluation, where an empty structure is a
legitimate answer, e.g. no enhancing tumour):

=====================  ==========  ========================================================
prediction / reference  Dice        HD95
=====================  ==========  ========================================================
both empty              1           0 mm
one of them empty       0           :data:`EMPTY_HD95_MM` = 373.13 mm, the diagonal of the
                                    240 x 240 x 155 mm BraTS volume (the worst possible value)
both non-empty          2|P∩R| /    max(95th percentile of the distances from P's surface
                        (|P| + |R|)  to R's surface, and from R's surface to P's surface), mm
=====================  ==========  ========================================================

(MONAI returns NaN / inf for the empty cases instead; BraTS' penalty values keep means finite.)

Lesion-wise scores (:func:`lesion_scores`, BraTS 2023's ranking metric): each reference lesion is
scored on its own, so a missed small focus counts as much as a missed large one, and every false
positive lesion counts as a 0 (Dice) or the penalty (HD95). Reference lesions are the connected
components (26-connectivity) of the mask dilated :data:`LESION_DILATION` times by the 18-connected
structure, restricted to the mask (nearby fragments are one lesion); a reference lesion is matched
to the union of the predicted components (26-connectivity) that touch it dilated the same way;
reference lesions under :data:`LESION_MIN_VOXELS` voxels are left out; predicted components that
touch no dilated reference lesion are the false positives. Lesion-wise Dice =
``sum(Dice per reference lesion) / (reference lesions + false positives)``, HD95 likewise with the
penalty per false positive; both empty: Dice 1, HD95 0.
Surfaces are the mask voxels with at least one 6-connected neighbour outside the mask (the voxels
removed by one binary erosion), distances are Euclidean between voxel centres in mm (``spacing``),
as in MONAI's ``compute_hausdorff_distance(..., percentile=95)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..io.brats import BRATS_REGIONS

#: HD95 when exactly one of prediction and reference is empty: the BraTS penalty, the diagonal in mm of
#: the 240 x 240 x 155 BraTS grid at 1 mm.
EMPTY_HD95_MM = math.sqrt(240.0 ** 2 + 240.0 ** 2 + 155.0 ** 2)
#: BraTS label value -> class name.
CLASS_LABELS = {"NCR": 1, "ED": 2, "ET": 3}
#: Lesion-wise scores: dilations (18-connected structure) that merge nearby fragments into one lesion.
LESION_DILATION = 3
#: Lesion-wise scores: reference lesions smaller than this (voxels) are not scored.
LESION_MIN_VOXELS = 50


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice coefficient ``2 |P ∩ R| / (|P| + |R|)`` of two boolean masks; 1.0 when both are empty.

    Example:
        >>> dice(np.array([1, 1, 0, 0], bool), np.array([0, 1, 1, 0], bool))
        0.5
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    total = int(pred.sum()) + int(ref.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(pred, ref).sum()) / total


def surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels of a boolean mask: those with a 6-connected neighbour outside (or on the
    edge of the array)."""
    mask = np.asarray(mask, bool)
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (mm) from every surface voxel of ``a`` to the nearest surface voxel of ``b``.

    Both masks must be non-empty. Works on the bounding box of ``a | b`` (exact: all surface voxels
    lie inside it, and Euclidean distances do not depend on the array around them).
    """
    box = ndimage.find_objects((np.asarray(a, bool) | np.asarray(b, bool)).astype(np.uint8))[0]
    box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
    sa, sb = surface(a[box]), surface(b[box])
    dist_to_b = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return dist_to_b[sa]


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """95th-percentile symmetric Hausdorff distance in mm between two boolean masks.

    ``max(P95(d(∂P, ∂R)), P95(d(∂R, ∂P)))``; 0 when both masks are empty and
    :data:`EMPTY_HD95_MM` when exactly one is (the BraTS conventions, see the module docstring).

    Args:
        pred, ref: boolean masks of one shape.
        spacing: voxel size in mm along each axis.
    """
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    p_any, r_any = bool(pred.any()), bool(ref.any())
    if not p_any and not r_any:
        return 0.0
    if not p_any or not r_any:
        return EMPTY_HD95_MM
    spacing = tuple(float(s) for s in spacing)
    return float(max(np.percentile(surface_distances(pred, ref, spacing), 95),
                     np.percentile(surface_distances(ref, pred, spacing), 95)))


def lesion_scores(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0), *,
                  dilation: int = LESION_DILATION, min_voxels: int = LESION_MIN_VOXELS) -> tuple[float, float]:
    """Lesion-wise ``(Dice, HD95 mm)`` of boolean masks ``[X, Y, Z]`` (module docstring, BraTS 2023)."""
    pred, ref = np.asarray(pred, bool), np.asarray(ref, bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    grow = ndimage.generate_binary_structure(3, 2)
    full = ndimage.generate_binary_structure(3, 3)
    merged, _ = ndimage.label(ndimage.binary_dilation(ref, grow, iterations=dilation) if dilation else ref, full)
    lesions = merged * ref                                   # reference voxels, labelled by merged lesion
    pred_cc, _ = ndimage.label(pred, full)
    dices, dists, matched = [], [], set()
    for index in np.unique(lesions[lesions > 0]):
        lesion = lesions == index
        near = ndimage.binary_dilation(lesion, grow, iterations=dilation) if dilation else lesion
        touching = np.unique(pred_cc[near & (pred_cc > 0)])
        matched.update(touching.tolist())
        if lesion.sum() < min_voxels:
            continue
        hit = np.isin(pred_cc, touching) if touching.size else np.zeros_like(pred)
        dices.append(dice(hit, lesion))
        dists.append(hd95(hit, lesion, spacing))
    false_pos = len(set(np.unique(pred_cc[pred_cc > 0]).tolist()) - matched)
    n = len(dices) + false_pos
    if n == 0:
        return 1.0, 0.0
    return float(sum(dices) / n), float((sum(dists) + EMPTY_HD95_MM * false_pos) / n)


def region_mask(labels: np.ndarray, values: Sequence[int]) -> np.ndarray:
    """Boolean mask of the voxels whose label is one of ``values``."""
    return np.isin(labels, np.asarray(values))


def brats_scores(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                 with_hd95: bool = True, lesion_wise: bool = False) -> dict[str, float]:
    """Dice per class and per region, and HD95 per region, of two BraTS label maps.

    Args:
        pred, ref: ``[X, Y, Z]`` integer label maps (0 background, 1 NCR, 2 ED, 3 ET).
        spacing: voxel size in mm.
        with_hd95: also compute HD95 (the slower part).
        lesion_wise: also the lesion-wise Dice and HD95 per region (:func:`lesion_scores`).

    Returns:
        ``{"dice_NCR", "dice_ED", "dice_ET", "dice_WT", "dice_TC", "hd95_WT", "hd95_TC", "hd95_ET"}``
        (class ET and region ET are the same mask, so ``dice_ET`` appears once), and with
        ``lesion_wise`` ``lesion_dice_*`` and ``lesion_hd95_*`` of the regions.
    """
    pred, ref = np.asarray(pred), np.asarray(ref)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    out: dict[str, float] = {}
    for name, value in CLASS_LABELS.items():
        out[f"dice_{name}"] = dice(pred == value, ref == value)
    for name, values in BRATS_REGIONS.items():
        p, r = region_mask(pred, values), region_mask(ref, values)
        out[f"dice_{name}"] = dice(p, r)
        if with_hd95:
            out[f"hd95_{name}"] = hd95(p, r, spacing)
        if lesion_wise:
            out[f"lesion_dice_{name}"], out[f"lesion_hd95_{name}"] = lesion_scores(p, r, spacing)
    return out


class BratsMetric:
    """Accumulates :func:`brats_scores` over cases.

    Example:
        >>> metric = BratsMetric()
        >>> ref = np.zeros((8, 8, 8), np.uint8); ref[2:5, 2:5, 2:5] = 2
        >>> metric.update(ref, ref, spacing=(1, 1, 1), case="a")["dice_WT"]
        1.0
        >>> metric.aggregate()["dice_WT"], len(metric)
        (1.0, 1)
    """

    def __init__(self, with_hd95: bool = True, lesion_wise: bool = False) -> None:
        self.with_hd95 = with_hd95
        self.lesion_wise = lesion_wise
        self.rows: list[dict] = []

    def update(self, pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] = (1.0, 1.0, 1.0),
               case: str | None = None) -> dict[str, float]:
        """Score one case, remember it and return its scores."""
        scores = brats_scores(pred, ref, spacing, with_hd95=self.with_hd95, lesion_wise=self.lesion_wise)
        self.rows.append({"case": case if case is not None else str(len(self.rows)), **scores})
        return scores

    def aggregate(self) -> dict[str, float]:
        """Mean of every score over the cases so far (empty dict before the first update)."""
        if not self.rows:
            return {}
        keys = [k for k in self.rows[0] if k != "case"]
        return {k: float(np.mean([r[k] for r in self.rows])) for k in keys}

    def spread(self) -> dict[str, float]:
        """Standard deviation over the cases of every score, keyed ``std_<score>`` (population std;
        empty dict before the first update)."""
        if not self.rows:
            return {}
        keys = [k for k in self.rows[0] if k != "case"]
        return {f"std_{k}": float(np.std([r[k] for r in self.rows])) for k in keys}

    def reset(self) -> None:
        self.rows.clear()

    def __len__(self) -> int:
        return len(self.rows)
