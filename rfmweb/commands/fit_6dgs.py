"""``rfmweb fit-6dgs``: the per-scan 6DGS baseline: fit 6D Gaussian splats to rendered views of a volume.

Usage::

    rfmweb views ct.nii.gz --labels labels.nii.gz --n 30 --out views/
    rfmweb fit-6dgs ct.nii.gz --labels labels.nii.gz --views views/ --init agp --out splats.npz \\
        --report report.json

``--init agp`` starts from Anatomy-Guided Priming on the scene the views were rendered from
(``views/tf.json`` + the hidden classes in ``views/scene.json``); ``--init random`` from as many
random splats in the volume's box. Training uses the ``train`` views, the report scores the
``test`` views at their stored size (SSIM, PSNR, MS-SSIM when large enough, LPIPS when
available: never a made-up value). Defaults depend on the device: on a CPU 300 iterations on
views down-scaled to 128 px with at most 20,000 splats (the torch twin costs about 1 s per step
there); on CUDA (gsplat) 3,000 iterations at the views' size with at most 1,000,000 splats. The
initial splats take at most half of ``--max-splats`` (AGP: a random subset of its voxels, scales
grown to cover the rest); densification grows into the other half.

Ctrl-C stops after the current step, then saves the current splats (and the report, scored as
usual) before exiting with status 130; a second Ctrl-C aborts at once without writing. Outputs are
written atomically: a failed or aborted run never leaves a partial file.
"""

from __future__ import annotations

import logging
import platform
import time

from ..errors import InputError

log = logging.getLogger("rfmweb")

DEFAULTS = {"cpu": {"iters": 300, "size": 128, "max_splats": 20_000},
            "cuda": {"iters": 3000, "size": None, "max_splats": 1_000_000}}


def add_parser(sub) -> None:
    p = sub.add_parser("fit-6dgs", help="fit 6D Gaussian splats to rendered views of one volume (per-scan 6DGS)",
                       description="Fit 6D Gaussian splats to the training views of a views folder (the paper's "
                                   "per-scan 6DGS baseline); Ctrl-C saves the current splats.")
    p.add_argument("volume", help="the volume the views show: .nii/.nii.gz, a BraTS folder or sample:NAME")
    p.add_argument("--views", required=True, metavar="DIR", help="views folder written by `rfmweb views`")
    p.add_argument("--init", default="agp", metavar="agp|random",
                   help="agp: Anatomy-Guided Priming (default); random: random splats in the volume's box")
    p.add_argument("--iters", type=int, help="optimisation steps (default 300 on CPU, 3000 on CUDA)")
    p.add_argument("--out", required=True, help="output splat file (.npz)")
    p.add_argument("--report", help="write a JSON report (held-out metrics, timing, training curve)")
    p.add_argument("--labels", help="label map on the volume's grid (.nii/.nii.gz), for hidden classes and AGP")
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply every learning rate (default 1)")
    p.add_argument("--seed", type=int, default=0, help="random seed (view order, random init, splits)")
    p.add_argument("--max-splats", type=int, help="cap on the splat count (default 20000 on CPU, 1000000 on CUDA); "
                                                  "the initial splats take at most half, densification the rest")
    p.add_argument("--device", metavar="cpu|cuda", help="where to fit (default: CUDA when available)")
    p.add_argument("--size", type=int, help="train on views down-scaled to this width in pixels "
                                            "(default 128 on CPU, the views' size on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


def _device(name: str):
    """The device for ``--device`` (checked without logging anything: bad input stays one line)."""
    import torch

    if name not in ("cpu", "cuda"):
        raise InputError(f"--device must be cpu or cuda, got {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name)


def run(args) -> dict:
    """Run the command; returns the report (also written with ``--report``)."""
    import torch

    from ..io import open_volume
    from ..splats.fit import INIT_FRACTION, FitConfig, evaluate, fit_6dgs, write_json
    from ..splats.viewset import INITS, initial_splats, load_views, scene_for_views

    t_start = time.perf_counter()
    if args.init not in INITS:
        raise InputError(f"--init must be one of {', '.join(INITS)}, got {args.init!r}")
    if not str(args.out).lower().endswith(".npz"):
        raise InputError("output must end in .npz", args.out)
    if args.report and not str(args.report).lower().endswith(".json"):
        raise InputError("report must end in .json", args.report)
    device = None if args.device is None else _device(args.device)
    FitConfig(iters=args.iters or 0, lr_scale=args.lr_scale, max_splats=args.max_splats)  # checked before slow steps
    views = load_views(args.views)
    if args.size is not None:
        views = views.resized(args.size)
    volume = open_volume(args.volume, args.labels)
    scene = scene_for_views(views, volume)

    if device is None:
        from ..backend import default_device
        device = default_device()
    # defaults sized by the rasteriser that will run, not by the device: the torch twin on CUDA is
    # far slower than gsplat and would take hours with gsplat's defaults
    from ..backend import choose_rasterizer
    rasterizer = choose_rasterizer("auto", device, needs_grad=True)
    if device.type == "cuda" and rasterizer != "gsplat":
        log.warning("fit-6dgs: gsplat is not installed, so the torch twin rasterises on CUDA; using the small "
                    "defaults (--iters %d, --max-splats %d, --size %d) unless given (pip install 'rfmweb[gpu]')",
                    DEFAULTS["cpu"]["iters"], DEFAULTS["cpu"]["max_splats"], DEFAULTS["cpu"]["size"])
    defaults = DEFAULTS["cuda" if rasterizer == "gsplat" else "cpu"]
    iters = defaults["iters"] if args.iters is None else args.iters
    max_splats = defaults["max_splats"] if args.max_splats is None else args.max_splats
    config = FitConfig(iters=iters, lr_scale=args.lr_scale, max_splats=max_splats, seed=args.seed)
    if args.size is None and defaults["size"] is not None:
        views = views.resized(min(defaults["size"], views.native_size[0]))
    splats = initial_splats(args.init, scene, max_splats=max(1, int(max_splats * INIT_FRACTION)), seed=args.seed,
                            device=device)
    log.info("fit-6dgs: %s init, %d splats, %d train / %d test views, training at %dx%d on %s, %d iterations",
             args.init, len(splats), len(views.train), 0 if views.test is None else len(views.test),
             views.train.width, views.train.height, device, iters)

    test = views.test_native
    initial = evaluate(splats, test, background=views.background) if (test is not None and args.report) else None
    # one scene radius for both inits (the volume's half-diagonal): same learning rates and thresholds
    lo, hi = volume.bounds
    extent = 0.5 * float(((hi - lo) ** 2).sum() ** 0.5)
    result = fit_6dgs(splats, views.train, config, device=device, background=views.background, extent=extent,
                      progress=not args.quiet)
    fitted = result.splats.to("cpu")
    fitted.save(args.out)
    log.info("wrote %s: %d splats after %d iterations (%.1f s%s)", args.out, len(fitted), result.iterations,
             result.wall_s, ", interrupted" if result.interrupted else "")

    report = None
    if args.report:
        final = evaluate(result.splats, test, background=views.background) if test is not None else None
        small = None
        if test is not None and views.test.width != test.width:
            small = evaluate(result.splats, views.test, background=views.background)
        report = {
            "format": "rfmweb.fit6dgs.report/1",
            "volume": str(args.volume), "labels": args.labels, "views": str(args.views), "out": str(args.out),
            "init": args.init, "device": str(device), "backend": result.backend,
            "threads": torch.get_num_threads(), "host": platform.node(), "torch": torch.__version__,
            "iterations": result.iterations, "iterations_planned": iters, "interrupted": result.interrupted,
            "fit_wall_s": round(result.wall_s, 2), "total_wall_s": round(time.perf_counter() - t_start, 2),
            "n_splats": len(fitted), "n_splats_initial": len(splats), "max_splats": max_splats,
            "train_size": [views.train.width, views.train.height], "n_train_views": len(views.train),
            "n_test_views": 0 if test is None else len(test), "extent_mm": round(result.extent, 3),
            "heldout": None if final is None else final.to_dict(),
            "heldout_reason": None if test is not None else "the views folder has no 'test' views",
            "heldout_at_train_size": None if small is None else
            {"ssim": small.ssim, "psnr": small.psnr, "size": list(small.size)},
            "initial_heldout": None if initial is None else
            {"ssim": initial.ssim, "psnr": initial.psnr, "size": list(initial.size)},
            "curve": result.curve, "events": result.events, "config": config.to_dict(),
        }
        write_json(args.report, report)
        if final is not None:
            log.info("held-out (%d views, %dx%d): SSIM %.4f  PSNR %.2f dB  (initial %.4f / %.2f)", len(test),
                     *final.size, final.ssim, final.psnr, initial.ssim, initial.psnr)
        log.info("wrote %s", args.report)
    if result.interrupted:
        raise KeyboardInterrupt  # outputs are saved; the CLI exits with 130
    return report
