"""Render-FM training anatomy: varied procedural head and torso CTs, and random rendering styles."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.renderfm import anatomy
from rfmweb.renderfm.anatomy import HEAD_CLASSES, KINDS, random_anatomy
from rfmweb.renderfm.styles import random_style
from rfmweb.samples.ct_phantom import CLASSES as TORSO_CLASSES
from rfmweb.transfer import ClassTable, TransferFunction


@pytest.fixture(scope="module")
def cases():
    """Seeds 0..9, kind drawn from the seed (3 mm)."""
    return [random_anatomy(seed) for seed in range(10)]


@pytest.fixture(scope="module")
def heads():
    return [random_anatomy(seed, "head") for seed in (20, 21, 22)]


# ---------------------------------------------------------------- the volume contract


def test_cases_are_small_ct_volumes_centred_at_the_origin(cases):
    for vol in cases:
        kind = vol.name.split("_")[1]
        assert vol.name.startswith(f"anatomy_{kind}_") and kind in KINDS
        assert vol.modality == "CT" and vol.data.dtype == np.float32 and vol.data.shape == (1, *vol.shape)
        assert vol.labels is not None and vol.labels.shape == vol.shape
        assert vol.spacing == pytest.approx((3.0, 3.0, 3.0))
        assert np.prod(vol.shape) <= 96 ** 3 * 1.02, vol.shape
        assert np.abs(vol.center).max() < 3.0
        lo, hi = vol.intensity_range()
        assert -1024.0 <= lo and hi <= 3071.0 and hi > 500.0             # air to bone
        corner = vol.data[0, :3, :3, :3]
        assert abs(float(np.median(corner)) + 1000.0) < 60.0, vol.name    # air around the body
        classes = HEAD_CLASSES if kind == "head" else TORSO_CLASSES
        assert vol.classes == classes
        assert set(np.unique(vol.labels)) <= {c.index for c in classes}


def test_same_seed_same_case_and_style():
    for kind in KINDS:
        a, b = random_anatomy(5, kind), random_anatomy(5, kind)
        assert np.array_equal(a.data, b.data) and np.array_equal(a.labels, b.labels)
        assert np.array_equal(a.affine, b.affine)
        assert random_style(7, a) == random_style(7, b)


def test_seeds_vary_kind_shape_and_extent(cases, heads):
    kinds = [v.name.split("_")[1] for v in cases]
    assert set(kinds) == set(KINDS)
    assert len({v.shape for v in cases}) >= 8
    for group in (heads, [v for v in cases if "torso" in v.name]):
        body = [int((v.labels > 0).sum()) for v in group]
        assert len(set(body)) == len(body) and max(body) > 1.1 * min(body)
    # the same kind at another seed is not the same picture shifted: sizes of the bone differ too
    bone = [int((v.labels == 2).sum()) for v in heads]
    assert max(bone) > 1.05 * min(bone)


def test_torso_organs_are_sometimes_missing():
    ids = {c.name: c.index for c in TORSO_CLASSES}
    present = []
    for seed in range(12):
        vol = random_anatomy(seed, "torso", spacing_mm=6.0)
        present.append({name for name in ("spleen", "right kidney", "left kidney", "stomach")
                        if (vol.labels == ids[name]).any()})
    assert any(len(p) < 4 for p in present) and any(len(p) >= 3 for p in present)


def test_head_labels_are_the_real_scans_hu_thresholds(heads):
    for vol in heads:
        hu, lab = vol.data[0], vol.labels
        assert (hu[lab == 2] >= 226.0).all()
        assert ((hu[lab == 1] >= -142.0) & (hu[lab == 1] < 226.0)).all()
        assert (hu[lab == 0] < -142.0).all()
        fractions = [float((lab == k).mean()) for k in (1, 2)]
        assert 0.05 < fractions[0] < 0.6 and 0.02 < fractions[1] < 0.2, fractions
        # brain-like soft tissue dominates inside the skull; the bone reaches cortical values
        assert 0.0 < float(np.median(hu[lab == 1])) < 70.0
        assert np.percentile(hu[lab == 2], 95) > 700.0


def test_spacing_and_bad_input():
    vol = random_anatomy(1, "head", spacing_mm=4.5)
    assert vol.spacing == pytest.approx((4.5, 4.5, 4.5))
    with pytest.raises(InputError, match="kind"):
        random_anatomy(0, "leg")
    with pytest.raises(InputError, match="spacing"):
        random_anatomy(0, "head", spacing_mm=0.0)
    with pytest.raises(InputError, match="seed"):
        random_anatomy(-1)


# ---------------------------------------------------------------- styles


def _visible(vol, tf: TransferFunction, table: ClassTable) -> int:
    alpha = tf.rgba_np(vol.data[0])[..., 3]
    lut = np.ones(int(vol.labels.max()) + 1)
    for s in table.styles:
        if s.index < len(lut):
            lut[s.index] = s.opacity if s.visible else 0.0
    return int(((alpha * lut[vol.labels] > 0.01) & (vol.labels > 0)).sum())


def test_random_style_always_shows_something(cases):
    texts = []
    for seed in range(24):
        vol = cases[seed % len(cases)]
        tf, table, text = random_style(seed, vol)
        assert isinstance(tf, TransferFunction) and isinstance(table, ClassTable) and text
        assert _visible(vol, tf, table) > 0.002 * vol.labels.size, (seed, text)
        assert not table.style(0).visible      # air is never drawn: Render-FM has no Gaussians there
        texts.append(text)
    assert any(t.startswith("preset CT-") for t in texts)
    assert any(t.startswith("random ramp") for t in texts)
    assert any(t.startswith("random class table") for t in texts)


def test_class_table_styles_use_class_colours_and_hide_some():
    vol = random_anatomy(2, "torso", spacing_mm=6.0)
    tables = [random_style(seed, vol)[1] for seed in range(40)]
    coloured = [t for t in tables if t.use_class_colors]
    assert coloured and all(t.style(0).visible is False for t in tables)
    assert any(t.hidden for t in coloured)
    assert any(0 < s.opacity < 0.3 for t in coloured for s in t.styles if s.visible)


def test_never_reads_the_held_out_head_scan():
    source = inspect.getsource(anatomy)
    assert "../shared" not in source and "head_ct" not in source and "nib" not in source
