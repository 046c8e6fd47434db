"""The per-scan 6DGS baseline on the real head CT: ``rfmweb fit-6dgs`` with random and AGP starts.

Usage::

    .venv/bin/python benchmarks/bench_fit.py [--views-dir /tmp/bench_fit/views] [--out /tmp/bench_fit]
        [--size 256] [--train-size 128] [--iters 500] [--max-splats 20000] [--inits random agp]
        [--threads N] [--png-dir /tmp/fit_png]

1. Views (cached in ``--views-dir``; delete it to re-render): the head CT
   (``../shared/data/head_ct``, CT-Bone preset, both label classes visible) ray-marched
   (``raymarch``) at ``--size`` px: ``rfmweb views CT --labels L --preset CT-Bone --renderer raymarch
   --n 30 --holdout 10 --size 256`` (20 training + 10 evenly spaced test views on its Fibonacci
   orbit).
2. ``rfmweb fit-6dgs`` once per ``--inits`` entry (a subprocess each, as a user runs it), training on
   views down-scaled to ``--train-size``, with a report.
3. A Markdown table: init, splats, iterations, fit wall time, held-out SSIM / PSNR / LPIPS (LPIPS is
   reported as absent when it cannot be computed, never estimated), plus ground truth | fitted
   PNGs of the held-out views in ``--png-dir``.

Paper reference (TotalSegmentator, GPU, 100 path-traced views per scan, 30k-step schedules):
6DGS 0.912 / 26.63 dB / 1463.9 s; 6DGS + AGP 0.925 / 28.92 dB / 1786.5 s. This CPU run is far
shorter and smaller; compare trends, not numbers. On a shared 2-core machine timings are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
PRESET = "CT-Bone"
N_VIEWS, TEST_EVERY = 30, 3


def make_views(folder: Path, size: int) -> str:
    """Render the views with ``rfmweb views`` unless ``folder`` already holds them."""
    if (folder / "cameras.json").exists():
        return "rfmweb views (cached)"
    t = time.perf_counter()
    cmd = [sys.executable, "-m", "rfmweb", "views", str(HEAD_CT / "ct.nii.gz"), "--labels",
           str(HEAD_CT / "labels.nii.gz"), "--preset", PRESET, "--renderer", "raymarch", "--n", str(N_VIEWS),
           "--holdout", str(N_VIEWS // TEST_EVERY), "--size", str(size), "--out", str(folder)]
    print("$", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True)
    print(f"views rendered in {time.perf_counter() - t:.0f} s", flush=True)
    return "rfmweb views"


def save_comparison(views_dir: Path, splats_path: Path, out_png: Path) -> None:
    """Held-out views: ground truth (left) | fitted splats (right), one row per view."""
    from PIL import Image

    from rfmweb.splats import Splats6D
    from rfmweb.splats.fit import evaluate
    from rfmweb.splats.viewset import load_views

    views = load_views(views_dir)
    ev = evaluate(Splats6D.load(splats_path), views.test_native, background=views.background, keep_images=True)
    gt = views.test_native.images
    rows = [np.concatenate([gt[i].numpy(), ev.images[i].numpy()], 1) for i in range(len(ev.images))]
    grid = np.concatenate([np.concatenate(rows[k:k + 2], 1) if k + 1 < len(rows) else
                           np.concatenate([rows[k], np.zeros_like(rows[k])], 1) for k in range(0, len(rows), 2)], 0)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(grid, 0, 1) * 255 + 0.5).astype(np.uint8)).save(out_png)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--views-dir", type=Path, default=Path("/tmp/bench_fit/views"))
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_fit"))
    ap.add_argument("--size", type=int, default=256, help="rendered view size (px)")
    ap.add_argument("--train-size", type=int, default=128, help="fit-6dgs --size")
    ap.add_argument("--iters", type=int, default=500)
    ap.add_argument("--max-splats", type=int, default=20000)
    ap.add_argument("--inits", nargs="+", default=["random", "agp"])
    ap.add_argument("--threads", type=int, default=None, help="torch threads for the fits (default: torch's)")
    ap.add_argument("--png-dir", type=Path, default=Path("/tmp/fit_png"))
    ap.add_argument("--extra", nargs=argparse.REMAINDER, default=[], help="more fit-6dgs arguments")
    args = ap.parse_args()
    if not (HEAD_CT / "ct.nii.gz").exists():
        sys.exit(f"head CT not found at {HEAD_CT}")
    how = make_views(args.views_dir, args.size)
    rows = []
    for init in args.inits:
        out = args.out / f"splats_{init}.npz"
        report = args.out / f"report_{init}.json"
        cmd = [sys.executable, "-m", "rfmweb", "fit-6dgs", str(HEAD_CT / "ct.nii.gz"), "--labels",
               str(HEAD_CT / "labels.nii.gz"), "--views", str(args.views_dir), "--init", init,
               "--iters", str(args.iters), "--size", str(args.train_size), "--max-splats", str(args.max_splats),
               "--device", "cpu", "--out", str(out), "--report", str(report), "--quiet", *args.extra]
        env = dict(os.environ)
        if args.threads:
            env["OMP_NUM_THREADS"] = str(args.threads)
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, env=env)
        r = json.loads(report.read_text())
        save_comparison(args.views_dir, out, args.png_dir / f"head_{init}.png")
        h = r["heldout"]
        rows.append((init, r["n_splats_initial"], r["n_splats"], r["iterations"], r["fit_wall_s"], h["ssim"], h["psnr"],
                     h["lpips"], h["lpips_reason"], r["initial_heldout"], h["ms_ssim"], r["threads"]))
    print(f"\nHead CT, {PRESET}, views: {how}; {N_VIEWS - N_VIEWS // TEST_EVERY} train + {N_VIEWS // TEST_EVERY} test "
          f"at {args.size}^2, trained at {args.train_size}^2, scored at {args.size}^2; CPU, torch twin\n")
    print("| init | splats (start -> end) | iterations | fit wall time | held-out SSIM | held-out PSNR | LPIPS "
          "| MS-SSIM | start SSIM / PSNR |")
    print("|---|---|---|---|---|---|---|---|---|")
    for init, n0, n, it, wall, s, p, lp, _, ini, ms, threads in rows:
        lps = "n/a" if lp is None else f"{lp:.3f}"
        mss = "n/a" if ms is None else f"{ms:.3f}"
        print(f"| {init} | {n0} -> {n} | {it} | {wall:.0f} s ({threads} thr) | {s:.3f} | {p:.2f} dB | {lps} | {mss} "
              f"| {ini['ssim']:.3f} / {ini['psnr']:.2f} dB |")
    if rows and rows[0][7] is None:
        print(f"\nLPIPS: {rows[0][8]}")
    print("\nPaper (GPU, 100 path-traced views, full schedules): 6DGS 0.912 / 26.63 dB / 1463.9 s; "
          "6DGS+AGP 0.925 / 28.92 dB / 1786.5 s.")
    print(f"Comparisons (ground truth | fitted): {args.png_dir}/head_<init>.png")


if __name__ == "__main__":
    main()
