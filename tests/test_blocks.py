"""Empty-space skipping tables (:mod:`rfmweb.render.blocks`) against a loop over the blocks."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmweb.render import blocks

B = blocks.BLOCK


def _spans(n: int):
    """Voxels block b reads along an axis of n: its cells' voxels widened by one, clamped."""
    return [(max(b * B - 1, 0), min(b * B + B + 1, n - 1)) for b in range(blocks.block_count(n))]


@pytest.mark.parametrize("shape", [(2, 2, 2), (9, 10, 17), (33, 40, 25), (7, 129, 3)])
def test_block_ranges_and_flags_match_a_loop(shape):
    rng = np.random.default_rng(sum(shape))
    scalar = rng.normal(size=shape).astype(np.float32)
    labels = rng.choice([0, 1, 3], size=shape)
    labels[rng.random(shape) < 0.002] = 2                  # a few voxels of the flagged class
    flagged = torch.tensor([False, False, True, False])
    lo, hi = blocks.block_ranges(torch.from_numpy(scalar))
    lut_lo, lut_scale, size = -2.0, 60.0, 256
    entry_lo, entry_hi = blocks.lut_ranges((lo, hi), lut_lo, lut_scale, size, torch.from_numpy(labels.ravel()),
                                           shape, flagged)
    sx, sy, sz = (_spans(n) for n in shape)
    assert lo.shape == (len(sx), len(sy), len(sz))
    for bi, (i0, i1) in enumerate(sx):
        for bj, (j0, j1) in enumerate(sy):
            for bk, (k0, k1) in enumerate(sz):
                cube = scalar[i0:i1 + 1, j0:j1 + 1, k0:k1 + 1]
                assert lo[bi, bj, bk] == cube.min() and hi[bi, bj, bk] == cube.max()
                want_lo = max(int(np.floor(np.clip((cube.min() - np.float32(lut_lo)) * np.float32(lut_scale),
                                                   0, size - 1))) - 1, 0)
                assert entry_lo[bi, bj, bk] == want_lo
                if (labels[i0:i1 + 1, j0:j1 + 1, k0:k1 + 1] == 2).any():
                    assert entry_hi[bi, bj, bk] == size                     # never skipped
                else:
                    assert entry_hi[bi, bj, bk] < size


def test_skip_key_marks_transparent_runs():
    key = blocks.skip_key(torch.tensor([0.0, 0.0, 0.0, 1.5, 2.0], dtype=torch.float64))
    assert key.dtype == torch.float64 and key.shape == (6,) and key[-1] == float("inf")
    assert key[0] == key[2] and key[2] != key[3] and key[3] != key[5]


def test_cubic_block_ranges_bound_every_cubic_read_near_the_block():
    """A cubic read weighs 4 x 4 x 4 coefficients with non-negative weights: any point in a block's
    cells, or within a voxel of them (the front end of a segment), reads within the block's range of
    the coefficients; the trilinear ranges of the same coefficients do not bound it."""
    from rfmweb.render.sampling import GridSampler, bspline_coefficients

    rng = np.random.default_rng(3)
    shape = (27, 30, 19)
    coef = bspline_coefficients(torch.from_numpy(rng.normal(size=shape).astype(np.float32)))
    lo, hi = blocks.block_ranges(coef, cubic=True)
    sampler = GridSampler(coef[None], np.eye(4))
    cells = np.array([blocks.block_count(n) for n in shape])
    b = rng.integers(0, cells, size=(4000, 3))
    ijk = np.clip(b * B + rng.uniform(-1.0, B + 1.0, size=(4000, 3)), 0, np.array(shape) - 1)
    reads = sampler.cubic(torch.from_numpy(ijk).float(), coef).numpy()
    block_lo, block_hi = lo.numpy()[tuple(b.T)], hi.numpy()[tuple(b.T)]
    assert ((reads >= block_lo - 1e-5) & (reads <= block_hi + 1e-5)).all()
    # a coefficient two voxels past block 0's cells weighs on a read within a voxel of them (a segment's
    # front end): the trilinear reach (one voxel) misses it
    spike = torch.zeros(24, 6, 6)
    spike[B + 2, 3, 3] = 1.0
    read = GridSampler(spike[None], np.eye(4)).cubic(torch.tensor([[B + 0.9, 3.0, 3.0]]), spike)
    assert float(read) > 1e-4 and blocks.block_ranges(spike)[1][0, 0, 0] == 0.0
    assert blocks.block_ranges(spike, cubic=True)[1][0, 0, 0] == 1.0


@pytest.mark.parametrize("cubic", [False, True])
@pytest.mark.parametrize("shape", [(2, 2, 2), (9, 10, 17), (33, 40, 25), (7, 129, 3)])
def test_compiled_block_ranges_equal_the_torch_max_pools(shape, cubic, monkeypatch):
    """The numba pass (the CPU's) and the padded max-pools (CUDA's, or without numba) agree exactly."""
    scalar = torch.from_numpy(np.random.default_rng(7).normal(size=shape).astype(np.float32))
    compiled = blocks.block_ranges(scalar, cubic=cubic)
    monkeypatch.setattr(blocks, "compiled_cpu", lambda tensor: False)
    pooled = blocks.block_ranges(scalar, cubic=cubic)
    for a, b in zip(compiled, pooled):
        assert a.shape == b.shape and torch.equal(a, b)
