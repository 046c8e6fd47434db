"""``rfmweb train-inr``: train the Neumours INR on a folder of BraTS-style cases.

Several processes: ``torchrun --nproc_per_node N -m rfmweb train-inr ...`` (or
``-m rfmweb train-inr``); gloo on CPU, NCCL on CUDA, only rank 0 writes.
"""

from __future__ import annotations

from ._options import add_compute_options, apply_threads, show_defaults


#: Its line in ``rfmweb --help``.
HELP = "train the Neumours INR tumour segmenter on BraTS-style cases"


def add_parser(sub) -> None:
    p = sub.add_parser("train-inr", help=HELP)
    p.add_argument("cases", metavar="CASES_DIR", help="folder of BraTS-style case folders with -seg files")
    p.add_argument("--out", required=True, help="run folder (checkpoint.pt, model.pt, log.csv, curves.png)")
    p.add_argument("--val", metavar="VAL_DIR", help="folder of validation cases (default: training cases)")
    p.add_argument("--optimizer", choices=["adamw", "muon"], default="adamw")
    p.add_argument("--steps", type=int, default=10_000, help="optimisation steps (the cosine schedule spans them)")
    p.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    p.add_argument("--device", help="cpu or cuda (default: CUDA when available)")
    p.add_argument("--precision", choices=["fp32", "bf16"], default="fp32",
                   help="forward-pass precision (default fp32)")
    p.add_argument("--batch", type=int, default=16_384, help="coordinates per step")
    p.add_argument("--micro-batches", type=int, default=4, help="gradient-accumulation chunks per step")
    p.add_argument("--warmup", type=int, default=100, help="linear warm-up steps")
    p.add_argument("--checkpoint-every", type=int, default=250, metavar="K")
    p.add_argument("--val-every", type=int, default=250, metavar="K")
    p.add_argument("--log-every", type=int, default=10, metavar="K", help="CSV log interval")
    p.add_argument("--max-val-cases", type=int, default=4, help="validation cases (0: no validation)")
    p.add_argument("--seed", type=int, default=0)
    add_compute_options(p, "torch intra-op threads per process")
    show_defaults(p)
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..inr.train import TrainConfig, train

    apply_threads(args, args.device)
    config = TrainConfig(cases=args.cases, out=args.out, val=args.val, optimizer=args.optimizer, steps=args.steps,
                         resume=args.resume, device=args.device, precision=args.precision, batch=args.batch,
                         micro_batches=args.micro_batches, warmup=args.warmup,
                         checkpoint_every=args.checkpoint_every, val_every=args.val_every, log_every=args.log_every,
                         max_val_cases=args.max_val_cases, seed=args.seed, progress=not args.no_progress)
    train(config)
