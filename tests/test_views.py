"""``rfmweb views``: the dataset folder fit-6dgs reads (images, cameras.json, tf.json, scene.json)."""

from __future__ import annotations

import argparse
import json
import math
import shutil

import numpy as np
import pytest
from PIL import Image

from rfmweb import samples
from rfmweb.camera import OrbitCamera, orbit_directions
from rfmweb.commands import views
from rfmweb.errors import InputError
from rfmweb.io import save_volume
from rfmweb.render import _mitsuba_scene as ms
from rfmweb.render.dvr import RaymarchRenderer
from rfmweb.transfer import load_paraview_json, preset


@pytest.fixture(scope="module")
def phantom_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("views_in")
    save_volume(samples.load("ct_phantom", size=32), folder / "ct.nii.gz", folder / "labels.nii.gz")
    return folder / "ct.nii.gz", folder / "labels.nii.gz"


def run(*argv) -> None:
    parser = argparse.ArgumentParser(prog="rfmweb")
    views.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["views", *map(str, argv)])
    args.run(args)


@pytest.fixture
def count_renders(monkeypatch):
    from rfmweb.render.compiled import CompiledRaymarchRenderer

    calls = []
    for cls in (RaymarchRenderer, CompiledRaymarchRenderer):     # views uses the fastest twin here
        def counting(self, *a, real=cls.render, **k):
            calls.append(1)
            return real(self, *a, **k)
        monkeypatch.setattr(cls, "render", counting)
    return calls


def test_views_folder_round_trips(phantom_files, tmp_path):
    ct, labels = phantom_files
    out = tmp_path / "views"
    run(ct, "--labels", labels, "--n", 4, "--size", 32, "--out", out, "--holdout", 1, "--preset", "CT-Bone",
        "--hide", "label 3")
    assert sorted(p.name for p in out.iterdir()) == ["cameras.json", "scene.json", "tf.json", "view_000.png",
                                                     "view_001.png", "view_002.png", "view_003.png"]
    cams = json.loads((out / "cameras.json").read_text())
    assert cams["format"] == "rfmweb-views/1" and "OpenCV" in cams["convention"]
    assert [v["split"] for v in cams["views"]].count("test") == 1 and len(cams["views"]) == 4
    for v in cams["views"]:
        img = np.asarray(Image.open(out / v["file"]))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        cam = OrbitCamera(**{k: v[k] for k in ("target", "azimuth", "elevation", "distance", "fov", "width", "height")})
        np.testing.assert_allclose(cam.viewmat, v["viewmat"], atol=1e-12)
        np.testing.assert_allclose(cam.K, v["K"], atol=1e-12)
        back = OrbitCamera.from_viewmat(np.array(v["viewmat"]), np.array(v["K"]), v["width"], v["height"],
                                        v["distance"])
        np.testing.assert_allclose(back.viewmat, v["viewmat"], atol=1e-9)
        np.testing.assert_allclose(back.K, v["K"], atol=1e-9)
        assert -60 <= v["elevation"] <= 75
    assert sum(np.asarray(Image.open(out / v["file"])).std() for v in cams["views"]) > 20   # not blank
    assert views.load_cameras(out / "cameras.json") == cams["views"]
    scene = json.loads((out / "scene.json").read_text())
    assert scene["renderer"] == "raymarch" and scene["preset"] == "CT-Bone" and scene["spp"] is None
    assert scene["hidden_classes"] == [3] and scene["hidden_class_names"] == ["label 3"]
    # the scan is named by a fingerprint of what was read, never by its path (names are often patient IDs)
    assert scene["volume"].startswith("blake2b:") and scene["labels"].startswith("blake2b:")
    assert str(ct.parent) not in (out / "scene.json").read_text()
    assert load_paraview_json(out / "tf.json").color == preset("CT-Bone").color


def test_rerun_skips_finished_views_and_redoes_changed_ones(phantom_files, tmp_path, count_renders):
    ct, _ = phantom_files
    out = tmp_path / "v"
    args = (ct, "--n", 3, "--size", 24, "--out", out)
    run(*args)
    assert len(count_renders) == 3
    run(*args)
    assert len(count_renders) == 3                          # nothing left to do
    (out / "view_001.png").unlink()
    cams = json.loads((out / "cameras.json").read_text())
    cams["views"][2]["viewmat"][0][3] += 1.0                # a camera that no longer matches
    (out / "cameras.json").write_text(json.dumps(cams))
    before = (out / "view_000.png").stat().st_mtime_ns
    run(*args)
    assert len(count_renders) == 5                          # views 1 and 2 again, view 0 kept
    assert (out / "view_000.png").stat().st_mtime_ns == before
    assert json.loads((out / "cameras.json").read_text())["views"][2]["viewmat"][0][3] == pytest.approx(
        cams["views"][2]["viewmat"][0][3] - 1.0)


def test_the_same_scan_elsewhere_resumes_and_another_scan_is_refused(phantom_files, tmp_path, count_renders):
    ct, _ = phantom_files
    out = tmp_path / "v"
    run(ct, "--n", 2, "--size", 24, "--out", out)
    moved = tmp_path / "renamed" / "copy.nii.gz"
    moved.parent.mkdir()
    shutil.copyfile(ct, moved)
    run(moved, "--n", 2, "--size", 24, "--out", out)
    assert len(count_renders) == 2                          # the same voxels: nothing to redo
    save_volume(samples.load("ct_phantom", size=24), tmp_path / "other.nii.gz")
    with pytest.raises(InputError, match="holds views rendered with other settings"):
        run(tmp_path / "other.nii.gz", "--n", 2, "--size", 24, "--out", out)


def test_changed_settings_are_refused_unless_overwrite(phantom_files, tmp_path, count_renders):
    ct, _ = phantom_files
    out = tmp_path / "v"
    run(ct, "--n", 3, "--size", 24, "--out", out)
    with pytest.raises(InputError, match=r"other settings \(size 24 -> 32\).*--overwrite"):
        run(ct, "--n", 3, "--size", 32, "--out", out)
    with pytest.raises(InputError, match="other settings"):
        run(ct, "--n", 3, "--size", 24, "--out", out, "--preset", "CT-Muscle")
    run(ct, "--n", 2, "--size", 32, "--out", out, "--overwrite")
    assert len(count_renders) == 5
    assert sorted(p.name for p in out.glob("view_*.png")) == ["view_000.png", "view_001.png"]
    assert Image.open(out / "view_000.png").size == (32, 32)


@pytest.mark.parametrize("argv, message", [
    (("--n", 0), r"--n must lie in 1..10000"),
    (("--n", 4, "--holdout", 4), r"--holdout must lie in 0..3"),
    (("--size", 8), r"--size must lie in 16..4096"),
    (("--spp", 8), r"--spp applies to --renderer pathtrace only"),
    (("--hide", "liver"), r"--hide 'liver': the volume has no label classes"),
])
def test_bad_arguments_are_one_line_input_errors(phantom_files, tmp_path, argv, message):
    ct, _ = phantom_files
    with pytest.raises(InputError, match=message) as info:
        run(ct, "--out", tmp_path / "v", *argv)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "v" / "cameras.json").exists()


def test_bad_paths_are_input_errors(phantom_files, tmp_path):
    ct, labels = phantom_files
    with pytest.raises(InputError, match=r"--hide 'liver': no such class or group; choose from"):
        run(ct, "--labels", labels, "--out", tmp_path / "v", "--hide", "liver")
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="must be a folder"):
        run(ct, "--out", tmp_path / "file")
    with pytest.raises(InputError, match="no such file"):
        run(tmp_path / "missing.nii.gz", "--out", tmp_path / "v")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "view_000.png").write_bytes(b"")
    with pytest.raises(InputError, match="no scene.json"):
        run(ct, "--out", foreign, "--n", 2, "--size", 16)


def test_orbit_directions_are_spread_and_deterministic():
    dirs = orbit_directions(40, seed=3)
    assert dirs == orbit_directions(40, seed=3) and dirs != orbit_directions(40, seed=4)
    el = np.array([e for _, e in dirs])
    assert el.min() >= -60 and el.max() <= 75 and el.max() - el.min() > 110
    v = np.array([[-math.sin(math.radians(a)) * math.cos(math.radians(e)),
                   math.cos(math.radians(a)) * math.cos(math.radians(e)), math.sin(math.radians(e))]
                  for a, e in dirs])
    cos = v @ v.T - 2 * np.eye(len(v))
    nearest = np.degrees(np.arccos(np.clip(cos.max(1), -1, 1)))
    assert nearest.min() > 10 and nearest.max() < 40       # no two views alike, no big holes
    assert views.holdout_indices(20, 4) == {2, 7, 12, 17} and views.holdout_indices(5, 0) == set()


@pytest.mark.skipif(not ms.mitsuba_installed() or ms.select_variant().variant == "scalar_rgb",
                    reason="needs Mitsuba 3 with a GPU or LLVM >= 16 (pip install rfmweb[photoreal], libllvm19)")
def test_path_traced_views(phantom_files, tmp_path):
    ct, labels = phantom_files
    out = tmp_path / "pt"
    run(ct, "--labels", labels, "--renderer", "pathtrace", "--n", 2, "--size", 16, "--spp", 4, "--out", out)
    scene = json.loads((out / "scene.json").read_text())
    assert scene["spp"] == 4 and scene["lighting"]["frame"] == "world"
    assert all(np.asarray(Image.open(out / f"view_00{i}.png")).shape == (16, 16, 3) for i in range(2))
