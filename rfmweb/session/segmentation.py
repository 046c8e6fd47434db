"""Segmentation views of a BraTS case: ground truth | raw INR | denoised INR, and corrections.

Core code (no UI imports): :class:`SegmentationViews` builds three :class:`RenderSession` s that
share the case's 4-channel image (``Volume.with_labels``: no copy of the array) and differ only in
their label maps: the case's own segmentation, the Neumours INR's raw argmax and its denoised
version (both from :class:`rfmweb.inr.LabelCache`). INR inference takes about a second, so
:meth:`SegmentationViews.start` runs it on a worker thread and reports progress through
``on_status``; until it is done the INR views show the image without labels.

A correction (the user marks voxels as tumour / not tumour on a slice or the 3-D view) goes to a
:class:`rfmweb.inr.correct.Corrector`; :meth:`SegmentationViews.apply_correction` takes a few
gradient steps on the INR weights and swaps the raw and denoised views' labels
(:meth:`RenderSession.set_labels`, which bumps the session version so every front end refreshes).

Example:
    >>> views = SegmentationViews(load_brats_case("BraTS-GLI-00001-000"))      # doctest: +SKIP
    >>> views.start().join(); views.dice()["raw INR"]["WT"]                     # doctest: +SKIP
    0.81
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import tempfile
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np

from ..camera import OrbitCamera
from ..errors import InputError
from ..io.brats import BRATS_CLASSES, BRATS_REGIONS
from ..metrics.segmentation import dice, region_mask
from ..render.scene import FULL, INTERACTIVE, Quality
from ..transfer import ClassTable
from ..volume import Volume
from .session import RenderSession, Snapshot
from .pointing import draw_3d_marks
from .slice_frame import mark_colors, render_slice_frame

log = logging.getLogger(__name__)

#: Titles of the three views, in order.
TITLES = ("ground truth", "raw INR", "denoised INR")
#: The views' part of a download's name (:meth:`SegmentationViews.download_name`)
FILE_VIEWS = ("ground_truth", "raw_inr", "denoised_inr")
#: The first view's title when the case has no ground truth (its labels are empty)
NO_TRUTH_TITLE = "no ground truth (the case has no -seg file)"
GT, RAW, DENOISED = 0, 1, 2
#: Labels a correction can paint: 0 = not tumour, 1 NCR, 2 ED, 3 ET.
CORRECTION_LABELS = {0: "not tumour", 1: "NCR", 2: "ED", 3: "ET"}
#: Opacity of unlabelled tissue in the 3-D segmentation views: the brain as a faint context. The TF's
#: opacity is per mm: at 0.1 a 13 cm brain let ~1 % of the light through (an opaque grey brain hid the
#: tumour); at 0.01 it lets ~60 % through, so the tumour shows through the cortex at first glance.
CONTEXT_OPACITY = 0.01
#: Opacity (per mm) of edema in the 3-D views: a veil around the core, so enhancing tumour and
#: necrosis inside it stay visible (solid, it hid them; at 0.12 the 15-20 mm of edema around the
#: bundled case's core let ~10 % of its light through and the ground truth read as all edema).
EDEMA_OPACITY = 0.03
#: The 3-D views frame the tumour's box (ground truth and raw INR together) grown by this factor.
TUMOUR_FRAME = 2.2
#: ... the box of the tumour voxels without this percentage at either end of each axis.
TUMOUR_BOX_TAIL = 0.5

#: Least seconds between two "correcting: step n/N" status messages (how often the views hear of progress).
PROGRESS_EVERY_S = 0.25

StatusCallback = Callable[[int, bool, str], None]


def segmentation_style(table: ClassTable) -> ClassTable:
    """Class table for a segmentation view: labelled voxels solid in their class colour, the
    unlabelled image (label 0) faint and edema (2) translucent, so the tumour core shows in 3-D."""
    table = replace(table, mode="solid", use_class_colors=True)
    for index, opacity in ((0, CONTEXT_OPACITY), (2, EDEMA_OPACITY)):
        if any(s.index == index for s in table.styles):
            table = table.updated(index, opacity=opacity)
    return table


def region_dice(pred: np.ndarray, ref: np.ndarray) -> dict[str, float]:
    """Dice of the BraTS regions WT, TC, ET of two ``[X, Y, Z]`` label maps (1.0 when both are empty)."""
    if pred.shape != ref.shape:
        raise InputError(f"label maps differ in shape: {pred.shape} vs {ref.shape}")
    return {name: dice(region_mask(pred, values), region_mask(ref, values)) for name, values in BRATS_REGIONS.items()}


#: The ground truth pane's first line, where the others give their Dice against it.
REFERENCE_LINE = "the reference of the Dice scores"


def region_volumes_ml(labels: np.ndarray, spacing: tuple[float, float, float]) -> dict[str, float]:
    """Volume (mL) of the BraTS regions WT, TC, ET of an ``[X, Y, Z]`` label map of voxels ``spacing`` mm."""
    counts = np.bincount(np.asarray(labels).ravel(), minlength=4)
    return {name: float(counts[list(values)].sum()) * math.prod(spacing) / 1000.0
            for name, values in BRATS_REGIONS.items()}


def format_volumes(volumes: dict[str, float]) -> str:
    """``"WT 16.4 · TC 7.2 · ET 3.5 mL"``: one decimal, as radiology reports give tumour volumes."""
    return " · ".join(f"{k} {v:.1f}" for k, v in volumes.items()) + " mL"


def format_dice(scores: dict[str, float] | None) -> str:
    """``"Dice WT 0.821 · TC 0.754 · ET 0.700"`` (empty without scores): three decimals, as
    ``evaluate-inr`` and the notebook print them (two hid what a correction changed: 0.999 -> 0.996
    read 1.00 both times)."""
    if not scores:
        return ""
    return "Dice " + " · ".join(f"{k} {v:.3f}" for k, v in scores.items())


class MarkedSession(RenderSession):
    """A segmentation view's session: its slice frames also show the pending correction marks.

    ``marks()`` returns the marks to draw, ``(ijk [M, 3] int, labels [M] uint8)`` (read at render
    time); :meth:`marks_changed` makes frame streams render again after marks were added or cleared.
    """

    #: The one-voxel step while moving: the faint brain context makes every ray cross the whole brain,
    #: and three panels render per move (``bench_seg_viewer.py``: goal >= 5 frames/s at 320^2)
    moving_quality = INTERACTIVE

    def __init__(self, volume: Volume, marks: Callable[[], tuple[np.ndarray, np.ndarray]], **kwargs) -> None:
        super().__init__(volume, **kwargs)
        self._marks = marks

    def render(self, quality: Quality = FULL, snapshot: Snapshot | None = None, **kwargs) -> np.ndarray:
        """:meth:`RenderSession.render` with the pending marks drawn on it (slices: the marked voxels;
        3-D: a dot on each, where it lies)."""
        snap = snapshot or self.snapshot()
        if snap.mode != "3d":
            return render_slice_frame(snap, self._marks())
        image = super().render(quality, snap, **kwargs)
        ijk, labels = self._marks()
        if not len(ijk):
            return image
        vol = snap.scene.volume
        world = np.c_[ijk, np.ones(len(ijk))] @ vol.affine[:3].T
        palette = mark_colors(snap.scene.classes)
        colors = np.array([palette.get(int(k), (255, 255, 255)) for k in labels], np.uint8)
        return draw_3d_marks(image, snap.camera, world, colors)

    def marks_changed(self) -> None:
        """Marks were added or cleared: the view renders again."""
        self._changed("marks")


class SegmentationViews:
    """Three views of one case: ground truth | raw INR | denoised INR (cameras are not linked here:
    front ends link them with :func:`rfmweb.session.link_cameras` / :func:`link_view_modes`).

    Args:
        volume: a 4-channel MR :class:`Volume` (e.g. :func:`rfmweb.io.load_brats_case`), with its
            ground-truth labels when it has them.
        model: a :class:`~rfmweb.models.inr.NeumoursINR` (default: the shipped weights,
            :func:`rfmweb.inr.load_model`).
        cache: a :class:`rfmweb.inr.LabelCache` to share (default: a new one for ``model``).
        renderer: 3-D renderer of the views (default: the fastest ray-marcher here,
            :func:`rfmweb.backend.marcher_renderer`: labels nearest-neighbour, class colours).
        width, height: initial view size in pixels.
        on_status: ``(view index, busy, message)`` while segmenting and correcting (any thread).

    Raises:
        InputError: the volume is not a 4-channel MR image.
    """

    def __init__(self, volume: Volume, model=None, *, cache=None, renderer: str | None = None,
                 width: int = 384, height: int = 384, on_status: StatusCallback | None = None) -> None:
        if volume.modality != "MR" or volume.data.shape[0] != 4:
            raise InputError(f"segmentation views need a 4-channel MR case (T1n, T1c, T2w, FLAIR), got "
                             f"{volume.modality} with {volume.data.shape[0]} channel(s)")
        from ..inr import LabelCache, load_model

        self.volume = volume
        self.model = model if model is not None else load_model()
        self.cache = cache if cache is not None else LabelCache(self.model)
        self.on_status = on_status
        self.has_truth = volume.labels is not None
        empty = np.zeros(volume.shape, np.uint8)
        gt = volume if self.has_truth else volume.with_labels(empty, BRATS_CLASSES)
        if renderer is None:
            from ..backend import marcher_renderer
            renderer = marcher_renderer()
        self.sessions = tuple(MarkedSession(v, self.pending_marks, renderer=renderer, width=width, height=height)
                              for v in (gt, volume.with_labels(empty, BRATS_CLASSES),
                                        volume.with_labels(empty, BRATS_CLASSES)))
        for s in self.sessions:
            s.set_class_table(segmentation_style(s.classes))
            s.set_label_overlay(True)       # the labels are what these views compare
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._corrector = None
        self.correcting = False         # a correction is being applied (UIs hold Apply, Undo and Clear)
        self.last_correction = ""       # how the last correction or undo ended (the panels show it)
        self._lock = threading.RLock()  # one correction step at a time
        self._dice_key: tuple | None = None
        self._volumes: dict[int, tuple] = {}  # view -> (the labels measured, their volume text)
        self._dice: dict[str, dict[str, float]] | None = None

    # -- labels ---------------------------------------------------------------------------------
    def labels(self, view: int) -> np.ndarray:
        """``[X, Y, Z]`` uint8 labels a view shows now."""
        return self.sessions[view].volume.labels

    def compute(self) -> None:
        """Segment with the INR now (blocking): raw and denoised labels into their views."""
        try:
            for v in (RAW, DENOISED):
                self._status(v, True, "segmenting with the INR")
            t0 = time.perf_counter()
            raw = self.cache.labels(self.volume)
            self.sessions[RAW].set_labels(raw, BRATS_CLASSES)
            self.frame_tumour()
            self._status(RAW, False, f"segmented in {time.perf_counter() - t0:.1f} s")
            t1 = time.perf_counter()
            denoised = self.cache.labels(self.volume, denoise=True)
            self.sessions[DENOISED].set_labels(denoised, BRATS_CLASSES)
            self.ready.set()  # before the last status: a front end re-reads Dice on it
            changed = int((denoised != raw).sum())
            what = f"{changed:,} voxels changed" if changed else "no voxel changed (no small fragment or hole to clean up)"
            self._status(DENOISED, False, f"denoised in {time.perf_counter() - t1:.2f} s: {what}")
            with self._lock:  # the correction engine's set-up (1-3 s) here, not on the first mark
                self._make_corrector()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            for v in (RAW, DENOISED):
                self._status(v, False, f"segmentation failed: {exc}")
            raise

    def start(self) -> threading.Thread:
        """Segment on a worker thread (progress through ``on_status``); returns the thread."""
        def run() -> None:
            try:
                self.compute()
            except Exception:
                log.exception("INR segmentation failed")
        thread = threading.Thread(target=run, name="rfmweb-segment", daemon=True)
        thread.start()
        return thread

    def wait(self, timeout: float | None = 300.0) -> None:
        """Block until the INR labels are in the views (raises if segmenting failed)."""
        if not self.ready.wait(timeout):
            raise TimeoutError(f"INR segmentation did not finish within {timeout} s")
        if self.error is not None:
            raise RuntimeError(f"INR segmentation failed: {self.error}") from self.error

    def tumour_camera(self) -> OrbitCamera | None:
        """A camera (the views' size and angles) framing the tumour of the ground truth and the raw
        INR (:data:`TUMOUR_BOX_TAIL`), its box grown by :data:`TUMOUR_FRAME` (and never larger than
        the volume); ``None`` when no view has a tumour."""
        found = [np.argwhere(self.labels(v) > 0) for v in (GT, RAW)]
        found = [f for f in found if len(f)]
        if not found:
            return None
        ijk = np.concatenate(found)
        # the box of all but the outermost TUMOUR_BOX_TAIL of the voxels on each axis: a few stray
        # false-positive specks of the raw INR must not pull the camera off the tumour
        lo, hi = np.percentile(ijk, [TUMOUR_BOX_TAIL, 100 - TUMOUR_BOX_TAIL], axis=0)
        centre = (lo + hi) / 2
        half = np.minimum(np.maximum((hi - lo) / 2, 4.0) * TUMOUR_FRAME, np.array(self.volume.shape) / 2)
        lo, hi = centre - half, centre + half
        corners = np.array(np.meshgrid(*zip(lo, hi), indexing="ij")).reshape(3, -1)
        world = self.volume.affine[:3, :3] @ corners + self.volume.affine[:3, 3:4]
        cam = self.sessions[GT].camera
        return OrbitCamera.framing(np.stack([world.min(1), world.max(1)]), azimuth=cam.azimuth,
                                   elevation=cam.elevation, fov=cam.fov, width=cam.width, height=cam.height)

    def frame_tumour(self) -> None:
        """Point every view's camera at the tumour (:meth:`tumour_camera`); nothing without one."""
        cam = self.tumour_camera()
        if cam is not None:
            for s in self.sessions:
                s.set_camera(cam.in_viewport(s.camera.width, s.camera.height))

    @property
    def titles(self) -> tuple[str, str, str]:
        """The views' titles: :data:`TITLES`, the first saying so when the case has no ground truth."""
        return TITLES if self.has_truth else (NO_TRUTH_TITLE, *TITLES[1:])

    def dice(self) -> dict[str, dict[str, float]] | None:
        """``{"raw INR": {"WT", "TC", "ET"}, "denoised INR": {...}}`` against the ground truth;
        ``None`` without ground truth or before the INR labels are in."""
        if not self.has_truth or not self.ready.is_set() or self.error is not None:
            return None
        labels = [self.labels(v) for v in (GT, RAW, DENOISED)]
        key = tuple(id(a) for a in labels)
        if key != self._dice_key:  # label arrays are replaced, never edited in place
            self._dice = {TITLES[v]: region_dice(labels[v], labels[GT]) for v in (RAW, DENOISED)}
            self._dice_key = key
        return self._dice

    def caption(self, view: int) -> str:
        """The lines shown under a view's title: its Dice against the ground truth (not on the ground
        truth's own), then the volume of each region, e.g. ``"Dice WT 0.821 · TC 0.754 · ET 0.700\n
        WT 16.4 · TC 7.2 · ET 3.5 mL"`` (follow-up reads volumes; a radiologist had to work them out
        from the saved file); ``""`` before the view has labels (and on a case without ground truth, its panel)."""
        scores = self.dice()
        # the ground truth's first line names it the reference: two lines in every pane keep the pictures level
        dice_line = (REFERENCE_LINE if view == GT else format_dice(scores.get(TITLES[view]))) if scores else ""
        labels = self.labels(view)
        shown = self.has_truth if view == GT else self.ready.is_set() and self.error is None
        if labels is None or not shown:
            return dice_line
        if self._volumes.get(view, (None,))[0] is not labels:  # label arrays are replaced, never edited in place
            self._volumes[view] = (labels, format_volumes(region_volumes_ml(labels, self.volume.spacing)))
        return "\n".join(t for t in (dice_line, self._volumes[view][1]) if t)

    # -- corrections ----------------------------------------------------------------------------
    @property
    def corrector(self):
        """The :class:`rfmweb.inr.correct.Corrector` of this case (made on first use)."""
        if self._corrector is None:
            self.wait()
            self._make_corrector()
        return self._corrector

    def _make_corrector(self) -> None:
        from ..inr.correct import Corrector

        if self._corrector is None:
            self._corrector = Corrector(self.model, self.volume, labels=self.labels(RAW), device=self.cache.device)

    @property
    def can_undo(self) -> bool:
        """Whether a correction has been applied that :meth:`undo_correction` can revert."""
        return self._corrector is not None and self._corrector.can_undo

    @property
    def n_marks(self) -> int:
        return 0 if self._corrector is None else int(self._corrector.n_marks)

    def pending_marks(self) -> tuple[np.ndarray, np.ndarray]:
        """Pending marks ``(ijk [M, 3] int64, labels [M] uint8)``: the painted voxels and the voxels hit
        by 3-D clicks, drawn on the views until applied or cleared (none before the correction engine
        exists)."""
        corrector = self._corrector
        if corrector is None:
            return np.zeros((0, 3), np.int64), np.zeros(0, np.uint8)
        ijk, labels = corrector.pending_voxels
        rays = corrector.pending_rays
        if rays:
            ijk = np.concatenate([ijk, np.array([r.voxel for r in rays], np.int64)])
            labels = np.concatenate([labels, np.array([r.label for r in rays], np.uint8)])
        return ijk, labels

    def clear_marks(self) -> None:
        """Forget the pending marks (the views stop showing them). An outcome that spoke of them
        ("... pending again (Apply or Clear)") says they are cleared: the panels kept it, beside
        greyed-out Apply and Clear buttons."""
        with self._lock:
            if self._corrector is not None:
                self._corrector.clear_marks()
            stale = "pending" in self.last_correction
        if stale:
            self._outcome("pending marks cleared")
        self._marks_changed()

    def _marks_changed(self) -> None:
        for s in self.sessions:
            s.marks_changed()

    def mark_stroke(self, axis: str, index: int, points, label: int, radius: float = 2.0) -> int:
        """Mark voxels along a stroke on slice ``index`` of ``axis``; ``points [M, 2]`` are voxel
        coordinates in that plane (first and second remaining array axes), ``radius`` in voxels.
        Returns voxels marked; the slice views show them at once."""
        _check_label(label)
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        with self._lock:
            n = int(self.corrector.mark_stroke(axis, index, pts, label, float(radius)))
        self._marks_changed()
        return n

    def mark_pixels(self, view: int, pixels, label: int, radius_px: float = 6.0) -> int:
        """Mark a stroke drawn on a slice view: ``pixels [M, 2]`` are ``(u right, v down)`` frame
        pixels of ``view`` (device pixels); the radius is in pixels too. Returns voxels marked."""
        session = self.sessions[view]
        geo = session.slice_geometry()
        px = np.asarray(pixels, dtype=np.float64).reshape(-1, 2)
        # every point, those off the slice too: the stroke between them is what was drawn (dropping them
        # would join the points where it left the slice and came back by a straight line never drawn)
        vox = geo.to_voxel(px[:, 0], px[:, 1])[:, list(geo.in_plane)]
        spacing = min(geo.spacing[a] for a in geo.in_plane)
        radius = max(0.5, radius_px * geo.mm_per_px / spacing)
        return self.mark_stroke(geo.axis, geo.index, vox, label, radius)

    def mark_click(self, view: int, x: float, y: float, label: int) -> np.ndarray | None:
        """Mark the surface voxel under pixel ``(x, y)`` of a 3-D view (found through the
        ray-marcher's depth); returns its ``[3]`` voxel index, or ``None`` when the ray hits nothing."""
        _check_label(label)
        snap = self.sessions[view].snapshot()
        with self._lock:
            hit = self.corrector.mark_ray(snap.scene, snap.camera, float(x), float(y), label)
        if hit is not None:
            self._marks_changed()
        return hit

    def apply_correction(self, *, steps: int | None = None):
        """Fine-tune the INR on the marks and show its new labels in the raw and denoised views.

        Runs until the marks are honoured (or ``steps`` steps), however long that takes on this
        machine; the raw and denoised views show "correcting: step n/N" meanwhile (refreshed at most
        every :data:`PROGRESS_EVERY_S` seconds: time decides how often, never how much).

        Returns the :class:`~rfmweb.inr.correct.CorrectionResult` (labels, changed voxels, steps, seconds).
        """
        with self._lock:
            n_marks, last = self.n_marks, [-math.inf]

            def progress(taken: int, most: int) -> None:
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY_S:
                    last[0] = now
                    for v in (RAW, DENOISED):
                        self._status(v, True, f"correcting: step {taken}/{most} ({n_marks} marked voxels)")

            self.correcting = True
            for v in (RAW, DENOISED):
                self._status(v, True, f"correcting ({n_marks} marked voxels)")
            try:
                # the views the result replaces stop converging meanwhile: the correction gets the cores
                with self.sessions[RAW].hold_refinement(), self.sessions[DENOISED].hold_refinement():
                    result = self.corrector.apply(steps=steps, on_progress=progress)
                    self._show(result.labels)
            except BaseException as exc:
                self.correcting = False
                self._outcome(f"correction failed: {exc}")
                raise
            self.correcting = False
            self._outcome(_correction_text(result))
        self._marks_changed()            # the applied marks leave every view, the ground truth's too
        return result

    def undo_correction(self) -> np.ndarray:
        """Back to the weights, labels and pending marks from before the last applied correction (its
        marks show again, to edit and apply or clear); returns those labels."""
        with self._lock:
            labels = self.corrector.undo()
            self._show(labels)
            n = self.n_marks
            self._outcome(f"correction undone; its {n} marked voxels are pending again (Apply or Clear)" if n else
                          "correction undone")
        self._marks_changed()
        return labels

    def _outcome(self, message: str) -> None:
        """Say how a correction or an undo ended: in the raw and denoised views' status lines (which the
        next frame's note replaces) and in :attr:`last_correction` (which stays, for the panels)."""
        self.last_correction = message
        for v in (RAW, DENOISED):
            self._status(v, False, message)

    def save(self, path: str | os.PathLike, view: int = DENOISED) -> Path:
        """Write one view's labels (default: the denoised INR's, with any corrections) to ``path``:
        ``.nii``/``.nii.gz``, ``.nrrd``/``.mha`` or ``.dcm`` (DICOM SEG; see
        :func:`rfmweb.io.save_segmentation`), atomically. Corrected labels are marked as drawn by
        hand (MANUAL), the INR's own as AUTOMATIC."""
        from ..io.dicom_seg import save_segmentation

        if view not in (GT, RAW, DENOISED):
            raise InputError(f"view must be {GT} (ground truth), {RAW} (raw INR) or {DENOISED} (denoised INR)")
        if view != GT:
            self.wait()
        corrected = self._corrector is not None and self._corrector.can_undo
        algorithm = None if view == GT or corrected else "Neumours INR"
        return save_segmentation(self.labels(view), self.volume, path, classes=BRATS_CLASSES, algorithm=algorithm)

    def download_name(self, view: int = DENOISED, fmt: str = "nii.gz") -> str:
        """The name a view's download takes: the case, the view and the format, e.g.
        ``BraTS-GLI-00002-000_denoised_inr.nii.gz`` (``..._dicom_seg.zip`` for ``fmt="dcm"``), so that
        downloads of several cases and views never take each other's name."""
        case = re.sub(r"[^A-Za-z0-9._-]+", "_", self.volume.name or "").strip("._") or "case"
        return f"{case}_{FILE_VIEWS[view]}" + (".nii.gz" if fmt == "nii.gz" else "_dicom_seg.zip")

    def download_names(self) -> dict[str, str]:
        """The names of the denoised view's downloads: ``{"nii": ..., "dcm": ...}`` (the app's buttons)."""
        return {"nii": self.download_name(DENOISED, "nii.gz"), "dcm": self.download_name(DENOISED, "dcm")}

    def segmentation_file(self, view: int = DENOISED, fmt: str = "nii.gz") -> bytes:
        """A view's labels as a file's bytes, for a browser download (no server path involved):
        ``fmt="nii.gz"`` (NIfTI), or ``"dcm"``: a zip of the DICOM SEG and the image series it
        references (written beside it when the case is not DICOM itself), for a PACS or 3D Slicer."""
        if fmt not in ("nii.gz", "dcm"):
            raise InputError(f"a segmentation downloads as 'nii.gz' or 'dcm', not {fmt!r}")
        with tempfile.TemporaryDirectory(prefix="rfmweb-seg-") as tmp:
            path = self.save(Path(tmp) / f"segmentation.{fmt}", view)
            if fmt == "nii.gz":
                return path.read_bytes()
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                for file in sorted(p for p in Path(tmp).rglob("*") if p.is_file()):
                    archive.write(file, file.relative_to(tmp).as_posix())
            return buffer.getvalue()

    def _show(self, raw: np.ndarray) -> None:
        # the Corrector fine-tunes its own copy of the model: the cache's labels stay the originals
        self.sessions[RAW].set_labels(np.asarray(raw, np.uint8), BRATS_CLASSES)
        self.sessions[DENOISED].set_labels(np.asarray(self.corrector.denoised(), np.uint8), BRATS_CLASSES)

    def _status(self, view: int, busy: bool, message: str) -> None:
        if self.on_status is not None:
            try:
                self.on_status(view, busy, message)
            except Exception:
                log.exception("status callback failed")

    def close(self) -> None:
        for s in self.sessions:
            s.close()


def _correction_text(result) -> str:
    """The status line of an applied :class:`~rfmweb.inr.correct.CorrectionResult`."""
    from ..inr.correct import REACH_MM

    far = f"; {result.left_out} changes farther than {REACH_MM:g} mm from the marks left out" if result.left_out else ""
    return f"corrected: {int(result.changed)} voxels changed{far}, {result.steps} steps, {result.seconds:.1f} s"


def _check_label(label) -> None:
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)) or int(label) not in CORRECTION_LABELS:
        raise InputError(f"correction label must be one of {CORRECTION_LABELS}, got {label!r}")
