r"""Empty-space skipping in the compiled ray-marcher (:mod:`._numba_march`): the blocks of
:mod:`.blocks` along an axis (:func:`_blocks`) and where a ray leaves a block (:func:`_exit`). A ray
crosses a block whose range the TF leaves transparent in one jump.
"""

from __future__ import annotations

from .. import numba_cache  # noqa: F401  (before numba: where it keeps the compiled kernels)
import numba as nb
import numpy as np

from .blocks import BLOCK

_JIT = dict(cache=True, error_model="numpy", nogil=True, fastmath=False)


@nb.njit(**_JIT)
def _blocks(n):
    """Blocks along an axis of ``n`` voxels (``n - 1`` cells)."""
    return (n - 2) // BLOCK + 1


@nb.njit(inline="always", **_JIT)
def _exit(w, e, inv_e, b, last):
    """Ray parameter (mm) where the voxel coordinate ``w + t e`` (``inv_e = 1 / e``) leaves block ``b`` of
    an axis whose last block is ``last`` (``inf`` if never: the first and last blocks extend beyond
    the grid, as clamping does)."""
    if e > 0.0 and b < last:
        return ((b + 1) * BLOCK - w) * inv_e
    if e < 0.0 and b > 0:
        return (b * BLOCK - w) * inv_e
    return np.inf
