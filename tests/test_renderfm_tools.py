"""Render-FM's evaluation and fine-tuning tools: ``evaluate-splats``, ``finetune`` and 6D ``.ply`` files.

A 24^3 two-ball CT, 8 ray-marched 32 px views (6 train + 2 test), splats fitted for 3 steps: every
command runs in this process through :func:`rfmweb.cli.main`, as a user runs it.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from rfmweb.cli import main
from rfmweb.errors import InputError
from rfmweb.io import save_volume
from rfmweb.splats import Splats6D, export_ply
from rfmweb.splats.fit import evaluate
from rfmweb.splats.ply import read_vertex_ply, write_vertex_ply
from rfmweb.splats.ply6d import PROPERTIES, read_ply6d, read_splats, write_ply6d
from rfmweb.splats.viewset import load_views

from .test_fit import ball_volume, make_views


@pytest.fixture(scope="module")
def scan(tmp_path_factory):
    """``(folder, ct file, labels file, views folder)``."""
    folder = tmp_path_factory.mktemp("renderfm_tools")
    ct, labels = folder / "ball.nii.gz", folder / "ball_labels.nii.gz"
    save_volume(ball_volume(), ct, labels)
    return folder, ct, labels, make_views(folder / "views", ct, labels)


@pytest.fixture(scope="module")
def fitted(scan):
    """Splats fitted by ``fit-6dgs`` for 3 steps, and its report: ``(splats .npz, report dict)``."""
    folder, ct, labels, views = scan
    out, report = folder / "fit.npz", folder / "fit.json"
    code = main(["fit-6dgs", str(ct), "--labels", str(labels), "--views", str(views), "--iters", "3",
                 "--max-splats", "400", "--device", "cpu", "--out", str(out), "--report", str(report), "--quiet"])
    assert code == 0
    np.testing.assert_allclose(Splats6D.load(out).box, ball_volume().bounds)  # the box of the fitted volume
    return out, json.loads(report.read_text())


def evaluate_splats(splats: Path, views: Path, tmp_path: Path, *extra: str) -> dict:
    report = tmp_path / f"eval_{splats.stem}.json"
    assert main(["evaluate-splats", str(splats), "--views", str(views), "--device", "cpu",
                 "--report", str(report), *extra]) == 0
    return json.loads(report.read_text())


def random_splats(n: int = 50, labels: bool = True, dtype=torch.float32) -> Splats6D:
    g = torch.Generator().manual_seed(3)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    return Splats6D(r(n, 3) * 20, r(n, 3), r(n, 6) - 1, r(n, 15), r(n), r(n, 4, 3) * 0.3,
                    torch.randint(-3, 300, (n,), generator=g) if labels else None)


def assert_same_splats(a: Splats6D, b: Splats6D) -> None:
    for name in ("means", "dir_means", "chol_log_diag", "chol_lower", "opacity_logits", "sh"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    assert (a.labels is None) == (b.labels is None)
    if a.labels is not None:
        assert torch.equal(a.labels, b.labels)


# -- evaluate-splats -----------------------------------------------------------------------------------
def test_evaluate_splats_matches_fit_report_and_evaluate(scan, fitted, tmp_path, caplog):
    _, _, _, views = scan
    out, fit_report = fitted
    with caplog.at_level("INFO", logger="rfmweb"):
        r = evaluate_splats(out, views, tmp_path)
    assert r["format"] == "rfmweb.evaluate-splats.report/1" and r["split"] == "test" and r["split_note"] is None
    assert r["device"] == "cpu" and r["backend"] == "torch" and r["n_splats"] == fit_report["n_splats"]
    h = r["heldout"]
    assert h["size"] == [32, 32] and len(h["per_view"]) == 2 == r["n_views"]
    assert (h["ssim"], h["psnr"]) == (fit_report["heldout"]["ssim"], fit_report["heldout"]["psnr"])
    vs = load_views(views)
    direct = evaluate(Splats6D.load(out), vs.test_native, background=vs.background)
    assert (h["ssim"], h["psnr"]) == (direct.ssim, direct.psnr)
    assert h["per_view"] == direct.per_view
    assert h["lpips"] is None and h["lpips_reason"] and h["ms_ssim"] is None and "160" in h["ms_ssim_reason"]
    line = [m for m in caplog.messages if m.startswith("evaluate-splats")]
    assert len(line) == 1 and f"PSNR {h['psnr']:.2f} dB" in line[0] and "2 test views at 32x32" in line[0]


def test_evaluate_splats_size_matches_heldout_at_train_size(scan, fitted, tmp_path):
    _, _, _, views = scan
    out, _ = fitted
    r = evaluate_splats(out, views, tmp_path, "--size", "16")
    vs = load_views(views).resized(16)
    direct = evaluate(Splats6D.load(out), vs.test, background=vs.background)
    assert r["heldout"]["size"] == [16, 16] and r["heldout"]["psnr"] == direct.psnr


def test_evaluate_splats_without_test_views_scores_all(scan, fitted, tmp_path, caplog):
    _, ct, labels, _ = scan
    folder = make_views(tmp_path / "all_train", ct, labels, 16, "--holdout", "0")
    with caplog.at_level("INFO", logger="rfmweb"):
        r = evaluate_splats(fitted[0], folder, tmp_path)
    assert r["split"] == "all" and "no 'test' views" in r["split_note"] and r["n_views"] == 8
    assert len(r["heldout"]["per_view"]) == 8 and r["heldout"]["size"] == [16, 16]
    assert any("no 'test' views" in m for m in caplog.messages)


# -- finetune ------------------------------------------------------------------------------------------
def test_finetune_from_a_splat_file(scan, fitted, tmp_path):
    _, ct, labels, views = scan
    init, _ = fitted
    out, report = tmp_path / "ft.npz", tmp_path / "ft.json"
    code = main(["finetune", str(ct), "--labels", str(labels), "--init", str(init), "--views", str(views),
                 "--iters", "3", "--device", "cpu", "--out", str(out), "--report", str(report), "--quiet"])
    assert code == 0
    r = json.loads(report.read_text())
    n_init = len(Splats6D.load(init))
    assert r["format"] == "rfmweb.finetune.report/1" and r["init_file"] == str(init) and r["init"] == "file"
    assert r["iterations"] == 3 and r["n_splats_initial"] == n_init and r["n_splats"] == len(Splats6D.load(out))
    assert r["max_splats"] == n_init and r["n_splats"] <= n_init          # default: densification adds none
    assert r["heldout"]["size"] == [32, 32] and len(r["curve"]) >= 1 and r["config"]["iters"] == 3
    before = evaluate_splats(init, views, tmp_path)["heldout"]           # step 0 = the init file's score
    assert (r["initial_heldout"]["ssim"], r["initial_heldout"]["psnr"]) == (before["ssim"], before["psnr"])


def test_finetune_keeps_every_initial_splat_and_takes_a_6d_ply(scan, fitted, tmp_path):
    _, ct, labels, views = scan
    ply = tmp_path / "init.ply"
    write_ply6d(ply, Splats6D.load(fitted[0]))
    out, report = tmp_path / "ft.npz", tmp_path / "ft.json"
    code = main(["finetune", str(ct), "--labels", str(labels), "--init", str(ply), "--views", str(views),
                 "--iters", "2", "--max-splats", "10", "--size", "16", "--device", "cpu", "--out", str(out),
                 "--report", str(report), "--quiet"])
    assert code == 0
    r = json.loads(report.read_text())
    assert r["n_splats_initial"] == len(read_ply6d(ply)) > 10 and r["max_splats"] == 10   # not subsampled
    assert r["train_size"] == [16, 16] and r["init_file"] == str(ply)


# -- bad input -----------------------------------------------------------------------------------------
def _not_splats(t: Path) -> Path:
    (t / "junk.npz").write_text("not a zip")
    return t / "junk.npz"


def _gs3d(t: Path) -> Path:
    export_ply(t / "gs3d.ply", random_splats(10, labels=False), torch.tensor([0.0, -300.0, 0.0]))
    return t / "gs3d.ply"


@pytest.mark.parametrize("command", ["evaluate-splats", "finetune"])
@pytest.mark.parametrize("make, expect", [
    (lambda t, v: (t / "missing.npz", v), "no such splat file"),
    (lambda t, v: (_not_splats(t), v), "not a readable .npz splat file"),
    (lambda t, v: (_gs3d(t), v), "this is a 3DGS .ply"),
    (lambda t, v: (None, t / "no_views"), "views folder not found"),
])
def test_bad_input_is_one_line_exit_2_naming_the_file(scan, fitted, tmp_path, capsys, command, make, expect):
    _, ct, labels, views = scan
    splats, folder = make(tmp_path, views)
    splats = fitted[0] if splats is None else splats
    out = tmp_path / "out.npz"
    head = ["evaluate-splats", str(splats)] if command == "evaluate-splats" else \
        ["finetune", str(ct), "--labels", str(labels), "--init", str(splats), "--iters", "1", "--out", str(out)]
    code = main([*head, "--views", str(folder), "--device", "cpu", "--report", str(tmp_path / "r.json")])
    err = capsys.readouterr().err.strip()
    bad = folder if "views" in expect else splats
    assert code == 2 and expect in err and str(bad) in err and len(err.splitlines()) == 1, err
    assert not out.exists() and not (tmp_path / "r.json").exists()


def test_splats_or_a_volume_of_another_scan_are_refused(scan, fitted, tmp_path, capsys):
    """The views folder records the box of the volume it shows: splats whose centres lie elsewhere, or a
    volume with another box, are one-line errors naming the file (not a score against the wrong views)."""
    from dataclasses import replace

    folder, ct, labels, views = scan
    moved = Splats6D.load(fitted[0])
    moved = replace(moved, means=moved.means + torch.tensor([300.0, 0.0, 0.0]))
    moved.save(tmp_path / "moved.npz")
    code = main(["evaluate-splats", str(tmp_path / "moved.npz"), "--views", str(views), "--device", "cpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "0% of the splat centres lie in its box" in err and "moved.npz" in err, err
    other = ball_volume()
    other.affine[0, 3] += 100.0
    save_volume(other, tmp_path / "other.nii.gz", tmp_path / "other_labels.nii.gz")
    out = tmp_path / "ft.npz"
    code = main(["finetune", str(tmp_path / "other.nii.gz"), "--labels", str(tmp_path / "other_labels.nii.gz"),
                 "--init", str(fitted[0]), "--views", str(views), "--iters", "1", "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is not the volume the views in" in err and "other.nii.gz" in err, err
    assert len(err.splitlines()) == 1 and not out.exists()


# -- 6D .ply files -------------------------------------------------------------------------------------
@pytest.mark.parametrize("labels", [True, False])
def test_ply6d_round_trip_is_exact(tmp_path, labels):
    splats = random_splats(labels=labels)
    path = tmp_path / "s.ply"
    write_ply6d(path, splats)
    back = read_ply6d(path)
    assert_same_splats(splats, back)
    assert back.dtype == torch.float32 and (back.labels is None or back.labels.dtype == torch.int64)
    header = path.read_bytes().split(b"end_header")[0].decode()
    props = [line.split()[-1] for line in header.splitlines() if line.startswith("property")]
    assert props == [*PROPERTIES, *(["label"] if labels else [])]
    assert "property int label" in header or not labels
    assert props[3:6] == ["nx", "ny", "nz"]                      # ndsplat: the direction mean
    v = read_vertex_ply(path)
    np.testing.assert_array_equal(np.stack([v["nx"], v["ny"], v["nz"]], -1), splats.dir_means.numpy())
    np.testing.assert_array_equal(v["f_rest_3"], splats.sh[:, 1, 1].numpy())   # channel-major: G, degree-1 first
    assert back.box is None
    # the volume's box rides along in a header comment: a view of the .ply alone frames it as the .npz
    boxed = replace(splats, box=np.array([[-10.5, -20.25, 3.0], [10.0, 20.125, 40.0]]))
    write_ply6d(path, boxed)
    np.testing.assert_array_equal(read_ply6d(path).box, boxed.box)
    assert_same_splats(splats, read_ply6d(path))


def test_ply6d_from_float64_and_via_export_ply(tmp_path):
    s64 = random_splats(dtype=torch.float64)
    write_ply6d(tmp_path / "a.ply", s64)
    assert_same_splats(s64.to(dtype=torch.float32), read_ply6d(tmp_path / "a.ply"))
    s = random_splats()
    s.save(tmp_path / "s.npz")
    assert main(["export-ply", str(tmp_path / "s.npz"), "--6d", "--out", str(tmp_path / "b.ply")]) == 0
    assert_same_splats(s, read_splats(tmp_path / "b.ply"))
    assert_same_splats(s, read_splats(tmp_path / "s.npz"))


def _vertex(splats: Splats6D, path: Path) -> np.ndarray:
    write_ply6d(path, splats)
    return read_vertex_ply(path).copy()


def _drop(v: np.ndarray, name: str) -> np.ndarray:
    keep = [n for n in v.dtype.names if n != name]
    out = np.empty(len(v), [(n, v.dtype[n]) for n in keep])
    for n in keep:
        out[n] = v[n]
    return out


def _nan(v: np.ndarray, name: str) -> np.ndarray:
    v[name][3] = np.nan
    return v


@pytest.mark.parametrize("edit, expect", [
    (lambda v: _drop(v, "opacity"), "lacks properties ['opacity']"),
    (lambda v: _drop(v, "l_triangs_14"), "needs 15 l_triangs_* properties, the file has 14"),
    (lambda v: _drop(v, "f_rest_8"), "f_rest_* count 8"),
    (lambda v: _nan(v, "diags_2"), "'diags_2' holds NaN"),
    (lambda v: _nan(v, "x"), "'x' holds NaN"),
])
def test_ply6d_malformed_files_name_the_file(tmp_path, edit, expect):
    path = tmp_path / "bad.ply"
    write_vertex_ply(path, edit(_vertex(random_splats(), tmp_path / "good.ply")))
    with pytest.raises(InputError, match="bad.ply") as e:
        read_ply6d(path)
    assert expect in str(e.value)


def test_ply6d_truncated_and_3dgs_files_are_refused(tmp_path):
    path = tmp_path / "t.ply"
    write_ply6d(path, random_splats())
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(InputError, match=r"t.ply: file truncated"):
        read_ply6d(path)
    with pytest.raises(InputError, match=r"gs3d.ply: this is a 3DGS .ply .*import_ply"):
        read_ply6d(_gs3d(tmp_path))
    (tmp_path / "text.ply").write_text("hello")
    with pytest.raises(InputError, match="text.ply: not a PLY file"):
        read_splats(tmp_path / "text.ply")
