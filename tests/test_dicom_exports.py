"""DICOM as PACS exports deliver it: bare datasets, multi-frame series beside key images, several
echoes or acquisitions in one series, a slice of another stack, float pixels.

Series are written with the independent pydicom writer of :mod:`tests.test_dicom`; each case must
read back exactly or be refused in words, never read as a wrong volume.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from rfmweb.errors import InputError
from rfmweb.io import load_dicom, open_volume

from .test_dicom import file_of_slice, hu_volume, write_series

AFFINE = np.diag([0.8, 0.9, 2.5, 1.0])


def _edit(folder, change) -> None:
    """Apply ``change(ds, k)`` to every file of ``folder`` (``k``: its index in name order) and save it."""
    for k, p in enumerate(sorted(folder.rglob("IM*"))):
        ds = pydicom.dcmread(p)
        change(ds, k)
        ds.save_as(p)


def test_bare_datasets_without_the_file_header_are_read(tmp_path):
    """Files without the preamble and DICM (older PACS, ACR-NEMA tools) read as GDCM and 3D Slicer
    read them; a text file beside them is still skipped."""
    hu = hu_volume((12, 10, 6))
    write_series(tmp_path / "bare", hu, AFFINE)
    for p in (tmp_path / "bare").iterdir():
        ds = pydicom.dcmread(p)
        ds.preamble = None
        del ds.file_meta
        ds.save_as(p, implicit_vr=False, little_endian=True, enforce_file_format=False)
        assert p.read_bytes()[:2] == b"\x08\x00"
    (tmp_path / "bare" / "README").write_text("exported by PACS\n")
    volume = load_dicom(tmp_path / "bare")
    np.testing.assert_array_equal(volume.data[0], hu)
    np.testing.assert_allclose(volume.affine, AFFINE, atol=1e-5)


def test_a_multi_frame_series_is_refused_not_passed_over_for_key_images(tmp_path):
    """An enhanced CT (one file of 40 frames) beside two key images: the 40 frames are the scan, so
    the folder's largest series is the multi-frame one, refused in words (not the 2 key images read
    as a 2-slice volume)."""
    write_series(tmp_path / "export" / "keys", hu_volume((12, 10, 2)), np.diag([0.8, 0.9, 20.0, 1.0]))
    ds = pydicom.dcmread(next((tmp_path / "export" / "keys").iterdir()))
    ds.SeriesInstanceUID, ds.SOPInstanceUID, ds.SeriesDescription = generate_uid(), generate_uid(), "Head enhanced"
    ds.NumberOfFrames = 40
    ds.PixelData = np.zeros((40, 10, 12), np.int16).tobytes()
    ds.save_as(tmp_path / "export" / "enhanced")
    with pytest.raises(InputError) as err:
        open_volume(tmp_path / "export")
    assert "multi-frame (enhanced) DICOM is not supported" in err.value.reason
    assert "the folder also holds 3 (2 images, id" in err.value.reason
    assert "choose one with --series" in err.value.reason
    with pytest.raises(InputError) as err:
        open_volume(tmp_path / "export", series="none")
    assert "'Head enhanced' (1 image of 40 frames" in err.value.reason and "(2 images," in err.value.reason


def _two_stacks(folder, key, first, second) -> None:
    """One series of two 6-slice stacks half a slice apart, whose files say ``key`` = ``first`` and
    ``key`` = ``second``."""
    uid = generate_uid()
    shifted = AFFINE.copy()
    shifted[2, 3] += 1.25
    for sub, affine, value, seed in (("a", AFFINE, first, 1), ("b", shifted, second, 2)):
        write_series(folder / sub, hu_volume((12, 10, 6), seed=seed), affine, series_uid=uid, seed=seed)
        _edit(folder / sub, lambda ds, k: setattr(ds, key, value))


@pytest.mark.parametrize("key, first, second, reason", [
    ("EchoNumbers", 1, 2, "the series holds 2 echoes in one stack (EchoNumbers 1, 2)"),
    ("EchoTime", "10", "80.0", "the series holds 2 echo times in one stack (EchoTime 10, 80 ms)"),
    ("TemporalPositionIdentifier", 1, 2, "the series holds 2 time points in one stack"),
    ("AcquisitionNumber", 1, 2, "the series interleaves 2 acquisitions (AcquisitionNumber) along one stack"),
])
def test_interleaved_volumes_in_one_series_are_refused(tmp_path, key, first, second, reason):
    """Two echoes (time points, acquisitions) half a slice apart pass every spacing check as one
    stack of alternating contrast; they are refused, naming what differs."""
    _two_stacks(tmp_path / "mr", key, first, second)
    with pytest.raises(InputError) as err:
        open_volume(tmp_path / "mr")
    assert reason in err.value.reason, err.value.reason


def test_acquisitions_one_after_another_along_the_stack_are_one_volume(tmp_path):
    """Step-and-shoot CT: each table position its own AcquisitionNumber, the stack still one volume."""
    hu = hu_volume((12, 10, 8))
    write_series(tmp_path / "ct", hu, AFFINE)
    _edit(tmp_path / "ct", lambda ds, k: setattr(ds, "AcquisitionNumber", 1 + int(ds.ImagePositionPatient[2] // 10)))
    assert len({pydicom.dcmread(p).AcquisitionNumber for p in (tmp_path / "ct").iterdir()}) == 2
    np.testing.assert_array_equal(load_dicom(tmp_path / "ct").data[0], hu)


def test_a_slice_off_the_stack_is_refused_naming_its_file(tmp_path):
    """The tilt check looks at the first and last slice; a middle slice 10 mm to the side (an image of
    another stack) is refused too, by its file."""
    write_series(tmp_path / "ct", hu_volume(), AFFINE)
    p = file_of_slice(tmp_path / "ct", 7, AFFINE)
    ds = pydicom.dcmread(p)
    ds.ImagePositionPatient = [v + d for v, d in zip(ds.ImagePositionPatient, (10.0, 0.0, 0.0))]
    ds.save_as(p)
    with pytest.raises(InputError) as err:
        open_volume(tmp_path / "ct")
    assert err.value.reason.startswith(f"image {p.name} lies 10 mm to the side"), err.value.reason


def test_a_slice_a_tenth_of_a_pixel_aside_is_read(tmp_path):
    """Rounded positions (a tenth of a pixel) are not a stray slice."""
    write_series(tmp_path / "ct", hu_volume(), AFFINE)
    p = file_of_slice(tmp_path / "ct", 7, AFFINE)
    ds = pydicom.dcmread(p)
    ds.ImagePositionPatient = [v + d for v, d in zip(ds.ImagePositionPatient, (0.08, 0.0, 0.0))]
    ds.save_as(p)
    assert open_volume(tmp_path / "ct").shape == (24, 20, 16)


def test_float_pixel_data_is_named(tmp_path):
    write_series(tmp_path / "pet", hu_volume((12, 10, 3)), AFFINE)
    for p in (tmp_path / "pet").iterdir():
        ds = pydicom.dcmread(p)
        del ds.PixelData
        ds.FloatPixelData = np.zeros((10, 12), np.float32).tobytes()
        ds.save_as(p)
    with pytest.raises(InputError) as err:
        open_volume(tmp_path / "pet")
    assert "holds FloatPixelData (floating-point pixels)" in err.value.reason


def test_subpackages_are_attributes_of_a_plain_import():
    """The README's ``import rfmweb; rfmweb.io.open_volume(...)``."""
    code = "import rfmweb; print(rfmweb.io.open_volume.__name__, rfmweb.transfer.preset.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["open_volume", "preset"]


def test_a_value_some_images_leave_out_is_not_another_volume(tmp_path):
    """Exports drop EchoTime or AcquisitionNumber on a few images: still one volume."""
    hu = hu_volume((12, 10, 6))
    write_series(tmp_path / "mr", hu, AFFINE)
    _edit(tmp_path / "mr", lambda ds, k: setattr(ds, "EchoTime", "4.92") if k % 2 else None)
    _edit(tmp_path / "mr", lambda ds, k: setattr(ds, "AcquisitionNumber", "" if k < 2 else 1))
    np.testing.assert_array_equal(load_dicom(tmp_path / "mr").data[0], hu)


def test_positions_rounded_to_a_tenth_of_a_mm_are_not_a_tilt(tmp_path):
    """An oblique series of 0.6 mm slices whose positions are written to one decimal read as a 0.15
    degree gantry tilt."""
    c, s = np.cos(np.radians(20)), np.sin(np.radians(20))
    affine = np.eye(4)
    affine[:3, :3] = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]) @ np.diag([0.5, 0.5, 0.6])
    write_series(tmp_path / "ct", hu_volume((12, 10, 8)), affine)
    _edit(tmp_path / "ct", lambda ds, k: setattr(ds, "ImagePositionPatient",
                                                 [round(float(v), 1) for v in ds.ImagePositionPatient]))
    assert open_volume(tmp_path / "ct").shape == (12, 10, 8)
