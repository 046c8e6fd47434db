"""The torch ray-marcher against analytic cases, autograd, CUDA, and the VTK renderer."""

from __future__ import annotations

import math
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch
from pytorch_msssim import ssim

from rfmweb.camera import OrbitCamera
from rfmweb.render import FULL, Quality, RaymarchRenderer, Scene, march, ray_aabb
from rfmweb.render.fields import ChannelMix, ChannelSetting, ScalarField
from rfmweb.render.raymarch import pixel_jitter
from rfmweb.render.scene import REST
from rfmweb.transfer import ClassStyle, ClassTable, Shading, TransferFunction, preset
from rfmweb.volume import Volume

from .conftest import pixels_differ

FLAT = Shading(enabled=False)


def flat_tf(alpha: float, rgb=(1.0, 0.5, 0.25)) -> TransferFunction:
    return TransferFunction("flat", color=[(0, *rgb), (1000, *rgb)], opacity=[(0, alpha), (1000, alpha)], shading=FLAT)


def slab_field(alpha: float, shape=(9, 9, 11), spacing=1.0, dtype=torch.float64):
    grid = torch.full((1, *shape), 500.0, dtype=dtype)
    affine = np.diag([spacing, spacing, spacing, 1.0])
    return ScalarField(grid, affine, flat_tf(alpha), shade=False), affine


@pytest.mark.parametrize("angle_deg", [0.0, 25.0])
def test_homogeneous_slab_transmittance(angle_deg):
    """T = exp(-sigma L) with sigma = -ln(1 - a) per mm, along straight and oblique rays."""
    field, _ = slab_field(0.3)
    a = math.radians(angle_deg)
    d = torch.tensor([[math.sin(a), 0.0, math.cos(a)]], dtype=torch.float64)
    o = torch.tensor([[4.0, 4.0, 5.0]], dtype=torch.float64) - 20.0 * d  # through the box centre
    t0, t1 = ray_aabb(o, d, torch.zeros(3, dtype=torch.float64), torch.tensor([8.0, 8.0, 10.0], dtype=torch.float64))
    length = 10.0 / math.cos(a)
    assert (t1 - t0).item() == pytest.approx(length, abs=1e-9)
    out = march(o, d, t0, t1, field, step=length / 2000)
    sigma = -math.log(1 - 0.3)
    assert 1 - out.opacity.item() == pytest.approx(math.exp(-sigma * length), abs=1e-3)
    # emission-absorption of a constant colour: C = c (1 - T)
    np.testing.assert_allclose(out.rgb[0].numpy(), np.array([1.0, 0.5, 0.25]) * out.opacity.item(), atol=1e-9)


def test_opacity_is_independent_of_the_step():
    field, _ = slab_field(0.2)
    o = torch.tensor([[4.0, 4.0, -3.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    t0, t1 = ray_aabb(o, d, torch.zeros(3, dtype=torch.float64), torch.tensor([8.0, 8.0, 10.0], dtype=torch.float64))
    values = [march(o, d, t0, t1, field, step=s).opacity.item() for s in (0.05, 0.5, 1.0)]
    assert max(values) - min(values) < 1e-9


def test_early_termination_stops_within_one_percent():
    field, _ = slab_field(0.9)
    o = torch.tensor([[4.0, 4.0, -3.0]], dtype=torch.float64).repeat(3, 1)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).repeat(3, 1)
    t0, t1 = ray_aabb(o, d, torch.zeros(3, dtype=torch.float64), torch.tensor([8.0, 8.0, 10.0], dtype=torch.float64))
    calls = []

    def counting(p, v):
        calls.append(len(p))
        return field(p, v)

    stopped = march(o, d, t0, t1, counting, step=0.05, segment=8)
    full = march(o, d, t0, t1, field, step=0.05, early_stop=0.0)
    assert sum(calls) < 0.25 * 3 * 200  # stopped long before the far side
    assert (full.rgb - stopped.rgb).abs().max() < 0.01
    assert (1 - stopped.opacity).max() < 0.011


def test_depth_is_the_front_face():
    grid = torch.zeros(1, 9, 9, 21, dtype=torch.float64)
    grid[..., 12:] = 500.0  # opaque from z = 12 mm
    tf = TransferFunction("step", color=[(0, 1, 1, 1), (1000, 1, 1, 1)], opacity=[(0, 0), (400, 0), (500, 0.99)],
                          shading=FLAT)
    field = ScalarField(grid, np.eye(4), tf, shade=False)
    o = torch.tensor([[4.0, 4.0, -10.0]], dtype=torch.float64)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64)
    t0, t1 = ray_aabb(o, d, torch.zeros(3, dtype=torch.float64), torch.tensor([8.0, 8.0, 20.0], dtype=torch.float64))
    out = march(o, d, t0, t1, field, step=0.05)
    # intensity ramps 0 -> 500 over z = 11..12 mm, opacity 0 -> 0.99 over z = 11.8..12; integrating
    # sigma = -ln(1 - a) gives T = 0.78 at z = 12, then T = 0.5 about 0.1 mm further
    assert out.depth.item() == pytest.approx(10.0 + 12.1, abs=0.06)


@pytest.mark.parametrize("preintegrate", [None, 0.37])
def test_gradcheck_through_shading_and_gradients(preintegrate):
    torch.manual_seed(0)
    vol = (torch.rand(1, 5, 5, 5, dtype=torch.float64) * 60 + 20).requires_grad_()
    tf = TransferFunction("ramp", color=[(0, 0.2, 0.3, 0.9), (100, 1.0, 0.8, 0.1)], opacity=[(0, 0.05), (100, 0.6)],
                          shading=Shading(True, 0.3, 0.7, 0.2, 5.0))
    affine = np.diag([1.0, 1.2, 0.8, 1.0])
    o = torch.tensor([[2.0, 2.5, -5.0], [1.3, 0.7, -5.0], [3.1, 2.2, 10.0]], dtype=torch.float64)
    d = torch.tensor([[0.1, 0.0, 1.0], [0.2, 0.3, 1.0], [0.0, -0.1, -1.0]], dtype=torch.float64)
    d = d / d.norm(dim=-1, keepdim=True)
    lo, hi = torch.zeros(3, dtype=torch.float64), torch.tensor([4.0, 4.8, 3.2], dtype=torch.float64)

    def render(v):
        field = ScalarField(v, affine, tf, value_range=(0.0, 100.0), preintegrate=preintegrate)
        t0, t1 = ray_aabb(o, d, lo, hi)
        out = march(o, d, t0, t1, field, step=0.37)
        return out.rgb, out.opacity

    assert torch.autograd.gradcheck(render, (vol,), eps=1e-6, atol=1e-5, rtol=1e-3)


def test_chunks_and_segments_do_not_change_the_image(small_ct):
    r = RaymarchRenderer(device="cpu")
    scene = Scene(small_ct, preset("CT-Bone"))
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=30, elevation=15, width=40, height=40)
    res, _ = r.march(scene, cam, Quality(1.0, 0.7))
    p = r.prepare(scene)
    from rfmweb.camera import camera_rays
    o, d = (x.reshape(-1, 3) for x in camera_rays(cam))
    inv = torch.as_tensor(np.linalg.inv(small_ct.affine), dtype=torch.float32)
    lo, hi = torch.zeros(3), torch.tensor(small_ct.shape, dtype=torch.float32) - 1  # the whole grid: no skipping
    t0, t1 = ray_aabb(o @ inv[:3, :3].T + inv[:3, 3], d @ inv[:3, :3].T, lo, hi)
    step = 0.7 * min(small_ct.spacing)
    jitter = torch.tensor(pixel_jitter(40, 40, 0), dtype=torch.float32)
    field = r.field(scene, preintegrate=step)
    other = march(o, d, t0, t1, field, step, segment=5, chunk=333, jitter=jitter)
    assert p.grid.shape[0] == 4
    # empty-space skipping keeps the samples where they were
    torch.testing.assert_close(res.rgb, other.rgb, atol=1e-5, rtol=0)
    same = march(o, d, t0, t1, field, step, segment=32, chunk=1 << 15, jitter=jitter)
    torch.testing.assert_close(same.rgb, other.rgb, atol=1e-5, rtol=0)


def test_hidden_class_disappears(small_ct):
    r = RaymarchRenderer(device="cpu")
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=0, elevation=10, width=48, height=48)
    table = ClassTable(ClassTable.from_classes(small_ct.classes).styles, use_class_colors=True)
    bone_rgb = np.array(small_ct.class_by_index(2).color)  # blue-ish in the generic palette
    assert bone_rgb[2] > bone_rgb[0] + 0.3

    def render(t):
        return r.render(Scene(small_ct, preset("CT-Bone"), t), cam).astype(int)

    shown = render(table)
    hidden = render(table.updated(2, visible=False))
    assert ((shown[..., 2] - shown[..., 0]) > 30).sum() > 20        # bone pixels, in the bone colour
    assert ((hidden[..., 2] - hidden[..., 0]) > 30).sum() == 0      # none left once bone is hidden
    assert hidden.max() > 50                                        # the soft tissue still shows
    nothing = table
    for s in table.styles:
        nothing = nothing.updated(s.index, visible=False)
    assert render(nothing).max() == 0


def test_class_styles_blend_trilinearly_across_a_boundary():
    """A tinting class table blends its classes like the intensity: at a voxel centre a class's own
    colour and opacity, between voxels of two classes the weighted mix (no nearest-label step)."""
    labels = torch.ones(4, 3, 3, dtype=torch.int64)
    labels[2:] = 2                                          # class 1 on i = 0, 1; class 2 on i = 2, 3
    classes = ClassTable((ClassStyle(1, "one", (1.0, 0.0, 0.0), opacity=0.5),
                          ClassStyle(2, "two", (0.0, 0.0, 1.0), opacity=1.0)), use_class_colors=True)
    grid = torch.full((1, 4, 3, 3), 500.0, dtype=torch.float64)
    field = ScalarField(grid, np.eye(4), flat_tf(0.4, rgb=(0.0, 1.0, 0.0)), labels, classes, shade=False)
    i = torch.tensor([1.0, 1.5, 1.75, 2.0], dtype=torch.float64)
    points = torch.stack([i, torch.ones_like(i), torch.ones_like(i)], 1)
    rgb, sigma = field(points, torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(4, 3))
    w2 = torch.tensor([0.0, 0.5, 0.75, 1.0], dtype=torch.float64)          # weight of class 2
    a = 0.5 * (1 - w2) + w2                                                 # the blended class opacity
    alpha = 1 - torch.exp(-sigma * field.tf.unit_distance)
    torch.testing.assert_close(alpha, 0.4 * a)
    # colours weighted by opacity as well (a hidden class adds none)
    torch.testing.assert_close(rgb, torch.stack([0.5 * (1 - w2) / a, torch.zeros_like(w2), w2 / a], 1))
    hidden = ScalarField(grid, np.eye(4), flat_tf(0.4, rgb=(0.0, 1.0, 0.0)), labels,
                         classes.updated(2, visible=False), shade=False)
    rgb, sigma = hidden(points[:3], torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).expand(3, 3))
    torch.testing.assert_close(rgb, torch.tensor([[1.0, 0.0, 0.0]] * 3, dtype=torch.float64))


def test_mr_channels_blend_with_window_and_gamma():
    data = np.stack([np.full((4, 4, 4), 100.0), np.full((4, 4, 4), 300.0)]).astype(np.float32)
    mix = ChannelMix((ChannelSetting(True, 1.0, (0.0, 200.0), 1.0), ChannelSetting(True, 3.0, (100.0, 500.0), 2.0)))
    out = mix.blend(torch.from_numpy(data))
    assert out[0, 0, 0].item() == pytest.approx(0.25 * 0.5 + 0.75 * 0.5 ** 2)
    off = ChannelMix((ChannelSetting(False), ChannelSetting(True, 1.0, (100.0, 500.0))))
    assert off.blend(torch.from_numpy(data))[0, 0, 0].item() == pytest.approx(0.5)
    vol = Volume(data, np.eye(4), modality="MR", channels=("T1n", "FLAIR"))
    assert Scene(vol, preset("MR-Default")).effective_mix.settings[1].enabled is False


def test_nothing_visible_renders_background(small_ct):
    tf = TransferFunction("none", color=[(0, 1, 1, 1)], opacity=[(0, 0.0)])
    img = RaymarchRenderer(device="cpu").render(Scene(small_ct, tf, background=(0.2, 0.4, 0.6)),
                                                OrbitCamera.framing(small_ct.bounds, width=8, height=8))
    assert (img == np.array([51, 102, 153])).all()


def ssim_u8(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(ssim(ta, tb, data_range=255.0))


@pytest.mark.parametrize("name", ["CT-Bone", "CT-Muscle"])
def test_vtk_matches_the_raymarcher(head_ct, artifacts, name):
    """A user switching renderer must see the same anatomy and colours."""
    from PIL import Image

    from rfmweb.render.vtk_volume import VtkRenderer
    vol = head_ct.with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=35, elevation=15, width=160, height=160, margin=0.8)
    scene = Scene(vol, preset(name))
    ours = RaymarchRenderer(device="cpu").render(scene, cam, FULL)
    vtk = VtkRenderer(threads=1)
    theirs = vtk.render(scene, cam, FULL)
    vtk.close()
    Image.fromarray(np.concatenate([ours, theirs], axis=1)).save(artifacts / f"raymarch_vs_vtk_{name}.png")
    assert ours.std() > 20 and theirs.std() > 20  # real pictures, not blank frames
    # VTK's fixed-point mapper samples unjittered, on raw-gradient normals: its wood grain on the skin
    # (CT-Muscle) is most of the gap to the jittered, pre-integrated ray-marcher
    assert ssim_u8(ours, theirs) > 0.88
    assert np.abs(ours.astype(float).mean(axis=(0, 1)) - theirs.astype(float).mean(axis=(0, 1))).max() < 4


def test_vtk_hides_classes_like_the_raymarcher(small_ct, caplog):
    from rfmweb.render.vtk_volume import VtkRenderer
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=0, elevation=10, width=64, height=64, margin=0.8)
    table = ClassTable.from_classes(small_ct.classes)
    vtk = VtkRenderer(threads=1)
    ours, theirs = [], []
    notes = []
    for classes in (table, table.updated(2, visible=False), ClassTable(table.styles, use_class_colors=True)):
        scene = Scene(small_ct, preset("CT-Bone"), classes)
        ours.append(RaymarchRenderer(device="cpu").render(scene, cam))
        theirs.append(vtk.render(scene, cam))
        notes.append(vtk.note)
    vtk.close()
    # the view says when the ray-marcher drew it (a compare of VTK and the ray-marcher read SSIM 1.000)
    assert notes[:2] == ["", ""] and notes[2].startswith("drawn by Ray-marcher") and "VTK cannot" in notes[2]
    # a script sees it too (a warning reaches stderr without any logging set up)
    assert [r.levelname for r in caplog.records if "VTK cannot draw" in r.getMessage()] == ["WARNING"]
    assert pixels_differ(theirs[0], theirs[1]) and pixels_differ(theirs[0], theirs[2])
    # 0.85 before jittering: one jittered frame of a 4 mm grid at 64 px is grainy where VTK's is not
    assert ssim_u8(ours[0], theirs[0]) > 0.82
    assert ssim_u8(ours[1], theirs[1]) > 0.82   # hidden classes: masked before interpolation in both
    # class colours: drawn by the (compiled) ray-marcher, equal to the torch one within rounding
    assert ssim_u8(ours[2], theirs[2]) > 0.99


def test_vtk_averages_the_frames_its_quality_asks_for(small_ct):
    """``Quality(frames=4)`` drew VTK's single frame (byte-identical to frames=1)."""
    from rfmweb.render.vtk_volume import VtkRenderer
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=30, elevation=10, width=48, height=48, margin=0.8)
    scene = Scene(small_ct, preset("CT-Soft-Tissue"))
    vtk = VtkRenderer(threads=1)
    try:
        one, four = (vtk.render(scene, cam, replace(FULL, frames=n)) for n in (1, 4))
        many = vtk.render(scene, cam, replace(FULL, frames=16))
    finally:
        vtk.close()
    assert pixels_differ(one, four)
    error = [np.abs(x.astype(float) - many).mean() for x in (one, four)]
    assert error[1] < 0.7 * error[0], error


def test_vtk_converges_while_the_camera_rests(head_ct):
    """At rest VTK averages frames at a quarter of the step, each with the window moved to another
    sub-pixel position: the lattice rings of its single frame on a steep preset fade, as the
    ray-marchers' grain does (0.5 degrees apart at 128 px: ~0.70 one frame, ~0.97 converged)."""
    from rfmweb.render.vtk_volume import VtkRenderer
    vol = head_ct.with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=128, height=128, margin=0.8)
    turned = cam.orbited(0.5, 0.0)
    scene = Scene(vol, preset("CT-Soft-Tissue"))
    vtk = VtkRenderer(threads=1)
    try:
        one = [vtk.render(scene, c, FULL) for c in (cam, turned)]
        passes = [list(vtk.accumulate(scene, c, 4, 2)) for c in (cam, turned)]
    finally:
        vtk.close()
    assert [n for _, n in passes[0]] == [4, 8]
    image = passes[0][-1][0]
    assert image.dtype == np.float32 and image.shape == (128, 128, 3) and 0 <= image.min() and image.max() <= 1
    rest = [(p[-1][0] * 255 + 0.5).astype(np.uint8) for p in passes]
    assert ssim_u8(*one) < 0.8 and ssim_u8(*rest) > 0.95


def test_vtk_at_rest_moves_its_samples_along_the_rays(head_ct, monkeypatch):
    """VTK's fixed-point mapper samples at whole steps from the near clipping plane. Looking along a
    voxel axis, every ray then meets the lattice at one depth phase, and the rings it draws stay at rest
    unless each frame moves the plane by another fraction of the step (lateral view, CT-Soft-Tissue,
    0.5 degrees apart: 0.958 without, 0.968 with). Frame 0 is the moving view's: unmoved."""
    from rfmweb.render import vtk_volume
    from rfmweb.render.scene import to_uint8
    vol = head_ct.with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=90, elevation=0, width=128, height=128, margin=0.8)
    scene = Scene(vol, preset("CT-Soft-Tissue"))
    phases = [vtk_volume.depth_phase(f) for f in range(16)]
    assert phases[0] == 0.0 and all(0.0 <= p < 1.0 for p in phases)
    assert np.diff(np.sort(phases)).max() < 0.125                    # the step covered evenly
    stability = []
    for moved in (True, False):
        if not moved:
            monkeypatch.setattr(vtk_volume, "depth_phase", lambda frame: 0.0)
        vtk = vtk_volume.VtkRenderer(threads=1)
        try:
            rest = [to_uint8(list(vtk.accumulate(scene, c, 16, 1))[-1][0]) for c in (cam, cam.orbited(0.5, 0.0))]
        finally:
            vtk.close()
        stability.append(ssim_u8(*rest))
    assert stability[0] > 0.963 and stability[0] > stability[1] + 0.006, stability


def test_vtk_at_rest_matches_the_raymarcher_past_an_opacity_of_one(head_ct):
    """CT-Soft-Tissue goes from clear to an opacity of 1 over 7 HU, then brightens with HU: how far light
    enters past that point sets the skin's brightness. VTK must cap the opacity as the ray-marchers do
    (without the cap its skin was a third darker: SSIM 0.91, mean 9 against 14)."""
    from rfmweb.render.registry import make_renderer
    from rfmweb.render.vtk_volume import VtkRenderer
    vol = head_ct.with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=128, height=128, margin=0.8)
    scene = Scene(vol, preset("CT-Soft-Tissue"))
    vtk = VtkRenderer(threads=1)
    try:
        *_, (theirs, _) = vtk.accumulate(scene, cam, 8, 1)
    finally:
        vtk.close()
    *_, (ours, _) = make_renderer("compiled").accumulate(scene, cam, 8, 1)
    theirs, ours = ((x * 255 + 0.5).astype(np.uint8) for x in (theirs, ours))
    assert abs(float(theirs.mean()) - float(ours.mean())) < 1.5 and ssim_u8(ours, theirs) > 0.95


def test_vtk_at_rest_reads_the_cubic_grid_without_contour_rings(head_ct, monkeypatch):
    """The face zoomed in, CT-Soft-Tissue: read trilinearly, VTK's converged view keeps the contour rings
    of the voxel lattice (SSIM ~0.85 to the marcher's cubic view); its half-spacing cubic grid brings it
    to ~0.91. Shaded presets and volumes whose grid would be too big stay trilinear; a view with
    hidden classes reads the spline of the faded scalar."""
    from rfmweb.render import vtk_volume
    from rfmweb.render.registry import make_renderer
    from rfmweb.render.scene import to_uint8
    vol = head_ct.with_labels(None, ())
    framed = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=160, height=160, margin=0.8)
    cam = replace(framed, fov=framed.fov / 3)
    scene = Scene(vol, preset("CT-Soft-Tissue"))
    *_, (ours, _) = make_renderer("compiled").accumulate(scene, cam, 4, 1)
    vtk = vtk_volume.VtkRenderer(threads=1)
    try:
        trilinear, cubic = (to_uint8(list(vtk.accumulate(scene, cam, 4, 1, quality=replace(REST, cubic=c)))[-1][0])
                            for c in (False, True))
        assert vtk._reads_cubic(scene, REST) and not vtk._reads_cubic(scene, FULL)
        monkeypatch.setattr(vtk_volume, "REST_CUBIC_MAX_VOXELS", vol.data[0].size)
        *_, (too_big, _) = vtk.accumulate(scene, cam, 4, 1)
    finally:
        vtk.close()
    ours = to_uint8(ours)
    assert ssim_u8(ours, cubic) > ssim_u8(ours, trilinear) + 0.03 and ssim_u8(ours, cubic) > 0.89
    np.testing.assert_array_equal(to_uint8(too_big), trilinear)
    hidden = Scene(head_ct, preset("CT-Soft-Tissue"), ClassTable.from_classes(head_ct.classes).updated(2, visible=False))
    shaded = Scene(vol, preset("CT-Bone"))
    monkeypatch.undo()                                   # the head CT's cubic grid fits again
    fresh = vtk_volume.VtkRenderer()
    assert fresh._reads_cubic(hidden, REST) and not fresh._reads_cubic(shaded, REST)


def test_vtk_mapper_follows_the_opengl_renderer(monkeypatch):
    from rfmweb.backend import vtk_volume_mapper
    from rfmweb.errors import InputError
    monkeypatch.delenv("RFMWEB_VTK_MAPPER", raising=False)
    assert vtk_volume_mapper("llvmpipe (LLVM 15.0.6, 256 bits)") == "fixed-point"
    assert vtk_volume_mapper("Google SwiftShader") == "fixed-point"
    assert vtk_volume_mapper("") == "fixed-point"   # not reported: the mapper that is safe anywhere
    assert vtk_volume_mapper("NVIDIA H100 80GB HBM3/PCIe/SSE2") == "gpu"
    assert vtk_volume_mapper("AMD Radeon Pro W7900 (radeonsi, navi31, LLVM 15.0.6, DRM 3.54)") == "gpu"
    monkeypatch.setenv("RFMWEB_VTK_MAPPER", "gpu")
    assert vtk_volume_mapper("llvmpipe (LLVM 15.0.6, 256 bits)") == "gpu"
    monkeypatch.setenv("RFMWEB_VTK_MAPPER", "cuda")
    with pytest.raises(InputError, match="RFMWEB_VTK_MAPPER"):
        vtk_volume_mapper("NVIDIA H100")


def test_vtk_gpu_mapper_shades_like_the_raymarcher(head_ct, monkeypatch):
    """The mapper a hardware OpenGL gets, run here on llvmpipe: CT-Bone at rest, its normals taken at each
    sample, is nearer the ray-marcher's view than the fixed-point mapper's quantised per-voxel normals
    (SSIM 0.952 against 0.906 at 96 px)."""
    from rfmweb.render.registry import make_renderer
    from rfmweb.render.scene import to_uint8
    from rfmweb.render.vtk_volume import VtkRenderer
    vol = head_ct.with_labels(None, ())
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=96, height=96, margin=0.8)
    scene = Scene(vol, preset("CT-Bone"))
    *_, (ours, _) = make_renderer("compiled").accumulate(scene, cam, 4, 1)
    ours, views = to_uint8(ours), {}
    for kind in ("fixed-point", "gpu"):
        monkeypatch.setenv("RFMWEB_VTK_MAPPER", kind)
        vtk = VtkRenderer(threads=1)
        try:
            *_, (image, _) = vtk.accumulate(scene, cam, 4, 1)
            assert vtk.mapper_kind == kind
        finally:
            vtk.close()
        views[kind] = to_uint8(image)
    assert views["gpu"].std() > 20
    assert ssim_u8(ours, views["gpu"]) > max(0.93, ssim_u8(ours, views["fixed-point"]) + 0.02)


def test_vtk_class_styled_views_converge_in_the_raymarcher(small_ct):
    from rfmweb.backend import marcher_renderer
    from rfmweb.render.registry import make_renderer
    from rfmweb.render.vtk_volume import VtkRenderer
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=0, elevation=10, width=32, height=32, margin=0.8)
    table = ClassTable(ClassTable.from_classes(small_ct.classes).styles, use_class_colors=True)
    scene = Scene(small_ct, preset("CT-Bone"), table)
    vtk = VtkRenderer(threads=1)
    try:
        theirs = list(vtk.accumulate(scene, cam, 2, 2))
    finally:
        vtk.close()
    ours = list(make_renderer(marcher_renderer()).accumulate(scene, cam, 2, 2))
    assert [n for _, n in theirs] == [n for _, n in ours] == [2, 4]
    np.testing.assert_array_equal(theirs[-1][0], ours[-1][0])


@pytest.mark.gpu
def test_cuda_matches_cpu(small_ct):
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=20, width=64, height=64)
    scene = Scene(small_ct, preset("CT-Bone"), ClassTable.from_classes(small_ct.classes).updated(1, visible=False))
    cpu = RaymarchRenderer(device="cpu").render_tensor(scene, cam)
    gpu = RaymarchRenderer(device="cuda").render_tensor(scene, cam).cpu()
    torch.testing.assert_close(gpu, cpu, atol=2e-3, rtol=0)


def test_solid_labels_are_lit_by_their_own_smooth_boundary():
    """A segmentation over a noisy image renders as a smooth surface, not as the noise."""
    rng = np.random.default_rng(0)
    n = 40
    data = rng.uniform(0.3, 0.7, size=(n, n, n)).astype(np.float32)   # pure noise under the label
    x = np.arange(n) - (n - 1) / 2
    labels = ((x[:, None, None] ** 2 + x[None, :, None] ** 2 + x[None, None, :] ** 2) < 12 ** 2).astype(np.uint8)
    from rfmweb.volume import LabelClass
    vol = Volume(data, np.eye(4), modality="MR", labels=labels,
                 classes=(LabelClass(0, "bg", (0, 0, 0)), LabelClass(1, "tumour", (0.9, 0.6, 0.2))))
    table = ClassTable(ClassTable.from_classes(vol.classes).styles, mode="solid")
    invisible = TransferFunction("none", color=[(0, 1, 1, 1)], opacity=[(0, 0.0)],
                                 shading=Shading(True, 0.2, 0.8, 0.0, 1.0))
    cam = OrbitCamera.framing(vol.bounds, width=64, height=64, margin=0.7)
    r = RaymarchRenderer(device="cpu")
    smooth = r.render(Scene(vol, invisible, table), cam).astype(float)[..., 0]
    p = r.prepare(Scene(vol, invisible, table))  # the same field lit by the intensity gradient instead:
    noisy = r.render_tensor(Scene(vol, invisible, table), cam,
                            field=ScalarField(p.grid, vol.affine, invisible, p.labels, table)).numpy()[..., 0] * 255
    inside = smooth > 20

    def roughness(img):
        lap = np.abs(4 * img[1:-1, 1:-1] - img[:-2, 1:-1] - img[2:, 1:-1] - img[1:-1, :-2] - img[1:-1, 2:])
        return lap[inside[1:-1, 1:-1]].mean()

    assert inside.sum() > 300
    assert roughness(smooth) < 0.3 * roughness(noisy)


def test_preintegration_sees_a_thin_band_between_samples():
    """A TF band crossed between two samples counts in full: a ramp of 20 HU/mm through an opaque
    band 4 HU wide is a 0.2 mm shell, which 1 mm steps straddle. Point samples see it on some rays
    and miss it on others (depending on their jitter); pre-integrated, every ray gets the analytic
    opacity ``1 - exp(-sigma * 0.2 mm)``."""
    grid = (torch.arange(41, dtype=torch.float64) * 20.0).expand(1, 5, 5, 41).contiguous()   # 20 HU/mm along z
    a = 0.9   # opacity per mm inside the band
    tf = TransferFunction("band", color=[(0, 1, 1, 1), (800, 1, 1, 1)],
                          opacity=[(0, 0), (399.99, 0), (400, a), (404, a), (404.01, 0), (800, 0)], shading=FLAT)
    o = torch.tensor([[2.0, 2.0, -3.0]], dtype=torch.float64).repeat(16, 1)
    d = torch.tensor([[0.0, 0.0, 1.0]], dtype=torch.float64).repeat(16, 1)
    t0, t1 = ray_aabb(o, d, torch.zeros(3, dtype=torch.float64), torch.tensor([4.0, 4.0, 40.0], dtype=torch.float64))
    jitter = torch.arange(16, dtype=torch.float64) / 16
    expected = 1 - math.exp(math.log(1 - a) * 0.2)
    point = march(o, d, t0, t1, ScalarField(grid, np.eye(4), tf, shade=False), 1.0, jitter=jitter, early_stop=0.0)
    pre = march(o, d, t0, t1, ScalarField(grid, np.eye(4), tf, shade=False, preintegrate=1.0), 1.0, jitter=jitter,
                early_stop=0.0)
    assert point.opacity.min() < 0.01 and point.opacity.max() > 0.8        # hit or miss: the moire's cause
    torch.testing.assert_close(pre.opacity, torch.full_like(pre.opacity, expected), atol=0.01, rtol=0)


@pytest.mark.parametrize("name", ["CT-Soft-Tissue", "CT-Bone", "CT-Muscle"])
def test_reference_quality_has_converged(small_ct, name):
    """Ground truth for training: the reference render is within SSIM 0.99 of one with 4x the
    samples (half the step, twice the jittered frames), also on CT-Soft-Tissue, opaque within a
    fraction of a mm (its surface colour comes from the pieces of a segment composited in order).
    Drawn by the compiled marcher, the torch one's twin (equal within 1e-3:
    ``tests/test_compiled_raymarch.py``), 10x faster on the CPU."""
    from rfmweb.render import REFERENCE
    from rfmweb.render.compiled import CompiledRaymarchRenderer
    r = CompiledRaymarchRenderer()
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=30, elevation=15, width=64, height=64, margin=0.8)
    scene = Scene(small_ct, preset(name))
    ref = r.render(scene, cam, REFERENCE)
    more = r.render(scene, cam, replace(REFERENCE, step=REFERENCE.step / 2, frames=REFERENCE.frames * 2))
    assert ref.std() > 10
    assert ssim_u8(ref, more) >= 0.99


def test_accumulate_averages_jittered_frames(small_ct):
    r = RaymarchRenderer(device="cpu")
    cam = OrbitCamera.framing(small_ct.bounds, azimuth=30, elevation=15, width=32, height=32, margin=0.8)
    scene = Scene(small_ct, preset("CT-Soft-Tissue"))
    passes = list(r.accumulate(scene, cam, 2, 3))
    assert [n for _, n in passes] == [2, 4, 6]
    # at rest the frames read the CT through its cubic B-spline (REST), not trilinearly
    np.testing.assert_allclose(passes[-1][0], r.render_float(scene, cam, replace(REST, frames=6)), atol=1e-5)
    assert np.abs(passes[-1][0] - r.render_float(scene, cam, Quality(1.0, 0.5, 6))).max() > 1e-3
    first, second = (r.render_float(scene, cam, FULL, first_frame=k) for k in (0, 1))
    assert np.abs(first - second).mean() > 1e-3                       # frames differ: jittered
    np.testing.assert_allclose(r.render_float(scene, cam, FULL), first, atol=0)   # and deterministic


def test_an_optimiser_after_a_vtk_frame_does_not_crash():
    # Mesa's libLLVM (VTK's offscreen OpenGL) then Triton's own LLVM, which torch imports with the
    # first optimiser, used to kill the process: a correction after a VTK frame did
    code = ("import torch\n"
            "from rfmweb import samples\nfrom rfmweb.camera import OrbitCamera\nfrom rfmweb.render import Scene\n"
            "from rfmweb.render.vtk_volume import VtkRenderer\nfrom rfmweb.transfer import preset\n"
            "v = samples.load('ct_phantom', size=32)\n"
            "img = VtkRenderer().render(Scene(v, preset('CT-Bone')), OrbitCamera.framing(v.bounds, width=32, height=32))\n"
            "torch.optim.Adam([torch.zeros(3, requires_grad=True)])\n"
            "print('survived', img.std() > 0)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "survived True" in res.stdout, res.stderr[-2000:]
