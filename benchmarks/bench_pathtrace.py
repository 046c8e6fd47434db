"""Seconds per path-traced view of the real head CT (the ground truth of ``rfmweb views``).

Usage::

    .venv/bin/python benchmarks/bench_pathtrace.py [--size 256] [--spp 32] [--views 3]
        [--integrators majorant volpath] [--preset CT-Bone] [--variant llvm_ad_rgb]

For each integrator (``majorant``: rfmweb's local-majorant tracker, the default; ``volpath``:
Mitsuba's own, one global majorant) prints a Markdown row: the Mitsuba variant chosen here, the
time to classify the medium lattice (once per volume / TF / class table), the first view (kernel
tracing and compilation included: cached on disk by Dr.Jit afterwards), and the mean and worst
seconds per view over ``--views`` views orbiting the head at 30 degrees elevation. Needs
``pip install rfmweb[photoreal]`` and, on a CPU, LLVM >= 16 (``apt-get install libllvm19``).
The Render-FM paper's path-traced ground truth took about 18 s per view (on a GPU).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import Scene  # noqa: E402
from rfmweb.render.pathtrace import PathTracer  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402


def bench(volume, integrator: str, size: int, spp: int, views: int, tf_name: str, variant: str | None) -> dict:
    scene = Scene(volume, preset(tf_name))
    pt = PathTracer(spp=spp, integrator=integrator, variant=variant)
    t0 = time.perf_counter()
    pt.medium(scene)
    build = time.perf_counter() - t0
    cams = [OrbitCamera.framing(volume.bounds, azimuth=360.0 * i / (views + 1), elevation=30.0, width=size,
                                height=size, margin=0.9) for i in range(views + 1)]
    times = []
    for cam in cams:
        t0 = time.perf_counter()
        pt.render(scene, cam)
        times.append(time.perf_counter() - t0)
    return {"variant": pt.variant, "build": build, "first": times[0], "mean": statistics.mean(times[1:]),
            "max": max(times[1:])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--spp", type=int, default=32)
    parser.add_argument("--views", type=int, default=3, help="timed views after the first (which compiles)")
    parser.add_argument("--integrators", nargs="+", default=["majorant"], choices=["majorant", "volpath"])
    parser.add_argument("--preset", default="CT-Bone")
    parser.add_argument("--variant", help="force a Mitsuba variant (default: the fastest usable)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr, force=True)
    if not (HEAD_CT / "ct.nii.gz").exists():
        sys.exit(f"head CT not found at {HEAD_CT}")
    vol = load_volume(HEAD_CT / "ct.nii.gz", HEAD_CT / "labels.nii.gz")
    print(f"\nhead CT {vol.shape} {tuple(round(s, 3) for s in vol.spacing)} mm, preset {args.preset}, "
          f"{args.size}^2 x {args.spp} spp; {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} CPUs\n")
    print("| integrator | Mitsuba variant | medium build s | first view s (compiles) | s / view (mean) | "
          "s / view (max) |")
    print("|---|---|---|---|---|---|")
    for name in args.integrators:
        r = bench(vol, name, args.size, args.spp, args.views, args.preset, args.variant)
        print(f"| {name} | {r['variant']} | {r['build']:.1f} | {r['first']:.1f} | {r['mean']:.1f} | "
              f"{r['max']:.1f} |", flush=True)


if __name__ == "__main__":
    main()
