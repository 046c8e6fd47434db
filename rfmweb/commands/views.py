"""``rfmweb views``: render an orbit of ground-truth views of a volume, the training input of ``fit-6dgs``.

Usage::

    rfmweb views VOLUME --out DIR [--renderer raymarch|pathtrace|vtk] [--quality reference|full] [--n 20]
                 [--size 256] [--labels L] [--preset P] [--hide CLASS_OR_GROUP] [--spp N] [--seed S]
                 [--holdout K] [--light world|camera] [--overwrite]

Views look at the centre of the volume's bounding box from directions spread evenly over the band
of elevations [-60, 75] degrees (a Fibonacci spiral: equal-area steps in ``sin(elevation)``, golden-
angle steps in azimuth, rotated by an azimuth drawn from ``--seed``), all at one distance that
keeps the whole box in view (``OrbitCamera.framing``, fov 30 degrees, square images). ``--holdout K``
marks K evenly spaced views as ``"test"``, the rest ``"train"``.

Output folder (every file written atomically; format ``rfmweb-views/1``)::

    DIR/view_000.png ...   sRGB uint8 RGB images, --size x --size, black background
    DIR/cameras.json       the cameras (below)
    DIR/tf.json            the transfer function as a ParaView colour-map JSON (rfmweb.transfer.load_paraview_json)
    DIR/scene.json         what was rendered: "volume" (sample:NAME, or a fingerprint of the voxels and
                           their affine: never a path), "labels" (the same), "name", "shape", "bounds",
                           "preset", "tf" (= tf.json), "tf_settings" (what ParaView JSON cannot hold:
                           unit distance, shading, gradient opacity), "hidden_classes" (label values)
                           and "hidden_class_names", "renderer", "quality" (raymarch, else null), "spp"
                           (pathtrace, else null), "seed",
                           "lighting" (pathtrace), "n", "size", "fov", "holdout", "background",
                           "rfmweb_version"

``cameras.json``::

    {"format": "rfmweb-views/1",
     "convention": "...",            # world RAS+ mm; OpenCV camera axes
     "width": W, "height": H, "fov": 30.0, "target": [x, y, z], "distance": d,
     "views": [{"file": "view_000.png", "split": "train" | "test",
                "viewmat": [[4 x 4]],   # world -> camera: x_cam = R x_world + t; +x right, +y down, +z forward
                "K": [[3 x 3]],         # pinhole intrinsics, pixels; pixel (u, v) centre at (u + 0.5, v + 0.5)
                "width": W, "height": H,
                "azimuth": deg, "elevation": deg, "distance": mm, "fov": deg, "target": [x, y, z]}, ...]}

``OrbitCamera(**{k: view[k] for k in ("target", "azimuth", "elevation", "distance", "fov", "width",
"height")})`` rebuilds a view's camera exactly; so does ``OrbitCamera.from_viewmat(viewmat, K, width,
height, distance)``. The matrices are the ones gsplat takes (``viewmats``, ``Ks``).

Resuming: a rerun with the same settings skips every view whose PNG exists and whose camera in
``cameras.json`` is the same; other settings in an existing folder are refused unless
``--overwrite`` (which re-renders everything and removes stale ``view_*.png``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ..errors import InputError
from ._options import LABELS_HELP, add_series_option, add_style_options, doc_description, tf_from_args

log = logging.getLogger("rfmweb")

FORMAT = "rfmweb-views/1"
RENDERERS = ("raymarch", "pathtrace", "vtk")
CONVENTION = ("world RAS+ mm; viewmat maps world to camera (x_cam = R x_world + t) with OpenCV axes "
              "(+x right, +y down, +z forward); K is the pinhole intrinsic matrix in pixels, principal point at "
              "the image centre, pixel (u, v) centred at (u + 0.5, v + 0.5)")
DEFAULT_SPP = 64
#: scene.json keys that must match for a rerun to resume (anything else is informational).
SETTINGS = ("volume", "labels", "series", "preset", "tf", "hidden_classes", "renderer", "quality", "spp", "seed",
            "lighting", "n", "size", "fov", "holdout", "elevation_range")
#: ``--quality``: the ray-marcher's sampling (ground truth by default; ``full`` is the viewer's idle frame).
QUALITIES = ("reference", "full")


#: Its line in ``rfmweb --help``.
HELP = "render an orbit of views with cameras.json (input of fit-6dgs)"


def add_parser(sub) -> None:
    from ..extras import hint

    p = sub.add_parser("views", help=HELP,
                       description=doc_description(__doc__))
    p.add_argument("volume", help="a .nii/.nii.gz/.nrrd/.mha file, a DICOM series folder or .zip, a BraTS case "
                                  "folder, or sample:NAME")
    add_series_option(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--renderer", choices=RENDERERS, default="raymarch",
                   help=f"renderer (default raymarch: the ray-marcher, drawn by its fastest twin here, e.g. "
                        f"'compiled' on a CPU, as the log says); {hint('pathtrace')}")
    p.add_argument("--quality", choices=QUALITIES, default="reference",
                   help="raymarch: 'reference' (default: quarter-voxel step, 8 jittered frames averaged, "
                        "cubic B-spline reads; "
                        "within SSIM 0.99 of 4x the samples) or 'full' (the viewer's half-voxel step, one frame)")
    p.add_argument("--n", type=int, default=20, help="number of views (default 20)")
    p.add_argument("--size", type=int, default=256, help="image width and height in pixels (default 256)")
    p.add_argument("--labels", help=LABELS_HELP)
    add_style_options(p)
    p.add_argument("--spp", type=int, help=f"samples per pixel, pathtrace only (default {DEFAULT_SPP})")
    p.add_argument("--seed", type=int, default=0, help="seed of the view directions and the path tracer's noise")
    p.add_argument("--holdout", type=int, default=0, metavar="K", help="mark K evenly spaced views as test views")
    p.add_argument("--light", choices=("world", "camera"), default="world",
                   help="pathtrace: key light fixed in the room (default: views agree) or following the camera")
    p.add_argument("--overwrite", action="store_true", help="re-render everything, whatever the folder holds")
    p.set_defaults(run=run_views)


# -- cameras ----------------------------------------------------------------------------------
def holdout_indices(n: int, k: int) -> set[int]:
    """``k`` evenly spaced view indices out of ``n`` (the test split)."""
    return {min(n - 1, int((j + 0.5) * n / k)) for j in range(k)} if k else set()


def camera_record(file: str, camera, split: str) -> dict:
    """One entry of ``cameras.json``."""
    return {"file": file, "split": split, "viewmat": camera.viewmat.tolist(), "K": camera.K.tolist(),
            "width": camera.width, "height": camera.height, "azimuth": camera.azimuth,
            "elevation": camera.elevation, "distance": camera.distance, "fov": camera.fov,
            "target": list(camera.target)}


def load_cameras(path: str | Path) -> list[dict]:
    """The ``views`` of a ``cameras.json`` (checked: format, matrices' shapes)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read cameras ({exc})", path) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT or not isinstance(data.get("views"), list):
        raise InputError(f"not an {FORMAT} cameras file", path)
    for v in data["views"]:
        if np.asarray(v.get("viewmat")).shape != (4, 4) or np.asarray(v.get("K")).shape != (3, 3):
            raise InputError(f"view {v.get('file')!r}: viewmat must be 4x4 and K 3x3", path)
    return data["views"]


def _same_camera(old: dict | None, new: dict) -> bool:
    if old is None:
        return False
    try:
        return (old["width"], old["height"]) == (new["width"], new["height"]) and \
            np.allclose(old["viewmat"], new["viewmat"], rtol=0, atol=1e-9) and \
            np.allclose(old["K"], new["K"], rtol=0, atol=1e-9)
    except (KeyError, TypeError, ValueError):
        return False


# -- the command ------------------------------------------------------------------------------
def _spec(value: str | None, *arrays: np.ndarray) -> str | None:
    """A volume/labels argument as recorded: ``sample:NAME`` as given; for a file, a fingerprint of
    what was read (``arrays``), never its path (folder and file names are often patient IDs), so
    the same scan moved or re-exported still resumes."""
    if value is None or value.startswith("sample:"):
        return value
    digest = hashlib.blake2b(digest_size=16)
    for a in arrays:
        a = np.ascontiguousarray(a)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.data)
    return f"blake2b:{digest.hexdigest()}"


def _check_args(args) -> None:
    from ..render.registry import check_renderer

    if not 1 <= args.n <= 10000:
        raise InputError(f"--n must lie in 1..10000, got {args.n}")
    if not 16 <= args.size <= 4096:
        raise InputError(f"--size must lie in 16..4096, got {args.size}")
    if not 0 <= args.holdout < args.n:
        raise InputError(f"--holdout must lie in 0..{args.n - 1} (fewer than --n views), got {args.holdout}")
    if args.spp is not None and not 1 <= args.spp <= 65536:
        raise InputError(f"--spp must lie in 1..65536, got {args.spp}")
    if args.spp is not None and args.renderer != "pathtrace":
        raise InputError(f"--spp applies to --renderer pathtrace only, not {args.renderer}")
    check_renderer(args.renderer)  # before loading: a missing package is named at once
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError("--out must be a folder, but a file is there", out)


def hide_classes(classes, names: list[str]):
    """``classes`` with the classes or groups named in ``names`` (``--hide``) hidden."""
    for name in names:
        if name in classes.groups:
            classes = classes.set_group_visible(name, False)
            continue
        match = [s for s in classes.styles if s.name == name or str(s.index) == name]
        if not match:
            choices = sorted(classes.groups) + [s.name for s in classes.styles]
            raise InputError(f"--hide {name!r}: no such class or group; choose from {choices}" if choices
                             else f"--hide {name!r}: the volume has no label classes")
        classes = classes.updated(match[0].index, visible=False)
    return classes


def _make_renderer(args, lighting):
    if args.renderer == "pathtrace":
        from ..render.pathtrace import PathTracer

        return PathTracer(spp=args.spp or DEFAULT_SPP, seed=args.seed, lighting=lighting)
    from ..backend import marcher_renderer
    from ..render.registry import make_renderer

    # the ray-marcher's images come from its fastest twin here (compiled on a CPU: equal within 1e-3)
    return make_renderer(marcher_renderer() if args.renderer == "raymarch" else args.renderer)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read ({exc}); use --overwrite to start afresh", path) from None


def run_views(args) -> None:
    """Render the views (see the module docstring); returns when every view is on disk."""
    import importlib.metadata

    from PIL import Image
    from tqdm import tqdm

    from ..camera import ELEVATION_RANGE, FOV, orbit_cameras   # here: torch, seconds for `rfmweb --help`
    from ..io import atomic_write, open_volume
    from ..render.pathtrace import WORLD_LIGHTING, Lighting
    from ..render.scene import FULL, REFERENCE, Scene
    from ..transfer import ClassTable, tf_to_paraview

    _check_args(args)
    out = Path(args.out)
    volume = open_volume(args.volume, args.labels, series=args.series)
    tf, preset_name = tf_from_args(args, volume)
    classes = hide_classes(ClassTable.from_classes(volume.classes), args.hide)
    scene = Scene(volume, tf, classes)
    lighting = (WORLD_LIGHTING if args.light == "world" else Lighting()) if args.renderer == "pathtrace" else None
    quality = REFERENCE if args.renderer == "raymarch" and args.quality == "reference" else FULL
    try:
        version = importlib.metadata.version("rfmweb")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    record = {
        "format": FORMAT,
        "volume": _spec(args.volume, volume.data, np.round(volume.affine, 4)),
        "labels": _spec(args.labels, volume.labels),  # --labels given: the volume has them
        "series": args.series, "name": volume.name,
        "modality": volume.modality, "shape": list(volume.shape), "spacing": list(volume.spacing),
        "bounds": volume.bounds.tolist(),
        "preset": preset_name, "tf": tf_to_paraview(tf),
        "tf_settings": {"unit_distance": tf.unit_distance, "shading": asdict(tf.shading),
                        "gradient_opacity": [list(p) for p in tf.gradient_opacity]},
        "hidden_classes": [s.index for s in classes.styles if not s.visible],
        "hidden_class_names": [s.name for s in classes.styles if not s.visible],
        "renderer": args.renderer, "quality": args.quality if args.renderer == "raymarch" else None, "spp": (args.spp or DEFAULT_SPP) if args.renderer == "pathtrace" else None,
        "seed": args.seed, "lighting": asdict(lighting) if lighting else None,
        "n": args.n, "size": args.size, "fov": FOV, "holdout": args.holdout,
        "elevation_range": list(ELEVATION_RANGE), "background": [0.0, 0.0, 0.0], "rfmweb_version": version,
    }
    record = json.loads(json.dumps(record))          # exactly what a rerun will read back

    digits = max(3, len(str(args.n - 1)))
    cameras = orbit_cameras(volume.bounds, args.n, args.size, args.seed)
    test = holdout_indices(args.n, args.holdout)
    views = [camera_record(f"view_{i:0{digits}d}.png", cam, "test" if i in test else "train")
             for i, cam in enumerate(cameras)]
    views = json.loads(json.dumps(views))

    old_views: dict[str, dict] = {}
    scene_path, cams_path = out / "scene.json", out / "cameras.json"
    if out.is_dir() and not args.overwrite:
        if scene_path.exists():
            old = _read_json(scene_path)
            changed = [k for k in SETTINGS if not isinstance(old, dict) or old.get(k) != record[k]]
            if changed:
                what = ", ".join(f"{k} {old.get(k)!r} -> {record[k]!r}" if k != "tf" else "tf" for k in changed) \
                    if isinstance(old, dict) else "not a scene.json"
                raise InputError(f"holds views rendered with other settings ({what}); "
                                 "use --overwrite to replace them or choose another --out", out)
            if cams_path.exists():
                old_views = {v["file"]: v for v in load_cameras(cams_path) if isinstance(v, dict) and "file" in v}
        elif any(out.glob("view_*.png")):
            raise InputError("holds view_*.png files but no scene.json; use --overwrite or choose another --out", out)
    if args.overwrite and out.is_dir():
        keep = {v["file"] for v in views}
        for stale in out.glob("view_*.png"):
            if stale.name not in keep:
                stale.unlink()

    def dump(obj) -> str:
        """Indented JSON with each view (and the TF) on one line: diffable, and short."""
        head = {k: v for k, v in obj.items() if k != "views"}
        text = json.dumps(head, indent=1)
        if "views" not in obj:
            return text + "\n"
        rows = ",\n  ".join(json.dumps(v) for v in obj["views"])
        return text[:-2] + f',\n "views": [\n  {rows}\n ]\n}}\n'

    atomic_write(scene_path, lambda tmp: Path(tmp).write_text(dump(record)))
    atomic_write(out / "tf.json", lambda tmp: Path(tmp).write_text(json.dumps([record["tf"]], indent=1)))
    cams_doc = {"format": FORMAT, "convention": CONVENTION, "width": args.size, "height": args.size, "fov": FOV,
                "target": views[0]["target"], "distance": views[0]["distance"], "views": views}
    atomic_write(cams_path, lambda tmp: Path(tmp).write_text(dump(cams_doc)))

    todo = [i for i, v in enumerate(views)
            if args.overwrite or not (out / v["file"]).exists() or not _same_camera(old_views.get(v["file"]), v)]
    skipped = args.n - len(todo)
    renderer = _make_renderer(args, lighting) if todo else None
    log.info("views of %s (%s, %s): %d to render, %d already in %s", volume.name or args.volume,
             getattr(renderer, "name", args.renderer), preset_name, len(todo), skipped, out)
    with tqdm(total=args.n, initial=skipped, desc=f"{args.renderer} views", unit="view", disable=None) as bar:
        for i in todo:
            if args.renderer == "pathtrace":
                renderer.seed = (args.seed << 20) + i          # independent noise in every view
            image = renderer.render(scene, cameras[i], quality)
            atomic_write(out / views[i]["file"], lambda tmp, im=image: Image.fromarray(im).save(tmp, format="PNG"))
            bar.update(1)
    if renderer is not None and hasattr(renderer, "close"):
        renderer.close()
    log.info("wrote %d views (%d train, %d test) to %s", args.n, args.n - len(test), len(test), out)
