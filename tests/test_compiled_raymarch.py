"""The compiled CPU ray-marcher (``compiled``) against its oracle, the torch ray-marcher: equal images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera
from rfmweb.errors import InputError
from rfmweb.render import FULL, INTERACTIVE, Quality, RaymarchRenderer, Scene
from rfmweb.render.fields import ChannelMix, ChannelSetting
from rfmweb.render.registry import make_renderer, renderer_label
from rfmweb.render.scene import REST, RenderAborted
from rfmweb.transfer import ClassTable, Shading, TransferFunction, preset
from rfmweb.volume import LabelClass, Volume

pytest.importorskip("numba")
from rfmweb.render.compiled import CompiledRaymarchRenderer  # noqa: E402 (needs numba)

TOL = 1e-3      # max abs difference of float images in [0, 1]


@pytest.fixture(scope="module")
def renderers():
    """One of each for the whole module: the kernels compile once, the prepared volumes are cached."""
    return CompiledRaymarchRenderer(band_rows=16), RaymarchRenderer(device="cpu")


@pytest.fixture(scope="module")
def cam(small_ct):
    return OrbitCamera.framing(small_ct.bounds, azimuth=30, elevation=15, width=48, height=48, margin=0.8)


def assert_twins(renderers, scene, cam, quality=FULL, frame=0) -> np.ndarray:
    """The compiled frame equals the torch one within TOL; returns the torch image [H, W, 3]."""
    compiled, torch_marcher = renderers
    ref = torch_marcher.render_tensor(scene, cam, quality, frame=frame).numpy()
    out = compiled.render_frame(scene, cam, quality, frame=frame)
    assert out.shape == ref.shape
    diff = np.abs(out - ref).max()
    assert diff < TOL, f"max difference {diff:.2e}"
    return ref


def visible(img: np.ndarray, background=(0.0, 0.0, 0.0)) -> bool:
    """Something other than the background on many pixels (not a trivially equal empty frame)."""
    return (np.abs(img - np.asarray(background)).max(-1) > 0.05).mean() > 0.1


@pytest.mark.parametrize("name", ["CT-Bone", "CT-Soft-Tissue", "CT-Muscle"])
@pytest.mark.parametrize("frame", [0, 3])
def test_presets_match_torch(renderers, small_ct, cam, name, frame):
    """Shaded (Bone, Muscle) and steep unshaded (Soft-Tissue) presets, two jittered frames."""
    assert visible(assert_twins(renderers, Scene(small_ct, preset(name)), cam, frame=frame))


@pytest.mark.parametrize("name", ["CT-Bone", "CT-Soft-Tissue"])
def test_cubic_reads_at_rest_match_torch(renderers, small_ct, cam, name):
    """The view at rest reads the B-spline coefficients (8 trilinear reads a sample): the same image,
    and not the trilinear one."""
    ref = assert_twins(renderers, Scene(small_ct, preset(name)), cam, REST, frame=2)
    assert visible(ref)
    linear = renderers[1].render_tensor(Scene(small_ct, preset(name)), cam, FULL, frame=2).numpy()
    assert np.abs(ref - linear).max() > 0.02


@pytest.mark.parametrize("case", ["class colours", "hidden class", "solid"])
def test_class_tables_match_torch(renderers, small_ct, cam, case):
    table = ClassTable.from_classes(small_ct.classes)
    classes = {"class colours": ClassTable(table.styles, use_class_colors=True),
               "hidden class": table.updated(2, visible=False),
               "solid": ClassTable.from_classes(small_ct.classes, mode="solid")}[case]
    assert visible(assert_twins(renderers, Scene(small_ct, preset("CT-Bone"), classes), cam, frame=1))


def test_solid_labels_over_an_invisible_tf_match_torch(renderers, small_ct, cam):
    """Solid classes show where the TF shows nothing: no block of them may be skipped."""
    invisible = TransferFunction("none", color=[(0, 1, 1, 1)], opacity=[(0, 0.0)],
                                 shading=Shading(True, 0.2, 0.8, 0.3, 7.5))   # pow() with a fractional power
    scene = Scene(small_ct, invisible, ClassTable.from_classes(small_ct.classes, mode="solid"))
    assert visible(assert_twins(renderers, scene, cam))


@pytest.mark.parametrize("case", ["solid", "hidden class"])
def test_new_labels_render_as_a_fresh_renderer(small_ct, cam, case):
    """A correction swaps the label map on the same image: the grid (and its gradient, block ranges)
    is reused unless a hidden class moves voxels, and the frame equals a fresh renderer's."""
    table = ClassTable.from_classes(small_ct.classes, mode="solid") if case == "solid" else \
        ClassTable.from_classes(small_ct.classes).updated(2, visible=False)
    labels = small_ct.labels.copy()
    labels[:32][labels[:32] == 2] = 1                                  # bone -> soft tissue on one side
    before, after = Scene(small_ct, preset("CT-Bone"), table), Scene(small_ct.with_labels(labels), preset("CT-Bone"),
                                                                      table)
    used = CompiledRaymarchRenderer(band_rows=16)
    used.render_frame(before, cam, frame=1)
    grid = used._marcher.prepare(before).grid
    out = used.render_frame(after, cam, frame=1)
    assert (used._marcher.prepare(after).grid is grid) == (case == "solid")
    fresh = CompiledRaymarchRenderer(band_rows=16).render_frame(after, cam, frame=1)
    np.testing.assert_array_equal(out, fresh)
    assert np.abs(out - used.render_frame(before, cam, frame=1)).max() > 0.05      # the new labels do show


def test_gradient_opacity_matches_torch(renderers, small_ct, cam):
    tf = preset("CT-Muscle")
    tf = TransferFunction("edges", tf.color, tf.opacity, gradient_opacity=((0.0, 0.0), (30.0, 0.3), (200.0, 1.0)),
                          shading=tf.shading)
    assert visible(assert_twins(renderers, Scene(small_ct, tf), cam))


def test_mr_channel_mix_matches_torch(renderers, small_ct, cam):
    """A 2-channel MR volume blended by a ChannelMix (windows, weights, gamma) into [0, 1]."""
    ct = small_ct.data[0]
    data = np.stack([ct + 1000.0, np.sqrt(np.clip(ct + 1000.0, 0, None)) * 10.0]).astype(np.float32)
    mr = Volume(data, small_ct.affine, modality="MR", channels=("T1n", "FLAIR"), name="mr_small")
    mix = ChannelMix((ChannelSetting(True, 1.0, (800.0, 1400.0), 1.0), ChannelSetting(True, 2.0, None, 1.5)))
    tf = TransferFunction("mr", color=[(0.0, 0.1, 0.1, 0.2), (0.5, 0.9, 0.6, 0.4), (1.0, 1.0, 1.0, 0.9)],
                          opacity=[(0.0, 0.0), (0.35, 0.0), (0.6, 0.3), (1.0, 0.8)],
                          shading=Shading(True, 0.2, 0.8, 0.3, 20.0))
    assert visible(assert_twins(renderers, Scene(mr, tf, mix=mix), cam))


def test_nothing_visible_is_the_background(renderers, small_ct, cam):
    tf = TransferFunction("none", color=[(0, 1, 1, 1)], opacity=[(0, 0.0)])
    scene = Scene(small_ct, tf, background=(0.2, 0.4, 0.6))
    ref = assert_twins(renderers, scene, cam)
    np.testing.assert_allclose(ref, np.broadcast_to([0.2, 0.4, 0.6], ref.shape), atol=1e-7)


def test_background_and_interactive_quality_match_torch(renderers, small_ct, cam):
    """A light background shows the transmittance left after early termination; INTERACTIVE halves
    the image and doubles the step."""
    background = (0.9, 0.8, 0.3)
    for quality in (FULL, INTERACTIVE):
        ref = assert_twins(renderers, Scene(small_ct, preset("CT-Soft-Tissue"), background=background), cam,
                           quality, frame=2)
        assert visible(ref, background)


def test_render_accumulate_and_depth_follow_the_torch_renderer(renderers, small_ct):
    compiled, torch_marcher = renderers
    scene = Scene(small_ct, preset("CT-Bone"), background=(0.1, 0.1, 0.2))
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=-40, width=24, height=20, margin=0.8)
    quality = Quality(scale=1.0, step=0.5, frames=3)
    means = [r.render_float(scene, cam, quality) for r in renderers]
    assert np.abs(means[0] - means[1]).max() < TOL
    ours, theirs = compiled.render(scene, cam, quality), torch_marcher.render(scene, cam, quality)
    assert ours.dtype == np.uint8 and ours.shape == (20, 24, 3)
    assert np.abs(ours.astype(int) - theirs.astype(int)).max() <= 1
    for (a, n), (b, m) in zip(compiled.accumulate(scene, cam, 2, 2), torch_marcher.accumulate(scene, cam, 2, 2)):
        assert n == m and np.abs(a - b).max() < TOL           # at rest: cubic reads (REST) in both
    np.testing.assert_array_equal(compiled.depth(scene, cam), torch_marcher.depth(scene, cam))


def test_abort_stops_between_bands(renderers, small_ct, cam):
    calls = []

    def abort():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(RenderAborted):
        renderers[0].render(Scene(small_ct, preset("CT-Bone")), cam, abort=abort)   # 48 rows, bands of 16


def test_bad_channel_mix_fails_like_torch(renderers, small_ct, cam):
    scene = Scene(small_ct, preset("CT-Bone"), mix=ChannelMix((ChannelSetting(), ChannelSetting())))
    errors = []
    for r in renderers:
        with pytest.raises(InputError) as e:
            r.render(scene, cam)
        errors.append(str(e.value))
    assert errors[0] == errors[1]


def test_torch_thread_count_is_left_alone(renderers, small_ct, cam):
    """numba's OpenMP pool must not change the intra-op threads torch was given (conftest: 1)."""
    before = torch.get_num_threads()
    renderers[0].render(Scene(small_ct, preset("CT-Muscle")), cam)
    assert torch.get_num_threads() == before


def test_registered_as_compiled():
    assert isinstance(make_renderer("compiled"), CompiledRaymarchRenderer)
    assert renderer_label("compiled") == "Ray-marcher (compiled CPU)"


def test_labels_without_classes_of_their_own(renderers, cam, small_ct):
    """A class table naming labels the map lacks, and a map with labels the table lacks."""
    labels = small_ct.labels.copy()
    labels[labels == 2] = 5                                     # a label the class table does not name
    vol = Volume(small_ct.data, small_ct.affine, labels=labels, classes=small_ct.classes + (
        LabelClass(7, "absent", (0.1, 0.9, 0.1)),), name="relabelled")
    classes = ClassTable.from_classes(vol.classes).updated(1, opacity=0.4)
    assert visible(assert_twins(renderers, Scene(vol, preset("CT-Bone"), classes), cam))


def test_oblique_volume_matches_torch(renderers, small_ct, cam):
    """A rotated affine: every world axis feeds every grid axis (no zero products to hide rounding)."""
    a = np.radians(20.0)
    rot = np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])
    affine = small_ct.affine.copy()
    affine[:3, :3] = rot @ affine[:3, :3]
    vol = Volume(small_ct.data, affine, name="oblique")
    assert visible(assert_twins(renderers, Scene(vol, preset("CT-Bone"), background=(0.3, 0.3, 0.3)), cam),
                   (0.3, 0.3, 0.3))


def test_threads_sharing_one_renderer_get_their_own_pictures(small_ct, cam):
    """A view's frame stream and another caller (the difference pane, a notebook) may render with
    one renderer at once: each thread's frames equal the ones it gets alone, whatever the other
    thread's TF, classes and reconstruction (the tables and visible box are built one thread at a
    time; a frame never runs on the other thread's tables)."""
    from concurrent.futures import ThreadPoolExecutor

    plain = small_ct.with_labels(None, ())
    jobs = [(Scene(plain, preset("CT-Bone")), FULL), (Scene(plain, preset("CT-Soft-Tissue")), REST),
            (Scene(small_ct, preset("CT-Muscle"), ClassTable(ClassTable.from_classes(small_ct.classes).styles,
                                                              use_class_colors=True)), FULL)]
    alone = [CompiledRaymarchRenderer(band_rows=8).render_frame(s, cam, q) for s, q in jobs]
    shared = CompiledRaymarchRenderer(band_rows=8)

    def run(i):
        return [shared.render_frame(jobs[i][0], cam, jobs[i][1]) for _ in range(4)]

    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(run, range(3)))
    for want, got in zip(alone, results):
        assert visible(want)
        for image in got:
            np.testing.assert_array_equal(image, want)
