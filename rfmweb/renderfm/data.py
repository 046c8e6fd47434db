"""Render-FM training data: generated anatomy x transfer functions x posed ground-truth views.

Sample ``i`` of a run is deterministic (seeded by the run's seed and ``i``): an anatomy from
:func:`.anatomy.random_anatomy` (head or torso, at a working spacing drawn from
``DataConfig.spacing_mm``), a style from :func:`.styles.random_style` (a preset, a random ramp or a
random class table), the model's inputs and AGP base (:mod:`.inputs`, :func:`rfmweb.splats.init.prime`)
and ``views_per_scan`` cameras on the orbit ``rfmweb views`` uses (same framing, fov 30 degrees),
at directions drawn from the sample's seed.

Ground truth is the reference ray-marcher (:data:`rfmweb.render.scene.REFERENCE`: quarter-voxel
step, 8 jittered frames; never the moire-prone single frame), drawn by the fastest twin here
(:func:`rfmweb.backend.marcher_renderer`: Triton on CUDA, numba on a CPU), quantised to 8 bits as
a views folder stores it, and cached on disk (``cache_dir/sample_XXXXXXX.npz``, written atomically),
so an interrupted run resumes without rendering again. The head CT of ../shared/data is never
used here: it is the unseen test.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..io.atomic import atomic_write
from ..render.scene import REFERENCE, Scene
from ..splats.init import Primed, prime
from .inputs import build_inputs

log = logging.getLogger(__name__)

#: Version of the reference renderer's pictures, part of the cache key: bump it when they change, so
#: a resumed run never mixes old and new ground truth (2: class tables blend the 8 voxels around a
#: sample instead of taking the nearest one's class; 3: REFERENCE reads the CT through its cubic
#: B-spline, no contour rings).
GROUND_TRUTH_VERSION = 3


@dataclass(frozen=True)
class DataConfig:
    """What the training samples are.

    Attributes:
        kinds: anatomy kinds drawn from (``"head"``, ``"torso"``).
        spacing_mm: ``(lo, hi)`` working spacing of the generated scans, drawn per sample.
        views_per_scan: ground-truth views rendered per sample.
        view_size: their width and height, pixels.
        seed: the run's data seed (sample ``i`` depends on it and ``i`` only).
        crop_mm: train on a random cube of this side (mm) around a foreground voxel of each scan
            instead of the whole scan (None); the network is translation-equivariant, so crops
            teach it the same residuals at a fraction of the cost (the CPU schedule).
        cache_dir: folder of cached ground truth (None: no cache).
        workers: DataLoader worker processes making samples (0: in the training process).
    """

    kinds: tuple[str, ...] = ("head", "torso")
    spacing_mm: tuple[float, float] = (1.5, 3.0)
    views_per_scan: int = 4
    view_size: int = 128
    seed: int = 0
    crop_mm: float | None = None
    cache_dir: str | None = None
    workers: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kinds", tuple(self.kinds))
        object.__setattr__(self, "spacing_mm", tuple(float(s) for s in self.spacing_mm))
        if len(self.spacing_mm) != 2 or not 0 < self.spacing_mm[0] <= self.spacing_mm[1]:
            raise InputError(f"data.spacing_mm must be [lo, hi] with 0 < lo <= hi, got {list(self.spacing_mm)}")
        if self.crop_mm is not None and not self.crop_mm > 0:
            raise InputError(f"data.crop_mm must be > 0 mm, got {self.crop_mm}")
        if self.views_per_scan < 1 or not 16 <= self.view_size <= 2048 or self.workers < 0:
            raise InputError("data.views_per_scan >= 1, data.view_size in 16..2048, data.workers >= 0")

    def cache_key(self) -> str:
        """A digest of everything that decides the ground truth (cache entries from other settings are
        never reused)."""
        d = asdict(self)
        d.pop("cache_dir"), d.pop("workers")
        d["ground_truth_version"] = GROUND_TRUTH_VERSION
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


@dataclass
class Sample:
    """One training scan: its scene, the 6-channel input ``x [6, X, Y, Z]``, AGP base and cameras.

    ``x`` is a float16 numpy array: samples travel from DataLoader workers by pickling, not through
    shared memory, which containers often keep small (and the channels need no more precision)."""

    index: int
    scene: Scene
    x: np.ndarray
    primed: Primed
    cameras: list
    description: str


def sample_rng(config: DataConfig, index: int) -> np.random.Generator:
    return np.random.default_rng([config.seed, index])


def make_sample(config: DataConfig, index: int, *, eps: float = 0.01, agp: bool = True) -> Sample:
    """Sample ``index`` (deterministic; see the module docstring)."""
    from ..camera import orbit_cameras
    from .anatomy import random_anatomy
    from .styles import random_style

    rng = sample_rng(config, index)
    seed = int(rng.integers(2 ** 31))
    kind = config.kinds[int(rng.integers(len(config.kinds)))]
    spacing = float(rng.uniform(*config.spacing_mm))
    volume = random_anatomy(seed, kind, spacing_mm=spacing)
    if config.crop_mm is not None:
        volume = random_crop(volume, config.crop_mm, rng)
    tf, classes, description = random_style(seed, volume)
    scene = Scene(volume, tf, classes)
    inputs = build_inputs(scene, None, eps=eps)
    primed = prime(inputs.rgba, inputs.labels, inputs.affine, inputs.unit_distance, eps=eps, all_voxels=not agp)
    cams = orbit_cameras(volume.bounds, config.views_per_scan, config.view_size, seed=seed)
    return Sample(index, scene, inputs.tensor.numpy().astype(np.float16), primed, cams,
                  f"{kind} {spacing:.2f} mm, {description}")


def random_crop(volume, side_mm: float, rng: np.random.Generator):
    """A cube of ``side_mm`` (clipped to the volume) centred near a random foreground voxel
    (label > 0), with its affine moved so world positions are unchanged."""
    from ..volume import Volume

    spacing = np.array(volume.spacing)
    size = np.minimum(np.maximum(2, np.round(side_mm / spacing).astype(int)), volume.shape)
    fg = np.argwhere(volume.labels > 0) if volume.labels is not None else np.zeros((0, 3), int)
    centre = fg[rng.integers(len(fg))] if len(fg) else np.array(volume.shape) // 2
    lo = np.clip(centre - size // 2, 0, np.array(volume.shape) - size)
    sl = tuple(slice(int(a), int(a + n)) for a, n in zip(lo, size))
    affine = volume.affine.copy()
    affine[:3, 3] = volume.affine[:3, :3] @ lo + volume.affine[:3, 3]
    labels = None if volume.labels is None else np.ascontiguousarray(volume.labels[sl])
    return Volume(np.ascontiguousarray(volume.data[(slice(None),) + sl]), affine, modality=volume.modality,
                  channels=volume.channels, labels=labels, classes=volume.classes, name=f"{volume.name}_crop")


class SampleDataset(torch.utils.data.Dataset):
    """``dataset[i]`` is :func:`make_sample` ``(config, i)``; ``len`` is unbounded in practice."""

    def __init__(self, config: DataConfig, *, eps: float = 0.01, agp: bool = True) -> None:
        self.config, self.eps, self.agp = config, eps, agp

    def __len__(self) -> int:
        return 2 ** 31 - 1

    def __getitem__(self, index: int) -> Sample:
        return make_sample(self.config, int(index), eps=self.eps, agp=self.agp)


class GroundTruth:
    """Reference ray-marched views of samples, cached on disk (see the module docstring)."""

    def __init__(self, config: DataConfig) -> None:
        from ..backend import marcher_renderer
        from ..render.registry import make_renderer

        self.config = config
        self.renderer = make_renderer(marcher_renderer())
        self.folder = Path(config.cache_dir) if config.cache_dir else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self.key = config.cache_key()

    def _path(self, index: int) -> Path | None:
        return None if self.folder is None else self.folder / f"sample_{index:07d}.npz"

    def images(self, sample: Sample) -> torch.Tensor:
        """``[V, H, W, 3]`` float32 in [0, 1] (multiples of 1/255), from the cache or rendered."""
        path = self._path(sample.index)
        if path is not None and path.exists():
            try:
                with np.load(path, allow_pickle=False) as data:
                    if str(data["key"]) == self.key:
                        return torch.from_numpy(data["images"].astype(np.float32) / 255.0)
            except Exception as exc:  # a damaged entry is rendered again
                log.warning("ignoring an unreadable cache entry %s (%s)", path.name, exc)
        imgs = np.stack([self.renderer.render_float(sample.scene, cam, REFERENCE) for cam in sample.cameras])
        u8 = (np.clip(imgs, 0, 1) * 255 + 0.5).astype(np.uint8)
        if path is not None:
            def write(tmp):
                with open(tmp, "wb") as f:
                    np.savez(f, images=u8, key=np.array(self.key))
            atomic_write(path, write)
        return torch.from_numpy(u8.astype(np.float32) / 255.0)
