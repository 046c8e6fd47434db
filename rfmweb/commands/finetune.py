"""``rfmweb finetune``: optimise a given scan's splats (e.g. Render-FM's prediction) against its views.

Usage::

    rfmweb views ct.nii.gz --labels labels.nii.gz --n 30 --holdout 10 --out views/
    rfmweb finetune ct.nii.gz --labels labels.nii.gz --init prediction.npz --views views/ --iters 300 \\
        --out finetuned.npz --report report.json

Render-FM's "+ fine-tuning" row: the per-scan fit of ``fit-6dgs`` (same loop, loss, schedule,
densification, Ctrl-C handling, outputs and report; :func:`rfmweb.commands.fit_6dgs.fit_and_report`)
started from the splats in ``--init`` (``.npz`` or a 6D ``.ply``) instead of AGP or random splats.
The initial splats are used as they are (none dropped). ``--max-splats`` defaults to their count:
densification then adds none (pruning still removes faint ones), which scored better from Render-FM's
predictions (head CT, 128^2, 50 steps: held-out SSIM 0.801 -> 0.804, PSNR 21.48 -> 21.73 dB; 150
steps 0.815 -> 0.819; a held-out generated head and an unseen TF likewise; BENCHMARKS.md). A larger
``--max-splats`` lets densification grow the set. The report is ``fit-6dgs``'s (``initial_heldout``
then scores the ``--init`` file exactly as ``rfmweb evaluate-splats`` does) plus ``"init_file"``.
"""

from __future__ import annotations

import logging

from ._options import LABELS_HELP

log = logging.getLogger("rfmweb")

REPORT_FORMAT = "rfmweb.finetune.report/1"


#: Its line in ``rfmweb --help``.
HELP = "fine-tune a splat file (e.g. Render-FM's prediction) on a scan's views"


def add_parser(sub) -> None:
    p = sub.add_parser("finetune", help=HELP,
                       description="Optimise the splats of --init against the training views of a views folder "
                                   "(the fit-6dgs loop); Ctrl-C saves the current splats.")
    p.add_argument("volume", help="the volume the views show: .nii/.nii.gz, a BraTS folder or sample:NAME")
    p.add_argument("--init", required=True, metavar="SPLATS",
                   help="starting splats: .npz (Render-FM, fit-6dgs) or a 6D .ply (export-ply --6d)")
    p.add_argument("--views", required=True, metavar="DIR", help="views folder written by `rfmweb views`")
    p.add_argument("--iters", type=int, required=True, help="optimisation steps")
    p.add_argument("--out", required=True, help="output splat file (.npz)")
    p.add_argument("--report", help="write a JSON report (held-out metrics before and after, timing, curve)")
    p.add_argument("--labels", help=f"{LABELS_HELP}, for the views' hidden classes")
    from .fit_6dgs import add_fit_options

    add_fit_options(p, seed_help="random seed (view order, splits)",
                    max_splats_help="cap on the splat count (default: the initial count, so densification "
                                    "adds none; give more to let it grow)")
    p.set_defaults(run=run)


def run(args) -> dict | None:
    """Run the command; returns the report (also written with ``--report``)."""
    from ..splats.ply6d import read_splats
    from .fit_6dgs import FitJob, fit_and_report

    init = read_splats(args.init)  # a bad --init fails before the slow steps
    if args.max_splats is not None and args.max_splats < len(init):
        log.warning("finetune: --max-splats %d is below the %d initial splats: densification will add none",
                    args.max_splats, len(init))

    def start(scene, max_splats: int, device):
        return init.to(device)

    return fit_and_report(FitJob.from_args(args), start, command="finetune", init="file",
                          report_format=REPORT_FORMAT, default_max_splats=len(init),
                          report_extra={"init_file": str(args.init)})
