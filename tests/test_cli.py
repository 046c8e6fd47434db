"""The ``rfmweb`` command line, run as a user runs it (a subprocess)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from rfmweb.io import save_volume


def rfmweb(*args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rfmweb", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


@pytest.fixture(scope="module")
def small_files(small_ct, tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("cli")
    save_volume(small_ct, folder / "ct.nii.gz", folder / "labels.nii.gz")
    return folder / "ct.nii.gz", folder / "labels.nii.gz"


@pytest.mark.parametrize("renderer", ["raymarch", "vtk"])
def test_render_writes_a_picture(small_files, tmp_path, artifacts, renderer):
    ct, labels = small_files
    out = tmp_path / f"frame_{renderer}.png"
    res = rfmweb("render", ct, "--labels", labels, "--out", out, "--renderer", renderer, "--preset", "CT-Bone",
                 "--azimuth", "30", "--elevation", "10", "--size", "96", "--frames", "2")
    assert res.returncode == 0, res.stderr
    img = np.asarray(Image.open(out).convert("RGB"))
    assert img.shape == (96, 96, 3) and img.std() > 10
    Image.fromarray(img).save(artifacts / f"cli_{renderer}.png")


def test_render_hides_a_class_and_writes_jpeg(small_files, tmp_path):
    ct, labels = small_files
    full, hidden = tmp_path / "a.jpg", tmp_path / "b.jpg"
    assert rfmweb("render", ct, "--labels", labels, "--out", full, "--size", "64").returncode == 0
    res = rfmweb("render", ct, "--labels", labels, "--out", hidden, "--size", "64", "--hide", "label 2")
    assert res.returncode == 0, res.stderr
    a, b = (np.asarray(Image.open(p), dtype=float) for p in (full, hidden))
    assert Image.open(hidden).format == "JPEG" and np.abs(a - b).mean() > 2


def test_render_of_a_scan_the_tf_hides_says_why_the_picture_is_black(tmp_path):
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.full((12, 12, 12), -1000, np.int16), np.eye(4)), str(tmp_path / "air.nii.gz"))
    res = rfmweb("render", tmp_path / "air.nii.gz", "--out", tmp_path / "air.png", "--size", "32")
    assert res.returncode == 0 and np.asarray(Image.open(tmp_path / "air.png")).max() == 0
    assert "nothing to draw: the transfer function hides every value of this scan (-1000 to -1000 HU)" in res.stderr


def test_render_averages_frames_as_the_viewer_at_rest(small_files, tmp_path):
    """The still is the view at rest: jittered frames averaged converge (8 frames lie nearer 32 than
    one frame does); a bad --frames is refused."""
    ct, _ = small_files
    images = {}
    for frames in (1, 8, 32):
        out = tmp_path / f"f{frames}.png"
        res = rfmweb("render", ct, "--out", out, "--size", "64", "--preset", "CT-Soft-Tissue", "--frames", str(frames))
        assert res.returncode == 0, res.stderr
        images[frames] = np.asarray(Image.open(out), dtype=float)
    assert np.abs(images[8] - images[32]).mean() < 0.5 * np.abs(images[1] - images[32]).mean()
    res = rfmweb("render", ct, "--out", tmp_path / "x.png", "--frames", "0")
    assert res.returncode == 2 and "--frames must lie in 1..1024" in res.stderr


def _broken(folder: Path) -> Path:
    (folder / "broken.nii.gz").write_bytes(b"garbage" * 100)
    return folder / "broken.nii.gz"


@pytest.mark.parametrize("make, expect", [
    (_broken, "not a readable NIfTI"),
    (lambda d: d / "missing.nii.gz", "no such file"),
])
def test_bad_input_is_one_line_and_no_output(tmp_path, make, expect):
    src = make(tmp_path)
    out = tmp_path / "out.png"
    res = rfmweb("render", src, "--out", out)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and str(src) in lines[0] and expect in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert not out.exists() and list(tmp_path.glob(".out.png*")) == []


def test_mismatched_labels_name_both_files(small_files, tmp_path):
    ct, _ = small_files
    nib.save(nib.Nifti1Image(np.zeros((5, 5, 5), np.uint8), np.eye(4)), str(tmp_path / "other.nii.gz"))
    res = rfmweb("render", ct, "--labels", tmp_path / "other.nii.gz", "--out", tmp_path / "o.png")
    assert res.returncode == 2 and "other.nii.gz" in res.stderr and str(ct) in res.stderr
    assert not (tmp_path / "o.png").exists()


def test_bad_arguments(small_files, tmp_path):
    ct, labels = small_files
    res = rfmweb("render", ct, "--out", tmp_path / "x.gif")
    assert res.returncode == 2 and "must end in .png" in res.stderr
    res = rfmweb("render", ct, "--labels", labels, "--out", tmp_path / "x.png", "--hide", "pancreas")
    assert res.returncode == 2 and "no such class or group" in res.stderr and "label 2" in res.stderr
    res = rfmweb("render", ct, "--out", tmp_path / "x.png", "--hide", "pancreas")
    assert res.returncode == 2 and "has no label classes" in res.stderr
    assert not (tmp_path / "x.png").exists()


def test_options_that_cannot_apply_are_one_line_errors(small_files, tmp_path, capsys):
    """Out-of-range angles, and styles given with a splat file (its colours were fixed when it was made),
    are refused in-process; a usage error of argparse is one line too."""
    from rfmweb.cli import main
    from rfmweb.splats import Splats6D

    ct, _ = small_files
    out = tmp_path / "x.png"
    assert main(["render", str(ct), "--out", str(out), "--elevation", "200"]) == 2
    assert "--elevation must lie in -90..90 degrees, got 200" in capsys.readouterr().err
    assert main(["export-ply", str(ct), "--out", str(tmp_path / "x.ply"), "--elevation", "200"]) == 2
    assert "--elevation must lie in -90..90 degrees, got 200" in capsys.readouterr().err
    # segment checked its --device only deep in torch: a traceback, exit 1
    for device in ("tpu",) + (() if torch.cuda.is_available() else ("cuda",)):
        assert main(["segment", "sample:brain_glioma", "--out", str(tmp_path / "s.nii.gz"), "--device", device]) == 2
        err = capsys.readouterr().err
        assert "--device" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert main(["evaluate-renderfm", "--out", str(tmp_path / "eval"), "--device", "tpu"]) == 2   # and makes nothing
    assert "--device must be cpu or cuda" in capsys.readouterr().err and not (tmp_path / "eval").exists()
    g = torch.Generator().manual_seed(0)
    n = 20
    Splats6D(torch.randn(n, 3, generator=g), torch.zeros(n, 3), torch.zeros(n, 6), torch.zeros(n, 15),
             torch.zeros(n), torch.zeros(n, 4, 3)).save(tmp_path / "s.npz")
    assert main(["render", str(tmp_path / "s.npz"), "--out", str(out), "--preset", "CT-Muscle"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--preset cannot change a splat file" in err and "s.npz" in err and len(err.splitlines()) == 1
    assert not out.exists()
    # classes the splats carry can be hidden, as in the viewer; without labels there is nothing to hide
    assert main(["render", str(tmp_path / "s.npz"), "--out", str(out), "--hide", "label 1"]) == 2
    assert "--hide cannot change a splat file" in capsys.readouterr().err
    Splats6D(torch.randn(n, 3, generator=g), torch.zeros(n, 3), torch.zeros(n, 6), torch.zeros(n, 15),
             torch.zeros(n), torch.zeros(n, 4, 3), labels=torch.arange(n) % 2 + 1).save(tmp_path / "l.npz")
    assert main(["render", str(tmp_path / "l.npz"), "--out", str(out), "--hide", "label 1", "--size", "32"]) == 0
    assert out.exists()
    res = rfmweb("render", ct, "--out", out, "--preset", "CT-Foo")
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [
        res.stderr.strip()] and "invalid choice: 'CT-Foo'" in res.stderr and "rfmweb render --help" in res.stderr


def test_outputs_that_cannot_be_written_are_one_line_and_files_get_the_usual_mode(small_files, tmp_path):
    ct, _ = small_files
    (tmp_path / "folder.png").mkdir()
    for out, expect in [(tmp_path / "folder.png", "is a folder"), (ct / "a.png", "cannot write here"),
                        (tmp_path / "x.png", "--azimuth must be a finite number")]:
        res = rfmweb("render", ct, "--out", out, "--size", "16", *(["--azimuth", "nan"] if out.name == "x.png" else []))
        assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
        assert len(res.stderr.strip().splitlines()) == 1 and expect in res.stderr, res.stderr
        if expect != "is a folder":
            assert str(out) in res.stderr or "azimuth" in expect, res.stderr
    assert not (tmp_path / "x.png").exists() and list(tmp_path.glob(".*")) == []
    # a written file has the mode a plain write gives (0o666 less the umask), not mkstemp's 0o600
    res = rfmweb("render", ct, "--out", tmp_path / "ok.png", "--size", "16")
    assert res.returncode == 0, res.stderr
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "ok.png").stat().st_mode & 0o777 == 0o666 & ~umask


def test_samples_are_listed():
    res = rfmweb("samples")
    assert res.returncode == 0
    assert "sample:ct_phantom" in res.stdout and "sample:brain_glioma" in res.stdout


def test_every_command_help_reads_as_plain_text():
    """``evaluate-renderfm --help`` printed its docstring's reST raw (````rfmweb ...````, ``:mod:`...```)."""
    from rfmweb.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in sub.choices.items():
        text = parser.format_help()
        assert "``" not in text and ":mod:" not in text and ":func:" not in text, (name, text[:300])


def test_the_command_list_imports_nothing_heavy():
    """``rfmweb --help`` took 4-7 s: building every command's parser imported torch, the renderers and
    trame. The list now reads each command's ``HELP``; only the command run builds its parser."""
    code = ("import sys, contextlib, io\nfrom rfmweb.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):\n"
            "    main(['--help'])\n"
            "heavy = [m for m in ('torch', 'numba', 'vtkmodules', 'trame', 'scipy') if m in sys.modules]\n"
            "print(heavy, 'render' in out.getvalue() and 'fit-6dgs' in out.getvalue())")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.stdout.strip() == "[] True", res.stdout + res.stderr
    from rfmweb.cli import COMMANDS, build_parser
    sub = next(a for a in build_parser("render")._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == list(COMMANDS)
    assert "--renderer" in sub.choices["render"].format_help() and "--out" not in sub.choices["views"].format_help()


def test_segment_takes_the_model_as_serve_does():
    """``serve --model`` but ``segment --checkpoint``: both names now work for segment."""
    from rfmweb.cli import build_parser

    args = build_parser("segment").parse_args(["segment", "case", "--out", "s.nii.gz", "--model", "m.pt"])
    assert args.checkpoint == "m.pt"
