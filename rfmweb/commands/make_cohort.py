"""``rfmweb make-cohort``: write a synthetic BraTS-style glioma cohort (train / val / postop).

What varies from case to case, and how much, is documented in :mod:`rfmweb.data.cohort`.
"""

from __future__ import annotations

from ..errors import InputError


#: Its line in ``rfmweb --help``.
HELP = "write a synthetic BraTS-style glioma cohort (case folders + cohort.json)"


def add_parser(sub) -> None:
    p = sub.add_parser("make-cohort", help=HELP)
    p.add_argument("--out", required=True, help="output folder (resumable: complete cases are skipped)")
    p.add_argument("--n", type=int, required=True, help="number of cases")
    p.add_argument("--split", choices=["train", "val", "postop"], default="train",
                   help="train / val: pre-operative gliomas; postop: resection cavities, blood products, "
                        "little necrosis")
    p.add_argument("--seed", type=int, default=0, help="cohort seed (default 0; splits use disjoint random streams)")
    p.add_argument("--resolution", type=float, default=1.0, metavar="MM", help="isotropic voxel size in mm (default 1)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes generating cases at once (the cases do not depend on it)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..data.cohort import make_cohort
    from ..extras import require

    if args.n < 1:
        raise InputError(f"--n must be >= 1, got {args.n}")
    require("mni")  # the cohort is painted into nilearn's MNI152 template
    make_cohort(args.out, args.n, args.split, args.seed, args.resolution, progress=not args.no_progress,
                workers=args.workers)
