"""Built-in samples: the procedural torso CT and the synthetic glioma MRI on the MNI152 template."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rfmweb import samples
from rfmweb.errors import InputError
from rfmweb.io.brats import BRATS_CLASSES
from rfmweb.samples import glioma

CROSS = ndimage.generate_binary_structure(3, 1)   # 6-connected neighbourhood
CUBE = np.ones((3, 3, 3), bool)                   # 26-connected neighbourhood


@pytest.fixture(scope="module")
def ct():
    return samples.load("ct_phantom", size=96)


@pytest.fixture(scope="module")
def tissue():
    return glioma.tissue_maps(2.0)


@pytest.fixture(scope="module")
def case():
    return samples.load("brain_glioma", seed=0)


# ---------------------------------------------------------------- registry


def test_registry_lists_and_describes_both_samples():
    assert samples.list_samples() == ["brain_glioma", "ct_phantom"]
    assert all(isinstance(samples.SAMPLES[n], str) and samples.SAMPLES[n] for n in samples.list_samples())


def test_unknown_sample_or_argument_raises_input_error():
    with pytest.raises(InputError, match="brain_glioma, ct_phantom"):
        samples.load("nope")
    with pytest.raises(InputError, match="resolution"):
        samples.load("ct_phantom", resolution_mm=2.0)
    with pytest.raises(InputError, match="size"):
        samples.load("ct_phantom", size=4)


# ---------------------------------------------------------------- CT phantom


def test_ct_is_deterministic_and_the_seed_only_changes_bowel_texture_and_noise():
    a, b, c = (samples.ct_phantom(48, seed=s) for s in (3, 3, 4))
    assert np.array_equal(a.data, b.data) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.data, c.data)
    loops = {i for i, cls in enumerate(a.classes) if cls.name in ("bowel", "visceral fat")}
    fixed = ~np.isin(a.labels, list(loops)) | ~np.isin(c.labels, list(loops))
    assert np.array_equal(a.labels[fixed], c.labels[fixed])


def test_ct_grid_is_isotropic_ras_and_centred(ct):
    assert ct.modality == "CT" and ct.channels == ("intensity",) and ct.name == "ct_phantom"
    assert ct.shape == (77, 58, 96) and ct.data.dtype == np.float32
    assert np.allclose(ct.spacing, 400.0 / 96)
    assert np.allclose(ct.affine[:3, :3], np.diag(ct.spacing)) and (np.diag(ct.affine)[:3] > 0).all()
    assert np.allclose(ct.center, 0.0, atol=1e-6)
    extent = np.array(ct.shape) * ct.spacing[0]
    assert np.allclose(extent, (320.0, 240.0, 400.0), atol=3.0)
    assert ct.data.min() >= -1024
    assert np.percentile(ct.data[0][ct.labels == 0], 99) < -500          # label 0 is only the air around


def test_ct_labels_cover_four_groups_with_plausible_hu(ct):
    present = set(np.unique(ct.labels).tolist()) - {0}
    by_index = {c.index: c for c in ct.classes}
    assert len(present) >= 8 and present <= set(by_index)
    assert {by_index[i].group for i in present} >= {"skeleton", "organs", "vessels", "soft tissue"}
    hu = ct.data[0]
    index = {c.name: c.index for c in ct.classes}
    # medians: partial volume at the edges of thin structures pulls means towards their neighbours
    median = {name: float(np.median(hu[ct.labels == i])) for name, i in index.items() if i in present}
    assert median["right lung"] < -700 and median["left lung"] < -700
    assert -150 <= median["subcutaneous fat"] <= -50
    assert 20 <= median["muscle"] <= 70
    for bone in ("spine", "ribs", "sternum"):
        assert median[bone] > 200, bone
    assert median["aorta"] > 200 and median["inferior vena cava"] > 100
    for organ, (lo, hi) in {"heart": (20, 70), "liver": (40, 80), "spleen": (30, 70), "left kidney": (0, 60)}.items():
        assert lo <= median[organ] <= hi, organ


def test_ct_anatomy_is_on_the_correct_sides(ct):
    index = {c.name: c.index for c in ct.classes}

    def centre(name):  # world mm
        ijk = np.array(np.nonzero(ct.labels == index[name])).mean(axis=1)
        return ct.affine[:3, :3] @ ijk + ct.affine[:3, 3]

    assert centre("liver")[0] > 20 and centre("spleen")[0] < -20        # +x is the patient's right
    assert centre("inferior vena cava")[0] > 0 > centre("heart")[0]
    assert centre("right lung")[0] > 0 > centre("left lung")[0]
    assert centre("sternum")[1] > 50 > -20 > centre("spine")[1]          # +y is anterior
    assert centre("right kidney")[1] < 0 and centre("left kidney")[1] < 0
    assert centre("right lung")[2] > centre("liver")[2] > centre("right kidney")[2]   # +z is superior


# ---------------------------------------------------------------- glioma


def test_bundled_templates_are_nilearns():
    datasets = pytest.importorskip("nilearn.datasets")
    gm, affine = glioma._mni152("gm")
    assert np.allclose(gm, datasets.load_mni152_gm_template(resolution=1).get_fdata())
    assert np.allclose(glioma._mni152("wm")[0], datasets.load_mni152_wm_template(resolution=1).get_fdata())
    mask = datasets.load_mni152_brain_mask(resolution=1)
    assert np.array_equal(glioma._mni152("t1")[0] > glioma._MASK_THRESHOLD, mask.get_fdata() > 0)
    assert np.allclose(affine, mask.affine)


def test_glioma_is_deterministic_per_seed(case):
    again = glioma.glioma_case(seed=0)
    assert np.array_equal(case.data, again.data) and np.array_equal(case.labels, again.labels)
    other = glioma.glioma_case(seed=1)
    assert not np.array_equal(case.labels, other.labels) and not np.array_equal(case.data, other.data)


def test_glioma_grid_channels_and_skull_stripping(case, tissue):
    assert case.modality == "MR" and case.channels == ("T1n", "T1c", "T2w", "FLAIR")
    assert case.classes == BRATS_CLASSES and case.name == "glioma_0"
    assert case.shape == (99, 117, 95) and np.allclose(case.spacing, 2.0)
    assert np.allclose(case.affine[:3, 3], (-98.0, -134.0, -72.0)) and (np.diag(case.affine)[:3] > 0).all()
    assert (case.data[:, ~tissue.mask] == 0).all() and (case.labels[~tissue.mask] == 0).all()
    assert (case.data >= 0).all() and (case.data[:, tissue.mask] > 0).mean() > 0.999
    wm = tissue.wm > 0.9
    for c, name in enumerate(case.channels):
        assert 500 < case.data[c][wm].mean() < 1100, name                 # scanner-like scale


def test_glioma_other_resolution_lands_on_the_coarser_template_grid():
    vol = glioma.glioma_case(seed=2, resolution_mm=4.0)
    assert vol.shape == (50, 59, 48) and np.allclose(vol.spacing, 4.0)
    assert {2, 3} <= set(np.unique(vol.labels).tolist())


@pytest.mark.parametrize("seed", range(6))
def test_tumour_labels_are_nested_like_real_gliomas(tissue, seed):
    tum = glioma.grow_tumour(tissue, np.random.default_rng(seed))
    lab = tum.labels
    ncr, core, whole = lab == 1, (lab == 1) | (lab == 3), lab > 0
    assert (lab[~tissue.mask] == 0).all() and core.any() and (lab == 3).any()
    # NCR is innermost: everything touching it (26-neighbours) is core
    assert core[ndimage.binary_dilation(ncr, CUBE)].all()
    # ED wraps the core: its face neighbours in brain tissue (not CSF) are all edema
    shell = ndimage.binary_dilation(core, CROSS) & ~core
    assert (lab[shell & tissue.mask & (tissue.csf < 0.5)] == 2).all()
    assert (lab[shell] == 2).mean() > 0.6
    # one connected lesion, 20-60 mm across (equivalent-sphere diameter), in one hemisphere
    assert ndimage.label(whole)[1] == 1
    diameter = (6.0 * whole.sum() * tissue.spacing ** 3 / np.pi) ** (1 / 3)
    assert 15.0 <= diameter <= 65.0
    assert abs(tum.centre_mm[0]) > 10.0 and tissue.wm[tuple(np.round(
        (np.array(tum.centre_mm) - tissue.affine[:3, 3]) / tissue.spacing).astype(int))] > 0.5
    # edema spreads into white matter rather than grey matter
    assert tissue.wm[lab == 2].mean() > tissue.wm[tissue.mask].mean() + 0.2


def test_healthy_tissue_contrasts_per_modality(case, tissue):
    healthy = ~ndimage.binary_dilation(case.labels > 0, CUBE, iterations=3)
    wm, gm, csf = (healthy & (tissue.wm > 0.9)), (healthy & (tissue.gm > 0.8)), (healthy & (tissue.csf > 0.9))
    mean = {name: {t: float(case.channel(name)[m].mean()) for t, m in (("WM", wm), ("GM", gm), ("CSF", csf))}
            for name in case.channels}
    for t1 in ("T1n", "T1c"):
        assert mean[t1]["WM"] > mean[t1]["GM"] > mean[t1]["CSF"]
    assert mean["T2w"]["CSF"] > mean["T2w"]["GM"] > mean["T2w"]["WM"]
    assert mean["FLAIR"]["GM"] > mean["FLAIR"]["WM"] > mean["FLAIR"]["CSF"]


def test_tumour_contrasts(case, tissue):
    wm = case.labels == 0
    wm &= tissue.wm > 0.9

    def mean(channel, region):
        return float(case.channel(channel)[region].mean())

    et, ed, ncr = case.labels == 3, case.labels == 2, case.labels == 1
    assert mean("T1c", et) > 1.3 * mean("T1c", wm)              # enhancing rim
    assert mean("T1c", et) > 1.3 * mean("T1n", et)              # ... only after contrast
    assert mean("FLAIR", ed) > 1.3 * mean("FLAIR", wm)          # edema bright on FLAIR
    assert mean("T2w", ed) > 1.3 * mean("T2w", wm) and mean("T1n", ed) < mean("T1n", wm)
    assert mean("T1n", ncr) < mean("T1n", wm) and mean("T2w", ncr) > mean("T2w", wm)


def test_postop_case_has_a_cavity_and_no_necrosis(tissue):
    vol = glioma.glioma_case(seed=1, postop=True)
    tum = glioma.grow_tumour(tissue, np.random.default_rng(1), postop=True)     # the same draws
    pre = glioma.grow_tumour(tissue, np.random.default_rng(1))
    assert np.array_equal(tum.labels, vol.labels)
    cavity = tum.cavity
    assert cavity.sum() > 50 and (vol.labels[cavity] == 0).all()
    assert (vol.labels == 1).sum() == 0 and (vol.labels == 2).any()
    assert (cavity & ((pre.labels == 1) | (pre.labels == 3))).sum() > 0.9 * cavity.sum()   # where the core was
    inner = ndimage.binary_erosion(cavity, CUBE)
    wm = (vol.labels == 0) & ~cavity & (tissue.wm > 0.9)
    assert vol.channel("T2w")[inner].mean() > 2 * vol.channel("T2w")[wm].mean()      # CSF-like
    assert vol.channel("FLAIR")[inner].mean() < 0.5 * vol.channel("FLAIR")[wm].mean()
    assert vol.channel("T1n")[inner].mean() < 0.5 * vol.channel("T1n")[wm].mean()
