"""Volume type, NIfTI reading/writing and BraTS folders, with bad input of every kind."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.io import load_brats_case, load_volume, open_volume, save_array, save_brats_case, save_volume
from rfmweb.volume import Volume


def write(path, data, affine=None, dtype=None):
    img = nib.Nifti1Image(np.asarray(data if dtype is None else np.asarray(data).astype(dtype)),
                          np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine)
    nib.save(img, str(path))
    return path


def ct_array(shape=(12, 10, 8)):
    rng = np.random.default_rng(0)
    return rng.integers(-1024, 2000, size=shape).astype(np.int16)


def test_round_trip_keeps_hu_and_geometry(tmp_path):
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    affine[:3, 3] = (-10, 5, 40)
    data = ct_array()
    vol = Volume(data, affine, modality="CT")
    save_volume(vol, tmp_path / "ct.nii.gz")
    back = load_volume(tmp_path / "ct.nii.gz")
    assert back.modality == "CT"
    np.testing.assert_array_equal(back.data[0], data)
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    assert back.spacing == pytest.approx((0.8, 0.9, 2.5), abs=1e-6)
    assert nib.load(tmp_path / "ct.nii.gz").get_data_dtype() == np.int16


def test_reorients_to_ras_keeping_world_positions(tmp_path):
    data = np.zeros((6, 7, 5), np.float32)
    data[1, 2, 3] = 100.0  # a marker
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])  # x and y flipped: LPS voxel order
    lps[:3, 3] = (50, 60, -7)
    write(tmp_path / "lps.nii.gz", data, lps)
    vol = load_volume(tmp_path / "lps.nii.gz", modality="MR")
    assert nib.aff2axcodes(vol.affine) == ("R", "A", "S")
    marker_world = lps @ np.array([1, 2, 3, 1.0])
    ijk = np.argwhere(vol.data[0] == 100.0)[0]
    np.testing.assert_allclose(vol.affine @ np.append(ijk, 1.0), marker_world, atol=1e-6)


def test_scaled_ints_become_hu(tmp_path):
    img = nib.Nifti1Image(np.full((4, 4, 4), 10, np.int16), np.eye(4))
    img.header.set_slope_inter(2.0, -1024.0)
    nib.save(img, str(tmp_path / "scaled.nii.gz"))
    assert load_volume(tmp_path / "scaled.nii.gz", modality="CT").data.max() == pytest.approx(-1004.0)


@pytest.mark.parametrize("values, expected", [((-1000, 40), "CT"), ((0, 900), "MR")])
def test_modality_guess(tmp_path, values, expected):
    data = np.full((8, 8, 8), values[1], np.float32)
    data[:4] = values[0]
    write(tmp_path / "v.nii.gz", data)
    assert load_volume(tmp_path / "v.nii.gz").modality == expected


def test_labels_on_same_grid(tmp_path):
    write(tmp_path / "ct.nii.gz", ct_array())
    lab = np.zeros((12, 10, 8), np.float32)
    lab[2:5] = 2.0  # integral floats are accepted, as many tools write them
    write(tmp_path / "lab.nii.gz", lab)
    vol = load_volume(tmp_path / "ct.nii.gz", tmp_path / "lab.nii.gz")
    assert vol.labels.dtype == np.uint16 and vol.labels.max() == 2
    assert [c.index for c in vol.classes] == [0, 2]


def test_labels_on_another_grid_name_both_files(tmp_path):
    write(tmp_path / "ct.nii.gz", ct_array())
    write(tmp_path / "lab.nii.gz", np.zeros((12, 10, 8), np.uint8), np.diag([2.0, 1, 1, 1]))
    with pytest.raises(InputError) as err:
        load_volume(tmp_path / "ct.nii.gz", tmp_path / "lab.nii.gz")
    assert "lab.nii.gz" in str(err.value) and "ct.nii.gz" in str(err.value)
    write(tmp_path / "lab2.nii.gz", np.zeros((12, 10, 9), np.uint8))
    with pytest.raises(InputError, match="lab2.nii.gz.*ct.nii.gz"):
        load_volume(tmp_path / "ct.nii.gz", tmp_path / "lab2.nii.gz")


def test_non_integer_labels_refused(tmp_path):
    write(tmp_path / "ct.nii.gz", ct_array())
    write(tmp_path / "lab.nii.gz", np.full((12, 10, 8), 0.5, np.float32))
    with pytest.raises(InputError, match="lab.nii.gz: label map must hold integer"):
        load_volume(tmp_path / "ct.nii.gz", tmp_path / "lab.nii.gz")


def _corrupt(path):
    path.write_bytes(b"this is not a nifti file at all" * 20)


def _truncated(path):
    write(path, ct_array((40, 40, 40)))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])


def _truncated_raw(path):
    write(path, ct_array((40, 40, 40)))
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[: len(raw) // 2]))


def _nan(path):
    data = np.zeros((8, 8, 8), np.float32)
    data[1, 2, 3] = np.nan
    write(path, data)


def _inf(path):
    data = np.zeros((8, 8, 8), np.float32)
    data[0, 0, 0] = np.inf
    write(path, data)


def _two_d(path):
    write(path, np.zeros((8, 8), np.float32))


def _five_d(path):
    write(path, np.zeros((4, 4, 4, 2, 2), np.float32))


def _raw_nifti(path, shape, pixdim, data: bytes | None = None):
    """A hand-made single-file NIfTI (nibabel refuses to write some broken headers)."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.float32)
    hdr["pixdim"][1:4] = pixdim
    hdr["vox_offset"] = 352
    if data is None:
        data = np.zeros(shape, np.float32).tobytes(order="F")
    path.write_bytes(hdr.binaryblock + b"\0" * 4 + data)


def _zero_spacing(path):
    _raw_nifti(path, (4, 4, 4), (1.0, 0.0, 1.0))


def _negative_spacing(path):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4))
    img.header["pixdim"][1:4] = (1.0, -2.0, 1.0)
    nib.save(img, str(path))


def _absurd(path):
    # a header claiming 30000^3 voxels in front of a few bytes: refused from the header alone
    _raw_nifti(path, (30000, 30000, 30000), (1.0, 1.0, 1.0), data=b"\0" * 64)


def _empty(path):
    path.write_bytes(b"")


def _complex(path):
    write(path, np.full((4, 4, 4), 1 + 2j, np.complex64))


def _bad_sizeof_hdr(path):
    write(path, np.zeros((4, 4, 4), np.float32))
    raw = bytearray(path.read_bytes())
    raw[0:4] = np.int32(12345).tobytes()      # nibabel would "repair" it to 348 and read on
    path.write_bytes(bytes(raw))


def _no_orientation(path):
    img = nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.diag([1.0, 1.0, 2.0, 1.0]))
    img.set_sform(None, code=0)
    img.set_qform(None, code=0)
    nib.save(img, str(path))


def _sheared(path):
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    affine[2, 1] = np.tan(np.radians(15.0))          # a tilted gantry's slices, stacked off their normal
    write(path, np.zeros((4, 4, 4), np.float32), affine)


@pytest.mark.parametrize("make, reason", [
    (_no_orientation, "left and right cannot be told apart"),
    (_sheared, "sheared by 15.00 degrees"),
    (_corrupt, "not a readable NIfTI"),
    (_truncated, "truncated or corrupt"),
    (_truncated_raw, "truncated or corrupt"),
    (_nan, "NaN/Inf"),
    (_inf, "NaN/Inf"),
    (_two_d, "expected a 3-D image"),
    (_five_d, "expected a 3-D image"),
    (_zero_spacing, "spacing"),
    (_negative_spacing, "spacing"),
    (_absurd, "more than the"),
    (_empty, "file is empty"),
    (_complex, "complex-valued voxels (complex64)"),
    (_bad_sizeof_hdr, "sizeof_hdr is 12345"),
])
def test_bad_input_is_one_clear_error(tmp_path, make, reason):
    path = tmp_path / ("bad.nii" if make in (_absurd, _zero_spacing, _bad_sizeof_hdr) else "bad.nii.gz")
    make(path)
    with pytest.raises(InputError) as err:
        load_volume(path)
    assert err.value.path == str(path)
    assert reason in err.value.reason
    assert str(err.value).startswith(str(path))


@pytest.mark.parametrize("unit, factor", [("meter", 1e-3), ("micron", 1e3), ("mm", 1.0), ("unknown", 1.0)])
def test_the_headers_spatial_unit_is_converted_to_mm(tmp_path, unit, factor):
    """A scan saved in metres drew 0.001 mm voxels; one in microns was refused as absurd."""
    affine = np.diag([0.9, 0.9, 1.5, 1.0])
    affine[:3, 3] = (-100.0, -120.0, -60.0)
    stored = affine.copy()
    stored[:3] *= factor
    img = nib.Nifti1Image(ct_array(), stored)
    img.header.set_xyzt_units(unit)
    nib.save(img, str(tmp_path / "ct.nii.gz"))
    np.testing.assert_allclose(load_volume(tmp_path / "ct.nii.gz").affine, affine, atol=1e-4)


@pytest.mark.parametrize("qform, said", [(np.diag([-1.0, 1, 1, 1]), "left and right mirrored"),
                                         (np.diag([1.0, 1, 1, 1]) + np.eye(4, k=3) * 4, "up to 4.0 mm apart"),
                                         (np.diag([1.0, 1, 1, 1]) + np.eye(4, k=3) * 0.5, None)])
def test_an_sform_and_qform_that_disagree_are_told(tmp_path, caplog, qform, said):
    """3D Slicer (ITK) may place the scan by its qform where nibabel and rfmweb take the sform: a
    mirrored or shifted qform is said in the log (a shift under a voxel is not)."""
    img = nib.Nifti1Image(ct_array(), np.eye(4))
    img.set_sform(np.eye(4), code=2)
    img.set_qform(qform, code=1)
    nib.save(img, str(tmp_path / "ct.nii.gz"))
    with caplog.at_level("WARNING", logger="rfmweb"):
        vol = load_volume(tmp_path / "ct.nii.gz")
    np.testing.assert_array_equal(vol.affine, np.eye(4))                    # the sform
    told = [r.getMessage() for r in caplog.records if "qform" in r.getMessage()]
    assert (said is None and not told) or (len(told) == 1 and said in told[0] and "ct.nii" not in told[0]), told


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        load_volume(tmp_path / "nope.nii.gz")
    with pytest.raises(InputError, match="is a folder"):
        load_volume(tmp_path)


def test_volume_validates_in_memory_input():
    with pytest.raises(InputError, match="3-D"):
        Volume(np.zeros((4, 4)), np.eye(4))
    with pytest.raises(InputError, match="spacing"):
        Volume(np.zeros((4, 4, 4)), np.diag([1.0, 0.0, 1.0, 1.0]))
    with pytest.raises(InputError, match="label map shape"):
        Volume(np.zeros((4, 4, 4)), np.eye(4), labels=np.zeros((4, 4, 5), np.uint8))
    with pytest.raises(InputError, match="more than the"):
        Volume(np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (1, 2048, 2048, 2048), (0, 0, 0, 0)),
               np.eye(4))


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "out.nii.gz"

    def boom(img, filename):
        open(filename, "wb").write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(nib, "save", boom)
    with pytest.raises(OSError):
        save_array(target, np.zeros((4, 4, 4), np.float32), np.eye(4))
    assert list(tmp_path.iterdir()) == []


def test_a_volume_prints_as_one_line_and_a_folder_or_sample_name_points_to_open_volume(tmp_path):
    vol = Volume(np.zeros((1, 4, 5, 6), np.float32), np.diag([0.5, 0.5, 2.0, 1.0]), modality="CT", name="ct")
    assert repr(vol) == "Volume('ct', CT, 4x5x6 of 0.5x0.5x2 mm, channels ['intensity'], no labels)"
    for spec in ("sample:ct_phantom", tmp_path):
        with pytest.raises(InputError, match="rfmweb.io.open_volume"):
            load_volume(spec)


def test_writing_another_format_is_one_clear_error(tmp_path):
    """save_volume to .nrrd leaked nibabel's "Cannot work out file type" naming a temporary file."""
    vol = Volume(np.zeros((1, 4, 4, 4), np.float32), np.eye(4), modality="CT")
    for name in ("x.nrrd", "x.npy"):
        with pytest.raises(InputError, match=rf"{name}: volumes are written as NIfTI: .*\.nii\.gz"):
            save_volume(vol, tmp_path / name)
    assert list(tmp_path.iterdir()) == []


def brats_volume(shape=(10, 12, 8), seg_max=3):
    rng = np.random.default_rng(1)
    data = rng.uniform(0, 1000, size=(4, *shape)).astype(np.float32)
    seg = rng.integers(0, seg_max + 1, size=shape).astype(np.uint8)
    from rfmweb.io import BRATS_CLASSES
    return Volume(data, np.diag([1.0, 1.0, 1.0, 1.0]), modality="MR", channels=("T1n", "T1c", "T2w", "FLAIR"),
                  labels=seg, classes=BRATS_CLASSES)


def test_brats_round_trip(tmp_path):
    vol = brats_volume()
    folder = save_brats_case(vol, tmp_path / "BraTS-GLI-00001-000")
    names = sorted(p.name for p in folder.iterdir())
    assert names == [f"BraTS-GLI-00001-000-{s}.nii.gz" for s in ("seg", "t1c", "t1n", "t2f", "t2w")]
    back = load_brats_case(folder)
    assert back.channels == ("T1n", "T1c", "T2w", "FLAIR")
    np.testing.assert_allclose(back.data, vol.data)
    np.testing.assert_array_equal(back.labels, vol.labels)
    assert [c.name for c in back.classes] == ["not tumour", "NCR", "ED", "ET"]
    assert open_volume(folder).name == "BraTS-GLI-00001-000"


def test_brats_errors(tmp_path):
    folder = save_brats_case(brats_volume(), tmp_path / "case")
    (folder / "case-t2f.nii.gz").unlink()
    with pytest.raises(InputError, match="no \\*-t2f"):
        load_brats_case(folder)
    folder = save_brats_case(brats_volume(), tmp_path / "case2")
    write(folder / "case2-t1c.nii.gz", np.zeros((10, 12, 9), np.float32))
    with pytest.raises(InputError, match="case2-t1c.nii.gz.*not on the grid"):
        load_brats_case(folder)
    folder = save_brats_case(brats_volume(), tmp_path / "case3")
    write(folder / "case3-seg.nii.gz", np.full((10, 12, 8), 5, np.uint8))
    with pytest.raises(InputError, match="labels must be 0..3.*found \\[5\\]"):
        load_brats_case(folder)
    both = (np.arange(10 * 12 * 8).reshape(10, 12, 8) % 5).astype(np.uint8)      # 3 and 4: which is ET?
    write(folder / "case3-seg.nii.gz", both)
    with pytest.raises(InputError, match="found \\[3, 4\\]"):
        load_brats_case(folder)
    assert load_brats_case(folder, read_seg=False).labels is None     # the images alone: no ground truth read
    no_seg = save_brats_case(brats_volume().with_labels(None, ()), tmp_path / "case4")
    assert load_brats_case(no_seg).labels is None
    with pytest.raises(InputError, match="no \\*-seg"):
        load_brats_case(no_seg, require_seg=True)


def test_brats_2021_labels_are_read_with_et_as_3(tmp_path):
    """BraTS 2017-2021 files mark ET as 4 (no 3); they are read in the 2023 convention, ET = 3."""
    vol = brats_volume()
    folder = save_brats_case(vol, tmp_path / "case")
    old = np.where(vol.labels == 3, 4, vol.labels).astype(np.uint8)
    write(folder / "case-seg.nii.gz", old)
    assert (old == 4).any() and not (old == 3).any()
    np.testing.assert_array_equal(load_brats_case(folder).labels, vol.labels)
    # ... and their file names (BraTS2021_00000_t1, _t1ce, _t2, _flair, _seg) are a case too
    for new, old_name in (("t1n", "t1"), ("t1c", "t1ce"), ("t2w", "t2"), ("t2f", "flair"), ("seg", "seg")):
        (folder / f"case-{new}.nii.gz").rename(folder / f"BraTS2021_00000_{old_name}.nii.gz")
    back = open_volume(folder)
    np.testing.assert_array_equal(back.data, load_brats_case(save_brats_case(vol, tmp_path / "again")).data)
    np.testing.assert_array_equal(back.labels, vol.labels)
    # a modality on a shifted grid of the same shape says so (it read "shapes (a) vs (a)")
    img = nib.load(folder / "BraTS2021_00000_t2.nii.gz")
    affine = img.affine.copy()
    affine[0, 3] += 2.0
    nib.save(nib.Nifti1Image(np.asarray(img.dataobj), affine), folder / "BraTS2021_00000_t2.nii.gz")
    with pytest.raises(InputError, match=r"same shape .*, voxel-to-world matrices differ by up to 2 mm"):
        load_brats_case(folder)


def test_a_nrrd_without_an_anatomical_space_is_refused(tmp_path):
    """ITK reads such axes as LPS: the same voxels as a NIfTI without orientation came out mirrored
    in two axes, with confident letters."""
    data = np.arange(120, dtype=np.float32).tobytes()
    fields = "NRRD0004\ntype: float\ndimension: 3\nsizes: 4 5 6\nencoding: raw\nendian: little\n"
    (tmp_path / "plain.nrrd").write_bytes((fields + "spacings: 1 1 1\n\n").encode() + data)
    with pytest.raises(InputError, match="no anatomical space .* left and right cannot be told apart"):
        load_volume(tmp_path / "plain.nrrd")
    (tmp_path / "lps.nrrd").write_bytes((fields + "space: left-posterior-superior\n"
                                         "space directions: (1,0,0) (0,1,0) (0,0,2)\n\n").encode() + data)
    vol = load_volume(tmp_path / "lps.nrrd")
    # the voxel (3, 0, 0) (value 3) lies at LPS (3, 0, 0) mm, that is RAS (-3, 0, 0)
    ijk = np.argwhere(vol.data[0] == 3.0)[0]
    np.testing.assert_allclose((vol.affine @ [*ijk, 1.0])[:3], (-3.0, 0.0, 0.0), atol=1e-6)


def test_a_volume_coarsened_to_a_voxel_budget_keeps_its_place_its_means_and_its_label_values():
    """A 512 x 512 x 600 CT took 8 GiB and 23 s a frame in the 3-D view: its renderers draw blocks of
    voxels instead. The finest axes are halved first; blocks keep the data's mean, the majority label
    and the world position of their centres."""
    rng = np.random.default_rng(0)
    data = rng.normal(40, 10, (8, 8, 6)).astype(np.float32)
    labels = np.zeros((8, 8, 6), np.uint8)
    labels[:2, :2, :] = 2                       # a whole block of 2 ...
    labels[2, 2, :] = 1                         # ... and a quarter of one: the block stays 0
    affine = np.array([[0.5, 0, 0, -10], [0, 0.5, 0, 5], [0, 0, 2.0, 30], [0, 0, 0, 1]], float)
    vol = Volume(data, affine, labels=labels, name="thin")
    assert vol.coarsened(8 * 8 * 6) is vol
    assert vol.coarse_factors(96) == (2, 2, 1) and vol.coarse_factors(40) == (4, 4, 1)
    coarse = vol.coarsened(96)
    assert coarse is vol.coarsened(96)          # made once, shared by every view of the scan
    assert coarse.shape == (4, 4, 6) and coarse.spacing == pytest.approx((1.0, 1.0, 2.0))
    np.testing.assert_allclose(coarse.data[0, 1, 2, 3], data[2:4, 4:6, 3].mean(), rtol=1e-6)
    # block (1, 2, 3) covers voxels 2-3, 4-5 of slice 3: its centre is voxel (2.5, 4.5, 3)
    np.testing.assert_allclose(coarse.affine @ [1, 2, 3, 1], affine @ [2.5, 4.5, 3, 1])
    assert coarse.labels[0, 0, 0] == 2 and coarse.labels[1, 1, 0] == 0
    assert set(np.unique(coarse.labels)) <= set(np.unique(labels))
    assert vol.shape == (8, 8, 6) and vol.data is not coarse.data
