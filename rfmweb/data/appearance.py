"""MR appearance of a synthetic cohort case: per-case contrasts, vessels, choroid plexus, head.

Intensities are in scanner-like units per channel (T1n, T1c, T2w, FLAIR). Each case draws
(from its appearance stream, in a fixed order, see :func:`draw_look`):

- normal tissue: :data:`rfmweb.samples.glioma.CONTRASTS` for WM / GM / CSF, each value x 0.92-1.08;
- every other compartment relative to the case's white matter, per channel, uniform in the
  ranges of :data:`RATIOS`. They overlap with normal tissue on purpose, as in BraTS: edema
  on FLAIR 1.45-2.1 x WM (grey matter is 1.29 x WM), so that where the edema is faint (its
  fuzzy border, its weaker parts, under the bias field) it is no brighter than cortex; on T2w
  1.6-2.4 x WM (grey matter 1.42, CSF 3.2: like CSF partial volume); enhancing tumour on T1c
  1.25-2.2 x WM against vessels 1.5-2.6 x WM and choroid plexus 1.4-2.4 x WM; necrosis from
  fluid-like to near edema;
- blood products (post-operative cases): methaemoglobin-like (T1-bright, 60 %) or
  haemosiderin-like (dark on all channels);
- lesion texture: a smooth multiplicative field (correlation 3-6 mm), amplitude 4-15 %;
- vessels: thin tubes (about 1-2 mm) where two smooth random fields (correlation 8-14 mm) both
  vanish, over all the subarachnoid CSF and 30-60 % of the parenchyma, weight 0.5-1;
- choroid plexus: patches (correlation 6 mm) over 5-15 % of the lateral ventricles;
- head outside the brain (visible only where skull stripping left it, see
  :mod:`rfmweb.data.acquisition`): layers by distance from the brain, dura / CSF 1-3 mm, inner
  table 1-2 mm, diploe 1.5-4 mm, outer table 1-2 mm, scalp 3-7 mm, then air (0).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import ndtri

from ..samples import glioma
from ..samples.ct_phantom import smooth_field
from .tumours import Lesion, sites

#: Compartment -> per channel (T1n, T1c, T2w, FLAIR) range of its intensity relative to the case's
#: white matter (drawn uniformly per case).
RATIOS = {
    "ED": ((0.72, 0.92), (0.72, 0.95), (1.6, 2.4), (1.45, 2.1)),
    "ET": ((0.78, 1.0), (1.25, 2.2), (1.3, 2.0), (1.25, 1.9)),
    "NCR": ((0.3, 0.6), (0.35, 0.7), (2.0, 3.2), (0.5, 1.6)),       # necrosis: fluid-like
    "NET": ((0.6, 0.85), (0.6, 0.9), (1.7, 2.6), (1.4, 2.2)),       # non-enhancing tumour core
    "cavity": ((0.26, 0.36), (0.26, 0.36), (2.9, 3.3), (0.2, 0.9)),  # CSF-like, FLAIR not always nulled
    "methaemoglobin": ((1.1, 1.5), (1.15, 1.6), (0.5, 2.2), (1.0, 1.8)),
    "haemosiderin": ((0.2, 0.5), (0.2, 0.5), (0.15, 0.4), (0.2, 0.5)),
    "vessel": ((0.7, 1.0), (1.5, 2.6), (0.3, 0.8), (0.4, 0.9)),     # enhancing; flow voids on T2w / FLAIR
    "choroid": ((0.7, 0.9), (1.4, 2.4), (1.3, 2.0), (1.1, 1.6)),
    "bone": ((0.05, 0.15),) * 4,
    "marrow": ((1.0, 1.3), (1.0, 1.3), (0.8, 1.2), (0.9, 1.3)),
    "fat": ((1.2, 1.6), (1.2, 1.6), (1.1, 1.7), (1.0, 1.5)),
}
#: Head layers outside the brain, innermost first, and their thickness ranges (mm).
HEAD_LAYERS = (("CSF", (1.0, 3.0)), ("bone", (1.0, 2.0)), ("marrow", (1.5, 4.0)), ("bone", (1.0, 2.0)),
               ("fat", (3.0, 7.0)))


@dataclass(frozen=True)
class Look:
    """A case's drawn appearance.

    Attributes:
        contrasts: compartment -> ``[4]`` intensity (T1n, T1c, T2w, FLAIR); tissue, lesion
            (``NCR``, ``NET``, ``ET``, ``ED``, ``cavity``, ``blood``) and anatomy extras.
        texture: lesion texture amplitude (relative).
        texture_mm: its correlation length.
        blood: ``"methaemoglobin"`` or ``"haemosiderin"``.
        head_mm: outer radius (mm from the brain) of each :data:`HEAD_LAYERS` layer.
    """

    contrasts: dict[str, np.ndarray]
    texture: float
    texture_mm: float
    blood: str
    head_mm: tuple[float, ...]

    def info(self) -> dict:
        """JSON-ready summary for the manifest."""
        return {"contrasts": {k: [round(float(v), 1) for v in c] for k, c in self.contrasts.items()},
                "texture": round(self.texture, 4), "blood": self.blood,
                "head_mm": [round(h, 2) for h in self.head_mm]}


def draw_look(rng: np.random.Generator) -> Look:
    """Draw a case's appearance (ranges in the module docstring)."""
    contrasts = {k: np.asarray(glioma.CONTRASTS[k]) * rng.uniform(0.92, 1.08, 4) for k in ("WM", "GM", "CSF")}
    wm = contrasts["WM"]
    for name, ranges in RATIOS.items():
        contrasts[name] = wm * np.array([rng.uniform(lo, hi) for lo, hi in ranges])
    blood = "methaemoglobin" if rng.random() < 0.6 else "haemosiderin"
    contrasts["blood"] = contrasts[blood]
    for name in ("methaemoglobin", "haemosiderin"):
        del contrasts[name]
    texture, texture_mm = float(rng.uniform(0.04, 0.15)), float(rng.uniform(3.0, 6.0))
    head = np.cumsum([rng.uniform(lo, hi) for _, (lo, hi) in HEAD_LAYERS])
    return Look(contrasts, texture, texture_mm, blood, tuple(float(h) for h in head))


@functools.lru_cache(maxsize=4)
def outside_distance(resolution_mm: float) -> np.ndarray:
    """``[X, Y, Z]`` float32 distance (mm) from each voxel outside the template brain to the brain
    (0 inside), read-only; cached per resolution."""
    tissue = glioma.tissue_maps(resolution_mm)
    out = ndimage.distance_transform_edt(~tissue.mask, sampling=tissue.spacing).astype(np.float32)
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def head_region(resolution_mm: float) -> tuple[slice, slice, slice]:
    """The grid slices that hold the thickest head (everything :func:`synthesize` can draw)."""
    reach = sum(hi for _, (_, hi) in HEAD_LAYERS)
    return ndimage.find_objects((outside_distance(resolution_mm) <= reach).astype(np.uint8))[0]


def _blend(out: np.ndarray, where: np.ndarray, weight: np.ndarray, value: np.ndarray) -> None:
    """``out[:, where] = out (1 - w) + w value`` in place; ``weight`` holds the ``where`` voxels."""
    for c in range(out.shape[0]):
        out[c][where] = out[c][where] * (1.0 - weight) + weight * value[c]


def synthesize(lesion: Lesion, look: Look, rng: np.random.Generator) -> np.ndarray:
    """Noise-free ``[4, hx, hy, hz]`` float32 image of the head before acquisition, on the
    :func:`head_region` of the grid (the grid is 0 elsewhere).

    The brain mixes tissue intensities by fraction (partial volume), then vessels and choroid
    plexus, then the lesion's compartments (their weights, times the texture); outside the brain
    the head layers by distance, 0 beyond the scalp.
    """
    anatomy = lesion.anatomy
    region = head_region(anatomy.spacing)
    gm, wm, csf, mask, depth = (a[region] for a in (anatomy.gm, anatomy.wm, anatomy.csf, anatomy.mask, anatomy.depth))
    c = look.contrasts
    table = np.stack([c["GM"], c["WM"], c["CSF"]]).astype(np.float32)                # [3, 4]
    out = np.einsum("tc,txyz->cxyz", table, np.stack([gm, wm, csf]))
    axes = [a[s] for a, s in zip(anatomy.axes, region)]
    cell = rng.uniform(8.0, 14.0)
    f1, f2, f3 = (smooth_field(axes, rng, cell) for _ in range(3))
    f4 = smooth_field(axes, rng, 6.0)
    # |f| < w is a sheet about 2 w cell mm thick (the fields have unit variance and gradients of
    # order 1 / cell), so two of them meet in a tube about 1.5 mm across
    width, density, amount = 0.75 / cell, rng.uniform(0.3, 0.6), rng.uniform(0.5, 1.0)
    surface = (csf > 0.5) & (depth < 15.0)
    keep = mask & (surface | (f3 > ndtri(1.0 - density)))      # f3 is about N(0, 1)
    vessel = amount * np.exp(-(f1[keep] ** 2 + f2[keep] ** 2) / (2.0 * width ** 2))
    _blend(out, keep, vessel.astype(np.float32), c["vessel"])
    ventricles = np.zeros(anatomy.mask.shape, bool)
    ventricles.flat[sites(anatomy.spacing)["ventricles"]] = True
    ventricles = ventricles[region]
    cover = rng.uniform(0.05, 0.15)
    choroid = ventricles & (f4 > np.quantile(f4[ventricles], 1.0 - cover))
    _blend(out, choroid, np.full(int(choroid.sum()), 1.0, np.float32), c["choroid"])
    outside = outside_distance(anatomy.spacing)[region]
    shell = (outside > 0.0) & (outside <= look.head_mm[-1])
    layer = np.searchsorted(np.asarray(look.head_mm), outside[shell])
    layers = np.stack([c[name] for name, _ in HEAD_LAYERS]).astype(np.float32)      # [5, 4]
    for ch in range(out.shape[0]):
        out[ch][shell] = layers[layer, ch]
    box = tuple(slice(b.start - r.start, b.stop - r.start) for b, r in zip(lesion.box, region))
    texture = 1.0 + look.texture * smooth_field([a[s] for a, s in zip(axes, box)], rng, look.texture_mm)
    sub = out[(slice(None),) + box]
    total = np.clip(sum(lesion.weights.values()), 0.0, 1.0)
    for ch in range(out.shape[0]):
        lesion_ch = sum(w * c[k][ch] for k, w in lesion.weights.items()) * texture
        sub[ch] = sub[ch] * (1.0 - total) + lesion_ch
    return out
