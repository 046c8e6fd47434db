"""Procedural CT of a human torso (chest and upper abdomen) with labelled anatomy.

Everything is analytic geometry in world millimetres, RAS+ (+x the patient's right, +y anterior,
+z superior), centred at the origin; z runs from about L3 (-200 mm) to the base of the neck
(+200 mm). Shapes: superellipse body sections with fat and muscle layers, ellipsoidal organs,
elliptic tubes and a half-torus aortic arch, capsules for the vertebral processes and clavicles,
and ribs as bands wound around the chest-wall ellipse, descending as they run forward.

Structures are painted in order, later ones winning, so labels never overlap. Intensities are in
Hounsfield units: a value per structure plus some texture (lung vessels, bowel loops), a gaussian
blur (sigma 0.7 voxel, partial volume) and seeded gaussian noise (sigma 10 HU). The anatomy is
fixed but for the bowel loops; the seed drives them, the other texture and the noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..volume import LabelClass, Volume

FOV_Z_MM = 400.0           # superior-inferior field of view; x and y get 0.8 and 0.6 of it
BLUR_VOXELS = 0.7
NOISE_HU = 10.0

CLASSES = (
    LabelClass(0, "background", (0.0, 0.0, 0.0)),
    LabelClass(1, "spine", (0.95, 0.92, 0.80), "skeleton"),
    LabelClass(2, "intervertebral discs", (0.72, 0.82, 0.90), "skeleton"),
    LabelClass(3, "ribs", (0.93, 0.89, 0.76), "skeleton"),
    LabelClass(4, "costal cartilage", (0.80, 0.86, 0.86), "skeleton"),
    LabelClass(5, "sternum", (0.90, 0.86, 0.72), "skeleton"),
    LabelClass(6, "clavicles", (0.92, 0.88, 0.74), "skeleton"),
    LabelClass(7, "scapulae", (0.90, 0.85, 0.70), "skeleton"),
    LabelClass(8, "right lung", (0.98, 0.66, 0.70), "organs"),
    LabelClass(9, "left lung", (0.94, 0.60, 0.68), "organs"),
    LabelClass(10, "airways", (0.65, 0.85, 0.95), "organs"),
    LabelClass(11, "heart", (0.66, 0.20, 0.17), "organs"),
    LabelClass(12, "liver", (0.55, 0.27, 0.14), "organs"),
    LabelClass(13, "spleen", (0.56, 0.26, 0.52), "organs"),
    LabelClass(14, "stomach", (0.92, 0.62, 0.50), "organs"),
    LabelClass(15, "bowel", (0.84, 0.66, 0.52), "organs"),
    LabelClass(16, "right kidney", (0.80, 0.42, 0.28), "organs"),
    LabelClass(17, "left kidney", (0.80, 0.42, 0.28), "organs"),
    LabelClass(18, "spinal cord", (0.98, 0.82, 0.25), "organs"),
    LabelClass(19, "aorta", (0.86, 0.10, 0.10), "vessels"),
    LabelClass(20, "inferior vena cava", (0.15, 0.30, 0.85), "vessels"),
    LabelClass(21, "superior vena cava", (0.22, 0.42, 0.90), "vessels"),
    LabelClass(22, "subcutaneous fat", (0.96, 0.86, 0.45), "soft tissue"),
    LabelClass(23, "visceral fat", (0.98, 0.93, 0.66), "soft tissue"),
    LabelClass(24, "muscle", (0.76, 0.30, 0.27), "soft tissue"),
)
_ID = {c.name: c.index for c in CLASSES}

# Vertebrae top to bottom: (name, period mm, disc mm, body radius mm, canal radius mm).
_SPINE = ([("C7", 16.0, 4.0, 12.0, 9.0)]
          + [(f"T{k}", 20.0 + 0.8 * (k - 1), 5.0, 15.0 + 0.45 * k, 8.0) for k in range(1, 13)]
          + [(f"L{k}", 32.0, 8.0, 21.0 + k, 10.0) for k in (1, 2, 3)])
_SPINE_TOP_MM = 200.0
# Sternal attachment heights (mm) of the costal cartilages of the true ribs 1..7.
_STERNAL_Z = (135.0, 100.0, 78.0, 56.0, 34.0, 12.0, -8.0)
# Angle (fractions of pi; 0 at the back, 1 at the front) where the bone of ribs 1..12 ends.
_RIB_END = (0.72, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.76, 0.7, 0.64, 0.5, 0.38)
_RIB_START = 0.2 * np.pi


@dataclass(frozen=True)
class _Grid:
    """World coordinates (mm) of voxel centres, broadcastable: x ``[X,1,1]``, y ``[1,Y,1]``, z ``[1,1,Z]``."""

    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    spacing: float

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.x.shape[0], self.y.shape[1], self.z.shape[2]

    def box(self, lo, hi) -> tuple[tuple[slice, slice, slice], "_Grid"]:
        """Voxel slices and sub-grid of the world box ``lo..hi`` (mm, each ``[3]``), never empty."""
        sl = []
        for axis, v in enumerate((self.x.ravel(), self.y.ravel(), self.z.ravel())):
            i0, i1 = (int(i) for i in np.searchsorted(v, [lo[axis], hi[axis]]))
            i0 = min(i0, len(v) - 1)
            sl.append(slice(i0, max(i1, i0 + 1)))
        return tuple(sl), _Grid(self.x[sl[0]], self.y[:, sl[1]], self.z[..., sl[2]], self.spacing)


class _Canvas:
    """Label map ``[X, Y, Z]`` uint8 and HU map ``[X, Y, Z]`` float32, painted in order."""

    def __init__(self, shape: tuple[int, int, int]) -> None:
        self.labels = np.zeros(shape, np.uint8)
        self.hu = np.full(shape, -1000.0, np.float32)

    def paint(self, name: str, mask: np.ndarray, hu, where=(slice(None),) * 3) -> None:
        """Set ``mask`` (inside the slices ``where``) to class ``name`` and ``hu`` (scalar or array)."""
        labels, values = self.labels[where], self.hu[where]
        mask = np.broadcast_to(mask, labels.shape)
        labels[mask] = _ID[name]
        values[mask] = np.broadcast_to(hu, mask.shape)[mask] if np.ndim(hu) else hu


def smooth_field(axes, rng: np.random.Generator, cell_mm: float) -> np.ndarray:
    """Smooth random field ``[len(axes[0]), len(axes[1]), len(axes[2])]`` float32 on the grid of
    voxel-centre coordinates ``axes`` (mm): gaussian bumps (sigma ``cell_mm``) on a knot lattice
    ``cell_mm`` apart with N(0, 1) weights from ``rng``, scaled to zero mean and unit variance.
    Separable, so it costs a few small matrix products instead of a 3-D filter."""
    bases = []
    for a in axes:
        a = np.asarray(a, np.float64).ravel()
        knots = np.arange(a.min() - 2 * cell_mm, a.max() + 2 * cell_mm + 1e-6, cell_mm)
        bases.append(np.exp(-0.5 * ((a[:, None] - knots) / cell_mm) ** 2).astype(np.float32))
    f = rng.standard_normal(tuple(b.shape[1] for b in bases)).astype(np.float32)
    f = f @ bases[2].T                                        # [kx, ky, Z]
    f = np.einsum("jb,abk->ajk", bases[1], f)                 # [kx, Y, Z]
    f = np.tensordot(bases[0], f, axes=(1, 0))                # [X, Y, Z]
    return (f - f.mean()) / (f.std() + 1e-6)


def _frame(first, second) -> np.ndarray:
    """``[3, 3]`` orthonormal rows: ``first``, ``second`` made orthogonal to it, their cross product."""
    u = np.asarray(first, float) / np.linalg.norm(first)
    v = np.asarray(second, float) - np.dot(second, u) * u
    v /= np.linalg.norm(v)
    return np.stack([u, v, np.cross(u, v)])


def _ellipsoid(g: _Grid, centre, semi, frame=np.eye(3), margin: float = 1.4):
    """``(slices, r2)``: squared normalised radius ``r2`` (< 1 inside) of an ellipsoid with
    semi-axes ``semi`` (mm) along the rows of ``frame``, on the box of half-size
    ``margin * max(semi)`` around ``centre``."""
    half = margin * max(semi)
    where, s = g.box(np.subtract(centre, half), np.add(centre, half))
    d = [c - float(v) for c, v in zip((s.x, s.y, s.z), centre)]
    return where, sum((sum(float(a[i]) * d[i] for i in range(3) if a[i]) / r) ** 2 for a, r in zip(frame, semi))


def _capsule(g: _Grid, a, b, radius: float) -> np.ndarray:
    """Mask of points within ``radius`` mm of the segment ``a``-``b`` (mm)."""
    ab = [float(q - p) for p, q in zip(a, b)]
    d = [c - float(p) for c, p in zip((g.x, g.y, g.z), a)]
    t = np.clip(sum(d[i] * ab[i] for i in range(3)) / sum(v * v for v in ab), 0.0, 1.0)
    return sum((d[i] - t * ab[i]) ** 2 for i in range(3)) < radius ** 2


def _tube_z(g: _Grid, cx, cy, radius, z0: float, z1: float) -> np.ndarray:
    """Vertical tube of ``radius`` mm around ``(cx(z), cy(z))`` between heights z0 < z1 (mm)."""
    return ((g.x - cx) ** 2 + (g.y - cy) ** 2 < radius ** 2) & (g.z >= z0) & (g.z <= z1)


def _spine_y(z):
    """Vertebral-body centre y (mm) at height z: thoracic kyphosis, lumbar lordosis."""
    return -30.0 - 8.0 * np.cos(np.pi * (z - 40.0) / 300.0)


def _levels() -> list[tuple[str, float, float, float, float]]:
    """``(name, centre z, body height, body radius, canal radius)`` per vertebra, mm, top down."""
    tops = _SPINE_TOP_MM - np.cumsum([0.0] + [v[1] for v in _SPINE])
    return [(name, top - period / 2, period - disc, r, rc) for top, (name, period, disc, r, rc) in zip(tops, _SPINE)]


@dataclass(frozen=True)
class _Body:
    """Body section profiles along z, each ``[1, 1, Z]`` mm: half-width ``ax``, anterior and
    posterior half-depths, subcutaneous fat thickness, semi-axes of the chest-wall (rib) ellipse."""

    ax: np.ndarray
    front: np.ndarray
    back: np.ndarray
    fat: np.ndarray
    cage_x: np.ndarray
    cage_front: np.ndarray
    cage_back: np.ndarray


def _body(z: np.ndarray) -> _Body:
    shoulder = np.sqrt(1.0 - np.clip((z - 120.0) / 70.0, 0.0, 1.0) ** 2)   # 1 in the trunk, 0 at the neck
    belly = np.clip(-(z + 40.0) / 160.0, 0.0, 1.0)                          # 0 in the chest, 1 at L3
    apex = np.clip((z - 30.0) / 150.0, 0.0, 1.0) ** 1.6                    # the cage narrows upwards
    ax = 55.0 + (90.0 - 8.0 * belly) * shoulder
    front = 45.0 + (57.0 + 10.0 * belly) * shoulder
    back = 50.0 + 50.0 * shoulder
    fat = 16.0 + 10.0 * belly
    wall = fat + 6.0  # thin intercostal/abdominal muscle; the thick muscles are painted separately
    return _Body(ax, front, back, fat,
                 np.maximum(np.minimum(ax - wall, 122.0 - 60.0 * apex), 10.0),
                 np.maximum(np.minimum(front - wall, 84.0 - 40.0 * apex), 10.0),
                 np.maximum(np.minimum(back - wall, 76.0 - 30.0 * apex), 10.0))


def _superellipse(g: _Grid, b: _Body, inset=0.0, p: float = 2.4) -> np.ndarray:
    """Normalised superellipse radius (< 1 inside) of the body section shrunk by ``inset`` mm."""
    ay = np.where(g.y >= 0, b.front - inset, b.back - inset)
    return (np.abs(g.x) / (b.ax - inset)) ** p + (np.abs(g.y) / ay) ** p


def _diaphragm(g: _Grid) -> np.ndarray:
    """Height (mm) ``[X, Y, 1]`` of the diaphragm: two domes, the right one higher (liver)."""
    right = -5.0 - 0.012 * ((g.x - 55.0) ** 2 + (1.2 * (g.y + 5.0)) ** 2)
    left = -20.0 - 0.012 * ((g.x + 55.0) ** 2 + (1.2 * (g.y + 5.0)) ** 2)
    return np.maximum(np.maximum(right, left), -42.0 - 0.01 * g.y ** 2)


def _chest_wall(g: _Grid, b: _Body) -> tuple[np.ndarray, np.ndarray]:
    """Angle ``theta`` (0 at the back, pi at the front) around the rib ellipse and signed
    radial distance (mm, > 0 outside) from it, each ``[X, Y, Z]``."""
    ry = np.where(g.y < 0, b.cage_back, b.cage_front)
    u, v = np.abs(g.x) / b.cage_x, -g.y / ry
    rho = np.hypot(u, v)
    return np.arctan2(u, v), np.hypot(g.x, g.y) * (1.0 - 1.0 / np.maximum(rho, 1e-3))


def _heart(g: _Grid):
    return _ellipsoid(g, (-16.0, 18.0, 24.0), (62.0, 42.0, 38.0), _frame((-0.6, 0.45, -0.55), (0, 1, 0)))


def _paint_body(c: _Canvas, g: _Grid, b: _Body, cavity, dome, rng) -> None:
    """Fat and muscle layers, the diaphragm, and what fills the cavity around the organs:
    mediastinal fat above the diaphragm, bowel loops (with some gas) in fat below it."""
    c.paint("subcutaneous fat", _superellipse(g, b) < 1, -100.0)
    c.paint("muscle", _superellipse(g, b, b.fat) < 1, 50.0)
    c.paint("visceral fat", cavity, -90.0)
    axes = (g.x, g.y, g.z)
    b1, b2 = (smooth_field(axes, rng, 18.0) for _ in range(2))
    # loops: a band around the zero set of a smooth field (meandering tubes in any slice), gas
    # along the middle of some of them
    gas = (np.abs(b1) < 0.2) & (b2 > 1.2)
    c.paint("bowel", cavity & (g.z < dome) & (np.abs(b1) < 0.5), np.where(gas, -950.0, 30.0))
    c.paint("muscle", cavity & (g.z <= dome) & (g.z > dome - 6.0), 50.0)
    ys = _spine_y(g.z)
    erector = ((np.abs(g.x) - 30.0) / 24.0) ** 2 + ((g.y - ys + 48.0) / 17.0) ** 2 < 1
    grow = np.clip(-(g.z + 95.0) / 100.0, 0.0, 1.0)
    psoas = (((np.abs(g.x) - 34.0 - 10.0 * grow) / (6.0 + 14.0 * grow)) ** 2
             + ((g.y - ys + 2.0) / (6.0 + 10.0 * grow)) ** 2 < 1) & (grow > 0)
    c.paint("muscle", erector | psoas, 50.0)


def _paint_lungs(c: _Canvas, g: _Grid, cavity, dome, rng) -> None:
    spine_zone = ((g.x / 34.0) ** 2 + ((g.y - _spine_y(g.z) + 12.0) / 40.0) ** 2) < 1
    mediastinum = np.abs(g.x + 4.0) < 20.0 - 0.12 * np.clip(g.y, 0.0, 100.0)
    keep = cavity & (g.z > dome + 1.0) & ~spine_zone & ~mediastinum
    where, heart = _heart(g)
    keep[where] &= heart > 1.25 ** 2
    # vessel-like texture: tubes where two smooth fields both cross zero, densest at the hila
    f1, f2 = (smooth_field((g.x, g.y, g.z), rng, 9.0) for _ in range(2))
    tubes = np.exp(-(f1 ** 2 + f2 ** 2) / 0.05)
    for side, name in ((1.0, "right lung"), (-1.0, "left lung")):
        hilum = np.sqrt((g.x - 45.0 * side) ** 2 + (g.y + 5.0) ** 2 + (g.z - 70.0) ** 2)
        hu = -860.0 + 750.0 * tubes * np.exp(-hilum / 70.0)
        where, r2 = _ellipsoid(g, (62.0 * side, -5.0, 40.0), (85.0, 100.0, 140.0), margin=1.0)
        c.paint(name, keep[where] & (g.x[where[0]] * side > 0) & (r2 < 1), hu[where], where)


def _paint_abdomen(c: _Canvas, g: _Grid, cavity, dome, rng) -> None:
    below = cavity & (g.z < dome - 6.0)
    where, r2 = _ellipsoid(g, (45.0, 5.0, -55.0), (108.0, 95.0, 85.0), margin=1.0)
    lobe = g.z[..., where[2]] > -150.0 + 0.55 * np.maximum(60.0 - g.x[where[0]], 0.0)
    texture = 60.0 + 4.0 * smooth_field((g.x[where[0]], g.y[:, where[1]], g.z[..., where[2]]), rng, 6.0)
    c.paint("liver", below[where] & (r2 < 1) & lobe, texture, where)
    where, r2 = _ellipsoid(g, (-45.0, 18.0, -62.0), (62.0, 36.0, 30.0), _frame((0.45, 0.3, -1.0), (0, 1, 0)))
    c.paint("stomach", below[where] & (r2 < 1), np.where(g.y[:, where[1]] > 34.0, -1000.0, 25.0), where)
    where, r2 = _ellipsoid(g, (-82.0, -40.0, -48.0), (70.0, 28.0, 45.0), _frame((0.25, 0.5, -1.0), (-1, -0.7, 0)))
    c.paint("spleen", below[where] & (r2 < 1), 50.0, where)
    for side, name, zc in ((1.0, "right kidney", -140.0), (-1.0, "left kidney", -122.0)):
        centre = np.array([62.0 * side, -40.0, zc])
        hilum = np.array([-side, 1.0, 0.0]) / np.sqrt(2.0)          # faces antero-medially
        frame = _frame((-0.25 * side, -0.2, 1.0), hilum)           # upper pole medial, posterior
        where, r2 = _ellipsoid(g, centre, (55.0, 26.0, 20.0), frame)
        c.paint("visceral fat", r2 < 1.35 ** 2, -90.0, where)       # perirenal fat
        c.paint(name, r2 < 1, 35.0, where)
        where, r2 = _ellipsoid(g, centre + 24.0 * hilum, (24.0, 11.0, 11.0), frame)
        c.paint("visceral fat", r2 < 1, -70.0, where)                # renal sinus


def _paint_heart_vessels_airways(c: _Canvas, g: _Grid) -> None:
    where, r2 = _heart(g)
    c.paint("visceral fat", r2 < 1.08 ** 2, -80.0, where)           # pericardial fat
    c.paint("heart", r2 < 1, 45.0, where)
    carina = (3.0, -3.0, 100.0)
    airway = _tube_z(g, 3.0, -3.0, 8.0, 100.0, 260.0) | _capsule(g, carina, (42.0, -6.0, 78.0), 6.0) \
        | _capsule(g, carina, (-44.0, -8.0, 74.0), 5.5)
    c.paint("airways", airway, -1000.0)
    z, low = g.z, np.clip(-(g.z + 40.0) / 160.0, 0, 1)
    asc, top = np.array([4.0, 30.0]), 105.0
    desc = np.array([-18.0, float(_spine_y(top)) + 22.0])
    centre, radius = (asc + desc) / 2, float(np.linalg.norm(asc - desc)) / 2
    (cx, cy), (ux, uy) = centre.tolist(), ((asc - centre) / radius).tolist()
    along = (g.x - cx) * ux + (g.y - cy) * uy
    across = (g.y - cy) * ux - (g.x - cx) * uy
    arch = ((np.hypot(along, z - top) - radius) ** 2 + across ** 2 < 12.0 ** 2) & (z >= top)
    aorta = arch | _tube_z(g, asc[0], asc[1], 14.0, 40.0, top) \
        | _tube_z(g, -18.0 + 10.0 * low, _spine_y(z) + 22.0 + 6.0 * low, 12.0 - 2.0 * low, -260.0, top)
    for t, r in ((0.25, 6.0), (0.5, 4.5), (0.75, 5.0)):               # brachiocephalic, carotid, subclavian
        x, y = (centre + radius * np.cos(np.pi * t) * np.array([ux, uy])).tolist()
        aorta |= _tube_z(g, x, y, r, top, 260.0)
    c.paint("aorta", aorta, 300.0)
    c.paint("inferior vena cava", _tube_z(g, 24.0, _spine_y(z) + 22.0, 11.0, -260.0, -12.0), 180.0)
    c.paint("superior vena cava", _tube_z(g, 26.0, 18.0, 9.0, 35.0, 150.0), 180.0)


def _paint_spine(c: _Canvas, g: _Grid) -> None:
    """Vertebral bodies (cortical shell 1000 HU, cancellous 250 HU), discs, spinal canal, arches."""
    shell = max(2.0, 0.6 * g.spacing)
    for name, zc, h, r, rc in _levels():
        where, s = g.box((-60.0, -140.0, zc - h / 2 - 4.5), (60.0, 40.0, zc + h / 2 + 4.5))
        ys = _spine_y(s.z)
        rho = np.hypot(s.x / (1.1 * r), (s.y - ys) / r)
        depth = np.minimum((1.0 - rho) * r, h / 2 - np.abs(s.z - zc))
        c.paint("intervertebral discs", (rho < 0.95) & (depth < 0), 90.0, where)
        c.paint("spine", depth > 0, np.where(depth < shell, 1000.0, 250.0), where)
        ring = np.hypot(s.x, s.y - ys + r + rc + 1.0)                        # from the canal's axis
        c.paint("spinal cord", ring < rc, 30.0, where)
        yc = float(_spine_y(zc)) - r - rc - 1.0
        arch = (ring > rc) & (ring < rc + 6.0) & (np.abs(s.z - zc) < 0.35 * h + 2.0)
        lumbar = name.startswith("L")
        tip = (0.0, yc - rc - (28.0 if lumbar else 30.0), zc - (4.0 if lumbar else 14.0))
        arch |= _capsule(s, (0.0, yc - rc - 3.0, zc), tip, 4.0)
        for side in (1.0, -1.0):
            reach = rc + (32.0 if lumbar else 22.0)
            arch |= _capsule(s, (side * rc, yc, zc), (side * reach, yc - 8.0, zc + 2.0), 4.5)
        c.paint("spine", arch & (depth <= 0), 600.0, where)


def _rib_height(theta, head: float, drop: float):
    """Height (mm) of a rib at angle ``theta``: it leaves its vertebra at ``head`` and falls by
    ``drop`` mm on its way to the front."""
    t = (np.clip(theta, _RIB_START, np.pi) - _RIB_START) / (np.pi - _RIB_START)
    return head - drop * t ** 1.3


def _paint_ribs(c: _Canvas, g: _Grid, theta, radial) -> None:
    """Twelve pairs of ribs around the chest-wall ellipse, costal cartilages to the sternum
    (ribs 1-7) or to the cartilage above (8-10), ribs 11-12 floating."""
    half_t, half_w = max(4.0, 0.55 * g.spacing), max(6.0, 0.55 * g.spacing)   # thickness, height
    sel = np.nonzero(np.abs(radial) < half_t)
    th, zz, xx = theta[sel], np.broadcast_to(g.z, theta.shape)[sel], np.broadcast_to(g.x, theta.shape)[sel]
    ribs, cartilage = np.zeros(th.shape, bool), np.zeros(th.shape, bool)
    thoracic = [lv for lv in _levels() if lv[0].startswith("T")]
    z7 = 0.0
    for k, (_, zc, h, _, _) in enumerate(thoracic):
        head, end = zc + 0.25 * h, np.pi * _RIB_END[k]
        drop = (head - _STERNAL_Z[k] + 10.0) / _rib_height(end, 0.0, -1.0) if k < 7 else 95.0 if k < 10 else 50.0
        ribs |= (th >= _RIB_START) & (th <= end) & (np.abs(zz - _rib_height(th, head, drop)) < half_w)
        z_end = _rib_height(end, head, drop)
        z7 = z_end if k == 6 else z7
        if k < 10:
            stop = 0.95 * np.pi if k < 7 else 0.86 * np.pi
            target = _STERNAL_Z[k] if k < 7 else z7 + 6.0 - 4.0 * (k - 7)
            z_cart = z_end + (target - z_end) * np.clip((th - end) / (stop - end), 0, 1)
            cartilage |= (th > end) & (th <= stop) & (np.abs(zz - z_cart) < 0.8 * half_w)
    for name, mask, hu in (("costal cartilage", cartilage & (np.abs(xx) > 12.0), 120.0), ("ribs", ribs, 700.0)):
        full = np.zeros(theta.shape, bool)
        full[sel] = mask
        c.paint(name, full, hu)


def _paint_sternum_and_shoulders(c: _Canvas, g: _Grid, b: _Body, theta, radial) -> None:
    """Sternum (manubrium, body, xiphoid); scapulae: thin plates on the back of the rib cage;
    clavicles: bent bars from the manubrium out to the shoulders."""
    z = g.z
    width = np.where(z > 95.0, 26.0 - 0.15 * (95.0 - z), 15.0 - 5.0 * np.clip((10.0 - z) / 35.0, 0, 1))
    depth = np.hypot(np.maximum(np.abs(g.x) - width + 6.0, 0.0) / 6.0, (g.y - b.front + b.fat + 11.0) / 7.0)
    sternum = (depth < 1) & (np.abs(g.x) < width) & (z > -30.0) & (z < 145.0)
    c.paint("sternum", sternum, np.where(depth > 0.6, 800.0, 300.0))
    lateral = np.pi * (0.24 + 0.26 * np.clip((z - 40.0) / 115.0, 0, 1))
    plate = (np.abs(radial - 14.0) < max(3.0, 0.55 * g.spacing)) & (theta > 0.2 * np.pi) & (theta < lateral)
    c.paint("scapulae", plate & (z > 40.0) & (z < 160.0), 650.0)
    where, s = g.box((-160.0, -60.0, 110.0), (160.0, 120.0, 180.0))
    front = float(b.front.max()) - 22.0
    bone = np.zeros(s.shape, bool)
    for side in (1.0, -1.0):
        mid = (side * 70.0, front - 5.0, 150.0)
        bone |= _capsule(s, (side * 22.0, front, 140.0), mid, 6.0) | _capsule(s, mid, (side * 118.0, -15.0, 158.0), 5.5)
    c.paint("clavicles", bone, 700.0, where)


def paint_torso(g: _Grid, b: _Body, rng: np.random.Generator) -> _Canvas:
    """Every structure of the torso painted on grid ``g`` with body sections ``b``, in order (later
    structures win); ``rng`` drives the texture. Also used by Render-FM's varied anatomy."""
    theta, radial = _chest_wall(g, b)
    cavity, dome = radial < -5.0, _diaphragm(g)
    c = _Canvas(g.shape)
    _paint_body(c, g, b, cavity, dome, rng)
    _paint_lungs(c, g, cavity, dome, rng)
    _paint_abdomen(c, g, cavity, dome, rng)
    _paint_heart_vessels_airways(c, g)
    _paint_spine(c, g)
    _paint_ribs(c, g, theta, radial)
    _paint_sternum_and_shoulders(c, g, b, theta, radial)
    return c


def ct_phantom(size: int = 160, seed: int = 0) -> Volume:
    """A procedural torso CT (chest and upper abdomen) with 24 labelled structures.

    Args:
        size: voxels along z (superior-inferior, 400 mm); x (320 mm) and y (240 mm) get
            ``round(0.8 * size)`` and ``round(0.6 * size)`` voxels; isotropic, ``400 / size`` mm.
        seed: drives the lung-vessel, liver and bowel texture and the noise.

    Returns:
        CT :class:`Volume` in HU (air -1000), ``[1, X, Y, Z]``, centred at the world origin,
        labels ``[X, Y, Z]`` described by :data:`CLASSES` (groups "skeleton", "organs",
        "vessels", "soft tissue"; 0 is the air around the body).

    Example:
        >>> vol = ct_phantom(48)
        >>> vol.shape, round(vol.spacing[0], 2)
        ((38, 29, 48), 8.33)
    """
    if not 16 <= int(size) <= 512:
        raise InputError(f"ct_phantom size must lie in 16..512 voxels, got {size}")
    size = int(size)
    spacing = FOV_Z_MM / size
    shape = (round(0.8 * size), round(0.6 * size), size)
    axes = [((np.arange(n) - (n - 1) / 2.0) * spacing).astype(np.float32) for n in shape]
    g = _Grid(axes[0][:, None, None], axes[1][None, :, None], axes[2][None, None, :], spacing)
    rng = np.random.default_rng(seed)
    c = paint_torso(g, _body(g.z), rng)
    hu = ndimage.gaussian_filter(c.hu, BLUR_VOXELS, mode="nearest")
    hu += NOISE_HU * rng.standard_normal(shape, dtype=np.float32)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * spacing for n in shape]
    return Volume(np.clip(hu, -1024.0, 3071.0), affine, modality="CT", channels=("intensity",),
                  labels=c.labels, classes=CLASSES, name="ct_phantom")
