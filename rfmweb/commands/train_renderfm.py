"""``rfmweb train-renderfm --config cfg.toml``: train Render-FM on generated anatomy (see
:mod:`rfmweb.renderfm.train`); ``torchrun --nproc_per_node N -m rfmweb train-renderfm ...`` for DDP.

Every key of the TOML file is optional::

    [model]   features = [16, 32, 64, 128], spacing_mm = 1.5, eps = 0.01, agp = true
    [data]    kinds = ["head", "torso"], spacing_mm = [1.5, 3.0], views_per_scan = 4, view_size = 128,
              seed = 0, cache_dir = "gt_cache", workers = 0
    [train]   out = "renderfm_run", steps = 1000, scans_per_step = 2, lr = 1e-3, lr_final = 1e-4,
              warmup = 50, checkpoint_every = 100, device = "cuda", bf16 = true, time_limit_s = 600

A rerun with the same ``[train] out`` resumes from its ``checkpoint.pt``.
"""

from __future__ import annotations

import logging

from ._options import add_compute_options, apply_threads, doc_description

log = logging.getLogger("rfmweb")


#: Its line in ``rfmweb --help``.
HELP = "train Render-FM (CT -> 6D splats) on generated anatomy"


def add_parser(sub) -> None:
    p = sub.add_parser("train-renderfm", help=HELP,
                       description=doc_description(__doc__))
    p.add_argument("--config", required=True, help="TOML file with [model], [data] and [train] sections")
    p.add_argument("--steps", type=int, help="override [train] steps")
    p.add_argument("--out", help="override [train] out")
    p.add_argument("--time-limit-s", type=float, help="override [train] time_limit_s: stop (after a checkpoint) "
                                                      "once this many seconds have passed; a rerun continues")
    p.add_argument("--init", help="override [train] init: a Render-FM model file a new run starts from")
    p.add_argument("--cache-dir", help="override [data] cache_dir (ground-truth cache)")
    p.add_argument("--workers", type=int, help="override [data] workers")
    add_compute_options(p)
    p.set_defaults(run=run)


def run(args) -> dict:
    import dataclasses

    from ..renderfm.train import load_config, train

    config = load_config(args.config)
    apply_threads(args, config.train.device)
    overrides = (("steps", args.steps), ("out", args.out), ("time_limit_s", args.time_limit_s), ("init", args.init))
    train_changes = {k: v for k, v in overrides if v is not None}
    data = {k: v for k, v in (("cache_dir", args.cache_dir), ("workers", args.workers)) if v is not None}
    config = dataclasses.replace(config, train=dataclasses.replace(config.train, **train_changes),
                                 data=dataclasses.replace(config.data, **data))
    summary = train(config, progress=not args.no_progress)
    log.info("train-renderfm: step %d of %d in %.1f s -> %s", summary["step"], summary["steps"], summary["seconds"],
             summary["out"])
    return summary
