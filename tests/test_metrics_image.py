"""Image metrics against values known in closed form, and their refusals."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from rfmweb.errors import InputError
from rfmweb.metrics import ImageMetrics, MetricUnavailable, lpips, lpips_status, ms_ssim, ms_ssim_min_size, psnr, ssim
from rfmweb.metrics import image as image_metrics


@pytest.fixture(scope="module")
def picture() -> np.ndarray:
    """A smooth 192 x 200 test card with edges (uint8): structure for SSIM to see."""
    y, x = np.mgrid[0:192, 0:200] / 200.0
    img = np.stack([0.5 + 0.4 * np.sin(9 * x), 0.5 + 0.4 * np.cos(7 * y), (x + y) / 2], -1)
    img[60:120, 50:150] = [0.9, 0.2, 0.1]
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def noisy(img: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(0, sigma, img.shape)
    return np.clip(img.astype(np.float64) + noise, 0, 255).round().astype(np.uint8)


def test_psnr_of_a_known_mse():
    a = np.zeros((8, 10, 3), np.float32)
    b = a + 0.1                                   # MSE = 0.01 -> 20 dB
    assert float(psnr(a, b)[0]) == pytest.approx(20.0, abs=1e-4)
    u8 = np.full((4, 4, 3), 100, np.uint8)
    v8 = u8.copy()
    v8[0, 0, 0] = 151                             # MSE = (51/255)^2 / 48
    assert float(psnr(u8, v8)[0]) == pytest.approx(10 * math.log10(48 / (51 / 255) ** 2), abs=1e-3)
    assert math.isinf(float(psnr(u8, u8)[0]))


def test_layouts_and_dtypes_agree(picture):
    other = noisy(picture, 10)
    single = ssim(picture, other)
    batch = torch.from_numpy(np.stack([picture, other])).permute(0, 3, 1, 2).float() / 255
    both = ssim(batch, batch.flip(0))
    assert single.shape == (1,) and both.shape == (2,)
    assert float(both[0]) == pytest.approx(float(single[0]), abs=1e-6)
    assert float(psnr(picture.astype(np.float32) / 255, other.astype(np.float32) / 255)[0]) == \
        pytest.approx(float(psnr(picture, other)[0]), abs=1e-4)


def test_ssim_is_one_on_equal_images_and_falls_with_noise(picture):
    assert float(ssim(picture, picture)[0]) == pytest.approx(1.0, abs=1e-6)
    values = [float(ssim(picture, noisy(picture, s))[0]) for s in (2, 8, 25, 60)]
    assert all(a > b for a, b in zip(values, values[1:])), values
    assert values[0] > 0.95 and values[-1] < 0.6


def test_ms_ssim_standard_and_small_images(picture):
    assert float(ms_ssim(picture, picture)[0]) == pytest.approx(1.0, abs=1e-6)
    a, b = ms_ssim(picture, noisy(picture, 8)), ms_ssim(picture, noisy(picture, 40))
    assert 1.0 > float(a[0]) > float(b[0]) > 0.0
    # our level loop (used for fewer scales) is pytorch-msssim's at 5 scales
    x, y = image_metrics._pair(picture, noisy(picture, 20))
    assert float(image_metrics._ms_ssim_levels(x, y, 5)[0]) == pytest.approx(float(ms_ssim(x, y)[0]), abs=1e-5)
    small = picture[:100, :100]
    with pytest.raises(MetricUnavailable, match=r"larger than 160 px.*100x100.*scales=4"):
        ms_ssim(small, small)
    assert ms_ssim_min_size(5) == 161 and ms_ssim_min_size(3) == 41
    three = ms_ssim(small, noisy(small, 20), scales=3)
    assert 0.0 < float(three[0]) < 1.0
    assert float(ms_ssim(small, small, scales=3)[0]) == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(MetricUnavailable, match="at least 11x11"):
        ssim(picture[:8, :8], picture[:8, :8])


def test_lpips_is_none_with_a_reason_not_a_made_up_value(picture, tmp_path, monkeypatch):
    reason = lpips_status()
    if reason is None:  # lpips, torchvision and the VGG weights are all here: a real value
        assert float(lpips(picture, picture)[0]) == pytest.approx(0.0, abs=1e-4)
        assert 0.0 < float(lpips(picture, noisy(picture, 30))[0]) < 1.0
    else:
        with pytest.raises(MetricUnavailable) as info:
            lpips(picture, picture)
        assert info.value.reason == reason and ("lpips" in reason or "LPIPS" in reason)
    # with an empty torch hub cache nothing is downloaded: LPIPS is unavailable, and says so
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reason = lpips_status()
    assert reason is not None and ("not installed" in reason or "never downloaded" in reason)
    assert not any(tmp_path.iterdir())


def test_accumulator_means_and_reasons(picture):
    m = ImageMetrics()
    first = m.update(picture, noisy(picture, 10, seed=1))
    m.update(picture, noisy(picture, 20, seed=2))
    assert set(first) == {"psnr", "ssim", "ms_ssim", "lpips"} and first["psnr"].shape == (1,)
    agg = m.aggregate()
    expect = np.mean([float(psnr(picture, noisy(picture, s, seed=k))[0]) for s, k in ((10, 1), (20, 2))])
    assert agg["psnr"] == pytest.approx(expect, rel=1e-6)
    assert 0 < agg["ssim"] < 1 and 0 < agg["ms_ssim"] < 1
    if lpips_status() is not None:
        assert agg["lpips"] is None and m.reasons["lpips"] == lpips_status()
    # one small image makes MS-SSIM absent for the whole set: no mean over a subset
    m.update(picture[:64, :64], picture[:64, :64])
    assert m.aggregate()["ms_ssim"] is None and "(1 of 3 images)" in m.reasons["ms_ssim"]
    assert m.count == 3
    m.reset()
    assert m.aggregate()["psnr"] is None and m.reasons["psnr"] == "no images yet"


def test_bad_inputs_are_input_errors(picture):
    with pytest.raises(InputError, match="differ in shape"):
        psnr(picture, picture[:10])
    with pytest.raises(InputError, match=r"\[H, W, 3\] or \[N, 3, H, W\]"):
        ssim(picture[..., :2], picture[..., :2])
    with pytest.raises(InputError, match=r"must lie in \[0, 1\]"):
        psnr(picture.astype(np.float32), picture.astype(np.float32))
    with pytest.raises(InputError, match="unknown metrics"):
        ImageMetrics(("psnr", "fid"))
