"""GPU timings of our Triton kernels against their torch twins (run on the lent GPU machine).

Usage (see ../shared/device/README.md; on the device machine)::

    source .device/remote-env.sh && python benchmarks/gpu_kernels.py [--splats 1000000] [--size 1024]

Prints Markdown tables (CUDA events, median of 20 after 5 warm-ups):

- 6DGS slicing of N random splats: the torch twin (``slice_6d``) vs the fused Triton kernel
  (``slice_6d_fused``), and the end-to-end frame (slice + gsplat rasterisation at ``--size``^2) in FPS;
  targets (issue #9): slicing 1M splats <= 1 ms, >= 300 FPS end to end at 1024^2;
- the ray-marcher on the head CT (CT-Bone, full quality: step 0.5 voxel, one jittered frame) at
  512^2 and ``--size``^2: the torch marcher vs the Triton kernel, with the largest pixel difference
  between them, and the kernel without its empty-space block skipping; target <= 5 ms at 1024^2.

Needs CUDA; says so and exits 2 elsewhere.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
HEAD_CT = REPO.parent / "shared" / "data" / "head_ct"
sys.path.insert(0, str(REPO))

from rfmweb.camera import OrbitCamera  # noqa: E402
from rfmweb.splats import Splats6D, camera_tensors, conditional_parts, rasterize, slice_6d  # noqa: E402


def cuda_ms(fn, repeats: int = 20, warmup: int = 5) -> float:
    """Median ms of ``fn()`` by CUDA events."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def random_splats(n: int, device: str) -> Splats6D:
    """N splats in a 200 mm box, ~2.7 mm wide, random opacity and degree-1 SH."""
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    log_diag = torch.cat([r(n, 3) * 0.3 + 1.0, r(n, 3) * 0.3 - 0.5], 1)
    return Splats6D((torch.rand(n, 3, generator=g) - 0.5) * 200, r(n, 3) * 0.3, log_diag, r(n, 15), r(n) * 2,
                    r(n, 4, 3) * 0.5).to(device)


def splat_table(n: int, size: int) -> None:
    from rfmweb.splats._triton_slicing import slice_6d_fused

    splats = random_splats(n, "cuda")
    parts = conditional_parts(splats)
    cam = OrbitCamera.framing(torch.tensor([[-100.0] * 3, [100.0] * 3]).numpy(), azimuth=20, elevation=15,
                              width=size, height=size)
    centres = torch.tensor([list(cam.position)], dtype=torch.float32, device="cuda")
    viewmats, ks, w, h = camera_tensors([cam], splats.device, splats.dtype)

    def fused():
        return slice_6d_fused(splats.means, splats.dir_means, splats.opacity_logits, splats.sh, parts, centres, 0.35)

    def frame():
        g = fused()
        return rasterize(g.means, g.covars, g.opacities, g.colors, viewmats, ks, w, h)

    with torch.no_grad():
        twin_ms, fused_ms = cuda_ms(lambda: slice_6d(splats, [cam], parts=parts)), cuda_ms(fused)
        frame_ms = cuda_ms(frame)
    print(f"| 6DGS slicing, {n:,} splats | {twin_ms:.2f} | {fused_ms:.3f} | {twin_ms / fused_ms:.0f}x |")
    print(f"| slice + gsplat, {n:,} splats, {size}^2 | | {frame_ms:.2f} ({1e3 / frame_ms:.0f} FPS) | |")


def march_table(sizes: list[int]) -> None:
    from rfmweb.io import load_volume
    from rfmweb.render import FULL, RaymarchRenderer, Scene
    from rfmweb.render._triton_march import march_triton
    from rfmweb.render.scene import REST
    from rfmweb.transfer import preset

    vol = load_volume(HEAD_CT / "ct.nii.gz").with_labels(None, ())
    scene = Scene(vol, preset("CT-Bone"))
    renderer = RaymarchRenderer(device="cuda")
    for size in sizes:
        cam = OrbitCamera.framing(vol.bounds, azimuth=20, elevation=15, width=size, height=size, margin=0.8)
        with torch.no_grad():
            ours = march_triton(renderer, scene, cam, FULL, 0)
            twin = renderer.render_tensor(scene, cam, FULL)
            diff = float((ours - twin).abs().max())
            torch_ms = cuda_ms(lambda: renderer.render_tensor(scene, cam, FULL), repeats=5, warmup=1)
            triton_ms = cuda_ms(lambda: march_triton(renderer, scene, cam, FULL, 0))
            dense = march_triton(renderer, scene, cam, FULL, 0, skip=False)
            dense_ms = cuda_ms(lambda: march_triton(renderer, scene, cam, FULL, 0, skip=False))
        print(f"| ray-marcher, head CT CT-Bone, {size}^2 | {torch_ms:.1f} | {triton_ms:.2f} "
              f"| {torch_ms / triton_ms:.0f}x (max diff {diff:.1e}) |", flush=True)
        print(f"| ... without block skipping, {size}^2 | | {dense_ms:.2f} "
              f"| (max diff to skipping {float((dense - ours).abs().max()):.1e}) |", flush=True)
        with torch.no_grad():
            rest = march_triton(renderer, scene, cam, REST, 0)
            rest_diff = float((rest - renderer.render_tensor(scene, cam, REST)).abs().max())
            rest_ms = cuda_ms(lambda: march_triton(renderer, scene, cam, REST, 0))
        print(f"| ... at rest (cubic B-spline reads), {size}^2 | | {rest_ms:.2f} | (max diff {rest_diff:.1e}) |",
              flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--splats", type=int, default=1_000_000)
    parser.add_argument("--size", type=int, default=1024)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("gpu_kernels.py needs CUDA (run it on the GPU machine: ../shared/device/README.md)", file=sys.stderr)
        return 2
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")
    print("| what | torch twin ms | Triton ms | speed-up |")
    print("|---|---|---|---|")
    splat_table(args.splats, args.size)
    march_table([512, args.size])
    return 0


if __name__ == "__main__":
    sys.exit(main())
