"""Shared fixtures: small real volumes, the head CT, artifact folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
ARTIFACTS = Path(__file__).resolve().parent / "_artifacts"

# Tests share 2 cores with a browser and a server: one torch thread keeps them responsive.
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Folder for PNGs and screenshots the tests write (look at them)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def head_ct():
    """The real head CT (../shared/data/head_ct), with its soft-tissue/bone labels."""
    if not (HEAD_CT / "ct.nii.gz").exists():
        pytest.skip(f"head CT not found at {HEAD_CT}")
    from rfmweb.io import load_volume
    return load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")


@pytest.fixture(scope="session")
def small_ct(head_ct):
    """The head CT downsampled 4x (64 x 64 x 27): real anatomy at test speed."""
    from rfmweb.volume import Volume
    data = head_ct.data[:, ::4, ::4, ::4]
    affine = head_ct.affine.copy()
    affine[:3, :3] = affine[:3, :3] * 4
    return Volume(data, affine, modality="CT", labels=head_ct.labels[::4, ::4, ::4], classes=head_ct.classes,
                  name="head_ct_small")


@pytest.fixture(params=["fp32", "bf16"])
def forced_precision(request, monkeypatch):
    """Run a test once with each precision the neural models' ``"auto"`` can pick (RFMWEB_PRECISION):
    a CPU without AVX512-BF16 or AMX picks fp32, one with them bf16; both must behave the same."""
    from rfmweb import backend

    monkeypatch.setenv("RFMWEB_PRECISION", request.param)
    backend._auto_precision.cache_clear()
    yield request.param
    backend._auto_precision.cache_clear()


def pytest_collection_modifyitems(config, items):
    """GPU tests skip cleanly without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def pixels_differ(a: np.ndarray, b: np.ndarray, threshold: float = 2.0) -> bool:
    """Mean absolute difference of two uint8 images above ``threshold`` grey levels."""
    if a.shape != b.shape:
        return True
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).mean()) > threshold



def view_likeness(a: np.ndarray, b: np.ndarray, *, level: int = 20, margin: int = 8, blur: float = 0.02) -> float:
    """How alike two ``[H, W, 3]`` uint8 pictures of one scene are at a coarse scale, in [-1, 1]:
    the correlation of their luminance blurred by a Gaussian of ``blur`` x the box side (px), over the
    union box of the pixels brighter than ``level`` in either (plus ``margin`` px).

    For pictures whose detail differs by design (4 mm splats vs a ray-marcher's voxels): SSIM over a
    whole frame is dominated by the black background (a black image scores ~0.65 against a CT
    rendering) and SSIM of the lit box by the ray-marcher's fine texture; this compares the layout.
    """
    from PIL import Image, ImageFilter

    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    lit = (a.max(2) > level) | (b.max(2) > level)
    if not lit.any():
        return 1.0
    rows, cols = np.flatnonzero(lit.any(1)), np.flatnonzero(lit.any(0))
    y0, y1 = max(0, rows[0] - margin), min(a.shape[0], rows[-1] + 1 + margin)
    x0, x1 = max(0, cols[0] - margin), min(a.shape[1], cols[-1] + 1 + margin)
    radius = float(blur * max(y1 - y0, x1 - x0))
    x, y = (np.asarray(Image.fromarray(np.ascontiguousarray(i[y0:y1, x0:x1])).convert("L")
                       .filter(ImageFilter.GaussianBlur(radius)), dtype=np.float64).ravel() for i in (a, b))
    if x.std() == 0 or y.std() == 0:
        return 0.0
    return float(np.corrcoef(x, y)[0, 1])
