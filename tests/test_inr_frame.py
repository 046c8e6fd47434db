"""Where a case sits in the INR's coordinates: the grid it was trained on reads as trained; any other
grid (padding, a crop, another field of view) is placed by the brain's bounding box, so the same
anatomy gets the same answer whatever the array around it."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rfmweb.data.cohort import cohort_case, make_cohort
from rfmweb.inr import load_model, segment_volume
from rfmweb.inr.checkpoint import default_checkpoint
from rfmweb.inr.sampling import CaseBank, prepare_case
from rfmweb.models.inr import NeumoursINR
from rfmweb.io import load_brats_case
from rfmweb.metrics.segmentation import brats_scores
from rfmweb.models.inr import brain_mask, case_frame, spacing_note, to_unit, voxel_to_unit
from rfmweb.volume import Volume

FRAME = {"grid": [20, 30, 40], "brain_box": [[-0.5, -0.6, -0.9], [0.5, 0.7, 0.8]]}


def test_the_training_grid_reads_as_trained_and_another_by_its_brain_box():
    box = (slice(2, 17), slice(4, 26), slice(0, 40))
    assert case_frame(FRAME, (20, 30, 40), box) is None and case_frame(None, (99, 9, 9), box) is None
    frame = case_frame(FRAME, (50, 30, 40), (slice(10, 31), slice(4, 26), slice(5, 15)))
    corners = torch.tensor([[10.0, 4, 5], [30, 25, 14]], dtype=torch.float64)
    np.testing.assert_allclose(to_unit(corners, (50, 30, 40), frame).numpy(), FRAME["brain_box"], atol=1e-12)
    points = torch.rand(5, 3, dtype=torch.float64) * 19
    assert torch.equal(to_unit(points, (20, 30, 40), None), voxel_to_unit(points, (20, 30, 40)))


def _shifted(volume: Volume, pad: tuple, crop: tuple | None = None) -> Volume:
    """``volume`` zero-padded by ``pad`` (per axis, before/after) or cropped to ``crop`` slices: the same
    voxels at the same world positions."""
    data, labels, affine = volume.data, volume.labels, volume.affine.copy()
    if crop is not None:
        data, labels = data[(slice(None), *crop)], labels[crop]
        start = np.array([c.start for c in crop])
    else:
        data, labels = np.pad(data, ((0, 0), *pad)), np.pad(labels, pad)
        start = -np.array([p[0] for p in pad])
    affine[:3, 3] += affine[:3, :3] @ start
    return Volume(data, affine, modality="MR", channels=volume.channels, labels=labels, classes=volume.classes)


@pytest.mark.skipif(not default_checkpoint().exists(), reason="shipped checkpoint not built yet")
def test_padding_or_cropping_a_case_does_not_change_the_shipped_models_answer(caplog):
    """By the grid's extent, 20 voxels of zero padding on one side took the whole-tumour Dice of this
    case from 0.73 to 0.09 and a crop to the brain to 0.08 (the walkthrough's measurements)."""
    model = load_model()
    assert model.info["frame"]["grid"] == [99, 117, 95]
    volume, _ = cohort_case("val", 1, 0, 2.0)
    on_grid = segment_volume(model, volume, device="cpu", precision="fp32")
    idx = np.argwhere(brain_mask(volume.data))
    box = tuple(slice(max(int(a) - 2, 0), int(b) + 3) for a, b in zip(idx.min(0), idx.max(0)))
    padded, cropped = _shifted(volume, ((20, 0), (0, 0), (3, 7))), _shifted(volume, (), box)
    with caplog.at_level(logging.INFO, logger="rfmweb.inr.infer"):
        out_pad = segment_volume(model, padded, device="cpu", precision="fp32")
        out_crop = segment_volume(model, cropped, device="cpu", precision="fp32")
    assert "not the one the model was trained on" in caplog.text
    # the same anatomy reads the same coordinates and patches: the same labels on the same voxels
    assert np.array_equal(out_pad[20:, :, 3:-7][box], out_crop)
    dice = [brats_scores(p, v.labels, v.spacing, with_hd95=False)["dice_WT"]
            for p, v in ((on_grid, volume), (out_pad, padded))]
    assert dice[1] > dice[0] - 0.1 and dice[1] > 0.6, dice


def test_training_records_where_the_brains_lay_and_warns_of_mixed_grids(tmp_path, caplog):
    make_cohort(tmp_path / "c", 2, "train", seed=5, resolution_mm=4.0, progress=False)
    volumes = [load_brats_case(p, require_seg=True) for p in sorted((tmp_path / "c").iterdir()) if p.is_dir()]
    bank = CaseBank([prepare_case(v) for v in volumes])
    assert bank.frame["grid"] == list(volumes[0].shape) and bank.frame["spacing_mm"] == [4.0, 4.0, 4.0]
    units = []
    for v in volumes:
        mask = brain_mask(v.data) | (v.labels > 0)
        idx = np.argwhere(mask)
        units.append(2.0 * np.stack([idx.min(0), idx.max(0)]) / (np.array(v.shape) - 1) - 1.0)
    np.testing.assert_allclose(bank.frame["brain_box"], np.mean(units, axis=0), atol=1e-6)
    with caplog.at_level(logging.WARNING):
        mixed = CaseBank([prepare_case(volumes[0]), prepare_case(_shifted(volumes[1], ((4, 0), (0, 0), (0, 0))))])
    assert mixed.frame is None and "the training cases lie on 2 different grids" in caplog.text


def test_a_case_of_another_voxel_size_is_warned_of(caplog):
    """A 1 mm case read by the 2 mm model: whole-tumour Dice 0.06, and nothing said so."""
    frame = {**FRAME, "spacing_mm": [2.0, 2.0, 2.0]}
    assert spacing_note(frame, (2.1, 1.9, 2.0)) is None and spacing_note(None, (1.0, 1.0, 1.0)) is None
    assert spacing_note(frame, (1.0, 1.0, 1.0)).startswith("the model was trained on 2 x 2 x 2 mm voxels and this "
                                                           "case has 1 x 1 x 1 mm")
    model = NeumoursINR().eval()
    model.info = {"frame": frame}
    volume, _ = cohort_case("val", 0, 0, 4.0)
    with caplog.at_level(logging.WARNING, logger="rfmweb.inr.infer"):
        segment_volume(model, volume, device="cpu", precision="fp32")
    assert "this case has 4 x 4 x 4 mm" in caplog.text
