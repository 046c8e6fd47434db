"""Class names and colours from the label table beside a label map (:mod:`rfmweb.io.label_table`):
BIDS ``.tsv``, 3D Slicer ``.ctbl``, ITK-SNAP ``.txt``; malformed tables are refused with the line."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.io import classes_from_table, load_volume, open_volume, read_label_table, save_array

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])


@pytest.fixture
def case(tmp_path):
    """A CT-like volume and a label map with values 0, 1, 2 and 5."""
    ct = np.full((8, 9, 10), -1000.0, np.float32)
    ct[2:6, 2:7, 2:8] = 40.0
    labels = np.zeros(ct.shape, np.uint8)
    labels[2:6, 2:7, 2:5], labels[2:6, 2:7, 5:8], labels[0, 0, 0] = 1, 2, 5
    save_array(tmp_path / "ct.nii.gz", ct, AFFINE)
    save_array(tmp_path / "seg.nii.gz", labels, AFFINE)
    return tmp_path


def _classes(volume):
    return {c.index: (c.name, tuple(round(x, 3) for x in c.color)) for c in volume.classes}


def test_a_bids_tsv_beside_the_labels_names_and_colours_the_classes(case, caplog):
    (case / "seg.tsv").write_text("index\tname\tabbreviation\tcolor\n0\tbackground\tBG\t#000000\n"
                                  "1\tliver\tLIV\t#ff8000\n2\tspleen\tSPL\t\n7\tkidney\tKID\t#0000ff\n")
    with caplog.at_level(logging.WARNING):
        vol = load_volume(case / "ct.nii.gz", case / "seg.nii.gz")
    got = _classes(vol)
    assert got[1] == ("liver", (1.0, 0.502, 0.0))
    assert got[2][0] == "spleen" and got[2][1] != (0.0, 0.0, 0.0)          # no colour given: a palette colour
    assert got[5][0] == "label 5" and 7 not in got                        # not in the table / not in the map
    assert "no row for label(s) [5]" in caplog.text
    # every command opens volumes this way
    assert _classes(open_volume(case / "ct.nii.gz", case / "seg.nii.gz")) == got


def test_a_slicer_colour_table_beside_the_labels(case):
    (case / "seg.ctbl").write_text("# Color table file seg.ctbl\n# 3 values\n0 Background 0 0 0 0\n"
                                   "1 white_matter 245 245 245 255\n2 grey_matter 128 64 32 255\n5 csf 0 0 255 255\n")
    got = _classes(load_volume(case / "ct.nii.gz", case / "seg.nii.gz"))
    assert got == {0: ("Background", (0.0, 0.0, 0.0)), 1: ("white_matter", (0.961, 0.961, 0.961)),
                   2: ("grey_matter", (0.502, 0.251, 0.125)), 5: ("csf", (0.0, 0.0, 1.0))}


def test_an_itk_snap_label_description_through_the_api(case):
    (case / "labels.txt").write_text('# ITK-SnAP Label Description File\n'
                                     '    0     0    0    0        0  0  0    "Clear Label"\n'
                                     '    1   255    0    0        1  1  1    "Enhancing tumour"\n'
                                     '    2     0  255    0        1  1  1    "Edema"\n')
    table = read_label_table(case / "labels.txt")
    assert table[1] == ("Enhancing tumour", (1.0, 0.0, 0.0)) and table[0][0] == "Clear Label"
    plain = load_volume(case / "ct.nii.gz", case / "seg.nii.gz")           # a .txt is not picked up by itself
    assert _classes(plain)[1][0] == "label 1"
    vol = load_volume(case / "ct.nii.gz", case / "seg.nii.gz",
                      classes=classes_from_table(plain.labels, table, case / "labels.txt"))
    assert [c.name for c in vol.classes] == ["Clear Label", "Enhancing tumour", "Edema", "label 5"]


@pytest.mark.parametrize("name, text, message", [
    ("seg.tsv", "index\tlabel\n1\tliver\n", "needs 'index' and 'name' columns"),
    ("seg.tsv", "index\tname\tcolor\n1\tliver\torange\n", "line 2: colour 'orange' is not #RRGGBB"),
    ("seg.tsv", "index\tname\n1\tliver\none\tspleen\n", "line 3: index 'one' is not an integer"),
    ("seg.ctbl", "1 liver 255 128 0 255\n1 spleen 0 0 255 255\n", "line 2: label 1 appears twice"),
    ("seg.ctbl", "1 liver 300 0 0 255\n", "line 1: colour components must be 0-255"),
    ("seg.ctbl", "1 liver\n", "line 1: expected 'index name R G B A'"),
    ("seg.ctbl", "# only comments\n", "has no rows"),
])
def test_a_malformed_table_is_refused_naming_the_file_and_line(case, name, text, message):
    (case / name).write_text(text)
    with pytest.raises(InputError) as err:
        load_volume(case / "ct.nii.gz", case / "seg.nii.gz")
    assert message in str(err.value) and name in str(err.value)


def test_an_unterminated_itk_snap_name_or_a_huge_file_is_refused(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text('    1   255    0    0        1  1  1    "Edema\n')
    with pytest.raises(InputError, match="labels.txt: line 1"):
        read_label_table(path)
    path.write_text("1 liver 255 0 0 255\n" * 60_000)
    with pytest.raises(InputError, match="too large for a label table"):
        read_label_table(path)


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd"])
def test_a_saved_segmentation_keeps_its_class_names(case, suffix):
    """``segment --out`` and the viewer's save write the BIDS table beside the map; loading it back
    with ``--labels`` shows the same names and colours."""
    from rfmweb.io import BRATS_CLASSES, save_segmentation
    vol = load_volume(case / "ct.nii.gz")
    labels = np.zeros(vol.shape, np.uint8)
    labels[2:4, 2:4, 2:4], labels[4:6, 2:4, 2:4] = 1, 2
    out = save_segmentation(labels, vol, case / f"brats{suffix}", classes=BRATS_CLASSES)
    assert (case / "brats.tsv").read_text().splitlines()[0] == "index\tname\tcolor"
    back = {c.index: c for c in load_volume(case / "ct.nii.gz", out).classes}
    for c in BRATS_CLASSES:
        if c.index in (1, 2):
            assert back[c.index].name == c.name
            np.testing.assert_allclose(back[c.index].color, c.color, atol=1 / 255)
    assert back[0].name == "background" and set(back) == {0, 1, 2}


def test_label_file_names_are_not_logged(case, caplog):
    """An export named after the patient: "DOE_JANE_19610101_seg.nii.gz has no label table beside it"
    reached the server's log. Neither it nor its table is named now."""
    (case / "seg.nii.gz").rename(case / "DOE_JANE_19610101_seg.nii.gz")
    with caplog.at_level(logging.DEBUG):
        load_volume(case / "ct.nii.gz", case / "DOE_JANE_19610101_seg.nii.gz")
        (case / "DOE_JANE_19610101_seg.tsv").write_text("index\tname\tcolor\n1\tliver\t#ff8000\n")
        load_volume(case / "ct.nii.gz", case / "DOE_JANE_19610101_seg.nii.gz")
    assert "no label table beside it" in caplog.text and "no row for label(s) [2, 5]" in caplog.text
    assert "DOE" not in caplog.text
