"""``rfmweb export-ply``: a 6D splat file as a ``.ply``.

By default the 3-D Gaussians of the splats sliced for one view, as a standard 3DGS ``.ply``
(:func:`rfmweb.splats.export_ply`, for any 3DGS viewer). With ``--6d`` the 6D splats themselves,
in the 6DGS authors' layout (:mod:`rfmweb.splats.ply6d`: reads back exactly, labels included);
``--azimuth`` / ``--elevation`` / ``--sh-degree`` do not apply then.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from ..errors import InputError
from ._options import check_view_angles

log = logging.getLogger("rfmweb")


#: Its line in ``rfmweb --help``.
HELP = ("slice 6D splats for a view direction and write a standard 3DGS .ply (or, with --6d, write the "
        "6D splats themselves)")


def add_parser(sub) -> None:
    p = sub.add_parser("export-ply", help=HELP)
    p.add_argument("splats", help="splat .npz (from fit-6dgs or Render-FM) or a 6D .ply")
    p.add_argument("--out", required=True, help="output .ply")
    p.add_argument("--6d", dest="six_d", action="store_true",
                   help="write the 6D splats (6DGS / ndsplat layout: x y z, nx ny nz = direction mean, SH, opacity, "
                        "diags_0..5, l_triangs_0..14, label) instead of one view's 3D Gaussians")
    p.add_argument("--azimuth", type=float, default=0.0, help="degrees about the superior axis; 0 = anterior view")
    p.add_argument("--elevation", type=float, default=20.0, help="degrees above the axial plane")
    p.add_argument("--sh-degree", type=int, choices=(0, 1), default=1,
                   help="1: keep the SH coefficients; 0: bake the colour seen from this view")
    p.set_defaults(run=_run)


def _run(args) -> None:
    from ..io.atomic import check_output
    from ..session import RenderSession
    from ..splats.ply import export_ply
    from ..splats.ply6d import read_splats, write_ply6d

    if not str(args.out).lower().endswith(".ply"):
        raise InputError("output must end in .ply", args.out)
    check_view_angles(args)
    check_output(args.out)
    splats = read_splats(args.splats)
    if getattr(args, "six_d", False):
        write_ply6d(args.out, splats)
        log.info("wrote %s: %d 6D splats%s", args.out, len(splats), " with labels" if splats.labels is not None else "")
        return
    camera = replace(RenderSession(splats=splats).home_camera(), azimuth=args.azimuth, elevation=args.elevation)
    export_ply(args.out, splats, camera.position, sh_degree=args.sh_degree)
    log.info("wrote %s: %d Gaussians seen from azimuth %.0f, elevation %.0f", args.out, len(splats),
             args.azimuth, args.elevation)
