r"""6D Gaussian splats (6DGS): the parameters a model predicts or an optimiser fits.

Each splat is a Gaussian over position (mm, world RAS+) x direction (unit-vector space), with

.. math::

    \Sigma = L L^T, \quad L = \mathrm{diag}(s)\,(I + \mathrm{strictly\_lower}(l)), \quad
    s = e^{\texttt{chol\_log\_diag}}, \quad l = 2\,\sigma(\texttt{chol\_lower}) - 1 \in (-1, 1)

(DESIGN.md). Coordinates are ordered ``(x, y, z, dx, dy, dz)``; the 15 strictly-lower entries of
the 6x6 factor are stored row by row, ``(1,0), (2,0), (2,1), (3,0), ..., (5,4)``
(``torch.tril_indices(6, 6, -1)``).

Consequence of the bounded ``l`` (worth knowing): row ``i`` of ``L`` satisfies
``|L_ij| < L_ii``, so only covariances whose Cholesky factor obeys that bound are representable;
for the position block that means, e.g., ``|corr(x, y)| < 1/sqrt(2)``. Strongly correlated,
diagonally elongated Gaussians (common in 3DGS files) lie outside the set; see
:func:`raw_from_cholesky` and :mod:`rfmweb.splats.ply`.

Colour is degree-1 real spherical harmonics per RGB channel (gsplat / INRIA convention, see
:func:`rfmweb.splats.slicing.eval_sh_deg1`), ``sh [N, 4, 3]``; opacity is a logit.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

import numpy as np
import torch

from ..errors import InputError
from ..io.atomic import atomic_write

FORMAT = "rfmweb.splats6d/1"
_TRIL = torch.tril_indices(6, 6, offset=-1)  # [2, 15], row-major strictly-lower entries
_UNIT_INDEX = torch.zeros(6, 6, dtype=torch.long)  # [6, 6] -> index into [0, l_1..l_15, 1]
_UNIT_INDEX[_TRIL[0], _TRIL[1]] = torch.arange(1, 16)
_UNIT_INDEX.fill_diagonal_(16)
_UNIT_INDEX = _UNIT_INDEX.reshape(-1)
_FLOAT_FIELDS = ("means", "dir_means", "chol_log_diag", "chol_lower", "opacity_logits", "sh")
_SHAPES = {"means": (3,), "dir_means": (3,), "chol_log_diag": (6,), "chol_lower": (15,),
           "opacity_logits": (), "sh": (4, 3)}


@dataclass
class Splats6D:
    """N six-dimensional Gaussians (all tensors on one device, one floating dtype).

    Attributes:
        means: ``[N, 3]`` position means, world mm.
        dir_means: ``[N, 3]`` direction means ``mu_d`` (0 for Render-FM).
        chol_log_diag: ``[N, 6]`` raw log of the diagonal ``s`` of ``L``.
        chol_lower: ``[N, 15]`` raw (pre-sigmoid) strictly-lower entries of ``L``.
        opacity_logits: ``[N]`` opacity logits ``a`` (opacity = sigmoid(a)).
        sh: ``[N, 4, 3]`` SH coefficients, degree 0 and 1, RGB.
        labels: optional ``[N]`` integer class label per splat (e.g. the AGP voxel class).
        box: optional ``[2, 3]`` float64 world box (mm) of the volume the splats were made from:
            kept in the file, so a view of the splats alone frames them as a view of that volume.
    """

    means: torch.Tensor  # [N, 3]
    dir_means: torch.Tensor  # [N, 3]
    chol_log_diag: torch.Tensor  # [N, 6]
    chol_lower: torch.Tensor  # [N, 15]
    opacity_logits: torch.Tensor  # [N]
    sh: torch.Tensor  # [N, 4, 3]
    labels: torch.Tensor | None = None  # [N]
    box: np.ndarray | None = field(default=None, repr=False)  # [2, 3] mm, not per splat

    def __post_init__(self) -> None:
        if self.box is not None:
            box = np.asarray(self.box, dtype=np.float64)
            if box.shape != (2, 3) or not np.isfinite(box).all() or (box[1] < box[0]).any():
                raise InputError(f"Splats6D.box must be [[x0, y0, z0], [x1, y1, z1]] mm with x0 <= x1 ..., "
                                 f"got {self.box!r}")
            self.box = box
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if not isinstance(value, torch.Tensor):
                raise InputError(f"Splats6D.{name} must be a torch tensor, got {type(value).__name__}")
        n = self.means.shape[0] if self.means.ndim == 2 else -1
        dtype, device = self.means.dtype, self.means.device
        if not dtype.is_floating_point:
            raise InputError(f"Splats6D.means must be floating point, got {dtype}")
        for name in _FLOAT_FIELDS:
            value = getattr(self, name)
            if tuple(value.shape) != (n, *_SHAPES[name]):
                want = ", ".join(["N", *map(str, _SHAPES[name])])
                raise InputError(f"Splats6D.{name} must have shape [{want}] with N = len(means); "
                                 f"got {tuple(value.shape)} (means {tuple(self.means.shape)})")
            if value.dtype != dtype or value.device != device:
                raise InputError(f"Splats6D.{name} is {value.dtype} on {value.device}; every field must be "
                                 f"{dtype} on {device} (like means)")
        if self.labels is not None:
            if not isinstance(self.labels, torch.Tensor) or self.labels.dtype.is_floating_point \
                    or self.labels.dtype == torch.bool:
                raise InputError("Splats6D.labels must be an integer tensor [N] or None")
            if tuple(self.labels.shape) != (n,) or self.labels.device != device:
                raise InputError(f"Splats6D.labels must have shape [{n}] on {device}, got "
                                 f"{tuple(self.labels.shape)} on {self.labels.device}")

    # -- basic protocol -----------------------------------------------------------------------
    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Splats6D":
        """A copy on ``device`` (and float ``dtype``, if given); labels keep their integer dtype."""
        kw = {name: getattr(self, name).to(device=device, dtype=dtype) for name in _FLOAT_FIELDS}
        labels = None if self.labels is None else self.labels.to(device=device)
        return Splats6D(**kw, labels=labels, box=self.box)

    def detach(self) -> "Splats6D":
        kw = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).detach())
              for f in fields(self) if f.name != "box"}
        return Splats6D(**kw, box=self.box)

    def index(self, keep: torch.Tensor) -> "Splats6D":  # keep: [N] bool or [M] int
        """The splats selected by a boolean mask or an index tensor ``keep``."""
        kw = {f.name: (None if getattr(self, f.name) is None else getattr(self, f.name)[keep])
              for f in fields(self) if f.name != "box"}
        return Splats6D(**kw, box=self.box)

    # -- derived quantities -------------------------------------------------------------------
    @property
    def opacities(self) -> torch.Tensor:
        """``[N]`` view-independent opacity ``sigmoid(a)`` (the slice multiplies it by <= 1)."""
        return torch.sigmoid(self.opacity_logits)

    def cholesky(self) -> torch.Tensor:
        """``[N, 6, 6]`` lower-triangular factor ``L = diag(s) (I + strictly_lower(l))``."""
        n = len(self)
        s = torch.exp(self.chol_log_diag)  # [N, 6]
        lower = 2.0 * torch.sigmoid(self.chol_lower) - 1.0  # [N, 15]
        # one gather builds I + strictly_lower(l): column 0 of `padded` is 0, 1..15 are l, 16 is 1
        padded = torch.cat([lower.new_zeros(n, 1), lower, lower.new_ones(n, 1)], 1)  # [N, 17]
        unit = torch.index_select(padded, 1, _UNIT_INDEX.to(self.device)).reshape(n, 6, 6)
        return s[:, :, None] * unit

    def covariance(self) -> torch.Tensor:
        """``[N, 6, 6]`` covariance ``Sigma = L L^T`` over ``(x, y, z, dx, dy, dz)``."""
        chol = self.cholesky()
        return chol @ chol.transpose(-1, -2)

    # -- editing ------------------------------------------------------------------------------
    def prune(self, min_opacity: float = 0.01) -> "Splats6D":
        """Drop splats whose opacity ``sigmoid(a)`` is below ``min_opacity`` (DESIGN.md: 0.01).

        The sliced opacity is ``sigmoid(a)`` times a factor <= 1, so a pruned splat could never
        reach ``min_opacity`` from any view.
        """
        if not 0.0 <= min_opacity < 1.0:
            raise InputError(f"min_opacity must lie in [0, 1), got {min_opacity}")
        return self.index(self.opacities >= min_opacity)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_covariance(cls,
                        means: torch.Tensor,  # [N, 3]
                        covariance: torch.Tensor,  # [N, 6, 6]
                        opacities: torch.Tensor,  # [N]
                        sh: torch.Tensor,  # [N, 4, 3]
                        *,
                        dir_means: torch.Tensor | None = None,  # [N, 3]
                        labels: torch.Tensor | None = None,  # [N]
                        ) -> tuple["Splats6D", torch.Tensor]:
        """Splats with a given 6x6 covariance (inverse of :meth:`covariance`, where representable).

        Args:
            means: ``[N, 3]`` mm. covariance: ``[N, 6, 6]`` SPD. opacities: ``[N]`` in (0, 1).
            sh: ``[N, 4, 3]``. dir_means: ``[N, 3]`` (default 0). labels: ``[N]`` or None.

        Returns:
            ``(splats, exact [N] bool)``: ``exact`` is False where the covariance lies outside the
            parametrisation (see the module docstring) and was replaced by the nearest factor
            with ``|l|`` clamped to ``1 - 1e-6``.
        """
        dtype, device = means.dtype, means.device
        chol = torch.linalg.cholesky(covariance.to(torch.float64))  # [N, 6, 6]
        log_diag, raw, exact = raw_from_cholesky(chol)
        p = torch.as_tensor(opacities, dtype=torch.float64).clamp(1e-7, 1 - 1e-7)
        dir_means = torch.zeros_like(means) if dir_means is None else dir_means
        splats = cls(means, dir_means.to(dtype), log_diag.to(device, dtype), raw.to(device, dtype),
                     torch.logit(p).to(device, dtype), sh.to(dtype), labels)
        return splats, exact.to(device)

    # -- files --------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write an ``.npz`` (float32 fields, int64 labels, the float64 box, a format tag) atomically."""
        arrays = {name: getattr(self, name).detach().cpu().numpy().astype(np.float32) for name in _FLOAT_FIELDS}
        if self.labels is not None:
            arrays["labels"] = self.labels.detach().cpu().numpy().astype(np.int64)
        if self.box is not None:
            arrays["box"] = self.box
        arrays["format"] = np.array(FORMAT)

        def write(tmp):
            with open(tmp, "wb") as f:  # a file object: np.savez must not append ".npz" to tmp
                np.savez(f, **arrays)

        atomic_write(path, write)

    @classmethod
    def load(cls, path: str | os.PathLike, device=None) -> "Splats6D":
        """Read a file written by :meth:`save`; any problem raises :class:`InputError` naming it."""
        try:
            with np.load(path, allow_pickle=False) as data:
                content = {k: data[k] for k in data.files}
        except FileNotFoundError:
            raise InputError("no such splat file", path) from None
        except Exception as e:  # zip / npy / pickle errors all mean "not our file"; numpy's own advice
            # for a file it takes for a pickle ("load it unsafely") must not reach the user
            raise InputError(f"not a readable .npz splat file ({type(e).__name__})", path) from None
        if "format" not in content or str(content["format"]) != FORMAT:
            raise InputError(f"not an rfmweb splat file (missing format tag {FORMAT!r})", path)
        missing = [name for name in _FLOAT_FIELDS if name not in content]
        if missing:
            raise InputError(f"splat file lacks arrays {missing}", path)
        kw = {}
        for name in _FLOAT_FIELDS:
            a = content[name]
            if a.dtype.kind != "f":
                raise InputError(f"array {name!r} must be floating point, got {a.dtype}", path)
            if not np.isfinite(a).all():
                raise InputError(f"array {name!r} holds NaN or infinite values", path)
            kw[name] = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(device)
        labels = content.get("labels")
        if labels is not None:
            if labels.dtype.kind not in "iu":
                raise InputError(f"array 'labels' must be integer, got {labels.dtype}", path)
            labels = torch.from_numpy(labels.astype(np.int64)).to(device)
        box = content.get("box")
        if box is not None and (box.dtype.kind != "f" or box.shape != (2, 3)):
            raise InputError(f"array 'box' must be [2, 3] floating point, got {box.dtype} {box.shape}", path)
        try:
            return cls(**kw, labels=labels, box=box)
        except InputError as e:
            raise InputError(e.reason, path) from None

    def __repr__(self) -> str:
        return f"Splats6D(N={len(self)}, dtype={self.dtype}, device={self.device}, " \
               f"labels={'yes' if self.labels is not None else 'no'})"


def raw_from_cholesky(chol: torch.Tensor,  # [N, 6, 6]
                      bound: float = 1 - 1e-6,
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Raw parameters ``(log_diag [N, 6], lower_raw [N, 15], exact [N])`` of a Cholesky factor.

    ``chol [N, 6, 6]`` is lower triangular with a positive diagonal. Writing it as
    ``diag(s) (I + strictly_lower(l))`` gives ``s_i = L_ii`` and ``l_ij = L_ij / L_ii``; an entry
    with ``|l_ij| >= bound`` cannot be reached by ``2 sigmoid(x) - 1`` and is clamped (``exact``
    False for that splat).
    """
    diag = torch.diagonal(chol, dim1=-2, dim2=-1)  # [N, 6]
    lower = chol[:, _TRIL[0], _TRIL[1]] / diag[:, _TRIL[0]]  # [N, 15]
    exact = (lower.abs() < bound).all(dim=-1)
    lower = lower.clamp(-bound, bound)
    return torch.log(diag), torch.logit((lower + 1) / 2), exact
