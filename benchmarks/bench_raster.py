"""Frame times of the splat rasterisers vs splat count.

Usage::

    .venv/bin/python benchmarks/bench_raster.py [--counts 10000 100000 300000 1000000] [--sizes 256 1024]
        [--repeats 5] [--torch-threads 1] [--torch-budget 120]

Random 3D Gaussians fill a head-sized box (200 mm; standard deviations log-normal around
0.3 x the mean spacing, so the picture looks alike at every count), random colours and opacities
(0.05-0.95), seen by an :class:`~rfmweb.camera.OrbitCamera` framing the box. Prints a Markdown table
of ms per frame (median over ``--repeats`` views orbiting the box, after one warm-up frame) for the
torch twin (``--torch-threads``), the numba kernel (``cpu``) with 1 thread and with every core, and
gsplat (when CUDA is present), then the numba compile time and the cost of slicing 6D splats
(``slice_6d``) at each count. The CPU backends take their thread count from
``torch.set_num_threads`` (as in the library). On a shared machine, note the load: a parallel
region whose second thread waits for a busy core can run slower than one thread.
Target (issue #3): numba <= 100 ms for 300k splats at 256^2 on a 2-core CPU.
The torch twin skips a size once one of its frames took longer than ``--torch-budget`` seconds.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.splats import Splats6D, camera_tensors, conditional_parts, rasterize, slice_6d  # noqa: E402
from rfmweb.backend import gsplat_available, numba_available  # noqa: E402

BOX = 200.0


def random_scene(n: int, seed: int = 0):
    """means [N, 3], covars [N, 3, 3], opacities [N], colors [N, 3] in a 200 mm box at the origin."""
    g = torch.Generator().manual_seed(seed)
    means = (torch.rand(n, 3, generator=g) - 0.5) * BOX
    rot = torch.linalg.qr(torch.randn(n, 3, 3, generator=g))[0]
    scales = torch.exp(torch.randn(n, 3, generator=g) * 0.4) * (0.3 * BOX / n ** (1 / 3))
    covars = rot @ torch.diag_embed(scales ** 2) @ rot.transpose(-1, -2)
    return means, covars, torch.rand(n, generator=g) * 0.9 + 0.05, torch.rand(n, 3, generator=g)


def time_backend(backend: str, scene, size: int, repeats: int, device, threads: int) -> float:
    """Median ms per frame over ``repeats`` orbiting views, after one warm-up frame."""
    torch.set_num_threads(threads)
    cam = OrbitCamera.framing(np.array([[-BOX / 2] * 3, [BOX / 2] * 3]), azimuth=20, elevation=15,
                              width=size, height=size)
    scene = [t.to(device) for t in scene]
    times = []
    for i in range(repeats + 1):
        vm, ks, w, h = camera_tensors(cam.orbited(360.0 * i / (repeats + 1), 0), device=device)
        t0 = time.perf_counter()
        with torch.no_grad():
            rasterize(*scene, vm, ks, w, h, backend=backend)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def time_slicing(n: int, repeats: int) -> tuple[float, float]:
    """(ms for conditional_parts, ms for slice_6d with cached parts) of n random 6D splats, one view."""
    g = torch.Generator().manual_seed(1)
    s = Splats6D(torch.randn(n, 3, generator=g) * 50, torch.zeros(n, 3), torch.randn(n, 6, generator=g) * 0.2,
                 torch.randn(n, 15, generator=g), torch.randn(n, generator=g), torch.randn(n, 4, 3, generator=g))
    centre = torch.tensor([[0.0, 700.0, 100.0]])
    with torch.no_grad():
        t0 = time.perf_counter()
        parts = conditional_parts(s)
        t_parts = (time.perf_counter() - t0) * 1e3
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            slice_6d(s, centre, parts=parts)
            times.append((time.perf_counter() - t0) * 1e3)
    return t_parts, statistics.median(times)


def numba_stages(n: int, size: int, repeats: int) -> dict[str, float]:
    """CPU-time ms of each numba stage, one thread (min over repeats: the least disturbed by other load)."""
    import numba

    from rfmweb.splats import _numba_impl as ni
    numba.set_num_threads(1)
    means, covars, opac, colors = [t.numpy() for t in random_scene(n)]
    cam = OrbitCamera.framing(np.array([[-BOX / 2] * 3, [BOX / 2] * 3]), azimuth=20, elevation=15, width=size,
                              height=size)
    vm, ks, w, h = camera_tensors(cam)
    vm, ks, f = vm[0].numpy(), ks[0].numpy(), np.float32
    tx, ty = -(-w // 16), -(-h // 16)
    best: dict[str, float] = {}
    for _ in range(repeats):
        t, clock = {}, time.process_time
        t0 = clock()
        rec, keys, depths = np.empty((n, 11), f), np.empty(n, np.uint64), np.empty(n, f)
        ni._project(means, covars, opac, colors, vm, ks, w, h, f(0.3), f(0.01), f(1e10), rec, keys, depths)
        t["project"], t0 = clock() - t0, clock()
        keys.sort()
        nv = int(np.searchsorted(keys, ni._CULLED))
        t["sort"], t0 = clock() - t0, clock()
        srec, boxes = ni._gather(keys, nv, rec, tx, ty)
        t["gather"], t0 = clock() - t0, clock()
        offsets, trec = ni._bin_tiles(srec, boxes, tx, ty, 1)
        t["bin"], t0 = clock() - t0, clock()
        ni._composite(trec, offsets, w, h, tx, np.zeros(3, f), np.empty((h, w, 3), f), np.empty((h, w), f))
        t["composite"] = clock() - t0
        t["total"] = sum(t.values())
        best = {k: min(v * 1e3, best.get(k, float("inf"))) for k, v in t.items()}
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--counts", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--torch-threads", type=int, default=1, help="threads for the torch twin (default 1)")
    ap.add_argument("--torch-budget", type=float, default=120.0, help="seconds; slower torch sizes are skipped")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    backends = [("torch", torch.device("cpu"), args.torch_threads)]
    compile_s = None
    if numba_available():
        import numba

        from rfmweb.splats._numba_impl import warm_up
        compile_s = warm_up()
        backends += [("cpu", torch.device("cpu"), t) for t in sorted({1, cores})]
    if gsplat_available():
        backends.append(("gsplat", torch.device("cuda"), 1))

    print(f"# splat rasteriser, ms/frame (median of {args.repeats} views after 1 warm-up)\n")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{platform.processor() or platform.machine()}, {cores} cores (load average {load:.1f} at start), "
          f"torch {torch.__version__}" + (f", numba {numba.__version__} (layer {numba.threading_layer()})"
                                          if compile_s else "")
          + (f", {torch.cuda.get_device_name()}" if gsplat_available() else "") + "\n")
    name = {"torch": "torch twin", "cpu": "numba", "gsplat": "gsplat"}
    cols = [f"{name[b]} ({t} thr) {s}^2" if b != "gsplat" else f"gsplat {s}^2"
            for s in args.sizes for b, _, t in backends]
    print("| splats | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    too_slow = set()
    for n in args.counts:
        scene = random_scene(n)
        cells = []
        for size in args.sizes:
            for backend, device, threads in backends:
                if (backend, size) in too_slow:
                    cells.append("skipped")
                    continue
                reps = args.repeats if backend != "torch" or n * size * size < 1e11 else 1
                ms = time_backend(backend, scene, size, reps, device, threads)
                if backend == "torch" and ms > args.torch_budget * 1e3:
                    too_slow.add((backend, size))
                cells.append(f"{ms:.1f}")
        print(f"| {n:,} | " + " | ".join(cells) + " |", flush=True)
    print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    if compile_s is not None:
        print(f"numba first call (compile, or load from the on-disk cache): {compile_s:.2f} s")
        n = 300_000 if 300_000 in args.counts else args.counts[0]
        stages = numba_stages(n, args.sizes[0], args.repeats)
        print(f"numba stages, {n:,} splats at {args.sizes[0]}^2, 1 thread, CPU-time ms (min of {args.repeats}): "
              + ", ".join(f"{k} {v:.1f}" for k, v in stages.items()))
    torch.set_num_threads(args.torch_threads)
    print(f"slicing 6D -> 3D (torch, CPU, {args.torch_threads} thr): " + ", ".join(
        f"{n:,}: parts {p:.0f} ms + slice {s:.0f} ms" for n in args.counts for p, s in [time_slicing(n, 3)]))


if __name__ == "__main__":
    main()
