"""Render-FM training: runs, resumes exactly, DDP (2 gloo processes) equals one process, config errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from rfmweb.cli import main
import rfmweb.renderfm.data as data_mod
from rfmweb.renderfm.data import DataConfig, GroundTruth, make_sample
from rfmweb.renderfm.model import load_model, load_state

CONFIG = """
[model]
features = [4, 8]
spacing_mm = 4.0
[data]
kinds = ["head", "torso"]
spacing_mm = [7.0, 8.0]
views_per_scan = 2
view_size = 32
cache_dir = "{cache}"
[train]
out = "{out}"
steps = {steps}
scans_per_step = 2
warmup = 2
checkpoint_every = 2
log_every = 1
device = "cpu"
{extra}
"""


def _config(tmp_path: Path, name: str, steps: int, extra: str = "", cache: str = "cache") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(CONFIG.format(cache=tmp_path / cache, out=tmp_path / name, steps=steps, extra=extra))
    return path


def _weights(folder: Path) -> dict:
    return load_state(folder / "model.pt")["state_dict"]


def _assert_same(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=atol, rtol=0, msg=k)


def test_samples_are_deterministic_and_ground_truth_is_cached(tmp_path, monkeypatch):
    cfg = DataConfig(spacing_mm=(7.0, 8.0), views_per_scan=2, view_size=32, cache_dir=str(tmp_path / "c"))
    a, b = make_sample(cfg, 3), make_sample(cfg, 3)
    np.testing.assert_array_equal(a.x, b.x)
    assert a.description == b.description and a.x.shape[0] == 6 and len(a.primed) > 10
    truth = GroundTruth(cfg)
    first = truth.images(a)
    assert first.shape == (2, 32, 32, 3) and first.max() > 0.1
    assert (tmp_path / "c" / "sample_0000003.npz").exists()
    truth.renderer = None                             # a cached sample is never rendered again
    torch.testing.assert_close(truth.images(b), first)
    monkeypatch.setattr(data_mod, "GROUND_TRUTH_VERSION", data_mod.GROUND_TRUTH_VERSION + 1)
    newer = GroundTruth(cfg)                          # ... unless the reference renderer's pictures changed
    rendered = []
    newer.renderer = type("Spy", (), {"render_float": lambda self, scene, cam, q: rendered.append(cam)
                                      or np.zeros((32, 32, 3), np.float32)})()
    assert newer.images(a).max() == 0 and len(rendered) == 2
    assert make_sample(cfg, 4).description != a.description or not np.array_equal(make_sample(cfg, 4).x, a.x)


def test_training_resumes_exactly(tmp_path):
    """Stopping after 2 steps (time limit 0 s) and rerunning gives the weights of one 4-step run."""
    assert main(["train-renderfm", "--config", str(_config(tmp_path, "whole", 4)), "--no-progress"]) == 0
    split = _config(tmp_path, "split", 4, "time_limit_s = 0.0")
    assert main(["train-renderfm", "--config", str(split), "--no-progress"]) == 0
    assert load_state(tmp_path / "split" / "checkpoint.pt")["step"] == 1
    for _ in range(3):
        main(["train-renderfm", "--config", str(split), "--no-progress"])
    assert load_state(tmp_path / "split" / "checkpoint.pt")["step"] == 4
    _assert_same(_weights(tmp_path / "whole"), _weights(tmp_path / "split"), atol=1e-6)
    rows = (tmp_path / "split" / "log.csv").read_text().splitlines()
    assert rows[0].startswith("step,loss") and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
    model = load_model(tmp_path / "whole" / "model.pt")
    assert any(p.abs().sum() > 0 for p in model.unet.heads.parameters())    # the head has learnt


def test_a_new_run_starts_from_init_weights_and_an_old_checkpoint_loads(tmp_path):
    """``--init``: a new run with other decoder bounds starts from a model file's weights (0 steps:
    exactly them); a file saved before ``min_log_scale`` existed loads with the symmetric bound."""
    assert main(["train-renderfm", "--config", str(_config(tmp_path, "first", 2)), "--no-progress"]) == 0
    state = load_state(tmp_path / "first" / "model.pt")
    del state["config"]["min_log_scale"]                    # as files written before 2026-12-05
    torch.save(state, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").config.min_log_scale is None
    tuned = _config(tmp_path, "tuned", 0, cache="cache").read_text().replace(
        "spacing_mm = 4.0", "spacing_mm = 4.0\nmin_log_scale = 0.1")
    (tmp_path / "tuned.toml").write_text(tuned)
    assert main(["train-renderfm", "--config", str(tmp_path / "tuned.toml"), "--init", str(tmp_path / "old.pt"),
                 "--no-progress"]) == 0
    assert load_model(tmp_path / "tuned" / "model.pt").config.min_log_scale == 0.1
    _assert_same(_weights(tmp_path / "first"), _weights(tmp_path / "tuned"), atol=0)
    other = _config(tmp_path, "other", 0).read_text().replace("features = [4, 8]", "features = [4, 8, 16]")
    (tmp_path / "other.toml").write_text(other)
    assert main(["train-renderfm", "--config", str(tmp_path / "other.toml"), "--init", str(tmp_path / "old.pt"),
                 "--no-progress"]) == 2


def test_two_gloo_processes_match_one(tmp_path):
    one = _config(tmp_path, "one", 2)
    assert main(["train-renderfm", "--config", str(one), "--no-progress"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1", "RFMWEB_THREADS": "1"}
    for steps in (0, 2):    # 0 steps first: every rank reaches the checkpoint's barrier; then resume from it
        two = _config(tmp_path, "two", steps)
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29533",
               "-m", "rfmweb", "train-renderfm", "--config", str(two), "--no-progress"]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert load_state(tmp_path / "two" / "checkpoint.pt")["step"] == steps
    _assert_same(_weights(tmp_path / "one"), _weights(tmp_path / "two"), atol=2e-5)


def test_bad_configs(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nsteps = 2\nbogus = 1\n")
    assert main(["train-renderfm", "--config", str(bad)]) == 2
    assert "bogus" in capsys.readouterr().err
    bad.write_text("[trian]\n")
    assert main(["train-renderfm", "--config", str(bad)]) == 2
    bad.write_text("[data]\nspacing_mm = [3.0, 1.0]\n")
    assert main(["train-renderfm", "--config", str(bad)]) == 2
    assert main(["train-renderfm", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml" in capsys.readouterr().err
    odd = _config(tmp_path, "odd", 2).read_text().replace("scans_per_step = 2", "scans_per_step = 3")
    (tmp_path / "odd.toml").write_text(odd)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29534",
           "-m", "rfmweb", "train-renderfm", "--config", str(tmp_path / "odd.toml"), "--no-progress"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0 and "multiple of the number of processes" in done.stderr


@pytest.mark.parametrize("name", ["gpu.toml", "cpu.toml", "gpu_finetune.toml"])
def test_shipped_configs_parse(name):
    from importlib.resources import files

    from rfmweb.renderfm.train import load_config

    cfg = load_config(Path(str(files("rfmweb.renderfm") / "configs" / name)))
    assert cfg.model.spacing_mm == 1.5 and cfg.train.steps > 0
