"""Random rendering styles for Render-FM training: :func:`random_style` draws a transfer function and
class table for a generated CT (:mod:`.anatomy`): a CT preset (sometimes shifted), a random intensity
ramp, or a random per-class colour / opacity table, redrawn until enough voxels are visible."""

from __future__ import annotations

import colorsys
import logging
import math

import numpy as np

from ..errors import InputError
from ..transfer import PRESETS, ClassStyle, ClassTable, Shading, TransferFunction, preset
from ..volume import Volume

log = logging.getLogger(__name__)

CT_PRESETS = tuple(name for name in PRESETS if name.startswith("CT-"))


def _colour(rng: np.random.Generator, value: float | None = None) -> tuple[float, float, float]:
    """A random sRGB colour ``[3]`` in [0, 1] (random hue; ``value`` fixes the brightness)."""
    v = rng.uniform(0.5, 1.0) if value is None else value
    return colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.15, 0.9), v)


def _shading(rng: np.random.Generator) -> Shading:
    return Shading(bool(rng.random() < 0.85), rng.uniform(0.05, 0.4), rng.uniform(0.5, 1.0),
                   rng.uniform(0.0, 0.5), rng.uniform(5.0, 40.0))


def _ramp(rng: np.random.Generator, lo_hu: float, hi_hu: float, name: str = "random ramp") -> TransferFunction:
    """A random intensity ramp: window centred in ``[lo_hu, hi_hu]`` (HU), width 40-1500 HU, opacity
    rising over a random fraction of it to a peak 0.05-1 (sometimes falling again: a band), 2-4
    random colours darkest at the low end."""
    width = math.exp(rng.uniform(math.log(40.0), math.log(1500.0)))
    lo = float(np.clip(rng.uniform(lo_hu, hi_hu) - width / 2, -1020.0, 3000.0))
    hi = min(lo + width, 3060.0)
    peak = math.exp(rng.uniform(math.log(0.05), 0.0))
    rise = lo + (hi - lo) * rng.uniform(0.02, 1.0)
    opacity = [(-1024.0, 0.0), (lo, 0.0), (rise, peak)]
    opacity += [(hi, peak), (min(hi + width * rng.uniform(0.05, 0.5), 3070.0), 0.0)] if rng.random() < 0.25 else []
    opacity.append((3071.0, opacity[-1][1]))
    n = int(rng.integers(2, 5))
    xs = np.sort(rng.uniform(lo, hi, n))
    values = np.sort(rng.uniform(0.35, 1.0, n))
    color = [(float(x), *_colour(rng, float(v))) for x, v in zip(xs, values)]
    color = [(-1024.0, *color[0][1:]), *color, (3071.0, *color[-1][1:])]
    return TransferFunction(name, color=color, opacity=opacity, shading=_shading(rng))


def _visible_voxels(volume: Volume, tf: TransferFunction, classes: ClassTable) -> int:
    """Voxels (every second one along each axis) with label > 0 whose TF opacity times the class
    opacity exceeds 0.01."""
    hu = volume.data[0, ::2, ::2, ::2]
    alpha = tf.rgba_np(hu)[..., 3]
    if volume.labels is None:
        return int((alpha > 0.01).sum())
    labels = volume.labels[::2, ::2, ::2].astype(np.int64)
    lut = np.ones(int(labels.max()) + 1, np.float32)
    for st in classes.styles:
        if st.index < len(lut):
            lut[st.index] = st.opacity if st.visible else 0.0
    return int(((alpha * lut[labels] > 0.01) & (labels > 0)).sum())


def random_style(seed: int, volume: Volume) -> tuple[TransferFunction, ClassTable, str]:
    """A training transfer function and class table for ``volume``, deterministic in ``seed``.

    About 40% a CT preset (sometimes shifted by up to 80 HU), 30% a random intensity ramp
    (:func:`_ramp`, window inside the volume's foreground HU range), 30% random per-class colours
    and opacities (``use_class_colors``; some classes hidden, some faint) over a ramp or a
    soft-tissue / muscle / bone preset. Label 0 (air, head-rest foam) is hidden in every table:
    Render-FM places Gaussians only where the mask is > 0, so the ground truth must not show it.
    Redrawn until at least 0.5% of the voxels are foreground (label > 0) with TF opacity x class
    opacity > 0.01, so no scene is (nearly) empty.

    Returns:
        ``(tf, classes, description)``, e.g. ``"preset CT-Bone"``, ``"random ramp"``,
        ``"random class table on CT-Muscle"``.

    Raises:
        InputError: when nothing in ``volume`` can be made visible (an empty volume).
    """
    rng = np.random.default_rng([int(seed), 0x57F1E])
    hu = volume.data[0]
    fg = hu[volume.labels > 0] if volume.labels is not None and (volume.labels > 0).any() else hu.ravel()
    lo_hu, hi_hu = (float(v) for v in np.percentile(fg[:: max(1, fg.size // 50000)], [2.0, 99.8]))
    need = max(50, int(5e-3 * hu[::2, ::2, ::2].size))
    plain = ClassTable.from_classes(volume.classes)
    if any(c.index == 0 for c in volume.classes):
        plain = plain.updated(0, visible=False)
    for attempt in range(30):
        u = rng.random()
        table = plain
        if u < 0.4:
            name = str(rng.choice(CT_PRESETS))
            tf, text = preset(name), f"preset {name}"
            if rng.random() < 0.3:
                shift = float(rng.uniform(-80.0, 80.0))
                tf, text = tf.shifted(shift), f"{text} shifted {shift:+.0f} HU"
        elif u < 0.7:
            tf, text = _ramp(rng, lo_hu, hi_hu), "random ramp"
        else:
            if rng.random() < 0.5:
                tf = _ramp(rng, max(lo_hu, -400.0), max(hi_hu, -300.0))
            else:
                tf = preset(str(rng.choice(("CT-Soft-Tissue", "CT-Muscle", "CT-Bone"))))
            styles = tuple(ClassStyle(c.index, c.name, _colour(rng), float(
                           math.exp(rng.uniform(math.log(0.03), math.log(0.25))) if rng.random() < 0.3
                           else rng.uniform(0.4, 1.0)), bool(c.index > 0 and rng.random() > 0.25), c.group)
                           for c in volume.classes)
            table, text = ClassTable(styles, use_class_colors=True), f"random class table on {tf.name}"
        if _visible_voxels(volume, tf, table) >= need:
            return tf, table, text
        log.debug("style %d attempt %d (%s) shows too little of %s; redrawing", seed, attempt, text, volume.name)
    tf, table = preset("CT-Soft-Tissue"), plain
    if _visible_voxels(volume, tf, table) == 0:
        raise InputError(f"random_style: nothing in volume {volume.name!r} is visible under any style")
    return tf, table, "preset CT-Soft-Tissue"
