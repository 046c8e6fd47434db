"""``rfmweb export-ply``: the 3-D Gaussians of a 6D splat file, sliced for one view, as a 3DGS .ply."""

from __future__ import annotations

import logging
from dataclasses import replace

from ..errors import InputError

log = logging.getLogger("rfmweb")


def add_parser(sub) -> None:
    p = sub.add_parser("export-ply", help="slice 6D splats for a view direction and write a standard 3DGS .ply")
    p.add_argument("splats", help="splat .npz (from fit-6dgs or Render-FM)")
    p.add_argument("--out", required=True, help="output .ply")
    p.add_argument("--azimuth", type=float, default=0.0, help="degrees about the superior axis; 0 = anterior view")
    p.add_argument("--elevation", type=float, default=20.0, help="degrees above the axial plane")
    p.add_argument("--sh-degree", type=int, choices=(0, 1), default=1,
                   help="1: keep the SH coefficients; 0: bake the colour seen from this view")
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..session import RenderSession
    from ..splats import Splats6D
    from ..splats.ply import export_ply

    if not str(args.out).lower().endswith(".ply"):
        raise InputError("output must end in .ply", args.out)
    splats = Splats6D.load(args.splats)
    camera = replace(RenderSession(splats=splats).home_camera(), azimuth=args.azimuth, elevation=args.elevation)
    export_ply(args.out, splats, camera.position, sh_degree=args.sh_degree)
    log.info("wrote %s: %d Gaussians seen from azimuth %.0f, elevation %.0f", args.out, len(splats),
             args.azimuth, args.elevation)
