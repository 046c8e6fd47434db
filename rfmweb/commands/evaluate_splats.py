"""``rfmweb evaluate-splats``: held-out image quality of any splat file against a views folder.

Usage::

    rfmweb evaluate-splats prediction.npz --views views/ --report scores.json

Scores the splats (an ``.npz`` from ``fit-6dgs`` / ``finetune`` / Render-FM, or a 6D ``.ply``,
:mod:`rfmweb.splats.ply6d`) with the very code ``fit-6dgs`` uses for its report's ``"heldout"``:
:func:`rfmweb.splats.fit.evaluate` on the folder's ``test`` views at their stored size, over the
folder's background. So the numbers of a Render-FM prediction, a fine-tuned one and a per-scan fit
are comparable. SSIM (11x11 Gaussian window, sigma 1.5) and PSNR (dB) always; MS-SSIM when the
views exceed 160 px; LPIPS (VGG) when its package and weights are installed, else ``null`` with a
reason, never a made-up value. ``--size W`` scores the views down-scaled to ``W`` px instead (as
``fit-6dgs``'s ``"heldout_at_train_size"``). A folder without ``test`` views is scored on all its
views, which the log and the report (``"split": "all"``) say: such numbers are not held-out.
"""

from __future__ import annotations

import logging
import time

from ..errors import InputError

log = logging.getLogger("rfmweb")

REPORT_FORMAT = "rfmweb.evaluate-splats.report/1"


#: Its line in ``rfmweb --help``.
HELP = "held-out SSIM / PSNR / MS-SSIM / LPIPS of a splat file on a views folder"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate-splats",
                       help=HELP,
                       description="Score 6D splats (.npz or 6D .ply) on the test views of a views folder with the "
                                   "same code as fit-6dgs's report, so the numbers are comparable.")
    p.add_argument("splats", help="splat file: .npz (fit-6dgs, finetune, Render-FM) or a 6D .ply (export-ply --6d)")
    p.add_argument("--views", required=True, metavar="DIR", help="views folder written by `rfmweb views`")
    p.add_argument("--size", type=int, help="score the views down-scaled to this width in pixels "
                                            "(default: their stored size, as fit-6dgs's 'heldout')")
    p.add_argument("--device", metavar="cpu|cuda", help="where to render (default: CUDA when available)")
    p.add_argument("--report", help="write a JSON report (means and per-view values)")
    p.set_defaults(run=run)


def _fmt(value, spec: str = ".4f", unit: str = "") -> str:
    return "n/a" if value is None else f"{value:{spec}}{unit}"


def run(args) -> dict:
    """Run the command; returns the report (also written with ``--report``)."""
    from ..backend import default_device, scoring_rasterizer
    from ..splats.fit import evaluate, write_json
    from ..splats.ply6d import read_splats
    from ..splats.viewset import check_splats, load_views
    from ..backend import parse_device

    t_start = time.perf_counter()
    if args.report and not str(args.report).lower().endswith(".json"):
        raise InputError("report must end in .json", args.report)
    device = None if args.device is None else parse_device(args.device)
    splats = read_splats(args.splats)
    views = load_views(args.views)
    check_splats(views, splats.means, args.splats)
    if views.test is not None:
        split, target = "test", (views.test_native if args.size is None else views.resized(args.size).test)
        note = None
    else:
        split, target = "all", (views.train if args.size is None else views.resized(args.size).train)
        note = "the views folder has no 'test' views: scored on all its views (not held-out)"
        log.warning("evaluate-splats: %s: %s", args.views, note)
    if device is None:
        device = default_device()
    splats = splats.to(device)
    backend = scoring_rasterizer(device)      # the one the report names is the one that scores
    result = evaluate(splats, target, background=views.background, backend=backend)
    log.info("evaluate-splats %s: %d splats, %d %s views at %dx%d: SSIM %s  PSNR %s  MS-SSIM %s  LPIPS %s",
             args.splats, len(splats), len(target), split, *result.size, _fmt(result.ssim),
             _fmt(result.psnr, ".2f", " dB"), _fmt(result.ms_ssim), _fmt(result.lpips))
    report = {
        "format": REPORT_FORMAT, "splats": str(args.splats), "views": str(args.views),
        "n_splats": len(splats), "device": str(device), "backend": backend,
        "split": split, "split_note": note, "n_views": len(target), "background": list(views.background),
        "heldout": result.to_dict(), "wall_s": round(time.perf_counter() - t_start, 2),
    }
    if args.report:
        write_json(args.report, report)
        log.info("wrote %s", args.report)
    return report
