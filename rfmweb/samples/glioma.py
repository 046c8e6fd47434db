"""Synthetic brain-glioma MRI (T1n, T1c, T2w, FLAIR) on the MNI152 2009 template.

The brain is real: nilearn's bundled MNI152 2009 grey- and white-matter maps and brain mask
(offline, no download), resampled to the requested voxel size. CSF is what the mask holds beyond
GM and WM. Each voxel's intensity is the fraction-weighted mix of per-tissue intensities
(:data:`CONTRASTS`), so partial volume comes for free. A glioma with BraTS labels is grown inside
the cerebral white matter of one hemisphere: an irregular core (necrosis 1 = NCR wrapped in an
enhancing rim 3 = ET) inside edema (2 = ED) that spreads mostly along white matter. Finally a smooth
multiplicative bias field and Rician noise; outside the brain everything is 0 (skull-stripped).

The pieces are separate so that a cohort generator can reuse them::

    tissue = tissue_maps(2.0)                  # cached per resolution, read-only arrays
    rng = np.random.default_rng(seed)
    tum = grow_tumour(tissue, rng, postop=False)
    clean = synthesize(tissue, tum, rng)       # [4, X, Y, Z], no bias, no noise
    data = add_rician_noise(clean * bias_fields(tissue, rng), tissue, rng)
"""

from __future__ import annotations

import functools
import importlib.resources
import logging
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.brats import BRATS_CLASSES
from ..volume import Volume
from .ct_phantom import smooth_field

log = logging.getLogger(__name__)

CHANNELS = ("T1n", "T1c", "T2w", "FLAIR")

#: Intensity (scanner units) of each pure tissue in each channel (T1n, T1c, T2w, FLAIR).
#: T1: WM > GM > CSF; T2: CSF > GM > WM; FLAIR: CSF suppressed, GM > WM, edema bright;
#: T1c: T1 plus a bright enhancing rim.
CONTRASTS = {
    "WM": (900.0, 880.0, 620.0, 700.0),
    "GM": (620.0, 610.0, 880.0, 900.0),
    "CSF": (250.0, 240.0, 2000.0, 150.0),
    "NCR": (350.0, 380.0, 1700.0, 800.0),      # dark T1/T1c, bright T2, intermediate FLAIR
    "ET": (820.0, 1700.0, 1100.0, 1150.0),     # iso/slightly dark T1, very bright T1c
    "ED": (720.0, 700.0, 1350.0, 1400.0),      # slightly dark T1, bright T2 and FLAIR
    "cavity": (260.0, 250.0, 1950.0, 170.0),   # resection cavity: CSF-like
}
_TUMOUR_LABELS = {"NCR": 1, "ED": 2, "ET": 3}


@dataclass(frozen=True, eq=False)
class TissueMaps:
    """Tissue fractions on the template grid (RAS+), read-only.

    Attributes:
        gm, wm, csf: ``[X, Y, Z]`` float32 fractions in [0, 1], summing to 1 inside the brain.
        mask: ``[X, Y, Z]`` bool brain mask.
        depth: ``[X, Y, Z]`` float32 distance (mm) to the outside of the mask.
        affine: ``[4, 4]`` voxel-to-world (mm).
    """

    gm: np.ndarray
    wm: np.ndarray
    csf: np.ndarray
    mask: np.ndarray
    depth: np.ndarray
    affine: np.ndarray

    @property
    def spacing(self) -> float:
        return float(self.affine[0, 0])

    @property
    def axes(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """World coordinates (mm) of the voxel centres along x, y, z."""
        return tuple(self.affine[a, a] * np.arange(n) + self.affine[a, 3]
                     for a, n in enumerate(self.mask.shape))  # type: ignore[return-value]


@dataclass(frozen=True, eq=False)
class Tumour:
    """A glioma on the tissue grid.

    Attributes:
        labels: ``[X, Y, Z]`` uint8 BraTS labels (1 NCR, 2 ED, 3 ET).
        cavity: ``[X, Y, Z]`` bool resection cavity (post-operative cases; else all False).
        centre_mm: world position (mm) of the tumour centre.
        diameter_mm: intended whole-tumour diameter, mm.
    """

    labels: np.ndarray
    cavity: np.ndarray
    centre_mm: tuple[float, float, float]
    diameter_mm: float


#: nilearn's bundled 1 mm MNI152 2009 maps (what ``nilearn.datasets.load_mni152_*`` read).
_MNI_FILES = {"t1": "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
              "gm": "mni_icbm152_gm_tal_nlin_sym_09a_converted.nii.gz",
              "wm": "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"}
_MASK_THRESHOLD = 0.2       # brain = T1 template above this, as load_mni152_brain_mask does


def _mni152(kind: str) -> tuple[np.ndarray, np.ndarray]:
    """One bundled 1 mm MNI152 map scaled to a maximum of 1, as nilearn's loaders scale it:
    ``([197, 233, 189] float32, affine [4, 4])``.

    The files are read directly because ``import nilearn.datasets`` costs about 2 s (it imports
    scikit-learn and pandas); the arrays are the same (checked by the tests).
    """
    import nibabel

    from ..extras import require

    require("mni")
    path = importlib.resources.files("nilearn") / "datasets" / "data" / _MNI_FILES[kind]
    if not path.is_file():
        raise RuntimeError(f"nilearn's bundled MNI152 template {path} is missing; reinstall nilearn")
    img = nibabel.load(str(path))
    data = np.ascontiguousarray(img.dataobj, dtype=np.float32)    # NIfTI arrays are Fortran-ordered
    return data / data.max(), np.asarray(img.affine, dtype=np.float64)


def _resample(data: np.ndarray, step: float, shape: tuple[int, ...]) -> np.ndarray:
    """Trilinear resampling of a 1 mm array onto a grid with the same origin and ``step`` mm
    voxels. The maps are smooth probabilities, so (like nilearn) no anti-aliasing filter."""
    return ndimage.affine_transform(data, np.full(3, step), output_shape=shape, order=1, mode="nearest")


@functools.lru_cache(maxsize=4)
def tissue_maps(resolution_mm: float = 2.0) -> TissueMaps:
    """GM / WM / CSF fractions and the brain mask of the MNI152 2009 template at ``resolution_mm``.

    Resamples nilearn's bundled 1 mm maps (no download) onto the grid nilearn's own
    ``resolution=`` option produces (same origin; for 2 mm: 99 x 117 x 95). Cached in memory per
    resolution; the arrays are read-only.
    """
    step = float(resolution_mm)
    if not 0.5 <= step <= 8.0:
        raise InputError(f"glioma resolution_mm must lie in 0.5..8 mm, got {resolution_mm}")
    t1, affine = _mni152("t1")
    gm, wm = _mni152("gm")[0], _mni152("wm")[0]
    mask = (t1 > _MASK_THRESHOLD).astype(np.float32)
    shape = tuple(int(np.floor((n - 1) / step + 1e-6)) + 1 for n in gm.shape)
    if step != 1.0:
        gm, wm, mask = (_resample(a, step, shape) for a in (gm, wm, mask))
        affine[:3, :3] *= step
    brain = mask > 0.5
    gm, wm = np.clip(gm, 0, 1) * brain, np.clip(wm, 0, 1) * brain
    total = np.maximum(gm + wm, 1.0)
    gm, wm = gm / total, wm / total
    csf = np.clip(brain - gm - wm, 0.0, 1.0)
    depth = ndimage.distance_transform_edt(brain, sampling=step).astype(np.float32)
    arrays = [np.ascontiguousarray(a, dtype=np.float32) for a in (gm, wm, csf)] + [brain, depth]
    for a in arrays:
        a.setflags(write=False)
    log.debug("MNI152 tissue maps at %.2f mm: shape %s", step, shape)
    return TissueMaps(*arrays[:3], arrays[3], arrays[4], affine)


def _blob(axes, centre, semi, rotation, rng, roughness: float) -> np.ndarray:
    """Normalised radius (< 1 inside) ``[len(axes[0]), ...]`` of an ellipsoid (semi-axes ``semi``
    mm, orientation ``rotation`` ``[3, 3]``) whose surface is perturbed by smooth noise."""
    d = np.stack(np.meshgrid(*[a - c for a, c in zip(axes, centre)], indexing="ij"), axis=-1)
    r = np.linalg.norm((d @ rotation.T) / semi, axis=-1)
    return r * (1.0 + roughness * np.clip(smooth_field(axes, rng, 0.6 * min(semi)), -1.5, 1.5))


def _largest_component(mask: np.ndarray) -> np.ndarray:
    lab, n = ndimage.label(mask)
    if n <= 1:
        return mask
    sizes = np.bincount(lab.ravel())[1:]
    return lab == 1 + int(np.argmax(sizes))


def grow_tumour(tissue: TissueMaps, rng: np.random.Generator, postop: bool = False) -> Tumour:
    """Place and shape a glioma (BraTS labels) in the cerebral white matter of one hemisphere.

    Whole tumour 20-60 mm across; the core (ET rim around NCR) is 35-65 % of it; edema reaches
    further into white matter than into grey matter and never into CSF. With ``postop`` the core
    becomes a resection cavity (label 0) with no NCR, residual edema and, in about half of the
    cases, a thin patchy enhancing rim. The post-operative draws come last, so generators seeded
    alike put the cavity exactly where the pre-operative core was.
    """
    step = tissue.spacing
    diameter = rng.uniform(20.0, 60.0)
    core_r = 0.5 * diameter * rng.uniform(0.35, 0.65)
    semi = core_r * rng.uniform(0.8, 1.2, 3)
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    side = rng.choice([-1.0, 1.0])
    axes = tissue.axes
    x = axes[0][:, None, None]
    z = axes[2][None, None, :]
    ok = (tissue.wm > 0.9) & (x * side > 12.0) & (z > -5.0) & (tissue.depth > core_r + 8.0)
    if not ok.any():
        ok = (tissue.wm > 0.5) & (x * side > 0)
    pick = np.flatnonzero(ok)[rng.integers(ok.sum())]
    centre = np.array([a[i] for a, i in zip(axes, np.unravel_index(pick, ok.shape))])
    # work in a box around the tumour, large enough for the roughest core and its edema
    half = 0.9 * diameter + 3.0 * step + 6.0
    box = tuple(slice(max(int(np.floor((c - half - a[0]) / step)), 0), int(np.ceil((c + half - a[0]) / step)) + 1)
                for a, c in zip(axes, centre))
    sub_axes = [a[s] for a, s in zip(axes, box)]
    brain, wm, csf = tissue.mask[box], tissue.wm[box], tissue.csf[box]
    core = _largest_component((_blob(sub_axes, centre, semi, rotation, rng, 0.25) < 1) & brain)
    core = ndimage.binary_fill_holes(core)
    inside = ndimage.distance_transform_edt(core, sampling=step)
    outside = ndimage.distance_transform_edt(~core, sampling=step)
    rim = np.maximum(rng.uniform(2.5, 5.0) * (1 + 0.3 * smooth_field(sub_axes, rng, 6.0)), 1.8 * step)
    margin = (0.5 * diameter - core_r) * (0.3 + 0.7 * wm) * (1.0 + 0.4 * smooth_field(sub_axes, rng, 8.0))
    edema = (outside <= np.maximum(margin, step)) & brain & (csf < 0.5)
    lab, _ = ndimage.label(edema | core)
    edema &= lab == lab[core][0]                      # only edema connected to the core
    labels = np.zeros(core.shape, np.uint8)
    cavity = np.zeros(core.shape, bool)
    if postop:
        cavity = core
        edema &= outside < margin * rng.uniform(0.4, 0.8)
        labels[edema & ~core] = _TUMOUR_LABELS["ED"]
        if rng.random() < 0.5:
            patchy = smooth_field(sub_axes, rng, 5.0) > 0.0
            labels[(outside > 0) & (outside <= 1.8 * step) & patchy & brain] = _TUMOUR_LABELS["ET"]
    else:
        labels[edema | core] = _TUMOUR_LABELS["ED"]
        labels[core] = _TUMOUR_LABELS["ET"]
        labels[core & (inside > rim)] = _TUMOUR_LABELS["NCR"]
    full_labels = np.zeros(tissue.mask.shape, np.uint8)
    full_cavity = np.zeros(tissue.mask.shape, bool)
    full_labels[box], full_cavity[box] = labels, cavity
    return Tumour(full_labels, full_cavity, tuple(float(c) for c in centre), float(diameter))


def synthesize(tissue: TissueMaps, tumour: Tumour, rng: np.random.Generator) -> np.ndarray:
    """Noise-free ``[4, X, Y, Z]`` float32 image (T1n, T1c, T2w, FLAIR) before bias and noise.

    Tissue intensities are mixed by fraction; tumour compartments (and the cavity) replace the
    tissue with softened edges (gaussian, 0.6 voxel) and a +-8 % smooth heterogeneity.
    """
    weights = {"GM": tissue.gm, "WM": tissue.wm, "CSF": tissue.csf}
    table = np.array([CONTRASTS[k] for k in weights], np.float32)                  # [3, 4]
    out = np.einsum("tc,txyz->cxyz", table, np.stack(list(weights.values())))
    compartments = {k: tumour.labels == v for k, v in _TUMOUR_LABELS.items()}
    compartments["cavity"] = tumour.cavity
    region = tumour.labels.astype(bool) | tumour.cavity
    if region.any():
        box = tuple(slice(max(s.start - 3, 0), s.stop + 3) for s in ndimage.find_objects(region.astype(np.uint8))[0])
        soft = {k: ndimage.gaussian_filter(m[box].astype(np.float32), 0.6) for k, m in compartments.items()}
        total = np.clip(sum(soft.values()), 0.0, 1.0)
        texture = 1.0 + 0.08 * smooth_field([a[s] for a, s in zip(tissue.axes, box)], rng, 4.0)
        brain = tissue.mask[box]
        for c in range(len(CHANNELS)):
            lesion = sum(s * CONTRASTS[k][c] for k, s in soft.items()) * texture
            out[c][box] = np.where(brain, out[c][box] * (1.0 - total) + lesion, 0.0)
    return out


def bias_fields(tissue: TissueMaps, rng: np.random.Generator,
                strength: tuple[float, float] = (0.10, 0.15)) -> np.ndarray:
    """``[4, X, Y, Z]`` smooth multiplicative intensity inhomogeneity, one per channel, peaking at
    ``1 +- s`` over the brain with ``s`` drawn from ``strength``."""
    fields = []
    for _ in CHANNELS:
        f = smooth_field(tissue.axes, rng, 60.0)
        f /= np.abs(f[tissue.mask]).max() + 1e-6
        fields.append(1.0 + rng.uniform(*strength) * f)
    return np.stack(fields)


def add_rician_noise(data: np.ndarray, tissue: TissueMaps, rng: np.random.Generator,
                     fraction: tuple[float, float] = (0.02, 0.04)) -> np.ndarray:
    """Magnitude-image (Rician) noise: ``|I + n_re + i n_im|`` with gaussian ``n`` of sigma a
    fraction (drawn from ``fraction``) of each channel's white-matter intensity; zero outside
    the brain. ``data`` ``[4, X, Y, Z]``."""
    out = np.empty_like(data)
    for c in range(data.shape[0]):
        sigma = rng.uniform(*fraction) * CONTRASTS["WM"][c]
        re = data[c] + sigma * rng.standard_normal(data.shape[1:], dtype=np.float32)
        im = sigma * rng.standard_normal(data.shape[1:], dtype=np.float32)
        out[c] = np.hypot(re, im) * tissue.mask
    return out


def glioma_case(seed: int = 0, resolution_mm: float = 2.0, postop: bool = False) -> Volume:
    """A synthetic BraTS-like glioma case: four MRI modalities and BraTS labels.

    Args:
        seed: drives the tumour (hemisphere, place, size, shape), bias fields and noise.
        resolution_mm: isotropic voxel size; 2 mm gives the 99 x 117 x 95 MNI grid.
        postop: the same seed's tumour after resection: a CSF-like cavity where the core was,
            residual edema, a thin patchy enhancing rim in about half of the cases, no necrosis.

    Returns:
        MR :class:`Volume` ``[4, X, Y, Z]`` (T1n, T1c, T2w, FLAIR; scanner-like units, white
        matter about 600-900, 0 outside the brain), affine of the template (RAS+), labels with
        :data:`~rfmweb.io.brats.BRATS_CLASSES`.
    """
    tissue = tissue_maps(float(resolution_mm))
    rng = np.random.default_rng(seed)
    tum = grow_tumour(tissue, rng, postop=postop)
    clean = synthesize(tissue, tum, rng)
    data = add_rician_noise(clean * bias_fields(tissue, rng), tissue, rng)
    return Volume(data, tissue.affine, modality="MR", channels=CHANNELS, labels=tum.labels,
                  classes=BRATS_CLASSES, name=f"glioma_{seed}")
