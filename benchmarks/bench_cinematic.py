"""Convergence of the cinematic still: SSIM of an N-spp path-traced image to an independent 4N-spp render.

Usage::

    .venv/bin/python benchmarks/bench_cinematic.py [--volume head|phantom] [--preset CT-Bone] [--spp 32 128 256]
        [--size 512] [--threads 2] [--out DIR]

The head CT (or the bundled phantom), a preset (CT-Bone), camera at azimuth 20 / elevation 15, the default
:class:`~rfmweb.render.pathtrace.PathTracer` (hybrid surface/volume scattering). For each N: the
wall and CPU seconds of the displayed image at N spp (``render_display``: traced in >= 8 passes and
denoised by its per-pixel variance, :mod:`rfmweb.render.denoise`; seed 1; kernels compiled
beforehand), and the SSIM (pytorch_msssim, uint8, data range 255) of the raw and of the denoised
image to a raw (never denoised) 4N-spp render with seed 2. Goal (issue #9): SSIM >= 0.97 within
30 s at 512^2 on the 2-core CPU. Also per N: **stability**, the SSIM of the denoised still to the
one 0.5 degrees of azimuth away (goal >= 0.97; wood grain on a steep preset moves with the view),
and **parity**, its SSIM to the converged ray-marcher (``REST``, 16 frames) at the same camera.
``--out`` writes each raw | denoised | 4N | ray-marcher row.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from pytorch_msssim import ssim

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb import samples  # noqa: E402
from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import Scene  # noqa: E402
from rfmweb.render.registry import make_renderer  # noqa: E402
from rfmweb.render.pathtrace import PathTracer  # noqa: E402
from rfmweb.render.scene import REST, to_uint8  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", choices=("head", "phantom"), default="head")
    parser.add_argument("--preset", default="CT-Bone")
    parser.add_argument("--spp", type=int, nargs="+", default=[32, 128, 256])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--out", type=Path, help="write each N | 4N pair as a PNG here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = samples.load("ct_phantom") if args.volume == "phantom" else \
        load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    scene = Scene(vol, preset(args.preset))
    cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=args.size, height=args.size, margin=0.8)
    tracer = PathTracer()
    t0 = time.perf_counter()
    tracer.render_linear(scene, cam.resized(32, 32), 1)          # build the medium, compile the kernels
    setup = time.perf_counter() - t0
    marcher = make_renderer("compiled" if "compiled" in _renderers() else "raymarch")
    *_, (rest, _) = marcher.accumulate(scene, cam, 16, 1, quality=REST)
    rest = to_uint8(rest)
    print(f"{args.volume} {vol.shape}, {args.preset}, {args.size}^2, {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}; medium built and kernels compiled in {setup:.1f} s\n")
    print("| spp | wall s (denoised, shown) | CPU s | SSIM raw to 4x spp | SSIM denoised to 4x spp | stability 0.5 deg "
          "| parity with the ray-marcher |")
    print("|---|---|---|---|---|---|---|")
    for spp in args.spp:
        tracer.seed, tracer.denoise = 1, True
        t0, c0 = time.perf_counter(), time.process_time()
        shown = to_uint8(tracer.render_display(scene, cam, spp))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        tracer.denoise = False
        raw = to_uint8(tracer.render_display(scene, cam, spp))        # seed 1 again, not filtered
        tracer.seed = 2
        reference = to_uint8(tracer.render_display(scene, cam, 4 * spp))
        tracer.seed, tracer.denoise = 1, True
        turned = to_uint8(tracer.render_display(scene, cam.orbited(0.5, 0.0), spp))
        print(f"| {spp} | {wall:.1f} | {cpu:.1f} | {_ssim(raw, reference):.3f} | {_ssim(shown, reference):.3f} "
              f"| {_ssim(shown, turned):.3f} | {_ssim(shown, rest):.3f} |", flush=True)
        if args.out:
            from PIL import Image
            args.out.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.concatenate([raw, shown, reference, rest], axis=1)).save(
                args.out / f"cinematic_{args.volume}_{args.preset}_{spp}.png")


def _renderers() -> list[str]:
    from rfmweb.render.registry import renderer_names
    return renderer_names()


def _ssim(a: np.ndarray, b: np.ndarray) -> float:
    ta, tb = (torch.from_numpy(x).permute(2, 0, 1)[None].float() for x in (a, b))
    return float(ssim(ta, tb, data_range=255.0))


if __name__ == "__main__":
    main()
