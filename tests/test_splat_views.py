"""Splats in the viewer path: AGP initialisation, the ``splats`` renderer, the CLI."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from rfmweb.errors import InputError
from rfmweb.render import Scene
from rfmweb.session import RenderSession
from rfmweb.splats import read_ply
from rfmweb.splats.init import DIR_STD, SH_C0, agp_init, random_init
from rfmweb.splats.slicing import LAMBDA_OPA
from rfmweb.transfer import ClassTable, preset

from .conftest import pixels_differ


@pytest.fixture(scope="module")
def scene(small_ct):
    return Scene(small_ct, preset("CT-Bone"), ClassTable.from_classes(small_ct.classes))


@pytest.fixture(scope="module")
def splats(scene):
    return agp_init(scene)


def test_agp_places_one_splat_per_visible_half_res_voxel(scene, splats, small_ct):
    assert len(splats) > 100 and splats.labels is not None
    assert set(splats.labels.unique().tolist()) <= {1, 2}                 # foreground classes only
    lo, hi = small_ct.bounds
    means = splats.means.numpy()
    assert (means >= lo - 1e-3).all() and (means <= hi + small_ct.spacing[0]).all()
    # half-res voxel centres: offsets of 0.5 voxel on the full-res lattice
    ijk = np.linalg.solve(small_ct.affine[:3, :3], (means - small_ct.affine[:3, 3]).T).T
    np.testing.assert_allclose(ijk % 2, 0.5, atol=1e-4)
    # scale = half-res voxel, colour = TF colour, opacity compensated for the direction block
    np.testing.assert_allclose(splats.chol_log_diag[:, :3].exp().numpy(),
                               np.broadcast_to(np.array(small_ct.spacing), (len(splats), 3)), rtol=1e-5)
    rgb = (splats.sh[:, 0, :] * SH_C0 + 0.5).numpy()
    assert ((rgb >= 0) & (rgb <= 1)).all()
    seen = torch.sigmoid(splats.opacity_logits) * math.exp(-LAMBDA_OPA / DIR_STD ** 2)
    assert seen.max() <= 0.999 and seen.min() >= 0.01 - 1e-6


def test_agp_respects_hidden_classes(scene, splats):
    no_bone = agp_init(Scene(scene.volume, scene.tf, scene.classes.updated(2, visible=False)))
    assert 2 not in no_bone.labels.tolist() and len(no_bone) < len(splats)
    capped = agp_init(scene, max_splats=50)
    assert len(capped) == 50
    with pytest.raises(InputError, match="hide everything"):
        agp_init(Scene(scene.volume, scene.tf, scene.classes.updated(1, visible=False).updated(2, visible=False)))


def test_splats_renderer_in_a_session(scene, splats, small_ct, artifacts):
    session = RenderSession(small_ct, splats=splats, renderer="splats", width=64, height=64)
    img = session.render()
    assert img.shape == (64, 64, 3) and img.std() > 10
    session.set_class(2, visible=False)   # class toggles act on the splats' labels
    assert pixels_differ(img, session.render())
    # a preset changes nothing the splats draw: the view says so (the menu changed, the picture did not)
    before = session.render()
    session.set_preset("CT-Muscle")
    assert not pixels_differ(before, session.render()) and "preset" in session.note(session.snapshot())
    session.set_renderer("raymarch")      # same view, same anatomy
    ray = session.render()
    assert ray.std() > 10
    Image.fromarray(np.concatenate([img, ray], axis=1)).save(artifacts / "splats_vs_raymarch.png")
    alone = RenderSession(splats=splats, width=48, height=48)
    assert alone.renderer_name == "splats" and alone.render().std() > 10
    assert [s.index for s in alone.classes.styles] == [1, 2]
    with pytest.raises(InputError, match="no splats"):
        RenderSession(small_ct, renderer="splats", width=32, height=32).render()
    with pytest.raises(InputError, match="volume, splats, or both"):
        RenderSession()
    # a volume renderer on splats alone: one clear error, before anything renders (it was an AttributeError)
    for name in ("raymarch", "compiled", "vtk"):
        with pytest.raises(InputError, match="draws a volume; this view shows splats alone"):
            RenderSession(splats=splats, renderer=name, width=32, height=32)
        with pytest.raises(InputError, match="draws a volume"):
            alone.set_renderer(name)
    assert alone.renderer_name == "splats"


def test_random_init_fills_the_box():
    s = random_init(np.array([[-10.0, -20, -30], [10, 20, 30]]), 500, seed=1)
    m = s.means.numpy()
    assert len(s) == 500 and (m.min(0) >= [-10, -20, -30]).all() and (m.max(0) <= [10, 20, 30]).all()


def test_cli_renders_a_splat_file_and_exports_ply(splats, tmp_path):
    path = tmp_path / "agp.npz"
    splats.save(path)
    out = tmp_path / "s.png"
    res = subprocess.run([sys.executable, "-m", "rfmweb", "render", str(path), "--renderer", "splats", "--size", "64",
                          "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.asarray(Image.open(out)).std() > 10
    ply = tmp_path / "s.ply"
    res = subprocess.run([sys.executable, "-m", "rfmweb", "export-ply", str(path), "--azimuth", "30", "--out", str(ply)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    g = read_ply(ply)
    assert g["means"].shape == (len(splats), 3)
    res = subprocess.run([sys.executable, "-m", "rfmweb", "render", str(path), "--renderer", "vtk", "--size", "64",
                          "--out", str(tmp_path / "v.png")], capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "splats alone" in res.stderr and len(res.stderr.strip().splitlines()) == 1, \
        res.stderr
    assert not (tmp_path / "v.png").exists()
    # the 6D .ply (export-ply --6d, prepare --out x.ply) renders and serves like the .npz: it was read as NIfTI
    from rfmweb.session.sources import open_sources
    from rfmweb.splats.ply6d import write_ply6d

    ply6d = tmp_path / "agp6d.ply"
    write_ply6d(ply6d, splats)
    out6d = tmp_path / "s6d.png"
    res = subprocess.run([sys.executable, "-m", "rfmweb", "render", str(ply6d), "--renderer", "splats", "--size", "64",
                          "--out", str(out6d)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert np.abs(np.asarray(Image.open(out6d), float) - np.asarray(Image.open(out), float)).mean() < 1.0
    assert open_sources(ply6d)[1].means.shape == splats.means.shape
    assert open_sources(None, splats=ply6d)[1].means.shape == splats.means.shape
    res = subprocess.run([sys.executable, "-m", "rfmweb", "export-ply", str(tmp_path / "nope.npz"), "--out", str(ply)],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "nope.npz" in res.stderr and len(res.stderr.strip().splitlines()) == 1
