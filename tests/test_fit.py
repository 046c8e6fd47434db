"""Per-scan 6DGS fitting (``rfmweb fit-6dgs``): a tiny ray-marched scene, both inits, densify/prune, the CLI."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from rfmweb.camera import OrbitCamera
from rfmweb.errors import InputError
from rfmweb.io import save_volume
from rfmweb.splats import Splats6D
from rfmweb.splats.densify import GROUPS, DensifyConfig, GradStats, SplatParams, densify_and_prune, positional_std
from rfmweb.splats.fit import FitConfig, evaluate, fit_6dgs, photometric_loss
from rfmweb.splats.viewset import initial_splats, load_views, scene_for_views
from rfmweb.transfer import preset
from rfmweb.volume import LabelClass, Volume

def ball_volume(n: int = 24, spacing: float = 2.0) -> Volume:
    """A 24^3 CT (2 mm voxels): a bone-bright ball and a smaller, darker one beside it, labelled 1 and 2."""
    idx = np.indices((n, n, n)).astype(np.float32)
    c = (n - 1) / 2
    big = np.sqrt(((idx - c) ** 2).sum(0)) < 0.3 * n
    small = np.sqrt(((idx - np.array([c + 5, c - 3, c + 4])[:, None, None, None]) ** 2).sum(0)) < 0.15 * n
    data = np.full((n, n, n), -1000.0, np.float32)
    data[big], data[small] = 1200.0, 350.0
    labels = np.zeros((n, n, n), np.uint8)
    labels[big], labels[small] = 1, 2
    affine = np.diag([spacing] * 3 + [1.0])
    affine[:3, 3] = -spacing * c
    classes = (LabelClass(0, "background", (0, 0, 0)), LabelClass(1, "big", (0.9, 0.9, 0.8)),
               LabelClass(2, "small", (0.8, 0.3, 0.3)))
    return Volume(data, affine, modality="CT", labels=labels, classes=classes, name="ball")


def make_views(out: Path, ct: Path, labels: Path, size: int = 32, *extra: str) -> Path:
    """8 ray-marched views (6 train + 2 test) made by ``rfmweb views``, as a user makes them."""
    from rfmweb.cli import main
    code = main(["views", str(ct), "--labels", str(labels), "--preset", "CT-Bone", "--renderer", "raymarch",
                 "--n", "8", "--holdout", "2", "--size", str(size), "--out", str(out), *extra])
    assert code == 0
    return out


@pytest.fixture(scope="module")
def ball(tmp_path_factory):
    """``(volume, views folder, volume file, labels file)``."""
    folder = tmp_path_factory.mktemp("fit")
    vol = ball_volume()
    ct, labels = folder / "ball.nii.gz", folder / "ball_labels.nii.gz"
    save_volume(vol, ct, labels)
    return vol, make_views(folder / "views", ct, labels), ct, labels


@pytest.fixture(scope="module")
def views(ball):
    return load_views(ball[1])


# -- views --------------------------------------------------------------------------------------------
def test_views_load_split_and_resize(views, ball):
    assert len(views.train) == 6 and len(views.test) == 2 and views.native_size == (32, 32)
    assert views.train.images.shape == (6, 32, 32, 3) and views.train.images.max() > 0.5
    half = views.resized(16)
    assert half.train.images.shape == (6, 16, 16, 3) and half.test_native.width == 32
    # a world point lands at half the continuous pixel coordinates (pixel centres at +0.5)
    p = torch.tensor([3.0, -2.0, 5.0, 1.0])
    def project(k, vm):
        c = (vm @ p)[:3]
        return (k @ c)[:2] / c[2]
    np.testing.assert_allclose(project(half.train.Ks[0], half.train.viewmats[0]),
                               project(views.train.Ks[0], views.train.viewmats[0]) / 2, rtol=1e-5)
    np.testing.assert_allclose(half.train.images.mean(), views.train.images.mean(), atol=1e-5)  # 2x2 box average
    entry = next(v for v in json.loads((ball[1] / "cameras.json").read_text())["views"] if v["split"] == "train")
    cam = OrbitCamera(**{k: entry[k] for k in ("target", "azimuth", "elevation", "distance", "fov", "width", "height")})
    np.testing.assert_allclose(views.train.centres[0].numpy(), cam.position, atol=1e-3)


def test_views_bad_input(tmp_path, ball):
    with pytest.raises(InputError, match="views folder not found"):
        load_views(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="cameras.json not found"):
        load_views(tmp_path / "empty")
    bad = tmp_path / "bad"
    shutil.copytree(ball[1], bad)
    Image.new("RGB", (20, 32)).save(bad / "view_003.png")
    with pytest.raises(InputError, match=r"view_003.png: image is 20x32 but cameras.json says 32x32"):
        load_views(bad)
    with pytest.raises(InputError, match="--size must lie in 16..32"):
        load_views(ball[1], size=64)
    # cameras.json cannot send the reader outside its folder (the images `views` writes lie in it)
    for name in ("../outside.png", str(tmp_path / "outside.png"), "sub/view.png"):
        escape = tmp_path / f"escape{len(name)}"
        shutil.copytree(ball[1], escape)
        doc = json.loads((escape / "cameras.json").read_text())
        doc["views"][0]["file"] = name
        (escape / "cameras.json").write_text(json.dumps(doc))
        with pytest.raises(InputError, match="must be a file name in the views folder"):
            load_views(escape)


def test_scene_for_views_applies_hidden_classes_and_tf(tmp_path, ball):
    vol, _, ct, labels = ball
    folder = make_views(tmp_path / "hidden", ct, labels, 16, "--hide", "2")
    scene = scene_for_views(load_views(folder), vol)
    assert scene.tf.color == preset("CT-Bone").color and scene.tf.shading == preset("CT-Bone").shading
    assert scene.classes.hidden == (2,)
    agp = initial_splats("agp", scene)
    assert 2 not in agp.labels.tolist() and len(agp) > 10
    no_labels = Volume(vol.data, vol.affine, modality="CT", name="ball")
    with pytest.raises(InputError, match="pass --labels"):
        scene_for_views(load_views(folder), no_labels)


# -- fitting ------------------------------------------------------------------------------------------
def test_loss_is_zero_on_identical_images_and_differentiable():
    x = torch.rand(1, 16, 16, 3, requires_grad=True)
    assert photometric_loss(x.detach(), x.detach()).item() == pytest.approx(0.0, abs=1e-6)
    loss = photometric_loss(x, torch.zeros(1, 16, 16, 3))
    loss.backward()
    assert loss.item() > 0.3 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("init", ["agp", "random"])
def test_fit_improves_heldout_psnr(init, views, ball, artifacts):
    scene = scene_for_views(views, ball[0])
    start = initial_splats(init, scene, seed=0)
    before = evaluate(start, views.test_native)
    config = FitConfig(iters=40, densify_from=10, densify_every=10, densify_until=30, max_splats=600)
    result = fit_6dgs(start, views.train, config, progress=False)
    after = evaluate(result.splats, views.test_native, keep_images=True)
    assert result.iterations == 40 and not result.interrupted and result.backend == "torch"
    assert after.psnr > before.psnr + 2.0, (before.psnr, after.psnr)
    assert after.ssim > before.ssim
    assert [c["iteration"] for c in result.curve] == [10, 20, 30, 40]
    assert result.curve[-1]["loss"] < result.curve[0]["loss"]
    gt = views.test_native.images
    assert after.images.std() > 0.05 and after.images.mean() > 0.3 * gt.mean()   # not blank
    grid = torch.cat([torch.cat([gt[i], after.images[i]], 1) for i in range(len(gt))], 0)
    Image.fromarray((grid.numpy() * 255).astype(np.uint8)).resize((256, 256), Image.NEAREST) \
        .save(artifacts / f"fit_{init}_gt_vs_fitted.png")


def test_densify_and_prune_keep_adam_consistent():
    g = torch.Generator().manual_seed(0)
    n = 40
    splats = Splats6D(torch.randn(n, 3, generator=g) * 10, torch.zeros(n, 3),
                      torch.cat([torch.full((n, 3), math.log(0.5)), torch.zeros(n, 3)], 1), torch.zeros(n, 15),
                      torch.linspace(-6, 3, n), torch.randn(n, 4, 3, generator=g) * 0.1,
                      torch.arange(n) % 3)
    splats.chol_log_diag[:10, :3] = math.log(3.0)        # 10 large splats (std 3 mm > 1% of a 100 mm extent)
    params = SplatParams(splats, FitConfig().lrs(100.0))
    target = torch.randn(n, 3, generator=g)
    for _ in range(2):                                   # some Adam state (on every group) to carry over
        sp = params.splats()
        loss = ((sp.means - target) ** 2).sum() + sp.sh.sum() + sp.opacity_logits.sum() + sp.dir_means.sum() \
            + 1e-3 * sp.covariance().sum()
        params.optimizer.zero_grad()
        loss.backward()
        params.optimizer.step()
    means_before = params.params["means"].detach().clone()
    std_before = positional_std(params.detached())
    avg_before = params.optimizer.state[params.params["means"]]["exp_avg"].clone()
    stats = GradStats(n)
    stats.grad_sum[:] = 1.0                              # every splat above the threshold
    stats.count[:] = 1.0
    opac = splats.opacities
    low = int((opac < 0.01).sum())
    assert low > 0
    ev = densify_and_prune(params, stats, DensifyConfig(dense_frac=0.01, max_grow=10.0), extent=100.0,
                           generator=torch.Generator().manual_seed(1))
    kept_small = ((opac >= 0.01) & (torch.arange(n) >= 10))
    kept_large = ((opac >= 0.01) & (torch.arange(n) < 10))
    assert ev["pruned"] == low and ev["cloned"] == int(kept_small.sum()) and ev["split"] == int(kept_large.sum())
    assert ev["n"] == len(params) == n - low + ev["cloned"] + ev["split"]
    for group in params.optimizer.param_groups:
        p = group["params"][0]
        assert p is params.params[group["name"]] and p.requires_grad and p.is_leaf
        state = params.optimizer.state[p]
        assert state["exp_avg"].shape == p.shape == state["exp_avg_sq"].shape
    # survivors that were neither split nor pruned keep their values and moments; new rows start at zero
    survivors = kept_small
    m = int(survivors.sum())
    np.testing.assert_array_equal(params.params["means"][:m].detach(), means_before[survivors])
    np.testing.assert_array_equal(params.optimizer.state[params.params["means"]]["exp_avg"][:m], avg_before[survivors])
    assert params.optimizer.state[params.params["means"]]["exp_avg"][m:].abs().sum() == 0
    assert params.labels.shape == (len(params),)
    # split children (appended after the clones, two per parent) are 1.6x smaller than their parent
    children = params.detached().index(torch.arange(len(params)) >= m + ev["cloned"])
    np.testing.assert_allclose(positional_std(children), std_before[kept_large].repeat(2) / 1.6, rtol=1e-5)
    # and training goes on without error
    loss = ((params.splats().means[:5] - 1) ** 2).sum() + params.splats().opacities.sum()
    params.optimizer.zero_grad()
    loss.backward()
    params.optimizer.step()
    assert all(torch.isfinite(p).all() for p in params.params.values())
    # a cap: densify stops at max_splats (largest gradients first)
    before = len(params)
    stats = GradStats(before)
    stats.grad_sum[:] = 1.0
    stats.count[:] = 1.0
    ev = densify_and_prune(params, stats, DensifyConfig(max_grow=10.0), extent=100.0, max_splats=before + 3)
    assert ev["n"] == before + 3 and ev["cloned"] + ev["split"] == 3 + ev["pruned"]  # pruned splats free room
    # and growth per step is bounded (short runs densify while errors are still large everywhere)
    before = len(params)
    stats = GradStats(before)
    stats.grad_sum[:] = 1.0
    stats.count[:] = 1.0
    ev = densify_and_prune(params, stats, DensifyConfig(max_grow=0.1), extent=100.0)
    assert ev["cloned"] + ev["split"] == int(0.1 * before)
    assert set(GROUPS) == set(params.params)


def test_fit_densifies_prunes_and_resets_opacity(views, ball):
    start = initial_splats("random", scene_for_views(views, ball[0]))
    config = FitConfig(iters=16, densify_from=2, densify_every=4, densify_until=14, opacity_reset_every=8,
                       max_splats=2 * len(start))
    result = fit_6dgs(start, views.train, config, progress=False)
    kinds = [e["kind"] for e in result.events]
    assert "densify" in kinds and "opacity_reset" in kinds and kinds[-1] == "final_prune"
    assert any(e.get("cloned", 0) + e.get("split", 0) > 0 for e in result.events)
    assert len(result.splats) != len(start) and len(result.splats) <= 2 * len(start)
    assert result.splats.opacities.min() >= 0.01                     # the last prune (DESIGN.md threshold)
    s = result.splats
    assert all(torch.isfinite(getattr(s, k)).all() for k in ("means", "chol_log_diag", "chol_lower", "sh"))


# -- the command ------------------------------------------------------------------------------------
def _command(*args) -> list[str]:
    """``python -m rfmweb fit-6dgs ...``."""
    return [sys.executable, "-m", "rfmweb", "fit-6dgs", *map(str, args)]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture
def cli_main():
    """``rfmweb.cli.main``, in this process."""
    from rfmweb.cli import main

    return main


def test_cli_writes_splats_and_report(ball, tmp_path, cli_main):
    _, folder, ct, labels = ball
    out, report = tmp_path / "s.npz", tmp_path / "r.json"
    code = cli_main(["fit-6dgs", str(ct), "--labels", str(labels), "--views", str(folder), "--init", "agp",
                     "--iters", "12", "--device", "cpu", "--out", str(out), "--report", str(report), "--quiet"])
    assert code == 0
    splats = Splats6D.load(out)
    r = json.loads(report.read_text())
    assert r["n_splats"] == len(splats) > 10 and r["iterations"] == 12 and r["init"] == "agp"
    assert r["device"] == "cpu" and r["backend"] == "torch" and r["fit_wall_s"] > 0 and not r["interrupted"]
    h = r["heldout"]
    assert 0 < h["ssim"] <= 1 and h["psnr"] > 10 and h["size"] == [32, 32] and len(h["per_view"]) == 2
    assert h["lpips"] is None and "lpips" in h["lpips_reason"].lower()  # absent offline: a reason, never a value
    assert h["ms_ssim"] is None and "160" in h["ms_ssim_reason"]       # 32 px is too small for 5 scales
    assert r["curve"] and {"iteration", "loss", "n_splats", "time_s"} <= set(r["curve"][0])
    assert r["initial_heldout"]["psnr"] > 0 and r["train_size"] == [32, 32] and r["n_train_views"] == 6


@pytest.mark.parametrize("make, expect", [
    (lambda d, t: ["--views", t / "missing"], "views folder not found"),
    (lambda d, t: ["--views", d, "--init", "kmeans"], "--init must be one of agp, random"),
    (lambda d, t: ["--views", d, "--size", "8"], "--size must lie in 16..32"),
    (lambda d, t: ["--views", d, "--device", "tpu"], "--device must be cpu or cuda"),
    (lambda d, t: ["--views", d, "--lr-scale", "0"], "--lr-scale must be > 0"),
])
def test_cli_bad_input_is_one_line_exit_2(ball, tmp_path, make, expect, cli_main, capsys):
    _, folder, ct, _ = ball
    out = tmp_path / "s.npz"
    code = cli_main(["fit-6dgs", str(ct), *map(str, make(folder, tmp_path)), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and expect in err and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_cli_mismatched_view_size_is_one_line(ball, tmp_path):
    """As a user runs it (a subprocess): nothing but the error line on stderr, exit status 2."""
    _, folder, ct, labels = ball
    bad = tmp_path / "v"
    shutil.copytree(folder, bad)
    Image.new("RGB", (32, 12)).save(bad / "view_001.png")
    res = subprocess.run(_command(ct, "--views", bad, "--out", tmp_path / "s.npz"), capture_output=True, text=True,
                         timeout=300, env=_env())
    assert res.returncode == 2 and "view_001.png: image is 32x12" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "s.npz").exists()


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT semantics")
def test_ctrl_c_saves_the_current_splats(ball, tmp_path):
    _, folder, ct, labels = ball
    out, report = tmp_path / "s.npz", tmp_path / "r.json"
    proc = subprocess.Popen(_command(ct, "--labels", labels, "--views", folder, "--iters", "100000", "--device", "cpu",
                                     "--out", out, "--report", report), stderr=subprocess.PIPE, env=_env())
    seen, deadline = b"", time.monotonic() + 120
    os.set_blocking(proc.stderr.fileno(), False)
    while b"%|" not in seen and time.monotonic() < deadline:   # the progress bar: the loop is running
        seen += proc.stderr.read() or b""
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=120)
    assert code == 130, seen.decode(errors="replace")[-2000:]
    r = json.loads(report.read_text())
    assert r["interrupted"] and 0 < r["iterations"] < 100000
    assert len(Splats6D.load(out)) == r["n_splats"]
