"""A thin-slice CT's 3-D view: memory and time of its first frames, drawn coarsened to
``MAX_3D_VOXELS`` (the default) and with every voxel (the anchor, as before), in the same run.

Usage::

    .venv/bin/python benchmarks/bench_large.py [--size 512] [--shape 512,512,600]

The scan is the head CT resampled to 0.5 x 0.5 x 0.6 mm (linear) and padded with air to ``--shape``:
a thin-slice CT's size with real anatomy. Each row runs in its own process: the resident memory it
adds (the volume loaded, then a session's first full-quality 3-D frame and a frame at rest with the
compiled ray-marcher, CT-Bone) and the seconds of those frames.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct" / "ct.nii.gz"
sys.path.insert(0, str(REPO))


def thin_slice_ct(shape: tuple[int, int, int]):
    """The head CT on a 0.5 x 0.5 x 0.6 mm grid of ``shape`` (air around it)."""
    import numpy as np
    from scipy import ndimage

    from rfmweb.io import load_volume
    from rfmweb.volume import Volume

    head = load_volume(HEAD_CT)
    zoom = [s / t for s, t in zip(head.spacing, (0.5, 0.5, 0.6))]
    fine = ndimage.zoom(head.data[0], zoom, order=1)
    out = np.full(shape, -1024.0, np.float32)
    n = [min(a, b) for a, b in zip(shape, fine.shape)]
    o = [(a - b) // 2 for a, b in zip(shape, n)]
    out[o[0]:o[0] + n[0], o[1]:o[1] + n[1], o[2]:o[2] + n[2]] = fine[:n[0], :n[1], :n[2]]
    return Volume(out, np.diag([0.5, 0.5, 0.6, 1.0]), modality="CT", name="thin-slice head CT")


def gib() -> float:
    """This process's peak resident memory, GiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure(budget: int | None, shape, size: int, out) -> None:
    from rfmweb.render.scene import REST, Scene
    from rfmweb.session import RenderSession
    from rfmweb.session import session as session_module

    if budget is not None:
        session_module.MAX_3D_VOXELS = budget
    volume = thin_slice_ct(shape)
    loaded = gib()
    session = RenderSession(volume, renderer="compiled", preset="CT-Bone", width=size, height=size)
    # the kernels load (or compile) on a small copy, outside the times
    session.renderer().render(Scene(volume.coarsened(64**3), session.tf), session.camera.resized(16, 16))
    t0 = time.perf_counter()
    session.render()
    t1 = time.perf_counter()
    session.render(REST)
    t2 = time.perf_counter()
    drawn = session.scene_3d(session.snapshot().scene).volume
    out.put(("x".join(map(str, drawn.shape)), "x".join(f"{s:g}" for s in drawn.spacing), loaded, gib() - loaded,
             t1 - t0, t2 - t1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--shape", default="512,512,600")
    args = parser.parse_args()
    shape = tuple(int(s) for s in args.shape.split(","))
    print(f"{platform.processor() or platform.machine()}; head CT on {'x'.join(map(str, shape))} voxels of "
          f"0.5 x 0.5 x 0.6 mm, {args.size}^2, compiled ray-marcher, CT-Bone\n")
    print("| 3-D view draws | voxels of (mm) | GiB with the scan loaded | GiB more, after the frames | "
          "first full frame | frame at rest |")
    print("|---|---|---|---|---|---|")
    ctx = multiprocessing.get_context("spawn")
    for name, budget in (("coarsened (default)", None), ("every voxel (anchor)", 1 << 40)):
        out = ctx.Queue()
        proc = ctx.Process(target=measure, args=(budget, shape, args.size, out))
        proc.start()
        shape_s, spacing, loaded, more, full, rest = out.get()
        proc.join()
        print(f"| {name}: {shape_s} | {spacing} | {loaded:.2f} | {more:.2f} | {full:.1f} s | {rest:.1f} s |",
              flush=True)


if __name__ == "__main__":
    main()
