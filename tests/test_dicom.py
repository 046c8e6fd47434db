"""DICOM series in (folders, zips, bad geometry, compressed), NRRD/MHA in, segmentations out (DICOM SEG).

Series are written here with pydicom from a known volume, independently of the package's own
writer, then read back through :func:`rfmweb.io.open_volume`: values (HU after rescale) and the
RAS affine must come back exactly.
"""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import zipfile

import nibabel as nib
import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless, generate_uid

from rfmweb.errors import InputError
from rfmweb.io import load_dicom, load_volume, open_volume, save_segmentation
from rfmweb.io.dicom import dicom_source
from rfmweb.io.itk_image import save_array as save_itk
from rfmweb.volume import LabelClass, Volume

PATIENT = "Doe^Jane"
PATIENT_ID = "PID-314159"
BIRTH = "19700101"
LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def oblique_affine(spacing=(0.8, 0.9, 2.5)) -> np.ndarray:
    """A RAS affine with flipped axes and a 15 degree rotation about x: slice order is not z order."""
    c, s = np.cos(np.radians(15)), np.sin(np.radians(15))
    rot = np.array([[-1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([1, -1, 1])
    affine = np.eye(4)
    affine[:3, :3] = rot @ np.diag(spacing)
    affine[:3, 3] = (30.0, 12.0, -40.0)
    return affine


def hu_volume(shape=(24, 20, 16), seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1024, 2000, size=shape).astype(np.int16)


def write_series(folder, hu, affine, *, series_uid=None, syntax=None, seed=1, modality="CT", window=None,
                 photometric="MONOCHROME2", padding=None):
    """Write ``hu [X, Y, Z]`` with RAS ``affine`` as one DICOM file per slice ``k`` (plane ``hu[:, :, k]``).

    Files get shuffled names and scrambled InstanceNumbers; the rescale intercept varies per slice;
    ``padding`` (HU) is written as each file's PixelPaddingValue (stored units).
    Returns ``{slice k: SOPInstanceUID}``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    lps = LPS @ affine
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    study, frame, series_uid = generate_uid(), generate_uid(), series_uid or generate_uid()
    names, numbers, sops = rng.permutation(hu.shape[2]), rng.permutation(hu.shape[2]) + 1, {}
    for k in range(hu.shape[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.MediaStorageSOPInstanceUID = sops[k] = generate_uid()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = CTImageStorage, sops[k]
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = PATIENT, PATIENT_ID, BIRTH, "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series_uid, frame
        ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"
        ds.ReferringPhysicianName, ds.AccessionNumber = "", ""
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.Manufacturer = modality, 3, int(numbers[k]), "test"
        ds.ImageOrientationPatient = [round(v, 8) for v in np.r_[lps[:3, 0] / spacing[0], lps[:3, 1] / spacing[1]]]
        ds.ImagePositionPatient = [round(v, 6) for v in (lps @ [0, 0, k, 1])[:3]]
        ds.PixelSpacing = [round(spacing[1], 6), round(spacing[0], 6)]
        ds.SliceThickness = round(spacing[2], 6)
        ds.Rows, ds.Columns = hu.shape[1], hu.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1024 + k % 3
        if padding is not None:
            ds.PixelPaddingValue = int(padding - ds.RescaleIntercept)
        if window is not None:   # (centres, widths), as a scanner's protocol writes them
            ds.WindowCenter, ds.WindowWidth = window
        ds.PixelData = np.ascontiguousarray(hu[:, :, k].T - ds.RescaleIntercept).astype(np.int16).tobytes()
        if syntax is not None:
            ds.compress(syntax)
        ds.save_as(folder / f"IM{names[k]:04d}", enforce_file_format=True)
    return sops


def canonical(data, affine):
    img = nib.as_closest_canonical(nib.Nifti1Image(data, affine))
    return np.asarray(img.dataobj), img.affine


def file_of_slice(folder, k, affine):
    """The file holding slice ``k`` (found by position, as names are shuffled)."""
    want = (LPS @ affine @ [0, 0, k, 1])[:3]
    for p in folder.iterdir():
        if np.allclose(pydicom.dcmread(p, stop_before_pixels=True).ImagePositionPatient, want, atol=1e-4):
            return p
    raise AssertionError(k)


@pytest.fixture
def ct_series(tmp_path):
    hu, affine = hu_volume(), oblique_affine()
    sops = write_series(tmp_path / "series", hu, affine)
    return tmp_path / "series", hu, affine, sops


def test_series_reads_back_values_and_geometry(ct_series):
    folder, hu, affine, _ = ct_series
    vol = open_volume(folder)
    want, want_affine = canonical(hu, affine)
    assert vol.modality == "CT" and vol.name == "DICOM series 3" and vol.shape == want.shape
    assert np.array_equal(vol.data[0], want)
    assert np.allclose(vol.affine, want_affine, atol=1e-4)
    assert dicom_source(vol).uid == pydicom.dcmread(next(folder.iterdir())).SeriesInstanceUID
    assert dicom_source(vol.with_labels(np.zeros(vol.shape, np.uint8))) is dicom_source(vol)


def test_slices_open_with_the_series_own_window(tmp_path):
    """The "auto" slice window of a DICOM series is the one its header asks for (the first of several);
    a CT without one opens in the soft-tissue window, an MR in its 1st-99th percentiles; the menu's
    "auto" entry names which."""
    from rfmweb.session import RenderSession

    hu, affine = hu_volume(), oblique_affine()
    write_series(tmp_path / "windowed", hu, affine, window=([40, 400], [80, 2000]))
    write_series(tmp_path / "plain", hu, affine)
    write_series(tmp_path / "mr", hu + 1024, affine, modality="MR")
    windowed, plain, mr = (RenderSession(open_volume(tmp_path / name), renderer="vtk", width=64, height=64)
                           for name in ("windowed", "plain", "mr"))
    for s in (windowed, plain, mr):
        s.set_view_mode("axial")
    assert windowed.window_level == pytest.approx((80.0, 40.0))
    assert plain.window_level == pytest.approx((400.0, 50.0))
    lo, hi = np.percentile(hu + 1024, [1, 99])
    width, level = mr.window_level
    assert width == pytest.approx(hi - lo, rel=0.1) and level == pytest.approx((lo + hi) / 2, abs=0.1 * (hi - lo))
    # the window menu's "auto" entry says which of the three it is
    assert [s.auto_window_label() for s in (windowed, plain, mr)] == [
        "auto: the series' own (W80 L40)", "auto: soft tissue (W400 L50)", "auto: 1st-99th percentile"]


def test_small_spacing_jitter_is_accepted(tmp_path):
    hu, affine = hu_volume(), oblique_affine()
    folder = tmp_path / "jitter"
    write_series(folder, hu, affine)
    path = file_of_slice(folder, 5, affine)
    ds = pydicom.dcmread(path)
    ds.ImagePositionPatient = [v + 0.02 * n for v, n in zip(ds.ImagePositionPatient, (LPS @ affine)[:3, 2] / 2.5)]
    ds.save_as(path)
    assert np.allclose(open_volume(folder).affine, canonical(hu, affine)[1], atol=1e-4)


def test_several_series_largest_by_default_and_series_picks(tmp_path, caplog):
    folder = tmp_path / "study"
    big, small = hu_volume(), hu_volume((24, 20, 10), seed=5)
    write_series(folder / "a", big, oblique_affine(), series_uid="1.2.3.4.100")
    write_series(folder / "b", small, np.diag([0.7, 0.7, 3.0, 1.0]), series_uid="1.2.3.4.200")
    with caplog.at_level(logging.INFO, logger="rfmweb"):
        vol = open_volume(folder)
    assert np.array_equal(vol.data[0], canonical(big, oblique_affine())[0])
    ids = {uid: hashlib.sha1(uid.encode()).hexdigest()[:8] for uid in ("1.2.3.4.100", "1.2.3.4.200")}
    # listed by number and a short id; the UIDs themselves are never logged
    assert f"3 (16 images, id {ids['1.2.3.4.100']})" in caplog.text and "1.2.3.4" not in caplog.text
    assert f"3 (10 images, id {ids['1.2.3.4.200']})" in caplog.text
    for series in ("1.2.3.4.200", ids["1.2.3.4.200"]):
        other = open_volume(folder, series=series)
        assert np.array_equal(other.data[0], canonical(small, np.diag([0.7, 0.7, 3.0, 1.0]))[0])
    assert other.name == "DICOM series 3"
    with pytest.raises(InputError, match="no series 9.9 here; the series are: 3 "):
        open_volume(folder, series="9.9")
    with pytest.raises(InputError, match="more than one series 3 here"):
        open_volume(folder, series="3")
    # two series of one size: the file order would pick the scan, so the reader asks
    write_series(folder / "c", big + 500, oblique_affine(), series_uid="1.2.3.4.300")
    with pytest.raises(InputError, match="several series with 16 images: .* choose one with --series"):
        open_volume(folder)
    with pytest.raises(InputError, match="--series"):
        open_volume("sample:ct_phantom", series="1.2.3.4.100")
    import pydicom
    for f in (folder / "b").iterdir():              # an empty SeriesNumber named it "DICOM series None"
        ds = pydicom.dcmread(f)
        ds.SeriesNumber = None
        ds.save_as(f)
    assert open_volume(folder / "b").name == f"DICOM series {ids['1.2.3.4.200']}"


def test_zip_input_and_hostile_zips(ct_series, tmp_path):
    folder, hu, affine, _ = ct_series
    archive = tmp_path / "upload.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for p in folder.iterdir():
            z.write(p, f"export/series/{p.name}")
        z.writestr("export/README.txt", "not dicom")
    vol = open_volume(archive)
    assert vol.name == "DICOM series 3" and np.array_equal(vol.data[0], canonical(hu, affine)[0])
    for name, reason in [("../evil.dcm", "leaves the archive"), ("/etc/evil", "leaves the archive"),
                         ("C:/evil", "leaves the archive")]:
        bad = tmp_path / "bad.zip"
        with zipfile.ZipFile(bad, "w") as z:
            z.writestr(name, b"x")
        with pytest.raises(InputError, match=reason) as err:
            open_volume(bad)
        assert err.value.path == str(bad)
    link = zipfile.ZipInfo("link.dcm")
    link.external_attr = 0o120777 << 16
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as z:
        z.writestr(link, "/etc/passwd")
    with pytest.raises(InputError, match="symbolic link"):
        open_volume(tmp_path / "link.zip")
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    with pytest.raises(InputError, match="not a readable .zip"):
        open_volume(tmp_path / "junk.zip")


def test_zip_bomb_refused_before_unpacking(tmp_path, monkeypatch):
    from rfmweb.io import dicom

    monkeypatch.setattr(dicom, "MAX_ZIP_BYTES", 1 << 20)
    with zipfile.ZipFile(tmp_path / "bomb.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("a.dcm", b"\0" * (2 << 20))
    with pytest.raises(InputError, match="more than the"):
        open_volume(tmp_path / "bomb.zip")


def _tilt(folder, affine):
    for k in range(16):
        p = file_of_slice(folder, k, affine)
        ds = pydicom.dcmread(p)
        ds.ImagePositionPatient = [v + d for v, d in zip(ds.ImagePositionPatient, [0.0, 2.5 * k * np.tan(0.3), 0.0])]
        ds.save_as(p)


def _missing(folder, affine):
    file_of_slice(folder, 7, affine).unlink()


def _uneven(folder, affine):
    p = file_of_slice(folder, 7, affine)
    ds = pydicom.dcmread(p)
    ds.ImagePositionPatient = [v + 0.8 * n for v, n in zip(ds.ImagePositionPatient, [0.0, 0.0, 1.0])]
    ds.save_as(p)


def _mixed_sizes(folder, affine):
    p = file_of_slice(folder, 3, affine)
    ds = pydicom.dcmread(p)
    ds.Rows, ds.Columns = 12, 10
    ds.PixelData = np.zeros((12, 10), np.int16).tobytes()
    ds.save_as(p)


def _mixed_orientation(folder, affine):
    p = file_of_slice(folder, 3, affine)
    ds = pydicom.dcmread(p)
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.save_as(p)


def _duplicate(folder, affine):
    ds = pydicom.dcmread(file_of_slice(folder, 3, affine))
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy")


@pytest.mark.parametrize("damage, reason", [
    (_tilt, "gantry tilt of 17.19 degrees"),   # atan(tan(0.3 rad))
    (_missing, "missing slices: a gap of 5 mm"),
    (_uneven, "uneven slice spacing"),
    (_mixed_sizes, "mixed image sizes (rows x columns): 20x24 in 15 images, 12x10 in 1 images"),
    (_mixed_orientation, "mixed orientations"),
    (_duplicate, "2 images share one slice position"),
])
def test_bad_series_is_one_clear_error(tmp_path, damage, reason):
    affine = np.diag([0.8, 0.9, 2.5, 1.0])
    folder = tmp_path / "bad"
    write_series(folder, hu_volume(), affine)
    damage(folder, affine)
    with pytest.raises(InputError) as err:
        open_volume(folder)
    assert err.value.path == str(folder) and reason in err.value.reason, err.value.reason


@pytest.mark.parametrize("syntax", [None, RLELossless])
def test_a_monochrome1_series_reads_the_same_hu(tmp_path, syntax):
    """MONOCHROME1 says how to display (bright = low), not what a voxel holds: its HU are the rescaled
    stored values, as for MONOCHROME2 (GDCM inverted the stored values first: 60,501 "HU" for air)."""
    hu, affine = hu_volume((24, 20, 6)), np.diag([0.5, 0.5, 1.0, 1.0])
    write_series(tmp_path / "m1", hu, affine, syntax=syntax, photometric="MONOCHROME1")
    np.testing.assert_array_equal(load_dicom(tmp_path / "m1").data[0], hu)


def test_padding_outside_the_field_of_view_reads_as_the_lowest_real_value(tmp_path):
    """Voxels a file marks as padding (here -3024 HU outside a disc) are not tissue: they read as the
    series' lowest real value, so no -3024 stretches the volume's range; every other voxel is kept."""
    hu, affine = hu_volume((24, 20, 6)), np.diag([0.5, 0.5, 1.0, 1.0])
    x, y = np.meshgrid(np.arange(24) - 11.5, np.arange(20) - 9.5, indexing="ij")
    outside = np.broadcast_to((x**2 + y**2 > 9.5**2)[:, :, None], hu.shape)
    hu[outside] = -3024
    write_series(tmp_path / "padded", hu, affine, padding=-3024)
    data = load_dicom(tmp_path / "padded").data[0]
    np.testing.assert_array_equal(data[~outside], hu[~outside])
    assert (data[outside] == hu[~outside].min()).all()
    write_series(tmp_path / "unmarked", hu, affine)                 # without the tag: values as stored
    assert load_dicom(tmp_path / "unmarked").data[0].min() == -3024


def test_copies_of_an_image_are_read_once_and_a_clash_names_its_files(tmp_path):
    hu, affine = hu_volume((24, 20, 6)), np.diag([0.5, 0.5, 1.0, 1.0])
    folder = tmp_path / "export"
    write_series(folder, hu, affine)
    (folder / "resent").write_bytes(file_of_slice(folder, 2, affine).read_bytes())    # the same SOPInstanceUID
    np.testing.assert_array_equal(load_dicom(folder).data[0], hu)
    ds = pydicom.dcmread(folder / "resent")
    ds.SOPInstanceUID = generate_uid()                                                # another image, same place
    ds.save_as(folder / "resent")
    with pytest.raises(InputError, match=f"e.g. ({file_of_slice(folder, 2, affine).name} and resent|resent and "
                                         f"{file_of_slice(folder, 2, affine).name}) at 2 mm"):
        load_dicom(folder)


def test_an_image_that_cannot_be_decoded_is_named(tmp_path):
    hu, affine = hu_volume((40, 32, 4)), np.diag([0.5, 0.5, 1.0, 1.0])
    write_series(tmp_path / "c", hu, affine, syntax=JPEG2000Lossless)
    bad = file_of_slice(tmp_path / "c", 1, affine)
    ds = pydicom.dcmread(bad)
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.50"      # says JPEG baseline, holds JPEG 2000
    ds.save_as(bad)
    with pytest.raises(InputError, match=f"pixel data of {bad.name} \\(JPEG Baseline"):
        load_dicom(tmp_path / "c")


def test_empty_folder_and_single_file(tmp_path, ct_series):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no DICOM images"):
        open_volume(tmp_path / "empty")
    with pytest.raises(InputError, match="single DICOM file"):
        open_volume(tmp_path / "x.dcm")


@pytest.mark.parametrize("syntax, shape", [(RLELossless, (24, 20, 6)), (JPEG2000Lossless, (40, 32, 4))])
def test_compressed_series_read(tmp_path, syntax, shape):
    hu, affine = hu_volume(shape), np.diag([0.5, 0.5, 1.0, 1.0])
    write_series(tmp_path / "c", hu, affine, syntax=syntax)
    assert pydicom.dcmread(next((tmp_path / "c").iterdir())).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(load_dicom(tmp_path / "c").data[0], hu)


def test_patient_identity_never_logged_nor_shown(tmp_path, caplog):
    folder = tmp_path / "study"
    write_series(folder / "a", hu_volume(), oblique_affine())
    write_series(folder / "b", hu_volume((24, 20, 8)), oblique_affine())
    _missing(folder / "a", oblique_affine())
    shown = []
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(InputError) as err:
            open_volume(folder)
        shown.append(str(err.value))
        vol = open_volume(folder / "b")
        shown += [vol.name, repr(vol), repr(dicom_source(vol))]
    text = caplog.text + "\n".join(shown)
    assert "missing slices" in text and "8 slices" in text
    for secret in ("Doe", "Jane", PATIENT_ID, BIRTH):
        assert secret not in text


def test_nrrd_and_mha_round_trip(tmp_path):
    hu, affine = hu_volume().astype(np.float32), oblique_affine()
    labels = (np.arange(hu.size).reshape(hu.shape) % 3).astype(np.uint8)
    want, want_affine = canonical(hu, affine)
    for suffix in (".nrrd", ".mha"):
        save_itk(tmp_path / f"ct{suffix}", hu, affine)
        save_itk(tmp_path / f"lab{suffix}", labels, affine)
        vol = open_volume(tmp_path / f"ct{suffix}", tmp_path / f"lab{suffix}")
        assert vol.name == "ct" and vol.modality == "CT" and np.array_equal(vol.data[0], want)
        assert np.allclose(vol.affine, want_affine, atol=1e-5)
        assert np.array_equal(vol.labels, canonical(labels, affine)[0])
    import SimpleITK as sitk  # an LPS image written by ITK itself: x and y flip into RAS

    image = sitk.GetImageFromArray(hu.transpose(2, 1, 0).copy())
    image.SetSpacing((0.8, 0.9, 2.5))
    image.SetOrigin((10.0, 20.0, 30.0))
    sitk.WriteImage(image, str(tmp_path / "lps.nhdr"))
    vol = load_volume(tmp_path / "lps.nhdr")
    assert np.allclose(vol.affine, [[0.8, 0, 0, -10 - 0.8 * 23], [0, 0.9, 0, -20 - 0.9 * 19], [0, 0, 2.5, 30],
                                    [0, 0, 0, 1]])
    assert np.array_equal(vol.data[0], hu[::-1, ::-1])
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 4, 4, 3), np.uint8), isVector=True), str(tmp_path / "rgb.mha"))
    with pytest.raises(InputError, match="3 components"):
        load_volume(tmp_path / "rgb.mha")
    (tmp_path / "junk.nrrd").write_bytes(b"NRRD0004\nnonsense\n")
    with pytest.raises(InputError, match="not a readable .nrrd"):
        load_volume(tmp_path / "junk.nrrd")


def _read_seg(path):
    import highdicom as hd

    return hd.seg.segread(path)


def test_dicom_seg_references_the_source_series(ct_series, tmp_path):
    folder, hu, affine, sops = ct_series
    vol = open_volume(folder)
    labels_src = np.zeros(hu.shape, np.uint8)           # in the written (source) voxel order
    labels_src[3:9, 2:7, 4:8], labels_src[12:15, 10:14, 9:11] = 2, 5
    labels = canonical(labels_src, affine)[0]
    classes = (LabelClass(2, "liver", (0.8, 0.3, 0.2), "organs"), LabelClass(5, "lesion", (1.0, 1.0, 0.0), "tumour"))
    out = save_segmentation(labels, vol, tmp_path / "seg.dcm", classes=classes, algorithm="test net")
    seg = _read_seg(out)
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == dicom_source(vol).uid
    assert seg.PatientID == PATIENT_ID and seg.FrameOfReferenceUID == dicom_source(vol).datasets[0].FrameOfReferenceUID
    assert list(seg.get_segment_numbers()) == [1, 2]
    assert [seg.get_segment_description(i).SegmentLabel for i in (1, 2)] == ["liver", "lesion"]
    assert seg.get_segment_description(2).SegmentAlgorithmType == "AUTOMATIC"
    pixels = seg.get_pixels_by_source_instance([sops[k] for k in range(hu.shape[2])], combine_segments=True,
                                               skip_overlap_checks=True)   # [slices, rows, columns]
    want = np.select([labels_src == 2, labels_src == 5], [1, 2]).transpose(2, 1, 0)
    assert np.array_equal(pixels, want)
    assert not list(tmp_path.glob("seg_images"))     # DICOM input: nothing else is written


def test_dicom_seg_of_a_series_without_type2_attributes(ct_series, tmp_path):
    """An anonymiser dropped the birth date, sex and study ID (Type 2: present, possibly empty): the SEG
    is written with them empty, the study's other attributes copied, and the series left as read."""
    folder, hu, affine, _ = ct_series
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.PatientBirthDate, ds.PatientSex, ds.StudyID
        ds.save_as(f, enforce_file_format=True)
    vol = open_volume(folder)
    labels = np.zeros(vol.shape, np.uint8)
    labels[3:9, 2:7, 4:8] = 1
    seg = _read_seg(save_segmentation(labels, vol, tmp_path / "seg.dcm"))
    assert seg.PatientBirthDate == "" and seg.PatientSex == "" and seg.StudyID == ""
    assert seg.PatientID == PATIENT_ID and seg.StudyDate == "20240101"
    assert "PatientBirthDate" not in dicom_source(vol).datasets[0]
    for f in folder.iterdir():
        ds = pydicom.dcmread(f)
        del ds.StudyInstanceUID
        ds.save_as(f, enforce_file_format=True)
    with pytest.raises(InputError, match="StudyInstanceUID"):
        save_segmentation(labels, open_volume(folder), tmp_path / "bad.dcm")
    assert not (tmp_path / "bad.dcm").exists()


def test_segmentation_of_nifti_volume_writes_its_images(tmp_path):
    rng = np.random.default_rng(3)
    data = rng.normal(100, 30, size=(2, 24, 20, 16)).astype(np.float32)
    affine = np.diag([1.0, 1.2, 2.0, 1.0])
    vol = Volume(data, affine, modality="MR", channels=("T1", "FLAIR"), name="case")
    labels = np.zeros(vol.shape, np.uint8)
    labels[4:10, 5:9, 3:12] = 1
    absent = LabelClass(7, "absent", (0.0, 0.0, 1.0))
    out = save_segmentation(labels, vol, tmp_path / "out.dcm", classes=(absent,))
    seg = _read_seg(out)
    assert [seg.get_segment_description(i).SegmentLabel for i in (1, 2)] == ["label 1", "absent"]
    assert seg.get_segment_description(1).SegmentAlgorithmType == "MANUAL"
    images = tmp_path / "out_images"
    uids = {pydicom.dcmread(p, stop_before_pixels=True).SeriesInstanceUID for p in images.iterdir()}
    assert len(uids) == 2 and seg.ReferencedSeriesSequence[0].SeriesInstanceUID in uids
    for c, uid in enumerate(sorted(uids, key=lambda u: seg.ReferencedSeriesSequence[0].SeriesInstanceUID != u)):
        back = load_dicom(images, series=uid)
        step = (data[c].max() - data[c].min()) / 65535
        assert np.allclose(back.affine, affine, atol=1e-5)
        assert np.abs(back.data[0] - data[c]).max() <= step
    save_segmentation(labels, vol, tmp_path / "out.dcm")      # again: the images folder is replaced
    assert len(list(images.iterdir())) == 32
    for suffix in (".nii.gz", ".nrrd"):
        back = load_volume(save_segmentation(labels, vol, tmp_path / f"seg{suffix}"))
        assert np.array_equal(back.data[0], labels) and np.allclose(back.affine, affine)
    with pytest.raises(InputError, match="written as"):
        save_segmentation(labels, vol, tmp_path / "seg.png")
    with pytest.raises(InputError, match="all background"):
        save_segmentation(np.zeros(vol.shape, np.uint8), vol, tmp_path / "empty.dcm")


def test_cli_renders_a_dicom_folder(tmp_path):
    folder = tmp_path / "study"
    write_series(folder / "a", hu_volume(), oblique_affine(), series_uid="1.2.3.4.100")
    write_series(folder / "b", hu_volume((24, 20, 8)), oblique_affine(), series_uid="1.2.3.4.200")
    for extra in ([], ["--series", "1.2.3.4.200"]):
        out = tmp_path / f"frame{len(extra)}.png"
        res = subprocess.run([sys.executable, "-m", "rfmweb", "render", str(folder), "--out", str(out), "--size", "48",
                              *extra], capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        assert out.stat().st_size > 0 and "Doe" not in res.stderr


def test_serve_takes_a_series_and_refuses_an_unknown_one(tmp_path):
    folder = tmp_path / "study"
    write_series(folder / "a", hu_volume(), oblique_affine(), series_uid="1.2.3.4.100")
    res = subprocess.run([sys.executable, "-m", "rfmweb", "serve", str(folder), "--series", "9.9", "--port", "0"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 2 and "no series 9.9 here; the series are: 3 (16 images" in res.stderr


def test_segment_command_writes_dicom_seg(tmp_path):
    import torch

    from rfmweb.cli import main
    from rfmweb.inr.checkpoint import save_checkpoint
    from rfmweb.io import save_brats_case
    from rfmweb.models.inr import NeumoursINR

    torch.manual_seed(0)
    net = NeumoursINR().eval()
    with torch.no_grad():                  # a random net with tumour classes winning somewhere
        net.head.bias.copy_(torch.tensor([0.0, 0.02, -0.01, 0.01]))
    ckpt = save_checkpoint(tmp_path / "m.pt", net)
    data = np.random.default_rng(0).normal(100, 20, size=(4, 20, 22, 18)).astype(np.float32)
    save_brats_case(Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), modality="MR", channels=("T1n", "T1c", "T2w", "FLAIR")),
                    tmp_path / "case")
    args = ["segment", str(tmp_path / "case"), "--checkpoint", str(ckpt), "--device", "cpu", "--precision", "fp32"]
    assert main([*args, "--out", str(tmp_path / "seg.nii.gz")]) == 0
    assert main([*args, "--out", str(tmp_path / "seg.dcm")]) == 0
    seg = _read_seg(tmp_path / "seg.dcm")
    assert [seg.get_segment_description(i).SegmentLabel for i in (1, 2, 3)] == ["NCR", "ED", "ET"]
    assert [seg.get_segment_description(i).SegmentedPropertyTypeCodeSequence[0].CodeMeaning
            for i in (1, 2, 3)] == ["Necrosis", "Edema", "Neoplasm"]     # edema is not a neoplasm
    assert seg.get_segment_description(1).SegmentAlgorithmType == "AUTOMATIC"
    images = load_dicom(tmp_path / "seg_images", series=seg.ReferencedSeriesSequence[0].SeriesInstanceUID)
    uids = [ds.SOPInstanceUID for ds in dicom_source(images).datasets]
    pixels = seg.get_pixels_by_source_instance(uids, combine_segments=True, skip_overlap_checks=True)
    want = load_volume(tmp_path / "seg.nii.gz").data[0].astype(np.uint8).transpose(2, 1, 0)
    assert want.any() and np.array_equal(pixels, want)
    assert main([*args, "--out", str(tmp_path / "x.dcm"), "--resolution", "1.0"]) == 2


def test_a_dicom_seg_goes_into_a_folder_not_made_yet(tmp_path):
    """``segment --out new/seg.dcm`` segmented, then failed with a traceback making its images' folder."""
    from rfmweb.io import save_segmentation
    from rfmweb.samples import load

    volume = load("ct_phantom")
    out = save_segmentation(volume.labels, volume, tmp_path / "new" / "deeper" / "seg.dcm")
    assert out.exists() and (tmp_path / "new" / "deeper" / "seg_images").is_dir()


def test_headers_may_not_read_voxels_from_elsewhere(tmp_path):
    import SimpleITK as sitk

    # a MetaImage header beside its raw data reads; one that points outside its folder is refused
    good = tmp_path / "ok.mhd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((4, 5, 6), np.float32)), str(good))
    assert load_volume(good).shape == (6, 5, 4)
    secret = tmp_path / "secret.raw"
    secret.write_bytes(b"\0" * 480)
    sub = tmp_path / "sub"
    sub.mkdir()
    for name, header in (("abs.mha", f"ElementDataFile = {secret}"), ("up.mhd", "ElementDataFile = ../secret.raw")):
        path = sub / name
        path.write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 5 6\nElementType = MET_FLOAT\n" + header + "\n")
        with pytest.raises(InputError, match="outside the header's folder") as err:
            load_volume(path)
        assert name in str(err.value)
    nhdr = sub / "up.nhdr"
    nhdr.write_text("NRRD0004\ntype: float\ndimension: 3\nsizes: 4 5 6\nencoding: raw\ndata file: ../secret.raw\n\n")
    with pytest.raises(InputError, match="outside the header's folder"):
        load_volume(nhdr)


def test_absurd_voxel_size_is_refused(tmp_path):
    import nibabel as nib

    path = tmp_path / "huge_voxels.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 5, 6), np.float32), np.diag([1e12, 1.0, 1.0, 1.0])), path)
    with pytest.raises(InputError, match="absurd"):
        load_volume(path)


def test_a_dicom_folder_with_a_nifti_beside_is_read_as_dicom(ct_series):
    """dcm2niix writes its .nii into the DICOM folder by default: that folder was taken for a BraTS
    case ("no *-t1n.nii.gz file"), never mentioning the images in it."""
    folder, hu, affine, _ = ct_series
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(folder / "series_3.nii.gz"))
    assert np.array_equal(open_volume(folder).data[0], canonical(hu, affine)[0])
    lone = folder.parent / "converted"
    lone.mkdir()
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), str(lone / "scan.nii.gz"))
    with pytest.raises(InputError, match="it holds scan.nii.gz: give that file itself"):
        open_volume(lone)
    # a cohort folder: its case folders, not a label map two levels down, are what to give
    cohort = folder.parent / "cohort"
    for case in ("BraTS-1", "BraTS-2"):
        (cohort / case).mkdir(parents=True)
        for kind in ("seg", "t1n"):
            nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
                     str(cohort / case / f"{case}-{kind}.nii.gz"))
    with pytest.raises(InputError, match=r"it holds BraTS case folders \(BraTS-1, BraTS-2\): give one"):
        open_volume(cohort)
