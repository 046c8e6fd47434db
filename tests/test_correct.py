"""Interactive correction of a Neumours segmentation (rfmweb.inr.correct)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import rfmweb.inr.correct as correct
import rfmweb.inr.ray_marks as ray_marks
from rfmweb.camera import OrbitCamera, camera_rays
from rfmweb.data.cohort import cohort_case
from rfmweb.errors import InputError
from rfmweb.inr import denoise_labels, load_model, segment_volume
from rfmweb.inr.correct import Corrector
from rfmweb.io import BRATS_CLASSES
from rfmweb.metrics.segmentation import dice
from rfmweb.models.inr import INRConfig, NeumoursINR
from rfmweb.render import RaymarchRenderer, Scene
from rfmweb.transfer import ClassTable, TransferFunction
from rfmweb.volume import Volume

#: a TF that shows nothing: only the (solid) labels are visible, as in the segmentation view
CLEAR = TransferFunction("clear", color=[(0, 0, 0, 0), (1, 1, 1, 1)], opacity=[(0, 0), (1, 0)])


@pytest.fixture(scope="module")
def model():
    return load_model(device="cpu")


@pytest.fixture(scope="module")
def case(model):
    """A 2 mm validation case of the shipped model (99 x 117 x 95; never trained on, a large tumour the
    model gets partly wrong) and its raw labels."""
    vol, _ = cohort_case("val", 0, 5, 2.0)
    return vol, segment_volume(model, vol, device="cpu")


@pytest.fixture(scope="module")
def tiny():
    """A 16 x 14 x 12 all-brain volume, a small random INR and all-background labels."""
    rng = np.random.default_rng(0)
    vol = Volume(rng.uniform(1, 2, (4, 16, 14, 12)).astype(np.float32), np.diag([2.0, 2.0, 2.0, 1.0]),
                 modality="MR", channels=("T1n", "T1c", "T2w", "FLAIR"))
    torch.manual_seed(0)
    net = NeumoursINR(INRConfig(n_frequencies=4, branch_width=16, n_layers=2))
    return vol, net


def _weights(net):
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


def test_correction_improves_the_marked_region_and_undo_restores(model, case):
    vol, base = case
    gt = vol.labels
    before_weights = _weights(model)
    corr = Corrector(model, vol, labels=base, device="cpu")
    # the simulated user: on every other axial slice of the lower half of the tumour's box, brush the
    # ground truth over what the model got wrong and over the true tumour
    box = np.argwhere((gt > 0) | (base > 0))
    lo, hi = box.min(0) - 2, box.max(0) + 3
    mid = (lo[2] + hi[2]) // 2
    marked = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], mid))
    rest = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(mid, hi[2]))
    slab = np.zeros(gt.shape, bool)
    slab[marked[0], marked[1], lo[2]:mid:2] = True
    want = slab & ((base != gt) | (gt > 0))
    for k in range(4):
        corr.mark_voxels(np.argwhere(want & (gt == k)), k)
    assert corr.n_marks == int(want.sum()) > 300
    idx, lab = corr.pending_voxels
    result = corr.apply(steps=12)

    assert result.steps == 12 and corr.n_marks == 0 and corr.can_undo
    new = result.labels
    assert not new.flags.writeable and new is corr.labels
    # a full segmentation with the corrected weights within REACH_MM of the marks, the labels before farther
    # away, and the caller's model untouched
    from scipy.ndimage import distance_transform_edt
    marks = np.zeros(gt.shape, bool)
    marks[tuple(idx.T)] = True
    near = distance_transform_edt(~marks, sampling=vol.spacing) <= correct.REACH_MM
    full = segment_volume(corr.model, vol, device="cpu")
    assert np.array_equal(new[near], full[near]) and np.array_equal(new[~near], base[~near])
    assert result.left_out == int((full[~near] != base[~near]).sum())
    assert _same(_weights(model), before_weights) and not _same(_weights(corr.model), before_weights)
    assert result.changed == int((new != base).sum()) > 0
    assert result.seconds >= result.update_seconds > 0 and result.segment_seconds > 0
    np.testing.assert_array_equal(corr.denoised(), denoise_labels(new, spacing=vol.spacing))

    def region_dice(labels, region):
        return dice(labels[region] > 0, gt[region] > 0)

    acc_before = float((base[tuple(idx.T)] == lab).mean())
    acc_after = float((new[tuple(idx.T)] == lab).mean())
    assert acc_after >= acc_before + 0.10, (acc_before, acc_after)
    before = region_dice(base, marked)       # a third of the way from the model's Dice to a perfect one
    assert region_dice(new, marked) - before >= (1.0 - before) / 3, (before, region_dice(new, marked))
    ed_before, ed_after = (dice(x[marked] == 2, gt[marked] == 2) for x in (base, new))     # edema, the same way
    assert ed_after - ed_before >= (1.0 - ed_before) / 3, (ed_before, ed_after)
    assert region_dice(new, rest) >= region_dice(base, rest) - 0.02          # the unmarked half holds
    outside = np.ones(gt.shape, bool)
    outside[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] = False
    assert (new[outside] != base[outside]).sum() < 0.01 * (new != base).sum() + 50   # no drift far away

    restored = corr.undo()
    assert np.array_equal(restored, base) and np.array_equal(corr.labels, base)
    assert _same(_weights(corr.model), before_weights) and not corr.can_undo
    assert corr.n_marks == len(lab)                        # the consumed marks are pending again
    with pytest.raises(InputError, match="nothing to undo"):
        corr.undo()


def test_adaptive_apply_honours_the_marks_whatever_the_clock(model, case, forced_precision, monkeypatch):
    """The same marks give the same correction on a fast and a slow machine: a clock on which every
    step seems to take an hour changes neither the steps taken nor the labels (a wall-time budget
    used to stop after 3 steps there, leaving most marks unlearnt)."""
    vol, base = case
    k = int(np.argmax((base > 0).sum(axis=(0, 1))))
    ij = np.argwhere(base[:, :, k] > 0)
    marks = np.column_stack([ij, np.full(len(ij), k)])
    assert len(marks) > 100
    corr = Corrector(model, vol, labels=base, device="cpu")

    def run() -> tuple:
        corr.mark_voxels(marks, 0)
        seen = []
        result = corr.apply(on_progress=lambda taken, most: seen.append((taken, most)))
        corr.undo()
        corr.clear_marks()
        return result, seen

    result, seen = run()
    assert correct.MIN_STEPS <= result.steps <= correct.MAX_STEPS
    assert seen == [(i + 1, correct.MAX_STEPS) for i in range(result.steps)]
    still = int((result.labels[tuple(marks.T)] > 0).sum())
    assert still < len(marks) // 4, f"{still} of {len(marks)} marked voxels still tumour"
    hour = iter(range(0, 10**9, 3600))
    monkeypatch.setattr(correct.time, "perf_counter", lambda: float(next(hour)))
    slow, _ = run()
    assert slow.steps == result.steps
    np.testing.assert_array_equal(slow.labels, result.labels)


def test_ray_mark_changes_labels_through_the_ray_marcher(model, case, monkeypatch):
    vol, base = case
    scene = Scene(vol.with_labels(base), CLEAR, ClassTable.from_classes(BRATS_CLASSES, mode="solid"))
    centre = vol.affine[:3, :3] @ np.argwhere(base > 0).mean(0) + vol.affine[:3, 3]
    cam = OrbitCamera(tuple(centre), 30.0, 20.0, 300.0, 30.0, 48, 48)
    depth = RaymarchRenderer("cpu").depth(scene, cam)
    vs, us = np.nonzero(np.isfinite(depth))
    v, u = vs[len(vs) // 2], us[len(us) // 2]

    def corrected(march_fn, label=0, steps=10):
        monkeypatch.setattr(ray_marks, "march", march_fn)
        corr = Corrector(model, vol, labels=base, device="cpu")
        hit = corr.mark_ray(scene, cam, u + 0.5, v + 0.5, label=label)
        assert corr.n_marks == 1 and len(corr.pending_rays) == 1
        return hit, corr.apply(steps=steps)

    real, calls = ray_marks.march, []

    def spy(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out.opacity.requires_grad)
        return out

    hit, result = corrected(spy)
    # the hit is the voxel at the renderer's depth along that pixel's ray, and a tumour voxel
    origins, dirs = camera_rays(cam, dtype=torch.float64)
    point = (origins[v, u] + depth[v, u] * dirs[v, u]).numpy()
    np.testing.assert_array_equal(hit, np.rint(np.linalg.solve(vol.affine, np.append(point, 1))[:3]))
    assert base[tuple(hit)] > 0
    assert calls and all(calls)                           # the loss went through the differentiable march
    assert result.labels[tuple(hit)] == 0 and result.changed > 0

    def detached(*args, **kwargs):
        out = real(*args, **kwargs)
        return type(out)(out.rgb.detach(), out.opacity.detach(), out.depth)

    hit2, control = corrected(detached)                   # no gradient through the ray: nothing to learn
    assert np.array_equal(hit2, hit) and control.labels[tuple(hit)] == base[tuple(hit)]
    other = 2 if base[tuple(hit)] != 2 else 3             # a tumour click sets the class too (as the app
    _, recoloured = corrected(real, label=other, steps=None)  # runs it: until the marks are honoured)
    assert recoloured.labels[tuple(hit)] == other
    # it recolours the clicked surface; it does not grow tumour toward the viewer
    front = [np.rint(np.linalg.solve(vol.affine, np.append(point - k * dirs[v, u].numpy(), 1))[:3]).astype(int)
             for k in (1.5 * min(vol.spacing), 2.5 * min(vol.spacing))]
    assert all(base[tuple(f)] == 0 and recoloured.labels[tuple(f)] == 0 for f in front)


def test_mark_ray_hits_the_front_face_of_an_analytic_cube(tiny):
    vol, net = tiny
    labels = np.zeros(vol.shape, np.uint8)
    labels[8:12, 8:12, 6:10] = 3
    scene = Scene(vol.with_labels(labels, BRATS_CLASSES), CLEAR, ClassTable.from_classes(BRATS_CLASSES, mode="solid"))
    corr = Corrector(net, vol, labels=labels, device="cpu")
    target = vol.affine[:3, :3] @ np.array([10.0, 10.0, 8.0]) + vol.affine[:3, 3]
    # anterior view (camera on +y, looking along -y): the centre ray enters the cube at y = 11.5 voxels
    cam = OrbitCamera(tuple(target), 0.0, 0.0, 200.0, 20.0, 33, 33)
    hit = corr.mark_ray(scene, cam, 16.5, 16.5, label=0)
    np.testing.assert_array_equal(hit, [10, 11, 8])
    ray = corr.pending_rays[0]
    np.testing.assert_allclose(ray.direction, [0, -1, 0], atol=1e-9)
    # the camera sits at y = 20 + 200 mm; the first voxel layer of the cube spans y in [21, 23] mm
    assert 220 - 23 <= ray.depth <= 220 - 21
    assert corr.mark_ray(scene, cam, 0.5, 0.5, label=0) is None      # a corner ray misses the cube
    assert corr.n_marks == 1
    other = Volume(vol.data[:, :-1], vol.affine, modality="MR", channels=vol.channels)
    with pytest.raises(InputError, match="grid"):
        corr.mark_ray(Scene(other, CLEAR), cam, 16.5, 16.5, 0)
    with pytest.raises(InputError, match="outside"):
        corr.mark_ray(scene, cam, 40.0, 16.5, 0)


def test_mark_stroke_marks_the_analytic_brush(tiny):
    vol, net = tiny
    corr = Corrector(net, vol, labels=np.zeros(vol.shape, np.uint8), device="cpu")
    # axial slice 3, points in (i, j): a straight stroke from (3, 4) to (10, 4), radius 2
    n = corr.mark_stroke("axial", 3, np.array([[3.0, 4.0], [10.0, 4.0]]), label=2, radius=2.0)
    i, j = np.meshgrid(np.arange(16), np.arange(14), indexing="ij")
    expected = ((i >= 3) & (i <= 10) & (np.abs(j - 4) <= 2)) | ((i - 3) ** 2 + (j - 4) ** 2 <= 4) | \
        ((i - 10) ** 2 + (j - 4) ** 2 <= 4)
    vox, lab = corr.pending_voxels
    assert n == int(expected.sum()) == len(vox)
    assert (vox[:, 2] == 3).all() and (lab == 2).all()
    assert set(map(tuple, vox[:, :2])) == set(zip(*np.nonzero(expected)))
    # coronal: points in (i, k); a single point is a disc (13 lattice points within radius 2), and a
    # voxel marked again takes the new label
    corr.clear_marks()
    assert corr.mark_stroke("coronal", 5, np.array([[4.0, 4.0]]), label=1) == 13
    assert corr.mark_stroke("sagittal", 4, np.array([[5.0, 4.0], [5.0, 4.0]]), label=0, radius=0.5) == 1
    vox, lab = corr.pending_voxels
    assert len(vox) == 13 and (vox[:, 1] == 5).all()
    assert lab[(vox == [4, 5, 4]).all(1)].tolist() == [0] and (lab == 1).sum() == 12
    # a stroke leaving the grid is clipped to it
    corr.clear_marks()
    assert corr.mark_stroke("axial", 0, np.array([[-5.0, 0.0], [1.0, 0.0]]), label=3, radius=1.0) == 5


def test_the_brush_is_round_in_mm_on_unequal_voxels(tiny):
    """1 x 1 x 3 mm voxels: a 6 mm brush on a coronal slice (i, k) reaches 6 voxels along i, 2 along k."""
    vol, net = tiny
    vol = Volume(vol.data, np.diag([1.0, 1.0, 3.0, 1.0]), modality="MR", channels=vol.channels)
    corr = Corrector(net, vol, labels=np.zeros(vol.shape, np.uint8), device="cpu")
    corr.mark_stroke("coronal", 5, np.array([[8.0, 6.0]]), label=1, radius=6.0)
    vox, _ = corr.pending_voxels
    i, k = np.meshgrid(np.arange(16), np.arange(12), indexing="ij")
    expected = (i - 8) ** 2 + (3 * (k - 6)) ** 2 <= 36
    assert set(map(tuple, vox[:, [0, 2]])) == set(zip(*np.nonzero(expected)))
    assert np.ptp(vox[:, 0]) == 12 and np.ptp(vox[:, 2]) == 4


def test_labels_the_model_does_not_reproduce_are_not_drift(tiny):
    """Drift is a class change of the model during the correction: labels that differ from the model's
    own output from the start (another model's, a file's, a coarse-to-fine pass's) cannot block the
    adaptive stop (they used to: every check found them, and every apply ran ``MAX_STEPS``)."""
    vol, net = tiny
    own = segment_volume(net, vol, device="cpu")
    assert np.all(own == 1)                               # this random net calls everything NCR
    corr = Corrector(net, vol, labels=np.zeros(vol.shape, np.uint8), device="cpu")
    corr.mark_voxels(np.array([[9, 1, 2]]), 1)            # its most confident voxel: margin 0.56 -> 1
    result = corr.apply()
    assert correct.MIN_STEPS <= result.steps < correct.MAX_STEPS
    assert result.labels[9, 1, 2] == 1


def test_mark_voxels_apply_without_marks_and_bad_input(tiny):
    vol, net = tiny
    labels = np.zeros(vol.shape, np.uint8)
    before = _weights(net)
    corr = Corrector(net, vol, labels=labels, device="cpu")
    # its warm-up (a forward and backward pass of each batch shape) changes nothing
    assert _same(_weights(corr.model), before) and all(p.grad is None for p in corr.model.parameters())
    assert corr.mark_voxels(np.array([[0, 0, 0], [0, 0, 0], [15, 13, 11], [16, 0, 0], [-1, 2, 2]]), 1) == 2
    assert corr.mark_voxels(np.array([[1.0, 2.0, 3.0]]), 3) == 1
    assert corr.n_marks == 3
    # exact steps, then a re-segmentation
    quick = corr.apply(steps=correct.MIN_STEPS)
    assert quick.steps == correct.MIN_STEPS and corr.can_undo and corr.n_marks == 0
    full = segment_volume(corr.model, vol, device="cpu")
    near = np.zeros(vol.shape, bool)                       # within REACH_MM (10 mm: 5 voxels) of the three marks
    ijk = np.stack(np.indices(vol.shape), -1)
    for m in ([0, 0, 0], [15, 13, 11], [1, 2, 3]):
        near |= np.linalg.norm((ijk - m) * 2.0, axis=-1) <= correct.REACH_MM
    np.testing.assert_array_equal(quick.labels, np.where(near, full, labels))
    assert quick.left_out == int((full[~near] != labels[~near]).sum())
    corr.undo()
    assert _same(_weights(corr.model), before) and corr.n_marks == 3
    corr.clear_marks()
    empty = corr.apply()
    assert empty.steps == 0 and empty.changed == 0 and not corr.can_undo and _same(_weights(corr.model), before)
    bad = [lambda: corr.mark_voxels(np.zeros((2, 2), int), 1),
           lambda: corr.mark_voxels(np.array([[0.5, 1.0, 1.0]]), 1),
           lambda: corr.mark_voxels(np.zeros((1, 3), int), 4),
           lambda: corr.mark_voxels(np.zeros((1, 3), int), -1),
           lambda: corr.mark_voxels(np.zeros((1, 3), int), True),
           lambda: corr.mark_stroke("oblique", 0, np.zeros((1, 2)), 1),
           lambda: corr.mark_stroke("axial", 12, np.zeros((1, 2)), 1),
           lambda: corr.mark_stroke("axial", 0, np.zeros((2, 3)), 1),
           lambda: corr.mark_stroke("axial", 0, np.full((1, 2), np.nan), 1),
           lambda: corr.mark_stroke("axial", 0, np.zeros((1, 2)), 1, radius=0.0),
           lambda: corr.apply(steps=-1),
           lambda: corr.apply(steps=2.5),
           lambda: corr.undo(),
           lambda: Corrector(net, vol, labels=np.zeros((3, 3, 3), np.uint8)),
           lambda: Corrector(net, Volume(vol.data[:3], vol.affine, modality="MR", channels=("a", "b", "c")))]
    for call in bad:
        with pytest.raises(InputError):
            call()
    assert corr.n_marks == 0
