"""The synthetic BraTS-style cohort: determinism, disjoint splits, the variation it promises (sizes,
foci, necrosis, edema contrast, slices, stripping, mass effect, post-operative cavities), loader round
trip, resume."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from rfmweb.data import acquisition, tumours
from rfmweb.data.cohort import (MANIFEST, SPLIT_CODES, case_id, case_rng, case_streams, cohort_case,
                                find_cases, make_cohort)
from rfmweb.errors import InputError
from rfmweb.io import load_brats_case
from rfmweb.samples import glioma

RES = 4.0   # 50 x 59 x 48 voxels: fast


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort") / "train"
    manifest = make_cohort(out, 2, "train", seed=3, resolution_mm=RES, progress=False)
    return out, manifest


def test_case_is_deterministic_per_split_seed_index():
    a, info_a = cohort_case("train", 0, 1, RES)
    b, info_b = cohort_case("train", 0, 1, RES)
    assert np.array_equal(a.data, b.data) and np.array_equal(a.labels, b.labels) and info_a == info_b
    for other in (cohort_case("val", 0, 1, RES)[0], cohort_case("train", 1, 1, RES)[0],
                  cohort_case("train", 0, 2, RES)[0]):
        assert not np.array_equal(a.data, other.data)


def test_splits_use_disjoint_streams():
    draws = {(s, i): case_rng(s, 0, i).integers(0, 2 ** 62) for s in SPLIT_CODES for i in range(20)}
    assert len(set(draws.values())) == len(draws)
    assert case_id("train", 7) == "BraTS-GLI-00007-000" and case_id("postop", 7) == "BraTS-POST-00007-000"


@pytest.fixture(scope="module")
def train_cases():
    """Ten 4 mm training cases: ``[(volume, info), ...]``."""
    return [cohort_case("train", 0, i, RES) for i in range(10)]


def test_tumours_vary_in_size_number_and_composition(train_cases):
    infos = [info for _, info in train_cases]
    wt = np.array([(vol.labels > 0).sum() for vol, _ in train_cases])
    assert wt.min() > 0 and wt.max() >= 10 * wt.min(), wt                   # a few mm to a lobe
    assert any(i["foci"] > 1 for i in infos) and any(i["foci"] == 1 for i in infos)
    assert any(i["components"] > 1 for i in infos)                            # multifocal labels
    ncr = np.array([i["voxels"]["NCR"] for i in infos])
    assert ncr.min() == 0 and (ncr / wt).max() > 0.3                         # necrosis from none to large
    assert len({i["main"]["core_type"] for i in infos}) >= 2 and len({i["site"] for i in infos}) >= 2
    assert all(i["mass_effect_mm"] > 0 for i in infos) and max(i["mass_effect_mm"] for i in infos) > 3.0
    assert len({i["main"]["rim_mm"] for i in infos}) == 10 and len({i["main"]["edema_fuzz_mm"] for i in infos}) == 10


def test_acquisition_varies_within_its_ranges(train_cases):
    acq = [info["acquisition"] for _, info in train_cases]
    assert all(0.05 <= a["bias_peak"] <= 0.35 for a in acq)
    noise = [n for a in acq for n in a["noise_fraction"]]
    assert 0.008 <= min(noise) and max(noise) <= 0.1 and max(noise) > 3 * min(noise)
    slices = [s for a in acq for s in a["slice_mm"]]
    assert 0.0 in slices and all(s == 0.0 or 3.0 <= s <= 6.0 for s in slices) and max(slices) > 0.0
    rims = [a["strip_rim_mm"] for a in acq]
    assert 0.0 in rims and any(2.0 <= r <= 12.0 for r in rims)
    # where stripping left a rim (thicker than a voxel), the image is non-zero outside the brain
    brain = glioma.tissue_maps(RES).mask
    left = [((vol.data[0] > 0) & ~brain).any() for vol, _ in train_cases]
    assert all(not kept for kept, r in zip(left, rims) if r == 0.0)
    assert all(kept for kept, r in zip(left, rims) if r > 2 * RES) and max(rims) > 2 * RES


def test_edema_overlaps_normal_tissue_on_flair_in_some_cases(train_cases):
    tissue = glioma.tissue_maps(RES)
    overlap = []
    for vol, _ in train_cases:
        flair, lab = vol.data[3], vol.labels
        far = ndimage.distance_transform_edt(lab == 0, sampling=RES) > 20.0
        gm = flair[(tissue.gm > 0.7) & far]
        wm = flair[(tissue.wm > 0.9) & far]
        ed = flair[lab == 2]
        if len(ed) < 20:
            continue
        assert np.median(ed) > np.median(wm)          # edema is brighter than white matter overall...
        overlap.append(float((ed < np.percentile(gm, 90)).mean()))
    # ... but in some cases a good part of it is no brighter than normal grey matter
    assert len(overlap) >= 5 and max(overlap) > 0.3 and min(overlap) < max(overlap) - 0.2, overlap


def test_thick_slices_blur_along_z_only():
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((24, 24, 60)).astype(np.float32)
    slices, positions = acquisition.thick_slices(noise, 1.0, 5.0, 0.3)
    assert slices.shape[:2] == (24, 24) and np.allclose(np.diff(positions), 5.0)
    back = acquisition.back_to_grid(slices, positions, 60)
    dz, dx = np.abs(np.diff(back, axis=2)).mean(), np.abs(np.diff(back, axis=0)).mean()
    assert back.shape == noise.shape and dz < 0.4 * dx
    flat = np.broadcast_to(rng.standard_normal((24, 24, 1)), (24, 24, 60)).astype(np.float32)
    assert np.allclose(acquisition.back_to_grid(*acquisition.thick_slices(flat, 1.0, 5.0, 0.3), 60), flat, atol=1e-5)


def test_anisotropic_channel_is_blurrier_along_z(train_cases):
    # acquisition draws do not depend on the resolution: pick the case at 4 mm, look at 2 mm
    index = next(i for i, (_, info) in enumerate(train_cases)
                 if max(info["acquisition"]["slice_mm"]) >= 4.5 and min(info["acquisition"]["slice_mm"]) == 0.0)
    vol, info = cohort_case("train", 0, index, 2.0)
    slices = info["acquisition"]["slice_mm"]
    interior = glioma.tissue_maps(2.0).depth > 8.0

    def z_over_x(image):
        dz = np.abs(np.diff(image, axis=2))[:, :, :-1][interior[:, :, 1:-1]]
        dx = np.abs(np.diff(image, axis=0))[:-1][interior[1:-1]]
        return dz.mean() / dx[: len(dz)].mean()

    thick = z_over_x(vol.data[int(np.argmax(slices))])
    iso = z_over_x(vol.data[slices.index(0.0)])
    assert thick < 0.75 * iso, (thick, iso, slices)


def test_mass_effect_displaces_tissue_smoothly_and_locally():
    tissue = glioma.tissue_maps(RES)
    centre = np.array([30.0, -10.0, 20.0])
    warped, shift = tumours.mass_effect(tissue, centre, 80.0, 0.5, np.random.default_rng(0))
    assert 3.0 < shift < 20.0
    assert np.allclose((warped.gm + warped.wm + warped.csf)[tissue.mask], 1.0, atol=1e-5)
    x, y, z = np.meshgrid(*tissue.axes, indexing="ij")
    r = np.sqrt((x - centre[0]) ** 2 + (y - centre[1]) ** 2 + (z - centre[2]) ** 2)
    changed = np.abs(warped.wm - tissue.wm) > 1e-3
    assert changed.sum() > 100 and r[changed].max() < 1.6 * 1.3 * 40.0 + RES
    assert tumours.mass_effect(tissue, centre, 80.0, 0.0, np.random.default_rng(0))[1] == 0.0


def test_folders_manifest_and_loader_round_trip(cohort):
    out, manifest = cohort
    cases = find_cases(out)
    assert [c.name for c in cases] == ["BraTS-GLI-00000-000", "BraTS-GLI-00001-000"]
    assert sorted(p.name for p in cases[0].iterdir()) == sorted(
        f"BraTS-GLI-00000-000-{s}.nii.gz" for s in ("t1n", "t1c", "t2w", "t2f", "seg"))
    on_disk = json.loads((out / MANIFEST).read_text())
    assert on_disk == manifest and on_disk["n"] == 2 and on_disk["split"] == "train"
    vol = load_brats_case(cases[1], require_seg=True)
    mem, info = cohort_case("train", 3, 1, RES)
    assert vol.channels == ("T1n", "T1c", "T2w", "FLAIR") and vol.spacing == (RES,) * 3
    assert np.array_equal(vol.data, mem.data) and np.array_equal(vol.labels, mem.labels)
    assert np.allclose(vol.affine, mem.affine) and on_disk["cases"][1] == info


def test_resume_skips_complete_cases_and_redoes_broken_ones(cohort):
    out, _ = cohort
    keep = out / "BraTS-GLI-00000-000" / "BraTS-GLI-00000-000-t1n.nii.gz"
    broken = out / "BraTS-GLI-00001-000" / "BraTS-GLI-00001-000-seg.nii.gz"
    before, ref = keep.stat().st_mtime_ns, broken.read_bytes()
    broken.unlink()
    make_cohort(out, 2, "train", seed=3, resolution_mm=RES, progress=False)
    assert keep.stat().st_mtime_ns == before and broken.read_bytes() == ref
    with pytest.raises(InputError, match="made with"):
        make_cohort(out, 2, "val", seed=3, resolution_mm=RES, progress=False)


def test_postop_cases_have_a_cavity_blood_and_little_necrosis(tmp_path):
    manifest = make_cohort(tmp_path, 2, "postop", seed=0, resolution_mm=RES, progress=False)
    assert all(e["id"].startswith("BraTS-POST-") for e in manifest["cases"])
    vol = load_brats_case(tmp_path / manifest["cases"][0]["id"])
    assert int((vol.labels > 0).sum()) > 0
    infos = [cohort_case("postop", 0, i, RES) for i in range(6)]
    brain = glioma.tissue_maps(RES).mask
    for vol, info in infos:
        wt = int((vol.labels > 0).sum())
        assert info["voxels"]["cavity"] > 0 and info["voxels"]["NCR"] <= 0.1 * max(wt, 1), info["voxels"]
        t2 = vol.data[2]
        normal = t2[brain & (vol.labels == 0)]
        cavity = t2[_cavity(vol, info)]
        assert np.median(cavity) > np.percentile(normal, 75)        # fluid: bright on T2w
    assert any(i["main"]["blood_cover"] > 0 for _, i in infos) and any(i["voxels"]["ET"] > 0 for _, i in infos)


def _cavity(vol, info):
    """The cavity of a regenerated post-operative case (labels are 0 there)."""
    geometry = case_streams("postop", 0, info["index"])[0]
    lesion = tumours.grow_lesion(glioma.tissue_maps(RES), geometry, postop=True)
    assert np.array_equal(lesion.labels, vol.labels)
    return lesion.cavity


def test_an_old_format_cohort_is_not_extended(tmp_path):
    (tmp_path / MANIFEST).write_text(json.dumps({"format": "rfmweb-cohort/1", "split": "train", "seed": 0,
                                                 "resolution_mm": RES, "cases": []}))
    with pytest.raises(InputError, match="another generator"):
        make_cohort(tmp_path, 1, "train", seed=0, resolution_mm=RES, progress=False)


def test_workers_write_the_same_cohort(cohort, tmp_path):
    out, manifest = cohort
    parallel = make_cohort(tmp_path, 3, "train", seed=3, resolution_mm=RES, progress=False, workers=2)
    assert parallel["cases"][:2] == manifest["cases"] and parallel["cases"][2]["index"] == 2
    assert json.loads((tmp_path / MANIFEST).read_text())["cases"] == parallel["cases"]
    for entry in manifest["cases"]:
        a, b = load_brats_case(out / entry["id"]), load_brats_case(tmp_path / entry["id"])
        assert np.array_equal(a.data, b.data) and np.array_equal(a.labels, b.labels)


@pytest.mark.parametrize("args, expect", [(["--n", "0"], "--n must"),
                                          (["--n", "1", "--resolution", "20"], "--resolution"),
                                          (["--n", "1", "--workers", "0"], "--workers")])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, expect):
    from rfmweb.cli import main

    assert main(["make-cohort", "--out", str(tmp_path / "c"), *args]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and expect in lines[0] and not (tmp_path / "c" / MANIFEST).exists()


def test_cli_writes_a_cohort(tmp_path):
    from rfmweb.cli import main

    argv = ["--out", str(tmp_path), "--n", "1", "--split", "val", "--resolution", str(RES), "--no-progress"]
    assert main(["make-cohort", *argv]) == 0
    assert [c.name for c in find_cases(tmp_path)] == ["BraTS-GLI-00000-000"]
