"""Dense Neumours inference: a label volume (and class probabilities) for a whole case.

Only brain voxels are evaluated (background outside the brain is known), in large chunks, under
``torch.inference_mode``. On the input grid the two input branches are evaluated in closed form
instead of per point:

- the coordinate branch is separable: every Fourier feature depends on one axis, so
  ``coord_fc(ff(x, y, z)) = A[i] + B[j] + C[k] + b`` with ``A = coord_fc.weight[:, x-columns] @ ff_x``
  tabulated once per grid line (X + Y + Z rows instead of X * Y * Z points);
- the patch branch is a gather of the 3 x 3 x 3 neighbourhood followed by one matmul (a valid
  3-D convolution restricted to brain voxels).

The remaining cost is the 256-wide MLP (about 0.2 M multiply-adds per voxel), run in bfloat16 where
the hardware has fast bfloat16 matmuls (CUDA; x86 CPUs with AMX or AVX512-BF16) unless
``precision="fp32"``, as oneDNN's fused linear + bias + ReLU on the CPU. Large grids are segmented
coarse-to-fine by default (:func:`segment_volume`): the stride-2 lattice first, then full resolution
only near anything tumour-like.

Measured on a shared 2-core Xeon VM, 1 thread, 1.88 M brain voxels, the INR shipped on 2026-12-06
(``benchmarks/bench_inr.py``, MNI grid): dense fp32 10.0 s, dense bf16 2.3 s, coarse-to-fine bf16
1.1 s (labels equal to dense fp32 on 99.995 % of the voxels).

Super-resolution (``resolution_mm`` finer than the input spacing): the model is queried on a finer
grid with the same first voxel centre; patches are trilinearly sampled at +-1 *input* voxel around
each query (:func:`rfmweb.models.inr.extract_patches`; evaluated through the linearity of the patch
branch, see :class:`_GridEvaluator`), coordinates are the query's normalised position on the
input grid.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from ..errors import InputError, about
from ..models.inr import (NeumoursINR, axis_feature_columns, brain_mask, case_frame, normalise_modalities,
                          patch_flat_offsets, spacing_note, to_unit)
from .denoise import _bbox
from ..volume import Volume

log = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16")


def resolve_precision(precision: str, device: torch.device) -> str:
    """``"fp32"`` / ``"bf16"`` as given; ``"auto"`` -> :func:`rfmweb.backend.auto_precision` (bf16
    where the hardware has fast bf16 matmuls, forced with ``RFMWEB_PRECISION``; logged once)."""
    from ..backend import auto_precision

    if precision not in PRECISIONS:
        raise InputError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return precision if precision != "auto" else auto_precision(device)


def default_chunk(device: torch.device) -> int:
    """Points per forward pass: 32 Ki on CPU (bf16 activations stay in the L2/L3 caches; larger
    chunks measured slower), 1 Mi on CUDA."""
    return 1 << 20 if device.type == "cuda" else 1 << 15


def _mkldnn_linear_ok(dtype: torch.dtype) -> bool:
    """Whether oneDNN's fused linear (+ bias + ReLU) op works here (a private torch op: probed)."""
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x, w = torch.ones(2, 8, dtype=dtype), torch.ones(4, 8, dtype=dtype)
        return bool(torch.backends.mkldnn.is_available()) and \
            torch.allclose(op(x, w, torch.zeros(4, dtype=dtype), "relu", [], "").float(), torch.full((2, 4), 8.0))
    except (AttributeError, RuntimeError):
        return False


class InferenceMLP:
    """:meth:`NeumoursINR.decode` and its two input layers for inference, with the weights cast once.

    The activated concatenation ``h [N, 2W]`` (coordinate branch, then patch branch) is filled in
    place: one buffer, the ReLUs fused, instead of bf16 ``cat`` and ``relu_`` of the whole
    ``[N, 2W]`` (18.6 -> 8.8 ms for a 32 Ki-point chunk's first layer on this CPU, bit-identical;
    the matmuls of the rest take ~14 ms). On CPU each layer is oneDNN's fused linear + bias + ReLU
    (2.3x faster than ``addmm`` then ``relu_`` in bf16, measured); elsewhere ``addmm`` + in-place
    ReLU. Casting once avoids autocast's per-call casts (2x).

    Args:
        model: the network (its weights are copied as they are now).
        dtype: compute dtype.
        patch_order: ``"offset"``: patches ``[P^3, C]`` offset-major (the order a channel-last gather
            produces, :class:`PatchRows`); ``"channel"``: the model's own ``[C, P^3]`` order.
    """

    def __init__(self, model: NeumoursINR, dtype: torch.dtype, patch_order: str = "offset") -> None:
        if patch_order not in ("offset", "channel"):
            raise ValueError(f"patch_order must be 'offset' or 'channel', got {patch_order!r}")
        cfg = model.config
        patch_w = model.patch_fc.weight
        if patch_order == "offset":
            w = patch_w.view(cfg.branch_width, cfg.in_channels, cfg.patch_size ** 3)
            patch_w = w.permute(0, 2, 1).reshape(cfg.branch_width, -1)                  # [W, P^3 C]
        cast = lambda wt, b: (wt.detach().to(dtype).contiguous(), b.detach().to(dtype))  # noqa: E731
        self.coord = cast(model.coord_fc.weight, model.coord_fc.bias)
        self.patch_layer = cast(patch_w, model.patch_fc.bias)
        self.layers = [cast(m.weight, m.bias) for m in (*model.hidden, model.head)]
        self.width, self.dtype = cfg.branch_width, dtype
        self.fused = model.head.weight.device.type == "cpu" and _mkldnn_linear_ok(dtype)

    def _linear(self, x: torch.Tensor, layer: tuple[torch.Tensor, torch.Tensor], relu: bool) -> torch.Tensor:
        weight, bias = layer
        if self.fused:
            return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "relu" if relu else "none", [], "")
        y = torch.addmm(bias, x, weight.T)
        return y.relu_() if relu else y

    def patch(self, patches: torch.Tensor, relu: bool = False) -> torch.Tensor:
        """``patches [N, P^3 C]`` -> patch-branch pre-activation ``[N, W]`` (compute dtype), or its
        ReLU with ``relu``."""
        return self._linear(patches, self.patch_layer, relu=relu)

    def hidden(self, h: torch.Tensor) -> torch.Tensor:
        """The activated branches ``h [N, 2W]`` (coordinates, then patch; compute dtype) -> float32
        logits ``[N, K]``."""
        for layer in self.layers[:-1]:
            h = self._linear(h, layer, relu=True)
        return self._linear(h, self.layers[-1], relu=False).float()

    def __call__(self, features: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """Fourier features ``[N, 3 + 6K]`` and patches ``[N, C P^3]`` (in ``patch_order``) -> float32
        logits ``[N, K]``: the network's forward pass."""
        h = torch.empty((features.shape[0], 2 * self.width), dtype=self.dtype, device=features.device)
        h[:, :self.width] = self._linear(features.to(self.dtype), self.coord, relu=True)
        h[:, self.width:] = self.patch(patches.to(self.dtype), relu=True)
        return self.hidden(h)


def _axis_tables(model: NeumoursINR, shape: tuple[int, int, int], frame: np.ndarray | None,
                 positions: list[torch.Tensor]) -> list[torch.Tensor]:
    """Per-axis coordinate-branch terms ``[n_a, branch_width]`` at voxel ``positions`` (input-grid
    units) along each axis, in the case's ``frame`` (:func:`~rfmweb.models.inr.case_frame`); the
    bias is folded into the first table."""
    k = model.config.n_frequencies
    weight = model.coord_fc.weight                                              # [W, 3 + 6K]
    freqs = math.pi * torch.arange(1, k + 1, device=weight.device, dtype=weight.dtype)
    tables = []
    for axis, pos in enumerate(positions):
        unit = torch.zeros(pos.shape[0], 3, dtype=weight.dtype, device=weight.device)
        unit[:, axis] = pos.to(weight)
        t = to_unit(unit, shape, frame)[:, axis:axis + 1]                       # [n, 1]
        feats = torch.cat([t, torch.sin(freqs * t), torch.cos(freqs * t)], dim=1)  # [n, 1 + 2K]
        tables.append(feats @ weight[:, axis_feature_columns(k, axis)].T)
    tables[0] = tables[0] + model.coord_fc.bias
    return tables


def finer_grid(volume: Volume, resolution_mm: float) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """The grid of voxel size ``resolution_mm`` over the same extent, sharing the first voxel centre.

    Returns:
        ``(shape, affine [4, 4], step [3])`` where ``step`` is the new voxel size in input voxels.
    """
    spacing = np.asarray(volume.spacing)
    step = float(resolution_mm) / spacing
    shape = tuple(int(np.floor((n - 1) / s + 1e-6)) + 1 for n, s in zip(volume.shape, step))
    affine = volume.affine.copy()
    affine[:3, :3] = affine[:3, :3] * step[None, :]
    return shape, affine, step   # type: ignore[return-value]


class PatchRows:
    """A normalised ``[C, x, y, z]`` volume channel-last and zero-padded by ``P // 2``, in the compute
    dtype on the compute device: a patch at an integer voxel is ``P^3`` gathers of ``C`` contiguous
    values, in *offset-major* order ``[P^3 C]``."""

    def __init__(self, norm: np.ndarray, patch_size: int, dtype: torch.dtype, device: torch.device) -> None:
        r = patch_size // 2
        self.dtype, self.device = dtype, device
        self.shape = tuple(int(n) for n in norm.shape[1:])
        self.pshape = tuple(n + 2 * r for n in self.shape)
        padded = torch.zeros((*self.pshape, norm.shape[0]), dtype=dtype, device=device)
        padded[r:self.pshape[0] - r, r:self.pshape[1] - r, r:self.pshape[2] - r] = \
            torch.from_numpy(norm).to(device).permute(1, 2, 3, 0)
        self.rows = padded.view(-1, norm.shape[0])
        self.offsets = patch_flat_offsets((1, *self.pshape), patch_size).to(device)          # [P^3]

    def gather(self, vox: torch.Tensor) -> torch.Tensor:
        """Exact patches ``[n, P^3 C]`` (offset-major) at integer voxels ``vox [n, 3]`` of the unpadded grid."""
        anchor = (vox[:, 0] * self.pshape[1] + vox[:, 1]) * self.pshape[2] + vox[:, 2]   # corner, padded grid
        return self.rows.index_select(0, (anchor[:, None] + self.offsets[None]).reshape(-1)).reshape(vox.shape[0], -1)


class CaseInputs:
    """What segmenting a case on its input grid computes from the images alone, not from the weights:
    the brain's bounding box, the brain mask in it, and the normalised crop as :class:`PatchRows`.

    Made by :func:`case_inputs`; pass it to :func:`segment_volume` to segment the same case again with
    other weights (an interactive correction re-segments after every Apply; on a 1 mm grid the
    preparation is about 0.25 s of a 1.4 s segmentation on one thread).
    """

    def __init__(self, model: NeumoursINR, data: np.ndarray, dtype: torch.dtype, device: torch.device) -> None:
        self.grid_shape = tuple(int(s) for s in data.shape[1:])
        full_mask = brain_mask(data)
        box = _bbox(full_mask)
        if box is None:
            raise InputError("the volume is all zeros: no brain voxel to segment")
        # work on the brain's bounding box: outside it everything is background, and the zero
        # padding of the crop reproduces the zeros around the brain exactly
        norm, self.mask = normalise_modalities(data[(slice(None),) + box], full_mask[box])
        self.box: tuple[slice, slice, slice] = box
        self.frame = case_frame(getattr(model, "info", {}).get("frame"), self.grid_shape, box)
        if self.frame is not None:
            log.info("the case's grid %s is not the one the model was trained on %s: the network's coordinates "
                     "are placed by the brain's bounding box", self.grid_shape, tuple(model.info["frame"]["grid"]))
        self.rows = PatchRows(norm, model.config.patch_size, dtype, device)


def _case_data(model: NeumoursINR, volume: Volume | np.ndarray) -> np.ndarray:
    """The ``[C, X, Y, Z]`` float32 images of ``volume``; InputError when they do not fit the model."""
    data = volume.data if isinstance(volume, Volume) else np.asarray(volume, np.float32)
    if data.ndim != 4 or data.shape[0] != model.config.in_channels:
        raise InputError(f"the model was trained on {model.config.in_channels} modalities (T1n, T1c, T2w, FLAIR "
                         f"for the shipped one), as [C, X, Y, Z]; got shape {data.shape}",
                         getattr(volume, "name", None) or None)
    return data


def case_inputs(model: NeumoursINR, volume: Volume | np.ndarray, *, device: str | torch.device | None = None,
                precision: str = "auto") -> CaseInputs:
    """:class:`CaseInputs` of ``volume`` for :func:`segment_volume` with the same ``device`` and
    ``precision`` (any weights of ``model``'s architecture)."""
    from ..backend import default_device

    device = torch.device(device) if device is not None else default_device()
    dtype = torch.bfloat16 if resolve_precision(precision, device) == "bf16" else torch.float32
    return CaseInputs(model, _case_data(model, volume), dtype, device)


class _GridEvaluator:
    """Logits at chosen points of an output grid (flat C-order indices), in chunks.

    ``norm`` is the (possibly cropped) normalised volume, ``mask`` its brain mask (for
    super-resolution: the input voxels whose patch pre-activations the queries blend),
    ``grid_shape`` the shape of the whole input grid and ``frame`` the case's coordinates on it
    (:func:`~rfmweb.models.inr.case_frame`),
    ``positions`` the input-grid positions of the output grid lines along each axis, ``out_shape``
    the output grid.

    The coordinate branch is ``T_x[i] + T_yz[j, k]`` (two row gathers per point instead of
    387 x 128 multiply-adds). On the input grid (``superres=False``) patches are exact gathers from
    a channel-last zero-padded volume. On a finer grid the patch branch uses linearity: a patch
    sampled trilinearly at ``p`` (offsets +-1 input voxel, zeros outside the grid, as
    :func:`~rfmweb.models.inr.extract_patches`) is the trilinear blend of the patches at the 8
    voxels around ``p``, so its pre-activation is the same blend of the voxels' pre-activations,
    computed once for the brain voxels and their neighbours (8 row gathers per query point instead
    of 27 trilinear samples and a 108 x 128 matmul).
    """

    def __init__(self, model: NeumoursINR, rows: PatchRows, mask: np.ndarray, grid_shape: tuple[int, int, int],
                 frame: np.ndarray | None, out_shape: tuple[int, int, int], positions: list[torch.Tensor],
                 superres: bool, chunk: int) -> None:
        cfg = model.config
        self.cfg, self.superres, self.chunk = cfg, superres, chunk
        self.dtype, self.device, self.rows, self.shape = rows.dtype, rows.device, rows, rows.shape
        self.out_shape, self.positions = out_shape, positions
        self.mlp = InferenceMLP(model, self.dtype)
        if superres:
            vox = torch.from_numpy(np.argwhere(mask)).to(self.device)
            self.patch_pre = torch.cat([self.mlp.patch(rows.gather(vox[s:s + chunk]))
                                        for s in range(0, vox.shape[0], chunk)])            # [Ns, W]
            self.lookup = torch.full((int(np.prod(self.shape)),), -1, dtype=torch.int64, device=self.device)
            flat = (vox[:, 0] * self.shape[1] + vox[:, 1]) * self.shape[2] + vox[:, 2]
            self.lookup[flat] = torch.arange(vox.shape[0], device=self.device)
        t_x, t_y, t_z = _axis_tables(model, grid_shape, frame, positions)
        self.t_x = t_x.to(self.dtype)
        self.t_yz = (t_y[:, None, :] + t_z[None, :, :]).reshape(-1, t_y.shape[1]).to(self.dtype)

    def _blended_patch_pre(self, pts: torch.Tensor) -> torch.Tensor:
        """Patch-branch pre-activation ``[n, W]`` at continuous voxel positions ``pts [n, 3]``."""
        n = pts.shape[0]
        size = torch.tensor(self.shape, device=pts.device)
        base = torch.minimum(pts.floor().long(), (size - 2).clamp(min=0))
        frac = (pts - base).to(self.dtype)                                              # [n, 3]
        corners = torch.tensor(list(np.ndindex(2, 2, 2)), device=pts.device)            # [8, 3]
        c = torch.minimum(base[:, None, :] + corners[None], size - 1)                   # [n, 8, 3]
        bits = corners[None].to(self.dtype)
        w = (bits * frac[:, None, :] + (1 - bits) * (1 - frac[:, None, :])).prod(dim=2)  # [n, 8]
        row = self.lookup[(c[..., 0] * self.shape[1] + c[..., 1]) * self.shape[2] + c[..., 2]]
        if bool((row[w > 0] < 0).any()):
            raise RuntimeError("super-resolution query outside the brain support (bug)")
        # one gather of the 8 corner rows, one batched [1 x 8] @ [8 x W] blend
        corner_pre = self.patch_pre.index_select(0, row.clamp(min=0).reshape(-1)).view(n, 8, -1)
        return torch.bmm(w[:, None, :], corner_pre)[:, 0]

    def __call__(self, flat: np.ndarray):
        """Yield ``(slice into flat, float32 logits [n, K])`` chunk by chunk."""
        _, ny, nz = self.out_shape
        flat_t = torch.from_numpy(np.ascontiguousarray(flat)).to(self.device)
        for start in range(0, flat_t.numel(), self.chunk):
            idx = flat_t[start:start + self.chunk]
            i, jk = idx // (ny * nz), idx % (ny * nz)
            j, k = jk // nz, jk % nz
            h = torch.empty((idx.numel(), 2 * self.cfg.branch_width), dtype=self.dtype, device=self.device)
            coord, patch = h[:, :self.cfg.branch_width], h[:, self.cfg.branch_width:]
            torch.add(self.t_x.index_select(0, i), self.t_yz.index_select(0, jk), out=coord).relu_()
            if self.superres:
                pos = self.positions
                pts = torch.stack([pos[0][i], pos[1][j], pos[2][k]], dim=1)
                patch.copy_(self._blended_patch_pre(pts)).relu_()
            else:
                patch.copy_(self.mlp.patch(self.rows.gather(torch.stack([i, j, k], dim=1)), relu=True))
            yield slice(start, start + idx.numel()), self.mlp.hidden(h)


#: Above this many brain voxels :func:`segment_volume` refines a coarse pass (``coarse_to_fine=None``).
COARSE_TO_FINE_MIN_POINTS = 500_000


@torch.inference_mode()
def segment_volume(model: NeumoursINR, volume: Volume | np.ndarray, *, resolution_mm: float | None = None,
                   return_probs: bool = False, device: str | torch.device | None = None,
                   precision: str = "auto", chunk: int | None = None, coarse_to_fine: bool | None = None,
                   refine_below: float = 0.9, inputs: CaseInputs | None = None):
    """Segment a case with a Neumours model.

    Dense mode evaluates every brain voxel. Coarse-to-fine mode evaluates the brain voxels of the
    stride-2 lattice first, then every brain voxel within two voxels of a lattice point whose
    background probability is below ``refine_below``; the other brain voxels -- far from anything
    tumour-like -- are background without evaluation. It differs from dense only where a tumour
    island falls between lattice points without raising any of their tumour probabilities (an
    object under about 2 voxels across: what :func:`~rfmweb.inr.denoise.denoise_labels` removes);
    on our 1 mm validation cases it evaluates about a quarter of the points (see the benchmark).

    Args:
        model: a trained :class:`~rfmweb.models.inr.NeumoursINR` (moved to ``device``, eval mode).
        volume: a 4-channel MR :class:`~rfmweb.volume.Volume` (T1n, T1c, T2w, FLAIR; 0 outside the
            brain), or its ``[4, X, Y, Z]`` array.
        resolution_mm: output voxel size; ``None`` (or the input spacing) -> the input grid, finer ->
            super-resolution on :func:`finer_grid` (needs a :class:`Volume`). Coarse-to-fine there
            means: the input grid first, then only queries within two input voxels of a tumour label.
        return_probs: also return the softmax probabilities (always dense).
        device: where to run (default :func:`rfmweb.backend.default_device`).
        precision: ``"auto"`` (bf16 where fast, see :func:`resolve_precision`), ``"fp32"`` or ``"bf16"``.
        chunk: points per forward pass (default :func:`default_chunk`).
        coarse_to_fine: ``True``/``False`` to force a mode; ``None``: coarse-to-fine for
            super-resolution, and on the input grid when the brain has more than
            :data:`COARSE_TO_FINE_MIN_POINTS` voxels; never with ``return_probs``.
        refine_below: background probability below which a lattice point's neighbourhood is refined.
        inputs: :func:`case_inputs` of this volume for this device and precision (computed when
            ``None``), to segment a case repeatedly without preparing its images each time.

    Returns:
        ``labels [X, Y, Z]`` uint8 (0 background, 1 NCR, 2 ED, 3 ET), or ``(labels, probs)`` with
        ``probs [4, X, Y, Z]`` float32 (outside the brain: background = 1).
    """
    from ..backend import default_device

    data = _case_data(model, volume)
    if resolution_mm is not None and not isinstance(volume, Volume):
        raise InputError("resolution_mm needs a Volume (with its spacing), not a bare array")
    device = torch.device(device) if device is not None else default_device()
    precision = resolve_precision(precision, device)
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    chunk = int(chunk or default_chunk(device))
    model = model.to(device).eval()
    note = spacing_note(getattr(model, "info", {}).get("frame"), volume.spacing) \
        if isinstance(volume, Volume) and inputs is None else None
    if note is not None:
        log.warning(note)
    t0 = time.perf_counter()
    grid_shape = tuple(int(s) for s in data.shape[1:])
    superres = resolution_mm is not None and not np.allclose(volume.spacing, float(resolution_mm), rtol=0, atol=1e-6)
    n_classes = model.config.n_classes
    if superres:
        norm, mask = normalise_modalities(data)
        out_shape, _, step = finer_grid(volume, float(resolution_mm))
        box = tuple(slice(0, n) for n in out_shape)
        axes = [np.arange(n) * s for n, s in zip(out_shape, step)]
        positions = [torch.as_tensor(a, dtype=torch.float32, device=device) for a in axes]
        if coarse_to_fine is None:
            coarse_to_fine = not return_probs
        if coarse_to_fine and not return_probs:
            # segment the input grid first, then super-resolve only within two input voxels of what
            # it found; every other query is background
            found = segment_volume(model, volume, device=device, precision=precision, chunk=chunk,
                                   refine_below=refine_below, inputs=inputs)
            flag = _dilate(_dilate(found > 0))
            nearest = [np.minimum(np.rint(a).astype(np.int64), n - 1) for a, n in zip(axes, grid_shape)]
            query = np.argwhere(flag[np.ix_(*nearest)])
            support = _dilate(flag)                 # the corners of those queries
        else:
            query = np.argwhere(np.ones(out_shape, bool))
            support = _dilate(mask)                 # the corners of every query inside the brain
        # brain on the query grid: the trilinearly interpolated input mask >= 0.5
        inside = ndimage.map_coordinates(mask.astype(np.float32), (query * step).T, order=1, mode="constant") >= 0.5
        sub_mask = np.zeros(out_shape, bool)
        sub_mask[tuple(query[inside].T)] = True
        frame = case_frame(getattr(model, "info", {}).get("frame"), grid_shape, _bbox(mask))
        mask = support
        rows = PatchRows(norm, model.config.patch_size, dtype, device)
    else:
        out_shape = grid_shape
        if inputs is None:
            inputs = CaseInputs(model, data, dtype, device)
        elif (inputs.grid_shape, inputs.rows.dtype, inputs.rows.device.type) != (grid_shape, dtype, device.type):
            raise ValueError(f"inputs were prepared for a {inputs.grid_shape} grid in {inputs.rows.dtype} on "
                             f"{inputs.rows.device}, not {grid_shape} in {dtype} on {device}")
        box, sub_mask, rows, frame = inputs.box, inputs.mask, inputs.rows, inputs.frame
        positions = [torch.arange(b.start, b.stop, dtype=torch.float32, device=device) for b in box]
    sub_shape = tuple(b.stop - b.start for b in box)
    evaluate = _GridEvaluator(model, rows, mask if superres else sub_mask, grid_shape, frame, sub_shape, positions,
                              superres, chunk)
    sub_labels = np.zeros(int(np.prod(sub_shape)), np.uint8)
    sub_probs = None
    n_brain = int(sub_mask.sum())
    if coarse_to_fine is None:
        coarse_to_fine = n_brain > COARSE_TO_FINE_MIN_POINTS and not return_probs
    if coarse_to_fine and not superres and not return_probs:
        lattice = np.zeros(sub_shape, bool)
        lattice[tuple(slice(b.start % 2, None, 2) for b in box)] = True      # even indices of the full grid
        coarse = np.flatnonzero(sub_mask & lattice)
        background = np.ones(sub_labels.size, np.float32)
        for sel, logits in evaluate(coarse):
            sub_labels[coarse[sel]] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
            background[coarse[sel]] = torch.softmax(logits, dim=1)[:, 0].cpu().numpy()
        lat = tuple(slice(b.start % 2, None, 2) for b in box)
        flag = _dilate(background.reshape(sub_shape)[lat] < refine_below)
        near = np.zeros(sub_shape, bool)
        for offset in np.ndindex(2, 2, 2):                 # each lattice cell covers its 2 x 2 x 2 block
            target = tuple(slice(lt.start + o, None, 2) for lt, o in zip(lat, offset))
            view = near[target]
            view |= flag[tuple(slice(0, n) for n in view.shape)]
        near = _dilate(near)        # and the voxels just below the first lattice point of each axis
        fine = np.flatnonzero(near & sub_mask & ~lattice)
        for sel, logits in evaluate(fine):
            sub_labels[fine[sel]] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
        evaluated = coarse.size + fine.size
    else:
        flat = np.flatnonzero(sub_mask)
        if return_probs:
            sub_probs = np.zeros((n_classes, sub_labels.size), np.float32)
            sub_probs[0] = 1.0
        for sel, logits in evaluate(flat):
            sub_labels[flat[sel]] = logits.argmax(dim=1).to(torch.uint8).cpu().numpy()
            if sub_probs is not None:
                sub_probs[:, flat[sel]] = torch.softmax(logits, dim=1).T.cpu().numpy()
        evaluated = flat.size
    labels = np.zeros(out_shape, np.uint8)
    labels[box] = sub_labels.reshape(sub_shape)
    probs = None
    if return_probs:
        probs = np.zeros((n_classes, *out_shape), np.float32)
        probs[0] = 1.0
        probs[(slice(None),) + box] = sub_probs.reshape((n_classes, *sub_shape))
    log.debug("segmented a %s grid: %d of %d brain points evaluated in %.2f s (%s, %s%s)", out_shape, evaluated,
              n_brain, time.perf_counter() - t0, device, precision, ", coarse-to-fine" if evaluated < n_brain else "")
    if return_probs:
        return labels, probs
    return labels


def _dilate(mask: np.ndarray) -> np.ndarray:
    """Binary dilation by the 3 x 3 x 3 cube, as three separable 1-D passes (10x faster than
    ``scipy.ndimage.binary_dilation`` here)."""
    out = mask.copy()
    for axis in range(mask.ndim):
        src = out.copy()
        lo = [slice(None)] * mask.ndim
        hi = [slice(None)] * mask.ndim
        lo[axis], hi[axis] = slice(0, -1), slice(1, None)
        out[tuple(lo)] |= src[tuple(hi)]
        out[tuple(hi)] |= src[tuple(lo)]
    return out


def segment_case(case: str | os.PathLike | Volume, out: str | os.PathLike, *, checkpoint: str | os.PathLike | None = None,
                 denoise: bool = False, resolution_mm: float | None = None, device: str | torch.device | None = None,
                 precision: str = "auto") -> tuple[Path, np.ndarray, dict]:
    """Segment a BraTS case folder (or ``sample:NAME``, or a Volume) and write the labels.

    The label map is written atomically on the case grid (or the finer grid for a ``resolution_mm``
    below the input spacing), with the BraTS values 0..3, in the format ``out``'s suffix names
    (:func:`rfmweb.io.save_segmentation`: NIfTI, NRRD/MHA, or a DICOM SEG, on the case grid only).

    Returns:
        ``(out path, labels, timings {"load_s", "segment_s", "denoise_s"})``.
    """
    from ..io import BRATS_CLASSES, itk_image, nifti, save_segmentation
    from ..io.label_table import write_label_table
    from ..io.atomic import check_output
    from ..io.brats import case_files
    from ..io.resolve import open_volume
    from .checkpoint import load_model
    from .denoise import denoise_labels

    out = Path(out)
    grids = nifti.NIFTI_SUFFIXES + itk_image.ITK_WRITE_SUFFIXES      # formats that store their own grid
    if not out.name.lower().endswith(grids + (".dcm",)):
        raise InputError(f"output must end in {', '.join(grids)} or .dcm (DICOM SEG)", out)
    if resolution_mm is not None and not 0.1 <= float(resolution_mm) <= 10.0:
        raise InputError(f"--resolution must lie in 0.1..10 mm, got {resolution_mm}")
    if resolution_mm is not None and not out.name.lower().endswith(grids):
        raise InputError("--resolution: a DICOM SEG lies on the slices of the images it references; drop "
                         "--resolution or write .nii.gz", out)
    check_output(out)
    if not isinstance(case, Volume):
        inputs = case_files(case) if Path(case).is_dir() else [Path(case)]
        if out.resolve() in {p.resolve() for p in inputs}:
            raise InputError("is one of the case's own images; write the segmentation to another file", out)
    t0 = time.perf_counter()
    model = load_model(checkpoint, device="cpu")
    volume = case if isinstance(case, Volume) else open_volume(case, case_seg=False)   # no ground truth needed
    if volume.modality != "MR" or volume.data.shape[0] != 4:
        raise InputError(f"needs a 4-modality MR case (T1n, T1c, T2w, FLAIR), got {volume.modality} with "
                         f"channels {volume.channels}", None if isinstance(case, Volume) else case)
    if resolution_mm is not None and float(resolution_mm) > min(volume.spacing) + 1e-6:
        raise InputError(f"--resolution {resolution_mm} mm is coarser than the input spacing "
                         f"{tuple(round(s, 3) for s in volume.spacing)}; only equal or finer grids are supported")
    t1 = time.perf_counter()
    with about(None if isinstance(case, Volume) else case):
        labels = segment_volume(model, volume, resolution_mm=resolution_mm, device=device, precision=precision)
    t2 = time.perf_counter()
    affine = volume.affine
    spacing = volume.spacing
    if resolution_mm is not None and labels.shape != volume.shape:
        _, affine, _ = finer_grid(volume, float(resolution_mm))
        spacing = (float(resolution_mm),) * 3
    if denoise:
        labels = denoise_labels(labels, spacing=spacing)
    t3 = time.perf_counter()
    if labels.shape == volume.shape:
        save_segmentation(labels, volume, out, classes=BRATS_CLASSES, algorithm="Neumours INR")
    else:   # the finer grid of resolution_mm (RAS+ voxel order), with the classes' table beside it
        writer = nifti if out.name.lower().endswith(nifti.NIFTI_SUFFIXES) else itk_image
        writer.save_array(out, labels.astype(np.uint8), affine)
        write_label_table(out, tuple(c for c in BRATS_CLASSES if c.index != 0))
    timings = {"load_s": t1 - t0, "segment_s": t2 - t1, "denoise_s": t3 - t2}
    log.info("wrote %s: %s labels, %d tumour voxels (segment %.2f s%s)", out, labels.shape, int((labels > 0).sum()),
             timings["segment_s"], f", denoise {timings['denoise_s']:.3f} s" if denoise else "")
    return out, labels, timings


class LabelCache:
    """Label volumes computed once per (volume, options): the viewer's segmentation layer.

    Keyed by the :class:`~rfmweb.volume.Volume` object (weakly: a volume that is dropped frees
    its labels) and by ``(denoise, resolution_mm)``. After changing the model's weights (e.g.
    fine-tuning from a user's correction) call :meth:`invalidate`.

    Example:
        >>> cache = LabelCache(load_model())                              # doctest: +SKIP
        >>> labels = cache.labels(volume, denoise=True)   # computed       # doctest: +SKIP
        >>> labels is cache.labels(volume, denoise=True)  # cached         # doctest: +SKIP
        True
    """

    def __init__(self, model: NeumoursINR, device: str | torch.device | None = None, precision: str = "auto") -> None:
        import weakref

        self.model, self.device, self.precision = model, device, precision
        self._store: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def labels(self, volume: Volume, *, denoise: bool = False, resolution_mm: float | None = None) -> np.ndarray:
        """``[X, Y, Z]`` uint8 labels (read-only), from the cache or computed now."""
        from .denoise import denoise_labels

        entry = self._store.setdefault(volume, {})
        key = (bool(denoise), None if resolution_mm is None else float(resolution_mm))
        if key not in entry:
            raw_key = (False, key[1])
            if raw_key not in entry:
                raw = segment_volume(self.model, volume, resolution_mm=resolution_mm, device=self.device,
                                     precision=self.precision)
                raw.setflags(write=False)
                entry[raw_key] = raw
            if denoise:
                spacing = volume.spacing if resolution_mm is None else (float(resolution_mm),) * 3
                clean = denoise_labels(entry[raw_key], spacing=spacing)
                clean.setflags(write=False)
                entry[key] = clean
        return entry[key]

    def invalidate(self, volume: Volume | None = None) -> None:
        """Forget the labels of ``volume`` (or of every volume)."""
        if volume is None:
            self._store.clear()
        else:
            self._store.pop(volume, None)
