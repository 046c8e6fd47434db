"""6D splats: parameters, slicing (against numpy), SH colour, .npz and .ply files."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera
from rfmweb.errors import InputError
from rfmweb.splats import (LAMBDA_OPA, Splats6D, conditional_parts, eval_sh_deg1, export_ply, import_ply,
                           read_ply, slice_6d, write_ply)
from rfmweb.splats.ply import covariance_to_scale_rotation, quaternion_to_rotation

C0, C1 = 0.28209479177387814, 0.4886025119029199


def random_splats(n: int, seed: int = 0, dtype=torch.float64, lower_std: float = 1.0, labels: bool = False
                  ) -> Splats6D:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g, dtype=dtype)  # noqa: E731
    log_diag = torch.cat([r(n, 3) * 0.3 + 1.0, r(n, 3) * 0.3 - 0.5], 1)  # ~2.7 mm, ~0.6 in direction space
    return Splats6D(r(n, 3) * 50, r(n, 3) * 0.3, log_diag, r(n, 15) * lower_std, r(n) * 2, r(n, 4, 3) * 0.5,
                    torch.randint(0, 5, (n,), generator=g) if labels else None)


def numpy_cholesky(s: Splats6D) -> np.ndarray:
    """L = diag(exp(log_diag)) (I + strictly_lower(2 sigmoid(raw) - 1)), written out with numpy loops."""
    log_diag, raw = s.chol_log_diag.detach().numpy(), s.chol_lower.detach().numpy()
    out = np.zeros((len(s), 6, 6))
    for n in range(len(s)):
        m, k = np.eye(6), 0
        for i in range(6):
            for j in range(i):
                m[i, j] = 2 / (1 + np.exp(-raw[n, k])) - 1
                k += 1
        out[n] = np.diag(np.exp(log_diag[n])) @ m
    return out


def numpy_slice(cov: np.ndarray, mu_p, mu_d, logit, d, lam=LAMBDA_OPA):
    """Conditional Gaussian of one 6D Gaussian given direction d (textbook formulas, np.linalg.inv)."""
    s_p, s_pd, s_dp, s_d = cov[:3, :3], cov[:3, 3:], cov[3:, :3], cov[3:, 3:]
    inv = np.linalg.inv(s_d)
    mean = mu_p + s_pd @ inv @ (d - mu_d)
    covar = s_p - s_pd @ inv @ s_dp
    alpha = 1 / (1 + np.exp(-logit)) * np.exp(-lam * (d - mu_d) @ inv @ (d - mu_d))
    return mean, covar, alpha


# -- model --------------------------------------------------------------------------------------------
def test_covariance_is_LLt_of_the_documented_factor():
    s = random_splats(20)
    chol = numpy_cholesky(s)
    np.testing.assert_allclose(s.cholesky().numpy(), chol, rtol=1e-12, atol=1e-12)
    cov = s.covariance().numpy()
    np.testing.assert_allclose(cov, chol @ np.swapaxes(chol, 1, 2), rtol=1e-12, atol=1e-10)
    assert (np.linalg.eigvalsh(cov) > 0).all()


def test_from_covariance_inverts_covariance_and_flags_unrepresentable():
    s = random_splats(50)
    back, exact = Splats6D.from_covariance(s.means, s.covariance(), s.opacities, s.sh)
    assert exact.all()
    np.testing.assert_allclose(back.covariance().numpy(), s.covariance().numpy(), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(back.opacity_logits.numpy(), s.opacity_logits.numpy(), atol=1e-6)
    cov = torch.eye(6, dtype=torch.float64)[None].repeat(2, 1, 1)
    cov[1, 0, 1] = cov[1, 1, 0] = 0.9  # corr(x, y) = 0.9 > 1/sqrt(2): outside the 6DGS factor
    _, exact = Splats6D.from_covariance(torch.zeros(2, 3, dtype=torch.float64), cov,
                                        torch.full((2,), 0.5), torch.zeros(2, 4, 3))
    assert exact.tolist() == [True, False]


def test_validation_names_the_field():
    s = random_splats(4)
    with pytest.raises(InputError, match="chol_lower"):
        Splats6D(s.means, s.dir_means, s.chol_log_diag, s.chol_lower[:, :14], s.opacity_logits, s.sh)
    with pytest.raises(InputError, match="sh"):
        Splats6D(s.means, s.dir_means, s.chol_log_diag, s.chol_lower, s.opacity_logits, s.sh[:3])
    with pytest.raises(InputError, match="opacity_logits.*float32"):
        Splats6D(s.means, s.dir_means, s.chol_log_diag, s.chol_lower, s.opacity_logits.float(), s.sh)
    with pytest.raises(InputError, match="labels"):
        Splats6D(s.means, s.dir_means, s.chol_log_diag, s.chol_lower, s.opacity_logits, s.sh, torch.zeros(4))
    assert len(s) == 4 and s.to("cpu", torch.float32).dtype == torch.float32


def test_prune_drops_low_opacity():
    s = random_splats(200, labels=True)
    kept = s.prune(0.01)
    assert len(kept) == int((torch.sigmoid(s.opacity_logits) >= 0.01).sum()) < len(s)
    assert (kept.opacities >= 0.01).all() and kept.labels is not None and len(kept.labels) == len(kept)
    with pytest.raises(InputError):
        s.prune(1.5)


# -- slicing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", range(3))
def test_slice_matches_numpy_conditional_gaussian(seed):
    s = random_splats(30, seed)
    centres = np.random.default_rng(seed).normal(size=(4, 3)) * 300
    g = slice_6d(s, centres)
    cov = numpy_cholesky(s) @ np.swapaxes(numpy_cholesky(s), 1, 2)
    assert g.means.shape == (4, 30, 3) and g.covars.shape == (30, 3, 3) and g.opacities.shape == (4, 30)
    for v in range(4):
        for n in range(30):
            mu_p = s.means[n].numpy()
            d = mu_p - centres[v]
            d /= np.linalg.norm(d)
            mean, covar, alpha = numpy_slice(cov[n], mu_p, s.dir_means[n].numpy(), s.opacity_logits[n].item(), d)
            np.testing.assert_allclose(g.dirs[v, n].numpy(), d, atol=1e-12)
            np.testing.assert_allclose(g.means[v, n].numpy(), mean, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(g.covars[n].numpy(), covar, rtol=1e-9, atol=1e-9)
            np.testing.assert_allclose(g.opacities[v, n].item(), alpha, rtol=1e-9)


def test_decoupled_gaussian_slices_to_itself():
    s = random_splats(10, 3)
    raw = s.chol_lower.clone()
    raw[:, 3:] = 0.0  # l = 0 in every direction row: L_dp = 0 -> S_pd = 0 (and S_d diagonal)
    s = Splats6D(s.means, s.dir_means, s.chol_log_diag, raw, s.opacity_logits, s.sh)
    cov = s.covariance()
    assert torch.allclose(cov[:, :3, 3:], torch.zeros(()).double())
    cam = OrbitCamera((1, 2, 3), azimuth=40, elevation=10, distance=400)
    g = slice_6d(s, cam)
    torch.testing.assert_close(g.means[0], s.means)
    torch.testing.assert_close(g.covars, cov[:, :3, :3])
    delta = g.dirs[0] - s.dir_means
    maha = torch.einsum("ni,nij,nj->n", delta, torch.linalg.inv(cov[:, 3:, 3:]), delta)
    torch.testing.assert_close(g.opacities[0], torch.sigmoid(s.opacity_logits) * torch.exp(-LAMBDA_OPA * maha))


def test_slice_accepts_directions_and_reuses_parts():
    s = random_splats(8, 5)
    dirs = torch.nn.functional.normalize(torch.randn(2, 8, 3, dtype=torch.float64), dim=-1)
    parts = conditional_parts(s)
    a, b = slice_6d(s, dirs, parts=parts), slice_6d(s, dirs)
    torch.testing.assert_close(a.means, b.means)
    torch.testing.assert_close(a.opacities, b.opacities)
    with pytest.raises(InputError, match="views"):
        slice_6d(s, torch.zeros(2, 7, 3))


def test_sh_colour_follows_gsplat_convention():
    sh = torch.randn(5, 4, 3, dtype=torch.float64)
    d = torch.nn.functional.normalize(torch.randn(5, 3, dtype=torch.float64), dim=-1)
    x, y, z = d[:, :1], d[:, 1:2], d[:, 2:]
    want = (C0 * sh[:, 0] - C1 * y * sh[:, 1] + C1 * z * sh[:, 2] - C1 * x * sh[:, 3] + 0.5).clamp_min(0)
    torch.testing.assert_close(eval_sh_deg1(sh, d), want)
    dark = torch.zeros_like(sh)
    dark[:, 0] = -10.0
    assert (eval_sh_deg1(dark, d) == 0).all()  # clamped at 0


def test_slice_gradcheck():
    s = random_splats(3, 7)
    centres = torch.tensor([[200.0, -100.0, 50.0], [-30.0, 250.0, 10.0]], dtype=torch.float64)

    def f(means, dir_means, log_diag, lower, logits, sh, c):
        g = slice_6d(Splats6D(means, dir_means, log_diag, lower, logits, sh), c)
        return g.means, g.covars, g.opacities, g.colors

    inputs = [t.clone().requires_grad_() for t in (s.means, s.dir_means, s.chol_log_diag, s.chol_lower,
                                                   s.opacity_logits, s.sh, centres)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-4)


# -- .npz files -----------------------------------------------------------------------------------------
def test_save_load_round_trip(tmp_path):
    s = random_splats(40, labels=True, dtype=torch.float32)
    path = tmp_path / "scan.splats.npz"
    s.save(path)
    back = Splats6D.load(path)
    for name in ("means", "dir_means", "chol_log_diag", "chol_lower", "opacity_logits", "sh", "labels"):
        assert torch.equal(getattr(back, name), getattr(s, name)), name
    s2 = random_splats(5, dtype=torch.float32)
    s2.save(tmp_path / "nolabels.npz")
    assert Splats6D.load(tmp_path / "nolabels.npz").labels is None and back.box is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nolabels.npz", "scan.splats.npz"]  # no temporaries


def test_the_volume_box_travels_with_the_splats_and_frames_them_alone(tmp_path):
    """The box of the volume the splats were made from is saved, survives indexing and moves, and a
    view of the splats alone frames it as a view of that volume (not the tighter spread of the splats)."""
    from dataclasses import replace

    from rfmweb.session import RenderSession

    box = np.array([[-100.0, -90.0, -60.0], [110.0, 95.0, 70.0]])
    s = replace(random_splats(30, dtype=torch.float32), box=box)
    s.save(tmp_path / "b.npz")
    back = Splats6D.load(tmp_path / "b.npz")
    np.testing.assert_array_equal(back.box, box)
    assert back.index(back.opacities > 0.5).box is back.box and back.to("cpu").box is back.box
    assert back.detach().box is back.box
    np.testing.assert_array_equal(RenderSession(None, splats=back, width=32, height=32).bounds, box)
    assert not np.allclose(RenderSession(None, splats=random_splats(30), width=32, height=32).bounds, box)
    with pytest.raises(InputError, match="Splats6D.box must be"):
        replace(s, box=box[::-1])
    np.savez(tmp_path / "badbox.npz", **{**dict(np.load(tmp_path / "b.npz")), "box": np.zeros(3)})
    with pytest.raises(InputError, match="array 'box' must be") as info:
        Splats6D.load(tmp_path / "badbox.npz")
    assert "badbox.npz" in str(info.value)


def test_bad_npz_files_raise_input_error_naming_the_file(tmp_path):
    good = random_splats(4, dtype=torch.float32)
    good.save(tmp_path / "good.npz")
    arrays = dict(np.load(tmp_path / "good.npz"))
    cases = {
        "garbage.npz": b"this is not a zip file",
        "missing.npz": {k: v for k, v in arrays.items() if k != "sh"},
        "nan.npz": {**arrays, "means": np.full((4, 3), np.nan, np.float32)},
        "shape.npz": {**arrays, "chol_lower": np.zeros((4, 14), np.float32)},
        "notag.npz": {k: v for k, v in arrays.items() if k != "format"},
        "pickle.npz": {**arrays, "means": np.array([object()] * 4, dtype=object)},
    }
    for name, content in cases.items():
        path = tmp_path / name
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            np.savez(path, **content)
        with pytest.raises(InputError) as err:
            Splats6D.load(path)
        assert str(path) in str(err.value), name
    with pytest.raises(InputError, match="no such"):
        Splats6D.load(tmp_path / "absent.npz")


# -- .ply files -------------------------------------------------------------------------------------------
def test_scale_rotation_is_a_proper_rotation():
    a = np.random.default_rng(1).normal(size=(100, 3, 3))
    cov = a @ np.swapaxes(a, 1, 2) + 0.1 * np.eye(3)
    log_s, q = covariance_to_scale_rotation(cov)
    r = quaternion_to_rotation(q)
    np.testing.assert_allclose(np.linalg.det(r), 1.0, atol=1e-9)
    np.testing.assert_allclose(r @ (np.exp(2 * log_s)[:, :, None] * np.swapaxes(r, 1, 2)), cov, atol=1e-9)
    assert (q[:, 0] >= 0).all()


def test_ply_round_trip_3d(tmp_path):
    rng = np.random.default_rng(2)
    n = 64
    a = rng.normal(size=(n, 3, 3))
    cov = a @ np.swapaxes(a, 1, 2) + 0.5 * np.eye(3)
    means, opac, sh = rng.normal(size=(n, 3)) * 40, rng.uniform(0.05, 0.95, n), rng.normal(size=(n, 4, 3))
    path = tmp_path / "g.ply"
    write_ply(path, means, cov, opac, sh)
    raw = path.read_bytes()
    header = raw[:raw.index(b"end_header")].decode().splitlines()
    props = [line.split()[-1] for line in header if line.startswith("property")]
    assert props == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
                     *(f"f_rest_{i}" for i in range(9)), "opacity", "scale_0", "scale_1", "scale_2",
                     "rot_0", "rot_1", "rot_2", "rot_3"]
    assert len(raw) - raw.index(b"end_header\n") - len(b"end_header\n") == n * len(props) * 4
    g = read_ply(path)
    np.testing.assert_allclose(g["means"], means, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(g["covars"], cov, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(g["opacities"], opac, atol=1e-6)
    np.testing.assert_allclose(g["sh"], sh, atol=1e-6)
    # f_rest is channel-major: f_rest_0..2 are the red channel's three degree-1 coefficients
    v = np.frombuffer(raw[raw.index(b"end_header\n") + 11:], dtype="<f4").reshape(n, -1)
    np.testing.assert_allclose(v[:, 9:12], sh[:, 1:, 0], atol=1e-6)


def test_export_import_slices_back_to_the_same_gaussians(tmp_path):
    s = random_splats(60, 4, lower_std=0.5).to(dtype=torch.float32)
    cam = OrbitCamera((0, 0, 0), azimuth=30, elevation=20, distance=500)
    path = tmp_path / "view.ply"
    export_ply(path, s, cam)
    back, exact = import_ply(path, return_exact=True)
    assert exact.float().mean() > 0.5
    original = slice_6d(s, cam)
    for other in (cam, OrbitCamera(azimuth=200, elevation=-40, distance=300)):
        g = slice_6d(back, other)
        m = exact
        torch.testing.assert_close(g.means[0][m], original.means[0][m], rtol=1e-4, atol=1e-3)
        torch.testing.assert_close(g.covars[m], original.covars[m], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(g.opacities[0][m], original.opacities[0][m], rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(g.colors[0], eval_sh_deg1(s.sh, g.dirs[0]), rtol=1e-5, atol=1e-5)
    # baked colour (sh_degree=0): the colour of the exported view, from any direction
    export_ply(tmp_path / "baked.ply", s, cam.position, sh_degree=0)
    g = slice_6d(import_ply(tmp_path / "baked.ply"), np.array([[0.0, 0.0, 900.0]]))
    torch.testing.assert_close(g.colors[0], original.colors[0], rtol=1e-5, atol=1e-5)


def test_import_warns_about_unrepresentable_covariances(tmp_path, caplog):
    cov = np.array([np.eye(3), [[1, 0.9, 0], [0.9, 1, 0], [0, 0, 1]]]) * 4.0
    write_ply(tmp_path / "c.ply", np.zeros((2, 3)), cov, np.full(2, 0.5), np.zeros((2, 1, 3)))
    with caplog.at_level(logging.WARNING):
        _, exact = import_ply(tmp_path / "c.ply", return_exact=True)
    assert exact.tolist() == [True, False] and "1 of 2" in caplog.text


def test_bad_ply_files_raise_input_error_naming_the_file(tmp_path):
    write_ply(tmp_path / "ok.ply", np.zeros((3, 3)), np.eye(3)[None].repeat(3, 0), np.full(3, 0.5),
              np.zeros((3, 4, 3)))
    ok = (tmp_path / "ok.ply").read_bytes()
    cases = {
        "empty.ply": b"",
        "ascii.ply": b"ply\nformat ascii 1.0\nelement vertex 0\nproperty float x\nend_header\n",
        "truncated.ply": ok[:-10],
        "noopacity.ply": ok.replace(b"property float opacity\n", b""),
        "nan.ply": ok[:-4] + np.float32(np.nan).tobytes(),
    }
    for name, content in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(InputError) as err:
            import_ply(tmp_path / name)
        assert str(tmp_path / name) in str(err.value), name
    with pytest.raises(InputError, match="no such"):
        read_ply(tmp_path / "absent.ply")
