"""A reusable nnU-Net-style 3-D U-Net (the Render-FM backbone and the CNN tumour baseline).

Architecture (Isensee et al., "nnU-Net: a self-configuring method for deep learning-based
biomedical image segmentation", Nature Methods 2021; its ``PlainConvUNet``), for features
``f_0 .. f_{S-1}`` over ``S`` stages::

    encoder stage s:  [conv3 (stride 2 if s > 0) -> InstanceNorm -> LeakyReLU(0.01)]
                      -> [conv3 -> InstanceNorm -> LeakyReLU]                       (f_{s-1} -> f_s)
    decoder stage s:  transposed conv2 stride 2 (f_{s+1} -> f_s), concatenate the skip of encoder
                      stage s (2 f_s), then 2 x [conv3 -> InstanceNorm -> LeakyReLU] (-> f_s)
    head:             1 x 1 x 1 conv (f_s -> out_channels) on the last decoder stage run

All convolutions are 3 x 3 x 3 with bias (as nnU-Net), InstanceNorm is affine. Downsampling is
isotropic stride 2 at every stage after the first, so the network sees a grid padded (at the far
end, with zeros) to a multiple of ``2^(S-1)`` and crops the output back: any input size works (an
input that would leave a single voxel at the coarsest stage gets one more block along its last
axis: InstanceNorm needs more than one voxel).

``half_resolution=True`` stops the decoder one stage early (the finest decoder stage and the full
resolution skip are not built) and returns the output of stage 1, cropped to
``floor(D/2) x floor(H/2) x floor(W/2)`` (Render-FM's 37 channels at half resolution from 6 input
channels). Its first downsampling is a 4 x 4 x 4 convolution (stride 2, padding 1) instead of
3 x 3 x 3, so output voxel ``i`` is centred on input position ``2 i + 0.5``: the centre of the
2 x 2 x 2 block ``{2i, 2i + 1}^3`` that Anatomy-Guided Priming pools (:mod:`rfmweb.splats.init`).
A 3 x 3 x 3 stride-2 convolution would centre it on voxel ``2 i``, half a voxel off every splat.

``norm="none"`` drops the InstanceNorm layers. The network is then translation-equivariant (on
the stride grid), so a volume can be processed in overlapping patches whose result equals one
whole pass (Render-FM's patched inference); instance statistics would differ from patch to patch.

Deep supervision (nnU-Net's training trick): the forward pass returns one output per decoder stage
that was run, finest first, each from its own 1 x 1 x 1 head and cropped to its own
``ceil(size / 2^k)`` grid (``floor`` for the half-resolution output); in ``eval()`` mode only the
finest is returned.

Outputs are **logits / raw values** (no softmax), ``[N, out_channels, *out_shape]``.

Parameter count (:func:`unet_parameter_count`, checked against the module in the tests), with
``c_{-1} = in_channels``, ``K = out_channels``, conv3 = ``27 a b + b`` weights + bias, norm = ``2 b``::

    sum_s [27 c_{s-1} f_s + 27 f_s^2 + 6 f_s]                            (encoder)
  + sum_{s >= s0}^{S-2} [8 f_{s+1} f_s + f_s + 54 f_s^2 + 27 f_s^2 + 6 f_s]   (decoder)
  + (f_{s0} K + K)  [+ (f_s K + K) for every coarser decoder stage with deep supervision]

where ``s0 = 1`` with ``half_resolution`` and 0 otherwise; with ``half_resolution`` the stage-1
downsampling has ``64 c_0 f_1`` weights instead of ``27 c_0 f_1``; ``norm="none"`` removes the
``4 f_s`` norm parameters of every block (2 per conv).

Example:
    >>> net = UNet3D(UNetConfig(in_channels=6, out_channels=37, features=(8, 16, 32), half_resolution=True))
    >>> net(torch.zeros(1, 6, 9, 10, 11)).shape
    torch.Size([1, 37, 4, 5, 5])
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

#: LeakyReLU slope used by nnU-Net.
NEGATIVE_SLOPE = 0.01
NORMS = ("instance", "none")


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`UNet3D`.

    Attributes:
        in_channels: input channels (4 MRI modalities; 6 for Render-FM).
        out_channels: output channels (4 class logits; 37 Gaussian parameters for Render-FM).
        features: channels of each stage, finest first; its length is the number of stages ``S``
            (``S - 1`` stride-2 downsamplings).
        half_resolution: output at ``floor(size / 2)`` instead of the input size.
        deep_supervision: in training mode also return the coarser decoder outputs.
        norm: ``"instance"`` (nnU-Net) or ``"none"`` (translation-equivariant, exact patching).
    """

    in_channels: int = 4
    out_channels: int = 4
    features: tuple[int, ...] = (16, 32, 64, 128, 256)
    half_resolution: bool = False
    deep_supervision: bool = False
    norm: str = "instance"

    def __post_init__(self) -> None:
        object.__setattr__(self, "features", tuple(int(f) for f in self.features))
        if self.norm not in NORMS:
            raise InputError(f"UNetConfig.norm must be one of {NORMS}, got {self.norm!r}")
        if self.in_channels < 1 or self.out_channels < 1:
            raise InputError(f"UNetConfig: in_channels and out_channels must be >= 1, got "
                             f"{self.in_channels} and {self.out_channels}")
        if not self.features or min(self.features) < 1:
            raise InputError(f"UNetConfig.features must be a non-empty tuple of positive ints, got {self.features}")
        min_stages = 2 if self.half_resolution else 1
        if len(self.features) < min_stages:
            raise InputError(f"UNetConfig: half_resolution needs at least 2 stages, got features {self.features}")

    @property
    def n_stages(self) -> int:
        return len(self.features)

    @property
    def divisor(self) -> int:
        """The padded input size must be a multiple of this (``2^(S-1)``)."""
        return 2 ** (self.n_stages - 1)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["features"] = list(self.features)
        return d


class ConvBlock(nn.Sequential):
    """``conv (kernel, stride, padding 1) -> InstanceNorm3d (affine; or none) -> LeakyReLU(0.01)``,
    ``[N, a, D, H, W]`` -> ``[N, b, ceil(D / stride), ...]`` (kernel 3, or 4 with stride 2 on even sizes)."""

    def __init__(self, a: int, b: int, stride: int = 1, norm: str = "instance", kernel: int = 3) -> None:
        layers = [nn.Conv3d(a, b, kernel, stride=stride, padding=1)]
        if norm == "instance":
            layers.append(nn.InstanceNorm3d(b, affine=True))
        super().__init__(*layers, nn.LeakyReLU(NEGATIVE_SLOPE, inplace=True))


class UNet3D(nn.Module):
    """nnU-Net-style 3-D U-Net (see the module docstring).

    Shapes:
        - input: ``[N, in_channels, D, H, W]``, any ``D, H, W >= 1``.
        - output: ``[N, out_channels, D, H, W]`` (or ``floor`` halves with ``half_resolution``);
          with deep supervision in training mode a list of such tensors, finest first.
    """

    def __init__(self, config: UNetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or UNetConfig()
        f = config.features
        self.encoder = nn.ModuleList()
        prev = config.in_channels
        norm = config.norm
        for s, width in enumerate(f):
            kernel = 4 if (s == 1 and config.half_resolution) else 3   # centred on 2i + 0.5 (docstring)
            self.encoder.append(nn.Sequential(ConvBlock(prev, width, 1 if s == 0 else 2, norm, kernel),
                                              ConvBlock(width, width, norm=norm)))
            prev = width
        self.first_decoded = 1 if config.half_resolution else 0
        stages = range(config.n_stages - 2, self.first_decoded - 1, -1)          # coarse -> fine
        self.up = nn.ModuleList(nn.ConvTranspose3d(f[s + 1], f[s], 2, stride=2) for s in stages)
        self.decoder = nn.ModuleList(nn.Sequential(ConvBlock(2 * f[s], f[s], norm=norm), ConvBlock(f[s], f[s], norm=norm))
                                     for s in stages)
        # no decoder (1 stage, or 2 at half resolution): the head sits on the coarsest encoder stage
        head_stages = (list(stages) if config.deep_supervision else [self.first_decoded]) if list(stages) \
            else [config.n_stages - 1]
        self.heads = nn.ModuleDict({str(s): nn.Conv3d(f[s], config.out_channels, 1) for s in head_stages})

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        if x.ndim != 5 or x.shape[1] != self.config.in_channels:
            raise InputError(f"UNet3D expects [N, {self.config.in_channels}, D, H, W], got {tuple(x.shape)}")
        size = tuple(x.shape[2:])
        m = self.config.divisor
        pad = [(-n) % m for n in size]
        if all(n + q == m for n, q in zip(size, pad)):
            pad[2] += m            # InstanceNorm needs more than one voxel at the coarsest stage
        if any(pad):
            x = F.pad(x, (0, pad[2], 0, pad[1], 0, pad[0]))
        skips = []
        for stage in self.encoder:
            x = stage(x)
            skips.append(x)
        outputs = {}
        s = self.config.n_stages - 1
        for up, dec in zip(self.up, self.decoder):
            s -= 1
            x = dec(torch.cat([up(x), skips[s]], dim=1))
            if str(s) in self.heads:
                outputs[s] = self.heads[str(s)](x)
        if not outputs:
            outputs[s] = self.heads[str(s)](x)
        results = []
        for s in sorted(outputs):
            k = 2 ** s
            shape = [n // k if self.config.half_resolution and s == 1 else -(-n // k) for n in size]
            results.append(outputs[s][:, :, :shape[0], :shape[1], :shape[2]])
        if self.config.deep_supervision and self.training:
            return results
        return results[0]


def unet_parameter_count(config: UNetConfig) -> int:
    """Trainable parameters of ``UNet3D(config)`` in closed form (the formula of the module docstring)."""
    f = config.features
    k = config.out_channels
    norm = 4 if config.norm == "instance" else 0          # per conv block: 2 b norm weights (x2 blocks)
    total, prev = 0, config.in_channels
    for s, width in enumerate(f):
        taps = 64 if (s == 1 and config.half_resolution) else 27
        total += taps * prev * width + 27 * width * width + (2 + norm) * width
        prev = width
    first = 1 if config.half_resolution else 0
    decoded = list(range(first, config.n_stages - 1))
    for s in decoded:
        total += 8 * f[s + 1] * f[s] + f[s] + 54 * f[s] * f[s] + 27 * f[s] * f[s] + (2 + norm) * f[s]
    heads = (decoded if config.deep_supervision else [first]) if decoded else [config.n_stages - 1]
    total += sum(f[s] * k + k for s in heads)
    return total
