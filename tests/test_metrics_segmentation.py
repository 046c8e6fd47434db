"""Dice and HD95 (per class and BraTS region) against hand-computed cases and a brute-force oracle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from rfmweb.metrics.segmentation import (EMPTY_HD95_MM, LESION_MIN_VOXELS, BratsMetric, brats_scores, dice, hd95,
                                        lesion_scores, surface)


def cube(shape, lo, hi):
    m = np.zeros(shape, bool)
    m[tuple(slice(a, b) for a, b in zip(lo, hi))] = True
    return m


def test_dice_by_hand():
    a = cube((10, 10, 10), (0, 0, 0), (4, 4, 4))            # 64 voxels
    b = cube((10, 10, 10), (2, 0, 0), (6, 4, 4))            # 64, overlap 32
    assert dice(a, b) == pytest.approx(2 * 32 / 128)
    assert dice(a, a) == 1.0 and dice(a, ~a) == 0.0


def test_empty_conventions_follow_brats():
    empty, full = np.zeros((5, 5, 5), bool), cube((5, 5, 5), (1, 1, 1), (3, 3, 3))
    assert dice(empty, empty) == 1.0 and hd95(empty, empty) == 0.0
    assert dice(full, empty) == 0.0 and dice(empty, full) == 0.0
    assert hd95(full, empty) == hd95(empty, full) == EMPTY_HD95_MM == pytest.approx(373.1287, abs=1e-4)


def test_hd95_of_shifted_cubes_uses_the_spacing():
    a = cube((20, 20, 20), (5, 5, 5), (10, 10, 10))
    b = np.roll(a, 3, axis=0)
    assert hd95(a, b) == pytest.approx(3.0)
    assert hd95(a, b, spacing=(2.0, 1.0, 1.0)) == pytest.approx(6.0)
    assert hd95(a, a) == 0.0


def brute_hd95(a, b, spacing):
    pa = np.argwhere(surface(a)) * np.asarray(spacing)
    pb = np.argwhere(surface(b)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return max(np.percentile(d.min(1), 95), np.percentile(d.min(0), 95))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hd95_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = rng.random((14, 12, 10)) < 0.15
    b = rng.random((14, 12, 10)) < 0.15
    a[3:8, 3:8, 3:6] = True
    spacing = (1.0, 1.5, 2.5)
    assert hd95(a, b, spacing) == pytest.approx(brute_hd95(a, b, spacing))


def test_surface_is_the_boundary_shell():
    a = cube((7, 7, 7), (1, 1, 1), (6, 6, 6))
    s = surface(a)
    assert s.sum() == 5 ** 3 - 3 ** 3 and not s[3, 3, 3]


def test_brats_scores_classes_and_regions():
    ref = np.zeros((12, 12, 12), np.uint8)
    ref[2:10, 2:10, 2:10] = 2          # ED
    ref[4:8, 4:8, 4:8] = 3             # ET
    ref[5:7, 5:7, 5:7] = 1             # NCR
    pred = ref.copy()
    pred[pred == 1] = 3                # necrosis called enhancing
    s = brats_scores(pred, ref, spacing=(1, 1, 1))
    assert s["dice_WT"] == 1.0 and s["dice_TC"] == 1.0 and s["hd95_WT"] == 0.0
    assert s["dice_NCR"] == 0.0 and s["dice_ED"] == 1.0
    n_et, n_ncr = 64 - 8, 8
    assert s["dice_ET"] == pytest.approx(2 * n_et / (n_et + n_et + n_ncr))
    assert s["hd95_ET"] >= 0
    assert set(s) == {"dice_NCR", "dice_ED", "dice_ET", "dice_WT", "dice_TC", "hd95_WT", "hd95_TC", "hd95_ET"}
    no_core = np.where(ref == 2, 2, 0).astype(np.uint8)
    s2 = brats_scores(no_core, no_core)
    assert s2["dice_TC"] == s2["dice_ET"] == s2["dice_NCR"] == 1.0 and s2["hd95_TC"] == 0.0


def test_accumulator_means_over_cases():
    ref = np.zeros((8, 8, 8), np.uint8)
    ref[2:6, 2:6, 2:6] = 2
    metric = BratsMetric(with_hd95=False)
    assert metric.aggregate() == {}
    metric.update(ref, ref, case="perfect")
    metric.update(np.zeros_like(ref), ref, case="missed")
    agg = metric.aggregate()
    assert len(metric) == 2 and agg["dice_WT"] == pytest.approx(0.5) and "hd95_WT" not in agg
    assert [r["case"] for r in metric.rows] == ["perfect", "missed"]
    metric.reset()
    assert len(metric) == 0


def test_shape_mismatch_raises():
    with pytest.raises(ValueError, match="shape"):
        dice(np.zeros((2, 2, 2), bool), np.zeros((2, 2, 3), bool))



def test_lesion_wise_scores_count_every_lesion_and_false_positive():
    shape = (60, 60, 30)
    empty = np.zeros(shape, bool)
    a, b = cube(shape, (5, 5, 5), (10, 10, 10)), cube(shape, (40, 40, 5), (45, 45, 10))
    ref = a | b
    # one of two equal lesions found: voxel Dice 2/3, lesion-wise 1/2 and the penalty for the miss
    dice_lw, hd_lw = lesion_scores(a, ref)
    assert dice(a, ref) == pytest.approx(2 / 3) and dice_lw == pytest.approx(0.5)
    assert hd_lw == pytest.approx(EMPTY_HD95_MM / 2)
    # both found plus a far false positive: (1 + 1 + 0) / 3
    fp = cube(shape, (5, 45, 20), (9, 49, 24))
    dice_lw, hd_lw = lesion_scores(ref | fp, ref)
    assert dice_lw == pytest.approx(2 / 3) and hd_lw == pytest.approx(EMPTY_HD95_MM / 3)
    # a reference lesion under LESION_MIN_VOXELS (27 voxels) is not scored, missed or not
    small = cube(shape, (20, 5, 20), (23, 8, 23))
    assert small.sum() < LESION_MIN_VOXELS and lesion_scores(a, a | small) == (1.0, 0.0)
    # fragments within the dilation distance are one lesion
    near = cube(shape, (5, 12, 5), (10, 17, 10))       # 2 voxels from a
    assert lesion_scores(a, a | near)[0] == pytest.approx(dice(a, a | near))
    assert lesion_scores(empty, empty) == (1.0, 0.0) and lesion_scores(fp, empty) == (0.0, EMPTY_HD95_MM)


def test_brats_scores_lesion_wise_keys_and_spread():
    ref = np.zeros((30, 30, 20), np.uint8)
    ref[5:15, 5:15, 5:15] = 2
    ref[8:12, 8:12, 8:12] = 3
    s = brats_scores(ref, ref, lesion_wise=True)
    assert s["lesion_dice_WT"] == 1.0 and s["lesion_hd95_ET"] == 0.0 and "lesion_dice_TC" in s
    metric = BratsMetric(with_hd95=False, lesion_wise=True)
    metric.update(ref, ref)
    metric.update(np.zeros_like(ref), ref)
    assert metric.spread()["std_dice_WT"] == pytest.approx(0.5) and metric.aggregate()["lesion_dice_WT"] == 0.5
