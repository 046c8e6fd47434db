r"""Interactive correction of a Neumours segmentation: user marks -> a few gradient steps -> new labels.

The paper's future work ("correction in the viewer"). A user marks voxels as tumour (NCR / ED / ET)
or not tumour, either with brush strokes on a slice view (:meth:`Corrector.mark_stroke`) or by
clicking the 3-D view (:meth:`Corrector.mark_ray`); :meth:`Corrector.apply` then takes a few
gradient steps on a *copy* of the INR and re-segments the case with :func:`segment_volume`.

Losses of one step (Adam, learning rate :data:`LEARNING_RATE` decayed linearly to 0 over the
planned steps, gradient norm clipped to 1, bf16 autocast where
:func:`~rfmweb.inr.infer.resolve_precision` picks bf16):

- **voxel marks** (strokes and explicit voxels): cross-entropy of the INR logits at the marked voxel
  centres against the marked class (up to :data:`MARK_POINTS` marks a step, drawn at random);
- **replay** (function-space anchoring): :data:`REPLAY_WEIGHT` times the mean squared difference
  between the logits now and before the apply, at :data:`REPLAY_POINTS` voxels a step from a pool
  of :data:`REPLAY_POOL` brain voxels at least :data:`REPLAY_EXCLUSION` voxels (Chebyshev) from
  every mark -- a third inside the current tumour, a third in the box around it, a third anywhere in
  the brain (logits: a cross-entropy on the current labels has no gradient at a confident voxel
  until it has flipped; with it a mark's look-alikes drifted, marked-region Dice 0.985 -> 0.89 on
  a cohort case, 0.98 with logits). Every :data:`MINE_EVERY` steps the pool is re-classified;
  voxels whose class changed join every later batch;
- **ray marks** (3-D clicks, :mod:`rfmweb.inr.ray_marks`): the INR's soft tumour field is rendered
  along the clicked ray with the differentiable ray-marcher (:func:`rfmweb.render.raymarch.march`)
  over a window of :math:`2\,`:data:`~rfmweb.inr.ray_marks.RAY_WINDOW` voxels on the clicked ray moved
  sideways (under a voxel) through the hit voxel's centre and four parallel rays half a voxel beside
  it. A not-tumour mark's window is centred on the hit voxel; a tumour mark's starts at the hit
  voxel's front face (what the click sees from the surface on: with a centred window the loss was
  met by growing tumour of the marked class in front of the clicked surface, which stayed as it was
  underneath). The field (:class:`~rfmweb.inr.ray_marks.SoftTumourField`) has extinction
  :math:`\sigma = \mathrm{softplus}(z) / (2 w s)` (``z`` the INR's tumour log-odds, ``w s`` the
  window half-width in mm) and colour :math:`(p_{NCR}, p_{ED}, p_{ET}) / p_{tumour}`, so the window's
  rendered opacity :math:`O` says "tumour here" and its colour over opacity gives the class mix. A
  tumour mark of class ``c`` minimises :math:`-\log O - \log(C_c / O)`, a not-tumour mark
  :math:`-\log(1 - O)`, weighted by :data:`RAY_WEIGHT`: gradients reach the INR weights only through
  the rendered ray.

``apply(steps=None)`` stops once every voxel mark is predicted with a logit margin of
:data:`MARK_MARGIN`, every ray objective is met (``O > 0.9`` and class share > 0.5, or
``O < 0.02``) and the last drift check found none, after at least :data:`MIN_STEPS` and at most
:data:`MAX_STEPS` steps (the learning rate decays over :data:`MAX_STEPS`). How much of the
correction happens never depends on the machine's speed: a slow CPU takes longer and reports its
progress (``on_progress``), it does not stop early. Every random draw is seeded from the marks, so
the same marks on the same weights give the same update. Re-segmentation is the full
:func:`segment_volume` of the new weights (a weight update changes the logits everywhere, so no
region can be skipped without evaluating it), on the case's images prepared once per corrector
(:func:`~rfmweb.inr.infer.case_inputs`); measured in ``benchmarks/bench_correct.py``. Its labels
are taken within :data:`REACH_MM` of a mark; farther away the labels stay as they were (the count
of changes left out is in the result). One stroke on one slice changed labels up to 111 mm away, on
slices the user had not looked at; the whole-tumour Dice as applied was equal or better than with
every change in each case measured (``benchmarks/bench_correct_reach.py``).

Example:
    >>> corr = Corrector(load_model(), volume)                         # doctest: +SKIP
    >>> corr.mark_stroke("axial", 40, np.array([[30.0, 50.0], [42.0, 55.0]]), label=0)  # doctest: +SKIP
    >>> result = corr.apply()                                           # doctest: +SKIP
    >>> corr.undo()                            # the labels before        # doctest: +SKIP
"""

from __future__ import annotations

import copy
import logging
import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from ..camera import OrbitCamera
from ..errors import InputError
from ..models.inr import (NeumoursINR, fourier_features, gather_patches, normalise_modalities,
                          pad_volume, patch_flat_offsets, to_unit)
from ..render.slices import AXES
from ..volume import Volume
from .denoise import denoise_labels
from .infer import InferenceMLP, case_inputs, resolve_precision, segment_volume
from .ray_marks import RAY_WINDOW, RayMark, SoftTumourField, pencils, ray_loss, window_voxels

if TYPE_CHECKING:
    from ..render.scene import Scene

log = logging.getLogger(__name__)

LEARNING_RATE = 3e-4                      #: Adam's initial learning rate
MIN_STEPS, MAX_STEPS = 3, 40              #: step limits of ``apply(steps=None)``
MARK_POINTS, REPLAY_POINTS = 1024, 1024   #: voxel marks and replay voxels per step
REPLAY_POOL, MINE_EVERY = 8192, 3         #: replay pool per apply; drift checked every so many steps
REPLAY_EXCLUSION = 2                      #: replay voxels stay this far (voxels, Chebyshev) from marks
MARK_MARGIN = 1.0                         #: logit margin (target - best other) of a learnt voxel mark
REPLAY_WEIGHT = 0.1                       #: weight of the replay's mean squared logit change
RAY_WEIGHT = 5.0                          #: weight of the mean ray-mark loss (a click: a surface patch)
REACH_MM = 10.0                           #: a correction changes labels this near its marks (mm)
HISTORY = 16                              #: undo depth (weights ~1 MB + labels per level)
#: a step's batch is padded to a multiple of this many rows: oneDNN builds its kernels per batch shape
#: (15-25 ms the first time a shape is met, measured), so the Corrector builds the few padded shapes once
BATCH_ROWS = 256

#: ``(steps taken, most steps) -> None``, called after each gradient step of :meth:`Corrector.apply`.
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class CorrectionResult:
    """What :meth:`Corrector.apply` did.

    Attributes:
        labels: ``[X, Y, Z]`` uint8 raw labels after the update (read-only), on the volume's grid.
        changed: voxels whose label changed.
        steps: gradient steps taken.
        seconds: wall time of ``apply()`` (update + re-segmentation).
        update_seconds: the gradient steps' share of ``seconds``.
        segment_seconds: the re-segmentation's share of ``seconds``.
        left_out: voxels the updated model labels differently farther than :data:`REACH_MM` from
            every mark, left as they were.
    """

    labels: np.ndarray
    changed: int
    steps: int
    seconds: float
    update_seconds: float = 0.0
    segment_seconds: float = 0.0
    left_out: int = 0


def _index(value, n: int, what: str) -> int:
    """``value`` as an int in ``0..n-1``, else :class:`InputError` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= int(value) < n:
        raise InputError(f"{what} must be an integer in 0..{n - 1}, got {value!r}")
    return int(value)


class Corrector:
    """Correct a Neumours segmentation from user marks (see the module docstring for the method).

    Args:
        model: the INR; a deep copy is corrected (the caller's weights never change).
        volume: the 4-modality MR case (T1n, T1c, T2w, FLAIR), ``[4, X, Y, Z]``.
        labels: the current raw labels ``[X, Y, Z]`` if already computed (else
            :func:`segment_volume` computes them).
        device: where to run (default :func:`rfmweb.backend.default_device`).

    Attributes:
        model: the corrected copy.
        volume: the case.
    """

    def __init__(self, model: NeumoursINR, volume: Volume, *, labels: np.ndarray | None = None,
                 device: str | torch.device | None = None) -> None:
        from ..backend import default_device

        if not isinstance(volume, Volume):
            raise InputError(f"Corrector needs a Volume, got {type(volume).__name__}")
        if volume.data.shape[0] != model.config.in_channels:
            raise InputError(f"needs a {model.config.in_channels}-modality MR case (T1n, T1c, T2w, FLAIR), got "
                             f"channels {volume.channels}", volume.name or None)
        if labels is not None and np.shape(labels) != volume.shape:
            raise InputError(f"labels must have the volume's shape {volume.shape}, got {np.shape(labels)}",
                             volume.name or None)
        self.device = torch.device(device) if device is not None else default_device()
        self.volume = volume
        self.model = copy.deepcopy(model).to(self.device).eval()
        self._autocast = resolve_precision("auto", self.device) == "bf16"
        norm, mask = normalise_modalities(volume.data)
        patch = model.config.patch_size
        self._padded = pad_volume(torch.from_numpy(norm).to(self.device), patch)         # [C, X', Y', Z']
        del norm
        self._offsets = patch_flat_offsets(tuple(self._padded.shape), patch).to(self.device)
        self._mask = mask
        self._mask_t = torch.from_numpy(mask).to(self.device)
        self._brain = np.flatnonzero(mask)
        self._case = case_inputs(self.model, volume, device=self.device)    # for every re-segmentation
        if labels is None:
            labels = segment_volume(self.model, volume, device=self.device, inputs=self._case)
        else:
            labels = np.asarray(labels).astype(np.uint8, copy=True)
        labels.setflags(write=False)
        self._labels = labels
        self._denoised: np.ndarray | None = None
        self.clear_marks()
        self._history: list[tuple] = []      # (weights, labels, mark index, mark labels, rays) before an apply
        self._renderer = None
        # built here, not in apply(): a process's first torch.optim optimizer imports torch._dynamo
        # (2-4.5 s measured on this CPU), which must not land inside a correction's 2 s
        self._opt = torch.optim.Adam(self.model.parameters(), lr=LEARNING_RATE, foreach=False)
        if self.device.type == "cpu":
            self._warm_up()

    def _warm_up(self) -> None:
        """Run a forward and backward pass of every padded step batch (:data:`BATCH_ROWS`) and a drift
        check's forward pass once, so no apply builds kernels (0.2-0.3 s of a first apply, measured).
        Gradients are discarded; the weights do not change."""
        inputs = self._inputs(self._brain[:1])
        for n in range(4 * BATCH_ROWS, MARK_POINTS + 2 * REPLAY_POINTS + 1, BATCH_ROWS):
            one = torch.zeros(n, dtype=torch.long, device=self.device)
            self._logits(inputs[0][one], inputs[1][one]).sum().backward()
        self.model.zero_grad(set_to_none=True)
        one = torch.zeros(REPLAY_POOL, dtype=torch.long, device=self.device)
        self._predict((inputs[0][one], inputs[1][one]))

    # -- state ------------------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """Current raw labels ``[X, Y, Z]`` uint8 (read-only)."""
        return self._labels

    def denoised(self) -> np.ndarray:
        """:func:`denoise_labels` of :attr:`labels` (read-only), cached until the next apply/undo."""
        if self._denoised is None:
            self._denoised = denoise_labels(self._labels, spacing=self.volume.spacing)
            self._denoised.setflags(write=False)
        return self._denoised

    @property
    def n_marks(self) -> int:
        """Pending marks: marked voxels (each counted once) plus 3-D ray marks."""
        return int(self._mark_index.size) + len(self._rays)

    @property
    def pending_voxels(self) -> tuple[np.ndarray, np.ndarray]:
        """The pending voxel marks: ``(ijk [M, 3] int64, labels [M] uint8)`` (e.g. to draw them)."""
        return np.stack(np.unravel_index(self._mark_index, self.volume.shape), axis=1), self._mark_label.copy()

    @property
    def pending_rays(self) -> tuple[RayMark, ...]:
        """The pending 3-D ray marks."""
        return tuple(self._rays)

    @property
    def can_undo(self) -> bool:
        """Whether :meth:`undo` has an apply to revert."""
        return bool(self._history)

    def clear_marks(self) -> None:
        """Forget every pending mark."""
        self._mark_index = np.zeros(0, np.int64)     # flat voxel indices, unique
        self._mark_label = np.zeros(0, np.uint8)
        self._rays: list[RayMark] = []

    # -- marking ----------------------------------------------------------------------------------
    def _check_label(self, label) -> int:
        return _index(label, self.model.config.n_classes, "mark label (0 = not tumour, 1 NCR, 2 ED, 3 ET)")

    def mark_voxels(self, voxels: np.ndarray, label: int) -> int:
        """Mark voxels as one class.

        Args:
            voxels: ``[M, 3]`` integer voxel indices ``ijk`` on the volume grid; voxels outside the grid
                or outside the brain mask (background by construction) are dropped.
            label: 0 = not tumour, 1 / 2 / 3 = NCR / ED / ET. A voxel marked again takes the last label.

        Returns:
            The number of (distinct) voxels marked.
        """
        label = self._check_label(label)
        vox = np.asarray(voxels)
        if vox.ndim != 2 or vox.shape[1] != 3:
            raise InputError(f"voxels must be an [M, 3] array of voxel indices, got shape {vox.shape}")
        if not (np.issubdtype(vox.dtype, np.integer) or (np.issubdtype(vox.dtype, np.floating)
                                                           and np.array_equal(vox, np.rint(vox)))):
            raise InputError(f"voxels must be integer voxel indices, got {vox.dtype} values")
        vox = vox.astype(np.int64)
        vox = vox[((vox >= 0) & (vox < np.array(self.volume.shape))).all(1)]
        flat = np.unique(np.ravel_multi_index(vox.T, self.volume.shape)) if vox.size else np.zeros(0, np.int64)
        flat = flat[self._mask.reshape(-1)[flat]]
        keep = ~np.isin(self._mark_index, flat)
        self._mark_index = np.concatenate([self._mark_index[keep], flat])
        self._mark_label = np.concatenate([self._mark_label[keep], np.full(flat.size, label, np.uint8)])
        return int(flat.size)

    def mark_stroke(self, axis: str, index: int, points: np.ndarray, label: int, radius: float = 2.0) -> int:
        """Mark a brush stroke drawn on a slice view.

        Every voxel of the slice whose centre lies within ``radius`` of the polyline through
        ``points`` is marked (the exact distance to each segment: the stroke is marked without gaps
        however far apart its points are). Distances are in mm (the slice's voxel sides), so the
        brush is round on a slice whose voxels are not square: it reaches fewer voxels along the
        coarser axis.

        Args:
            axis: ``"axial"``, ``"coronal"`` or ``"sagittal"`` (:data:`rfmweb.render.slices.AXES`).
            index: slice index along that axis.
            points: ``[M, 2]`` float voxel coordinates in the plane, in the order (first remaining
                axis, second remaining axis) of the volume array (axial: ``(i, j)``, coronal:
                ``(i, k)``, sagittal: ``(j, k)``); integers are voxel centres.
            label: 0 = not tumour, 1 / 2 / 3 = NCR / ED / ET.
            radius: brush radius, in voxels of the finer in-plane axis (> 0).

        Returns:
            The number of voxels marked (inside the grid and the brain).
        """
        label = self._check_label(label)
        if axis not in AXES:
            raise InputError(f"stroke axis must be one of {tuple(AXES)}, got {axis!r}")
        normal = AXES[axis]
        a, b = (ax for ax in range(3) if ax != normal)
        index = _index(index, self.volume.shape[normal], f"{axis} slice index")
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] < 1:
            raise InputError(f"stroke points must be an [M, 2] array with M >= 1, got shape {pts.shape}")
        if not np.isfinite(pts).all():
            raise InputError(f"stroke points must be finite numbers, got {pts[~np.isfinite(pts).all(1)][0].tolist()}")
        if not (math.isfinite(radius) and radius > 0):
            raise InputError(f"stroke radius must be > 0 voxels, got {radius}")
        sides = np.array([self.volume.spacing[a], self.volume.spacing[b]])
        scale = sides / sides.min()                             # [2] finer-axis voxels per voxel step
        lo = np.maximum(np.floor(pts.min(0) - radius / scale), 0).astype(int)
        hi = np.minimum(np.ceil(pts.max(0) + radius / scale),
                        [self.volume.shape[a] - 1, self.volume.shape[b] - 1]).astype(int)
        if (hi < lo).any():
            return 0
        u, v = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
        grid = np.stack([u.ravel(), v.ravel()], axis=1)                              # [K, 2] voxels
        centres, pts = grid * scale, pts * scale                 # distances in finer-axis voxels (mm)
        start, end = (pts[:-1], pts[1:]) if len(pts) > 1 else (pts, pts)
        d2 = np.full(len(centres), np.inf)
        for p, q in zip(start, end):                                                # distance to each segment
            seg = q - p
            t = np.clip((centres - p) @ seg / max(float(seg @ seg), 1e-12), 0.0, 1.0)
            d2 = np.minimum(d2, ((centres - p - t[:, None] * seg) ** 2).sum(1))
        hit = grid[d2 <= radius * radius + 1e-9]
        vox = np.empty((len(hit), 3), np.int64)
        vox[:, a], vox[:, b], vox[:, normal] = hit[:, 0], hit[:, 1], index
        return self.mark_voxels(vox, label)

    def mark_ray(self, scene: "Scene", camera: OrbitCamera, x: float, y: float, label: int) -> np.ndarray | None:
        """Mark what a click on the 3-D view hits.

        The pixel ray through image position ``(x, y)`` of ``camera`` (continuous pixel units, right
        and down; the centre of pixel ``(u, v)`` is ``(u + 0.5, v + 0.5)``) is marched through
        ``scene`` exactly as the ``raymarch`` renderer draws it (:data:`~rfmweb.render.scene.FULL`
        quality); the hit is the ray-marcher's depth, where the accumulated opacity first reaches 0.5.

        Args:
            scene: the rendered scene; its volume must lie on this case's grid.
            camera: the 3-D view's camera.
            x, y: click position in pixels.
            label: 0 = not tumour, 1 / 2 / 3 = NCR / ED / ET.

        Returns:
            The hit voxel ``ijk`` ``[3]`` int64 (and a ray mark is added), or ``None`` when the ray
            reaches no opacity 0.5 (nothing is marked).
        """
        from ..render.dvr import RaymarchRenderer
        from ..render.pick import pick

        label = self._check_label(label)
        vol = scene.volume
        if vol is None or vol.shape != self.volume.shape or not np.allclose(vol.affine, self.volume.affine, atol=1e-4):
            raise InputError("the scene's volume must lie on the corrected case's grid "
                             f"{self.volume.shape} (same affine)", self.volume.name or None)
        if self._renderer is None:
            self._renderer = RaymarchRenderer(self.device)
        hit = pick(scene, camera, float(x), float(y), self._renderer)
        if hit is None:
            return None
        origin, direction, depth = hit.origin, hit.direction, hit.depth
        ijk = np.linalg.solve(self.volume.affine, np.append(hit.point, 1.0))[:3]
        voxel = np.clip(np.rint(ijk), 0, np.array(self.volume.shape) - 1).astype(np.int64)
        self._rays.append(RayMark(origin, direction, depth, label, voxel))
        return voxel.copy()

    # -- correcting -------------------------------------------------------------------------------
    def _inputs(self, flat: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Model inputs at flat voxel indices: ``(Fourier features [N, 3 + 6K], patches [N, C P^3])``,
        in bf16 where the steps run under bf16 autocast (the cast it would make at every step, made once:
        the same numbers), else float32 (the features are computed once per apply, not per step)."""
        vox = torch.from_numpy(np.stack(np.unravel_index(flat, self.volume.shape), axis=1)).to(self.device)
        coords = to_unit(vox.float(), self.volume.shape, self._case.frame)
        dtype = torch.bfloat16 if self._autocast else torch.float32
        return (fourier_features(coords, self.model.config.n_frequencies).to(dtype),
                gather_patches(self._padded, vox, self.model.config.patch_size, self._offsets).to(dtype))

    def _logits(self, feats: torch.Tensor, patches: torch.Tensor) -> torch.Tensor:
        """:meth:`NeumoursINR.forward` from precomputed Fourier features: float32 logits ``[N, K]``."""
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
            return self.model.decode(self.model.coord_fc(feats), self.model.encode_patches(patches)).float()

    def _replay(self, exclude: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` flat brain voxel indices at least :data:`REPLAY_EXCLUSION` voxels from every voxel of
        ``exclude`` (flat indices), drawn as in the module docstring."""
        shape, r = np.array(self.volume.shape), REPLAY_EXCLUSION
        near = np.zeros((0, 0, 0), bool)
        lo = np.zeros(3, np.int64)
        if exclude.size:       # the exclusion zone: the marks dilated by r, on their bounding box only
            vox = np.stack(np.unravel_index(exclude, self.volume.shape), 1)
            lo, hi = np.maximum(vox.min(0) - r, 0), np.minimum(vox.max(0) + r + 1, shape)
            near = np.zeros(hi - lo, bool)
            near[tuple((vox - lo).T)] = True
            near = ndimage.maximum_filter(near, size=2 * r + 1, mode="constant")
        tumour = np.flatnonzero(self._labels)
        groups = [self._brain[rng.integers(0, self._brain.size, 2 * n)]]
        if tumour.size:
            vox = np.stack(np.unravel_index(tumour, self.volume.shape), 1)
            box = np.ravel_multi_index(rng.integers(np.maximum(vox.min(0) - 4, 0), np.minimum(vox.max(0) + 5, shape),
                                                    (4 * n, 3)).T, self.volume.shape)
            groups += [tumour[rng.integers(0, tumour.size, 2 * n)], box[self._mask.reshape(-1)[box]]]
        picked = []
        for g in groups:
            v = np.stack(np.unravel_index(g, self.volume.shape), 1) - lo
            inside = ((v >= 0) & (v < near.shape)).all(1)
            inside[inside] = near[tuple(v[inside].T)]
            picked.append(g[~inside][:-(-n // len(groups))])
        return np.concatenate(picked)[:n]

    def apply(self, steps: int | None = None, *, on_progress: ProgressCallback | None = None) -> CorrectionResult:
        """Update the weights from the pending marks, then re-segment.

        Args:
            steps: exact number of gradient steps, or ``None``: until the marks are honoured, at most
                :data:`MAX_STEPS` (see the module docstring).
            on_progress: called with ``(steps taken, most steps)`` after each step (e.g. for
                "correcting: step 12/40"); it may be slow, it never changes the result.

        Returns:
            :class:`CorrectionResult`. The marks are consumed (kept for :meth:`undo`); without marks
            nothing changes (``steps == 0``) and nothing is added to the undo history.
        """
        if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 0):
            raise InputError(f"steps must be None or an integer >= 0, got {steps!r}")
        t0 = time.perf_counter()
        if self.n_marks == 0:
            return CorrectionResult(self._labels, 0, 0, time.perf_counter() - t0)
        self._history.append(({k: v.detach().clone() for k, v in self.model.state_dict().items()},
                              self._labels, self._mark_index, self._mark_label, list(self._rays)))
        del self._history[:-HISTORY]
        n_steps = self._update(steps, on_progress)
        t1 = time.perf_counter()
        model_labels = segment_volume(self.model, self.volume, device=self.device, inputs=self._case)
        near = self._near_marks()
        labels = np.where(near, model_labels, self._labels)
        t2 = time.perf_counter()
        labels.setflags(write=False)
        changed = int(np.count_nonzero(labels != self._labels))
        left_out = int(np.count_nonzero((model_labels != self._labels) & ~near))
        self._labels, self._denoised = labels, None
        self.clear_marks()
        log.info("correction: %d steps (%.2f s), re-segmentation %.2f s, %d voxels changed (%d farther than "
                 "%g mm from the marks left as they were)", n_steps, t1 - t0, t2 - t1, changed, left_out, REACH_MM)
        return CorrectionResult(labels, changed, n_steps, t2 - t0, t1 - t0, t2 - t1, left_out)

    def _near_marks(self) -> np.ndarray:
        """``[X, Y, Z]`` bool: voxels within :data:`REACH_MM` (Euclidean, mm) of a pending voxel or ray mark."""
        shape, spacing = np.array(self.volume.shape), np.array(self.volume.spacing)
        marks = [np.stack(np.unravel_index(self._mark_index, self.volume.shape), axis=1)]
        marks += [np.asarray(r.voxel, np.int64)[None] for r in self._rays]
        ijk = np.concatenate(marks)                                                       # [M, 3]
        pad = np.ceil(REACH_MM / spacing).astype(int)
        lo, hi = np.maximum(ijk.min(0) - pad, 0), np.minimum(ijk.max(0) + pad + 1, shape)
        free = np.ones(hi - lo, bool)                                                     # the box around them
        free[tuple((ijk - lo).T)] = False
        near = np.zeros(self.volume.shape, bool)
        near[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = ndimage.distance_transform_edt(free, sampling=spacing) <= REACH_MM
        return near

    def _update(self, steps: int | None, on_progress: ProgressCallback | None) -> int:
        """The gradient steps; returns how many were taken. Deterministic given the marks and weights."""
        seed = int(self._mark_index.sum()) + 1009 * int(self._mark_label.sum()) + len(self._rays)
        rng = np.random.default_rng(seed)
        gen = torch.Generator(device=self.device).manual_seed(seed)
        pens = pencils(self._rays, self.volume)                 # the rays the ray marks render, once
        pool = self._replay(np.concatenate([self._mark_index, window_voxels(pens, self.volume)]), REPLAY_POOL, rng)
        limit = MAX_STEPS if steps is None else int(steps)
        # every step's marks, drawn now (the same draws as step by step): inputs only for the marks some
        # step can use (a step takes MARK_POINTS of them; half of 60 k marks over 40 steps)
        draws = [rng.permutation(self._mark_index.size)[:MARK_POINTS] for _ in range(limit)]
        used = np.unique(np.concatenate(draws)) if draws else np.zeros(0, np.int64)
        mark_target = torch.from_numpy(self._mark_label[used].astype(np.int64)).to(self.device)
        n_marks = used.size
        inputs = self._inputs(np.concatenate([self._mark_index[used], pool]))   # used marks, then the pool's rows
        pool_in = tuple(t[n_marks:] for t in inputs)
        pool_logits = self._predict(pool_in)
        # drift is a class change of this predictor since the start (not a difference from the labels:
        # segment_volume's coarse-to-fine pass may differ on a few voxels, which no step can change)
        pool_target = pool_logits.argmax(1)
        # a window of log-odds 1 throughout renders opacity ~ 1 - 1/e
        field = SoftTumourField(self.model, self._padded, self._mask_t, self.volume.affine,
                                density=1.0 / (2 * RAY_WINDOW * min(self.volume.spacing)), frame=self._case.frame)
        opt = self._opt
        opt.state.clear()                       # fresh moments for every correction
        hard = drifted = torch.zeros(0, dtype=torch.long, device=self.device)   # pool rows that drifted
        taken = 0
        while taken < limit:
            if taken % MINE_EVERY == MINE_EVERY - 1 and pool.size:     # which pool voxels changed class?
                drifted = torch.nonzero(self._predict(pool_in).argmax(1) != pool_target).squeeze(1)
                hard = torch.unique(torch.cat([hard, drifted]))       # once drifted, always replayed
                log.debug("step %d: %d replay voxels drifted (%d kept)", taken, drifted.numel(), hard.numel())
            pick = torch.from_numpy(np.searchsorted(used, draws[taken])).to(self.device)
            rows = torch.arange(taken * REPLAY_POINTS, (taken + 1) * REPLAY_POINTS, device=self.device) % pool.size \
                if pool.size else torch.zeros(0, dtype=torch.long, device=self.device)
            shuffled = torch.randperm(hard.numel(), generator=gen, device=self.device)
            rows = torch.cat([rows, hard[shuffled[:REPLAY_POINTS]]])
            batch = torch.cat([pick, n_marks + rows])
            batch = F.pad(batch, (0, -batch.numel() % BATCH_ROWS))      # rows past the marks and replay: unused
            logits = self._logits(inputs[0].index_select(0, batch), inputs[1].index_select(0, batch))
            loss = torch.zeros((), device=self.device)
            met = drifted.numel() == 0          # as of the last drift check
            if pick.numel():
                m_logits, target = logits[:pick.numel()], mark_target[pick]
                loss = loss + F.cross_entropy(m_logits, target)
                own = m_logits.gather(1, target[:, None])[:, 0]
                other = m_logits.scatter(1, target[:, None], -math.inf).amax(1)
                met = met and bool(((own - other) > MARK_MARGIN).all())
            if rows.numel():
                loss = loss + REPLAY_WEIGHT * F.mse_loss(logits[pick.numel():pick.numel() + rows.numel()],
                                                         pool_logits[rows])
            if self._rays:
                with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self._autocast):
                    rays, rays_met = ray_loss(field, pens, self.volume)
                loss = loss + RAY_WEIGHT * rays
                met = met and rays_met
            if steps is None and taken >= MIN_STEPS and met:
                break
            self.model.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
            for group in opt.param_groups:
                group["lr"] = LEARNING_RATE * (1.0 - taken / limit)
            opt.step()
            taken += 1
            if on_progress is not None:
                on_progress(taken, limit)
        return taken

    @torch.no_grad()
    def _predict(self, inputs: tuple[torch.Tensor, torch.Tensor], chunk: int = 8192) -> torch.Tensor:
        """:meth:`_logits` ``[N, K]`` without gradients, in chunks, through :class:`InferenceMLP` (the
        same logits in bf16 on the CPU, measured; 2x faster: a drift check of the replay pool)."""
        mlp = InferenceMLP(self.model, torch.bfloat16 if self._autocast else torch.float32, patch_order="channel")
        return torch.cat([mlp(inputs[0][s:s + chunk], inputs[1][s:s + chunk])
                          for s in range(0, inputs[0].shape[0], chunk)]
                         or [torch.zeros(0, self.model.config.n_classes, device=self.device)])

    def undo(self) -> np.ndarray:
        """Restore the weights, labels and marks from before the last :meth:`apply`.

        Marks added since that apply stay pending (a voxel marked in both keeps the newer label).

        Returns:
            The restored labels ``[X, Y, Z]`` (read-only).

        Raises:
            InputError: when there is nothing to undo (see :attr:`can_undo`).
        """
        if not self._history:
            raise InputError("nothing to undo: no correction has been applied")
        weights, labels, index, label, rays = self._history.pop()
        self.model.load_state_dict(weights)
        keep = ~np.isin(index, self._mark_index)          # a voxel marked since keeps its newer label
        self._mark_index = np.concatenate([index[keep], self._mark_index])
        self._mark_label = np.concatenate([label[keep], self._mark_label])
        self._rays = rays + self._rays
        self._labels, self._denoised = labels, None
        return self._labels
