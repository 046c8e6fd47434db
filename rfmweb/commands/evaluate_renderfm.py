"""``rfmweb evaluate-renderfm``: the paper's table (6DGS per-scan, 6DGS + AGP, Render-FM, Render-FM +
fine-tune) on held-out generated phantoms, the real head CT and an unseen TF, in one run, as
Markdown and CSV (:mod:`rfmweb.renderfm.evaluate`). A rerun with the same ``--out`` skips what is done."""

from __future__ import annotations

import logging

from ._options import doc_description

log = logging.getLogger("rfmweb")


#: Its line in ``rfmweb --help``.
HELP = "the Render-FM table: per-scan 6DGS vs Render-FM (+ fine-tune)"


def add_parser(sub) -> None:
    from ..renderfm.evaluate import METHODS

    p = sub.add_parser("evaluate-renderfm", help=HELP,
                       description=doc_description(__doc__))
    p.add_argument("--out", required=True, help="output folder (cases, reports, table.md, table.csv)")
    p.add_argument("--checkpoint", help="Render-FM model file (default: the shipped one)")
    p.add_argument("--device", metavar="cpu|cuda", help="one device for every method (default: CUDA when available)")
    p.add_argument("--n-views", type=int, default=30, help="views per case (default 30)")
    p.add_argument("--holdout", type=int, default=10, help="held-out views per case (default 10)")
    p.add_argument("--size", type=int, default=256, help="view size in pixels (default 256)")
    p.add_argument("--fit-iters", type=int, help="per-scan fit steps (default: fit-6dgs's for the device)")
    p.add_argument("--fit-size", type=int, help="fit and fine-tune on views down-scaled to this width")
    p.add_argument("--finetune-iters", type=int, default=300, help="fine-tuning steps (default 300)")
    p.add_argument("--phantoms", type=int, default=2, help="held-out generated phantoms (default 2)")
    p.add_argument("--head-ct", help="folder with ct.nii.gz and labels.nii.gz: the real CT's rows "
                   "(beside a checkout: ../shared/data/head_ct; default: none)")
    p.add_argument("--no-ablations", action="store_true", help="skip the label-map and AGP-off rows")
    p.add_argument("--only", nargs="+", metavar="CASE", help="run only these cases (e.g. head-ct)")
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS, help="methods to run")
    p.set_defaults(run=run)


def run(args) -> list[dict]:
    from ..cli import main
    from ..renderfm.evaluate import EvalConfig, Evaluation

    config = EvalConfig(out=args.out, checkpoint=args.checkpoint, device=args.device, n_views=args.n_views,
                        holdout=args.holdout, size=args.size, fit_iters=args.fit_iters, fit_size=args.fit_size,
                        finetune_iters=args.finetune_iters, phantoms=args.phantoms, head_ct=args.head_ct or None,
                        ablations=not args.no_ablations, methods=tuple(args.methods),
                        only=tuple(args.only) if args.only else None)
    rows = Evaluation(config, main).run()
    log.info("evaluate-renderfm: %d rows -> %s/table.md", len(rows), args.out)
    return rows
