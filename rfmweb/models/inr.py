"""Neumours: an implicit neural representation (INR) that segments brain-tumour MRI.

The network maps a point of a case to the logits of the four BraTS classes at that point::

    coords (x, y, z) in [-1, 1]^3 ──> Fourier features [x, sin(pi k x), cos(pi k x)], k = 1..64
                                         (3 + 6 * 64 = 387) ──> Linear 387 -> 128 ──> ReLU ─┐
    3 x 3 x 3 patch of the 4 z-scored modalities around the point (4 * 27 = 108 values)       ├─ concat (256)
                                         ──> Linear 108 -> 128 ──> ReLU ────────────────────┘
    ──> 3 x [Linear 256 -> 256, ReLU] ──> Linear 256 -> 4 logits (background, NCR, ED, ET)

"MLP 4 x 256" in the Neumours description is read as four ReLU layers of width 256, the first of
which is the concatenation of the two 128-wide branch outputs: that reading gives 262,020
parameters, the paper's "about 0.26 M" (four *additional* 256 x 256 layers would give 0.33 M).
The patch branch is a valid 3 x 3 x 3 convolution evaluated at one point: ``patch_fc.weight``
reshaped to ``[128, 4, 3, 3, 3]`` is that convolution's kernel (used by the dense inference in
:mod:`rfmweb.inr.infer`).

Input contract (shared by training and inference; see :func:`normalise_modalities`):

- the four channels (T1n, T1c, T2w, FLAIR) are z-scored per modality inside the brain mask
  (voxels where any channel is non-zero, the BraTS skull-stripping convention), 0 outside;
- coordinates are per-case normalised: voxel index ``i`` along an axis of ``n`` voxels maps to
  ``2 i / (n - 1) - 1``, so the grid's first and last voxel centres sit at -1 and +1
  (``align_corners=True`` in :func:`torch.nn.functional.grid_sample` terms);
- patches are sampled at offsets of -1, 0, +1 *input* voxels around a continuous point, by
  trilinear interpolation with zeros outside the grid (:func:`extract_patches`), so a query between
  voxel centres (super-resolution) is well defined; at voxel centres this is the plain 3 x 3 x 3
  neighbourhood (:func:`gather_patches`).

Reference: the Neumours description in ``DESIGN.md`` ("implicit neural tumour representation":
WT Dice 0.823 after denoising vs 0.892 for nnU-Net, 0.26 M vs 31 M parameters). Fourier features
follow Tancik et al., "Fourier Features Let Networks Learn High Frequency Functions in Low
Dimensional Domains", NeurIPS 2020 (here with deterministic octave-free frequencies ``pi k``).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import InputError

#: Output classes, in logit order (the BraTS label values 0..3).
CLASS_NAMES = ("background", "NCR", "ED", "ET")
#: Input channels, in order.
CHANNELS = ("T1n", "T1c", "T2w", "FLAIR")


@dataclass(frozen=True)
class INRConfig:
    """Hyper-parameters of :class:`NeumoursINR` (defaults: the Neumours model).

    Attributes:
        n_frequencies: Fourier frequencies ``k = 1..n_frequencies`` per coordinate.
        in_channels: MRI modalities in a patch.
        patch_size: patch edge in voxels (odd).
        branch_width: width of each branch (coordinates, patch); the concatenation is twice this.
        n_layers: ReLU layers of width ``2 * branch_width`` (the concatenation counts as the first).
        n_classes: output logits.
    """

    n_frequencies: int = 64
    in_channels: int = 4
    patch_size: int = 3
    branch_width: int = 128
    n_layers: int = 4
    n_classes: int = 4

    def __post_init__(self) -> None:
        if self.patch_size % 2 != 1 or self.patch_size < 1:
            raise InputError(f"patch_size must be odd and >= 1, got {self.patch_size}")
        for name in ("n_frequencies", "in_channels", "branch_width", "n_layers", "n_classes"):
            if getattr(self, name) < 1:
                raise InputError(f"INRConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def coord_features(self) -> int:
        return 3 + 6 * self.n_frequencies

    @property
    def patch_features(self) -> int:
        return self.in_channels * self.patch_size ** 3

    def to_dict(self) -> dict:
        return asdict(self)


def fourier_features(coords: torch.Tensor, n_frequencies: int = 64) -> torch.Tensor:
    """Deterministic Fourier features of normalised coordinates.

    Args:
        coords: ``[..., 3]`` points in [-1, 1]^3.
        n_frequencies: ``K``; frequencies ``pi k`` for ``k = 1..K``.

    Returns:
        ``[..., 3 + 6 K]``: ``[x, y, z]``, then ``sin(pi k c)`` for ``k = 1..K`` (k-major, then the
        axis ``c = x, y, z``), then ``cos(pi k c)`` in the same order.

    Example:
        >>> fourier_features(torch.tensor([[0.5, 0.0, -1.0]]), 1).round(decimals=4).abs().tolist()
        [[0.5, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]]
    """
    k = torch.arange(1, n_frequencies + 1, device=coords.device, dtype=coords.dtype)
    angles = (math.pi * k[:, None] * coords[..., None, :]).flatten(-2)           # [..., K * 3]
    return torch.cat([coords, torch.sin(angles), torch.cos(angles)], dim=-1)


def axis_feature_columns(n_frequencies: int, axis: int) -> list[int]:
    """Indices of the :func:`fourier_features` columns that depend on coordinate ``axis`` only.

    Every feature depends on one axis, so ``coord_fc`` splits into a sum of per-axis terms (used
    by the dense inference to evaluate the coordinate branch once per grid line).
    """
    k3 = 3 * n_frequencies
    return ([axis] + [3 + 3 * k + axis for k in range(n_frequencies)]
            + [3 + k3 + 3 * k + axis for k in range(n_frequencies)])


class NeumoursINR(nn.Module):
    """The Neumours INR tumour segmenter (see the module docstring for the architecture).

    Args:
        config: :class:`INRConfig` (default: the published model, 262,020 parameters).

    Shapes:
        - ``coords``: ``[N, 3]`` float, per-case normalised coordinates in [-1, 1]^3.
        - ``patches``: ``[N, C, P, P, P]`` or ``[N, C * P^3]`` float, z-scored modalities
          (flattened in ``[C, dx, dy, dz]`` order, the layout of a conv kernel).
        - output: ``[N, n_classes]`` **logits** (no softmax), classes :data:`CLASS_NAMES`.

    Example:
        >>> model = NeumoursINR()
        >>> model(torch.zeros(5, 3), torch.zeros(5, 4, 3, 3, 3)).shape
        torch.Size([5, 4])
    """

    def __init__(self, config: INRConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or INRConfig()
        width = 2 * config.branch_width
        self.coord_fc = nn.Linear(config.coord_features, config.branch_width)
        self.patch_fc = nn.Linear(config.patch_features, config.branch_width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(config.n_layers - 1))
        self.head = nn.Linear(width, config.n_classes)

    def encode_coords(self, coords: torch.Tensor) -> torch.Tensor:
        """``[N, 3]`` -> ``[N, branch_width]`` pre-activation of the coordinate branch."""
        return self.coord_fc(fourier_features(coords, self.config.n_frequencies))

    def encode_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """``[N, C, P, P, P]`` or ``[N, C P^3]`` -> ``[N, branch_width]`` pre-activation."""
        return self.patch_fc(patches.reshape(patches.shape[0], -1))

    def decode(self, coord_pre: torch.Tensor, patch_pre: torch.Tensor) -> torch.Tensor:
        """Branch pre-activations ``[N, branch_width]`` x 2 -> logits ``[N, n_classes]``."""
        h = torch.relu(torch.cat([coord_pre, patch_pre], dim=-1))
        for layer in self.hidden:
            h = torch.relu(layer(h))
        return self.head(h)

    def forward(self, coords: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        if coords.ndim != 2 or coords.shape[-1] != 3:
            raise InputError(f"coords must be [N, 3], got {tuple(coords.shape)}")
        if patches.shape[0] != coords.shape[0] or patches[0].numel() != self.config.patch_features:
            raise InputError(f"patches must be [N, {self.config.in_channels}, {self.config.patch_size}, "
                             f"{self.config.patch_size}, {self.config.patch_size}] with N = {coords.shape[0]}, "
                             f"got {tuple(patches.shape)}")
        return self.decode(self.encode_coords(coords), self.encode_patches(patches))

    def patch_kernel(self) -> torch.Tensor:
        """``patch_fc`` as a 3-D convolution kernel ``[branch_width, C, P, P, P]``."""
        p = self.config.patch_size
        return self.patch_fc.weight.view(-1, self.config.in_channels, p, p, p)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ---------------------------------------------------------------- input contract


def brain_mask(data: np.ndarray) -> np.ndarray:
    """``[X, Y, Z]`` bool: voxels where any channel of ``data [C, X, Y, Z]`` is non-zero (BraTS
    volumes are skull-stripped with exact zeros outside the brain)."""
    return np.any(np.asarray(data) != 0, axis=0)


def normalise_modalities(data: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-modality z-score inside the brain mask, 0 outside (the model's input contract).

    Args:
        data: ``[C, X, Y, Z]`` intensities (scanner units).
        mask: ``[X, Y, Z]`` bool brain mask; default :func:`brain_mask`.

    Returns:
        ``(normalised [C, X, Y, Z] float32, mask [X, Y, Z] bool)``.

    Raises:
        InputError: when the mask is empty (no brain voxel to normalise).
    """
    data = np.asarray(data, dtype=np.float32)
    if data.ndim != 4:
        raise InputError(f"expected [C, X, Y, Z] modalities, got shape {data.shape}")
    mask = brain_mask(data) if mask is None else np.asarray(mask, bool)
    n = int(mask.sum())
    if n == 0:
        raise InputError("the volume is all zeros: no brain voxel to segment")
    # one gather of the brain voxels, a float64 sum, then the centred sum of squares (measured
    # 2-4x faster than per-channel boolean indexing and a float64 std)
    flat = np.flatnonzero(mask)
    values = data.reshape(data.shape[0], -1)[:, flat]                            # [C, n]
    mean = (values.sum(axis=1, dtype=np.float64) / n).astype(np.float32)
    values -= mean[:, None]
    var = np.array([float(np.dot(v, v)) for v in values]) / n     # centred: float32 BLAS dot is accurate
    values /= np.maximum(np.sqrt(var), 1e-6).astype(np.float32)[:, None]
    out = np.zeros(data.shape, np.float32)
    out.reshape(data.shape[0], -1)[:, flat] = values
    return out, mask


def voxel_to_unit(points: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Continuous voxel indices ``[..., 3]`` -> per-case normalised coordinates in [-1, 1]."""
    extent = torch.tensor([max(s - 1, 1) for s in shape], dtype=points.dtype, device=points.device)
    return 2.0 * points / extent - 1.0


def box_corners(box: tuple[slice, slice, slice]) -> np.ndarray:
    """``[2, 3]`` the first and last voxel index of a bounding box given as slices."""
    return np.array([[b.start for b in box], [b.stop - 1 for b in box]], np.float64)


def training_frame(shapes: list[tuple[int, int, int]], boxes: list[tuple[slice, slice, slice]],
                   spacings: list[tuple[float, float, float]]) -> dict | None:
    """Where the training cases' brains lie in the network's coordinates, for :func:`case_frame`:
    ``{"grid": [X, Y, Z], "spacing_mm": [sx, sy, sz], "brain_box": [[lo], [hi]]}`` (the brains'
    bounding boxes in :func:`voxel_to_unit` coordinates, averaged over the cases), or ``None`` when
    the cases lie on different grids (their coordinates then mean different places)."""
    if len(set(map(tuple, shapes))) != 1 or np.ptp(np.asarray(spacings, np.float64), axis=0).max() > 1e-3:
        return None
    extent = np.array([max(s - 1, 1) for s in shapes[0]], np.float64)
    unit = np.mean([2.0 * box_corners(b) / extent - 1.0 for b in boxes], axis=0)
    return {"grid": [int(s) for s in shapes[0]], "spacing_mm": [round(float(s), 4) for s in spacings[0]],
            "brain_box": np.round(unit, 6).tolist()}


def spacing_note(frame: dict | None, spacing: tuple[float, float, float]) -> str | None:
    """Why a case of voxel size ``spacing`` (mm) reads worse than the model's own cases, or ``None``: the
    patches of a case whose voxels are more than 10 % off the training cases' (``frame``) cover
    another scale of anatomy."""
    trained = (frame or {}).get("spacing_mm")
    if trained is None or np.allclose(spacing, trained, rtol=0.1, atol=0):
        return None
    shown = lambda s: " x ".join(f"{v:.3g}" for v in s)  # noqa: E731
    return (f"the model was trained on {shown(trained)} mm voxels and this case has {shown(spacing)} mm: its 3 x 3 "
            f"x 3 patches cover another scale of anatomy and the segmentation degrades (a 1 mm case read at "
            f"2 mm: whole-tumour Dice 0.06 instead of 0.31); resample the case to {shown(trained)} mm, or train "
            "on its spacing")


def case_frame(frame: dict | None, shape: tuple[int, int, int], box: tuple[slice, slice, slice]) -> np.ndarray | None:
    """The network's coordinates for a case: ``None`` (:func:`voxel_to_unit`, as trained) on the grid
    the model was trained on, or when its checkpoint records no grid; on any other grid ``[2, 3]``
    ``(scale, offset)`` taking voxel indices to the coordinates where the training brains lay: the
    case's brain bounding box ``box`` maps onto the training cases' (``frame``, from
    :func:`training_frame`), so the same anatomy reads the same coordinates whatever the grid's
    padding, cropping or field of view (by the grid's extent, 20 voxels of zero padding took the
    shipped model's whole-tumour Dice from 0.73 to 0.09)."""
    if not frame or tuple(frame.get("grid", ())) == tuple(shape):
        return None
    lo, hi = box_corners(box)
    ref_lo, ref_hi = np.asarray(frame["brain_box"], np.float64)
    scale = (ref_hi - ref_lo) / np.maximum(hi - lo, 1.0)
    return np.stack([scale, ref_lo - scale * lo])


def to_unit(points: torch.Tensor, shape: tuple[int, int, int], frame: np.ndarray | None) -> torch.Tensor:
    """Continuous voxel indices ``[..., 3]`` of a ``shape`` grid -> the network's coordinates in
    ``frame`` (:func:`case_frame`; ``None``: :func:`voxel_to_unit`)."""
    if frame is None:
        return voxel_to_unit(points, shape)
    f = torch.as_tensor(frame, dtype=points.dtype, device=points.device)
    return points * f[0] + f[1]


def patch_offsets(patch_size: int = 3) -> torch.Tensor:
    """``[P^3, 3]`` integer voxel offsets of a patch, in ``(dx, dy, dz)`` C order."""
    r = torch.arange(patch_size) - patch_size // 2
    return torch.stack(torch.meshgrid(r, r, r, indexing="ij"), dim=-1).reshape(-1, 3)


def extract_patches(volume: torch.Tensor, points: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """Trilinearly sampled patches around continuous points.

    Args:
        volume: ``[C, X, Y, Z]`` normalised modalities.
        points: ``[N, 3]`` continuous voxel indices (``(i, j, k)``; integers are voxel centres).
        patch_size: ``P``; samples at integer offsets ``-P//2 .. P//2`` voxels around each point.

    Returns:
        ``[N, C, P, P, P]``; samples outside the grid read 0 (the value outside the brain).
    """
    c = volume.shape[0]
    shape = tuple(volume.shape[1:])
    offsets = patch_offsets(patch_size).to(points)                                  # [P^3, 3]
    where = voxel_to_unit(points[:, None, :] + offsets[None], shape)              # [N, P^3, 3]
    # grid_sample wants (x, y, z) = (W, H, D) = our (k, j, i)
    grid = where.flip(-1).reshape(1, -1, 1, 1, 3)
    out = F.grid_sample(volume[None], grid.to(volume.dtype), mode="bilinear", padding_mode="zeros",
                        align_corners=True)                                        # [1, C, N P^3, 1, 1]
    return out.reshape(c, points.shape[0], patch_size, patch_size, patch_size).transpose(0, 1)


def pad_volume(volume: torch.Tensor, patch_size: int = 3) -> torch.Tensor:
    """Zero-pad ``[C, X, Y, Z]`` by ``P // 2`` on every side (for :func:`gather_patches`)."""
    r = patch_size // 2
    return F.pad(volume, (r, r, r, r, r, r))


def patch_flat_offsets(padded_shape: tuple[int, ...], patch_size: int = 3) -> torch.Tensor:
    """``[C * P^3]`` offsets into the flattened padded volume ``[C, X', Y', Z']`` of a patch
    anchored at its first voxel, in ``[C, dx, dy, dz]`` order."""
    c, x, y, z = padded_shape
    r = torch.arange(patch_size)
    d = (r[:, None, None] * (y * z) + r[None, :, None] * z + r[None, None, :]).reshape(-1)
    return (torch.arange(c)[:, None] * (x * y * z) + d[None]).reshape(-1)


def gather_patches(padded: torch.Tensor, voxels: torch.Tensor, patch_size: int = 3,
                   flat_offsets: torch.Tensor | None = None) -> torch.Tensor:
    """Exact patches at integer voxel centres (fast path of :func:`extract_patches`).

    Args:
        padded: ``[C, X + P - 1, Y + P - 1, Z + P - 1]`` from :func:`pad_volume`.
        voxels: ``[N, 3]`` integer voxel indices of the *unpadded* grid.
        flat_offsets: cached :func:`patch_flat_offsets` (computed when ``None``).

    Returns:
        ``[N, C * P^3]`` in ``[C, dx, dy, dz]`` order.
    """
    _, x, y, z = padded.shape
    if flat_offsets is None:
        flat_offsets = patch_flat_offsets(tuple(padded.shape), patch_size)
    anchor = (voxels[:, 0] * (y * z) + voxels[:, 1] * z + voxels[:, 2]).long()       # padded index of the corner
    return padded.reshape(-1)[anchor[:, None] + flat_offsets.to(padded.device)[None]]
