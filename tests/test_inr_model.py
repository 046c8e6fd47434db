"""The Neumours INR network and its input contract (Fourier features, patches, normalisation)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rfmweb.errors import InputError
from rfmweb.models.inr import (INRConfig, NeumoursINR, axis_feature_columns, count_parameters, extract_patches,
                               fourier_features, gather_patches, normalise_modalities, pad_volume, voxel_to_unit)


def test_parameter_count_is_the_papers_0_26_m():
    model = NeumoursINR()
    n = count_parameters(model)
    # 387*128+128 + 108*128+128 + 3*(256*256+256) + 256*4+4
    assert n == 262_020
    assert abs(n - 260_000) / 260_000 < 0.05


def test_output_is_logits_of_shape_n_by_4():
    torch.manual_seed(0)
    model = NeumoursINR()
    out = model(torch.rand(7, 3) * 2 - 1, torch.randn(7, 4, 3, 3, 3))
    assert out.shape == (7, 4) and out.dtype == torch.float32
    assert not torch.allclose(out.sum(1), torch.ones(7))          # not probabilities
    flat = model(torch.zeros(2, 3), torch.zeros(2, 108))
    assert flat.shape == (2, 4)
    with pytest.raises(InputError, match="patches"):
        model(torch.zeros(2, 3), torch.zeros(2, 100))
    with pytest.raises(InputError, match="coords"):
        model(torch.zeros(2, 2), torch.zeros(2, 108))


def test_fourier_features_known_values():
    x = torch.tensor([[0.5, -0.25, 1.0]])
    f = fourier_features(x, 2)
    assert f.shape == (1, 3 + 6 * 2)
    expect = [0.5, -0.25, 1.0]
    expect += [math.sin(math.pi * k * c) for k in (1, 2) for c in (0.5, -0.25, 1.0)]
    expect += [math.cos(math.pi * k * c) for k in (1, 2) for c in (0.5, -0.25, 1.0)]
    assert torch.allclose(f[0], torch.tensor(expect), atol=1e-6)
    assert fourier_features(torch.zeros(4, 3)).shape == (4, 387)
    cols = sorted(sum((axis_feature_columns(64, a) for a in range(3)), []))
    assert cols == list(range(387))                                 # each feature belongs to one axis
    assert all(c % 3 == 1 for c in axis_feature_columns(64, 1)[1:])   # the y column of each (k, sin/cos) triple


def test_normalisation_is_a_z_score_inside_the_brain():
    rng = np.random.default_rng(0)
    data = np.zeros((4, 10, 11, 12), np.float32)
    data[:, 2:8, 3:9, 2:10] = rng.uniform(100, 900, (4, 6, 6, 8))
    norm, mask = normalise_modalities(data)
    assert mask.sum() == 6 * 6 * 8 and (norm[:, ~mask] == 0).all()
    assert np.allclose(norm[:, mask].mean(1), 0, atol=1e-5) and np.allclose(norm[:, mask].std(1), 1, atol=1e-4)
    with pytest.raises(InputError, match="all zeros"):
        normalise_modalities(np.zeros((4, 3, 3, 3)))


def test_patches_at_voxel_centres_are_the_voxel_neighbourhood():
    torch.manual_seed(0)
    vol = torch.randn(4, 6, 7, 8)
    pts = torch.tensor([[0, 0, 0], [2, 3, 4], [5, 6, 7], [1, 5, 2]])
    sampled = extract_patches(vol, pts.float())                                   # [N, 4, 3, 3, 3]
    padded = F.pad(vol, (1, 1, 1, 1, 1, 1))
    for n, (i, j, k) in enumerate(pts.tolist()):
        assert torch.allclose(sampled[n], padded[:, i:i + 3, j:j + 3, k:k + 3], atol=1e-6)
    gathered = gather_patches(pad_volume(vol), pts)
    assert torch.allclose(gathered, sampled.reshape(4, -1), atol=1e-6)


def test_patches_between_voxels_are_trilinear():
    torch.manual_seed(1)
    vol = torch.randn(4, 6, 7, 8)
    a, b = extract_patches(vol, torch.tensor([[2.0, 3.0, 4.0], [3.0, 3.0, 4.0]]))
    mid = extract_patches(vol, torch.tensor([[2.25, 3.0, 4.0]]))[0]
    assert torch.allclose(mid, 0.75 * a + 0.25 * b, atol=1e-5)


def test_patch_branch_is_a_valid_conv3d():
    torch.manual_seed(2)
    model = NeumoursINR()
    vol = torch.randn(4, 5, 6, 7)
    conv = F.conv3d(vol[None], model.patch_kernel(), model.patch_fc.bias)[0]      # valid: [128, 3, 4, 5]
    vox = torch.tensor([[1, 1, 1], [3, 4, 5], [2, 3, 1]])
    direct = model.encode_patches(gather_patches(pad_volume(vol), vox))
    assert torch.allclose(direct, conv[:, vox[:, 0] - 1, vox[:, 1] - 1, vox[:, 2] - 1].T, atol=1e-5)


def test_coordinates_are_per_case_normalised():
    u = voxel_to_unit(torch.tensor([[0.0, 0.0, 0.0], [9.0, 19.0, 4.0], [4.5, 9.5, 2.0]]), (10, 20, 5))
    assert torch.allclose(u, torch.tensor([[-1.0, -1, -1], [1, 1, 1], [0, 0, 0]]))


def test_config_validation():
    with pytest.raises(InputError, match="odd"):
        INRConfig(patch_size=2)
    assert count_parameters(NeumoursINR(INRConfig(n_frequencies=4, branch_width=8, n_layers=2))) < 2000
