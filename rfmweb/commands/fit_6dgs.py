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

Everything from the options to the report is :func:`fit_and_report`, which ``rfmweb finetune``
(:mod:`rfmweb.commands.finetune`) calls with its own starting splats.
"""

from __future__ import annotations

import logging
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING

from ..errors import InputError, about
from ._options import LABELS_HELP, add_series_option

if TYPE_CHECKING:
    from ..splats.model import Splats6D

log = logging.getLogger("rfmweb")

DEFAULTS = {"cpu": {"iters": 300, "size": 128, "max_splats": 20_000},
            "cuda": {"iters": 3000, "size": None, "max_splats": 1_000_000}}


#: Its line in ``rfmweb --help``.
HELP = "fit 6D Gaussian splats to rendered views of one volume (per-scan 6DGS)"


def add_parser(sub) -> None:
    p = sub.add_parser("fit-6dgs", help=HELP,
                       description="Fit 6D Gaussian splats to the training views of a views folder (the paper's "
                                   "per-scan 6DGS baseline); Ctrl-C saves the current splats.")
    p.add_argument("volume", help="the volume the views show: .nii/.nii.gz/.nrrd/.mha, a DICOM folder or .zip, "
                                  "a BraTS folder or sample:NAME")
    add_series_option(p)
    p.add_argument("--views", required=True, metavar="DIR", help="views folder written by `rfmweb views`")
    p.add_argument("--init", default="agp", metavar="agp|random",
                   help="agp: Anatomy-Guided Priming (default); random: random splats in the volume's box")
    p.add_argument("--iters", type=int, help="optimisation steps (default 300 on CPU, 3000 on CUDA)")
    p.add_argument("--out", required=True, help="output splat file (.npz)")
    p.add_argument("--report", help="write a JSON report (held-out metrics, timing, training curve)")
    p.add_argument("--labels", help=f"{LABELS_HELP}, for hidden classes and AGP")
    add_fit_options(p, seed_help="random seed (view order, random init, splits)",
                    max_splats_help="cap on the splat count (default 20000 on CPU, 1000000 on CUDA); the initial "
                                    "splats take at most half, densification the rest")
    p.set_defaults(run=run)


def add_fit_options(p, *, seed_help: str, max_splats_help: str) -> None:
    """The options ``fit-6dgs`` and ``finetune`` share (after their own)."""
    p.add_argument("--lr-scale", type=float, default=1.0, help="multiply every learning rate (default 1)")
    p.add_argument("--seed", type=int, default=0, help=seed_help)
    p.add_argument("--max-splats", type=int, help=max_splats_help)
    p.add_argument("--device", metavar="cpu|cuda", help="where to fit (default: CUDA when available)")
    p.add_argument("--size", type=int, help="train on views down-scaled to this width in pixels "
                                            "(default 128 on CPU, the views' size on CUDA)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args) -> dict:
    """Run the command; returns the report (also written with ``--report``)."""
    from ..splats.fit import INIT_FRACTION, REPORT_FORMAT
    from ..splats.viewset import INITS, initial_splats

    if args.init not in INITS:
        raise InputError(f"--init must be one of {', '.join(INITS)}, got {args.init!r}")

    def start(scene, max_splats: int, device):
        return initial_splats(args.init, scene, max_splats=max(1, int(max_splats * INIT_FRACTION)), seed=args.seed,
                              device=device)

    return fit_and_report(FitJob.from_args(args), start, command="fit-6dgs", init=args.init,
                          report_format=REPORT_FORMAT)


@dataclass(frozen=True)
class FitJob:
    """What a fitting command was asked to do (its command-line options, before defaults).

    ``None`` for ``iters``, ``max_splats``, ``size`` and ``device`` means "the default for the
    rasteriser that will run" (:data:`DEFAULTS`).
    """

    volume: str
    views: str
    out: str
    labels: str | None = None
    series: str | None = None
    report: str | None = None
    iters: int | None = None
    max_splats: int | None = None
    size: int | None = None
    device: str | None = None
    lr_scale: float = 1.0
    seed: int = 0
    quiet: bool = False

    @classmethod
    def from_args(cls, args) -> "FitJob":
        return cls(**{f.name: getattr(args, f.name) for f in fields(cls) if hasattr(args, f.name)})


def fit_and_report(job: FitJob, start: Callable[..., "Splats6D"], *, command: str, init: str, report_format: str,
                   default_max_splats: int | None = None, report_extra: dict | None = None) -> dict | None:
    """The part of ``fit-6dgs`` and ``finetune`` they share: check, load, fit, save, score, report.

    Checks the options (output suffixes, device, hyper-parameters) before anything slow, loads
    the views (down-scaled to ``job.size``), the volume and the scene the views show, picks the
    defaults of the rasteriser that will run (:data:`DEFAULTS`), builds the starting splats with
    ``start(scene, max_splats, device) -> Splats6D``, scores them on the held-out views (only
    with a report), fits (:func:`rfmweb.splats.fit.fit_6dgs`), saves ``job.out`` and writes the
    report (held-out metrics before and after, timing, curve) atomically.

    Args:
        job: the options.
        start: makes the starting splats (used as they come: any subsampling is ``start``'s).
        command: name for the log.
        init: the report's ``"init"``.
        report_format: the report's ``"format"`` tag.
        default_max_splats: ``max_splats`` when the job gives none, instead of the rasteriser's
            default (``finetune``: the starting count, so densification adds none).
        report_extra: keys added to the report.

    Returns:
        The report (``None`` without ``job.report``). Raises ``KeyboardInterrupt`` after saving
        when Ctrl-C stopped the fit.
    """
    import torch

    from ..backend import choose_rasterizer, default_device, parse_device
    from ..io import open_volume
    from ..io.atomic import check_output
    from ..splats.fit import FitConfig, evaluate, fit_6dgs, write_json
    from ..splats.viewset import check_volume, load_views, scene_for_views

    t_start = time.perf_counter()
    if not str(job.out).lower().endswith(".npz"):
        raise InputError("output must end in .npz", job.out)
    if job.report and not str(job.report).lower().endswith(".json"):
        raise InputError("report must end in .json", job.report)
    for path in (job.out, job.report):
        if path:
            check_output(path)
    device = None if job.device is None else parse_device(job.device)
    FitConfig(iters=job.iters or 0, lr_scale=job.lr_scale, max_splats=job.max_splats)  # checked before slow steps
    views = load_views(job.views)
    if job.size is not None:
        views = views.resized(job.size)
    volume = open_volume(job.volume, job.labels, series=job.series)
    check_volume(views, volume, job.volume)
    scene = scene_for_views(views, volume)

    if device is None:
        device = default_device()
    # defaults sized by the rasteriser that will run, not by the device: the torch twin on CUDA is
    # far slower than gsplat and would take hours with gsplat's defaults
    rasterizer = choose_rasterizer("auto", device, needs_grad=True)
    if device.type == "cuda" and rasterizer != "gsplat":
        log.warning("%s: gsplat is not installed, so the torch twin rasterises on CUDA; using the small "
                    "defaults (--iters %d, --max-splats %d, --size %d) unless given (pip install 'rfmweb[gpu]')",
                    command, DEFAULTS["cpu"]["iters"], DEFAULTS["cpu"]["max_splats"], DEFAULTS["cpu"]["size"])
    defaults = DEFAULTS["cuda" if rasterizer == "gsplat" else "cpu"]
    iters = defaults["iters"] if job.iters is None else job.iters
    max_splats = job.max_splats or default_max_splats or defaults["max_splats"]
    config = FitConfig(iters=iters, lr_scale=job.lr_scale, max_splats=max_splats, seed=job.seed)
    if job.size is None and defaults["size"] is not None:
        views = views.resized(min(defaults["size"], views.native_size[0]))
    with about(job.volume):
        splats = start(scene, max_splats, device)
    log.info("%s: %s init, %d splats, %d train / %d test views, training at %dx%d on %s, %d iterations",
             command, init, len(splats), len(views.train), 0 if views.test is None else len(views.test),
             views.train.width, views.train.height, device, iters)

    test = views.test_native
    initial = evaluate(splats, test, background=views.background) if (test is not None and job.report) else None
    # one scene radius whatever the start (the volume's half-diagonal): same learning rates and thresholds
    lo, hi = volume.bounds
    extent = 0.5 * float(((hi - lo) ** 2).sum() ** 0.5)
    result = fit_6dgs(splats, views.train, config, device=device, background=views.background, extent=extent,
                      progress=not job.quiet, label=command)
    fitted = replace(result.splats.to("cpu"), box=volume.bounds)  # a view of them alone frames the volume
    fitted.save(job.out)
    log.info("wrote %s: %d splats after %d iterations (%.1f s%s)", job.out, len(fitted), result.iterations,
             result.wall_s, ", interrupted" if result.interrupted else "")

    report = None
    if job.report:
        final = evaluate(result.splats, test, background=views.background) if test is not None else None
        small = None
        if test is not None and views.test.width != test.width:
            small = evaluate(result.splats, views.test, background=views.background)
        report = {
            "format": report_format,
            "volume": str(job.volume), "labels": job.labels, "views": str(job.views), "out": str(job.out),
            "init": init, **(report_extra or {}), "device": str(device), "backend": result.backend,
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
        write_json(job.report, report)
        if final is not None:
            log.info("held-out (%d views, %dx%d): SSIM %.4f  PSNR %.2f dB  (initial %.4f / %.2f)", len(test),
                     *final.size, final.ssim, final.psnr, initial.ssim, initial.psnr)
        log.info("wrote %s", job.report)
    if result.interrupted:
        raise KeyboardInterrupt  # outputs are saved; the CLI exits with 130
    return report
