"""Our Triton kernels against their torch twins, on the CPU under ``TRITON_INTERPRET=1`` (small
sizes: the interpreter runs each program in numpy), and on CUDA when there is one."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from rfmweb.camera import OrbitCamera
from rfmweb.splats.slicing import conditional_parts, slice_6d

from .test_splats import random_splats

pytest.importorskip("triton")


@pytest.fixture
def interpret(monkeypatch):
    """Triton on the CPU: the interpreter (read when a kernel is launched)."""
    if not torch.cuda.is_available():
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    return "cuda" if torch.cuda.is_available() else "cpu"


def test_fused_slicing_matches_the_torch_twin(interpret):
    from rfmweb.splats._triton_slicing import BLOCK, slice_6d_fused

    splats = random_splats(BLOCK + 37, seed=3, dtype=torch.float32).to(interpret)   # two blocks, one partial
    parts = conditional_parts(splats)
    cams = [OrbitCamera((0.0, 0.0, 0.0), az, el, 300.0, 30.0, 64, 64) for az, el in ((0, 10), (130, -40), (250, 70))]
    centres = torch.as_tensor(np.stack([c.position for c in cams]), dtype=torch.float32, device=interpret)
    want = slice_6d(splats, cams, parts=parts)
    got = slice_6d_fused(splats.means, splats.dir_means, splats.opacity_logits, splats.sh, parts, centres, 0.35)
    for name in ("means", "opacities", "colors", "dirs"):
        torch.testing.assert_close(getattr(got, name), getattr(want, name).detach(), atol=2e-5, rtol=1e-5,
                                   msg=lambda m, name=name: f"{name}: {m}")
    torch.testing.assert_close(got.covars, want.covars.detach())
    assert os.environ.get("TRITON_INTERPRET") == "1" or interpret == "cuda"


@pytest.mark.gpu
def test_splat_renderer_on_cuda_matches_the_cpu(small_ct):
    """Splats loaded on the CPU render on CUDA (moved once; Triton slicing, gsplat) like on the CPU."""
    from rfmweb.render.scene import Scene
    from rfmweb.render.splat_renderer import SplatRenderer
    from rfmweb.transfer import preset

    splats = random_splats(2000, seed=1, dtype=torch.float32)
    cam = OrbitCamera((0.0, 0.0, 0.0), 30.0, 20.0, 300.0, 30.0, 64, 64)
    scene = Scene(None, preset("CT-Bone"), splats=splats)
    gpu = SplatRenderer("cuda")
    on_gpu = gpu.render(scene, cam)
    assert gpu._splats.device.type == "cuda" and splats.device.type == "cpu"
    on_cpu = SplatRenderer("cpu").render(scene, cam)
    assert np.abs(on_gpu.astype(int) - on_cpu.astype(int)).max() <= 2
