"""Splat rasterisers: the torch twin against analytic images, the numba kernel against the twin,
gradients, and (on CUDA) gsplat against the twin."""

from __future__ import annotations

import logging
import math

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera
from rfmweb.errors import InputError
from rfmweb.splats import camera_tensors, rasterize
from rfmweb.splats._torch_impl import rasterize_torch
from rfmweb.backend import _log_choice, choose_rasterizer, numba_available

needs_numba = pytest.mark.skipif(not numba_available(), reason="numba not installed")
BACKENDS = ["torch", pytest.param("cpu", marks=needs_numba)]


def pinhole(f: float, cx: float, cy: float, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """One camera at the origin looking down +z: (viewmats [1, 4, 4], Ks [1, 3, 3])."""
    return torch.eye(4, dtype=dtype)[None], torch.tensor([[[f, 0, cx], [0, f, cy], [0, 0, 1]]], dtype=dtype)


def random_scene(n: int, seed: int, views: int, width: int, height: int, dtype=torch.float32):
    """Splats in a 200 mm box around the origin, OrbitCameras around it; some splats fall outside."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * 240
    rot = torch.linalg.qr(torch.randn(n, 3, 3, generator=g))[0]
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.6) * (0.3 * 200 / n ** (1 / 3))
    covars = rot @ torch.diag_embed(scales ** 2) @ rot.transpose(-1, -2)
    opac = torch.rand(views, n, generator=g) * 0.97 + 0.01
    colors = torch.rand(views, n, 3, generator=g)
    cams = [OrbitCamera(azimuth=70 * i + 10, elevation=25 - 20 * i, distance=450 + 60 * i, fov=40,
                        width=width, height=height) for i in range(views)]
    viewmats, ks, _, _ = camera_tensors(cams, dtype=dtype)
    return means.to(dtype), covars.to(dtype), opac.to(dtype), colors.to(dtype), viewmats, ks


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_isotropic_gaussian_matches_analytic_image(backend):
    w, h, f, z, sigma_mm, opacity = 33, 25, 40.0, 100.0, 8.0, 0.8
    viewmats, ks = pinhole(f, w / 2, h / 2)
    means = torch.tensor([[0.0, 0.0, z]])
    covars = torch.eye(3)[None] * sigma_mm ** 2
    rgb, alpha = rasterize(means, covars, torch.tensor([opacity]), torch.tensor([[0.2, 0.5, 1.0]]), viewmats, ks,
                           w, h, backend=backend)
    sigma_px2 = (f * sigma_mm / z) ** 2
    v, u = np.mgrid[0:h, 0:w] + 0.5
    r2 = (u - w / 2) ** 2 + (v - h / 2) ** 2
    want = opacity * np.exp(-0.5 * r2 / (sigma_px2 + 0.3))
    want[want < 1 / 255] = 0
    assert (want == 0).any() and (want > 0.5).any()  # the 1/255 cut is inside the image
    np.testing.assert_allclose(alpha[0, ..., 0].numpy(), want, atol=2e-6)
    np.testing.assert_allclose(rgb[0].numpy(), want[..., None] * np.array([0.2, 0.5, 1.0]), atol=2e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_front_to_back_order_and_background(backend):
    viewmats, ks = pinhole(20.0, 8.5, 6.5)
    means = torch.tensor([[0.0, 0.0, 30.0], [0.0, 0.0, 10.0]])  # the far (green) one first in the list
    covars = torch.eye(3)[None].repeat(2, 1, 1) * torch.tensor([4.0, 0.5])[:, None, None]
    colors = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    opac = torch.tensor([0.9, 0.6])
    bg = torch.tensor([0.0, 0.0, 1.0])
    rgb, alpha = rasterize(means, covars, opac, colors, viewmats, ks, 17, 13, background=bg, backend=backend)
    a_red, a_green = 0.6, 0.9  # at the central pixel centre (8.5, 6.5), the mean: q = 0
    want = np.array([a_red, (1 - a_red) * a_green, (1 - a_red) * (1 - a_green)])
    np.testing.assert_allclose(rgb[0, 6, 8].numpy(), want, atol=1e-6)
    assert alpha[0, 6, 8, 0].item() == pytest.approx(1 - (1 - a_red) * (1 - a_green), abs=1e-6)
    assert torch.equal(rgb[0, 0, 0], bg) and alpha[0, 0, 0, 0] == 0  # nothing reaches the corner


@pytest.mark.parametrize("backend", BACKENDS)
def test_saturated_pixel_stops_before_transmittance_1e_4(backend):
    viewmats, ks = pinhole(10.0, 2.5, 2.5)
    z = torch.tensor([10.0, 11.0, 12.0, 13.0])
    means = torch.stack([torch.zeros(4), torch.zeros(4), z], -1)
    colors = torch.tensor([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [100.0, 100.0, 100.0]])
    rgb, alpha = rasterize(means, torch.eye(3)[None].repeat(4, 1, 1) * 0.01, torch.full((4,), 0.95), colors,
                           viewmats, ks, 5, 5, backend=backend)
    # T: 1 -> 0.05 -> 0.0025 -> 1.25e-4 -> (6.25e-6 <= 1e-4: the 4th Gaussian is not drawn)
    np.testing.assert_allclose(rgb[0, 2, 2].numpy(), [0.95, 0.05 * 0.95, 0.0025 * 0.95], rtol=1e-5)
    assert alpha[0, 2, 2, 0].item() == pytest.approx(1 - 1.25e-4, abs=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_near_plane_and_offscreen_culling(backend):
    viewmats, ks = pinhole(10.0, 5.0, 5.0)
    means = torch.tensor([[0.0, 0.0, -5.0], [0.0, 0.0, 0.001], [500.0, 0.0, 10.0]])
    rgb, alpha = rasterize(means, torch.eye(3)[None].repeat(3, 1, 1), torch.full((3,), 0.9), torch.ones(3, 3),
                           viewmats, ks, 10, 10, backend=backend)
    assert alpha.abs().max() == 0 and rgb.abs().max() == 0


def test_torch_rasteriser_gradcheck():
    viewmats, ks = pinhole(8.0, 4.0, 3.0, torch.float64)
    means = torch.tensor([[0.3, -0.2, 10.0], [-1.0, 0.5, 12.0], [1.2, 1.0, 14.0]], dtype=torch.float64)
    a = torch.tensor([[[1.0, 0.2, 0.1], [0.0, 0.8, -0.3], [0.2, 0.1, 1.1]]], dtype=torch.float64)
    scale = torch.tensor([0.5, 1.0, 1.5], dtype=torch.float64)[:, None, None]
    covars = (a @ a.transpose(-1, -2)).repeat(3, 1, 1) * scale
    opac = torch.tensor([0.7, 0.5, 0.8], dtype=torch.float64)
    colors = torch.tensor([[0.9, 0.1, 0.2], [0.1, 0.8, 0.3], [0.2, 0.3, 0.9]], dtype=torch.float64)
    bg = torch.tensor([[0.1, 0.2, 0.3]], dtype=torch.float64)

    def f(m, c, o, col, b):
        return rasterize_torch(m[None], c[None], o[None], col[None], viewmats, ks, 8, 6, b)[0]  # rgb

    inputs = [t.clone().requires_grad_() for t in (means, covars, opac, colors, bg)]
    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


def test_culled_gaussians_get_finite_zero_gradients():
    viewmats, ks = pinhole(10.0, 5.0, 5.0)
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, -5.0], [0.2, 0.1, 10.0]], requires_grad=True)
    covars = (torch.eye(3)[None].repeat(3, 1, 1) * 0.5).requires_grad_()
    opac = torch.full((3,), 0.7, requires_grad=True)
    rgb, alpha = rasterize(means, covars, opac, torch.ones(3, 3), viewmats, ks, 10, 10)
    (rgb.sum() + alpha.sum()).backward()
    for t in (means, covars, opac):
        assert torch.isfinite(t.grad).all()
        assert (t.grad[:2] == 0).all() and t.grad[2].abs().sum() > 0


def test_empty_scene_is_background():
    viewmats, ks = pinhole(10.0, 5.0, 5.0)
    for backend in ["torch"] + (["cpu"] if numba_available() else []):
        rgb, alpha = rasterize(torch.zeros(0, 3), torch.zeros(0, 3, 3), torch.zeros(0), torch.zeros(0, 3), viewmats,
                               ks, 7, 5, background=torch.tensor([0.1, 0.2, 0.3]), backend=backend)
        assert (alpha == 0).all() and torch.allclose(rgb, torch.tensor([0.1, 0.2, 0.3]).expand(1, 5, 7, 3))


@needs_numba
@pytest.mark.parametrize("n, views, size, seed", [(1000, 3, (96, 64), 0), (5000, 2, (150, 100), 1),
                                                  (20000, 2, (120, 72), 2)])
def test_numba_kernel_matches_torch_twin(n, views, size, seed):
    scene = random_scene(n, seed, views, *size)
    bg = torch.tensor([0.3, 0.1, 0.2])
    with torch.no_grad():
        want_rgb, want_alpha = rasterize(*scene, *size, background=bg, backend="torch")
    rgb, alpha = rasterize(*scene, *size, background=bg, backend="cpu")
    assert rgb.shape == (views, size[1], size[0], 3) and alpha.shape == (views, size[1], size[0], 1)
    assert want_alpha.mean() > 0.2 and (want_alpha < 0.01).any()  # a real picture, not a blank one
    assert (rgb - want_rgb).abs().max() <= 1e-3
    assert (alpha - want_alpha).abs().max() <= 1e-3


def test_tile_size_does_not_change_the_image():
    scene = random_scene(1500, 3, 1, 70, 50)
    with torch.no_grad():
        a = rasterize_torch(*scene, 70, 50, tile=16, max_elems=1 << 14)
        b = rasterize_torch(*scene, 70, 50, tile=8)
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_shared_and_per_view_inputs_and_validation():
    means, covars, opac, colors, viewmats, ks = random_scene(200, 4, 2, 40, 30)
    with torch.no_grad():
        shared = rasterize(means, covars, opac[0], colors[0], viewmats, ks, 40, 30, backend="torch")
        per_view = rasterize(means.expand(2, -1, -1), covars.expand(2, -1, -1, -1), opac[0].expand(2, -1),
                             colors[0].expand(2, -1, -1), viewmats, ks, 40, 30, backend="torch")
    torch.testing.assert_close(shared, per_view)
    with pytest.raises(InputError, match="viewmats"):
        rasterize(means, covars, opac[0], colors[0], viewmats[0], ks, 40, 30)
    with pytest.raises(InputError, match="covars"):
        rasterize(means, covars[:5], opac[0], colors[0], viewmats, ks, 40, 30)
    with pytest.raises(InputError, match="backend"):
        rasterize(means, covars, opac[0], colors[0], viewmats, ks, 40, 30, backend="vulkan")


def test_backend_choice(caplog):
    cpu = torch.device("cpu")
    assert choose_rasterizer("auto", cpu, needs_grad=True) == "torch"
    _log_choice.cache_clear()      # each choice is logged once per process: earlier tests may have made this one
    with caplog.at_level(logging.INFO, logger="rfmweb.backend"):
        assert choose_rasterizer("torch", cpu, needs_grad=False) == "torch"
        assert choose_rasterizer("torch", cpu, needs_grad=False, why="scores match the fit's") == "torch"
    # the log says why a named backend runs: "requested" by the user, or the caller's rule
    assert [r.getMessage() for r in caplog.records][-2:] == ["rfmweb splat rasteriser: torch (requested)",
                                                             "rfmweb splat rasteriser: torch (scores match the fit's)"]
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="gsplat"):
            choose_rasterizer("gsplat", cpu, needs_grad=False)
    if numba_available():
        assert choose_rasterizer("auto", cpu, needs_grad=False) == "cpu"
        with pytest.raises(InputError, match="forward only"):
            choose_rasterizer("cpu", cpu, needs_grad=True)


def test_render_pipeline_gives_a_picture():
    from rfmweb.splats import Splats6D, render_splats
    n = 2000
    g = torch.Generator().manual_seed(0)
    p = torch.nn.functional.normalize(torch.randn(n, 3, generator=g), dim=-1)
    sh = torch.zeros(n, 4, 3)
    sh[:, 0] = (p * 0.5) / 0.28209479177387814  # colour = 0.5 + p / 2 seen from anywhere
    splats = Splats6D(p * 80, torch.zeros(n, 3), torch.cat([torch.full((n, 3), math.log(4.0)),
                                                            torch.zeros(n, 3)], 1),
                      torch.zeros(n, 15), torch.full((n,), 2.0), sh)
    cams = [OrbitCamera(azimuth=a, distance=400, width=64, height=48) for a in (0, 90)]
    with torch.no_grad():
        rgb, alpha = render_splats(splats, cams, backend="torch")
    assert rgb.shape == (2, 48, 64, 3)
    assert alpha[:, 24, 32].min() > 0.9 and alpha[:, 0, 0].max() == 0
    # anterior view: the front of the shell (+y) is green-ish, lateral view (from -x) is cyan-ish
    assert rgb[0, 24, 32, 1] > rgb[0, 24, 32, 0] and rgb[1, 24, 32, 0] < 0.5


@pytest.mark.gpu
def test_gsplat_matches_torch_twin_images_and_gradients():
    dev = torch.device("cuda")
    scene = [t.to(dev) for t in random_scene(3000, 5, 2, 96, 64)]
    bg = torch.tensor([0.2, 0.3, 0.4], device=dev)
    outs = {}
    for backend in ("gsplat", "torch"):
        inputs = [t.clone().requires_grad_() for t in scene[:4]]
        rgb, alpha = rasterize(*inputs, *scene[4:], 96, 64, background=bg, backend=backend)
        weights = torch.linspace(0.5, 1.5, rgb.numel(), device=dev).reshape(rgb.shape)
        ((rgb * weights).sum() + alpha.sum()).backward()
        grads = [t.grad for t in inputs]
        if backend == "torch":
            # gsplat reads only the upper triangle of each covariance, so its gradient lives there:
            # fold our (symmetric) gradient onto the upper triangle to compare like with like
            g = grads[1]
            grads[1] = torch.triu(g + g.transpose(-1, -2)) - torch.diag_embed(torch.diagonal(g, dim1=-2, dim2=-1))
        outs[backend] = [rgb.detach(), alpha.detach()] + grads
    for name, a, b in zip(["rgb", "alpha", "means", "covars", "opacities", "colors"], outs["gsplat"], outs["torch"]):
        rel = (a - b).norm() / b.norm().clamp_min(1e-12)
        assert rel <= 1e-3, f"{name}: relative error {rel:.2e}"
