"""The reusable 3-D U-Net (rfmweb.models.unet): shapes, parameter count, gradients, padding, bad config."""

import pytest
import torch
import torch.nn.functional as F

from rfmweb.errors import InputError
from rfmweb.models.inr import count_parameters
from rfmweb.models.unet import UNet3D, UNetConfig, unet_parameter_count


def _net(**kw) -> UNet3D:
    torch.manual_seed(0)
    return UNet3D(UNetConfig(**kw))


@pytest.mark.parametrize("size", [(8, 8, 8), (9, 10, 11), (5, 3, 7), (1, 2, 1)])
def test_full_resolution_shapes(size):
    net = _net(in_channels=4, out_channels=3, features=(4, 8, 16)).eval()
    assert net(torch.randn(2, 4, *size)).shape == (2, 3, *size)


@pytest.mark.parametrize("size, half", [((8, 8, 8), (4, 4, 4)), ((9, 10, 11), (4, 5, 5)), ((3, 5, 7), (1, 2, 3)),
                                         ((17, 16, 15), (8, 8, 7))])
def test_half_resolution_render_fm_shape(size, half):
    """Render-FM: 37 channels at floor(D/2) x floor(H/2) x floor(W/2) from 6 input channels."""
    net = _net(in_channels=6, out_channels=37, features=(4, 8, 16), half_resolution=True).eval()
    assert net(torch.randn(1, 6, *size)).shape == (1, 37, *half)
    two_stage = _net(in_channels=6, out_channels=37, features=(4, 8), half_resolution=True).eval()
    assert two_stage(torch.randn(1, 6, *size)).shape == (1, 37, *half)


def test_deep_supervision_outputs_finest_first():
    net = _net(in_channels=2, out_channels=3, features=(4, 8, 16, 16), deep_supervision=True)
    outs = net(torch.randn(1, 2, 9, 16, 5))
    assert [tuple(o.shape[2:]) for o in outs] == [(9, 16, 5), (5, 8, 3), (3, 4, 2)]
    net.eval()
    assert net(torch.randn(1, 2, 9, 16, 5)).shape == (1, 3, 9, 16, 5)


def test_internal_padding_equals_explicit_padding():
    """Odd sizes are zero-padded at the far end to a multiple of 2^(S-1) and cropped back."""
    net = _net(in_channels=1, out_channels=2, features=(3, 6, 12)).eval()
    x = torch.randn(1, 1, 9, 6, 7)
    padded = F.pad(x, (0, 1, 0, 2, 0, 3))                      # -> 12 x 8 x 8
    with torch.no_grad():
        torch.testing.assert_close(net(x), net(padded)[:, :, :9, :6, :7])


@pytest.mark.parametrize("kw", [dict(features=(4, 8, 16)), dict(features=(4, 8, 16), half_resolution=True),
                                dict(features=(4, 8, 16, 32), deep_supervision=True),
                                dict(features=(4, 8), half_resolution=True, deep_supervision=True),
                                dict(features=(5,)), dict(in_channels=6, out_channels=37, features=(32, 64, 128, 256)),
                                dict(features=(4, 8, 16), half_resolution=True, norm="none")])
def test_parameter_count_formula(kw):
    cfg = UNetConfig(**kw)
    assert unet_parameter_count(cfg) == count_parameters(UNet3D(cfg))


def test_parameter_count_by_hand():
    # in 1, out 2, features (2, 4): encoder 174 + 672, decoder 64 + 2 + 216 + 108 + 12 = 402, head 6
    assert count_parameters(UNet3D(UNetConfig(in_channels=1, out_channels=2, features=(2, 4)))) == 1254
    assert unet_parameter_count(UNetConfig()) == 5_649_204                        # the CNN baseline (default)
    assert unet_parameter_count(UNetConfig(deep_supervision=True)) == 5_650_112   # + 3 coarse heads


def test_gradients_reach_every_parameter():
    net = _net(in_channels=4, out_channels=4, features=(4, 8, 16), deep_supervision=True)
    outs = net(torch.randn(2, 4, 8, 12, 8))
    sum(o.square().mean() for o in outs).backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("kw", [dict(features=()), dict(features=(4, 0)), dict(in_channels=0),
                                dict(out_channels=0), dict(features=(4,), half_resolution=True)])
def test_bad_config(kw):
    with pytest.raises(InputError):
        UNetConfig(**kw)


def test_wrong_input_channels():
    with pytest.raises(InputError, match=r"\[N, 4, D, H, W\]"):
        _net(features=(4, 8))(torch.zeros(1, 3, 8, 8, 8))


def test_half_resolution_output_is_centred_on_the_agp_block():
    """Output voxel i sits at input position 2i + 0.5 (the 2x2x2 block AGP pools), not at 2i.

    With identity convolutions and the downsampling kernel set to an average, a ramp input
    ``x[v] = v + 100`` comes out as the position each output voxel is centred on.
    """
    net = _net(in_channels=1, out_channels=1, features=(1, 1), half_resolution=True, norm="none").eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
        down = net.encoder[1][0][0].weight
        down.fill_(1.0 / down[0, 0].numel())
        for conv in (net.encoder[0][0][0], net.encoder[0][1][0], net.encoder[1][1][0]):
            conv.weight[0, 0, 1, 1, 1] = 1.0
        next(iter(net.heads.values())).weight.fill_(1.0)
        ramp = torch.arange(16, dtype=torch.float32) + 100.0
        x = ramp[:, None, None].expand(16, 8, 8)[None, None].contiguous()
        out = net(x)[0, 0, 1:7, 2, 2]
    torch.testing.assert_close(out, 2 * torch.arange(1, 7, dtype=torch.float32) + 0.5 + 100.0)


def test_norm_none_drops_the_norm_layers():
    cfg = UNetConfig(in_channels=6, out_channels=37, features=(4, 8, 16), half_resolution=True, norm="none")
    net = UNet3D(cfg)
    assert not any(isinstance(m, torch.nn.InstanceNorm3d) for m in net.modules())
    assert unet_parameter_count(cfg) == count_parameters(net)
    with pytest.raises(InputError, match="norm"):
        UNetConfig(norm="batch")
