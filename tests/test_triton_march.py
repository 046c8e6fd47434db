"""The fused Triton ray-marcher (:mod:`rfmweb.render._triton_march`) against its torch twin,
``RaymarchRenderer.render_tensor``: on the CPU under ``TRITON_INTERPRET=1`` and natively on CUDA.

The interpreter runs each program in numpy at about 20 ms a sample, whatever the lanes, so the
CPU runs use 24 x 24 pixel images in one 32 x 32 tile (one case in several partial tiles) and mostly
a one-voxel step: about 30 s for the file on one core. The cases share one renderer, so each also
checks that the tables the kernel keeps per renderer follow the scene (TF, class table, step).
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera
from rfmweb.render import FULL
from rfmweb.render.dvr import RaymarchRenderer
from rfmweb.render.scene import Quality, Scene
from rfmweb.transfer import ClassTable, TransferFunction, preset

pytest.importorskip("triton")

COARSE = Quality(scale=1.0, step=1.0)
#: case -> (preset, class table ("colours", "solid" or None), quality, frame, background, tile on the CPU)
CASES = {
    "CT-Bone": ("CT-Bone", None, FULL, 0, (0.0, 0.0, 0.0), (32, 32)),                # lit, specular
    "CT-Soft-Tissue": ("CT-Soft-Tissue", None, COARSE, 0, (0.0, 0.0, 0.0), (8, 32)),  # steep; 3 partial tiles
    "class-colours": ("CT-Bone", "colours", COARSE, 0, (0.0, 0.0, 0.0), (32, 32)),
    "solid-classes": ("CT-Bone", "solid", COARSE, 0, (0.0, 0.0, 0.0), (32, 32)),      # label normals
    # jittered frame 2 (rays moved in their pixels too), gradient opacity, a background: the torch
    # marcher's transmittance after early termination shows
    "frame-2": ("CT-Muscle", None, COARSE, 2, (0.2, 0.4, 0.6), (32, 32)),
    # the cubic B-spline read of the view at rest, over class colours (both blends at once)
    "cubic": ("CT-Soft-Tissue", "colours", replace(COARSE, cubic=True), 1, (0.0, 0.0, 0.0), (32, 32)),
}


@pytest.fixture
def interpret(monkeypatch):
    """Triton on the CPU: the interpreter (read when the kernel's module is first imported)."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    return "cuda" if torch.cuda.is_available() else "cpu"


@pytest.fixture(scope="module")
def renderer() -> RaymarchRenderer:
    return RaymarchRenderer(device="cuda" if torch.cuda.is_available() else "cpu")


def camera(volume) -> OrbitCamera:
    return OrbitCamera.framing(volume.bounds, azimuth=30, elevation=15, width=24, height=24, margin=0.8)


@pytest.mark.parametrize("case", list(CASES))
def test_fused_marcher_matches_the_torch_twin(interpret, renderer, small_ct, case):
    from rfmweb.render._triton_march import TILE, march_triton

    name, classes, quality, frame, background, cpu_tile = CASES[case]
    tf = preset(name)
    if case == "frame-2":
        tf = replace(tf, gradient_opacity=((0.0, 0.2), (40.0, 1.0)))       # opacity where the HU change
    table = ClassTable.from_classes(small_ct.classes)
    if classes == "colours":
        table = ClassTable(table.styles, use_class_colors=True)
    elif classes == "solid":
        table = ClassTable.from_classes(small_ct.classes, mode="solid")
    scene = Scene(small_ct, tf, table, background=background)
    cam = camera(small_ct)
    want = renderer.render_tensor(scene, cam, quality, frame=frame)
    got = march_triton(renderer, scene, cam, quality, frame, tile=cpu_tile if interpret == "cpu" else TILE)
    assert got.shape == want.shape == (24, 24, 3) and got.dtype == want.dtype
    assert want.std() > 0.05                                               # a picture, not the background
    err = (got - want).abs().amax(-1)                                      # per pixel
    if interpret == "cpu":
        assert err.max() <= 1e-3, f"{case}: max |triton - torch| = {err.max():.2e}"
    else:
        # Both sides round differently on CUDA (fused multiply-adds, cuBLAS, grid_sample's own): a
        # sample on the edge of a discrete choice (nearest label, early stop) flips in a rare pixel.
        assert (err > 1e-3).float().mean() <= 0.01 and err.median() <= 1e-5, f"{case}: {err.max():.2e}"
    assert os.environ.get("TRITON_INTERPRET") == "1" or interpret == "cuda"


def test_nothing_visible_is_the_background(interpret, renderer, small_ct):
    from rfmweb.render._triton_march import march_triton

    tf = TransferFunction("none", color=[(0, 1, 1, 1)], opacity=[(0, 0.0)])
    scene = Scene(small_ct, tf, background=(0.2, 0.4, 0.6))
    want = renderer.render_tensor(scene, camera(small_ct))
    got = march_triton(renderer, scene, camera(small_ct))
    torch.testing.assert_close(got, want, atol=0, rtol=0)
    torch.testing.assert_close(got[5, 7], torch.tensor([0.2, 0.4, 0.6], device=got.device))


def _shell_volume():
    """A 40^3 grid of 2 mm voxels: air, a bone shell (radius 14-16 voxels), soft tissue inside."""
    from rfmweb.volume import Volume

    grid = np.indices((40, 40, 40), dtype=np.float32) - 19.5
    r = np.sqrt((grid ** 2).sum(0))
    data = np.where(r < 14, 40.0, np.where(r < 16, 1000.0, -1000.0)).astype(np.float32)
    return Volume(data, np.diag([2.0, 2.0, 2.0, 1.0]), modality="CT", name="shell")


def test_transparent_blocks_are_crossed_without_reading_them(interpret):
    """With skipping, voxels deep inside a block the TF leaves transparent are never read: poisoning
    them after the tables were made changes nothing; marching every sample shows the poison."""
    from rfmweb.render._triton_march import _TABLES, march_triton

    renderer = RaymarchRenderer(device=interpret)
    volume = _shell_volume()
    tf = TransferFunction("faint bone", color=[(-1000, 1, 1, 1), (2000, 1, 0.9, 0.8)],
                          opacity=[(-1000, 0.0), (300, 0.0), (900, 0.2), (2000, 0.2)])
    scene = Scene(volume, tf)
    cam = OrbitCamera.framing(volume.bounds, azimuth=30, elevation=15, width=16, height=16, margin=0.8)
    tile = (16, 16) if interpret == "cpu" else (4, 8)
    clean = march_triton(renderer, scene, cam, COARSE, tile=tile)
    torch.testing.assert_close(march_triton(renderer, scene, cam, COARSE, tile=tile, skip=False), clean,
                               atol=1e-6, rtol=0)
    scalar = _TABLES[renderer][False].arrays[0]            # the kernel's volume, tables already made
    scalar[19:22, 19:22, 19:22] = 1000.0                   # inside block (2, 2, 2): cells 16-23
    try:
        skipped = march_triton(renderer, scene, cam, COARSE, tile=tile)
        marched = march_triton(renderer, scene, cam, COARSE, tile=tile, skip=False)
    finally:
        scalar[19:22, 19:22, 19:22] = 40.0
    torch.testing.assert_close(skipped, clean, atol=0, rtol=0)
    assert (marched - clean).abs().max() > 0.02             # the poison, where every sample is read


def test_tables_are_kept_per_reconstruction(interpret):
    """The camera stopping (cubic reads) and moving again (trilinear) reuses both sets of tables; a
    new TF drops them."""
    from rfmweb.render._triton_march import _TABLES, march_triton

    renderer = RaymarchRenderer(device=interpret)
    volume = _shell_volume()
    scene = Scene(volume, preset("CT-Bone"))
    cam = OrbitCamera.framing(volume.bounds, azimuth=30, elevation=15, width=8, height=8, margin=0.8)
    tile = (8, 8) if interpret == "cpu" else (4, 8)
    cubic = replace(COARSE, cubic=True)
    march_triton(renderer, scene, cam, COARSE, tile=tile)
    moving = _TABLES[renderer][False]
    march_triton(renderer, scene, cam, cubic, tile=tile)
    resting = _TABLES[renderer][True]
    assert resting.arrays[0] is not moving.arrays[0]        # the spline's coefficients, not the voxels
    march_triton(renderer, scene, cam, COARSE, tile=tile)
    assert _TABLES[renderer] == {False: moving, True: resting}
    march_triton(renderer, Scene(volume, preset("CT-Muscle")), cam, COARSE, tile=tile)
    assert set(_TABLES[renderer]) == {False} and _TABLES[renderer][False] is not moving


_COMPILE = """
import sys

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from rfmweb.render import _triton_march as tm

fn = tm._march_kernel
pointers = {"cum_ptr": "*fp64", "key_ptr": "*fp64", "labels_ptr": "*i64", "block_lo_ptr": "*i32",
            "block_hi_ptr": "*i32"}
ints = {"height", "width", "nx", "ny", "nz", "n_go", "nbx", "nby", "nbz"}
flags = dict(TILE_H=tm.TILE[0], TILE_W=tm.TILE[1], PIECES=4, LUT_N=4096, SEGMENT=tm.SEGMENT, LABELS=int(sys.argv[1]),
             GRAD=True, GRAD_OPACITY=True, SHADE=True, NORMALS=sys.argv[1] == "2", SPECULAR=True, EXACT_OPACITY=True,
             SKIP=True, BLOCK=8, CUBIC=sys.argv[1] == "1")
signature = {name: "constexpr" if name in flags else pointers.get(name, "*fp32") if name.endswith("_ptr")
             else "i32" if name in ints else "fp32" for name in fn.arg_names}
kernel = triton.compile(ASTSource(fn, signature, flags), target=GPUTarget("cuda", 90, 32), options={"num_warps": 1})
assert ".target sm_90" in kernel.asm["ptx"] and len(kernel.asm["cubin"]) > 10_000
print("compiled")
"""


@pytest.mark.parametrize("labels", [1, 2], ids=["blended-class-table-cubic", "solid-labels"])
def test_kernel_compiles_for_the_h200_without_a_gpu(labels):
    """The interpreter forgives what the compiler refuses (a loop-carried value changing type): compile
    the kernel with every feature on, as on the H200 (sm_90), down to its cubin, on any machine (in a
    fresh process: under ``TRITON_INTERPRET=1`` the kernel is an interpreted function)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, "-c", _COMPILE, str(labels)], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0 and "compiled" in done.stdout, done.stderr[-3000:]
