"""``rfmweb render``: a still of a volume (or a splat file) to a PNG/JPEG file, no browser needed: by
default what the viewer shows once the camera rests (the ray-marchers' and VTK's jittered frames
averaged, :data:`~rfmweb.session.stream.CONVERGE_FRAMES` of them)."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from ..errors import InputError
from ._options import LABELS_HELP, add_series_option, check_view_angles

log = logging.getLogger("rfmweb")


#: Its line in ``rfmweb --help``.
HELP = "render one frame of a volume to a PNG/JPEG file, no browser needed"


def add_parser(sub) -> None:
    from ..render.registry import all_renderer_names
    from ..session.stream import CONVERGE_FRAMES
    from ..transfer import PRESETS

    p = sub.add_parser("render", help=HELP)
    p.add_argument("volume", help="a .nii/.nii.gz/.nrrd/.mha file, a DICOM series folder or .zip, a BraTS case "
                                  "folder, sample:NAME, or a splat .npz / 6D .ply (from fit-6dgs, prepare; "
                                  "rendered with --renderer splats)")
    add_series_option(p)
    p.add_argument("--splats", help="splat .npz / 6D .ply of the same anatomy, for --renderer splats beside a volume")
    p.add_argument("--out", required=True, help="output image (.png or .jpg)")
    p.add_argument("--labels", help=LABELS_HELP)
    p.add_argument("--renderer", choices=all_renderer_names(),
                   help="renderer (default: the viewer's, the compiled ray-marcher on a CPU with numba, raymarch "
                        "on CUDA); one whose package is not installed says what to install")
    p.add_argument("--frames", type=int, default=CONVERGE_FRAMES,
                   help=f"jittered frames averaged, as the viewer at rest (default {CONVERGE_FRAMES}; 1: a single "
                        "frame; splats draw one whatever this says)")
    p.add_argument("--preset", choices=list(PRESETS), help="transfer-function preset (default per modality)")
    p.add_argument("--tf", help="ParaView colour-map JSON to use instead of a preset")
    p.add_argument("--azimuth", type=float, default=0.0,
                   help="degrees about the superior axis; 0 = anterior view (default 0)")
    p.add_argument("--elevation", type=float, default=20.0,
                   help="degrees above the axial plane, -90..90 (default 20: a little from above)")
    p.add_argument("--size", type=int, default=512, help="image width and height in pixels (default 512)")
    p.add_argument("--hide", action="append", default=[], metavar="CLASS_OR_GROUP",
                   help="hide a label class (name or value) or a group such as skeleton; repeatable")
    p.add_argument("--class-colors", action="store_true", help="colour voxels by their label class")
    p.add_argument("--scene", metavar="JSON", help="a scene file (the viewer's 'Save scene'): its preset, classes, "
                                                 "camera, view mode, slices and annotations win over the options above")
    p.set_defaults(run=_run_render)


def _run_render(args) -> None:
    from ..io import atomic_write
    from ..io.atomic import check_output
    from ..render.registry import check_renderer
    from ..render.scene import nothing_to_draw
    from ..session import RenderSession, encode_image
    from ..session.sources import open_sources
    from ..transfer import load_paraview_json

    out = Path(args.out)
    fmt = {".png": "png", ".jpg": "jpeg", ".jpeg": "jpeg"}.get(out.suffix.lower())
    if fmt is None:
        raise InputError("output must end in .png, .jpg or .jpeg", out)
    check_output(out)
    if not 16 <= args.size <= 4096:
        raise InputError(f"--size must lie in 16..4096, got {args.size}")
    if not 1 <= args.frames <= 1024:
        raise InputError(f"--frames must lie in 1..1024, got {args.frames}")
    check_view_angles(args)
    if args.renderer is not None:
        check_renderer(args.renderer)  # before loading: a missing package is named at once
    volume, splats = open_sources(args.volume, args.labels, args.splats, series=args.series)
    if volume is None:
        # classes carried by the splats can be hidden (as in the viewer); their colours are the file's
        given = [o for o, v in (("--preset", args.preset), ("--tf", args.tf), ("--class-colors", args.class_colors),
                                ("--hide", args.hide and splats.labels is None)) if v]
        if given:
            raise InputError(f"{', '.join(given)} cannot change a splat file: its colours and opacities were "
                             "fixed when it was made (prepare, fit-6dgs); render the volume instead", args.volume)
    session = RenderSession(volume, splats=splats, renderer=args.renderer, preset=args.preset, width=args.size,
                            height=args.size)
    if args.tf:
        session.set_tf(load_paraview_json(args.tf))
    for name in args.hide:
        _hide(session, name)
    if args.class_colors:
        session.set_class_colors(True)
    session.set_camera(replace(session.home_camera(), azimuth=args.azimuth, elevation=args.elevation))
    if args.scene:
        from ..session.scene_file import apply_scene, read_scene

        apply_scene(session, read_scene(args.scene), args.scene)
    snap = session.snapshot()
    empty = nothing_to_draw(snap.scene) if snap.mode == "3d" else None
    if empty is not None:
        log.warning("%s", empty)                     # the picture would be black with no word why
    passes = session.progressive(snap, args.frames, 1) if args.frames > 1 else None
    if passes is None:
        image, frames = session.render(), 1
    else:
        *_, (image, frames) = passes          # the mean of the frames, as the viewer shows it at rest
    data = encode_image(image, fmt)
    atomic_write(out, lambda tmp: Path(tmp).write_bytes(data))
    note = session.note(snap) if empty is None else ""        # e.g. what Render-FM left out
    session.close()
    if note:
        log.info("%s", note)
    log.info("wrote %s (%dx%d, %s, %s, %d frame%s)", out, image.shape[1], image.shape[0], snap.renderer,
             "colours of the splat file" if snap.renderer == "splats" else session.preset_name, frames,
             "" if frames == 1 else "s")


def _hide(session, name: str) -> None:
    styles = session.classes.styles
    if name in session.classes.groups:
        session.set_group_visible(name, False)
        return
    for s in styles:
        if s.name == name or str(s.index) == name:
            session.set_class(s.index, visible=False)
            return
    choices = sorted(session.classes.groups) + [s.name for s in styles]
    raise InputError(f"--hide {name!r}: no such class or group; choose from {choices}" if choices
                     else f"--hide {name!r}: the volume has no label classes")
