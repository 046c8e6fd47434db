"""The CNN baseline (rfmweb.inr.cnn) and ``rfmweb evaluate-inr`` (rfmweb.inr.evaluate) on tiny cases."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from rfmweb.cli import main
from rfmweb.data.cohort import find_cases, make_cohort
from rfmweb.errors import InputError
from rfmweb.inr import default_checkpoint, denoise_labels, load_model, segment_volume
from rfmweb.inr.cnn import (CNNTrainConfig, ce_dice_loss, crop_case, deep_supervision_loss, gaussian_importance,
                            load_cnn, sample_patch, segment_cnn, train_cnn, window_starts)
from rfmweb.inr.evaluate import CASE_COLUMNS, SCORES, TABLE_COLUMNS, evaluate_inr, size_bands
from rfmweb.io.brats import load_brats_case
from rfmweb.metrics.segmentation import BratsMetric


@pytest.fixture(scope="module")
def splits(tmp_path_factory):
    """Two tiny splits at 6 mm (33 x 39 x 32): 2 validation cases, 1 post-operative case."""
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root / "val", 2, "val", seed=0, resolution_mm=6.0, progress=False)
    make_cohort(root / "postop", 1, "postop", seed=0, resolution_mm=6.0, progress=False)
    return {"val": root / "val", "postop": root / "postop"}


@pytest.fixture(scope="module")
def cnn_run(splits, tmp_path_factory):
    """A tiny U-Net trained 3 steps."""
    out = tmp_path_factory.mktemp("cnn")
    torch.manual_seed(0)
    summary = train_cnn(CNNTrainConfig(cases=str(splits["val"]), out=str(out), steps=3, patch=16, batch=2,
                                       features=(4, 8, 16), checkpoint_every=2, log_every=1, progress=False))
    return out, summary


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_train_cnn_writes_a_resumable_run(cnn_run, splits):
    out, summary = cnn_run
    assert {p.name for p in out.iterdir()} >= {"checkpoint.pt", "model.pt", "log.csv", "config.json", "summary.json"}
    assert summary["steps"] == 3
    assert summary["parameters"] == sum(p.numel() for p in load_cnn(out / "model.pt").parameters())
    assert [int(r["step"]) for r in _csv(out / "log.csv")] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss"])) for r in _csv(out / "log.csv"))
    cfg = dict(cases=str(splits["val"]), out=str(out), steps=4, patch=16, batch=2, features=(4, 8, 16),
               log_every=1, progress=False)
    with pytest.raises(InputError, match="--resume"):
        train_cnn(CNNTrainConfig(**cfg))
    train_cnn(CNNTrainConfig(**cfg, resume=True))             # continues at step 3, one more step
    assert [int(r["step"]) for r in _csv(out / "log.csv")] == [1, 2, 3, 4]
    assert load_cnn(out / "model.pt").info["steps"] == 4


def test_train_cnn_init_starts_from_a_model_files_weights(cnn_run, splits, tmp_path):
    out, _ = cnn_run
    trained, trained_steps = load_cnn(out / "model.pt").state_dict(), load_cnn(out / "model.pt").info["steps"]
    cfg = dict(cases=str(splits["val"]), steps=1, patch=16, batch=2, features=(4, 8, 16), lr=1e-12,
               log_every=1, progress=False)
    train_cnn(CNNTrainConfig(**cfg, out=str(tmp_path / "init"), init=str(out / "model.pt")))
    train_cnn(CNNTrainConfig(**cfg, out=str(tmp_path / "fresh")))
    assert load_cnn(tmp_path / "init" / "model.pt").info["steps_before"] == trained_steps >= 3
    assert load_cnn(tmp_path / "fresh" / "model.pt").info["steps_before"] == 0
    started = load_cnn(tmp_path / "init" / "model.pt").state_dict()
    fresh = load_cnn(tmp_path / "fresh" / "model.pt").state_dict()
    for name, value in trained.items():
        torch.testing.assert_close(started[name], value, atol=1e-8, rtol=0)
    assert any(not torch.allclose(fresh[n], v) for n, v in trained.items())
    with pytest.raises(InputError, match="--init file's U-Net differs"):
        train_cnn(CNNTrainConfig(**{**cfg, "features": (4, 8)}, out=str(tmp_path / "bad"),
                                 init=str(out / "model.pt")))
    with pytest.raises(InputError, match="no such --init"):
        train_cnn(CNNTrainConfig(**cfg, out=str(tmp_path / "gone"), init=str(tmp_path / "missing.pt")))


def test_sliding_window_pieces():
    assert window_starts(100, 48, 0.5) == [0, 17, 35, 52]
    assert window_starts(30, 48, 0.5) == [0]
    for n, p in ((37, 16), (64, 16), (17, 16)):
        starts = window_starts(n, p, 0.5)
        assert starts[0] == 0 and starts[-1] == n - p and max(np.diff(starts), default=0) <= p // 2
    w = gaussian_importance(16)
    assert float(w.max()) == 1.0 and float(w.min()) > 0
    torch.testing.assert_close(w, w.flip([0]).flip([1]).flip([2]))


def test_loss_against_hand_values():
    target = torch.zeros(1, 2, 2, 2, dtype=torch.int64)
    target[0, 0, 0, :] = torch.tensor([1, 3])                       # 1 NCR, 1 ET voxel, no ED
    uniform = torch.zeros(1, 4, 2, 2, 2)
    # CE = log 4; soft Dice per class c in 1..3 = 2 * (n_c / 4) / (8 / 4 + n_c) with n = (1, 0, 1)
    dice = [2 * 0.25 / 3, 0.0, 2 * 0.25 / 3]
    expected = float(np.log(4)) + 1 - np.mean(dice)
    assert float(ce_dice_loss(uniform, target)) == pytest.approx(expected, abs=1e-4)
    perfect = 50.0 * torch.nn.functional.one_hot(target, 4).movedim(-1, 1).float()
    assert float(ce_dice_loss(perfect, target)) == pytest.approx(0.0, abs=1e-4)   # ED: absent and not predicted
    # deep supervision: weights 2/3, 1/3 on the full and the every-2nd-voxel target
    coarse = uniform[:, :, :1, :1, :1]
    mixed = deep_supervision_loss([perfect, coarse], target)
    assert float(mixed) == pytest.approx(float(ce_dice_loss(coarse, target[:, ::2, ::2, ::2])) / 3, abs=1e-4)


def test_foreground_patches_are_centred_on_tumour(splits):
    vol = load_brats_case(find_cases(splits["val"])[0])
    case = crop_case(vol.data, vol.labels, vol.name)
    rng = np.random.default_rng(0)
    for _ in range(5):
        image, labels = sample_patch(case, 8, True, rng)
        assert image.shape == (4, 8, 8, 8) and labels.shape == (8, 8, 8) and labels[4, 4, 4] > 0
    image, labels = sample_patch(case, 64, False, rng)               # larger than the crop: zero padding
    assert int((labels > 0).sum()) == int((vol.labels > 0).sum())
    assert float(image.abs().sum()) == pytest.approx(float(case.image.abs().sum()), rel=1e-5)


def test_one_window_equals_the_network(cnn_run, splits):
    """With a window larger than the brain, sliding-window inference is the network's argmax on the crop."""
    model = load_cnn(cnn_run[0] / "model.pt")
    vol = load_brats_case(find_cases(splits["val"])[0])
    labels = segment_cnn(model, vol, patch=48, precision="fp32")
    case = crop_case(vol.data)
    crop = tuple(slice(0, n) for n in case.image.shape[1:])
    x = torch.zeros(4, 48, 48, 48)
    x[(slice(None),) + crop] = case.image
    with torch.no_grad():
        ref = model(x[None])[0].argmax(0).numpy()[crop]
    ref[~case.brain] = 0
    expected = np.zeros(vol.shape, np.uint8)
    expected[case.box] = ref
    np.testing.assert_array_equal(labels, expected)
    half = segment_cnn(model, vol, patch=48, precision="bf16")        # autocast: the same labels almost everywhere
    assert len(np.unique(expected[case.box][case.brain])) >= 2
    assert float((half == expected)[case.box][case.brain].mean()) > 0.97
    with pytest.raises(InputError, match="precision"):
        segment_cnn(model, vol, precision="fp16")


def test_bf16_training_follows_fp32(splits, tmp_path):
    """bf16 autocast trains the same network on the same batches: its losses track fp32's."""
    losses = {}
    for precision in ("fp32", "bf16"):
        torch.manual_seed(0)
        summary = train_cnn(CNNTrainConfig(cases=str(splits["val"]), out=str(tmp_path / precision), steps=3, patch=16,
                                           batch=2, features=(4, 8, 16), log_every=1, precision=precision,
                                           progress=False))
        assert summary["precision"] == precision
        losses[precision] = [float(r["loss"]) for r in _csv(tmp_path / precision / "log.csv")]
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.03)
    assert losses["bf16"] != losses["fp32"]          # autocast did run: bf16 rounds the losses a little
    with pytest.raises(InputError, match="--precision"):
        CNNTrainConfig(cases="x", out="y", precision="fp16").validate()


def _direct(split_dir, segment, fill_holes):
    """Mean raw and denoised BratsMetric scores, computed here without evaluate-inr."""
    raw, den = BratsMetric(), BratsMetric()
    for folder in find_cases(split_dir):
        vol = load_brats_case(folder)
        pred = segment(vol)
        raw.update(pred, vol.labels, vol.spacing, vol.name)
        den.update(denoise_labels(pred, spacing=vol.spacing, fill_holes=fill_holes), vol.labels, vol.spacing, vol.name)
    return raw.aggregate(), den.aggregate()


def test_evaluate_inr_table_matches_direct_metrics(cnn_run, splits, tmp_path):
    cnn_path = cnn_run[0] / "model.pt"
    out = tmp_path / "eval"
    table = evaluate_inr({k: str(v) for k, v in splits.items()}, out,
                         inrs={"shipped": None, "again": str(default_checkpoint())}, cnn=str(cnn_path),
                         no_fill={"postop"}, progress=False)
    rows = _csv(out / "table.csv")
    assert tuple(rows[0]) == TABLE_COLUMNS and len(rows) == len(table) == 2 * 3 * 2   # splits x models x variants
    assert [(r["split"], r["model"], r["variant"]) for r in rows[:6]] == [
        ("val", m, v) for m in ("shipped", "again", "cnn") for v in ("raw", "denoised")]
    cases = _csv(out / "per_case.csv")
    assert tuple(cases[0]) == CASE_COLUMNS and len(cases) == (2 + 1) * 3 * 2
    by = {(r["split"], r["model"], r["variant"]): r for r in rows}
    inr, cnn = load_model(), load_cnn(cnn_path)
    for split, folder in splits.items():
        fill = split != "postop"
        inr_raw, inr_den = _direct(folder, lambda v: segment_volume(inr, v, device="cpu"), fill)
        cnn_raw, cnn_den = _direct(folder, lambda v: segment_cnn(cnn, v), fill)
        for model, variant, ref in (("shipped", "raw", inr_raw), ("again", "denoised", inr_den),
                                    ("cnn", "raw", cnn_raw), ("cnn", "denoised", cnn_den)):
            row = by[(split, model, variant)]
            for key in SCORES:
                assert float(row[key]) == pytest.approx(ref[key], abs=2e-6), (split, model, variant, key)
        row = by[(split, "shipped", "denoised")]
        assert int(row["parameters"]) == 262_020
        assert float(row["wt_ratio_vs_cnn"]) == pytest.approx(
            inr_den["dice_WT"] / max(cnn_raw["dice_WT"], cnn_den["dice_WT"]), abs=1e-5)
        assert float(row["param_ratio_vs_cnn"]) == pytest.approx(int(by[(split, "cnn", "raw")]["parameters"]) / 262_020,
                                                                 rel=1e-5)
        assert row["goal_met"] in ("yes", "no") and by[(split, "shipped", "raw")]["goal_met"] == ""
        assert by[(split, "cnn", "raw")]["wt_ratio_vs_cnn"] == ""
        assert float(row["infer_s"]) > 0 and float(row["infer_cpu_s"]) > 0 and float(row["denoise_s"]) > 0
    for r in cases:                                    # the ground truth's whole-tumour volume
        vol = load_brats_case(Path(splits[r["split"]]) / r["case"])
        assert float(r["wt_ml"]) == pytest.approx(np.count_nonzero(vol.labels) * np.prod(vol.spacing) / 1000, abs=1e-6)
    bands = {(b["split"], b["model"], b["variant"]): b["bands"] for b in size_bands(
        [{**r, "wt_ml": float(r["wt_ml"]), "dice_WT": float(r["dice_WT"])} for r in cases])}
    assert len(bands) == 12 and [label for label, _, _ in bands[("val", "cnn", "raw")]] == [
        "< 10 mL", "10-50 mL", ">= 50 mL"]
    for key, rows_of_key in bands.items():
        mine = [r for r in cases if (r["split"], r["model"], r["variant"]) == key]
        assert sum(n for _, n, _ in rows_of_key) == len(mine)
        for (_, n, mean), lo, hi in zip(rows_of_key, (0, 10, 50), (10, 50, np.inf)):
            dice = [float(r["dice_WT"]) for r in mine if lo <= float(r["wt_ml"]) < hi]
            assert n == len(dice) and (mean == pytest.approx(np.mean(dice), abs=1e-6) if dice else np.isnan(mean))
    text = (out / "table.md").read_text()
    # 6 score rows + 2 goal rows + 6 size-band rows per split
    assert text.count("\n| val |") == text.count("\n| postop |") == 6 + 2 + 6
    assert "## WT Dice by whole-tumour volume" in text
    # every Dice column, Dice ED and the lesion-wise TC and ET included, with its spread over the cases
    first = next(line for line in text.splitlines() if line.startswith("| val |"))
    assert first.count(" +- ") == 8, first
    assert "not shipped" in text and "CPU-limited" in text and "without hole filling on postop" in text


def test_evaluate_inr_bad_paths(splits, tmp_path, capsys):
    good = str(splits["val"])
    with pytest.raises(InputError, match="nowhere"):
        evaluate_inr({"val": str(tmp_path / "nowhere")}, tmp_path / "o", progress=False)
    with pytest.raises(InputError, match="missing.pt"):
        evaluate_inr({"val": good}, tmp_path / "o", inrs={"a": str(tmp_path / "missing.pt")}, progress=False)
    with pytest.raises(InputError, match="--no-fill-holes"):
        evaluate_inr({"val": good}, tmp_path / "o", no_fill={"postop"}, progress=False)
    with pytest.raises(InputError, match="not a CNN checkpoint"):
        evaluate_inr({"val": good}, tmp_path / "o", cnn=str(default_checkpoint()), progress=False)
    assert not (tmp_path / "o").exists()
    assert main(["evaluate-inr", "--split", f"val={tmp_path / 'absent'}", "--out", str(tmp_path / "o")]) == 2
    assert str(tmp_path / "absent") in capsys.readouterr().err
    assert main(["evaluate-inr", "--split", "val", "--out", str(tmp_path / "o")]) == 2
    assert "NAME=PATH" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_a_bad_case_in_the_last_split_is_named_before_any_scoring(splits, tmp_path, monkeypatch):
    """Labels 5 and 255 in the second split's case were reported after the first split was scored."""
    import shutil

    import nibabel as nib

    from rfmweb.inr import evaluate as evaluate_mod

    bad = tmp_path / "bad"
    shutil.copytree(splits["postop"], bad)
    seg = next(bad.glob("*/*-seg.nii.gz"))
    img = nib.load(seg)
    labels = np.asarray(img.dataobj).astype(np.uint8)
    labels[labels == 2] = 5
    nib.save(nib.Nifti1Image(labels, img.affine), seg)
    scored = []
    monkeypatch.setattr(evaluate_mod, "_segment", lambda *a: scored.append(a) or None)
    with pytest.raises(InputError) as err:
        evaluate_inr({"val": str(splits["val"]), "bad": str(bad)}, tmp_path / "o", progress=False)
    assert err.value.path == str(seg) and not scored

