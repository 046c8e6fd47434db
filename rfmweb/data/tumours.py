"""Tumour geometry of the synthetic cohort: foci, compartments, mass effect and resection.

All lengths are in mm, positions in the world coordinates of the MNI152 template (RAS+). Every
draw comes from the generator handed in (the case's geometry stream), in a fixed order, so a case
is a pure function of its seed. :func:`grow_lesion` records what it drew in ``Lesion.info`` (the
case's manifest entry).

Pre-operative cases (``train`` / ``val`` splits):

- foci: 1 (70 %), 2 (20 %) or 3 (10 %); satellites 12-45 mm from the main centre, whole-tumour
  diameter 0.25-0.6x the main one (at least 5 mm), in cerebral parenchyma.
- main whole-tumour diameter ``D``: small in 20 % of cases (log-uniform 5-20 mm), else uniform
  25-90 mm (up to a lobe); post-operative cases always 25-90 mm.
- site of the main focus (cerebrum only: no cerebellum or brainstem): deep white matter (45 %;
  WM fraction > 0.8, >= 15 mm deep, > 8 mm from the lateral ventricles), periventricular (25 %;
  <= 8 mm from a lateral ventricle) or cortical / subcortical (30 %; <= 12 mm deep, so the tumour
  meets the cortex and is clipped by the brain surface).
- core (tumour core TC = NCR + ET): diameter 0.3-0.9 ``D``; an ellipsoid (semi-axes x 0.7-1.3,
  random orientation) with a rough surface (smooth relative perturbation 0.1-0.35).
- core type: *solid* (20 %: all enhancing, no necrosis); *ring* (60 %: enhancing rim 1.5-8 mm
  thick, log-uniform, varying +-40 % along the surface, enhancing over 35-100 % of the rim, necrosis
  inside and non-enhancing core in the rim's gaps, both label 1); *non-enhancing* (20 %: label 1
  with enhancement over 0-20 % of the rim). Necrosis thus ranges from none to most of the core.
- edema (label 2): membership ``1 / (1 + exp((d - m) / w))`` of the distance ``d`` from the core,
  margin ``m = (D/2 - core radius) x (0.3 + 0.7 WM fraction) x (1 +- 0.5 smooth)``, fuzziness
  ``w`` 0.5-5 mm, scaled by ``1 - CSF fraction``; labelled where the membership exceeds 0.5, while
  the image shows it (intensity weight membership x strength, strength 0.7-1.0 +- 0.2 smooth, at
  least 0.5) on both sides of the label border: infiltrative and fuzzy. Only edema connected to a
  core or cavity (through membership > 0.2) is kept.
- mass effect: tissue pushed radially from the main centre, source ``c + (x - c)(1 - q)`` with
  ``q = a exp(-(r/L)^2)`` tapered to 0 at ``r = 1.6 L`` and near the brain surface (smoothstep over
  the outer 10 mm), ``a`` = 0.1-0.55 x min(max(D / 60 mm, 0.2), 1), ``L`` = 0.8-1.3 x max(D/2,
  10 mm); monotone in ``r`` (no folding), displacements up to about 12 mm (midline shift).

Labels and intensities: core over edema; intensity weights of the compartments blurred by a
gaussian (sigma 0.5-1.5 mm per case: partial volume); label components under 27 mm^3 that hold no
focus centre (ragged threshold edges) are dropped from labels and image alike.

Post-operative cases (``postop``): the main focus is drawn as above, then resected:

- resection cavity (label 0) = its core dilated by 0-3 mm; mass effect ``a`` 0-0.15 only;
- residual edema with its margin x 0.5-1.0; a thin (1-3 mm) enhancing rim over 15-60 % of the
  cavity wall in 60 % of cases; an enhancing nodule (4-12 mm) on the wall in 35 %, with a little
  necrosis (label 1, a quarter of its diameter) in half of the nodules over 8 mm;
- blood products (label 0) in 75 %: a 1-4 mm layer over 30-100 % of the wall, and in 30 % of
  cases a dependent fluid level (the posterior 10-50 % of the cavity, patient supine);
- satellites stay (unresected) and are solid.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.special import expit

from ..samples import glioma
from ..samples.ct_phantom import smooth_field

#: Core types and their probabilities (see the module docstring).
CORE_TYPES = {"solid": 0.2, "ring": 0.6, "non-enhancing": 0.2}
#: Sites of the main focus and their probabilities.
SITES = {"deep": 0.45, "periventricular": 0.25, "cortical": 0.3}
#: Label components smaller than this (mm^3) and holding no focus centre are removed (at 4 mm a
#: voxel is larger, so none is).
SPECK_MM3 = 27.0


@dataclass(frozen=True, eq=False)
class Lesion:
    """A case's tumour on the grid of its (deformed) anatomy.

    Attributes:
        labels: ``[X, Y, Z]`` uint8 BraTS labels (1 NCR incl. non-enhancing core, 2 ED, 3 ET).
        cavity: ``[X, Y, Z]`` bool resection cavity (all False before surgery).
        box: the slices of the grid that hold every compartment.
        weights: compartment (``NCR`` necrosis, ``NET`` non-enhancing core, ``ET``, ``ED``,
            ``cavity`` fluid, ``blood``) -> ``[bx, by, bz]`` float32 fraction of each voxel of
            ``box`` whose intensity is the compartment's (partial volume included; sum <= 1).
        anatomy: the normal brain after the mass effect (fractions warped; mask and depth kept).
        info: JSON-ready description of the draws.
    """

    labels: np.ndarray
    cavity: np.ndarray
    box: tuple[slice, slice, slice]
    weights: dict[str, np.ndarray]
    anatomy: glioma.TissueMaps
    info: dict


def _grid(tissue: glioma.TissueMaps, box=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Broadcastable world coordinates (mm) ``x [bx,1,1], y [1,by,1], z [1,1,bz]`` of ``box``."""
    axes = tissue.axes if box is None else [a[s] for a, s in zip(tissue.axes, box)]
    return axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :]


@functools.lru_cache(maxsize=4)
def sites(resolution_mm: float) -> dict[str, np.ndarray]:
    """Flat voxel indices of the candidate centres per site, and of all cerebral parenchyma
    (``"parenchyma"``) and the lateral ventricles (``"ventricles"``) on the template grid."""
    tissue = glioma.tissue_maps(resolution_mm)
    x, y, z = _grid(tissue)
    cerebrum = tissue.mask & (np.abs(x) > 8.0) & (z > -30.0) & ~((y < -45.0) & (z < -5.0))
    parenchyma = cerebrum & (tissue.gm + tissue.wm > 0.7)
    ventricles = (tissue.csf > 0.6) & (tissue.depth > 20.0)
    near = ndimage.distance_transform_edt(~ventricles, sampling=tissue.spacing) <= 8.0
    masks = {"deep": parenchyma & (tissue.wm > 0.8) & (tissue.depth >= 15.0) & ~near,
             "periventricular": parenchyma & near, "cortical": parenchyma & (tissue.depth <= 12.0),
             "parenchyma": parenchyma, "ventricles": ventricles}
    out = {k: np.flatnonzero(m) for k, m in masks.items()}
    for v in out.values():
        v.setflags(write=False)
    return out


@functools.lru_cache(maxsize=4)
def _brain_box(resolution_mm: float) -> tuple[slice, slice, slice]:
    return ndimage.find_objects(glioma.tissue_maps(resolution_mm).mask.astype(np.uint8))[0]


def _world(tissue: glioma.TissueMaps, flat: int) -> np.ndarray:
    return np.array([a[i] for a, i in zip(tissue.axes, np.unravel_index(flat, tissue.mask.shape))])


def _index(tissue: glioma.TissueMaps, point) -> tuple[int, int, int] | None:
    """Voxel index of a world point, or None outside the grid."""
    idx = tuple(int(round((p - a[0]) / tissue.spacing)) for p, a in zip(point, tissue.axes))
    return idx if all(0 <= i < n for i, n in zip(idx, tissue.mask.shape)) else None


def _box(tissue: glioma.TissueMaps, centre, half_mm: float) -> tuple[slice, slice, slice]:
    step = tissue.spacing
    return tuple(slice(max(int(np.floor((c - half_mm - a[0]) / step)), 0),
                       min(int(np.ceil((c + half_mm - a[0]) / step)) + 1, len(a)))
                 for a, c in zip(tissue.axes, centre))  # type: ignore[return-value]


def mass_effect(tissue: glioma.TissueMaps, centre, diameter_mm: float, strength: float, rng: np.random.Generator
                ) -> tuple[glioma.TissueMaps, float]:
    """Push the brain away from ``centre`` (see the module docstring for the field).

    ``strength`` is the peak relative displacement ``a`` before the size factor. Returns the
    anatomy with warped GM / WM / CSF fractions (trilinear; mask and depth kept, CSF refilled so
    fractions sum to 1 in the mask) and the largest displacement in mm.
    """
    a = strength * min(max(diameter_mm / 60.0, 0.2), 1.0)
    length = max(0.5 * diameter_mm, 10.0) * rng.uniform(0.8, 1.3)
    box = _box(tissue, centre, 1.6 * length)
    x, y, z = _grid(tissue, box)
    d = [x - centre[0], y - centre[1], z - centre[2]]
    r = np.sqrt(d[0] ** 2 + d[1] ** 2 + d[2] ** 2).astype(np.float32)
    taper = np.clip(1.0 - (r / (1.6 * length)) ** 2, 0.0, 1.0) ** 2
    surface = np.clip(tissue.depth[box] / 10.0, 0.0, 1.0)
    q = a * np.exp(-(r / length) ** 2) * taper * surface * surface * (3.0 - 2.0 * surface)
    coords = np.stack([(c + di * (1.0 - q) - ax[0]) / tissue.spacing
                       for c, di, ax in zip(centre, d, tissue.axes)]).astype(np.float32)
    gm, wm = tissue.gm.copy(), tissue.wm.copy()
    for dst, src in ((gm, tissue.gm), (wm, tissue.wm)):
        dst[box] = ndimage.map_coordinates(src, coords, order=1, mode="nearest")
    gm *= tissue.mask
    wm *= tissue.mask
    total = np.maximum(gm + wm, 1.0)
    gm /= total
    wm /= total
    csf = np.clip(tissue.mask - gm - wm, 0.0, 1.0).astype(np.float32)
    warped = glioma.TissueMaps(gm, wm, csf, tissue.mask, tissue.depth, tissue.affine)
    return warped, float((q * r).max())


def _blob(axes, centre, semi, rotation, roughness: float, cell_mm: float, rng: np.random.Generator) -> np.ndarray:
    """Normalised radius (< 1 inside) ``[bx, by, bz]`` of a rough ellipsoid (semi-axes ``semi``
    mm, orientation ``rotation`` ``[3, 3]``); its surface moves by -1.2..+1.5 ``roughness`` (relative)
    with a smooth field of ``cell_mm`` correlation length."""
    d = np.stack(np.meshgrid(*[(a - c).astype(np.float32) for a, c in zip(axes, centre)], indexing="ij"), -1)
    r = np.linalg.norm((d @ rotation.T.astype(np.float32)) / semi.astype(np.float32), axis=-1)
    return r * (1.0 + roughness * np.clip(smooth_field(axes, rng, cell_mm), -1.2, 1.5))


def _overlap(src: tuple[slice, ...], dst: tuple[slice, ...]) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Where the grid boxes ``src`` and ``dst`` overlap, as slices into an array on ``src`` and
    into one on ``dst``."""
    lo = [max(s.start, d.start) for s, d in zip(src, dst)]
    hi = [max(min(s.stop, d.stop), l) for s, d, l in zip(src, dst, lo)]
    return (tuple(slice(l - s.start, h - s.start) for l, h, s in zip(lo, hi, src)),
            tuple(slice(l - d.start, h - d.start) for l, h, d in zip(lo, hi, dst)))


def _moved(a: np.ndarray, src: tuple[slice, ...], dst: tuple[slice, ...]) -> np.ndarray:
    """``a``, which covers the grid box ``src``, on the box ``dst`` (0 where it has no value)."""
    out = np.zeros(tuple(d.stop - d.start for d in dst), a.dtype)
    from_src, to_dst = _overlap(src, dst)
    out[to_dst] = a[from_src]
    return out


def _patchy(mask: np.ndarray, axes, coverage: float, cell_mm: float, rng: np.random.Generator) -> np.ndarray:
    """The part of ``mask`` (a ``coverage`` fraction of it) where a smooth field is highest."""
    field = smooth_field(axes, rng, cell_mm)
    if not mask.any() or coverage <= 0.0:
        return np.zeros_like(mask)
    return mask & (field >= np.quantile(field[mask], 1.0 - min(coverage, 1.0)))


def _focus(tissue: glioma.TissueMaps, centre, diameter: float, kind: str, resect: bool,
           rng: np.random.Generator) -> tuple[tuple[slice, slice, slice], dict[str, np.ndarray], dict]:
    """One focus in its own box: bool ``NCR`` / ``NET`` / ``ET`` / ``cavity`` / ``blood`` masks,
    float edema ``membership`` and intensity weight ``ED`` (``[bx, by, bz]``), and its draws."""
    step = tissue.spacing
    core_r = max(0.5 * diameter * rng.uniform(0.3, 0.9), 0.75 * step)
    semi = core_r * rng.uniform(0.7, 1.3, 3)
    rotation = np.linalg.qr(rng.standard_normal((3, 3)))[0]
    roughness, fuzz, strength = rng.uniform(0.1, 0.35), rng.uniform(0.5, 5.0), rng.uniform(0.7, 1.0)
    rim_mm, completeness = np.exp(rng.uniform(np.log(1.5), np.log(8.0))), rng.uniform()
    completeness = {"solid": 1.0, "ring": 0.35 + 0.65 * completeness, "non-enhancing": 0.2 * completeness}[kind]
    margin_mm = max(0.5 * diameter - core_r, 0.0)
    # the core in a box that holds the roughest surface, then the focus in the core's bounding box
    # grown by the edema's reach
    box = _box(tissue, centre, 1.75 * semi.max() + step)
    axes = [a[s] for a, s in zip(tissue.axes, box)]
    core = (_blob(axes, centre, semi, rotation, roughness, max(0.6 * semi.min(), 1.5 * step), rng) < 1.0)
    core &= tissue.mask[box]
    seed = tuple(int(np.clip(np.searchsorted(a, c), 0, len(a) - 1)) for a, c in zip(axes, centre))
    core[seed] = True
    lab, _ = ndimage.label(core)
    core = ndimage.binary_fill_holes(lab == lab[seed])
    pad = int(np.ceil((1.7 * margin_mm + 3.0 * fuzz) / step)) + 2
    tight = ndimage.find_objects(core.astype(np.uint8))[0]
    focus_box = tuple(slice(max(b.start + t.start - pad, 0), min(b.start + t.stop + pad, n))
                      for b, t, n in zip(box, tight, tissue.mask.shape))
    core, box = _moved(core, box, focus_box), focus_box
    axes = [a[s] for a, s in zip(tissue.axes, box)]
    brain, wm, csf = tissue.mask[box], tissue.wm[box], tissue.csf[box]
    inside = ndimage.distance_transform_edt(core, sampling=step)
    outside = ndimage.distance_transform_edt(~core, sampling=step)
    margin = margin_mm * (0.3 + 0.7 * wm) * np.clip(1.0 + 0.5 * smooth_field(axes, rng, 8.0), 0.3, 1.7)
    alpha = np.clip(strength + 0.2 * smooth_field(axes, rng, 6.0), 0.5, 1.0)
    rim = np.maximum(rim_mm * (1.0 + 0.4 * np.clip(smooth_field(axes, rng, 6.0), -1.5, 1.5)), step)
    shell = core & (inside <= rim)
    et = _patchy(shell, axes, completeness, max(0.5 * core_r, 3.0), rng)
    empty = np.zeros_like(core)
    parts = {"ET": core if kind == "solid" else et, "NCR": core & ~shell if kind == "ring" else empty,
             "NET": empty if kind == "solid" else core & ~et & (shell if kind == "ring" else core),
             "cavity": empty, "blood": empty}
    info = {"diameter_mm": round(float(diameter), 2), "centre_mm": [round(float(c), 2) for c in centre],
            "core_diameter_mm": round(2.0 * core_r, 2), "core_type": kind, "rim_mm": round(float(rim_mm), 2),
            "rim_completeness": round(float(completeness), 3), "edema_margin_mm": round(margin_mm, 2),
            "edema_fuzz_mm": round(float(fuzz), 2), "edema_strength": round(float(strength), 3)}
    if resect:
        parts, outside, margin, post = _resect(parts, core, outside, margin, brain, axes, step, rng)
        info.update(post)
    member = expit((margin - outside) / fuzz).astype(np.float32) * (1.0 - csf) * brain
    member[parts["cavity"]] = 0.0
    parts.update(membership=member, ED=member * alpha.astype(np.float32))
    return box, parts, info


def _resect(parts, core, outside, margin, brain, axes, step, rng):
    """Turn a focus into its post-operative state (see the module docstring); returns the new
    parts, the distance (mm) from the cavity, the residual edema margin and the draws."""
    dilate, shrink = rng.uniform(0.0, 3.0), rng.uniform(0.5, 1.0)
    has_rim, rim_mm, rim_cover = rng.random() < 0.6, rng.uniform(1.0, 3.0), rng.uniform(0.15, 0.6)
    has_nodule, nodule_mm, nodule_necrosis = rng.random() < 0.35, rng.uniform(4.0, 12.0), rng.random() < 0.5
    has_blood, blood_mm, blood_cover = rng.random() < 0.75, rng.uniform(1.0, 4.0), rng.uniform(0.3, 1.0)
    has_level, level = rng.random() < 0.3, rng.uniform(0.1, 0.5)
    cavity = (outside <= dilate) & brain | core
    out_cav = ndimage.distance_transform_edt(~cavity, sampling=step)
    wall = ~cavity & brain & (out_cav <= max(rim_mm, step))
    et = _patchy(wall, axes, rim_cover if has_rim else 0.0, 8.0, rng)
    ncr = np.zeros_like(core)
    ring = np.flatnonzero(wall)
    pick = int(rng.integers(max(len(ring), 1)))
    if has_nodule and len(ring):
        at = np.unravel_index(ring[pick], wall.shape)
        d2 = sum((ax - ax[i]).reshape([-1 if k == j else 1 for k in range(3)]) ** 2
                 for j, (ax, i) in enumerate(zip(axes, at)))
        et |= (d2 <= (0.5 * nodule_mm) ** 2) & ~cavity & brain
        if nodule_necrosis and nodule_mm > 8.0:
            ncr = (d2 <= (0.25 * nodule_mm) ** 2) & ~cavity & brain
            et &= ~ncr
    near = ~cavity & brain & (out_cav <= max(blood_mm, step)) & ~et & ~ncr
    blood = _patchy(near, axes, blood_cover if has_blood else 0.0, 6.0, rng)
    if has_level and cavity.any():
        y = axes[1][None, :, None]
        ys = np.broadcast_to(y, cavity.shape)[cavity]
        blood |= cavity & (y < ys.min() + level * (ys.max() - ys.min()))
    parts = {"ET": et, "NCR": ncr, "NET": np.zeros_like(core), "cavity": cavity, "blood": blood}
    info = {"cavity_dilation_mm": round(float(dilate), 2), "residual_edema": round(float(shrink), 3),
            "residual_rim": bool(has_rim), "nodule_mm": round(float(nodule_mm), 2) if has_nodule else 0.0,
            "blood_cover": round(float(blood_cover), 3) if has_blood else 0.0,
            "fluid_level": round(float(level), 3) if has_level else 0.0}
    return parts, out_cav, margin * shrink, info


def _choice(rng: np.random.Generator, table: dict[str, float]) -> str:
    return str(rng.choice(list(table), p=list(table.values())))


def _satellite(tissue, centre, rng) -> np.ndarray | None:
    """A centre 12-45 mm from ``centre`` in cerebral parenchyma (up to 10 tries), or None."""
    parenchyma = sites(tissue.spacing)["parenchyma"]
    for _ in range(10):
        u = rng.standard_normal(3)
        point = centre + rng.uniform(12.0, 45.0) * u / np.linalg.norm(u)
        idx = _index(tissue, point)
        if idx is not None and np.isin(np.ravel_multi_index(idx, tissue.mask.shape), parenchyma):
            return point
    return None


def grow_lesion(tissue: glioma.TissueMaps, rng: np.random.Generator, postop: bool = False) -> Lesion:
    """Draw and rasterise one case's tumour (all ranges in the module docstring).

    Args:
        tissue: the template's tissue maps (:func:`rfmweb.samples.glioma.tissue_maps`).
        rng: the case's geometry stream.
        postop: resect the main focus (the ``postop`` split).

    Returns:
        The :class:`Lesion`, on the anatomy deformed by the mass effect.
    """
    step = tissue.spacing
    n_foci = 1 + int(rng.choice(3, p=[0.7, 0.2, 0.1]))
    small, tiny, large = rng.random() < 0.2, np.exp(rng.uniform(np.log(5.0), np.log(20.0))), rng.uniform(25.0, 90.0)
    diameter = tiny if small and not postop else large
    site = _choice(rng, SITES)
    kind = _choice(rng, CORE_TYPES)
    candidates = sites(step)[site]
    if site == "deep":
        deep = candidates[tissue.depth.ravel()[candidates] >= 0.3 * diameter + 5.0]
        candidates = deep if len(deep) else candidates
    centre = _world(tissue, int(candidates[rng.integers(len(candidates))]))
    strength = rng.uniform(0.0, 0.15) if postop else rng.uniform(0.1, 0.55)
    anatomy, shift = mass_effect(tissue, centre, diameter, strength, rng)
    foci = [(centre, diameter, kind, postop)]
    for _ in range(n_foci - 1):
        where = _satellite(tissue, centre, rng)
        size = max(5.0, diameter * rng.uniform(0.25, 0.6))
        sat_kind = "solid" if postop else _choice(rng, CORE_TYPES)
        if where is not None:
            foci.append((where, size, sat_kind, False))
    drawn = [_focus(anatomy, c, d, k, r, rng) for c, d, k, r in foci]
    brain_box = _brain_box(step)
    box = tuple(slice(max(min(b[a].start for b, _, _ in drawn), brain_box[a].start),
                      min(max(b[a].stop for b, _, _ in drawn), brain_box[a].stop)) for a in range(3))
    shape = tuple(s.stop - s.start for s in box)
    union = {k: np.zeros(shape, np.float32 if k in ("membership", "ED") else bool)
             for k in ("NCR", "NET", "ET", "cavity", "blood", "membership", "ED")}
    for sub, parts, _ in drawn:
        src, dst = _overlap(sub, box)
        for k, v in parts.items():
            np.maximum(union[k][dst], v[src], out=union[k][dst])
    centres = [_index(tissue, c) for c, _, _, _ in foci]
    keep = [tuple(i - b.start for i, b in zip(c, box)) for c in centres if c is not None]
    labels, weights, cavity = _compose(union, anatomy.mask[box], keep, step, rng)
    full_labels = np.zeros(tissue.mask.shape, np.uint8)
    full_cavity = np.zeros(tissue.mask.shape, bool)
    full_labels[box], full_cavity[box] = labels, cavity
    info = {"site": site, "foci": len(drawn), "mass_effect_mm": round(shift, 2),
            "main": drawn[0][2], "satellites": [d[2] for d in drawn[1:]]}
    return Lesion(full_labels, full_cavity, box, weights, anatomy, info)


def _compose(union: dict[str, np.ndarray], brain: np.ndarray, keep: list[tuple[int, int, int]], step: float,
             rng: np.random.Generator):
    """Labels ``[bx, by, bz]`` (core over edema; blood and cavity unlabelled), compartment weights
    with partial volume (gaussian, sigma 0.5-1.5 mm) and the cavity mask, from the foci's union;
    ``keep`` are the foci centres (box indices), whose components are kept however small."""
    sigma = rng.uniform(0.5, 1.5) / step
    # edema only where connected to a core or a cavity (through membership > 0.2), as in BraTS
    seeds = union["ET"] | union["NCR"] | union["NET"] | union["cavity"]
    lab, _ = ndimage.label((union["membership"] > 0.2) | seeds)
    attached = np.isin(lab, np.unique(lab[seeds]))
    union["membership"] *= attached
    union["ED"] *= attached
    et = union["ET"]
    ncr = union["NCR"] & ~et
    net = union["NET"] & ~et & ~ncr
    blood = union["blood"] & ~(et | ncr | net)
    cavity = union["cavity"] & ~blood & ~(et | ncr | net)      # the fluid (blood may layer in it)
    labels = np.where(union["membership"] > 0.5, np.uint8(2), np.uint8(0))
    labels[ncr | net] = 1
    labels[et] = 3
    labels[blood | cavity] = 0
    # specks (a few voxels of a threshold's ragged edge) are neither drawn nor labelled; a tiny
    # focus is not a speck
    lab, _ = ndimage.label(labels > 0, structure=np.ones((3, 3, 3)))
    small = np.bincount(lab.ravel()) < int(np.ceil(SPECK_MM3 / step ** 3))
    small[[lab[i] for i in keep]] = False
    speck = small[lab] & (lab > 0)
    labels[speck] = 0
    et, ncr, net = et & ~speck, ncr & ~speck, net & ~speck
    union["ED"][speck] = 0.0
    solids = {"NCR": ncr, "NET": net, "ET": et, "cavity": cavity, "blood": blood}
    weights = {k: ndimage.gaussian_filter(m.astype(np.float32), sigma) * brain if m.any()
               else np.zeros(m.shape, np.float32) for k, m in solids.items()}
    solid = np.clip(sum(weights.values()), 0.0, 1.0)
    weights["ED"] = union["ED"] * (1.0 - solid) * brain
    return labels, weights, union["cavity"]
