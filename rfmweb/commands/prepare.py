"""``rfmweb prepare``: Render-FM's one network pass from a CT (+ labels + TF) to 6D Gaussian splats.

Usage::

    rfmweb prepare ct.nii.gz [--labels labels.nii.gz] [--preset CT-Bone | --tf tf.json] [--hide CLASS]
                   [--checkpoint model.pt] [--device cpu|cuda] [--no-agp] --out splats.npz [--report r.json]

The output is a splat file (``.npz``, or a 6D ``.ply`` in the 6DGS authors' convention) that
``rfmweb serve --splats``, ``evaluate-splats`` and ``finetune`` read. The log and the report give the
time of each stage (``input``, ``network``, ``decode``, ``transfer``; ``prepare_s`` for the whole,
model loading excluded and reported apart as ``load_s``).
"""

from __future__ import annotations

import logging
import time

from ..errors import InputError, about
from ._options import LABELS_HELP, add_series_option, add_style_options, doc_description, tf_from_args

log = logging.getLogger("rfmweb")


#: Its line in ``rfmweb --help``.
HELP = "Render-FM: one network pass from a CT to 6D Gaussian splats"


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help=HELP,
                       description=doc_description(__doc__))
    p.add_argument("volume", help="a .nii/.nii.gz/.nrrd/.mha file, a DICOM series folder or .zip, a BraTS case "
                                  "folder, or sample:NAME")
    add_series_option(p)
    p.add_argument("--out", required=True, help="splat file to write (.npz or .ply)")
    p.add_argument("--labels", help=f"{LABELS_HELP}: class colours and the foreground mask")
    add_style_options(p)
    p.add_argument("--checkpoint", help="Render-FM model file (default: the shipped rfmweb/weights/renderfm.pt)")
    p.add_argument("--device", metavar="cpu|cuda", help="where the network runs (default: CUDA when available)")
    p.add_argument("--no-agp", action="store_true", help="a splat for every half-resolution voxel (ablation)")
    p.add_argument("--report", help="write a JSON report (timings, splat count, model)")
    p.set_defaults(run=run)


def scene_from_args(args):
    """The :class:`~rfmweb.render.Scene` of ``volume``/``--labels``/``--preset``/``--tf``/``--hide``."""
    from ..io import open_volume
    from ..render.scene import Scene
    from ..transfer import ClassTable
    from .views import hide_classes

    volume = open_volume(args.volume, args.labels, series=args.series)
    tf, _ = tf_from_args(args, volume)
    return Scene(volume, tf, hide_classes(ClassTable.from_classes(volume.classes), args.hide))


def save_splats(splats, path) -> None:
    """Write ``.npz`` (:meth:`Splats6D.save`) or a 6D ``.ply`` (:func:`rfmweb.splats.ply6d.write_ply6d`)."""
    if str(path).lower().endswith(".ply"):
        from ..splats.ply6d import write_ply6d
        write_ply6d(path, splats)
    else:
        splats.save(path)


def run(args) -> dict:
    import dataclasses

    import torch

    from ..backend import parse_device
    from ..io.atomic import check_output
    from ..renderfm.model import describe, load_model, predict
    from ..splats.fit import write_json

    if not str(args.out).lower().endswith((".npz", ".ply")):
        raise InputError("output must end in .npz or .ply", args.out)
    if args.report and not str(args.report).lower().endswith(".json"):
        raise InputError("report must end in .json", args.report)
    for path in (args.out, args.report):
        if path:
            check_output(path)
    device = parse_device(args.device)
    t = time.perf_counter()
    model = load_model(args.checkpoint, device)
    if args.no_agp:
        model.config = dataclasses.replace(model.config, agp=False)
    load_s = time.perf_counter() - t
    scene = scene_from_args(args)
    with about(args.volume):
        predict(model, scene, device=device, out_device="cpu") if device.type == "cuda" else None   # warm-up (CUDA)
        pred = predict(model, scene, device=device, out_device="cpu")
    save_splats(pred.splats, args.out)
    log.info("wrote %s: %d splats", args.out, len(pred.splats))
    if pred.unlabelled_note:
        log.warning("%s", pred.unlabelled_note)
    report = {"format": "rfmweb.prepare.report/1", "volume": str(args.volume), "labels": args.labels,
              "tf": scene.tf.name, "hidden_classes": list(scene.classes.hidden), "out": str(args.out),
              "checkpoint": str(args.checkpoint or "shipped"), "device": str(device),
              "threads": torch.get_num_threads(), "n_splats": len(pred.splats), "working_grid": list(pred.grid),
              "unlabelled": round(pred.unlabelled, 4),
              "load_s": round(load_s, 4), **pred.timings, "model": describe(model)}
    if args.report:
        write_json(args.report, report)
        log.info("wrote %s", args.report)
    return report
