"""Segmentation views (ground truth | raw INR | denoised INR) and slice view modes of a session, on a
small synthetic BraTS case segmented by the shipped INR."""

from __future__ import annotations

import time

import numpy as np
import pytest

from rfmweb.errors import InputError
from rfmweb.inr.correct import MAX_STEPS
from rfmweb.io.brats import BRATS_CLASSES
from rfmweb.metrics.segmentation import brats_scores
from rfmweb.session import FrameStream, RenderSession, SegmentationViews, link_view_modes
from rfmweb.session.segmentation import (DENOISED, GT, RAW, REFERENCE_LINE, TITLES, format_dice, format_volumes,
                                         region_dice, region_volumes_ml)

from .conftest import pixels_differ

SIZE = 96


@pytest.fixture(scope="module")
def case():
    """A 2 mm synthetic glioma case (99 x 117 x 95, 4 modalities, BraTS labels)."""
    from rfmweb.data.cohort import cohort_case
    volume, _ = cohort_case("val", 0, 1, resolution_mm=2.0)
    return volume


@pytest.fixture(scope="module")
def views(case):
    seen = []
    v = SegmentationViews(case, width=SIZE, height=SIZE, on_status=lambda *a: seen.append(a))
    v.start().join(timeout=120)
    v.seen = seen
    yield v
    v.close()


def test_three_views_share_the_image_and_show_their_labels(case, views):
    assert [s.volume.data is case.data for s in views.sessions] == [True] * 3, "the 4-channel array is copied"
    assert views.labels(GT) is case.labels
    from rfmweb.inr import denoise_labels, load_model, segment_volume
    raw = segment_volume(load_model(), case)
    np.testing.assert_array_equal(views.labels(RAW), raw)
    np.testing.assert_array_equal(views.labels(DENOISED), denoise_labels(raw, spacing=case.spacing))
    # progress was reported for both INR views: busy, then done
    assert [(v, busy) for v, busy, _ in views.seen] == [(RAW, True), (DENOISED, True), (RAW, False), (DENOISED, False)]
    # labelled voxels in class colours over a faint brain
    table = views.sessions[RAW].classes
    assert table.mode == "solid" and table.use_class_colors and table.style(0).opacity < 0.5


def test_dice_matches_the_metrics_module(case, views):
    scores = views.dice()
    assert set(scores) == {TITLES[RAW], TITLES[DENOISED]}
    ref = brats_scores(views.labels(RAW), case.labels, with_hd95=False)
    for region in ("WT", "TC", "ET"):
        assert scores[TITLES[RAW]][region] == pytest.approx(ref[f"dice_{region}"])
    assert 0.5 < scores[TITLES[DENOISED]]["WT"] <= 1.0, "the shipped INR should find this tumour"
    # each panel's regions in mL (follow-up reads volumes): the ground truth's without a Dice
    wt_ml = (case.labels > 0).sum() * np.prod(case.spacing) / 1000
    assert views.caption(GT) == REFERENCE_LINE + "\n" + format_volumes(region_volumes_ml(case.labels, case.spacing))
    assert views.caption(GT).split("\n")[1].startswith(f"WT {wt_ml:.1f} · TC ") and views.caption(GT).endswith(" mL")
    assert views.caption(RAW).startswith("Dice WT ") and "TC" in views.caption(RAW)
    assert views.caption(RAW).endswith("\n" + format_volumes(region_volumes_ml(views.labels(RAW), case.spacing)))
    assert format_dice({"WT": 0.5, "ET": 0.9996}) == "Dice WT 0.500 · ET 1.000"
    assert format_dice({"WT": 0.999}) != format_dice({"WT": 0.996})        # what a correction changed shows
    a = np.zeros((4, 4, 4), np.uint8)
    b = a.copy()
    a[0, 0, :2] = 2
    b[0, 0, 0] = 1
    assert region_dice(a, b) == pytest.approx({"WT": 2 / 3, "TC": 0.0, "ET": 1.0})


def test_the_3d_camera_frames_the_tumour_not_stray_specks(case, views):
    """Two one-voxel false positives in far corners of the raw labels leave the camera on the tumour."""
    raw = views.labels(RAW)
    ijk = np.argwhere(case.labels > 0)
    centre = case.affine[:3, :3] @ ((ijk.min(0) + ijk.max(0)) / 2) + case.affine[:3, 3]
    specks = case.labels.copy()
    specks[1, 1, 1], specks[-2, -2, -2] = 2, 3
    views.sessions[RAW].set_labels(specks, BRATS_CLASSES)
    try:
        cam = views.tumour_camera()
    finally:
        views.sessions[RAW].set_labels(raw, BRATS_CLASSES)
    assert np.linalg.norm(np.asarray(cam.target) - centre) < 3 * max(case.spacing)


def test_the_ground_truth_core_shows_through_its_edema_in_3d():
    """The bundled case's ground truth read as all edema in 3-D (its enhancing core, inside 15-20 mm of
    edema, got ~10 % of its light through): now both the yellow core and the green veil show."""
    from rfmweb import samples
    from rfmweb.render.scene import FULL
    seg = SegmentationViews(samples.load("brain_glioma"), width=128, height=128)
    try:
        seg.frame_tumour()
        img = seg.sessions[GT].render(FULL).astype(float)
    finally:
        seg.close()
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    core = (r > 0.75 * g) & (g - b > 40) & (r > 60)       # ET (1.0, 0.85, 0.1)
    edema = (g > 1.4 * r) & (g - b > 30)                  # ED (0.25, 0.75, 0.3)
    assert core.sum() > 50 and edema.sum() > 50, (int(core.sum()), int(edema.sum()))


def test_set_labels_bumps_the_version_keeps_styles_and_refreshes_the_frame(case):
    s = RenderSession(case.with_labels(case.labels), renderer="raymarch", width=SIZE, height=SIZE)
    s.set_view_mode("axial", int(np.argmax(case.labels.sum(axis=(0, 1)))))  # the slice with most tumour
    s.set_label_overlay(True)         # slices are greyscale until the label overlay is switched on
    s.set_class(3, visible=False)
    before, v0 = s.render(), s.version
    changes = []
    s.subscribe(lambda _s, what: changes.append(what))
    s.set_labels(np.zeros(case.shape, np.uint8), BRATS_CLASSES)
    assert s.version == v0 + 1 and changes == ["scene"]
    assert s.volume.data is case.data and not s.volume.labels.any()
    assert not s.classes.style(3).visible, "a user's class toggle must survive new labels"
    after = s.render()
    assert pixels_differ(before, after, threshold=0.1)   # the ED outline goes (ET hidden)
    assert _tumour_pixels(before) > 20 and _tumour_pixels(after) == 0
    with pytest.raises(InputError, match="shape"):
        s.set_labels(np.zeros((3, 3, 3), np.uint8))


def test_slice_modes_render_the_slice_with_overlay_and_letters(case):
    s = RenderSession(case, renderer="raymarch", width=SIZE, height=SIZE)
    k = int(np.argmax(case.labels.sum(axis=(0, 1))))
    three_d = s.render()
    s.set_view_mode("axial", k)
    s.set_label_overlay(True)
    assert (s.mode, s.slice_index, s.slice_count()) == ("axial", k, case.shape[2])
    axial = s.render()
    assert axial.shape == (SIZE, SIZE, 3) and pixels_differ(axial, three_d)
    from rfmweb.render.slices import render_slice
    plain, _ = render_slice(case, "axial", k, width=SIZE, height=SIZE, channel=case.channels.index("FLAIR"),
                            classes=s.classes)
    diff = np.abs(axial.astype(int) - plain.astype(int)).sum(axis=2) > 0
    assert 0 < diff.mean() < 0.08, "the frame is the slice plus orientation letters and a scale bar"
    # letters sit at the edges' middles, in yellow: R on the left of an axial view
    left = axial[SIZE // 2 - 6:SIZE // 2 + 6, :10]
    assert ((left[..., 0] > 200) & (left[..., 2] < 120)).any()
    # hiding every tumour class removes the overlay colours
    coloured = _tumour_pixels(axial)
    for c in (1, 2, 3):
        s.set_class(c, visible=False)
    assert coloured > 20 and _tumour_pixels(s.render()) < coloured // 10
    s.step_slice(-3)
    assert s.slice_index == k - 3
    s.step_slice(-10_000)
    assert s.slice_index == 0
    s.set_view_mode("sagittal")
    assert s.slice_index == case.shape[0] // 2
    s.set_view_mode("axial")
    assert s.slice_index == 0, "each axis remembers its slice"
    for bad in (lambda: s.set_view_mode("oblique"), lambda: s.set_view_mode("axial", case.shape[2]),
                lambda: s.set_overlay(1.5)):
        with pytest.raises(InputError):
            bad()
    s.set_view_mode("3d")
    with pytest.raises(InputError, match="slice view"):
        s.set_slice(3)


def _tumour_pixels(img: np.ndarray) -> int:
    """Pixels tinted green (ED) or red (NCR) by the overlay (grey pixels have r = g = b), away
    from the edges where the orientation letters are."""
    r, g, b = (img[16:-16, 16:-16, i].astype(int) for i in range(3))
    return int(((g - b > 25) | (r - b > 60)).sum())


def test_slice_frames_stream_like_3d_frames(case):
    s = RenderSession(case, renderer="raymarch", width=SIZE, height=SIZE)
    frames = []
    stream = FrameStream(s, frames.append, idle_delay=0.05)
    try:
        s.set_view_mode("coronal", 60)
        deadline = time.monotonic() + 30
        while not any(f.kind == "idle" and f.version == s.version for f in frames):
            assert time.monotonic() < deadline, "no idle slice frame"
            for f in frames:
                stream.ack(f.id)
            time.sleep(0.02)
        frame = [f for f in frames if f.kind == "idle"][-1]
        assert (frame.width, frame.height) == (SIZE, SIZE) and frame.mime == "image/jpeg"
    finally:
        stream.close()


def test_linked_view_modes_follow_each_other(case):
    a, b = (RenderSession(case, width=SIZE, height=SIZE) for _ in range(2))
    unlink = link_view_modes([a, b])
    a.set_view_mode("sagittal", 30)
    assert (b.mode, b.slice_index) == ("sagittal", 30)
    b.step_slice(2)
    assert a.slice_index == 32
    a.set_overlay(0.8)
    assert b.overlay == 0.8
    unlink()
    a.set_view_mode("3d")
    assert b.mode == "sagittal"


def test_a_case_without_ground_truth_says_so_in_its_first_title(case, views):
    assert views.titles == TITLES
    bare = SegmentationViews(case.with_labels(None, ()), model=views.model, width=SIZE, height=SIZE)
    try:
        assert bare.titles[0] != TITLES[0] and "no ground truth" in bare.titles[0] and bare.titles[1:] == TITLES[1:]
        assert bare.dice() is None and "Dice" not in bare.caption(RAW) and bare.caption(GT) == ""
    finally:
        bare.close()


def test_bad_inputs(small_ct, views):
    with pytest.raises(InputError, match="4-channel MR"):
        SegmentationViews(small_ct)
    with pytest.raises(InputError, match="label"):
        views.mark_stroke("axial", 10, [[1, 2]], label=7)
    with pytest.raises(InputError, match="label"):
        views.mark_stroke("axial", 10, [[1, 2]], label=2.5)      # not rounded down to ED
    with pytest.raises(InputError, match="slice index"):
        views.mark_stroke("axial", 10.7, [[1, 2]], label=2)
    with pytest.raises(InputError, match="finite numbers"):
        views.mark_stroke("axial", 10, [[np.nan, 1]], label=0)
    with pytest.raises(InputError, match="not a slice|3-D"):
        views.sessions[RAW].slice_geometry()


def test_a_correction_updates_the_raw_and_denoised_views_and_undo_restores_them(case, forced_precision):
    pytest.importorskip("rfmweb.inr.correct")
    seen, held, busy = [], [], []

    def on_status(*status):
        seen.append(status)
        held.append(tuple(s.refinement_held for s in views.sessions))
        busy.append(views.correcting)

    views = SegmentationViews(case, width=SIZE, height=SIZE, on_status=on_status)
    try:
        views.compute()
        raw, den = views.sessions[RAW], views.sessions[DENOISED]
        changed = int((views.labels(DENOISED) != views.labels(RAW)).sum())
        said = [m for v, busy, m in seen if v == DENOISED and m.startswith("denoised in")]
        assert said and said[-1].endswith(f"{changed:,} voxels changed" if changed else "to clean up)"), said
        k = int(np.argmax((views.labels(RAW) > 0).sum(axis=(0, 1))))
        raw.set_view_mode("axial", k)
        before_labels, before_dice, v_raw, v_den = views.labels(RAW), views.dice(), raw.version, den.version
        before_frame = raw.render()
        # a stroke through the pixels the raw INR calls tumour on this slice, marked "not tumour"
        geo = raw.slice_geometry()
        ii, jj = np.nonzero(before_labels[:, :, k])
        u = ((geo.shape[0] - 1 - ii) + 0.5) * geo.spacing[0] / geo.mm_per_px + geo.offset[0]
        v = ((geo.shape[1] - 1 - jj) + 0.5) * geo.spacing[1] / geo.mm_per_px + geo.offset[1]
        assert views.mark_pixels(RAW, np.stack([u, v], 1), label=0, radius_px=1.0) >= len(ii)
        assert views.mark_pixels(RAW, [[-50.0, -50.0]], label=0) == 0, "a stroke outside the slice marks nothing"
        seen.clear()
        held.clear()
        busy.clear()
        assert not views.can_undo
        n_marked, v_gt = views.n_marks, views.sessions[GT].version
        result = views.apply_correction()
        assert result.changed > 0 and views.can_undo and views.n_marks == 0
        assert views.sessions[GT].version > v_gt, "the ground truth's view kept drawing the applied marks"
        progress = [m for v, busy, m in seen if busy and v == RAW and m.startswith("correcting: step ")]
        assert progress and progress[0].startswith(f"correcting: step 1/{MAX_STEPS} "), seen
        # the views the result replaces do not converge meanwhile (the ground truth's does); after, all do
        during = [h for (_, _, m), h in zip(seen, held) if m.startswith("correcting: step ")]
        assert during and all(h == (False, True, True) for h in during), held
        # UIs hold Apply, Undo and Clear while it runs (correcting); the final status frees them
        assert [b for (_, _, m), b in zip(seen, busy) if m.startswith("correcting")] == [True] * (len(during) + 2)
        assert busy[-1] is False and not views.correcting
        assert views.last_correction == seen[-1][2] and views.last_correction.startswith("corrected: ")  # it stays
        assert not any(s.refinement_held for s in views.sessions)
        after = views.labels(RAW)
        assert (after[:, :, k] > 0).sum() < len(ii) // 2, "the marked tumour voxels were not removed"
        assert raw.version > v_raw and den.version > v_den, "the views did not refresh"
        # the Dice readout follows the correction; on the marked slice it falls (the GT calls them tumour;
        # over the case it may rise: the model over-segments this case and the update shrinks its rim)
        assert views.dice()[TITLES[RAW]] == region_dice(after, case.labels) != before_dice[TITLES[RAW]]
        gt_k = case.labels[:, :, k]
        assert region_dice(after[:, :, k], gt_k)["WT"] < region_dice(before_labels[:, :, k], gt_k)["WT"] - 0.5
        assert pixels_differ(before_frame, raw.render(), threshold=0.2)
        seen.clear()
        np.testing.assert_array_equal(views.undo_correction(), before_labels)
        np.testing.assert_array_equal(views.labels(RAW), before_labels)
        # undo goes back to before Apply: the marks are pending again, and the status says so
        assert not views.can_undo and views.n_marks == n_marked
        assert any(f"{n_marked} marked voxels are pending again" in m for _, _, m in seen), seen
        assert f"{n_marked} marked voxels are pending again" in views.last_correction
        views.clear_marks()              # the panels said they were pending beside greyed-out Apply and Clear
        assert views.n_marks == 0 and views.last_correction == "pending marks cleared"
        # a click on the 3-D view marks the surface voxel under it (or nothing off the head)
        raw.set_view_mode("3d")
        hit = views.mark_click(RAW, SIZE / 2, SIZE / 2, label=2)
        assert hit is not None and case.labels.shape == tuple(np.maximum(case.labels.shape, np.asarray(hit) + 1))
        assert views.mark_click(RAW, 1, 1, label=2) is None
    finally:
        views.close()
