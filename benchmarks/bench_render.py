"""Frame times of the renderers on the real head CT, and the browser round trip of the app.

Usage::

    .venv/bin/python benchmarks/bench_render.py [--threads N] [--repeats R] [--no-browser]

Prints a Markdown table: ms per frame (median and 90th percentile over R orbiting views) for the
torch ray-marcher, its compiled CPU twin (numba) and VTK at 256^2 and 512^2, full quality (sample
step 0.5 voxel), one frame at rest (the same, read through the cubic B-spline; not for VTK, which has no such read) and
interactive quality (step 1 voxel, full and half resolution), on the CPU and on CUDA when present; then the
browser round trip (pointer event -> new frame displayed) of ``rfmweb serve`` in Debian's chromium.
Targets (issue #2): interactive preview <= 100 ms at 256^2 on a 2-core CPU; round trip <= 50 ms
plus render time.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.io import load_volume  # noqa: E402
from rfmweb.render import Quality, RaymarchRenderer, Scene  # noqa: E402
from rfmweb.render.compiled import CompiledRaymarchRenderer  # noqa: E402
from rfmweb.render.scene import REST  # noqa: E402
from rfmweb.render.vtk_volume import VtkRenderer  # noqa: E402
from rfmweb.transfer import preset  # noqa: E402

QUALITIES = {"full (step 0.5)": Quality(1.0, 0.5), "at rest (step 0.5, cubic reads)": REST,
             "interactive (step 1)": Quality(1.0, 1.0), "interactive, half res": Quality(0.5, 1.0)}


def time_renderer(renderer, scene: Scene, size: tuple[int, int], quality: Quality,
                  repeats: int) -> tuple[float, float]:
    """(median, p90) ms over ``repeats`` views (``size`` = width, height) orbiting 360/repeats degrees
    apart (after one warm-up)."""
    cam = OrbitCamera.framing(scene.volume.bounds, azimuth=20, elevation=15, width=size[0], height=size[1],
                              margin=0.8)
    renderer.render(scene, cam, quality)
    times = []
    for i in range(repeats):
        c = cam.orbited(360.0 * (i + 1) / (repeats + 1), 0)
        t0 = time.perf_counter()
        renderer.render(scene, c, quality)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return statistics.median(times), times[min(len(times) - 1, int(0.9 * len(times)))]


def time_paired(renderers: list, scene: Scene, size: int, quality: Quality, repeats: int) -> dict[str, float]:
    """Median ms per renderer, the renderers taking turns on each of ``repeats`` orbiting views (after
    one warm-up each): on a machine with other load, both see the same load."""
    cam = OrbitCamera.framing(scene.volume.bounds, azimuth=20, elevation=15, width=size, height=size, margin=0.8)
    for _, _, renderer in renderers:
        renderer.render(scene, cam, quality)
    times: dict[str, list[float]] = {name: [] for name, _, _ in renderers}
    for i in range(repeats):
        c = cam.orbited(360.0 * (i + 1) / (repeats + 1), 0)
        for name, _, renderer in renderers:
            t0 = time.perf_counter()
            renderer.render(scene, c, quality)
            times[name].append((time.perf_counter() - t0) * 1e3)
    return {name: statistics.median(t) for name, t in times.items()}


def browser_roundtrip(repeats: int) -> list[float]:
    """Pointer event -> new frame displayed, ms, in ``rfmweb serve`` on the head CT (the app's default renderer)."""
    sys.path.insert(0, str(REPO / "benchmarks"))
    from app_roundtrip import run_app_roundtrip
    return run_app_roundtrip(str(HEAD_CT / "ct.nii.gz"), n=repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="torch and VTK threads (default: what `rfmweb serve` uses, cores - 1)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--preset", default="CT-Bone")
    parser.add_argument("--renderers", default="raymarch,compiled,vtk", help="comma-separated subset to time")
    parser.add_argument("--sizes", default="256,512",
                        help="comma-separated view sizes: N (N x N) or WxH, e.g. 512,1280x916 (a large browser pane)")
    parser.add_argument("--quality", action="append", choices=list(QUALITIES),
                        help="time only this quality (repeatable; default: all)")
    parser.add_argument("--no-browser", action="store_true")
    parser.add_argument("--paired", action="store_true",
                        help="only 256^2 full quality, the renderers taking turns view by view (same load for all)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    scene = Scene(vol, preset(args.preset))
    print(f"head CT {vol.shape} {tuple(round(s, 3) for s in vol.spacing)} mm, preset {args.preset}; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} thread(s), "
          f"torch {torch.__version__}\n")
    renderers = [("raymarch", "cpu", RaymarchRenderer(device="cpu")), ("compiled", "cpu", CompiledRaymarchRenderer()),
                 ("vtk", "cpu", VtkRenderer(args.threads))]
    renderers = [r for r in renderers if r[0] in args.renderers.split(",")]
    if torch.cuda.is_available():
        renderers.insert(1, ("raymarch", "cuda", RaymarchRenderer(device="cuda")))
    if args.paired:
        medians = time_paired(renderers, scene, 256, QUALITIES["full (step 0.5)"], args.repeats)
        print("256^2, full quality (step 0.5), renderers taking turns per view: " +
              ", ".join(f"{name} median {ms:.0f} ms" for name, ms in medians.items()))
        return
    print("| renderer | device | size | quality | rendered px | median ms | p90 ms |")
    print("|---|---|---|---|---|---|---|")
    sizes = [tuple(int(n) for n in s.split("x")) * (1 if "x" in s else 2) for s in args.sizes.split(",")]
    qualities = {q: QUALITIES[q] for q in (args.quality or QUALITIES)}
    for name, device, renderer in renderers:
        for w, h in sizes:
            for qname, q in qualities.items():
                if q.cubic and name == "vtk":       # VTK reads trilinearly whatever the quality says
                    continue
                med, p90 = time_renderer(renderer, scene, (w, h), q, args.repeats)
                px = f"{round(w * q.scale)}x{round(h * q.scale)}"
                print(f"| {name} | {device} | {w}x{h} | {qname} | {px} | {med:.0f} | {p90:.0f} |", flush=True)
    if not args.no_browser:
        rt = sorted(browser_roundtrip(20))
        if rt:
            print(f"\nbrowser round trip (drag -> new frame displayed, trame app, default renderer): "
                  f"median {statistics.median(rt):.0f} ms, p90 {rt[int(0.9 * len(rt))]:.0f} ms over {len(rt)} drags")


if __name__ == "__main__":
    main()
