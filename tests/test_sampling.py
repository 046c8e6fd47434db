"""Volume reconstruction (:mod:`rfmweb.render.sampling`): the cubic B-spline against analytic cases
and scipy's, and why the ray-marchers read it at rest (no gradient jumps at cell faces)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from rfmweb.render.sampling import GridSampler, bspline_coefficients, bspline_upsample

AFFINE = np.array([[0.9, 0.0, 0.0, -3.0], [0.0, 1.2, 0.0, 5.0], [0.0, 0.0, 2.0, 1.0], [0.0, 0.0, 0.0, 1.0]])


def _grid(fn, shape=(30, 32, 34)) -> torch.Tensor:
    """``fn(i, j, k)`` on the voxel lattice, float64 ``[X, Y, Z]``."""
    i, j, k = np.indices(shape, dtype=np.float64)
    return torch.from_numpy(fn(i, j, k))


def _world(ijk: torch.Tensor) -> torch.Tensor:
    """Voxel coordinates ``[N, 3]`` -> world mm through AFFINE."""
    a = torch.from_numpy(AFFINE)
    return ijk @ a[:3, :3].T + a[:3, 3]


def test_cubic_passes_through_the_voxels_and_reproduces_cubics():
    def cubic(i, j, k):
        return 0.01 * i ** 3 - 0.2 * j ** 2 + 0.3 * i * k + 0.05 * k ** 3 - 2 * j

    vol = _grid(cubic)
    coef = bspline_coefficients(vol)
    sampler = GridSampler(vol[None], AFFINE)
    rng = np.random.default_rng(0)
    ijk = torch.from_numpy(rng.uniform(10, 20, size=(200, 3)))        # away from the border's truncation
    got = sampler.cubic(_world(ijk), coef)
    want = torch.from_numpy(cubic(*ijk.numpy().T))
    assert (got - want).abs().max() < 1e-3 * want.abs().max()
    # trilinear reads cannot: the cubic terms bend between the voxels
    assert (sampler.trilinear(_world(ijk))[0] - want).abs().max() > 0.05
    # every voxel value, the border's included (the coefficients mirror the volume about its faces)
    centres = torch.from_numpy(np.indices(vol.shape).reshape(3, -1).T.astype(np.float64))
    torch.testing.assert_close(sampler.cubic(_world(centres), coef), vol.reshape(-1), atol=1e-9, rtol=1e-12)


def test_cubic_matches_scipy_and_clamps_at_the_border():
    rng = np.random.default_rng(1)
    vol = torch.from_numpy(ndimage.gaussian_filter(rng.normal(size=(20, 22, 24)), 1.5))
    coef = bspline_coefficients(vol)
    want_coef = ndimage.spline_filter(vol.numpy(), order=3, mode="reflect")
    np.testing.assert_allclose(coef.numpy(), want_coef, atol=1e-12)
    sampler = GridSampler(vol[None], np.eye(4))
    ijk = torch.from_numpy(rng.uniform(0, 19, size=(200, 3)))
    want = ndimage.map_coordinates(vol.numpy(), ijk.numpy().T, order=3, mode="reflect")
    np.testing.assert_allclose(sampler.cubic(ijk, coef).numpy(), want, atol=1e-12)
    # outside the grid a read is the border's (as trilinear reads are clamped)
    outside = torch.tensor([[-3.0, 10.0, 12.0], [0.0, 10.0, 12.0]], dtype=torch.float64)
    got = sampler.cubic(outside, coef)
    assert got[0] == got[1]


def test_cubic_has_no_gradient_jump_at_cell_faces():
    """The contour rings: along a line, the derivative of a trilinear read jumps where the line crosses
    a cell face; the cubic B-spline's does not (C2)."""
    def smooth(i, j, k):
        return np.sin(0.4 * i) * np.cos(0.3 * j) + 0.02 * (k - 12.0) ** 2

    vol = _grid(smooth, (24, 24, 24))
    coef = bspline_coefficients(vol)
    sampler = GridSampler(vol[None], np.eye(4))
    h = 1e-4
    face = torch.tensor([[11.0, 10.37, 12.61]], dtype=torch.float64)   # on the face i = 11
    d = torch.tensor([[1.0, 0.0, 0.0]], dtype=torch.float64)

    def jump(read):
        before = (read(face - h * d) - read(face - 2 * h * d)) / h
        after = (read(face + 2 * h * d) - read(face + h * d)) / h
        return float((after - before).abs())

    assert jump(lambda p: sampler.trilinear(p)[0]) > 0.02
    assert jump(lambda p: sampler.cubic(p, coef)) < 1e-3


def test_coefficients_are_differentiable():
    vol = torch.randn(9, 10, 11, dtype=torch.float64, requires_grad=True)
    sampler = GridSampler(vol[None].detach(), np.eye(4))
    pts = torch.tensor([[4.3, 5.1, 5.7], [2.2, 6.9, 3.3]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda v: sampler.cubic(pts, bspline_coefficients(v)), (vol,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_coefficients_keep_dtype_and_shape(dtype):
    vol = torch.zeros(3, 4, 5, dtype=dtype)
    vol[1, 2, 3] = 1.0
    coef = bspline_coefficients(vol)
    assert coef.dtype == dtype and coef.shape == vol.shape and coef.is_contiguous()
    assert bspline_coefficients(torch.full((1, 2, 3), 7.0, dtype=dtype)).sub(7.0).abs().max() < 1e-5   # 1-voxel axis


def test_upsample_reads_the_spline_at_half_the_spacing():
    """VTK's grid at rest: the spline at every voxel centre and halfway between, border included."""
    rng = np.random.default_rng(2)
    vol = torch.from_numpy(rng.normal(size=(7, 8, 9)))
    up = bspline_upsample(vol)
    assert up.shape == (13, 15, 17) and up.dtype == vol.dtype
    torch.testing.assert_close(up[::2, ::2, ::2], vol, atol=1e-9, rtol=0)          # the voxel values
    half = torch.from_numpy(np.indices(up.shape).reshape(3, -1).T / 2.0)
    want = GridSampler(vol[None], np.eye(4)).cubic(half, bspline_coefficients(vol))
    torch.testing.assert_close(up.reshape(-1), want, atol=1e-9, rtol=0)
    # not trilinear: halfway between voxels the spline bends
    mid = 0.5 * (vol[:-1] + vol[1:])
    assert (up[1::2, ::2, ::2] - mid).abs().max() > 0.1


@pytest.mark.parametrize("shape", [(23, 17, 11), (5, 2, 3), (2, 4, 3)])
def test_compiled_shading_gradient_equals_the_torch_ops(shape):
    """The numba twin (float32 on the CPU) gives the torch ops' gradient (float64 here, so they run),
    edges and thin axes included, on a rotated anisotropic grid."""
    from rfmweb.render.fields import shading_gradient

    rng = np.random.default_rng(3)
    scalar = torch.from_numpy(rng.normal(0, 300, shape).astype(np.float32))
    c, s = np.cos(0.4), np.sin(0.4)
    affine = np.diag([0.9, 0.7, 1.6, 1.0])
    affine[:3, :3] = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]]) @ affine[:3, :3]
    compiled = shading_gradient(scalar, affine, sigma_mm=0.6)
    oracle = shading_gradient(scalar.double(), affine, sigma_mm=0.6)
    assert compiled.dtype == torch.float32 and compiled.shape == (3, *shape)
    np.testing.assert_allclose(compiled.numpy(), oracle.numpy(), rtol=0, atol=2e-4 * float(oracle.abs().max()))


def test_compiled_shading_gradient_of_a_linear_field_is_its_slope():
    """Away from the border (replicated edges bend it) blurring keeps a linear field and central
    differences read its slope: world gradient = the field's, in intensity per mm."""
    from rfmweb.render.fields import shading_gradient

    affine = np.diag([0.5, 2.0, 1.5, 1.0])
    i, j, k = np.meshgrid(*(np.arange(n) for n in (24, 12, 12)), indexing="ij")
    world = np.stack([i * 0.5, j * 2.0, k * 1.5])
    scalar = torch.from_numpy((3.0 * world[0] - 2.0 * world[1] + 0.5 * world[2]).astype(np.float32))
    g = shading_gradient(scalar, affine, sigma_mm=1.0).numpy()[:, 7:-7, 3:-3, 4:-4]   # the blur reaches 6, 2, 3 voxels
    for axis, slope in enumerate((3.0, -2.0, 0.5)):
        np.testing.assert_allclose(g[axis], slope, atol=1e-4)
