"""Neumours training: loss, schedule, optimisers, a few steps on tiny cases, resume, DDP (2 gloo ranks)."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys

import pytest
import torch

from rfmweb.data.cohort import find_cases, make_cohort
from rfmweb.errors import InputError
from rfmweb.inr import train as train_mod
from rfmweb.inr.checkpoint import load_checkpoint, load_model
from rfmweb.inr.sampling import CaseBank, prepare_case
from rfmweb.io import load_brats_case
from rfmweb.inr.train import TrainConfig, build_optimizers, learning_rate, neumours_loss, train
from rfmweb.models.inr import NeumoursINR, gather_patches, normalise_modalities, pad_volume, voxel_to_unit

RES = 4.0
TINY = dict(batch=1024, micro_batches=4, warmup=0, log_every=1, val_every=1000, checkpoint_every=1000,
            progress=False, device="cpu", max_val_cases=1)


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("inr_cases")
    make_cohort(root / "train", 2, "train", seed=5, resolution_mm=RES, progress=False)
    make_cohort(root / "val", 1, "val", seed=5, resolution_mm=RES, progress=False)
    return root


def test_loss_matches_its_formula():
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 3.0]])
    target = torch.tensor([0, 1, 2])
    w = torch.tensor([2.0, 1.0, 1.0, 1.0])
    loss, ce, dl = neumours_loss(logits, target, w)
    p = torch.softmax(logits, 1)
    nll = -torch.log(p[torch.arange(3), target])
    assert torch.isclose(ce, (2 * nll[0] + nll[1] + nll[2]) / 4)
    g = torch.nn.functional.one_hot(target, 4).float()
    dice = (2 * (p * g).sum(0) + 1e-5) / (p.sum(0) + g.sum(0) + 1e-5)
    assert torch.isclose(dl, 1 - dice.mean()) and torch.isclose(loss, 0.5 * ce + 0.5 * dl)
    perfect, _, _ = neumours_loss(100 * torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3]), 4).float(),
                                  torch.tensor([0, 1, 2, 3]), w)
    assert perfect < 1e-4


def test_schedule_warms_up_then_cosine_to_half():
    assert learning_rate(0, 10_000) == pytest.approx(1e-5)
    assert learning_rate(99, 10_000) == pytest.approx(1e-3)
    assert learning_rate(9_999, 10_000) == pytest.approx(5e-4)
    mid = 100 + (10_000 - 1 - 100) / 2
    assert learning_rate(int(mid), 10_000) == pytest.approx(7.5e-4, rel=1e-3)
    lrs = [learning_rate(s, 1000) for s in range(100, 1000)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest():
    model = NeumoursINR()
    muon, adamw = build_optimizers(model, "muon", 1e-3, 0.01)
    assert isinstance(muon, torch.optim.Muon) and isinstance(adamw, torch.optim.AdamW)
    assert [tuple(p.shape) for p in muon.param_groups[0]["params"]] == [(256, 256)] * 3
    n_adamw = sum(p.numel() for g in adamw.param_groups for p in g["params"])
    assert n_adamw + 3 * 256 * 256 == sum(p.numel() for p in model.parameters())
    no_decay = adamw.param_groups[1]
    assert no_decay["weight_decay"] == 0 and all(p.ndim == 1 for p in no_decay["params"])
    (only,) = build_optimizers(model, "adamw", 1e-3, 0.01)
    assert isinstance(only, torch.optim.AdamW)


def test_sampler_respects_the_foreground_ratio(cases):
    bank = CaseBank.from_folders(find_cases(cases / "train"), foreground_ratio=0.5)
    coords, patches, targets = bank.sample(4000, bank.generator(0))
    assert coords.shape == (4000, 3) and patches.shape == (4000, 108) and targets.shape == (4000,)
    assert coords.abs().max() <= 1.0 and 0.45 < (targets > 0).float().mean() < 0.6
    again = bank.sample(4000, bank.generator(0))
    assert torch.equal(again[0], coords) and torch.equal(again[2], targets)


def test_sampled_patches_coords_and_labels_are_those_of_the_voxel(cases):
    """Against the whole padded case (the bank keeps only the brain's bounding box)."""
    for folder in find_cases(cases / "train"):   # one case per bank: the voxel is known from its coordinates
        volume = load_brats_case(folder, require_seg=True)
        case = prepare_case(volume)
        whole = pad_volume(torch.from_numpy(normalise_modalities(volume.data)[0]), 3)
        assert case.padded.numel() < 0.8 * whole.numel()
        one = CaseBank([case], foreground_ratio=0.3)
        coords, patches, targets = one.sample(2000, one.generator(7))
        extent = torch.tensor(case.shape, dtype=torch.float32) - 1
        vox = torch.round((coords + 1) / 2 * extent).long()
        assert torch.equal(voxel_to_unit(vox.float(), case.shape), coords)
        assert torch.equal(patches, gather_patches(whole, vox, 3))
        assert torch.equal(targets, torch.from_numpy(volume.labels[tuple(vox.T.numpy())]).long())
        x, y, z = case.shape
        flat = vox[:, 0] * y * z + vox[:, 1] * z + vox[:, 2]
        assert torch.isin(flat, torch.cat([case.brain, case.tumour]).long()).all()
        pool = torch.cat([case.brain, case.tumour]).long()
        pool_vox = torch.stack([pool // (y * z), (pool // z) % y, pool % z], dim=1)
        for axis in range(3):       # the brain reaches the box's faces: the crop is no larger than it must be
            assert int(pool_vox[:, axis].min()) == case.origin[axis]
            assert int(pool_vox[:, axis].max()) == case.origin[axis] + case.padded.shape[axis + 1] - 3


@pytest.mark.parametrize("optimizer", ["adamw", "muon"])
def test_a_few_steps_reduce_the_loss(cases, tmp_path, optimizer):
    torch.set_num_threads(1)
    full = optimizer == "adamw"            # one run checks every output; the other only the loss
    config = TrainConfig(cases=str(cases / "train"), out=str(tmp_path / "run"), optimizer=optimizer, steps=25,
                         lr=3e-3, final_lr=1e-3, **{**TINY, "max_val_cases": int(full)}, plots=full)
    bank = CaseBank.from_folders(find_cases(config.cases))
    coords, patches, targets = bank.sample(4096, bank.generator(123))
    w = torch.tensor(config.class_weights)
    torch.manual_seed(config.seed)
    with torch.no_grad():
        before = neumours_loss(NeumoursINR()(coords, patches), targets, w)[0].item()
    summary = train(config)
    model = load_model(tmp_path / "run" / "model.pt")
    with torch.no_grad():
        after = neumours_loss(model(coords, patches), targets, w)[0].item()
    assert after < 0.8 * before, (before, after)
    assert summary["steps"] == 25 and summary["optimizer"] == optimizer
    if not full:
        return
    run = tmp_path / "run"
    assert {"checkpoint.pt", "model.pt", "log.csv", "curves.png", "config.json", "summary.json"} <= \
        {p.name for p in run.iterdir()}
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert [int(r["step"]) for r in rows if r["loss"]] == list(range(1, 26))
    assert "dice_WT" in summary["val_raw"] and "dice_WT" in summary["val_denoised"]


def test_resume_continues_exactly_from_the_saved_step(cases, tmp_path, monkeypatch):
    torch.set_num_threads(1)
    base = dict(cases=str(cases / "train"), steps=6, **{**TINY, "checkpoint_every": 3, "max_val_cases": 0},
                plots=False)
    train(TrainConfig(out=str(tmp_path / "straight"), **base))

    real_lr = train_mod.learning_rate

    def crash_at_step_4(step, *args):
        if step == 4:
            raise KeyboardInterrupt
        return real_lr(step, *args)

    monkeypatch.setattr(train_mod, "learning_rate", crash_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train(TrainConfig(out=str(tmp_path / "resumed"), **base))
    assert load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")["step"] == 3
    monkeypatch.setattr(train_mod, "learning_rate", real_lr)
    with pytest.raises(InputError, match="--resume"):
        train(TrainConfig(out=str(tmp_path / "resumed"), **base))
    train(TrainConfig(out=str(tmp_path / "resumed"), resume=True, **base))
    a = load_checkpoint(tmp_path / "straight" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "resumed" / "checkpoint.pt")
    assert a["step"] == b["step"] == 6
    for k, v in a["state_dict"].items():
        assert torch.allclose(v, b["state_dict"][k], atol=1e-6), k
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "resumed" / "log.csv").open()) if r["loss"]]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_resume_refuses_other_settings_or_fewer_steps(cases, tmp_path):
    """Resuming on other data or settings silently mixed two runs and rewrote the provenance; fewer
    --steps than taken logged "resuming at step 4 of 2" and exited 0."""
    base = dict(cases=str(cases / "train"), out=str(tmp_path / "run"), steps=4,
                **{**TINY, "checkpoint_every": 2, "max_val_cases": 0}, plots=False)
    train(TrainConfig(**base))
    for change, said in ((dict(cases=str(cases / "val")), "--cases"), (dict(seed=7), "--seed 0 (now 7)"),
                         (dict(batch=2048), "--batch 1024 (now 2048)"), (dict(steps=2), "more than --steps 2")):
        with pytest.raises(InputError, match="cannot resume") as err:
            train(TrainConfig(**{**base, **change, "resume": True}))
        assert said in err.value.reason, err.value.reason
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["info"]["cases_dir"] == str(cases / "train")
    train(TrainConfig(**{**base, "steps": 6, "resume": True}))       # more steps, same settings: resumes
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["step"] == 6


def test_ddp_with_two_gloo_processes(cases, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "rfmweb", "train-inr", str(cases / "train"), "--out", str(out), "--steps", "2",
           "--batch", "512", "--warmup", "1", "--device", "cpu", "--threads", "1", "--no-progress",
           "--log-every", "1", "--max-val-cases", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "rank 0/2" in res.stderr and "rank 1/2" in res.stderr and "gloo" in res.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["step"] == 2 and state["info"]["world_size"] == 2
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert all(math.isfinite(v.abs().sum().item()) for v in state["state_dict"].values())


def test_bad_training_input(cases, tmp_path):
    with pytest.raises(InputError, match="no BraTS-style case"):
        train(TrainConfig(cases=str(tmp_path), out=str(tmp_path / "o")))
    with pytest.raises(InputError, match="optimizer"):
        train(TrainConfig(cases=str(cases / "train"), out=str(tmp_path / "o"), optimizer="sgd"))
    with pytest.raises(InputError, match="multiple"):
        train(TrainConfig(cases=str(cases / "train"), out=str(tmp_path / "o"), batch=1000, micro_batches=3))
