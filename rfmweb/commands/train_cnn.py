"""``rfmweb train-cnn``: train the nnU-Net-style CNN baseline (:mod:`rfmweb.inr.cnn`) on BraTS-style cases."""

from __future__ import annotations

from ..errors import InputError
from ._options import add_compute_options, apply_threads, show_defaults


#: Its line in ``rfmweb --help``.
HELP = "train the 3-D U-Net tumour-segmentation baseline on BraTS-style cases"


def add_parser(sub) -> None:
    p = sub.add_parser("train-cnn", help=HELP)
    p.add_argument("cases", metavar="CASES_DIR", help="folder of BraTS-style case folders with -seg files")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.pt, log.csv, summary.json)")
    p.add_argument("--steps", type=int, default=700, help="optimisation steps (the poly schedule spans them)")
    p.add_argument("--patch", type=int, default=48, help="patch edge in voxels (also the inference window)")
    p.add_argument("--batch", type=int, default=2, help="patches per step")
    p.add_argument("--features", default="16,32,64,128,256",
                   help="channels per U-Net stage, finest first (default: 5.65 M parameters)")
    p.add_argument("--optimizer", choices=["adamw", "sgd"], default="adamw")
    p.add_argument("--lr", type=float, help="initial learning rate (default 1e-3 for adamw, 1e-2 for sgd)")
    p.add_argument("--no-deep-supervision", action="store_true", help="loss on the finest output only")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="forward-pass precision (bf16: ~2x faster on CPUs with AMX and on GPUs)")
    p.add_argument("--checkpoint-every", type=int, default=50, metavar="K")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this CNN file's weights with a fresh optimiser and schedule (same --features)")
    p.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--seed", type=int, default=0)
    add_compute_options(p)
    show_defaults(p)
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..inr.cnn import CNNTrainConfig, train_cnn

    apply_threads(args, args.device)
    try:
        features = tuple(int(v) for v in args.features.split(","))
    except ValueError:
        raise InputError(f"--features must be comma-separated integers, got {args.features!r}") from None
    lr = args.lr if args.lr is not None else (1e-3 if args.optimizer == "adamw" else 1e-2)
    train_cnn(CNNTrainConfig(cases=args.cases, out=args.out, steps=args.steps, patch=args.patch, batch=args.batch,
                             features=features, optimizer=args.optimizer, lr=lr,
                             deep_supervision=not args.no_deep_supervision, precision=args.precision,
                             checkpoint_every=args.checkpoint_every,
                             resume=args.resume, init=args.init, device=args.device, seed=args.seed,
                             progress=not args.no_progress))
