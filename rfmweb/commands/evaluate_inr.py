"""``rfmweb evaluate-inr``: Dice / HD95 / parameters / seconds of Neumours INRs vs the CNN baseline."""

from __future__ import annotations

from ._options import add_compute_options, apply_threads


#: Its line in ``rfmweb --help``.
HELP = "score INR checkpoints (raw and denoised) and the CNN baseline per split"


def add_parser(sub) -> None:
    p = sub.add_parser("evaluate-inr", help=HELP)
    p.add_argument("--split", action="append", required=True, metavar="NAME=DIR",
                   help="a folder of labelled BraTS-style cases (repeatable), e.g. val=cohort/val")
    p.add_argument("--inr", action="append", default=[], metavar="NAME=PATH",
                   help="an INR checkpoint (repeatable; default: the shipped weights as 'shipped')")
    p.add_argument("--cnn", metavar="PATH", help="a CNN model file from rfmweb train-cnn")
    p.add_argument("--out", required=True, help="output folder (table.md, table.csv, per_case.csv)")
    p.add_argument("--no-denoise-cnn", action="store_true", help="score the CNN raw only")
    p.add_argument("--no-fill-holes", action="append", default=[], metavar="NAME",
                   help="denoise this split without hole filling (post-operative scans; repeatable)")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                   help="inference precision of the INRs and the CNN")
    add_compute_options(p)
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..inr.evaluate import evaluate_inr, parse_named

    apply_threads(args)
    splits = parse_named(args.split, "--split")
    inrs = parse_named(args.inr, "--inr") or None
    evaluate_inr(splits, args.out, inrs=inrs, cnn=args.cnn, denoise_cnn=not args.no_denoise_cnn,
                 no_fill=set(args.no_fill_holes), precision=args.precision, progress=not args.no_progress)
