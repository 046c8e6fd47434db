r"""6D splat ``.ply`` files: the splats themselves, in the 6DGS authors' layout (Gaozhongpai/ndsplat).

Unlike :mod:`.ply` (3D Gaussians sliced for one view, for 3DGS viewers), this file holds the
6D Gaussians, so it reads back to the same :class:`Splats6D` and slices for every view. One
``vertex`` element, binary little-endian, float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..8  opacity  diags_0..5  l_triangs_0..14  [label]

- ``x y z``: position mean ``mu_p``, world mm (RAS+).
- ``nx ny nz``: the **direction mean** ``mu_d`` (unit-vector space), as ndsplat's 6DGS model
  stores its ``_normal`` parameter there; 0 for Render-FM's splats.
- ``f_dc_0..2``, ``f_rest_0..8``: degree-1 SH, INRIA layout as in :mod:`.ply` (``f_rest``
  channel-major: the 3 R coefficients, then G, then B).
- ``opacity``: the logit ``a`` (opacity ``sigmoid(a)``).
- ``diags_0..5``: ``chol_log_diag``, the log of the diagonal ``s`` of the 6x6 Cholesky factor
  over ``(x, y, z, dx, dy, dz)``; ``l_triangs_0..14``: ``chol_lower``, the raw strictly-lower
  entries (``l = 2 sigmoid(x) - 1``) in ``torch.tril_indices(6, 6, -1)`` order (row by row).
  Names, activations and order are ndsplat's (``scene/gaussian_model_6dgs.py``: ``diags_act = exp``,
  ``l_triangs_act = 2 sigmoid - 1``, and its ``create_cholesky_v2`` builds
  ``L = diag(s) (I + strictly_lower(l))`` from ``tril_indices``), which is :mod:`.model`'s factor.
- ``label`` (``int``, optional): the per-splat class (:attr:`Splats6D.labels`).
- a header comment ``rfmweb box x0 y0 z0 x1 y1 z1`` (optional): :attr:`Splats6D.box`, the volume's
  box (mm), so a view of the splats alone frames them as the ``.npz`` does.

Reading also takes ndsplat files with SH degree 0 (no ``f_rest``: degree 1 set to 0) or above 1
(truncated to degree 1, logged). A 3DGS file (``scale_*`` / ``rot_*``) is refused with a pointer
to :func:`rfmweb.splats.import_ply`. float32 splats round-trip exactly.

Example::

    >>> write_ply6d("splats.ply", splats)                # doctest: +SKIP
    >>> same = read_ply6d("splats.ply")                  # doctest: +SKIP
    >>> any_kind = read_splats("prediction.npz")         # .npz or 6D .ply  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from .model import Splats6D
from .ply import read_vertex_ply_and_comments, write_vertex_ply

log = logging.getLogger(__name__)

N_DIAG, N_LOWER, N_REST = 6, 15, 9
#: Float properties in file order (``label`` follows when the splats have labels).
PROPERTIES = ("x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2",
              *(f"f_rest_{i}" for i in range(N_REST)), "opacity",
              *(f"diags_{i}" for i in range(N_DIAG)), *(f"l_triangs_{i}" for i in range(N_LOWER)))
_INT32 = np.iinfo(np.int32)
#: Header comment carrying :attr:`Splats6D.box` (``x0 y0 z0 x1 y1 z1`` mm), as the ``.npz`` keeps it.
BOX_COMMENT = "rfmweb box "


def write_ply6d(path: str | os.PathLike, splats: Splats6D) -> None:
    """Write ``splats`` as a 6D splat ``.ply`` (module docstring) atomically.

    Floating fields are written as float32; labels as 32-bit ints.

    Raises:
        InputError: labels outside the int32 range.
    """
    n = len(splats)

    def cpu(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy()

    sh = cpu(splats.sh).astype(np.float32)  # [N, 4, 3]
    rest = np.swapaxes(sh[:, 1:, :], 1, 2).reshape(n, N_REST)  # channel-major, as INRIA writes it
    columns = np.concatenate([cpu(splats.means), cpu(splats.dir_means), sh[:, 0, :], rest,
                              cpu(splats.opacity_logits)[:, None], cpu(splats.chol_log_diag),
                              cpu(splats.chol_lower)], axis=1).astype("<f4")  # [N, 39]
    fields = [(name, "<f4") for name in PROPERTIES]
    arrays = list(columns.T)
    if splats.labels is not None:
        labels = cpu(splats.labels).astype(np.int64)
        if n and (labels.min() < _INT32.min or labels.max() > _INT32.max):
            raise InputError(f"labels must fit in 32 bits for a PLY file, got {labels.min()}..{labels.max()}", path)
        fields.append(("label", "<i4"))
        arrays.append(labels.astype("<i4"))
    vertex = np.empty(n, dtype=fields)
    for (name, _), a in zip(fields, arrays):
        vertex[name] = a
    comments = ["rfmweb 6D Gaussian splats (6DGS, ndsplat layout)"]
    if splats.box is not None:     # a view of the splats alone frames the volume they were made from
        comments.append(BOX_COMMENT + " ".join(repr(float(v)) for v in np.asarray(splats.box).reshape(-1)))
    write_vertex_ply(path, vertex, comment=tuple(comments))


def read_ply6d(path: str | os.PathLike, device=None) -> Splats6D:
    """Read a 6D splat ``.ply`` (module docstring) into float32 :class:`Splats6D` on ``device``.

    Raises:
        InputError: naming ``path``: not a readable binary PLY, a 3DGS file, missing properties,
            a wrong count of ``f_rest_*`` / ``diags_*`` / ``l_triangs_*``, non-float properties,
            or NaN / infinite values.
    """
    vertex, comments = read_vertex_ply_and_comments(path)
    names = set(vertex.dtype.names)
    if "diags_0" not in names and {"scale_0", "rot_0"} <= names:
        raise InputError("this is a 3DGS .ply (per-view 3D Gaussians: scale_*/rot_*), not a 6D splat file; "
                         "convert it with rfmweb.splats.import_ply", path)
    counts = {prefix: sum(1 for p in names if p.startswith(prefix)) for prefix in ("f_rest_", "diags_", "l_triangs_")}
    for prefix, want in (("diags_", N_DIAG), ("l_triangs_", N_LOWER)):
        if counts[prefix] not in (0, want):
            raise InputError(f"a 6D splat needs {want} {prefix}* properties, the file has {counts[prefix]}", path)
    n_rest = counts["f_rest_"]
    k = 1 + n_rest // 3  # SH coefficients per channel
    if n_rest % 3 or int(round(k ** 0.5)) ** 2 != k:
        raise InputError(f"f_rest_* count {n_rest} is not 3 ((deg + 1)^2 - 1)", path)
    need = [p for p in PROPERTIES if not p.startswith("f_rest_")] + [f"f_rest_{i}" for i in range(n_rest)]
    missing = [p for p in need if p not in names]
    if missing:
        raise InputError(f"not a 6D splat file: vertex lacks properties {missing}", path)
    for p in need:
        if vertex.dtype[p].kind != "f":
            raise InputError(f"property {p!r} must be float, got {vertex.dtype[p]}", path)
        if not np.isfinite(vertex[p]).all():
            raise InputError(f"property {p!r} holds NaN or infinite values", path)

    def col(*ps: str) -> np.ndarray:
        return np.stack([vertex[p].astype(np.float32) for p in ps], -1)

    n = len(vertex)
    sh = np.zeros((n, 4, 3), np.float32)
    sh[:, 0] = col("f_dc_0", "f_dc_1", "f_dc_2")
    if n_rest:
        rest = np.swapaxes(col(*(f"f_rest_{i}" for i in range(n_rest))).reshape(n, 3, k - 1), 1, 2)
        sh[:, 1:1 + min(k - 1, 3)] = rest[:, :3]
        if k > 4:
            log.info("%s: SH degree %d truncated to 1", path, int(round(k ** 0.5)) - 1)
    labels = None
    if "label" in names:
        if vertex.dtype["label"].kind not in "iu":
            raise InputError(f"property 'label' must be an integer, got {vertex.dtype['label']}", path)
        labels = torch.from_numpy(vertex["label"].astype(np.int64)).to(device)

    def tensor(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)

    return Splats6D(tensor(col("x", "y", "z")), tensor(col("nx", "ny", "nz")),
                    tensor(col(*(f"diags_{i}" for i in range(N_DIAG)))),
                    tensor(col(*(f"l_triangs_{i}" for i in range(N_LOWER)))),
                    tensor(vertex["opacity"]), tensor(sh), labels, box=_box(comments))


def _box(comments: list[str]) -> np.ndarray | None:
    """The ``[2, 3]`` box a :data:`BOX_COMMENT` line of the header names, or ``None`` (none, or not six
    finite numbers with x0 <= x1 ...: another writer's comment is no reason to refuse the splats)."""
    for comment in comments:
        if comment.startswith(BOX_COMMENT):
            try:
                box = np.array([float(v) for v in comment[len(BOX_COMMENT):].split()], np.float64).reshape(2, 3)
            except ValueError:
                return None
            return box if np.isfinite(box).all() and (box[1] >= box[0]).all() else None
    return None


def read_splats(path: str | os.PathLike, device=None) -> Splats6D:
    """Splats from an ``.npz`` (:meth:`Splats6D.load`) or a 6D ``.ply`` (:func:`read_ply6d`), by suffix."""
    if Path(path).suffix.lower() == ".ply":
        return read_ply6d(path, device=device)
    return Splats6D.load(path, device=device)
