"""Render-FM core: input builder, AGP from classified voxels, decoder, exact patches, checkpoints, prepare."""

from __future__ import annotations

import json
import logging
import math
import pickle
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rfmweb import samples
from rfmweb.cli import main
from rfmweb.errors import InputError
from rfmweb.render import Scene
from rfmweb.renderfm.decoder import N_OUT, Base, decode
from rfmweb.renderfm.inputs import build_inputs, working_grid
from rfmweb.renderfm.model import RenderFM, RenderFMConfig, base_for, load_model, predict, save_model
from rfmweb.splats.init import DIR_STD, SH_C0, agp_init, classify, prime
from rfmweb.splats.model import Splats6D
from rfmweb.splats.slicing import LAMBDA_OPA
from rfmweb.transfer import ClassTable, TransferFunction, preset
from rfmweb.volume import Volume

SMALL = RenderFMConfig(features=(4, 8, 16), spacing_mm=8.0)


@pytest.fixture(scope="module")
def scene(small_ct):
    return Scene(small_ct, preset("CT-Bone"), ClassTable.from_classes(small_ct.classes))


def test_inputs_channels_and_grid(scene, small_ct):
    inp = build_inputs(scene, 8.0)
    shape, affine = working_grid(small_ct.shape, small_ct.affine, 8.0)
    assert inp.tensor.shape == (6, *shape) and inp.shape == shape and inp.mask_from == "labels"
    np.testing.assert_allclose(inp.affine, affine)
    # same field of view: first and last voxel centres coincide with the volume's
    corner = small_ct.affine @ np.array([*(n - 1 for n in small_ct.shape), 1.0])
    np.testing.assert_allclose(affine @ np.array([*(n - 1 for n in shape), 1.0]), corner, atol=1e-6)
    x = inp.tensor.numpy()
    assert x[0].min() >= -1.024 and x[0].max() <= 3.071               # HU / 1000
    assert set(np.unique(x[1])) <= {0.0, 1.0} and x[1].mean() > 0.05   # mask
    assert ((x[2:] >= 0) & (x[2:] <= 1)).all()
    np.testing.assert_array_equal(x[1] > 0, ((inp.labels > 0) & (inp.rgba[..., 3] > 0)).numpy())
    unlabelled = build_inputs(Scene(small_ct.with_labels(None, ()), preset("CT-Bone")), None)
    assert unlabelled.mask_from == "tf" and unlabelled.shape == small_ct.shape and unlabelled.unlabelled == 0.0
    # the share of what the TF shows that the label mask leaves out: the head CT's labels (soft tissue, bone)
    # cover CT-Bone's voxels, but not most of what CT-Lung shows (air-filled spaces, the head rest's foam)
    shown = (x[5] > SMALL.eps)
    assert inp.unlabelled == pytest.approx(float((shown & (inp.labels.numpy() == 0)).sum() / shown.sum()))
    assert inp.unlabelled < 0.2 < 0.5 < build_inputs(Scene(small_ct, preset("CT-Lung")), 8.0).unlabelled


def test_a_volume_that_is_not_ct_is_refused_and_not_offered(small_ct):
    """The model has seen Hounsfield units only: an MR volume is refused (prepare, the renderer), and the
    viewers' renderer menus show Render-FM disabled with the reason."""
    from rfmweb.render.registry import renderer_status

    mr = Volume(small_ct.data, small_ct.affine, modality="MR", name="brain")
    with pytest.raises(InputError, match="Render-FM is trained on CT only; brain is MR"):
        build_inputs(Scene(mr, preset("MR-Default")), 8.0)
    assert renderer_status(mr)["renderfm"] == "trained on CT only; this volume is MR"
    assert renderer_status(small_ct)["renderfm"] == renderer_status()["renderfm"]
    if renderer_status()["renderfm"] is None:     # the shipped checkpoint: a session refuses MR at once
        from rfmweb.session import RenderSession
        with pytest.raises(InputError, match="cannot draw brain: trained on CT only"):
            RenderSession(mr, renderer="renderfm", width=32, height=32)


def test_agp_pools_classified_voxels_not_hu():
    """A bone / air edge inside a block: pooled HU (~ +200) would read as soft tissue; the classified
    voxels give a block of bone colour at half the extinction."""
    hu = np.full((4, 2, 2), -1000.0, np.float32)
    hu[1, :, :] = 1400.0                                          # bone in one voxel layer of block 0
    tf = TransferFunction("edge", color=[(-1000, 0, 0, 0), (100, 1, 0, 0), (1000, 1, 1, 1)],
                          opacity=[(-1000, 0), (0, 0), (100, 0.5), (300, 0.0), (1000, 0.9)])
    rgba = classify(torch.from_numpy(hu), None, tf, ClassTable())
    primed = prime(rgba, None, np.eye(4), 1.0)
    assert len(primed) == 1 and tuple(primed.index[0].tolist()) == (0, 0, 0)
    np.testing.assert_allclose(primed.rgb[0], [1, 1, 1], atol=1e-6)             # bone white, not soft-tissue red
    ext = -np.log(1 - 0.9) / 2                                                  # mean over the block
    np.testing.assert_allclose(primed.alpha[0], 1 - np.exp(-ext * 2.0), rtol=1e-5)
    np.testing.assert_allclose(primed.means[0], [0.5, 0.5, 0.5])


def test_agp_block_label_is_the_weighted_majority_ties_to_the_smaller():
    rgba = torch.full((2, 2, 4, 4), 0.5)
    labels = torch.zeros(2, 2, 4, dtype=torch.int64)
    labels[:, :, :2] = torch.tensor([[[5, 3], [3, 5]], [[5, 3], [3, 5]]])   # block 0: 4 x 3, 4 x 5, equal weights
    labels[:, :, 2:] = 7
    labels[0, 0, 2] = 4
    rgba[0, 0, 2, 3] = 0.999                                                 # block 1: one opaque 4 outweighs seven 7s
    primed = prime(rgba, labels, np.eye(4), 1.0)
    assert primed.labels.tolist() == [3, 4]
    back = pickle.loads(pickle.dumps(primed))                              # training samples travel pickled
    assert isinstance(back.index, torch.Tensor) and torch.equal(back.labels, primed.labels)


def test_agp_off_keeps_every_block(scene):
    every = agp_init(scene, all_voxels=True)
    some = agp_init(scene)
    x, y, z = (n // 2 for n in scene.volume.shape)
    assert len(every) == x * y * z > len(some)


def test_zero_output_decodes_to_agp_exactly(scene):
    inp = build_inputs(scene, None)
    base = base_for(inp, SMALL)
    raw = torch.zeros(N_OUT, *(n // 2 for n in inp.shape))
    out = decode(raw, base)
    ref = agp_init(scene)
    for name in ("means", "chol_log_diag", "chol_lower", "opacity_logits", "sh"):
        torch.testing.assert_close(getattr(out, name), getattr(ref, name))
    torch.testing.assert_close(out.labels, ref.labels)


def test_decoder_bounds_and_gradients(scene):
    base = base_for(build_inputs(scene, 8.0), SMALL)
    n = len(base.splats)
    raw = (torch.randn(n, N_OUT) * 50).requires_grad_()
    out = decode(raw, base, max_offset=1.0, max_log_scale=2.0)
    shift = (out.means - base.splats.means).abs()
    assert (shift <= base.voxel_mm + 1e-4).all() and shift.max() > 0.5 * base.voxel_mm.min()
    assert (out.chol_log_diag - base.splats.chol_log_diag).abs().max() <= 2.0 + 1e-5
    out.sh.sum().backward()
    assert raw.grad[:, 25:].abs().sum() > 0 and raw.grad[:, :25].abs().sum() == 0
    with pytest.raises(InputError, match="37"):
        decode(torch.zeros(n, 36), base)


def test_position_scales_stay_above_the_floor(scene):
    """``min_log_scale`` bounds only the position scales from below (splats narrower than ~0.4 of
    their lattice spacing show it as a grid of dots); zero still decodes to AGP, and the default
    (None) keeps the symmetric bound of earlier checkpoints."""
    base = base_for(build_inputs(scene, 8.0), SMALL)
    n = len(base.splats)
    torch.manual_seed(0)
    raw = (torch.randn(n, N_OUT) * 5).requires_grad_()
    floor = decode(raw, base, min_log_scale=0.1)
    d = floor.chol_log_diag - base.splats.chol_log_diag
    assert d[:, :3].min() >= -0.1 - 1e-6 and d[:, :3].max() > 1.0     # bounded below only
    assert d[:, 3:].min() < -1.0                                      # direction scales: as before
    free = decode(raw, base)
    assert (free.chol_log_diag - base.splats.chol_log_diag)[:, :3].min() < -1.0      # unbounded before
    up = raw[:, 3:6] > 0
    torch.testing.assert_close(d[:, :3][up], (free.chol_log_diag - base.splats.chol_log_diag)[:, :3][up])
    small = torch.zeros(n, N_OUT)
    small[:, 3] = torch.linspace(-0.01, 0.01, n)
    small.requires_grad_()
    decode(small, base, min_log_scale=0.1).chol_log_diag[:, 0].sum().backward()
    assert (small.grad[:, 3] > 0.99).all()                          # smooth: slope ~1 on both sides of 0
    zero = decode(torch.zeros(n, N_OUT), base, min_log_scale=0.1)
    torch.testing.assert_close(zero.chol_log_diag, base.splats.chol_log_diag)
    with pytest.raises(InputError, match="min_log_scale"):
        RenderFMConfig(min_log_scale=3.0)


def test_shipped_model_keeps_splats_above_the_floor(scene):
    """The shipped checkpoint loads (``weights_only``) with the scale floor, and its splats on a CT
    it never saw keep position scales >= e^-0.1 of the AGP base (no grid of dots in large views)."""
    model = load_model()
    assert model.config.min_log_scale == 0.1
    inputs = build_inputs(scene, model.config.spacing_mm)
    base = base_for(inputs, model.config)
    with torch.no_grad():
        out = decode(model.forward_patched(inputs.tensor[None])[0], base, min_log_scale=model.config.min_log_scale)
    shrink = (out.chol_log_diag - base.splats.chol_log_diag)[:, :3]
    assert shrink.min() >= -0.1 - 1e-5 and shrink.abs().max() > 0.01      # bounded, and trained


def test_no_slice_is_narrower_than_the_sliced_floor(scene):
    """Conditioning on the view direction narrowed the shipped model's splats to 0.26-0.32 of their
    lattice spacing on the head CT (stripes and dots in large views) though their position scales kept
    the floor: ``min_sliced_width`` bounds the slices themselves, keeping each slice's mass, and leaves
    means, colours and splats already wide enough alone; it is on by default."""
    from rfmweb.splats.slicing import conditional_parts

    base = base_for(build_inputs(scene, 8.0), SMALL)
    n = len(base.splats)
    torch.manual_seed(0)
    raw = torch.randn(n, N_OUT) * 2                              # strong position-direction correlations
    free = decode(raw, base, min_log_scale=0.1)
    floored = decode(raw.clone().requires_grad_(), base, min_log_scale=0.1, min_sliced_width=0.35)
    sigma = 0.35 * 2 * float(base.voxel_mm.min())
    before, after = (conditional_parts(s).covars.detach().double() for s in (free, floored))
    narrow = torch.linalg.eigvalsh(before)[:, 0] < sigma ** 2
    assert narrow.float().mean() > 0.5
    reached = torch.linalg.eigvalsh(after)[:, 0] >= sigma ** 2 * (1 - 1e-4)
    # a splat whose widened factor |l| < 1 cannot hold (none of the shipped model's on the head CT) is kept
    kept = (after - before).abs().amax((1, 2)) < 1e-6
    assert (reached | kept).all() and reached[narrow].float().mean() > 0.9
    mass = [torch.sigmoid(s.opacity_logits.detach()).double() * torch.linalg.det(c).sqrt()
            for s, c in ((free, before), (floored, after))]
    torch.testing.assert_close(mass[1], mass[0], rtol=1e-3, atol=1e-6)
    for name in ("means", "dir_means", "sh"):
        torch.testing.assert_close(getattr(floored, name).detach(), getattr(free, name))
    wide = ~narrow
    torch.testing.assert_close(after[wide], before[wide], rtol=1e-4, atol=1e-6)
    floored.chol_log_diag.sum().backward()                      # differentiable
    assert RenderFMConfig().min_sliced_width == 0.35
    with pytest.raises(InputError, match="min_sliced_width"):
        RenderFMConfig(min_sliced_width=0.0)


def test_untrained_model_predicts_the_agp_splats(scene):
    torch.manual_seed(0)
    model = RenderFM(RenderFMConfig(features=(4, 8, 16), spacing_mm=4.0))
    pred = predict(model, scene, prune=0.0)
    inp = build_inputs(scene, 4.0)
    ref = Base.from_primed(prime(inp.rgba, inp.labels, inp.affine, inp.unit_distance)).splats
    torch.testing.assert_close(pred.splats.means, ref.means)
    assert set(pred.timings) == {"input", "network", "decode", "transfer", "prepare_s"}


# -- the numpy reference of the input stage and AGP base (what ran before the torch port) ----------------
def _reference(scene: Scene, spacing_mm: float | None, eps: float = 0.01) -> tuple[np.ndarray, np.ndarray, Base]:
    """``(channels [6, X, Y, Z], labels or None, AGP base)`` in numpy: trilinear HU (torch's float32
    ``interpolate``, as before the port: float64 HU would move voxels on a steep TF ramp by more than
    1e-5) and nearest labels on the align-corners lattice, ``np.interp`` TF, class table by label,
    2 x 2 x 2 blocks."""
    vol, tf = scene.volume, scene.tf
    shape, affine = working_grid(vol.shape, vol.affine, spacing_mm)
    axes = [np.linspace(0, n - 1, m) for n, m in zip(vol.shape, shape)]
    hu = F.interpolate(torch.from_numpy(vol.data[None, :1]), size=shape, mode="trilinear", align_corners=True)
    hu = hu[0, 0].numpy()
    labels = None if vol.labels is None else vol.labels[np.ix_(*(np.rint(a).astype(int) for a in axes))].astype(int)
    rgba = tf.rgba_np(hu)
    if labels is not None:
        table, use = (t.numpy()[labels] for t in scene.classes.lookup(int(labels.max())))
        rgba[..., :3] = rgba[..., :3] * (1 - use[..., None]) + table[..., :3] * use[..., None]
        solid = scene.classes.mode == "solid"
        rgba[..., 3] = np.where(use > 0, table[..., 3], rgba[..., 3]) if solid else rgba[..., 3] * table[..., 3]
    path = np.mean(np.linalg.norm(affine[:3, :3], axis=0))
    a_vox = 1 - (1 - np.clip(rgba[..., 3], 0, 0.999)) ** (path / tf.unit_distance)
    mask = (labels > 0) & (rgba[..., 3] > 0) if labels is not None else a_vox > eps
    x = np.stack([np.clip(hu, -1024, 3071) / 1000, mask, *np.moveaxis(rgba[..., :3], -1, 0), a_vox])
    # AGP: blocks [X', Y', Z', 8]
    h = [n // 2 for n in shape]
    blocks = lambda v: v[:2 * h[0], :2 * h[1], :2 * h[2]].reshape(h[0], 2, h[1], 2, h[2], 2, *v.shape[3:]) \
        .transpose(0, 2, 4, 1, 3, 5, *range(6, v.ndim + 3)).reshape(*h, 8, *v.shape[3:])  # noqa: E731
    ext = blocks(-np.log1p(-np.clip(rgba[..., 3], 0, 0.999)) / tf.unit_distance)
    half = np.linalg.norm(affine[:3, :3], axis=0) * 2
    alpha = 1 - np.exp(-ext.mean(-1) * half.mean())
    keep = alpha > eps
    if labels is not None:
        lab = blocks(labels)
        values = np.unique(lab)                      # weights per label value, ties to the smaller value
        score = np.stack([((lab == v) * (ext + 1e-6)).sum(-1) for v in values], -1)
        block_labels = values[score.argmax(-1)]
        keep &= block_labels > 0
    idx = np.argwhere(keep)
    sel = tuple(idx.T)
    e, c = ext[sel], blocks(rgba[..., :3])[sel]
    em = e.mean(-1, keepdims=True)
    rgb = np.where(em > 1e-12, (c * e[..., None]).sum(1) / 8 / np.maximum(em, 1e-12), c.mean(1))
    centre = affine[:3, :3] @ (2 * idx.T + 0.5) + affine[:3, 3:4]
    opacity = np.clip(alpha[sel] / math.exp(-LAMBDA_OPA / DIR_STD ** 2), 1e-4, 0.999)
    n = len(idx)
    log_diag = np.concatenate([np.log(np.broadcast_to(half / 2, (n, 3))), np.full((n, 3), math.log(DIR_STD))], 1)
    sh = np.zeros((n, 4, 3))
    sh[:, 0] = (rgb - 0.5) / SH_C0
    f = lambda v: torch.as_tensor(v, dtype=torch.float32)  # noqa: E731
    splats = Splats6D(f(centre.T), f(np.zeros((n, 3))), f(log_diag), f(np.zeros((n, 15))),
                      f(np.log(opacity / (1 - opacity))), f(sh),
                      None if labels is None else torch.as_tensor(block_labels[sel]))
    return x, labels, Base(splats, torch.as_tensor(idx), f(half / 2))


def _assert_same_splats(a: Splats6D, b: Splats6D) -> None:
    assert len(a) == len(b)
    for name in ("means", "dir_means", "chol_log_diag", "chol_lower", "sh"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), atol=1e-5, rtol=1e-5)
    # logits are ill-conditioned near the 0.999 opacity cap (-ln(1 - a)): opacities too, absolutely
    torch.testing.assert_close(a.opacity_logits, b.opacity_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(a.opacity_logits.sigmoid(), b.opacity_logits.sigmoid(), atol=1e-5, rtol=0)
    assert (a.labels is None) == (b.labels is None) and (a.labels is None or torch.equal(a.labels, b.labels))


def _phantom_scene(case: str) -> Scene:
    vol = samples.load("ct_phantom", size=40)
    classes = ClassTable.from_classes(vol.classes)
    if case == "anisotropic":     # a 1 : 1.6 : 2.3 voxel grid, resampled to isotropic
        vol = Volume(vol.data, np.diag([*(np.array(vol.spacing) * [1.0, 1.6, 2.3]), 1.0]),
                     labels=vol.labels, classes=vol.classes)
    elif case == "unlabelled":
        vol, classes = vol.with_labels(None, ()), ClassTable()
    elif case == "class-colours-hidden":
        classes = ClassTable.from_classes(vol.classes, use_class_colors=True).set_group_visible("skeleton", False)
        classes = classes.updated(24, opacity=0.4)                     # muscle half-transparent
    elif case == "solid":
        classes = ClassTable.from_classes(vol.classes, mode="solid").updated(3, opacity=0.7)
    return Scene(vol, preset("CT-Soft-Tissue" if case == "solid" else "CT-Bone"), classes)


@pytest.mark.parametrize("case", ["labels", "unlabelled", "class-colours-hidden", "solid", "anisotropic"])
def test_torch_inputs_and_agp_equal_the_numpy_reference(case):
    scene = _phantom_scene(case)
    for spacing in (None, 6.0):
        x, labels, ref = _reference(scene, spacing)
        inp = build_inputs(scene, spacing)
        np.testing.assert_allclose(inp.tensor.numpy(), x, atol=1e-5, rtol=0)
        assert (inp.labels is None) == (labels is None)
        if labels is not None:
            np.testing.assert_array_equal(inp.labels.numpy(), labels)
        base = base_for(inp, RenderFMConfig(spacing_mm=6.0))
        _assert_same_splats(base.splats, ref.splats)
        assert torch.equal(base.index, ref.index)
        assert len(base.splats) > 50
        if case == "class-colours-hidden":
            assert not set(range(1, 8)) & set(base.splats.labels.tolist())      # the skeleton is hidden


def test_predict_equals_the_network_on_the_numpy_reference():
    """``predict`` (torch input stage) gives the splats of the same network on the reference input."""
    torch.manual_seed(4)
    model = RenderFM(RenderFMConfig(features=(4, 8, 16), spacing_mm=6.0)).eval()
    for head in model.unet.heads.values():
        torch.nn.init.normal_(head.weight, std=0.3)
    scene = _phantom_scene("anisotropic")
    pred = predict(model, scene, prune=0.0)
    x, _, ref = _reference(scene, 6.0)
    with torch.no_grad():
        raw = model(torch.as_tensor(x, dtype=torch.float32)[None])[0]
    _assert_same_splats(pred.splats, decode(raw, ref))
    assert {"input", "network", "decode", "transfer", "prepare_s"} <= set(pred.timings)


@pytest.mark.gpu
def test_cuda_input_stage_and_agp_equal_the_cpu():
    scene = _phantom_scene("anisotropic")
    cpu, gpu = build_inputs(scene, 6.0), build_inputs(scene, 6.0, device="cuda")
    torch.testing.assert_close(gpu.tensor.cpu(), cpu.tensor, atol=1e-5, rtol=1e-5)
    assert torch.equal(gpu.labels.cpu(), cpu.labels)
    config = RenderFMConfig(spacing_mm=6.0)
    _assert_same_splats(base_for(gpu, config).splats.to("cpu"), base_for(cpu, config).splats)


def test_patched_pass_equals_the_whole_pass():
    torch.manual_seed(0)
    model = RenderFM(RenderFMConfig(features=(4, 8), spacing_mm=1.0)).eval()
    for head in model.unet.heads.values():       # a non-trivial head (the shipped one is trained)
        torch.nn.init.normal_(head.weight, std=0.3)
    x = torch.rand(1, 6, 45, 31, 27)
    with torch.no_grad():
        whole = model(x)
        patched = model.forward_patched(x, max_voxels=40 ** 3)
    assert patched.shape == whole.shape == (1, 37, 22, 15, 13)
    torch.testing.assert_close(patched, whole, atol=2e-5, rtol=1e-4)


def test_checkpoint_round_trip_and_bad_files(tmp_path, scene):
    torch.manual_seed(1)
    model = RenderFM(SMALL)
    for head in model.unet.heads.values():
        torch.nn.init.normal_(head.weight, std=0.1)
    path = save_model(tmp_path / "m.pt", model, info={"note": "test"})
    loaded = load_model(path)
    a, b = predict(model, scene).splats, predict(loaded, scene).splats
    torch.testing.assert_close(a.means, b.means)
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match="bad.pt"):
        load_model(tmp_path / "bad.pt")
    torch.save({"format": "other", "code": InputError("pickled")}, tmp_path / "code.pt")   # not weights: refused,
    with pytest.raises(InputError, match="not a readable") as err:                         # and no hint to unpickle
        load_model(tmp_path / "code.pt")
    assert "weights_only" not in str(err.value) and len(str(err.value)) < 300
    torch.save({"format": "other"}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="format tag"):
        load_model(tmp_path / "other.pt")


def test_prepare_command(tmp_path, capsys, caplog):
    torch.manual_seed(2)
    ckpt = save_model(tmp_path / "m.pt", RenderFM(RenderFMConfig(features=(4, 8), spacing_mm=10.0)))
    out, report = tmp_path / "s.npz", tmp_path / "r.json"
    assert main(["prepare", "sample:ct_phantom", "--checkpoint", str(ckpt), "--preset", "CT-Bone", "--device", "cpu",
                 "--hide", "skeleton", "--out", str(out), "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["n_splats"] > 100 and r["prepare_s"] > 0 and r["hidden_classes"]
    from rfmweb.splats.model import Splats6D
    splats = Splats6D.load(out)
    assert len(splats) == r["n_splats"] and not set(splats.labels.tolist()) & set(r["hidden_classes"])
    np.testing.assert_allclose(splats.box, samples.load("ct_phantom").bounds)  # frames as the volume alone
    assert main(["prepare", "sample:ct_phantom", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(out)]) == 2
    assert "none.pt" in capsys.readouterr().err
    assert main(["prepare", "sample:ct_phantom", "--checkpoint", str(ckpt), "--out", str(tmp_path / "s.txt")]) == 2
    # a volume the transfer function hides entirely (all air): the error names its file
    import nibabel as nib
    nib.save(nib.Nifti1Image(np.full((12, 12, 12), -1000, np.int16), np.eye(4)), str(tmp_path / "air.nii.gz"))
    capsys.readouterr()
    assert main(["prepare", str(tmp_path / "air.nii.gz"), "--checkpoint", str(ckpt), "--device", "cpu",
                 "--out", str(tmp_path / "air.npz")]) == 2
    err = capsys.readouterr().err
    assert f"{tmp_path / 'air.nii.gz'}: Render-FM found no visible voxel" in err, err
    assert r["unlabelled"] < 0.5
    # most of what the preset shows unlabelled: said, as the viewer says it (it was silent: a blank picture)
    hu = np.full((48, 48, 48), -1000, np.int16)
    hu[4:44, 4:44, 4:44] = 60
    labels = np.zeros(hu.shape, np.uint8)
    labels[16:32, 16:32, 16:32] = 1
    nib.save(nib.Nifti1Image(hu, np.eye(4) * [2, 2, 2, 1]), str(tmp_path / "soft.nii.gz"))
    nib.save(nib.Nifti1Image(labels, np.eye(4) * [2, 2, 2, 1]), str(tmp_path / "soft_labels.nii.gz"))
    with caplog.at_level(logging.WARNING, logger="rfmweb.commands.prepare"):
        assert main(["prepare", str(tmp_path / "soft.nii.gz"), "--labels", str(tmp_path / "soft_labels.nii.gz"),
                     "--checkpoint", str(ckpt), "--preset", "CT-Soft-Tissue", "--device", "cpu",
                     "--out", str(tmp_path / "soft.npz"), "--report", str(report)]) == 0
    assert json.loads(report.read_text())["unlabelled"] > 0.8
    assert re.search(r"\d+% of what this preset shows is unlabelled \(label 0\)", caplog.text), caplog.text


def test_label_perturbations():
    from rfmweb.renderfm.evaluate import perturb

    lab = np.zeros((12, 10, 8), np.int64)
    lab[3:9, 2:8, 2:6] = 1
    lab[5:7, 4:6, 3:5] = 2
    eroded, dilated = perturb(lab, "eroded"), perturb(lab, "dilated")
    assert (eroded > 0).sum() < (lab > 0).sum() < (dilated > 0).sum()
    assert ((eroded > 0) <= (lab > 0)).all() and ((lab > 0) <= (dilated > 0)).all()
    shifted = perturb(lab, "shifted")
    np.testing.assert_array_equal(shifted[2:], lab[:-2])
    dropped = perturb(lab, "class-dropped")
    assert 1 not in dropped and (dropped == 2).sum() == (lab == 2).sum()
    with pytest.raises(InputError, match="perturbation"):
        perturb(lab, "blurred")


def test_random_crop_keeps_world_positions():
    from rfmweb.renderfm.anatomy import random_anatomy
    from rfmweb.renderfm.data import random_crop

    vol = random_anatomy(3, "head", spacing_mm=4.0)
    crop = random_crop(vol, 40.0, np.random.default_rng(0))
    assert crop.shape == (10, 10, 10) and (crop.labels > 0).any()
    lo = np.linalg.solve(vol.affine[:3, :3], crop.affine[:3, 3] - vol.affine[:3, 3]).round().astype(int)
    np.testing.assert_array_equal(crop.data, vol.data[:, lo[0]:lo[0] + 10, lo[1]:lo[1] + 10, lo[2]:lo[2] + 10])


def test_evaluate_renderfm_writes_the_table(tmp_path):
    torch.manual_seed(3)
    ckpt = save_model(tmp_path / "m.pt", RenderFM(RenderFMConfig(features=(4, 8), spacing_mm=6.0)))
    out = tmp_path / "eval"
    args = ["evaluate-renderfm", "--out", str(out), "--checkpoint", str(ckpt), "--device", "cpu", "--n-views", "4",
            "--holdout", "2", "--size", "32", "--fit-iters", "2", "--finetune-iters", "2", "--phantoms", "1",
            "--head-ct", ""]
    assert main(args) == 0
    import csv

    rows = list(csv.DictReader((out / "table.csv").open()))
    assert {r["method"] for r in rows} == {"6dgs-random", "6dgs-agp", "renderfm", "renderfm+ft"}
    assert {r["case"] for r in rows} == {"phantom-head-0", "phantom-head-0-unseen-tf"}
    assert all(0 < float(r["ssim"]) <= 1 and float(r["prepare_s"]) > 0 for r in rows)
    table = (out / "table.md").read_text()
    assert "faster than the per-scan fit" in table
    before = (out / "table.csv").read_text()
    assert main(args) == 0                                # a rerun skips what is done
    assert (out / "table.csv").read_text() == before
    # bad options are refused before any work (nothing is written), an unknown case by name
    for bad, why in ((["--size", "-1"], "--size"), (["--fit-iters", "-5"], "--fit-iters")):
        assert main([*args[:2], str(tmp_path / "bad"), *args[3:], *bad]) == 2
        assert not (tmp_path / "bad").exists(), why
    assert main([*args, "--only", "no-such-case"]) == 2
    assert (out / "table.csv").read_text() == before
