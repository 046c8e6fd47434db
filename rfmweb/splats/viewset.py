"""Posed training views for per-scan fitting: a views folder (``rfmweb views``) read back.

A views folder holds ``cameras.json`` (per view ``file``, ``viewmat`` 4x4, ``K`` 3x3, ``width``,
``height``, ``split`` "train"/"test"), the PNGs, ``tf.json`` (ParaView) and ``scene.json`` (volume,
preset, renderer, hidden classes, ``tf_settings``). :func:`load_views` reads it into a
:class:`ViewSet`; :func:`scene_for_views` rebuilds the scene the views were rendered from and
:func:`initial_splats` the splats a fit starts from.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import InputError
from .model import Splats6D

INITS = ("agp", "random")
#: Views smaller than the SSIM window (11 px) cannot be scored.
SSIM_WINDOW = 11

@dataclass
class Views:
    """V posed images of one size (OpenCV pinhole cameras, :mod:`rfmweb.camera`).

    Attributes:
        images: ``[V, H, W, 3]`` float32 sRGB in [0, 1].
        viewmats: ``[V, 4, 4]`` world-to-camera. Ks: ``[V, 3, 3]`` intrinsics (pixels).
        names: image file names, for reports.
    """

    images: torch.Tensor  # [V, H, W, 3]
    viewmats: torch.Tensor  # [V, 4, 4]
    Ks: torch.Tensor  # [V, 3, 3]  # noqa: N815
    names: tuple[str, ...]

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def width(self) -> int:
        return self.images.shape[2]

    @property
    def height(self) -> int:
        return self.images.shape[1]

    @property
    def centres(self) -> torch.Tensor:
        """``[V, 3]`` camera centres, world mm (``-R^T t``)."""
        r, t = self.viewmats[:, :3, :3], self.viewmats[:, :3, 3]
        return -(r.transpose(-1, -2) @ t[..., None])[..., 0]

    def to(self, device) -> "Views":
        return Views(self.images.to(device), self.viewmats.to(device), self.Ks.to(device), self.names)

    def subset(self, idx) -> "Views":
        idx = torch.as_tensor(idx, dtype=torch.long)
        return Views(self.images[idx], self.viewmats[idx], self.Ks[idx], tuple(self.names[int(i)] for i in idx))

    def resized(self, width: int) -> "Views":
        """The same views ``width`` pixels wide (height keeps the aspect ratio), K rescaled.

        Integer down-scaling averages pixel blocks (a camera with bigger pixels); other factors use
        antialiased bilinear resampling. Pixel centres sit at ``+0.5`` (:mod:`rfmweb.camera`), so
        scaling ``fx, fy, cx, cy`` by the size ratio keeps every ray.
        """
        if width == self.width:
            return self
        height = max(1, round(self.height * width / self.width))
        x = self.images.permute(0, 3, 1, 2)
        if self.width % width == 0 and self.height % height == 0 and self.width // width == self.height // height:
            y = F.avg_pool2d(x, self.width // width)
        else:
            y = F.interpolate(x, size=(height, width), mode="bilinear", antialias=True, align_corners=False)
        ks = self.Ks.clone()
        ks[:, 0] *= width / self.width
        ks[:, 1] *= height / self.height
        return Views(y.permute(0, 2, 3, 1).clamp(0, 1).contiguous(), self.viewmats, ks, self.names)


@dataclass
class ViewSet:
    """A views folder: training and held-out views plus what the scene was rendered with."""

    folder: Path
    train: Views
    test: Views | None
    native_size: tuple[int, int]  # (width, height) of the files
    scene_info: dict = field(default_factory=dict)  # scene.json ({} if absent)
    tf_path: Path | None = None
    test_native: Views | None = None  # held-out views at the files' resolution

    def resized(self, width: int) -> "ViewSet":
        """Training (and held-out) views down-scaled to ``width`` pixels; :attr:`test_native` kept."""
        w, h = self.native_size
        if not 16 <= width <= w:
            raise InputError(f"--size must lie in 16..{w} (the views are {w}x{h}), got {width}")
        return replace(self, train=self.train.resized(width),
                       test=None if self.test is None else self.test.resized(width))

    @property
    def background(self) -> tuple[float, float, float]:
        bg = self.scene_info.get("background", (0.0, 0.0, 0.0))
        return tuple(float(v) for v in bg)


def _read_json(path: Path, what: str):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(f"{what} not found; make the folder with `rfmweb views VOLUME --out DIR`", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} ({exc})", path) from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{what} is not valid JSON ({exc.msg} at line {exc.lineno})", path) from None


def _camera_entries(data, path: Path) -> list[dict]:
    entries = data.get("views", data.get("cameras")) if isinstance(data, dict) else data
    if not isinstance(entries, list) or not entries or not all(isinstance(e, dict) for e in entries):
        raise InputError("expected a non-empty list of views (or {'views': [...]})", path)
    return entries


def _matrix(entry: dict, key: str, shape: tuple[int, int], path: Path, i: int) -> np.ndarray:
    try:
        m = np.asarray(entry[key], dtype=np.float64)
    except KeyError:
        raise InputError(f"view {i} lacks {key!r}", path) from None
    except (TypeError, ValueError):
        raise InputError(f"view {i}: {key!r} must be a {shape[0]}x{shape[1]} matrix of numbers", path) from None
    if m.shape != shape or not np.isfinite(m).all():
        raise InputError(f"view {i}: {key!r} must be a finite {shape[0]}x{shape[1]} matrix, got shape {m.shape}", path)
    return m


def load_views(folder: str | Path, size: int | None = None) -> ViewSet:
    """Read a views folder (see the module docstring).

    Args:
        folder: the folder written by ``rfmweb views``.
        size: train at this width in pixels (down-scaled views, K rescaled, see
            :meth:`ViewSet.resized`); ``None``: as stored. Held-out views are also kept at their
            stored size in :attr:`ViewSet.test_native`.

    Raises:
        InputError: missing folder / files, malformed cameras, images whose size differs from
            ``cameras.json`` or from each other, no training view, or ``size`` out of range.
    """
    from PIL import Image

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError("views folder not found; make it with `rfmweb views VOLUME --out DIR`", folder)
    cam_path = folder / "cameras.json"
    entries = _camera_entries(_read_json(cam_path, "cameras.json"), cam_path)
    images, viewmats, ks, names, splits = [], [], [], [], []
    size_seen = None
    for i, e in enumerate(entries):
        name = e.get("file")
        if not isinstance(name, str) or not name:
            raise InputError(f"view {i} lacks 'file'", cam_path)
        if Path(name).name != name or name in (".", ".."):   # images lie in the folder, as `views` writes them
            raise InputError(f"view {i}: 'file' must be a file name in the views folder, got {name!r}", cam_path)
        split = e.get("split", "train")
        if split not in ("train", "test"):
            raise InputError(f"view {i}: split must be 'train' or 'test', got {split!r}", cam_path)
        try:
            with Image.open(folder / name) as im:
                rgb = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
        except FileNotFoundError:
            raise InputError(f"view image {name!r} listed in cameras.json is missing", folder / name) from None
        except OSError as exc:
            raise InputError(f"not a readable image ({exc})", folder / name) from None
        h, w = rgb.shape[:2]
        want = (e.get("width", w), e.get("height", h))
        if (w, h) != tuple(want):
            raise InputError(f"image is {w}x{h} but cameras.json says {want[0]}x{want[1]}", folder / name)
        if size_seen is not None and (w, h) != size_seen:
            raise InputError(f"image is {w}x{h} but earlier views are {size_seen[0]}x{size_seen[1]}; "
                             "all views must share one size", folder / name)
        size_seen = (w, h)
        images.append(rgb)
        viewmats.append(_matrix(e, "viewmat", (4, 4), cam_path, i))
        ks.append(_matrix(e, "K", (3, 3), cam_path, i))
        names.append(name)
        splits.append(split)
    w, h = size_seen
    if min(w, h) < SSIM_WINDOW:
        raise InputError(f"views of {w}x{h} are smaller than the {SSIM_WINDOW}-px SSIM window", cam_path)
    allv = Views(torch.from_numpy(np.stack(images)), torch.tensor(np.stack(viewmats), dtype=torch.float32),
                 torch.tensor(np.stack(ks), dtype=torch.float32), tuple(names))
    train_idx = [i for i, s in enumerate(splits) if s == "train"]
    test_idx = [i for i, s in enumerate(splits) if s == "test"]
    if not train_idx:
        raise InputError("no view has split 'train'; nothing to fit", cam_path)
    test = allv.subset(test_idx) if test_idx else None
    scene_path = folder / "scene.json"
    scene_info = _read_json(scene_path, "scene.json") if scene_path.exists() else {}
    if not isinstance(scene_info, dict):
        raise InputError("scene.json must hold a JSON object", scene_path)
    tf_path = folder / "tf.json"
    views = ViewSet(folder, allv.subset(train_idx), test, (w, h), scene_info, tf_path if tf_path.exists() else None,
                    test)
    return views if size is None else views.resized(size)


#: A volume or splat file belongs to a views folder when its box is within this fraction of the
#: recorded box's largest side (or 1 mm) of it: the same scan resampled or re-exported passes, another
#: scan does not.
BOUNDS_TOLERANCE = 0.05
#: Splats belong to a views folder when at least this fraction of their centres lie in the recorded box
#: widened by :data:`BOUNDS_TOLERANCE` (a fit moves a few splats outside).
SPLATS_INSIDE = 0.9


def _recorded_bounds(views: ViewSet) -> tuple[np.ndarray, float] | None:
    """``([2, 3] box, tolerance)`` mm: the box of the volume the views were rendered from (scene.json)
    and how far another box may lie from it (:data:`BOUNDS_TOLERANCE`); ``None`` when not recorded."""
    try:
        box = np.asarray(views.scene_info.get("bounds"), dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if box.shape != (2, 3) or not np.isfinite(box).all():
        return None
    return box, max(1.0, BOUNDS_TOLERANCE * float(np.ptp(box, axis=0).max()))


def _box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{lo:.0f}..{hi:.0f}" for lo, hi in box.T) + "] mm"


def check_volume(views: ViewSet, volume, source: str) -> None:
    """Raise :class:`InputError` unless ``volume`` (from ``source``) is the one the views show, by its
    world box against scene.json's ``bounds`` (folders without them are not checked)."""
    recorded = _recorded_bounds(views)
    if recorded is None:
        return
    box, tol = recorded
    if np.abs(np.asarray(volume.bounds) - box).max() > tol:
        raise InputError(f"is not the volume the views in {views.folder} were rendered from: its box is "
                         f"{_box(volume.bounds)}, theirs {_box(box)}", source)


def check_splats(views: ViewSet, means: torch.Tensor, source: str) -> None:
    """Raise :class:`InputError` unless most splat centres (``means [N, 3]`` mm) lie in the box of the
    volume the views show (scene.json's ``bounds``; folders without them are not checked)."""
    recorded = _recorded_bounds(views)
    if recorded is None or len(means) == 0:
        return
    box, tol = recorded
    m = means.detach().cpu().double().numpy()
    inside = float(((m >= box[0] - tol) & (m <= box[1] + tol)).all(axis=1).mean())
    if inside < SPLATS_INSIDE:
        raise InputError(f"are not of the volume the views in {views.folder} show: {inside:.0%} of the splat "
                         f"centres lie in its box {_box(box)}", source)


def scene_for_views(views: ViewSet, volume):
    """The :class:`~rfmweb.render.Scene` the views were rendered from: ``volume`` with the views'
    transfer function (``tf.json`` plus ``scene.json``'s ``tf_settings``, else its ``preset``),
    hidden classes (``hidden_classes``: label values or names) and background."""
    from ..render.scene import Scene
    from ..transfer import ClassTable, Shading, load_paraview_json, preset_for

    info = views.scene_info
    if views.tf_path is not None:
        tf = load_paraview_json(views.tf_path)
        settings = info.get("tf_settings")  # what ParaView JSON cannot hold (rfmweb views writes it)
        if isinstance(settings, dict):
            try:
                tf = replace(tf, unit_distance=float(settings.get("unit_distance", tf.unit_distance)),
                             shading=Shading(**settings["shading"]) if "shading" in settings else tf.shading,
                             gradient_opacity=tuple(map(tuple, settings.get("gradient_opacity", tf.gradient_opacity))))
            except (TypeError, ValueError) as exc:
                raise InputError(f"scene.json: bad tf_settings ({exc})", views.folder / "scene.json") from None
    elif isinstance(info.get("preset"), str):
        tf = preset_for(info["preset"], volume)
    else:
        raise InputError("no tf.json and no preset in scene.json: cannot tell which transfer function the views "
                         "show", views.folder)
    classes = ClassTable.from_classes(volume.classes)
    hidden = info.get("hidden", info.get("hidden_classes", [])) or []
    if hidden and volume.labels is None:
        raise InputError(f"scene.json hides classes {hidden} but the volume has no labels; pass --labels",
                         views.folder / "scene.json")
    for h in hidden:
        match = [s.index for s in classes.styles if s.name == str(h) or str(s.index) == str(h)]
        if not match:
            raise InputError(f"scene.json hides class {h!r}, which the volume's labels do not have "
                             f"(classes: {[s.name for s in classes.styles]})", views.folder / "scene.json")
        classes = classes.updated(match[0], visible=False)
    return Scene(volume, tf, classes, background=views.background)


def initial_splats(init: str, scene, *, max_splats: int | None = None, seed: int = 0, device=None) -> Splats6D:
    """Starting splats: ``"agp"`` or ``"random"``.

    ``"agp"``: :func:`~rfmweb.splats.init.agp_init` (one splat per visible half-resolution voxel).
    When that makes more than ``max_splats``, a uniformly random subset is kept and each kept
    splat's positional scales grow by ``(N_all / max_splats)^(1/3)``, so it stands for the voxels
    around it. (``agp_init``'s own cap keeps the most opaque voxels instead; on the head CT with
    CT-Bone that drops the soft tissue and the head-rest and scored 15.1 dB against 16.8 dB for the
    subset, held-out views before fitting.)

    ``"random"``: :func:`~rfmweb.splats.init.random_init` in the volume's box, as many splats as
    ``"agp"`` gives (grey, opacity 0.1, isotropic).
    """
    from .init import agp_init, random_init

    if init not in INITS:
        raise InputError(f"--init must be one of {', '.join(INITS)}, got {init!r}")
    agp = agp_init(scene, device=device)
    if max_splats is not None and len(agp) > max_splats:
        gen = torch.Generator().manual_seed(seed)
        keep = torch.sort(torch.randperm(len(agp), generator=gen)[:max_splats]).values.to(agp.device)
        grow = math.log(len(agp) / max_splats) / 3.0
        agp = agp.index(keep)
        agp.chol_log_diag[:, :3] += grow
    if init == "agp":
        return agp
    return random_init(scene.volume.bounds, len(agp), seed=seed, device=device)


def scene_extent(splats: Splats6D) -> float:
    """Radius (mm) of the box around the bulk (0.5..99.5 percentiles) of the splat means."""
    m = splats.means.detach().float().cpu().numpy()
    lo, hi = np.percentile(m, [0.5, 99.5], axis=0)
    return max(0.5 * float(np.linalg.norm(hi - lo)), 1e-3)
