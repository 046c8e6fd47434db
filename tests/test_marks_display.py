"""Pending correction marks on the segmentation slice views: drawn into the slice frame (so every
front end shows them) exactly where the stroke went, in the painted label's colour, until cleared;
the brush radius in mm through the shared controller."""

from __future__ import annotations

import numpy as np
import pytest

from rfmweb.session import SegmentationViews
from rfmweb.session import messages as m
from rfmweb.session.controller import ViewController
from rfmweb.session.pointing import mark_radius_px
from rfmweb.session.segmentation import GT, RAW
from rfmweb.session.slice_frame import ERASE_MARK_COLOR, mark_colors

SIZE = 192


@pytest.fixture(scope="module")
def views():
    """A 2 mm synthetic glioma case, segmented; the ground-truth view shows its middle axial slice."""
    from rfmweb.data.cohort import cohort_case
    volume, _ = cohort_case("val", 0, 1, resolution_mm=2.0)
    v = SegmentationViews(volume, width=SIZE, height=SIZE)
    v.compute()
    for s in v.sessions:
        s.set_view_mode("axial")
        s.set_label_overlay(True)
    yield v
    v.close()


def _brain_stroke(views, view: int) -> np.ndarray:
    """``[3, 2]`` frame pixels ``(u, v)`` of a short horizontal stroke through the brain's centre."""
    geo = views.sessions[view].slice_geometry()
    brain = np.argwhere(views.volume.data[3][:, :, geo.index] > 0)         # FLAIR > 0: inside the head
    i, j = np.rint(brain.mean(0)).astype(int)
    u = ((geo.shape[0] - 1 - i) + 0.5) * geo.spacing[0] / geo.mm_per_px + geo.offset[0]
    v = ((geo.shape[1] - 1 - j) + 0.5) * geo.spacing[1] / geo.mm_per_px + geo.offset[1]
    return np.array([[u - 10, v], [u, v], [u + 10, v]])


def _distance_to_polyline(points: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` distance (pixels) from every pixel centre to the polyline through ``points``."""
    v, u = np.mgrid[:shape[0], :shape[1]] + 0.5
    px = np.stack([u.ravel(), v.ravel()], 1)
    d = np.full(len(px), np.inf)
    for p, q in zip(points[:-1], points[1:]):
        t = np.clip((px - p) @ (q - p) / ((q - p) @ (q - p)), 0, 1)
        d = np.minimum(d, np.linalg.norm(px - p - t[:, None] * (q - p), axis=1))
    return d.reshape(shape)


@pytest.mark.parametrize("label", [2, 0])
def test_a_stroke_shows_on_every_slice_view_until_cleared(views, label):
    session, raw = views.sessions[GT], views.sessions[RAW]
    before, raw_before, version = session.render(), raw.render(), session.version
    stroke, radius_px = _brain_stroke(views, GT), 4.0
    assert views.mark_pixels(GT, stroke, label, radius_px) > 0
    assert session.version > version, "the view was not told to render again"
    after = session.render()
    changed = (after != before).any(axis=2)
    assert changed.any(), "the stroke is not drawn"
    voxel_px = max(views.volume.spacing) / session.slice_geometry().mm_per_px
    near = _distance_to_polyline(stroke, changed.shape) <= radius_px + voxel_px + 1.5
    assert not (changed & ~near).any(), "pixels changed away from the stroke"
    color = ERASE_MARK_COLOR if label == 0 else mark_colors(session.classes)[label]
    def new_marks(image, old):
        return (image == np.array(color, np.uint8)).all(axis=2) & ~(old == np.array(color, np.uint8)).all(axis=2)

    outline = new_marks(after, before)
    assert outline.sum() >= 10, "no pixels of the mark colour"
    assert near[outline].all()
    # every segmentation view shows the same pending marks
    np.testing.assert_array_equal(new_marks(raw.render(), raw_before), outline)
    views.clear_marks()
    np.testing.assert_array_equal(session.render(), before)


def test_a_stroke_that_leaves_the_slice_and_comes_back_marks_only_what_it_crossed(views):
    """A stroke out of the slice's top edge, round its left side and back in at its bottom marks nothing:
    it never crossed the slice (the points off it used to be dropped, and the two left joined by a
    straight line through the brain). A stroke across the whole slice, its ends off it, marks its path."""
    geo = views.sessions[GT].slice_geometry()
    n = np.array(geo.shape)
    corners = geo.to_pixel(np.array([[0, 0, geo.index], [n[0] - 1, n[1] - 1, geo.index]]))   # pixel centres
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    u_turn = [[cx, y0 + 2], [cx, y0 - 8], [x0 - 8, y0 - 8], [x0 - 8, y1 + 8], [cx, y1 + 8], [cx, y1 - 2]]
    assert views.mark_pixels(GT, u_turn, 3, 1.0) == 0
    assert views.n_marks == 0
    across = views.mark_pixels(GT, [[x0 - 20, cy], [x1 + 20, cy]], 3, 1.0)
    brain = views.volume.data[3][:, :, geo.index] > 0
    assert across > 0.5 * brain.any(axis=1).sum(), "a stroke across the slice marks its path"
    views.clear_marks()


def test_brush_radius_in_mm_and_clear_through_the_controller(views):
    control = ViewController(list(views.sessions), segmentation=views)
    try:
        stroke = _brain_stroke(views, GT).tolist()
        counts = []
        for mm in (2.0, 6.0):
            control.handle(m.SetBrush(0, mm))
            control.handle(m.Stroke(0, stroke, 1))
            control.wait()
            counts.append(len(views.pending_marks()[0]))
            control.handle(m.ClearMarks(0))
            control.wait()
            assert len(views.pending_marks()[0]) == 0
        assert 0 < counts[0] < counts[1], counts
        with pytest.raises(m.MessageError, match="radius_mm"):
            m.parse_client_message({"type": "brush", "view": 0, "radius_mm": 500})
        assert m.parse_client_message({"type": "clear_marks", "view": 1}) == m.ClearMarks(1)
    finally:
        control.close()


def test_marks_show_on_the_3d_view_where_they_lie(views):
    """A 3-D view draws each pending mark as a dot in its label's colour at the voxel's projection."""
    from rfmweb.render.pick import project

    session = views.sessions[RAW]
    session.set_view_mode("3d")
    try:
        before = session.render()
        assert views.mark_pixels(GT, _brain_stroke(views, GT), 3, 3.0) > 0
        after = session.render()
        ijk, _ = views.pending_marks()
        world = np.c_[ijk, np.ones(len(ijk))] @ views.volume.affine[:3].T
        px, front = project(session.camera, world)
        color = np.array(mark_colors(session.classes)[3], np.uint8)
        coloured = (after == color).all(axis=2) & ~(before == color).all(axis=2)
        assert coloured.any(), "no mark drawn on the 3-D view"
        v, u = np.nonzero(coloured)
        nearest = np.min(np.hypot(u[:, None] - px[front, 0][None], v[:, None] - px[front, 1][None]), axis=1)
        r = mark_radius_px(session.camera.width, session.camera.height)
        assert nearest.max() <= 1.5 * r + 1, "a mark dot lies away from every marked voxel"
        views.clear_marks()
        np.testing.assert_array_equal(session.render(), before)
        # a click on the 3-D view marks the surface voxel: it shows as a dot too
        hit = views.mark_click(RAW, SIZE / 2, SIZE / 2, 1)
        assert hit is not None and len(views.pending_marks()[0]) == 1
        (u, v), = project(session.camera, (views.volume.affine @ np.append(hit, 1.0))[:3][None])[0]
        ncr = np.array(mark_colors(session.classes)[1], np.uint8)
        patch = session.render()[int(v) - 3:int(v) + 4, int(u) - 3:int(u) + 4]
        assert (patch == ncr).all(axis=2).any(), "the 3-D click's mark is not drawn"
        views.clear_marks()
    finally:
        session.set_view_mode("axial")


def test_the_segmentation_saves_as_nifti_on_the_case_grid(views, tmp_path):
    import nibabel as nib

    from rfmweb.session.segmentation import DENOISED

    path = views.save(tmp_path / "seg.nii.gz")
    img = nib.load(str(path))
    np.testing.assert_array_equal(np.asarray(img.dataobj), views.labels(DENOISED))
    np.testing.assert_allclose(img.affine, views.volume.affine, atol=1e-5)
    data = views.segmentation_file(RAW)
    assert data[:2] == b"\x1f\x8b"  # gzip: a .nii.gz for the browser to download
    with pytest.raises(Exception, match="view must be"):
        views.save(tmp_path / "x.nii.gz", view=7)
    with pytest.raises(Exception, match="segmentation is written as"):
        views.save(tmp_path / "seg.png")
    assert not (tmp_path / "seg.png").exists()


def test_the_segmentation_downloads_as_dicom_seg_with_its_images(views):
    """``fmt="dcm"``: a zip holding a DICOM SEG and the image series it references (this case is NIfTI,
    so the series is written beside it), readable by pydicom: what a PACS or 3D Slicer imports."""
    import io
    import zipfile

    import pydicom

    data = views.segmentation_file(RAW, "dcm")
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        names = archive.namelist()
        seg = pydicom.dcmread(io.BytesIO(archive.read("segmentation.dcm")))
        images = [n for n in names if n != "segmentation.dcm"]
        first = pydicom.dcmread(io.BytesIO(archive.read(images[0])))
    assert seg.Modality == "SEG" and len(images) == views.volume.data.shape[0] * views.volume.shape[2]  # 4 MR series
    referenced = {r.SeriesInstanceUID for r in seg.ReferencedSeriesSequence}
    assert first.SeriesInstanceUID in referenced
    with pytest.raises(Exception, match="nii.gz' or 'dcm"):
        views.segmentation_file(RAW, "png")
