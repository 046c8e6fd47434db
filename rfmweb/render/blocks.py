r"""Empty-space skipping tables of the ray-marchers' kernels (the compiled CPU one,
:mod:`._numba_march`, and the Triton one, :mod:`._triton_march`), made once here in torch on the
volume's device.

The volume is cut into blocks of :data:`BLOCK`\ :sup:`3` cells. Each block gets the range of
intensities its cells interpolate, widened by one voxel on every side (:func:`block_ranges`: of the
voxels for trilinear reads, of the B-spline coefficients one voxel further for cubic ones), as
lookup-table entries with one entry of margin (:func:`lut_ranges`). A ray crosses a block in one
jump when the TF has no extinction over that range (``key[lo] == key[hi]``, :func:`skip_key`) and,
as it enters from another block, over the union of the two ranges (the segment between a sample in
each spans intensities of both). A block holding a visible solid class is never skipped: its
``hi`` is the key's ``inf`` entry.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..backend import compiled_cpu, numba_threads
from .fields import LUT_SIZE, ScalarField

#: cells per side of a block
BLOCK = 8


def block_count(n: int) -> int:
    """Blocks along an axis of ``n >= 2`` voxels (``n - 1`` cells, the last block maybe partial)."""
    return (n - 2) // BLOCK + 1


def _block_max(volume: torch.Tensor, reach: int = 1) -> torch.Tensor:
    """``[X, Y, Z]`` float32 -> ``[BX, BY, BZ]``: the maximum over each block's voxels, which for block
    ``b`` of an axis of ``n`` voxels are ``max(bB - reach, 0) .. min(bB + B + reach, n - 1)`` (``B =
    BLOCK``): a max-pool of window ``B + 1 + 2 reach`` and stride ``B`` over the volume padded by its
    edge values, ``reach`` voxels before and up to the last block's window after."""
    pads = []
    for n in reversed(volume.shape):               # F.pad lists the last axis first
        pads += [reach, block_count(n) * BLOCK + reach + 1 - n]
    padded = F.pad(volume[None, None], pads, mode="replicate")
    return F.max_pool3d(padded, kernel_size=BLOCK + 1 + 2 * reach, stride=BLOCK)[0, 0]


@torch.no_grad()
def block_ranges(scalar: torch.Tensor, cubic: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """``(min, max)`` over each block (see :func:`_block_max`) -> two ``[BX, BY, BZ]`` float32 tensors
    on the device of ``scalar [X, Y, Z]``: the voxel values a trilinear read in the block's cells
    takes, or (``cubic``: ``scalar`` holds B-spline coefficients) the 4 x 4 x 4 coefficients a cubic
    read weighs (one voxel further), widened by one voxel: a point within a voxel of a block (the
    front end of a segment whose previous sample lay in it) reads only what the block covers."""
    s = scalar.detach().to(torch.float32)
    reach = 2 if cubic else 1
    if compiled_cpu(s):                                 # one pass for both, 3x faster on 2 cores
        from ._numba_volume import block_min_max      # imports numba: only where it runs
        lo, hi = (torch.empty(tuple(block_count(n) for n in s.shape), dtype=torch.float32) for _ in range(2))
        with numba_threads():
            block_min_max(np.ascontiguousarray(s.numpy()), reach, lo.numpy(), hi.numpy())
        return lo, hi
    return -_block_max(-s, reach), _block_max(s, reach)


@torch.no_grad()
def lut_ranges(ranges: tuple[torch.Tensor, torch.Tensor], lut_lo: float, lut_scale: float, lut_size: int,
               labels: torch.Tensor | None = None, shape: tuple[int, int, int] | None = None,
               flagged: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-block ``(lo, hi)`` int32 lookup-table entries bracketing :func:`block_ranges`' intensities,
    by the kernels' float32 index ``(s - lut_lo) * lut_scale`` clamped to the table, with one entry of
    margin on each side.

    Args:
        labels: ``[X * Y * Z]`` integer labels of the ``shape`` grid the ranges come from, and
            ``flagged`` ``[L]`` bool per label value (the visible solid classes): blocks holding a flagged voxel
            get ``hi = lut_size``, the ``inf`` entry of :func:`skip_key`, and are never skipped.
    """
    top = lut_size - 1
    lo_f = ((ranges[0] - lut_lo) * lut_scale).clamp(0, top)
    hi_f = ((ranges[1] - lut_lo) * lut_scale).clamp(0, top)
    lo = (lo_f.floor().to(torch.int32) - 1).clamp(min=0)
    hi = (hi_f.ceil().to(torch.int32) + 1).clamp(max=top)
    if labels is not None and flagged is not None and bool(flagged.any()):
        marked = flagged.to(labels.device)[labels.long()].reshape(shape)
        hi = torch.where(_block_max(marked.to(torch.float32)) > 0, torch.full_like(hi, lut_size), hi)
    return lo.contiguous(), hi.contiguous()


def field_blocks(field: ScalarField, ranges: tuple[torch.Tensor, torch.Tensor]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lo, hi, key)`` of a pre-integrated :class:`~rfmweb.render.fields.ScalarField` whose scalar has
    the per-block ``ranges`` (:func:`block_ranges`): :func:`lut_ranges` with the field's lookup map,
    its visible solid classes flagged (a visible solid class shows whatever the TF says), and
    :func:`skip_key` of its cumulative extinction; on the field's device."""
    solid = field.labels is not None and field._solid
    flagged = ((field._class_use > 0) & (field._class_rgba[:, 3] > 0)) if solid else None
    lo, hi = lut_ranges(ranges, field._lut_lo, field._lut_scale, LUT_SIZE, field.labels,
                        tuple(field.sampler.shape), flagged)
    return lo, hi, skip_key(field._cum_sigma)


def skip_key(cum_sigma: torch.Tensor) -> torch.Tensor:
    """``[n + 1]`` float64: the TF's cumulative extinction ``cum_sigma [n]`` then ``inf``. Entries ``lo ..
    hi`` of the table are transparent when ``key[lo] == key[hi]``."""
    inf = torch.full((1,), float("inf"), dtype=torch.float64, device=cum_sigma.device)
    return torch.cat([cum_sigma.to(torch.float64), inf]).contiguous()
