"""The synthetic BraTS-style cohort: determinism, disjoint splits, loader round trip, resume, postop."""

from __future__ import annotations

import json
import numpy as np
import pytest

from rfmweb.data.cohort import (MANIFEST, SPLIT_CODES, case_id, case_rng, cohort_case, find_cases,
                                make_cohort)
from rfmweb.errors import InputError
from rfmweb.io import load_brats_case

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


def test_cohort_has_variation_and_a_tumour_in_each_case():
    infos = [cohort_case("train", 0, i, RES)[1] for i in range(4)]
    assert all(i["voxels"]["ED"] + i["voxels"]["ET"] + i["voxels"]["NCR"] > 0 for i in infos)
    assert len({i["diameter_mm"] for i in infos}) == 4 and len({tuple(i["gain"]) for i in infos}) == 4
    assert all(0.05 <= i["bias_peak"] <= 0.25 and 0.01 <= i["noise_fraction"] <= 0.05 for i in infos)


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


def test_postop_cases_have_a_cavity_and_no_necrosis(tmp_path):
    manifest = make_cohort(tmp_path, 2, "postop", seed=0, resolution_mm=RES, progress=False)
    for entry in manifest["cases"]:
        assert entry["id"].startswith("BraTS-POST-") and entry["voxels"]["cavity"] > 0
        assert entry["voxels"]["NCR"] == 0
        vol = load_brats_case(tmp_path / entry["id"])
        assert int((vol.labels == 1).sum()) == 0 and int((vol.labels > 0).sum()) > 0


@pytest.mark.parametrize("args, expect", [(["--n", "0"], "--n must"), (["--n", "1", "--resolution", "20"], "--resolution")])
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
