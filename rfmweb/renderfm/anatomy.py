"""Varied training anatomy for Render-FM: procedural head and torso CTs, and random rendering styles.

The model must see more than one body, so every seed gives a different CT:

- ``"head"``: an analytic head in its own frame (``u``, mm; +x right, +y anterior, +z superior,
  origin at the centre of the cranial ellipsoid), placed in the scanner grid with a random tilt,
  yaw and offset. Scalp and fat, a skull vault with diploe and varying thickness, skull base with
  petrous ridges and mastoid air cells, brain (grey/white matter, CSF rim, ventricles), orbits and
  eyes, maxilla with sinuses, nasal cavity, teeth and mandible, neck with cervical vertebrae and
  airway, and sometimes a curved head-rest. Labels follow a real head CT's convention: thresholds
  on the final HU (0 air, 1 = -142 <= HU < 226 "soft tissue", 2 = HU >= 226 "bone").
- ``"torso"``: :mod:`rfmweb.samples.ct_phantom`'s anatomy painted on a warped grid (body
  width/depth/height scales, a moved diaphragm, thin or fat patients), organs sometimes removed,
  per-class HU offsets (contrast phase, bone density), rotated by a few degrees and cut along z;
  labels are :data:`~rfmweb.samples.ct_phantom.CLASSES`.

Both get a random gaussian blur (0.5-1.2 voxel, partial volume), gaussian noise (5-25 HU) and
field-of-view cuts. :func:`.styles.random_style` draws a training transfer function and class table.
The real head CT kept for evaluation is never read here.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage
from scipy.spatial.transform import Rotation

from ..errors import InputError
from ..samples.ct_phantom import CLASSES, _ID, _body, _capsule, _frame, _Grid, paint_torso, smooth_field
from ..volume import LabelClass, Volume

log = logging.getLogger(__name__)

KINDS = ("head", "torso")

#: The real head CT's label convention: two HU threshold masks.
HEAD_CLASSES = (
    LabelClass(0, "background", (0.0, 0.0, 0.0)),
    LabelClass(1, "soft tissue", (0.86, 0.62, 0.52), "soft tissue"),
    LabelClass(2, "bone", (0.93, 0.89, 0.76), "skeleton"),
)
SOFT_TISSUE_HU = -142.0   # label 1 from here ...
BONE_HU = 226.0           # ... label 2 from here
MAX_VOXELS = 96 ** 3      # grid budget at 3 mm (scaled by (3 / spacing)^3 at other spacings)
MAX_FOV_MM = 288.0        # head grid: at most 96 voxels per axis at 3 mm


def random_anatomy(seed: int, kind: str | None = None, *, spacing_mm: float = 3.0) -> Volume:
    """A procedural CT with varied anatomy, deterministic in ``seed``.

    Args:
        seed: drives everything (kind when ``kind`` is None, shape, pose, textures, noise).
        kind: ``"head"``, ``"torso"`` or ``None`` (drawn from the seed).
        spacing_mm: isotropic voxel size, mm (1-8). At 3 mm a grid holds at most ~96^3 voxels.

    Returns:
        CT :class:`Volume` in HU (air -1000, clipped to [-1024, 3071]), data ``[1, X, Y, Z]``
        float32, labels ``[X, Y, Z]`` (:data:`HEAD_CLASSES` or ct_phantom's ``CLASSES``), the grid
        centred near the world origin, name ``f"anatomy_{kind}_{seed}"``.

    Raises:
        InputError: a negative seed, an unknown ``kind`` or a spacing outside 1-8 mm.

    Example:
        >>> vol = random_anatomy(3, "head")
        >>> vol.name, vol.spacing[0]
        ('anatomy_head_3', 3.0)
    """
    if int(seed) < 0:
        raise InputError(f"seed must be >= 0, got {seed}")
    if kind is not None and kind not in KINDS:
        raise InputError(f"anatomy kind must be one of {KINDS} or None, got {kind!r}")
    if not 1.0 <= float(spacing_mm) <= 8.0:
        raise InputError(f"spacing_mm must lie in 1..8 mm, got {spacing_mm}")
    rng = np.random.default_rng([int(seed), 0x5EED])
    kind = kind or KINDS[int(rng.integers(len(KINDS)))]
    s = float(spacing_mm)
    hu, labels, classes = (_head(rng, s) if kind == "head" else _torso(rng, s))
    sigma = rng.uniform(0.5, 1.2)
    hu = ndimage.gaussian_filter(hu, sigma, mode="nearest")
    hu += rng.uniform(5.0, 25.0) * rng.standard_normal(hu.shape, dtype=np.float32)
    hu = np.clip(hu, -1024.0, 3071.0)
    if labels is None:      # the head: thresholds on the final HU, like the real scan's masks
        labels = np.where(hu >= BONE_HU, 2, np.where(hu >= SOFT_TISSUE_HU, 1, 0)).astype(np.uint8)
    affine = np.diag([s, s, s, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n in hu.shape]
    log.debug("anatomy %s %d: grid %s, blur %.2f voxel", kind, seed, hu.shape, sigma)
    return Volume(hu, affine, modality="CT", labels=labels, classes=classes, name=f"anatomy_{kind}_{seed}")


# ----------------------------------------------------------------------------- head geometry


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """``[3, 3]`` rotation ``Rz(yaw) Rx(pitch) Ry(roll)`` (degrees); its columns are the head's axes
    in world coordinates."""
    return Rotation.from_euler("ZXY", [yaw, pitch, roll], degrees=True).as_matrix()


class _Space:
    """The world grid (voxel-centre axes, mm, each ``[n]``) seen in the head frame
    ``u = R^T (p - centre)``, evaluated box by box so small structures cost little."""

    def __init__(self, axes, rot: np.ndarray, centre: np.ndarray) -> None:
        self.axes, self.rot, self.centre = axes, rot, centre
        self.shape = tuple(len(a) for a in axes)
        self.spacing = float(axes[0][1] - axes[0][0])
        self.everything = (slice(None),) * 3
        self.u = self._coords(self.everything)

    def _coords(self, sl):
        d = [a[s] - c for a, s, c in zip(self.axes, sl, self.centre)]
        d = (d[0][:, None, None], d[1][None, :, None], d[2][None, None, :])
        return tuple((self.rot[0, k] * d[0] + self.rot[1, k] * d[1] + self.rot[2, k] * d[2]).astype(np.float32)
                     for k in range(3))

    def box(self, centre, half):
        """``(slices, u)``: the world box around the head-frame box ``centre +- half`` (mm, each
        ``[3]``) and the head-frame coordinates ``(ux, uy, uz)`` on it, each ``[x, y, z]``."""
        wc = self.centre + self.rot @ np.asarray(centre, float)
        wh = np.abs(self.rot) @ np.asarray(half, float)
        sl = tuple(slice(*(int(i) for i in np.searchsorted(a, [c - h, c + h]))) for a, c, h in zip(self.axes, wc, wh))
        return sl, self._coords(sl)


def _ellipsoid(u, centre, radii, frame=None):
    """``(f, depth)`` on coordinates ``u``: normalised squared radius ``f`` (< 1 inside) of the
    ellipsoid with semi-axes ``radii`` (mm, scalars or arrays) along the rows of ``frame``, and the
    first-order depth below its surface ``(1 - f) / |grad f|`` (mm, > 0 inside; exact near the
    surface, which is where the layers are)."""
    d = [u[i] - float(c) for i, c in enumerate(centre)]
    if frame is not None:
        d = [sum(float(frame[j][i]) * d[i] for i in range(3) if frame[j][i]) for j in range(3)]
    q = [d[i] / radii[i] for i in range(3)]
    f = q[0] ** 2 + q[1] ** 2 + q[2] ** 2
    grad = 2.0 * np.sqrt(sum((q[i] / radii[i]) ** 2 for i in range(3)))
    return f, (1.0 - f) / np.maximum(grad, 1e-6)


def _coverage(depth, spacing: float):
    """Fraction of a voxel (edge ``spacing`` mm) inside a locally flat surface whose centre lies
    ``depth`` mm inside it: the partial volume of a box-filtered boundary, no aliasing."""
    return np.clip(depth / spacing + 0.5, 0.0, 1.0)


def _put(hu: np.ndarray, sl, mask, value) -> None:
    """``hu[sl][mask] = value`` (``value`` scalar or an array on the box)."""
    sub = hu[sl]
    m = np.broadcast_to(mask, sub.shape)
    sub[m] = np.broadcast_to(value, sub.shape)[m] if np.ndim(value) else value


@dataclass(frozen=True)
class _HeadShape:
    """One head's random parameters (mm and HU)."""

    A: float            # cranium semi-axes: lateral,
    B: float            # antero-posterior,
    C: float            # superior (the lower half is squashed to 0.62 C)
    skin: float
    scalp: float
    bone: float         # vault thickness (mean)
    base: float         # skull-base thickness
    csf: float          # CSF rim under the skull
    vent: float         # ventricle size factor (young 0.7 .. atrophic 1.7)
    grey: float
    white: float
    csf_hu: float
    fat_hu: float
    muscle_hu: float
    bone_scale: float   # bone density factor
    neck_fat: float
    sinus: tuple        # maxillary (right, left), frontal, sphenoid size factors; 0 = absent
    sinus_fluid: bool
    teeth: np.ndarray   # [28] bool, present
    metal: int          # tooth index with a metal crown, -1 none
    jaw_gap: float
    airway: float
    eye: float
    pineal: bool

    @property
    def Cl(self) -> float:  # noqa: N802 (the semi-axis names)
        return 0.62 * self.C

    @property
    def jaw(self) -> tuple[float, float, float, float]:
        """Heights (mm): upper and lower occlusal planes, top and bottom of the mandible body."""
        zu = -0.72 * self.C
        zl = zu - 9.0 - self.jaw_gap
        return zu, zl, zl - 12.0, zl - 40.0

    @property
    def canal_y(self) -> float:
        """y (mm) of the spinal canal and foramen magnum."""
        return -0.24 * self.B - 17.0


def _head_shape(rng: np.random.Generator) -> _HeadShape:
    k = rng.uniform(0.86, 1.1)
    A, B, C = (float(np.clip(m * k * rng.uniform(0.94, 1.06), lo, hi))
               for m, lo, hi in ((82.0, 70.0, 100.0), (98.0, 85.0, 115.0), (94.0, 80.0, 110.0)))
    grey = rng.uniform(37.0, 45.0)
    return _HeadShape(
        A, B, C, skin=rng.uniform(1.5, 3.0), scalp=rng.uniform(4.0, 7.5), bone=rng.uniform(4.5, 8.5),
        base=rng.uniform(5.0, 9.0), csf=rng.uniform(1.0, 3.5), vent=rng.uniform(0.7, 1.7), grey=grey,
        white=grey - rng.uniform(4.0, 8.0),
        csf_hu=rng.uniform(5.0, 15.0), fat_hu=rng.uniform(-110.0, -80.0), muscle_hu=rng.uniform(40.0, 60.0),
        bone_scale=rng.uniform(0.85, 1.15), neck_fat=rng.uniform(3.0, 12.0),
        sinus=tuple(float(rng.uniform(0.6, 1.25)) if rng.random() < p else 0.0 for p in (0.9, 0.9, 0.7, 0.8)),
        sinus_fluid=bool(rng.random() < 0.1), teeth=rng.random(28) > 0.1,
        metal=int(rng.integers(28)) if rng.random() < 0.3 else -1, jaw_gap=rng.uniform(0.0, 8.0),
        airway=rng.uniform(5.0, 9.0), eye=rng.uniform(11.0, 12.5), pineal=bool(rng.random() < 0.5))


def _skull_base(h: _HeadShape, ux, uy):
    """Height (mm, head frame) of the floor of the cranial cavity at ``(ux, uy)``: high under the
    frontal lobes, dipping in the middle fossae, lowest in the posterior fossa."""
    t = np.clip((0.55 - uy / h.B) / 1.1, 0.0, 1.0)
    fossa = (np.clip(1 - ((np.abs(ux) - 0.42 * h.A) / (0.25 * h.A)) ** 2, 0, 1)
             * np.clip(1 - (uy / (0.35 * h.B)) ** 2, 0, 1))
    return -h.C * (0.05 + 0.42 * t ** 1.3 + 0.12 * fossa)


def _cranium(h: _HeadShape, u):
    """``(f, depth)`` of the cranial ellipsoid: egg-shaped (wider at the back), its lower half squashed."""
    rx = h.A * (1.0 + 0.05 * np.clip(-u[1] / h.B, -1.0, 1.0))
    return _ellipsoid(u, (0, 0, 0), (rx, h.B, np.where(u[2] > 0, h.C, h.Cl)))


def _front(h: _HeadShape, x: float, z: float) -> float:
    """y (mm) of the cranial surface in front at head-frame ``(x, z)``, z < 0."""
    return h.B * math.sqrt(max(1.0 - (x / h.A) ** 2 - (z / h.Cl) ** 2, 0.05))


def _arch(u, y0: float, rx: float, ry: float):
    """``(rho, phi)``: normalised radius and angle (0 in front) about the dental arch ellipse."""
    a, b = u[0] / rx, (u[1] - y0) / ry
    return np.sqrt(a * a + b * b), np.arctan2(a, b)


def _head_body(h: _HeadShape, sp: _Space, hu: np.ndarray, rng) -> np.ndarray:
    """Paint skin, subcutaneous fat and muscle over the union of cranium, face, chin, nose, ears and
    neck; returns the depth below the skin ``[X, Y, Z]`` (mm, > 0 inside)."""
    u = sp.u
    depth = _cranium(h, u)[1]
    rx_face = 0.8 * h.A * (1.0 - 0.25 * np.clip((-u[2] - 0.62 * h.C) / (0.6 * h.C), 0.0, 1.0))
    parts = [((0, 0.32 * h.B, -0.62 * h.C), (rx_face, 0.64 * h.B, 0.62 * h.C), None),
             ((0, 0.7 * h.B, h.jaw[3] + 10.0), (0.3 * h.A, 0.2 * h.B, 0.16 * h.C), None),      # chin
             ((0, _front(h, 0, -0.36 * h.C) + 2.0, -0.36 * h.C), (11.0, 15.0, 24.0),         # nose
              _frame((0, -0.35, 0.94), (1, 0, 0))[[1, 2, 0]])]
    for s in (1.0, -1.0):                                                                  # ears
        x = s * h.A * math.sqrt(1 - 0.08 ** 2 - (0.25 / 0.62) ** 2)
        parts.append(((x + s * 4.0, -0.08 * h.B, -0.25 * h.C), (5.0, 13.0, 26.0), None))
    for centre, radii, frame in parts:
        depth = np.maximum(depth, _ellipsoid(u, centre, radii, frame)[1])
    neck = _ellipsoid((u[0], u[1], np.zeros(1, np.float32)), (0, -0.12 * h.B, 0), (0.6 * h.A, 0.6 * h.B, 1e9))[1]
    depth = np.maximum(depth, np.minimum(neck, -0.25 * h.C - u[2]))
    fat_t = np.where((u[2] > -0.25 * h.C) & (u[1] < 0.6 * h.B), 0.3 * h.scalp, h.neck_fat)
    soft = h.muscle_hu + 4.0 * smooth_field(sp.axes, rng, 30.0)
    marbling = (smooth_field(sp.axes, rng, 9.0) > 1.1) & (u[2] < -0.7 * h.C)      # fat between neck muscles
    tissue = np.where((depth < h.skin) | ((depth > h.skin + fat_t) & ~marbling), soft, h.fat_hu)
    cover = _coverage(depth, sp.spacing)
    hu[:] = hu * (1.0 - cover) + tissue * cover
    return depth


def _head_vault_and_brain(h: _HeadShape, sp: _Space, hu: np.ndarray, rng) -> None:
    u, b = sp.u, h.bone_scale
    _, dc = _cranium(h, u)
    zb = _skull_base(h, u[0], u[1])
    # vault: outer and inner tables around a textured diploe; thicker at the back, thickness varies
    thick = h.bone * (1.0 + 0.2 * np.clip(-u[1] / h.B, 0, 1) + 0.1 * smooth_field(sp.axes, rng, 35.0))
    thick = np.maximum(thick, 3.0)
    into = dc - h.scalp
    table = np.minimum(1.8, 0.3 * thick)
    diploe = 700.0 + 120.0 * smooth_field(sp.axes, rng, 2.5)
    # cranial cavity: CSF rim, cortex (grey, with sulci) over white matter, cerebellum below the tentorium
    brain_depth = np.minimum(into - thick - h.csf, u[2] - zb - h.csf)
    gyri = smooth_field(sp.axes, rng, 7.0)
    grey = brain_depth < 3.0 + 1.5 * (1.0 + gyri)
    sulci = (np.abs(smooth_field(sp.axes, rng, 5.0)) < 0.12) & (brain_depth < 10.0)
    cerebellum = (u[1] < -0.35 * h.B) & (u[2] < -0.15 * h.C - 0.3 * (u[1] + 0.35 * h.B))
    fissure = (np.abs(u[0]) < 1.5) & ~cerebellum & ((u[2] > 0.25 * h.C) | (brain_depth < 20.0))
    brain = np.where(grey | cerebellum, h.grey, h.white) + 2.0 * gyri
    brain = np.where(sulci | fissure, h.csf_hu, brain)
    _put(hu, sp.everything, (into > thick) & (u[2] > zb), np.where(brain_depth > 0, brain, h.csf_hu))
    # the vault over it, blended by the voxel's coverage (its two surfaces are the most seen in renders)
    solid = (into < table) | (into > thick - table)
    cover = _coverage(into, sp.spacing) * _coverage(thick - into, sp.spacing) * (u[2] > zb - h.base)
    hu[:] = hu * (1.0 - cover) + b * np.where(solid, 1900.0, diploe) * cover
    # ventricles: lateral (body, atrium, temporal horn), third and fourth
    k = h.vent
    parts = [((0, 0.0, 0.0), (2.0 * k, 0.14 * h.B, 0.1 * h.C)), ((0, -0.5 * h.B, -0.36 * h.C), (5.0, 4.0, 6.0))]
    for s in (1.0, -1.0):
        parts += [((s * (5.0 + 3.0 * k), 0.05 * h.B, 0.17 * h.C), (3.0 + 3.5 * k, 0.33 * h.B, 3.0 + 4.0 * k)),
                  ((s * (12.0 + 5.0 * k), -0.3 * h.B, 0.1 * h.C), (3.0 + 3.0 * k, 0.14 * h.B, 4.0 + 3.0 * k)),
                  ((s * 0.3 * h.A, -0.02 * h.B, -0.2 * h.C), (1.5 + 2.0 * k, 0.15 * h.B, 1.5 + 1.5 * k))]
    for centre, radii in parts:
        sl, v = sp.box(centre, radii)
        _put(hu, sl, _ellipsoid(v, centre, radii)[0] < 1, h.csf_hu)
    if h.pineal:
        sl, v = sp.box((0, -0.15 * h.B, 0.04 * h.C), (4, 4, 4))
        _put(hu, sl, _ellipsoid(v, (0, -0.15 * h.B, 0.04 * h.C), (2.5, 2.5, 2.5))[0] < 1, 400.0)
    # skull base with the foramen magnum, petrous ridges, mastoid air cells
    plate = (u[2] < zb) & (u[2] > zb - h.base) & (dc > h.scalp) & (u[0] ** 2 + (u[1] - h.canal_y) ** 2 > 14.0 ** 2)
    _put(hu, sp.everything, plate, b * (800.0 + 150.0 * smooth_field(sp.axes, rng, 6.0)))
    cells = smooth_field(sp.axes, rng, 2.5)
    for s in (1.0, -1.0):
        p0, p1 = np.array([s * 0.16 * h.A, 0.0]), np.array([s * 0.66 * h.A, -0.3 * h.B])
        z0, z1 = (float(_skull_base(h, *p)) - 0.5 * h.base for p in (p0, p1))
        mid = np.array([*(p0 + p1) / 2, (z0 + z1) / 2])
        sl, v = sp.box(mid, (0.3 * h.A + 10, 0.2 * h.B + 10, 20))
        pet = _capsule(_Grid(v[0], v[1], v[2], 1.0), (*p0, z0), (*p1, z1), 7.5)
        _put(hu, sl, pet, b * 1500.0)
        centre = (s * 0.72 * h.A, -0.36 * h.B, float(_skull_base(h, s * 0.72 * h.A, -0.36 * h.B)) - 10.0)
        sl, v = sp.box(centre, (13, 15, 16))
        inside = _ellipsoid(v, centre, (11.0, 13.0, 14.0))[0] < 1
        _put(hu, sl, inside, np.where(cells[sl] > 0.3, -800.0, b * 900.0))


def _head_face(h: _HeadShape, sp: _Space, hu: np.ndarray, depth: np.ndarray, rng) -> None:
    b = h.bone_scale

    def paint(centre, radii, value, where=None):
        """Ellipsoid ``centre``, ``radii`` (mm) set to ``value`` (HU, scalar or ``[X, Y, Z]``) where
        ``where(slices, u, f)``, by default 2 mm or more under the skin."""
        sl, v = sp.box(centre, radii)
        f = _ellipsoid(v, centre, radii)[0]
        mask = (f < 1) & (depth[sl] > 2.0) if where is None else (f < 1) & where(sl, v, f)
        _put(hu, sl, mask, value if np.ndim(value) == 0 else value[sl])

    texture = smooth_field(sp.axes, rng, 4.0)
    # maxilla (a bony block) with its sinuses, the nasal cavity with turbinates, nasopharynx, sphenoid
    paint((0, 0.6 * h.B, -0.45 * h.C), (0.42 * h.A, 0.3 * h.B, 0.2 * h.C), b * (500.0 + 150.0 * texture))
    sinus_hu = 20.0 if h.sinus_fluid else -1000.0
    for s, size in zip((1.0, -1.0), h.sinus[:2]):
        if size:
            paint((s * 0.2 * h.A, 0.62 * h.B, -0.45 * h.C), np.multiply((0.12 * h.A, 0.16 * h.B, 0.1 * h.C), size),
                  sinus_hu)
    turbinates = np.where(texture > 0.4, h.muscle_hu, -1000.0)
    paint((0, 0.6 * h.B, -0.42 * h.C), (7.0, 0.3 * h.B, 0.16 * h.C), turbinates)
    paint((0, 0.22 * h.B, -0.5 * h.C), (10.0, 0.16 * h.B, 8.0), -1000.0)
    if h.sinus[2]:
        y = _front(h, 0, 0.05 * h.C) - h.scalp - h.bone - 4.0      # bulging inwards, the outer table intact
        r = np.multiply((0.2 * h.A, 5.0, 0.12 * h.C), h.sinus[2])
        paint((0, y, 0.05 * h.C), r + 3.0, b * 1300.0)
        paint((0, y, 0.05 * h.C), r, -1000.0)
    if h.sinus[3]:
        centre = (0, 0.2 * h.B, float(_skull_base(h, 0, 0.2 * h.B)) - 12.0)
        paint(centre, np.multiply((13.0, 12.0, 11.0), h.sinus[3]), b * 1000.0)
        paint(centre, np.multiply((10.0, 9.0, 8.0), h.sinus[3]), -1000.0)
    paint((0, 0.73 * h.B, -0.12 * h.C), (11.0, 0.14 * h.B, 10.0), np.where(texture > 0.0, -800.0, b * 500.0))
    # orbits (fat, a bony rim), eyes with lenses, zygomatic arches
    for s in (1.0, -1.0):
        eye = (s * 0.37 * h.A, _front(h, 0.37 * h.A, -0.1 * h.C) - 14.0, -0.1 * h.C)
        orbit = (eye[0] + s * 1.0, eye[1] - 6.0, eye[2])
        paint(orbit, (20.0, 25.0, 18.0), b * 700.0, where=lambda sl, v, f, y=eye[1]: (f > 0.7) & (v[1] < y + 4.0)
              & (v[1] > y - 14.0) & (depth[sl] > 3.0))                    # a bony ring round the opening
        paint(orbit, (17.0, 22.0, 15.0), h.fat_hu)
        paint(eye, (h.eye,) * 3, 12.0, where=lambda sl, v, f: depth[sl] > 0.5)
        paint((eye[0], eye[1] + h.eye - 3.0, eye[2]), (4.5, 2.0, 4.5), 100.0, where=lambda sl, v, f: depth[sl] > 0.5)
        for a, c, r in (((s * 0.42 * h.A, 0.64 * h.B, -0.26 * h.C), (s * 0.82 * h.A, 0.0, -0.24 * h.C), 4.5),
                        ((s * 0.42 * h.A, 0.64 * h.B, -0.26 * h.C), (s * 0.38 * h.A, 0.66 * h.B, -0.17 * h.C), 6.0)):
            sl, v = sp.box(np.add(a, c) / 2, np.abs(np.subtract(a, c)) / 2 + r)
            _put(hu, sl, _capsule(_Grid(v[0], v[1], v[2], 1.0), a, c, r) & (depth[sl] > 2.0), b * 750.0)
        ear = (s * h.A * 0.9, -0.08 * h.B, -0.27 * h.C)
        sl, v = sp.box(ear, (30, 6, 6))
        canal = _capsule(_Grid(v[0], v[1], v[2], 1.0), (s * (h.A + 10.0), ear[1], ear[2]), ear, 3.5)
        _put(hu, sl, canal, -1000.0)
    # teeth on the upper and lower arches, alveolar bone, mandible with rami up to the condyles
    y0, rx, ry = 0.42 * h.B, 0.33 * h.A, 0.4 * h.B
    zu, zl, zt, zbot = h.jaw
    sl, v = sp.box((0, y0, zu - 30.0), (rx + 12, ry + 12, 55.0))
    rbar = 0.5 * (rx + ry)
    tooth_hu = np.where(h.teeth, 2400.0, 0.0)
    if h.metal >= 0:
        tooth_hu[h.metal] = 3071.0
    for k, (zc, scale, bone_z) in enumerate(((zu - 4.0, 1.0, zu + 6.0), (zl - 4.0, 0.96, zl - 14.0))):
        rho, phi = _arch(v, y0, scale * rx, scale * ry)
        band = np.abs(rho - 1.0) * rbar * scale
        alveolus = (band < 6.0) & (np.abs(v[2] - bone_z) < 10.0) & (np.abs(phi) < 1.9)
        _put(hu, sl, alveolus, b * 650.0)
        slot = (phi + 1.9) / (3.8 / 14)
        idx = np.clip(slot.astype(int), 0, 13) + 14 * k
        crown = (band < 4.5) & (np.abs(v[2] - zc) < 4.5) & (np.abs(phi) < 1.9) & (slot % 1.0 > 0.12)
        _put(hu, sl, crown & (tooth_hu[idx] > 0), tooth_hu[idx])
    rho, phi = _arch(v, y0, 0.96 * rx, 0.96 * ry)
    ring = np.abs(rho - 1.0) * rbar
    body = (ring < 5.0) & (v[2] < zt) & (v[2] > zbot) & (np.abs(phi) < 1.9)
    _put(hu, sl, body, b * np.where(ring > 3.0, 1300.0, 500.0))
    g = _Grid(v[0], v[1], v[2], 1.0)
    end_y = y0 + 0.96 * ry * math.cos(1.85)
    for s in (1.0, -1.0):
        end = (s * 0.96 * rx * math.sin(1.85), end_y, 0.5 * (zt + zbot))
        angle = (s * 0.58 * h.A, -0.06 * h.B, zbot + 6.0)
        condyle = (s * 0.6 * h.A, -0.02 * h.B, -0.36 * h.C)
        _put(hu, sl, _capsule(g, end, angle, 6.0) | _capsule(g, angle, condyle, 5.0), b * 1000.0)


def _head_neck(h: _HeadShape, sp: _Space, hu: np.ndarray) -> None:
    """Cervical vertebrae (body, arch, spinous and transverse processes, discs) and the airway."""
    ys, top = h.canal_y + 17.0, float(_skull_base(h, 0.0, h.canal_y)) - h.base - 4.0
    bottom = float(sp.u[2].min())
    b = h.bone_scale
    sl, v = sp.box((0, ys - 15.0, 0.5 * (top + bottom)), (40.0, 45.0, 0.5 * (top - bottom) + 10.0))
    g = _Grid(v[0], v[1], v[2], 1.0)
    rho = np.hypot(v[0] / 11.0, (v[1] - ys) / 9.0)
    canal = np.hypot(v[0], v[1] - ys + 17.0)
    z = top
    while z > bottom - 18.0:
        zc = z - 7.0
        level = np.abs(v[2] - zc) < 6.5
        _put(hu, sl, (rho < 1) & level, b * np.where(rho > 0.75, 900.0, 350.0))
        _put(hu, sl, (rho < 1) & (np.abs(v[2] - z + 16.0) < 2.5), 80.0)
        arch = (canal > 7.0) & (canal < 11.0) & (v[1] < ys - 4.0) & level
        arch |= _capsule(g, (0, ys - 26.0, zc), (0, ys - 34.0, zc - 5.0), 3.5)
        for s in (1.0, -1.0):
            arch |= _capsule(g, (s * 8.0, ys - 8.0, zc), (s * 24.0, ys - 6.0, zc), 3.5)
        _put(hu, sl, arch, b * 800.0)
        z -= 18.0
    _put(hu, sl, (canal < 7.0) & (v[2] < top + 6.0), h.csf_hu + 15.0)
    # airway: pharynx in front of the spine, running forwards down to the larynx
    sl, v = sp.box((0, 0, 0.5 * (-0.5 * h.C + bottom)), (20.0, 0.6 * h.B, 0.5 * (-0.5 * h.C - bottom) + 5.0))
    yc = ys + 14.0 + h.airway + 0.3 * np.maximum(-0.85 * h.C - v[2], 0.0)
    tube = ((v[0] / (1.5 * h.airway)) ** 2 + ((v[1] - yc) / h.airway) ** 2 < 1) & (v[2] < -0.5 * h.C)
    _put(hu, sl, tube, -1000.0)


def _head_rest(sp: _Space, hu: np.ndarray, rng) -> None:
    """A curved plastic shell (axis along z) under the back of the head, sometimes with a foam pad."""
    body = hu > -500.0
    ys = np.nonzero(body.any(axis=(0, 2)))[0]
    if not len(ys):
        return
    x, y, z = sp.axes[0][:, None, None], sp.axes[1][None, :, None], sp.axes[2][None, None, :]
    radius, gap, t = rng.uniform(100.0, 150.0), rng.uniform(3.0, 25.0), rng.uniform(2.5, 5.0)
    cy = float(sp.axes[1][ys[0]]) - gap + radius
    r = np.hypot(x - sp.centre[0], y - cy)
    arc = (y - cy) < -radius * math.cos(math.radians(rng.uniform(45.0, 75.0)))
    z_end = float(sp.centre[2]) + rng.uniform(-20.0, 120.0)
    free = ~body & arc & (z < z_end)
    if rng.random() < 0.5:
        hu[free & (r > radius - gap) & (r < radius - t / 2)] = rng.uniform(-750.0, -350.0)
    cover = _coverage(t / 2 - np.abs(r - radius), sp.spacing) * free
    hu[:] = hu * (1.0 - cover) + rng.uniform(-100.0, 500.0) * cover


def _head(rng: np.random.Generator, s: float):
    """``(hu [X, Y, Z] float32 before blur and noise, None, HEAD_CLASSES)``."""
    h = _head_shape(rng)
    rot = _rotation(rng.uniform(-30, 30), rng.uniform(-20, 20), rng.uniform(-10, 10))
    # extent of the head (not the neck) in the world: rotated samples of its surfaces
    n = np.arange(400) + 0.5
    phi, cos_t = np.pi * (1 + 5 ** 0.5) * n, 1 - 2 * n / 400
    sphere = np.stack([np.sqrt(1 - cos_t ** 2) * np.cos(phi), np.sqrt(1 - cos_t ** 2) * np.sin(phi), cos_t])
    pts = [np.array([[h.A * 1.05], [h.B], [h.C]]) * np.where(sphere[2] > 0, sphere, sphere * [[1], [1], [0.62]]),
           np.array([[0.8 * h.A], [0.64 * h.B], [0.62 * h.C]]) * sphere + [[0], [0.32 * h.B], [-0.62 * h.C]],
           np.array([[h.A + 9.0, 0, 0], [-h.A - 9.0, 0, 0], [0, _front(h, 0, -0.36 * h.C) + 20.0, -0.36 * h.C]]).T]
    world = rot @ np.concatenate(pts, axis=1)
    lo, hi = world.min(axis=1), world.max(axis=1)
    margin = rng.uniform(4.0, 25.0, size=(2, 3))
    lo, hi = lo - margin[0], hi + margin[1]
    lo[1] -= 35.0                                   # room for a head-rest behind the head
    lo[2] = rng.uniform(-1.55, -0.55) * h.C         # bottom: from the upper neck to the maxilla
    for axis in range(3):                           # field-of-view cuts, sometimes
        if rng.random() < 0.15:
            cut = rng.uniform(10.0, 40.0)
            if rng.random() < 0.5:
                lo[axis] += cut
            else:
                hi[axis] -= cut
        excess = hi[axis] - lo[axis] - MAX_FOV_MM
        if excess > 0:
            lo[axis], hi[axis] = lo[axis] + excess / 2, hi[axis] - excess / 2
    shape = [max(int(round((b - a) / s)), 8) for a, b in zip(lo, hi)]
    jitter = rng.uniform(-10.0, 10.0, 3)
    axes = tuple(((np.arange(m) - (m - 1) / 2.0) * s + j).astype(np.float32) for m, j in zip(shape, jitter))
    sp = _Space(axes, rot, jitter - (lo + hi) / 2)
    hu = np.full(sp.shape, -1000.0, np.float32)
    depth = _head_body(h, sp, hu, rng)
    _head_vault_and_brain(h, sp, hu, rng)
    _head_face(h, sp, hu, depth, rng)
    _head_neck(h, sp, hu)
    if rng.random() < 0.5:
        _head_rest(sp, hu, rng)
    return hu, None, HEAD_CLASSES


# ----------------------------------------------------------------------------- torso


_DROPPABLE = (("spleen", 0.2), ("right kidney", 0.12), ("left kidney", 0.12), ("stomach", 0.1))


def _torso(rng: np.random.Generator, s: float):
    """``(hu [X, Y, Z] float32 before blur and noise, labels [X, Y, Z] uint8, ct_phantom.CLASSES)``:
    ct_phantom's torso painted at phantom coordinates ``(x / sx, y / sy, warp(z))``, with ``fat``
    mm added to the body outline, organs dropped, HU varied, then rotated and cut."""
    sx, sy, sz = rng.uniform(0.85, 1.08), rng.uniform(0.85, 1.1), rng.uniform(0.9, 1.1)
    fat, bz = rng.uniform(-8.0, 15.0), rng.uniform(-0.6, 0.6)
    angles = rng.uniform(-1.0, 1.0, 3) * [8.0, 4.0, 4.0]
    half_x = (145.0 + fat) * sx + rng.uniform(5.0, 15.0)
    if rng.random() < 0.2:
        half_x *= rng.uniform(0.8, 0.95)            # a narrow field of view cuts the sides
    y0, y1 = -(100.0 + fat) * sy - rng.uniform(5.0, 15.0), (112.0 + fat) * sy + rng.uniform(5.0, 15.0)
    nx, ny = int(round(2 * half_x / s)), int(round((y1 - y0) / s))
    nz_max = int(MAX_VOXELS * (3.0 / s) ** 3 / (nx * ny))
    length = min(rng.uniform(200.0, 400.0) * sz, nz_max * s, 390.0 * sz)
    zc = rng.uniform(-195.0 * sz + length / 2, 195.0 * sz - length / 2)
    nz, pad = int(round(length / s)), int(math.ceil(20.0 / s))
    axes = [((np.arange(n + 2 * pad) - (n - 1) / 2.0 - pad) * s + c).astype(np.float32)
            for n, c in ((nx, 0.0), (ny, (y0 + y1) / 2), (nz, zc))]
    zp = axes[2] / sz + bz * 40.0 * np.exp(-(axes[2] / (120.0 * sz)) ** 2)      # moves the diaphragm
    g = _Grid((axes[0] / sx)[:, None, None], (axes[1] / sy)[None, :, None], zp[None, None, :].astype(np.float32),
              s / min(sx, sy, sz))
    b = _body(g.z)
    b = replace(b, ax=b.ax + fat, front=b.front + fat, back=b.back + fat, fat=b.fat + fat)
    c = paint_torso(g, b, rng)
    for name, p in _DROPPABLE:
        if rng.random() < p:
            gone = c.labels == _ID[name]
            c.labels[gone], c.hu[gone] = _ID["visceral fat"], -90.0
    # per-class HU: contrast phase, bone density, organ and fat offsets
    offset, scale = np.zeros(256, np.float32), np.ones(256, np.float32)
    for cls in CLASSES[1:]:
        offset[cls.index] = rng.normal(0.0, 25.0 if "lung" in cls.name else 6.0)
    offset[[_ID["subcutaneous fat"], _ID["visceral fat"]]] = rng.uniform(-20.0, 15.0)
    for name in ("spine", "ribs", "sternum", "clavicles", "scapulae"):
        scale[_ID[name]] = rng.uniform(0.85, 1.25)
    contrast = rng.uniform(0.0, 1.0) if rng.random() < 0.7 else 0.0
    for name, native, enhanced in (("aorta", 45.0, 380.0), ("inferior vena cava", 40.0, 200.0),
                                   ("superior vena cava", 40.0, 260.0), ("right kidney", 35.0, 200.0),
                                   ("left kidney", 35.0, 200.0), ("heart", 45.0, 150.0)):
        inside = c.labels == _ID[name]
        if inside.any():
            offset[_ID[name]] += native + contrast * (enhanced - native) - float(np.median(c.hu[inside]))
    hu = c.hu * scale[c.labels] + offset[c.labels]
    hu += rng.uniform(0.0, 8.0) * smooth_field(axes, rng, 15.0) * (c.labels > 0)
    # rotate about the grid centre (isotropic voxels: the same rotation in index space), then cut the pad
    rot = _rotation(*angles)
    centre = (np.array(hu.shape) - 1) / 2.0
    offset_vox = centre - rot @ centre
    hu = ndimage.affine_transform(hu, rot, offset_vox, order=1, cval=-1000.0, mode="constant")
    labels = ndimage.affine_transform(c.labels, rot, offset_vox, order=0, cval=0, mode="constant")
    crop = tuple(slice(pad, n - pad) for n in hu.shape)
    return np.ascontiguousarray(hu[crop]), np.ascontiguousarray(labels[crop]), CLASSES
